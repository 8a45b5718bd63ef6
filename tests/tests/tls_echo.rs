//! TLS between torsion's client and torsion's server (issue 11): concurrent 1 MiB echoes
//! byte-exact, the TLS accessors, `connection_made` after the handshake, and rustls' own
//! blocking client against the server.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::mpsc;

use torsion_protocols::Echo;
use torsion_reactor::{Address, ClientFactory, Ctx, DisconnectReason, Error, LoopCtx, Protocol, Reactor};
use torsion_tests::tls::{blocking_client, localhost_name, tls_server, Pki};
use torsion_tests::{pattern, recv, run_until};

/// Sends its message, checks the echo, closes.
struct PingClient {
    message: Vec<u8>,
    received: Vec<u8>,
    results: Rc<RefCell<Vec<Result<(), String>>>>,
    done: bool,
}

impl Protocol for PingClient {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        assert!(cx.transport().tls().is_some_and(|t| !t.is_handshaking()), "handshake done first");
        cx.transport().write(&self.message);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.received.extend_from_slice(data);
        if self.received.len() >= self.message.len() && !self.done {
            let ok = self.received == self.message;
            self.results.borrow_mut().push(if ok { Ok(()) } else { Err("echo differs".into()) });
            self.done = true;
            cx.transport().lose_connection();
        }
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        if !self.done {
            self.results.borrow_mut().push(Err(format!("lost early: {reason}")));
        }
    }
}

struct PingFactory {
    seed: u64,
    len: usize,
    results: Rc<RefCell<Vec<Result<(), String>>>>,
}

impl ClientFactory for PingFactory {
    fn build_protocol(&mut self, _peer: Address) -> Box<dyn Protocol> {
        self.seed += 1;
        Box::new(PingClient {
            message: pattern(self.seed, self.len),
            received: Vec::new(),
            results: self.results.clone(),
            done: false,
        })
    }

    fn client_connection_failed(&mut self, _cx: &mut LoopCtx<'_>, reason: Error) {
        self.results.borrow_mut().push(Err(format!("connect failed: {reason}")));
    }
}

