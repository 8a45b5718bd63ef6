//! Bad input on TLS (issue 11): plaintext HTTP to the TLS port, random bytes, a truncated
//! ClientHello, a client leaving mid-handshake, a missing client certificate; on the client
//! side an expired, wrong-host or self-signed certificate. Each is a typed reason (the rustls
//! error inside), the server keeps serving others, and after 1,000 such connections the
//! descriptors and the heap (counting allocator) are back to their baseline.

use std::alloc::System;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Arc;

use cap::Cap;
use torsion_reactor::rustls::{self, CertificateError};
use torsion_reactor::{
    client_factory, Address, Ctx, DisconnectReason, Error, Factory, Protocol, Reactor, TlsFailure,
};
use torsion_tests::tls::{blocking_client, localhost_name, tls_server, Pki};
use torsion_tests::{fd_count, recv, run_until, wait_for};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

/// Builds echoes and reports every failed handshake's reason.
struct Reporting {
    tx: mpsc::Sender<DisconnectReason>,
}

impl Factory for Reporting {
    fn build_protocol(&mut self, _peer: Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Echo))
    }

    fn handshake_failed(&mut self, _peer: Address, reason: &DisconnectReason) {
        let _ = self.tx.send(reason.clone());
    }
}

fn server(
    config: Arc<rustls::ServerConfig>,
) -> (torsion_tests::ReactorThread, Address, mpsc::Receiver<DisconnectReason>) {
    let (tx, rx) = mpsc::channel();
    let (server, addr) = tls_server(config, |_| {}, move || Reporting { tx });
    (server, addr, rx)
}

fn raw(addr: &Address) -> TcpStream {
    let Address::Inet(inet) = addr else { unreachable!() };
    let s = TcpStream::connect(inet).unwrap();
    s.set_read_timeout(Some(torsion_tests::WAIT)).unwrap();
    s
}

/// A real ClientHello, from a rustls client.
fn client_hello(pki: &Pki) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(pki.client_config(), localhost_name()).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Sends `bytes`, half-closes, and reads until the server closes (an alert may come first).
fn send_and_wait_close(addr: &Address, bytes: &[u8]) -> Vec<u8> {
    let mut s = raw(addr);
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

fn is_handshake_error(reason: &DisconnectReason) -> bool {
    matches!(reason, DisconnectReason::Tls(TlsFailure::Handshake(_)))
}

/// Each kind of bad client gets its own typed reason, an alert where TLS has one, and the
/// server still serves a good client afterwards.
#[test]
fn bad_clients_get_typed_reasons_and_the_server_keeps_serving() {
    let pki = Pki::new();
    let (_server, addr, rx) = server(pki.server_config());

    // Plaintext HTTP: not a TLS record. rustls answers with an alert record (content type 21).
    let reply = send_and_wait_close(&addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let reason = recv(&rx, "plaintext HTTP");
    assert!(is_handshake_error(&reason), "{reason:?}");
    assert_eq!(reply.first(), Some(&21), "a TLS alert, not silence: {reply:?}");

    // Random bytes.
    let garbage: Vec<u8> = torsion_tests::pattern(7, 4096);
    send_and_wait_close(&addr, &garbage);
    let reason = recv(&rx, "random bytes");
    assert!(is_handshake_error(&reason), "{reason:?}");

    // A truncated ClientHello, then the client leaves: closed during the handshake.
    let hello = client_hello(&pki);
    send_and_wait_close(&addr, &hello[..hello.len() / 2]);
    assert_eq!(recv(&rx, "truncated ClientHello"), DisconnectReason::Tls(TlsFailure::ClosedDuringHandshake));

    // A client that sends its whole ClientHello and leaves without reading the answer.
    send_and_wait_close(&addr, &hello);
    assert_eq!(
        recv(&rx, "client leaving mid-handshake"),
        DisconnectReason::Tls(TlsFailure::ClosedDuringHandshake)
    );

    // The server still serves a good client.
    let mut good = blocking_client(&addr, pki.client_config()).expect("handshake");
    good.write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    good.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still here");
}

/// `handshake_failed` reaches a factory wrapped in the shipped policy factories.
#[test]
fn wrapped_factories_forward_handshake_failed() {
    use torsion_protocols::policies::{LimitConnectionsFactory, ThrottlingFactory, TimeoutFactory};
    let pki = Pki::new();
    let (tx, rx) = mpsc::channel();
    let (_server, addr) = tls_server(
        pki.server_config(),
        |_| {},
        move || LimitConnectionsFactory::new(ThrottlingFactory::new(TimeoutFactory::new(Reporting { tx }))),
    );
    send_and_wait_close(&addr, b"GET / HTTP/1.0\r\n\r\n");
    assert!(is_handshake_error(&recv(&rx, "the wrapped factory's handshake_failed")));
}

/// A server that requires client certificates refuses a client without one, with a typed
/// reason.
#[test]
fn a_missing_client_certificate_is_refused_when_required() {
    let pki = Pki::new();
    let (_server, addr, rx) = server(pki.server_config_mtls());
    // TLS 1.3: the client's handshake completes before it learns of the refusal; its first
    // read then sees the alert (`certificate_required`, sent under the handshake keys while the
    // client's Certificate and Finished, one flight, are being processed).
    if let Ok(mut client) = blocking_client(&addr, pki.client_config()) {
        let _ = client.write_all(b"x");
        let mut buf = [0u8; 1];
        let err = client.read(&mut buf).expect_err("the server refused us");
        let alert = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(
                alert,
                Some(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired))
            ),
            "the server's alert, not a bare close: {err:?}"
        );
    }
    let reason = recv(&rx, "missing client certificate");
    assert!(
        matches!(
            &reason,
            DisconnectReason::Tls(TlsFailure::Handshake(rustls::Error::NoCertificatesPresented))
        ),
        "{reason:?}"
    );
}

