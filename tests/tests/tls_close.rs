//! How TLS connections end (issue 11): the peer's `close_notify` is `eof_received` (half-close
//! under TLS 1.3), a TCP EOF without it is truncation (`DisconnectReason::Tls(Truncated)`, not
//! `Clean`) in both directions, a graceful shutdown sends `close_notify`, an abort resets, and a
//! slow reader keeps the server's pending output bounded as over TCP.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use torsion_reactor::rustls;
use torsion_reactor::{client_factory, Ctx, DisconnectReason, Protocol, Reactor, TlsFailure};
use torsion_tests::tls::{blocking_client, localhost_name, tls_server, Pki};
use torsion_tests::{recv, run_until, WAIT};

/// Events of a server-side protocol, sent to the test.
#[derive(Debug, PartialEq)]
enum Ev {
    Data(Vec<u8>),
    Eof,
    Lost(DisconnectReason),
}

/// Echoes; on the peer's EOF writes "bye" and closes; reports everything.
struct Probe {
    tx: mpsc::Sender<Ev>,
    abort_on: Option<&'static [u8]>,
}

impl Protocol for Probe {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        let _ = self.tx.send(Ev::Data(data.to_vec()));
        if self.abort_on == Some(data) {
            cx.transport().abort_connection();
            return;
        }
        cx.transport().write(data);
    }

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        let _ = self.tx.send(Ev::Eof);
        cx.transport().write(b"bye");
        cx.transport().lose_connection();
        true
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.tx.send(Ev::Lost(reason));
    }
}

fn probe_server(
    pki: &Pki,
    abort_on: Option<&'static [u8]>,
) -> (torsion_tests::ReactorThread, torsion_reactor::Address, mpsc::Receiver<Ev>) {
    let (tx, rx) = mpsc::channel();
    let (server, addr) =
        tls_server(pki.server_config(), |_| {}, move || move |_| Some(Probe { tx: tx.clone(), abort_on }));
    (server, addr, rx)
}

/// TLS 1.3 half-close: the client's `close_notify` reaches the protocol as `eof_received`, the
/// server still writes, then closes with its own `close_notify`: `Clean` on both sides.
#[test]
fn close_notify_is_eof_and_the_server_can_still_write() {
    half_close(&rustls::version::TLS13);
}

/// The same under TLS 1.2: rustls on both ends keeps the other direction open after a
/// `close_notify` (many TLS 1.2 stacks close their side at once instead; RFC 5246 asks them to
/// answer with their own `close_notify`, which is what the server's close sends).
#[test]
fn close_notify_is_eof_under_tls12_too() {
    half_close(&rustls::version::TLS12);
}

fn half_close(version: &'static rustls::SupportedProtocolVersion) {
    let pki = Pki::new();
    let (_server, addr, rx) = probe_server(&pki, None);
    let config = rustls::ClientConfig::builder_with_provider(torsion_reactor::tls_provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(pki.roots())
        .with_no_client_auth();
    let mut client = blocking_client(&addr, Arc::new(config)).expect("handshake");
    assert_eq!(client.conn.protocol_version(), Some(version.version));
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    client.conn.send_close_notify();
    while client.conn.wants_write() {
        client.conn.write_tls(&mut client.sock).unwrap();
    }
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("the server's close_notify, then EOF: a clean end");
    assert_eq!(rest, b"bye");
    assert_eq!(recv(&rx, "data"), Ev::Data(b"hello".to_vec()));
    assert_eq!(recv(&rx, "eof"), Ev::Eof);
    assert_eq!(recv(&rx, "lost"), Ev::Lost(DisconnectReason::Clean));
}

/// A client that closes TCP without `close_notify` truncates the stream: the server's
/// protocol hears `Tls(Truncated)`, not `Clean`, and no `eof_received`.
#[test]
fn tcp_eof_without_close_notify_is_truncation_on_the_server() {
    let pki = Pki::new();
    let (_server, addr, rx) = probe_server(&pki, None);
    let mut client = blocking_client(&addr, pki.client_config()).expect("handshake");
    client.write_all(b"data").unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).unwrap();
    client.sock.shutdown(Shutdown::Write).unwrap();
    assert_eq!(recv(&rx, "data"), Ev::Data(b"data".to_vec()));
    assert_eq!(recv(&rx, "lost"), Ev::Lost(DisconnectReason::Tls(TlsFailure::Truncated)));
}

