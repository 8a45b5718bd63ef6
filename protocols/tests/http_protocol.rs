//! The HTTP/1.1 protocol on the in-memory harness: framing, pipelining order, keep-alive,
//! 100-continue, timers and the chunk-split invariant over a request stream with bodies.

use std::rc::Rc;
use std::time::Duration;

use http::{Method, StatusCode};
use torsion_protocols::http::{text, Body, Handler, HttpConfig, HttpCtx, HttpProtocol, Request, RequestId};
use torsion_reactor::testing::{assert_chunking_invariant, Harness};
use torsion_reactor::{ConnId, TimerId};

/// `GET /x` → `x`; `POST` → the whole body back; `GET /slow` answered 1 s later from a timer;
/// `GET /stream` → a chunked streamed body of three pieces.
#[derive(Default)]
struct Test {
    slow: Vec<(TimerId, RequestId)>,
    post: bool,
}

impl Handler for Test {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        let id = hx.request_id().unwrap();
        self.post = request.method() == Method::POST;
        match (request.method().clone(), request.uri().path()) {
            (Method::POST, _) => hx.buffer_body(),
            (_, "/slow") => {
                let timer = hx.set_timer(Duration::from_secs(1));
                self.slow.push((timer, id));
            }
            (_, "/stream") => {
                let mut r = http::Response::new(Body::Stream { length: None });
                *r.status_mut() = StatusCode::OK;
                hx.respond(r).unwrap();
                for piece in ["one", "two", "three"] {
                    hx.write_body(id, piece.as_bytes()).unwrap();
                }
                hx.end_body(id).unwrap();
            }
            (_, path) => hx.respond(text(StatusCode::OK, path[1..].to_owned())).unwrap(),
        }
    }

    fn body(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
        hx.respond(text(StatusCode::OK, data.to_vec())).unwrap();
    }

    fn end(&mut self, hx: &mut HttpCtx<'_, '_>) {
        // A POST with an empty body got no `body` call (otherwise this is refused: answered).
        if self.post {
            let _ = hx.respond(text(StatusCode::OK, Vec::new()));
        }
    }

    fn timer_fired(&mut self, hx: &mut HttpCtx<'_, '_>, timer: TimerId) {
        if let Some(i) = self.slow.iter().position(|&(t, _)| t == timer) {
            let (_, id) = self.slow.remove(i);
            hx.respond_to(id, text(StatusCode::OK, "slow")).unwrap();
        }
    }
}

fn server(h: &mut Harness, config: HttpConfig) -> ConnId {
    let config = Rc::new(config);
    h.accept(&mut move |_| Some(HttpProtocol::new(Test::default(), config.clone()))).unwrap()
}

/// The responses in `out`, each as (status line, body), with `Date` left out.
fn responses(out: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(out).into_owned();
    let mut rest = text.as_str();
    let mut got = Vec::new();
    while let Some(end) = rest.find("\r\n\r\n") {
        let head = &rest[..end];
        rest = &rest[end + 4..];
        let status = head.lines().next().unwrap_or("").to_owned();
        let lower = head.to_ascii_lowercase();
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|v| v.trim().parse::<usize>().unwrap());
        let body = if let Some(n) = length {
            let b = rest[..n].to_owned();
            rest = &rest[n..];
            b
        } else if lower.contains("transfer-encoding: chunked") {
            let mut body = String::new();
            loop {
                let line_end = rest.find("\r\n").unwrap();
                let size = usize::from_str_radix(&rest[..line_end], 16).unwrap();
                rest = &rest[line_end + 2..];
                if size == 0 {
                    rest = &rest[2..];
                    break;
                }
                body.push_str(&rest[..size]);
                rest = &rest[size + 2..];
            }
            body
        } else {
            String::new()
        };
        got.push((status, body));
    }
    got
}

