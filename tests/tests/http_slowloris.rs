//! Slowloris against the HTTP server: clients that drip a request head one byte at a time are
//! answered 408 and closed at the header deadline (not before), while a well-behaved client's
//! requests on the same reactor keep a p99 latency under 50 ms (the figure the issue asks for).

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use http::StatusCode;
use torsion_protocols::http::{text, Handler, HttpConfig, HttpCtx, HttpServer, Request};
use torsion_tests::{Server, WAIT};

struct Hello;

impl Handler for Hello {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, _request: Request) {
        let _ = hx.respond(text(StatusCode::OK, "Hello, World!"));
    }
}

const DEADLINE: Duration = Duration::from_secs(2);
const DRIPPERS: usize = 20;

#[test]
fn load_slowloris_drip_is_closed_at_the_header_deadline_while_others_are_served() {
    let server = Server::start(|| {
        HttpServer::new(|_| Hello).with_config(HttpConfig::default().header_timeout(DEADLINE))
    });
    let drippers: Vec<_> = (0..DRIPPERS)
        .map(|_| {
            let mut s = server.connect();
            std::thread::spawn(move || {
                let start = Instant::now();
                s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Drip: ").unwrap();
                // The read timeout paces the drip: one byte per 50 ms until the server answers.
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                loop {
                    assert!(start.elapsed() < WAIT, "the dripping client was never cut off");
                    if s.write_all(b"a").is_err() {
                        break;
                    }
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                (start.elapsed(), String::from_utf8_lossy(&got).into_owned())
            })
        })
        .collect();

    // Meanwhile: a keep-alive client, one request at a time, for as long as the drip lasts.
    let mut client = server.connect();
    let mut latencies = Vec::new();
    let mut buf = [0u8; 1024];
    let begin = Instant::now();
    while begin.elapsed() < DEADLINE + Duration::from_millis(500) {
        let t = Instant::now();
        client.write_all(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"Hello, World!") {
            let n = client.read(&mut buf).expect("a response");
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
        latencies.push(t.elapsed());
    }
    for d in drippers {
        let (elapsed, got) = d.join().unwrap();
        assert!(elapsed >= DEADLINE, "cut off before the deadline: {elapsed:?}");
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 408 "), "{got:?}");
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!("{} requests beside {DRIPPERS} dripping clients: p99 {p99:?}", latencies.len());
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?} over {} requests", latencies.len());
}