/// A server (rustls' blocking one, on a thread) that sends "hi" and then either closes with
/// `close_notify` or just drops TCP.
fn one_shot_server(pki: &Pki, clean: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = pki.server_config();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        tls.write_all(b"hi").unwrap();
        if clean {
            tls.conn.send_close_notify();
        }
        tls.flush().unwrap();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut tls.sock).unwrap();
        }
        tls.sock.shutdown(Shutdown::Write).unwrap();
        // Wait for the client's close, so our close cannot reset anything in flight.
        let mut sink = [0u8; 64];
        while matches!(tls.sock.read(&mut sink), Ok(n) if n > 0) {}
    });
    addr
}

fn client_end(pki: &Pki, clean: bool) -> (Vec<u8>, bool, DisconnectReason) {
    let addr = one_shot_server(pki, clean);
    let mut reactor = Reactor::new().unwrap();
    #[derive(Default)]
    struct Out {
        data: Vec<u8>,
        eof: bool,
        lost: Option<DisconnectReason>,
    }
    let out = std::rc::Rc::new(std::cell::RefCell::new(Out::default()));
    struct C(std::rc::Rc<std::cell::RefCell<Out>>);
    impl Protocol for C {
        fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
            self.0.borrow_mut().data.extend_from_slice(data);
        }
        fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
            self.0.borrow_mut().eof = true;
            false
        }
        fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
            self.0.borrow_mut().lost = Some(reason);
        }
    }
    let o = out.clone();
    let factory = client_factory(move |_| C(o.clone())).on_failure(|_, e| panic!("connect failed: {e}"));
    reactor.connect_tls(addr, localhost_name(), pki.client_config(), factory).unwrap();
    run_until(&mut reactor, "connection_lost", |_| out.borrow().lost.is_some());
    let out = out.borrow();
    (out.data.clone(), out.eof, out.lost.clone().unwrap())
}

/// Torsion's client tells a server's `close_notify` (eof, then `Clean`) from a bare TCP EOF
/// (`Tls(Truncated)`, no eof).
#[test]
fn truncation_and_clean_close_are_distinguished_on_the_client() {
    let pki = Pki::new();
    assert_eq!(client_end(&pki, true), (b"hi".to_vec(), true, DisconnectReason::Clean));
    assert_eq!(
        client_end(&pki, false),
        (b"hi".to_vec(), false, DisconnectReason::Tls(TlsFailure::Truncated))
    );
}

/// A graceful shutdown of the server closes its TLS connections with `close_notify`: the client
/// reads a clean end of stream, not a truncation.
#[test]
fn graceful_shutdown_sends_close_notify() {
    let pki = Pki::new();
    let (server, addr, rx) = probe_server(&pki, None);
    let mut client = blocking_client(&addr, pki.client_config()).expect("handshake");
    client.write_all(b"x").unwrap();
    assert_eq!(recv(&rx, "data"), Ev::Data(b"x".to_vec()));
    server.handle.stop();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("close_notify before EOF");
    assert_eq!(rest, b"x");
    drop(client);
    server.join("the server to stop");
}

/// `abort_connection` on a TLS connection resets it: no `close_notify`, the client sees an
/// error, the protocol hears `Aborted`.
#[test]
fn abort_resets_without_close_notify() {
    let pki = Pki::new();
    let (_server, addr, rx) = probe_server(&pki, Some(b"abort"));
    let mut client = blocking_client(&addr, pki.client_config()).expect("handshake");
    client.write_all(b"abort").unwrap();
    let mut rest = Vec::new();
    let err = client.read_to_end(&mut rest).expect_err("a reset, not a clean end");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(recv(&rx, "data"), Ev::Data(b"abort".to_vec()));
    assert_eq!(recv(&rx, "lost"), Ev::Lost(DisconnectReason::Aborted));
}