/// Torsion's client refuses servers presenting an expired, wrong-host or self-signed
/// certificate: `client_connection_failed` gets `Error::Tls` with the rustls error.
#[test]
fn the_client_refuses_bad_server_certificates() {
    let pki = Pki::new();
    for (cert, what) in
        [(&pki.expired, "expired"), (&pki.wrong_host, "wrong host"), (&pki.self_signed, "self-signed")]
    {
        let (_server, addr, _rx) = server(pki.server_config_for(cert));
        let failed = std::rc::Rc::new(std::cell::RefCell::new(None));
        let f = failed.clone();
        let factory = client_factory(|_| Echo).on_failure(move |_, e| *f.borrow_mut() = Some(e));
        let mut reactor = Reactor::new().unwrap();
        reactor.connect_tls(addr, localhost_name(), pki.client_config(), factory).unwrap();
        run_until(&mut reactor, what, |_| failed.borrow().is_some());
        let error = failed.borrow_mut().take().unwrap();
        let Error::Tls { source: TlsFailure::Handshake(rustls::Error::InvalidCertificate(e)), .. } = &error
        else {
            panic!("{what}: {error:?}");
        };
        let expected = match what {
            "expired" => matches!(e, CertificateError::Expired | CertificateError::ExpiredContext { .. }),
            "wrong host" => matches!(
                e,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
            _ => matches!(e, CertificateError::UnknownIssuer),
        };
        assert!(expected, "{what}: {e:?}");
    }
}

/// 1,000 bad connections (plaintext, garbage, truncated ClientHellos, early leavers), 50 at a
/// time: descriptors and live heap come back to their baseline, and a good client is served.
#[test]
fn load_a_thousand_bad_connections_leave_no_descriptors_or_heap_behind() {
    let pki = Pki::new();
    let (_server, addr, rx) = server(pki.server_config());
    let hello = client_hello(&pki);
    let garbage = torsion_tests::pattern(9, 1024);
    let inputs: [&[u8]; 4] = [b"GET / HTTP/1.0\r\n\r\n", &garbage, &hello[..hello.len() / 2], &hello];
    let round = |n: usize| {
        let mut streams = Vec::new();
        for i in 0..n {
            let mut s = raw(&addr);
            let _ = s.write_all(inputs[i % inputs.len()]);
            let _ = s.shutdown(std::net::Shutdown::Write);
            streams.push(s);
        }
        for mut s in streams {
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        for _ in 0..n {
            recv(&rx, "a handshake failure");
        }
    };
    // Warm-up: lazily grown tables reach their working size.
    round(50);
    let fds = fd_count();
    let heap = ALLOCATOR.allocated();
    for _ in 0..20 {
        round(50);
    }
    wait_for("descriptors back to baseline", || fd_count() <= fds);
    let grown = ALLOCATOR.allocated().saturating_sub(heap);
    assert!(grown < 256 * 1024, "the live heap grew by {grown} bytes over 1,000 bad connections");
    let mut good = blocking_client(&addr, pki.client_config()).expect("handshake");
    good.write_all(b"ok").unwrap();
    let mut buf = [0u8; 2];
    good.read_exact(&mut buf).unwrap();
    println!("1,000 bad TLS connections: fds back to {fds}, live heap grew {grown} bytes");
}

/// No shared ALPN protocol: the server refuses with a typed reason (and an alert); the client
/// hears `Error::Tls` with rustls' error.
#[test]
fn no_shared_alpn_protocol_is_a_typed_handshake_failure() {
    let pki = Pki::new();
    let mut config = (*pki.server_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let (_server, addr, rx) = server(Arc::new(config));
    let mut client_config = (*pki.client_config()).clone();
    client_config.alpn_protocols = vec![b"torsion/1".to_vec()];
    let failed = std::rc::Rc::new(std::cell::RefCell::new(None));
    let f = failed.clone();
    let factory = client_factory(|_| Echo).on_failure(move |_, e| *f.borrow_mut() = Some(e));
    let mut reactor = Reactor::new().unwrap();
    reactor.connect_tls(addr, localhost_name(), Arc::new(client_config), factory).unwrap();
    run_until(&mut reactor, "the client's failure", |_| failed.borrow().is_some());
    let error = failed.borrow_mut().take().unwrap();
    assert!(matches!(error, Error::Tls { source: TlsFailure::Handshake(_), .. }), "{error:?}");
    let reason = recv(&rx, "the server's failure");
    assert_eq!(reason, DisconnectReason::Tls(TlsFailure::Handshake(rustls::Error::NoApplicationProtocol)));
}

/// The short-read rule inside the TLS layer, on an in-memory socket holding half a ClientHello
/// and the client's FIN. When the connection says a short read may end the read (the poller
/// reported no hang-up, so a FIN arriving later raises a new edge), the read stops after the
/// short read with `WouldBlock` instead of reading the socket again; when it says a hang-up
/// was reported, the read goes on to the FIN and reports the handshake cut short, since no
/// further edge would.
#[test]
fn a_short_read_ends_a_tls_read_unless_a_hang_up_was_reported() {
    use torsion_transports::{MemorySocket, Socket as _, TlsRole, TlsStream};
    let pki = Pki::new();
    let hello = client_hello(&pki);
    let half = &hello[..hello.len() / 2];
    for hang_up_reported in [false, true] {
        let mut socket = MemorySocket::new();
        socket.feed(half);
        socket.feed_eof();
        let role = TlsRole::Server(pki.server_config());
        let mut tls = TlsStream::new(Box::new(socket), &role, Vec::new()).unwrap();
        tls.set_short_read_ends(!hang_up_reported);
        let mut buf = vec![0u8; 64 * 1024];
        let first = tls.read(&mut buf);
        let cut_short = |r: &std::io::Result<usize>| matches!(r, Err(e) if matches!(TlsFailure::from_io(e), Some(TlsFailure::ClosedDuringHandshake)));
        if hang_up_reported {
            assert!(cut_short(&first), "read on to the FIN: {first:?}");
        } else {
            assert!(
                matches!(&first, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "stop after the short read: {first:?}"
            );
            let second = tls.read(&mut buf);
            assert!(cut_short(&second), "the next read (the FIN's edge) finds the FIN: {second:?}");
        }
    }
}