/// 20 torsion TLS clients on one reactor, each echoing 1 MiB through a torsion TLS server at
/// once: every byte comes back, in order.
#[test]
fn twenty_concurrent_one_mib_echoes_are_byte_exact() {
    let pki = Pki::new();
    let (_server, addr) = tls_server(pki.server_config(), |_| {}, || |_| Some(Echo));
    let mut reactor = Reactor::new().unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    for i in 0..20 {
        let factory = PingFactory { seed: i * 100, len: 1 << 20, results: results.clone() };
        reactor.connect_tls(addr.clone(), localhost_name(), pki.client_config(), factory).unwrap();
    }
    run_until(&mut reactor, "20 echoes", |_| results.borrow().len() == 20);
    let results = results.borrow();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

/// What the server's protocol saw of TLS in `connection_made`.
#[derive(Debug)]
struct Seen {
    version: Option<String>,
    alpn: Option<Vec<u8>>,
    sni: Option<String>,
    suite: Option<String>,
}

struct Report {
    tx: mpsc::Sender<Seen>,
}

impl Protocol for Report {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let t = cx.transport();
        let tls = t.tls().expect("a TLS connection");
        let _ = self.tx.send(Seen {
            version: tls.protocol_version().map(|v| format!("{v:?}")),
            alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
            sni: tls.server_name().map(str::to_owned),
            suite: tls.cipher_suite().map(|s| format!("{:?}", s.suite())),
        });
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

/// The accessors answer in `connection_made`: version, ALPN agreed, the SNI name the client
/// asked for, the cipher suite. The client is rustls' own blocking stream.
#[test]
fn accessors_answer_in_connection_made() {
    let pki = Pki::new();
    let mut config = (*pki.server_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"torsion/1".to_vec()];
    let (tx, rx) = mpsc::channel();
    let (_server, addr) =
        tls_server(std::sync::Arc::new(config), |_| {}, move || move |_| Some(Report { tx: tx.clone() }));
    let mut client_config = (*pki.client_config()).clone();
    client_config.alpn_protocols = vec![b"torsion/1".to_vec()];
    let mut client = blocking_client(&addr, std::sync::Arc::new(client_config)).expect("handshake");
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    let seen = recv(&rx, "connection_made");
    assert_eq!(seen.version.as_deref(), Some("TLSv1_3"));
    assert_eq!(seen.alpn.as_deref(), Some(&b"torsion/1"[..]));
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert!(seen.suite.is_some_and(|s| s.starts_with("TLS13_")));
    assert_eq!(client.conn.alpn_protocol(), Some(&b"torsion/1"[..]));
}

/// Mutual TLS: the server requires a client certificate and sees its chain.
#[test]
fn client_certificates_are_verified_and_visible() {
    struct PeerCert {
        tx: mpsc::Sender<usize>,
    }
    impl Protocol for PeerCert {
        fn connection_made(&mut self, cx: &mut Ctx<'_>) {
            let n = cx.transport().tls().and_then(|t| t.peer_certificates()).map_or(0, |c| c.len());
            let _ = self.tx.send(n);
            cx.transport().write(b"ok");
            cx.transport().lose_connection();
        }
        fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    }
    let pki = Pki::new();
    let (tx, rx) = mpsc::channel();
    let (_server, addr) =
        tls_server(pki.server_config_mtls(), |_| {}, move || move |_| Some(PeerCert { tx: tx.clone() }));
    let mut client = blocking_client(&addr, pki.client_config_mtls()).expect("handshake");
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("clean close_notify, then EOF");
    assert_eq!(got, b"ok");
    assert_eq!(recv(&rx, "connection_made"), 1, "the client's chain is visible");
}

/// A blocking rustls client asking for `name` (SNI), handshake done.
fn client_for(
    addr: &Address,
    config: std::sync::Arc<torsion_reactor::rustls::ClientConfig>,
    name: &str,
) -> torsion_reactor::rustls::StreamOwned<torsion_reactor::rustls::ClientConnection, std::net::TcpStream> {
    use torsion_reactor::rustls::{pki_types::ServerName, ClientConnection, StreamOwned};
    let Address::Inet(inet) = addr else { unreachable!() };
    let tcp = std::net::TcpStream::connect(inet).unwrap();
    tcp.set_read_timeout(Some(torsion_tests::WAIT)).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from(name.to_owned()).unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

/// SNI-based certificate selection through rustls' resolver: each name gets its certificate,
/// and the server's protocol sees the name asked for.
#[test]
fn sni_selects_the_certificate() {
    use std::sync::Arc;
    use torsion_reactor::rustls::server::ResolvesServerCertUsingSni;
    use torsion_reactor::rustls::sign::CertifiedKey;
    let pki = Pki::new();
    let provider = torsion_reactor::tls_provider();
    let mut resolver = ResolvesServerCertUsingSni::new();
    for (name, cert) in [("localhost", &pki.server), ("other.example", &pki.wrong_host)] {
        let key = provider.key_provider.load_private_key(cert.key()).unwrap();
        resolver.add(name, CertifiedKey::new(cert.chain.clone(), key)).unwrap();
    }
    let config = torsion_reactor::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    let (tx, rx) = mpsc::channel();
    let (_server, addr) =
        tls_server(Arc::new(config), |_| {}, move || move |_| Some(Report { tx: tx.clone() }));
    for (name, cert) in [("localhost", &pki.server), ("other.example", &pki.wrong_host)] {
        let mut client = client_for(&addr, pki.client_config(), name);
        client.write_all(b"x").unwrap();
        let mut buf = [0u8; 1];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(client.conn.peer_certificates().unwrap()[0], cert.chain[0], "{name}");
        assert_eq!(recv(&rx, "connection_made").sni.as_deref(), Some(name));
    }
}

/// An application-data record written to the socket one byte at a time (a record split over
/// many TCP segments) is reassembled and echoed.
#[test]
fn a_record_split_into_single_bytes_is_reassembled() {
    let pki = Pki::new();
    let (_server, addr) = tls_server(pki.server_config(), |_| {}, || |_| Some(Echo));
    let mut client = blocking_client(&addr, pki.client_config()).expect("handshake");
    client.sock.set_nodelay(true).unwrap();
    let message = pattern(5, 3000);
    client.conn.writer().write_all(&message).unwrap();
    let mut records = Vec::new();
    while client.conn.wants_write() {
        client.conn.write_tls(&mut records).unwrap();
    }
    for byte in &records {
        client.sock.write_all(std::slice::from_ref(byte)).unwrap();
    }
    let mut back = vec![0u8; message.len()];
    client.read_exact(&mut back).unwrap();
    assert!(back == message, "echo differs");
}

/// TLS 1.3 post-handshake messages through the server's read path: the client asks
/// for key updates mid-stream (the server must switch its receiving key and answer with its own
/// `KeyUpdate` before its next record), and the session tickets the server sent with the first
/// echo let a second connection resume, which still reports the SNI name.
#[test]
fn key_updates_mid_stream_and_a_resumed_session() {
    let pki = Pki::new();
    let (tx, rx) = mpsc::channel();
    let (_server, addr) =
        tls_server(pki.server_config(), |_| {}, move || move |_| Some(Report { tx: tx.clone() }));
    let client_config = pki.client_config();
    let mut client = blocking_client(&addr, client_config.clone()).expect("handshake");
    assert_eq!(recv(&rx, "connection_made").sni.as_deref(), Some("localhost"));
    for round in 0..4u64 {
        if round > 0 {
            client.conn.refresh_traffic_keys().expect("a TLS 1.3 key update");
        }
        let message = pattern(round, 100_000);
        client.write_all(&message).unwrap();
        let mut back = vec![0u8; message.len()];
        client.read_exact(&mut back).unwrap();
        assert!(back == message, "echo differs in round {round}");
    }
    let mut again = blocking_client(&addr, client_config).expect("second handshake");
    assert_eq!(again.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    assert_eq!(recv(&rx, "connection_made").sni.as_deref(), Some("localhost"));
    again.write_all(b"resumed").unwrap();
    let mut buf = [0u8; 7];
    again.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"resumed");
}

/// Every loop read buffer size works, from one byte up: the handshake and a 200 KB echo (many
/// records) through a server whose read buffer is smaller than a record (plaintext that does
/// not fit waits in rustls for the next read, which must not touch the socket first), about
/// one record, and larger.
#[test]
fn every_read_buffer_size_handshakes_and_echoes() {
    let pki = Pki::new();
    for size in [1, 7, 100, 2048, 17_000, 40_000, 100_001] {
        let (_server, addr) =
            tls_server(pki.server_config(), move |r| r.set_read_buffer_size(size), || |_| Some(Echo));
        let mut client = blocking_client(&addr, pki.client_config()).expect("handshake");
        let message = pattern(size as u64, 200_000);
        client.write_all(&message).unwrap();
        let mut back = vec![0u8; message.len()];
        client.read_exact(&mut back).unwrap();
        assert!(back == message, "echo differs with a {size}-byte read buffer");
    }
}

/// ClientHellos already waiting in their sockets when the server accepts them (the clients
/// connected and wrote while the loop was not running): the server accepts without reading
/// (a handshake's key exchange is not done inside the accept batch), and the registration's
/// edge reports each ClientHello, so every handshake completes and echoes well before the
/// handshake deadline.
#[test]
fn client_hellos_queued_before_the_accept_are_answered() {
    const CLIENTS: usize = 5;
    let pki = Pki::new();
    let mut reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_tls(&Address::Inet(torsion_tests::localhost()), pki.server_config(), |_| Some(Echo))
        .expect("listen_tls");
    let Address::Inet(inet) = port.local_addr().clone() else { panic!("TCP") };
    let (queued_tx, queued_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (config, queued_tx, done_tx) = (pki.client_config(), queued_tx.clone(), done_tx.clone());
            std::thread::spawn(move || {
                let result = (|| -> std::io::Result<()> {
                    let mut tcp = std::net::TcpStream::connect(inet)?;
                    tcp.set_read_timeout(Some(torsion_tests::WAIT))?;
                    let mut conn = rustls::ClientConnection::new(config, localhost_name())
                        .map_err(std::io::Error::other)?;
                    conn.write_tls(&mut tcp)?; // the ClientHello, into the not yet accepted socket
                    queued_tx.send(()).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let message = pattern(i as u64, 1000);
                    tls.write_all(&message)?;
                    let mut back = vec![0u8; message.len()];
                    tls.read_exact(&mut back)?;
                    if back != message {
                        return Err(std::io::Error::other("echo differs"));
                    }
                    Ok(())
                })();
                done_tx.send(result.map_err(|e| e.to_string())).unwrap();
            })
        })
        .collect();
    for _ in 0..CLIENTS {
        recv(&queued_rx, "a ClientHello written before the loop runs");
    }
    let mut results = Vec::new();
    run_until(&mut reactor, "every queued client's echo", |_| {
        results.extend(done_rx.try_iter());
        results.len() == CLIENTS
    });
    for client in clients {
        client.join().unwrap();
    }
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}