/// Echo over TLS to a client that writes 16 MiB and never reads: the server pauses reading
/// when its pending output (plaintext buffer plus ciphertext not yet sent) passes the high
/// watermark, so what it holds stays bounded, exactly as over TCP.
#[test]
fn a_slow_reader_keeps_the_servers_pending_output_bounded() {
    struct Watch {
        max: Arc<AtomicUsize>,
        total: Arc<AtomicUsize>,
    }
    impl Protocol for Watch {
        fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
            self.total.fetch_add(data.len(), Ordering::Relaxed);
            let mut t = cx.transport();
            t.write(data);
            self.max.fetch_max(t.write_buffer_len(), Ordering::Relaxed);
        }
    }
    let pki = Pki::new();
    let max = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let (m, t) = (max.clone(), total.clone());
    let (_server, addr) = tls_server(
        pki.server_config(),
        |_| {},
        move || move |_| Some(Watch { max: m.clone(), total: t.clone() }),
    );
    let mut client = blocking_client(&addr, pki.client_config()).expect("handshake");
    // The write blocks once the server stops reading and the kernel buffers are full; the
    // timeout turns that into an error here (a bounded wait, not a sleep).
    client.sock.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    while written < 16 << 20 {
        match client.write(&chunk) {
            Ok(n) => written += n,
            Err(_) => break,
        }
        if client.conn.wants_write() && client.conn.write_tls(&mut client.sock).is_err() {
            break;
        }
    }
    assert!(written < 16 << 20, "the client was never blocked: the server read everything");
    let held = max.load(Ordering::Relaxed);
    // High watermark (64 KiB) + one read's echo (256 KiB) + one TLS batch (64 KiB): bounded.
    assert!(held <= 512 * 1024, "the server held {held} bytes for a reader that never reads");
    assert!(total.load(Ordering::Relaxed) < 16 << 20);
}

/// `lose_connection` on a TLS connection whose peer never reads: the flush cannot finish, so
/// the close timeout aborts it (`TimedOut`) instead of hanging (twisted#7926, #5534).
#[test]
fn a_close_that_cannot_flush_times_out() {
    struct Flood {
        tx: mpsc::Sender<Ev>,
    }
    impl Protocol for Flood {
        fn connection_made(&mut self, cx: &mut Ctx<'_>) {
            // Far more than the kernel buffers hold, then close.
            cx.transport().write_bytes(torsion_reactor::Bytes::from(vec![1u8; 32 << 20]));
            cx.transport().lose_connection();
        }
        fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
        fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
            let _ = self.tx.send(Ev::Lost(reason));
        }
    }
    let pki = Pki::new();
    let (tx, rx) = mpsc::channel();
    let (_server, addr) = tls_server(
        pki.server_config(),
        |r| r.set_tls_close_timeout(Duration::from_secs(1)),
        move || move |_| Some(Flood { tx: tx.clone() }),
    );
    let client = blocking_client(&addr, pki.client_config()).expect("handshake");
    assert_eq!(recv(&rx, "the close timeout"), Ev::Lost(DisconnectReason::TimedOut));
    drop(client);
}

/// TLS over a Unix socket: `listen_tls` and `connect_tls` take any stream address.
#[test]
fn tls_over_a_unix_socket() {
    let pki = Pki::new();
    let path = torsion_tests::TempPath::new(".sock");
    let addr = torsion_reactor::Address::unix_path(path.path());
    let config = pki.server_config();
    let listen_at = addr.clone();
    let (_server, _) = torsion_tests::ReactorThread::start(move |reactor| {
        reactor
            .listen_tls(&listen_at, config, |_| Some(torsion_protocols::Echo))
            .expect("listen_tls on unix");
    });
    let (got, eof, lost) = {
        let mut reactor = Reactor::new().unwrap();
        let out = std::rc::Rc::new(std::cell::RefCell::new((Vec::new(), false, None)));
        /// What the client saw: data, eof, how it ended.
        type Seen = (Vec<u8>, bool, Option<DisconnectReason>);
        struct C(std::rc::Rc<std::cell::RefCell<Seen>>);
        impl Protocol for C {
            fn connection_made(&mut self, cx: &mut Ctx<'_>) {
                cx.transport().write(b"over unix");
                cx.transport().write_eof();
            }
            fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
                self.0.borrow_mut().0.extend_from_slice(data);
            }
            fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
                self.0.borrow_mut().1 = true;
                false
            }
            fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
                self.0.borrow_mut().2 = Some(reason);
            }
        }
        let o = out.clone();
        let factory = client_factory(move |_| C(o.clone())).on_failure(|_, e| panic!("connect failed: {e}"));
        reactor.connect_tls(addr, localhost_name(), pki.client_config(), factory).unwrap();
        run_until(&mut reactor, "the echo and the close", |_| out.borrow().2.is_some());
        let o = out.borrow();
        (o.0.clone(), o.1, o.2.clone())
    };
    assert_eq!(got, b"over unix");
    assert!(eof, "the server's close_notify is eof_received");
    assert_eq!(lost, Some(DisconnectReason::Clean));
}