#[test]
fn keep_alive_get_and_post_on_one_connection() {
    let mut h = Harness::new();
    let id = server(&mut h, HttpConfig::default());
    h.feed(id, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    h.feed(id, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    let out = h.take_written(id);
    assert_eq!(
        responses(&out),
        vec![("HTTP/1.1 200 OK".into(), "hello".into()), ("HTTP/1.1 200 OK".into(), "hello".into())]
    );
    assert!(h.is_open(id) && !h.fin_sent(id));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("server: torsion\r\n") && text.contains("date: "), "{text}");
}

#[test]
fn pipelined_responses_keep_request_order_behind_a_slow_one() {
    let mut h = Harness::new();
    let id = server(&mut h, HttpConfig::default());
    h.feed(id, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(responses(&h.take_written(id)), vec![("HTTP/1.1 200 OK".into(), "a".into())]);
    h.advance(Duration::from_secs(1));
    let got: Vec<String> = responses(&h.take_written(id)).into_iter().map(|r| r.1).collect();
    assert_eq!(got, ["slow", "c"]);
}

#[test]
fn chunked_upload_and_streamed_chunked_response() {
    let mut h = Harness::new();
    let id = server(&mut h, HttpConfig::default());
    h.feed(id, b"POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n");
    h.feed(id, b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    let got: Vec<String> = responses(&h.take_written(id)).into_iter().map(|r| r.1).collect();
    assert_eq!(got, ["abcde", "onetwothree"]);
}

#[test]
fn connection_close_and_http10() {
    let mut h = Harness::new();
    let id = server(&mut h, HttpConfig::default());
    h.feed(
        id,
        b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let out = String::from_utf8(h.take_written(id)).unwrap();
    assert!(out.contains("connection: close\r\n") && !out.contains("never"), "{out}");
    assert!(h.fin_sent(id));

    let id = server(&mut h, HttpConfig::default());
    h.feed(id, b"GET /a HTTP/1.0\r\n\r\n");
    assert!(h.fin_sent(id), "1.0 without keep-alive closes");
    let id = server(&mut h, HttpConfig::default());
    h.feed(id, b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let out = String::from_utf8(h.take_written(id)).unwrap();
    assert!(out.contains("connection: keep-alive\r\n") && !h.fin_sent(id), "{out}");
    h.feed(id, b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let out = String::from_utf8(h.take_written(id)).unwrap();
    assert!(
        !out.contains("chunked") && out.ends_with("onetwothree") && h.fin_sent(id),
        "close-delimited: {out}"
    );
}

#[test]
fn head_gets_headers_only() {
    let mut h = Harness::new();
    let id = server(&mut h, HttpConfig::default());
    h.feed(id, b"HEAD /abc HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    let out = String::from_utf8(h.take_written(id)).unwrap();
    let first = &out[..out.find("\r\n\r\n").unwrap() + 4];
    assert!(first.contains("content-length: 3\r\n"), "{first}");
    assert!(out[first.len()..].starts_with("HTTP/1.1 200 OK"), "no body after HEAD: {out}");
}

#[test]
fn expect_continue_is_answered_before_the_body() {
    let mut h = Harness::new();
    let id = server(&mut h, HttpConfig::default());
    h.feed(id, b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(h.take_written(id), b"HTTP/1.1 100 Continue\r\n\r\n");
    h.feed(id, b"abc");
    assert_eq!(responses(&h.take_written(id)), vec![("HTTP/1.1 200 OK".into(), "abc".into())]);
    // Over the body limit: refused with 413 before any 100.
    let id = server(&mut h, HttpConfig::default().max_body_size(Some(2)));
    h.feed(id, b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    let out = String::from_utf8(h.take_written(id)).unwrap();
    assert!(out.starts_with("HTTP/1.1 413 ") && h.fin_sent(id), "{out}");
}

#[test]
fn idle_and_header_timeouts() {
    let mut h = Harness::new();
    let config = || {
        HttpConfig::default().idle_timeout(Duration::from_secs(60)).header_timeout(Duration::from_secs(10))
    };
    let idle = server(&mut h, config());
    let drip = server(&mut h, config());
    h.feed(drip, b"GET / HTTP/1.1\r\n");
    h.advance(Duration::from_secs(11));
    let out = String::from_utf8(h.take_written(drip)).unwrap();
    assert!(out.starts_with("HTTP/1.1 408 ") && h.fin_sent(drip), "{out}");
    assert!(!h.fin_sent(idle), "an idle connection is not charged the header deadline");
    h.advance(Duration::from_secs(50));
    assert!(h.fin_sent(idle), "closed at the idle timeout");
}

#[test]
fn response_timeout_answers_503() {
    let mut h = Harness::new();
    let id = server(&mut h, HttpConfig::default().response_timeout(Some(Duration::from_millis(500))));
    h.feed(id, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
    h.advance(Duration::from_millis(600));
    let out = String::from_utf8(h.take_written(id)).unwrap();
    assert!(out.starts_with("HTTP/1.1 503 ") && h.fin_sent(id), "{out}");
}

/// The same requests give the same responses at every split of the input, down to one byte.
#[test]
fn chunk_split_sweep_over_a_request_stream_with_bodies() {
    let input: &[u8] = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n\
POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world\
POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=\"q v\"\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n\
OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n\
GET /stream HTTP/1.1\r\nHost: a\r\n\r\n\
GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    assert_chunking_invariant(input, 24, 16, |pieces| {
        let mut h = Harness::new();
        let id = server(&mut h, HttpConfig::default());
        let mut out = Vec::new();
        for piece in pieces {
            h.feed(id, piece);
            out.extend(h.take_written(id));
        }
        (responses(&out), h.fin_sent(id))
    });
    let mut h = Harness::new();
    let id = server(&mut h, HttpConfig::default());
    h.feed(id, input);
    let bodies: Vec<String> = responses(&h.take_written(id)).into_iter().map(|r| r.1).collect();
    assert_eq!(bodies, ["first", "hello world", "wikipedia", "", "onetwothree", "last"]);
}

/// Requests are read ahead only up to the pipeline bound; the rest wait (unread) until
/// answers retire the ones before them.
#[test]
fn read_ahead_stops_at_the_pipeline_bound() {
    let mut h = Harness::new();
    let id = server(&mut h, HttpConfig::default().max_pipeline(2));
    let mut raw = Vec::new();
    for _ in 0..5 {
        raw.extend_from_slice(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
    }
    h.feed(id, &raw);
    assert!(h.take_written(id).is_empty());
    let mut answered = 0;
    for _ in 0..5 {
        h.advance(Duration::from_secs(1));
        let n = responses(&h.take_written(id)).len();
        // Never more than the bound answered per second: only 2 were read ahead at a time.
        assert!(n <= 2, "{n} answered in one second with a bound of 2");
        answered += n;
    }
    h.advance(Duration::from_secs(1));
    answered += responses(&h.take_written(id)).len();
    assert_eq!(answered, 5);
}

/// After a 101, the connection is the handler's: the bytes after the upgrade request (already
/// read with it, and later ones) arrive raw in `upgraded`.
#[test]
fn upgrade_hands_the_raw_connection_to_the_handler() {
    struct Upgrading;
    impl Handler for Upgrading {
        fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
            assert_eq!(request.headers()["upgrade"], "echo");
            let mut r = http::Response::new(Body::Empty);
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("upgrade", http::HeaderValue::from_static("echo"));
            r.headers_mut().insert("connection", http::HeaderValue::from_static("upgrade"));
            hx.respond(r).unwrap();
        }
        fn upgraded(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
            hx.ctx().transport().write(&data.to_ascii_uppercase());
        }
    }
    let mut h = Harness::new();
    let config = Rc::new(HttpConfig::default());
    let id = h.accept(&mut move |_| Some(HttpProtocol::new(Upgrading, config.clone()))).unwrap();
    h.feed(id, b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\nearly GET / HTTP/1.1\r\n");
    let out = String::from_utf8(h.take_written(id)).unwrap();
    assert!(out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{out}");
    assert!(out.contains("connection: upgrade\r\n") && !out.contains("content-length"), "{out}");
    assert!(out.ends_with("\r\n\r\nEARLY GET / HTTP/1.1\r\n"), "{out}");
    h.feed(id, b"more");
    assert_eq!(h.take_written(id), b"MORE");
}

/// A handler that pauses the body (flow control) gets the rest after resuming, and its `end`
/// even when the body ended exactly at a pause.
#[test]
fn paused_body_resumes_and_ends() {
    struct Sink {
        got: u64,
        next: u64,
        timer: Option<TimerId>,
    }
    impl Handler for Sink {
        fn request(&mut self, _hx: &mut HttpCtx<'_, '_>, _request: Request) {}
        fn body(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
            self.got += data.len() as u64;
            if self.got >= self.next {
                self.next += 1 << 20;
                hx.pause_body();
                self.timer = Some(hx.set_timer(Duration::from_millis(1)));
            }
        }
        fn end(&mut self, hx: &mut HttpCtx<'_, '_>) {
            hx.respond(text(StatusCode::OK, self.got.to_string())).unwrap();
        }
        fn timer_fired(&mut self, hx: &mut HttpCtx<'_, '_>, timer: TimerId) {
            if self.timer == Some(timer) {
                hx.resume_body();
            }
        }
    }
    let mut h = Harness::new();
    let config = Rc::new(HttpConfig::default().max_body_size(None));
    let id = h
        .accept(&mut move |_| {
            Some(HttpProtocol::new(Sink { got: 0, next: 1 << 20, timer: None }, config.clone()))
        })
        .unwrap();
    let total = 10u64 << 20; // a multiple of the pause step: the body ends at a pause
    h.feed(id, format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {total}\r\n\r\n").as_bytes());
    let block = vec![b'x'; 300_000];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(block.len() as u64) as usize;
        h.feed(id, &block[..n]);
        sent += n as u64;
        h.advance(Duration::from_millis(2));
    }
    h.advance(Duration::from_millis(2));
    let out = String::from_utf8(h.take_written(id)).unwrap();
    assert!(out.ends_with(&total.to_string()), "{out}");
}

/// `Connection: close` from the handler's side: the response says so, and the server closes
/// after it without reading the next request.
#[test]
fn connection_close_from_the_handler() {
    struct Closing;
    impl Handler for Closing {
        fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
            assert_eq!(request.uri().path(), "/", "a request after the close was read");
            let mut r = text(StatusCode::OK, "bye");
            r.headers_mut().insert("connection", http::HeaderValue::from_static("close"));
            hx.respond(r).unwrap();
        }
    }
    let mut h = Harness::new();
    let config = Rc::new(HttpConfig::default());
    let id = h.accept(&mut move |_| Some(HttpProtocol::new(Closing, config.clone()))).unwrap();
    h.feed(id, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    let out = String::from_utf8(h.take_written(id)).unwrap();
    assert_eq!(out.matches("HTTP/1.1 200").count(), 1, "{out}");
    assert!(out.contains("connection: close\r\n") && h.fin_sent(id), "{out}");
}

/// A streamed response waiting behind a slow one is told to stop once ~64 KiB are held for it
/// (not buffered without bound), and hears `writable` when its turn comes.
#[test]
fn held_streaming_output_is_bounded_and_resumed() {
    const TOTAL: usize = 1 << 20;
    const PIECE: usize = 16 * 1024;
    #[derive(Default)]
    struct Streamer {
        slow: Option<(TimerId, RequestId)>,
        big: Option<RequestId>,
        written: usize,
        most_held: usize,
    }
    impl Streamer {
        fn pump(&mut self, hx: &mut HttpCtx<'_, '_>) {
            let Some(id) = self.big else { return };
            while self.written < TOTAL {
                self.written += PIECE;
                if hx.write_body(id, &[b'b'; PIECE]).unwrap() {
                    break;
                }
            }
            if self.written >= TOTAL {
                hx.end_body(id).unwrap();
                self.big = None;
            }
        }
    }
    impl Handler for Streamer {
        fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
            let id = hx.request_id().unwrap();
            if request.uri().path() == "/slow" {
                self.slow = Some((hx.set_timer(Duration::from_secs(1)), id));
            } else {
                hx.respond(http::Response::new(Body::Stream { length: Some(TOTAL as u64) })).unwrap();
                self.big = Some(id);
                self.pump(hx);
                self.most_held = self.written;
            }
        }
        fn timer_fired(&mut self, hx: &mut HttpCtx<'_, '_>, _timer: TimerId) {
            if let Some((_, id)) = self.slow.take() {
                hx.respond_to(id, text(StatusCode::OK, "slow")).unwrap();
            }
        }
        fn writable(&mut self, hx: &mut HttpCtx<'_, '_>) {
            self.pump(hx);
        }
    }
    let mut h = Harness::new();
    let config = Rc::new(HttpConfig::default());
    let written = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let seen = written.clone();
    struct Probe(Streamer, std::rc::Rc<std::cell::Cell<usize>>);
    impl Handler for Probe {
        fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
            self.0.request(hx, request);
            self.1.set(self.0.written);
        }
        fn timer_fired(&mut self, hx: &mut HttpCtx<'_, '_>, timer: TimerId) {
            self.0.timer_fired(hx, timer);
        }
        fn writable(&mut self, hx: &mut HttpCtx<'_, '_>) {
            self.0.writable(hx);
            self.1.set(self.0.written);
        }
    }
    let id = h
        .accept(&mut move |_| {
            Some(HttpProtocol::new(Probe(Streamer::default(), seen.clone()), config.clone()))
        })
        .unwrap();
    h.feed(id, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /big HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(written.get() <= 64 * 1024 + PIECE, "held {} bytes behind the slow response", written.get());
    h.advance(Duration::from_secs(1));
    let mut out = Vec::new();
    loop {
        let got = h.take_written(id);
        if got.is_empty() {
            break;
        }
        out.extend(got);
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{}", &text[..100]);
    // The slow response first, then the second head, then the whole streamed body.
    let slow_end = text.find("slow").unwrap() + 4;
    let body_start = slow_end + text[slow_end..].find("\r\n\r\n").unwrap() + 4;
    assert_eq!(out.len() - body_start, TOTAL);
    assert!(out[body_start..].iter().all(|&b| b == b'b'));
}
