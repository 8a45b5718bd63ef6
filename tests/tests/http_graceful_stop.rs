//! The HTTP server's graceful stop with a response still to be made: the reactor stops while a
//! handler has a request whose answer comes later from a timer; the answer is still written in
//! full, then the connection closes and `run()` returns. An idle keep-alive connection beside
//! it is closed at once.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use http::StatusCode;
use torsion_protocols::http::{text, Handler, HttpCtx, HttpServer, Request, RequestId};
use torsion_reactor::TimerId;
use torsion_tests::{connect, recv, Kind, ReactorThread};

/// `/slow` is answered 300 ms later from a timer; the request's arrival is reported.
struct Slow {
    seen: mpsc::Sender<()>,
    pending: Option<(TimerId, RequestId)>,
}

impl Handler for Slow {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        if request.uri().path() == "/slow" {
            let timer = hx.set_timer(Duration::from_millis(300));
            self.pending = Some((timer, hx.request_id().unwrap()));
            let _ = self.seen.send(());
        } else {
            let _ = hx.respond(text(StatusCode::OK, "quick"));
        }
    }
    fn timer_fired(&mut self, hx: &mut HttpCtx<'_, '_>, timer: TimerId) {
        if let Some((t, id)) = self.pending.take() {
            assert_eq!(t, timer);
            let _ = hx.respond_to(id, text(StatusCode::OK, "finished after the stop began"));
        }
    }
}

#[test]
fn a_response_in_flight_is_finished_and_idle_connections_close_at_once() {
    let (seen_tx, seen) = mpsc::channel();
    let (reactor, addr) = ReactorThread::start(move |reactor| {
        let seen_tx = seen_tx.clone();
        let server = HttpServer::new(move |_| Slow { seen: seen_tx.clone(), pending: None });
        let addr = "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into();
        server.listen(reactor, &addr).expect("listen").local_addr().clone()
    });
    let mut idle = connect(Kind::Tcp, &addr);
    idle.write_all(b"GET /q HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("quick"));

    let mut busy = connect(Kind::Tcp, &addr);
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    recv(&seen, "the /slow request to reach the handler");

    reactor.handle.stop();
    // The idle connection closes without waiting for the slow response.
    assert_eq!(idle.read(&mut buf).unwrap(), 0, "idle keep-alive connection closed");
    drop(idle);
    let mut out = Vec::new();
    busy.read_to_end(&mut out).expect("the response, then EOF");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.ends_with("finished after the stop began"), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");
    drop(busy);
    reactor.join("run() to return after the graceful stop");
}
