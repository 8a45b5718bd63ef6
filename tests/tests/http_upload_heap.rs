//! Flow control of HTTP request bodies, with heap figures: a 1 GiB upload to a handler that
//! consumes slowly (it pauses the body after every 4 MiB and resumes from a timer 1 ms later)
//! keeps the server's live heap bounded: pausing the body stops the socket being read, so TCP
//! pushes back on the client instead of the server buffering.
//!
//! The heap figure comes from a counting global allocator (`cap`) for this test binary.

use std::alloc::System;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cap::Cap;
use http::StatusCode;
use torsion_protocols::http::{text, Handler, HttpConfig, HttpCtx, HttpServer, Request, RequestId};
use torsion_reactor::TimerId;
use torsion_tests::{connect, serial, Kind, ReactorThread};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const GIB: u64 = 1 << 30;
const PAUSE_EVERY: u64 = 4 << 20;
/// The live heap may grow by this much over its level at the start of the upload.
const BOUND: isize = 16 << 20;

/// Counts the body, pausing it every [`PAUSE_EVERY`] bytes for a millisecond; records the
/// highest live heap seen over `start`.
struct SlowSink {
    id: Option<RequestId>,
    got: u64,
    next_pause: u64,
    timer: Option<TimerId>,
    start: isize,
    peak: Arc<AtomicIsize>,
}

impl Handler for SlowSink {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, _request: Request) {
        self.id = hx.request_id();
        self.start = ALLOCATOR.allocated() as isize;
    }
    fn body(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
        self.got += data.len() as u64;
        self.peak.fetch_max(ALLOCATOR.allocated() as isize - self.start, Ordering::Relaxed);
        if self.got >= self.next_pause {
            self.next_pause += PAUSE_EVERY;
            hx.pause_body();
            self.timer = Some(hx.set_timer(Duration::from_millis(1)));
        }
    }
    fn end(&mut self, hx: &mut HttpCtx<'_, '_>) {
        let _ = hx.respond(text(StatusCode::OK, self.got.to_string()));
    }
    fn timer_fired(&mut self, hx: &mut HttpCtx<'_, '_>, timer: TimerId) {
        if self.timer == Some(timer) {
            hx.resume_body();
        }
    }
}

#[test]
fn load_http_1gib_upload_to_a_slow_handler_keeps_the_heap_bounded() {
    let _serial = serial();
    let peak = Arc::new(AtomicIsize::new(0));
    let peak_in = peak.clone();
    let (reactor, addr) = ReactorThread::start(move |reactor| {
        let peak = peak_in.clone();
        let server = HttpServer::new(move |_| SlowSink {
            id: None,
            got: 0,
            next_pause: PAUSE_EVERY,
            timer: None,
            start: 0,
            peak: peak.clone(),
        })
        .with_config(HttpConfig::default().max_body_size(None));
        let addr = "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into();
        server.listen(reactor, &addr).expect("listen").local_addr().clone()
    });
    let mut s = connect(Kind::Tcp, &addr);
    s.write_all(format!("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {GIB}\r\n\r\n").as_bytes()).unwrap();
    let block = vec![b'u'; 256 * 1024];
    for _ in 0..GIB / block.len() as u64 {
        s.write_all(&block).expect("upload (bounded by the write timeout)");
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.ends_with(GIB.to_string().as_bytes()) {
        let n = s.read(&mut buf).expect("the response");
        assert!(n > 0, "closed before the response");
        out.extend_from_slice(&buf[..n]);
    }
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("live heap peak over the start of a 1 GiB upload: {} KiB", peak >> 10);
    assert!(peak < BOUND, "live heap grew by {} MiB during the upload", peak >> 20);
    drop(s);
    reactor.stop();
}
