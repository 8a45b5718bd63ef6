//! HTTP/1.1 pipelining over loopback: 100 requests in one write are answered in order, past
//! the read-ahead bound; a request answered late (from another thread's call, through a
//! `Responder`) holds back every response after it.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use http::StatusCode;
use torsion_protocols::http::{text, Handler, HttpConfig, HttpCtx, HttpServer, Request, Responder};
use torsion_tests::{AnyStream, Server, WAIT};

thread_local! {
    /// The responder of the request held back, on the reactor's thread.
    static HELD: RefCell<Option<Responder>> = const { RefCell::new(None) };
}

/// Answers `/N` with `N` at once; `/hold` waits until the test releases it.
struct Numbers;

impl Handler for Numbers {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        let path = request.uri().path().to_owned();
        if path == "/hold" {
            HELD.with(|h| *h.borrow_mut() = hx.responder());
        } else {
            let _ = hx.respond(text(StatusCode::OK, path[1..].to_owned()));
        }
    }
}

/// Reads responses (all with `Content-Length`) until `n` bodies are in.
fn read_bodies(s: &mut AnyStream, buf: &mut Vec<u8>, n: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        // Parse what is complete.
        while let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if buf.len() < end + 4 + len {
                break;
            }
            bodies.push(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
            buf.drain(..end + 4 + len);
        }
        if bodies.len() >= n {
            return bodies;
        }
        let got = s.read(&mut chunk).expect("read (bounded by the stream's timeout)");
        assert!(got > 0, "closed after {} responses", bodies.len());
        buf.extend_from_slice(&chunk[..got]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn hundred_requests_in_one_write_answered_in_order() {
    let server =
        Server::start(|| HttpServer::new(|_| Numbers).with_config(HttpConfig::default().max_pipeline(16)));
    let mut s = server.connect();
    let mut raw = String::new();
    for i in 0..100 {
        raw.push_str(&format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
    s.write_all(raw.as_bytes()).unwrap();
    let bodies = read_bodies(&mut s, &mut Vec::new(), 100);
    let want: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(bodies, want);
}

#[test]
fn a_slow_answer_holds_the_later_ones() {
    let server = Server::start(|| HttpServer::new(|_| Numbers));
    let mut s = server.connect();
    let mut raw = String::new();
    for i in 0..10 {
        raw.push_str(&format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
    raw.push_str("GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");
    for i in 11..20 {
        raw.push_str(&format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let first = read_bodies(&mut s, &mut buf, 10);
    assert_eq!(first, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    // Nothing more while /hold is unanswered: later answers wait behind it. (A quiet period,
    // not a timing assertion: a slow machine only makes it quieter.)
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut probe = [0u8; 1024];
    match s.read(&mut probe) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected no bytes while /hold is pending, got {other:?} {:?}", buf),
    }
    assert!(buf.is_empty(), "a later response overtook /hold: {:?}", String::from_utf8_lossy(&buf));
    s.set_read_timeout(Some(WAIT)).unwrap();
    server.handle.call_from_thread(|lx| {
        let responder = HELD.with(|h| h.borrow_mut().take()).expect("the held request");
        assert!(responder.respond(lx, text(StatusCode::OK, "held")));
    });
    let rest = read_bodies(&mut s, &mut buf, 10);
    let mut want = vec!["held".to_owned()];
    want.extend((11..20).map(|i| i.to_string()));
    assert_eq!(rest, want);
}
