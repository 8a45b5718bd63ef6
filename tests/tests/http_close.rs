//! How the HTTP server's connections end after a close: a client that asked to close
//! (`Connection: close`) and whose input was all read gets the response, FIN, and the socket
//! closed at once, not lingering until its FIN; when input is left unread, or the server is
//! the one that decided to close, the socket lingers (draining input until the client's FIN),
//! so unread input cannot turn the close into a reset.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, CONNECTION};
use http::StatusCode;
use torsion_protocols::http::{text, Handler, HttpCtx, HttpServer, Request};
use torsion_reactor::Reactor;
use torsion_tests::{connect, run_until, AnyStream, Kind};

/// `/bye` is answered with `Connection: close` (the server closes); anything else with `hi`.
struct Hi;

impl Handler for Hi {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        let mut response = text(StatusCode::OK, "hi");
        if request.uri().path() == "/bye" {
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let _ = hx.respond(response);
    }
}

/// Sends `request` from a client thread, reads to EOF and, without closing (no FIN), reports
/// what it read and hands its socket back; then checks the server's socket count: `lingering`
/// says whether the server's socket is still there while the client holds its end open. The
/// client's socket is dropped at the end, and the lingering one goes at its FIN.
fn exchange(request: &'static [u8], lingering: bool) -> String {
    let mut reactor = Reactor::new().unwrap();
    let addr = "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into();
    let _port = HttpServer::new(|_| Hi).listen(&mut reactor, &addr).expect("listen");
    let addr = _port.local_addr().clone();
    let (tx, rx) = mpsc::channel::<(std::io::Result<Vec<u8>>, AnyStream)>();
    std::thread::spawn(move || {
        let mut stream = connect(Kind::Tcp, &addr);
        stream.write_all(request).unwrap();
        let mut got = Vec::new();
        let read = stream.read_to_end(&mut got).map(|_| got);
        tx.send((read, stream)).unwrap();
    });
    let mut done = None;
    run_until(&mut reactor, "the client read the response and EOF", |_| {
        if let Ok(d) = rx.try_recv() {
            done = Some(d);
        }
        done.is_some()
    });
    let (read, held_open) = done.unwrap();
    let got = String::from_utf8(read.expect("the response and a clean EOF (no reset)")).unwrap();
    if lingering {
        // A while later the socket is still there, waiting for the client's FIN.
        reactor.run_until(Duration::from_millis(50), |_| false).unwrap();
        assert_eq!(reactor.source_count(), 2, "the server socket lingers for the client's FIN: {got}");
        drop(held_open);
        run_until(&mut reactor, "the lingering socket to go at the FIN", |r| r.source_count() == 1);
    } else {
        let since = Instant::now();
        run_until(&mut reactor, "the server socket to close", |r| r.source_count() == 1);
        // Lingering would keep it until the client's FIN or the 5 s limit.
        assert!(since.elapsed() < Duration::from_secs(2), "closed after {:?}", since.elapsed());
        drop(held_open);
    }
    assert_eq!(reactor.timer_count(), 0, "no lingering timer left");
    got
}

#[test]
fn a_client_close_read_to_its_end_closes_without_lingering() {
    let got = exchange(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false);
    assert!(got.contains("connection: close\r\n") && got.ends_with("hi"), "{got}");
}

#[test]
fn an_http10_request_with_a_body_read_to_its_end_closes_without_lingering() {
    let got = exchange(b"POST /a HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", false);
    assert!(got.contains("connection: close\r\n") && got.ends_with("hi"), "{got}");
}

#[test]
fn input_left_after_the_close_request_lingers() {
    let got = exchange(
        b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n",
        true,
    );
    assert!(got.ends_with("hi") && got.matches("HTTP/1.1 200").count() == 1, "{got}");
}

#[test]
fn a_close_decided_by_the_server_lingers() {
    let got = exchange(b"GET /bye HTTP/1.1\r\nHost: a\r\n\r\n", true);
    assert!(got.contains("connection: close\r\n") && got.ends_with("hi"), "{got}");
}
