//! The HTTP/1.1 server's strictness and limits over loopback: a table of raw requests, each
//! with the status it must get and whether the connection must close after it; no request
//! smuggling through a pair of requests in one write; every limit passes at exactly the limit
//! and fails one over with its status.

use std::io::{Read, Write};
use std::net::Shutdown;

use http::StatusCode;
use torsion_protocols::http::{text, Handler, HttpConfig, HttpCtx, HttpServer, Request};
use torsion_tests::{AnyStream, Server};

/// Answers at the end of each request with `METHOD PATH BODYLEN`.
#[derive(Default)]
struct Report {
    line: String,
    body: usize,
}

impl Handler for Report {
    fn request(&mut self, _hx: &mut HttpCtx<'_, '_>, request: Request) {
        self.line = format!("{} {}", request.method(), request.uri());
        self.body = 0;
    }
    fn body(&mut self, _hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
        self.body += data.len();
    }
    fn end(&mut self, hx: &mut HttpCtx<'_, '_>) {
        let _ = hx.respond(text(StatusCode::OK, format!("{} {}", self.line, self.body)));
    }
}

fn server(config: impl Fn() -> HttpConfig + Send + 'static) -> Server {
    Server::start(move || HttpServer::new(|_| Report::default()).with_config(config()))
}

/// Sends `raw` in one write and reads until the server closes (bounded by the stream's
/// timeouts); returns everything read.
fn exchange(server: &Server, raw: &[u8]) -> String {
    let mut s: AnyStream = server.connect();
    s.write_all(raw).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `raw`, half-closes, and reads everything: for requests that leave the connection open.
fn exchange_eof(server: &Server, raw: &[u8]) -> String {
    let mut s: AnyStream = server.connect();
    s.write_all(raw).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(out: &str) -> Vec<u16> {
    out.match_indices("HTTP/1.1 ").filter_map(|(i, _)| out[i + 9..i + 12].parse().ok()).collect()
}

/// Each rule: a 400 (or its own status) and a close, never a guess.
#[test]
fn strictness_table() {
    let server = server(HttpConfig::default);
    let h = "Host: a\r\n";
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
            "CL and TE",
        ),
        (
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
            400,
            "duplicate CL",
        ),
        (format!("POST / HTTP/1.1\r\n{h}Content-Length: 3, 3\r\n\r\nabc"), 400, "CL list"),
        (format!("POST / HTTP/1.1\r\n{h}Content-Length: +3\r\n\r\nabc"), 400, "signed CL"),
        (format!("POST / HTTP/1.1\r\n{h}Content-Length: 0x3\r\n\r\nabc"), 400, "hex CL"),
        (format!("POST / HTTP/1.1\r\n{h}Content-Length: 99999999999999999999\r\n\r\n"), 400, "CL overflow"),
        (format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: gzip\r\n\r\n"), 400, "TE gzip"),
        (format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked, gzip\r\n\r\n"), 400, "chunked not last"),
        (
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: gzip, chunked\r\n\r\n"),
            400,
            "other coding first",
        ),
        (
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400,
            "chunked twice",
        ),
        (format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: xchunked\r\n\r\n"), 400, "TE xchunked"),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, "TE on 1.0"),
        (format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\n"), 400, "bad chunk size"),
        (
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5;=\r\nhello\r\n0\r\n\r\n"),
            400,
            "bad chunk ext",
        ),
        (
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
            400,
            "no CRLF after data",
        ),
        (format!("GET / HTTP/1.1\r\n{h}X: a\rb\r\n\r\n"), 400, "bare CR in value"),
        (format!("GET / HTTP/1.1\r\n{h}X: a\nY: b\r\n\r\n"), 400, "bare LF in value"),
        (format!("GET / HTTP/1.1\n{h}\r\n"), 400, "bare LF line end"),
        (format!("GET / HTTP/1.1\r\n{h}X: a\r\n folded\r\n\r\n"), 400, "obs-fold"),
        (format!("GET / HTTP/1.1\r\n{h}X: a\r\n\tfolded\r\n\r\n"), 400, "obs-fold tab"),
        (format!("GET / HTTP/1.1\r\n{h}Bad Name: v\r\n\r\n"), 400, "space in name"),
        (format!("GET / HTTP/1.1\r\n{h}Bad(Name): v\r\n\r\n"), 400, "paren in name"),
        (format!("GET / HTTP/1.1\r\n{h}Transfer-Encoding : chunked\r\n\r\n"), 400, "space before colon"),
        (format!("GET / HTTP/1.1\r\n{h}X: a\x00b\r\n\r\n"), 400, "NUL in value"),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400, "missing Host"),
        (format!("GET / HTTP/1.1\r\n{h}{h}\r\n"), 400, "two Hosts"),
        (format!("GET example.com HTTP/1.1\r\n{h}\r\n"), 400, "target not origin-form"),
        (format!("GET * HTTP/1.1\r\n{h}\r\n"), 400, "* outside OPTIONS"),
        (format!("CONNECT a:443 HTTP/1.1\r\n{h}\r\n"), 400, "authority-form"),
        (format!("GET /a b HTTP/1.1\r\n{h}\r\n"), 400, "space in target"),
        (format!("G@T / HTTP/1.1\r\n{h}\r\n"), 400, "bad method"),
        (format!("GET / HTTP/2.0\r\n{h}\r\n"), 505, "HTTP/2.0"),
        (format!("GET / HTTP/1.2\r\n{h}\r\n"), 505, "HTTP/1.2"),
        (format!("GET / HTTP/x\r\n{h}\r\n"), 400, "garbage version"),
        (
            format!("POST / HTTP/1.1\r\n{h}Expect: teapot\r\nContent-Length: 1\r\n\r\nx"),
            417,
            "unknown expectation",
        ),
    ];
    for (raw, status, what) in &cases {
        let out = exchange(&server, raw.as_bytes());
        assert_eq!(statuses(&out), vec![*status], "{what}: {out:?}");
        assert!(out.contains("connection: close\r\n"), "{what}: the response says close: {out:?}");
    }
    // The good forms next to them are served, and keep the connection.
    let ok: Vec<(String, &str)> = vec![
        (format!("OPTIONS * HTTP/1.1\r\n{h}\r\n"), "OPTIONS *"),
        (format!("GET http://a/x?y HTTP/1.1\r\n{h}\r\n"), "GET http://a/x?y"),
        (
            format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: Chunked\r\n\r\n3;a=b;c=\"d e\"\r\nabc\r\n0\r\n\r\n"
            ),
            "POST / 3",
        ),
        (format!("GET / HTTP/1.1\r\n{h}X: a\tb \u{e9}\r\n\r\n"), "GET / 0"),
        ("GET / HTTP/1.0\r\n\r\n".into(), "GET / 0"),
        (format!("\r\nGET / HTTP/1.1\r\n{h}\r\n"), "GET / 0"),
    ];
    for (raw, body) in &ok {
        let out = exchange_eof(&server, raw.as_bytes());
        assert_eq!(statuses(&out), vec![200], "{raw:?}: {out:?}");
        assert!(out.contains(body), "{raw:?}: {out:?}");
    }
}

/// A front end that read the first request by `Content-Length` would pass on a second,
/// hidden one; here the pair is refused whole and the hidden request never runs.
#[test]
fn no_smuggling_through_a_pair_in_one_write() {
    let server = server(HttpConfig::default);
    let hidden = "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n";
    let pairs = [
        format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{hidden}"),
        format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n{hidden}"),
        format!("POST / HTTP/1.1\r\nHost: a\r\nX: y\nContent-Length: 37\r\n\r\n{hidden}"),
        format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n{hidden}"),
    ];
    for (i, raw) in pairs.iter().enumerate() {
        let out = exchange_eof(&server, raw.as_bytes());
        if i < 4 {
            assert!(!out.contains("/admin"), "pair {i}: the hidden request ran: {out:?}");
            assert_eq!(statuses(&out), vec![400], "pair {i}: {out:?}");
        } else {
            // A well-formed pair: both served, each exactly once, in order, with the body
            // boundary where the chunked framing puts it.
            assert_eq!(statuses(&out), vec![200, 200], "pair {i}: {out:?}");
            let first = out.find("POST / 1").expect("the POST with its 1-byte body");
            let second = out.find("GET /admin 0").expect("the second request, separately");
            assert!(first < second, "{out:?}");
        }
    }
}

fn head_of_size(size: usize) -> String {
    let start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
    let end = "\r\n\r\n";
    format!("{start}{}{end}", "v".repeat(size - start.len() - end.len()))
}

#[test]
fn head_size_limit_at_and_over() {
    let server = server(HttpConfig::default);
    assert_eq!(statuses(&exchange_eof(&server, head_of_size(8192).as_bytes())), vec![200]);
    assert_eq!(statuses(&exchange(&server, head_of_size(8193).as_bytes())), vec![431]);
}

#[test]
fn header_count_limit_at_and_over() {
    let server = server(HttpConfig::default);
    let with = |n: usize| {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..n {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw + "\r\n"
    };
    assert_eq!(statuses(&exchange_eof(&server, with(100).as_bytes())), vec![200]);
    assert_eq!(statuses(&exchange(&server, with(101).as_bytes())), vec![431]);
}

#[test]
fn body_size_limit_at_and_over() {
    let server = server(HttpConfig::default);
    let mib = 1 << 20;
    let with_length = |n: usize| {
        let mut raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n").into_bytes();
        raw.resize(raw.len() + n, b'x');
        raw
    };
    let out = exchange_eof(&server, &with_length(mib));
    assert_eq!(statuses(&out), vec![200]);
    assert!(out.ends_with(&format!("POST / {mib}")), "{}", &out[out.len() - 40..]);
    assert_eq!(statuses(&exchange(&server, &with_length(mib + 1))), vec![413]);
    // Chunked: the limit counts decoded bytes.
    let chunked = |n: usize| {
        let mut raw =
            format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n").into_bytes();
        raw.resize(raw.len() + n, b'x');
        raw.extend_from_slice(b"\r\n0\r\n\r\n");
        raw
    };
    assert_eq!(statuses(&exchange_eof(&server, &chunked(mib))), vec![200]);
    assert_eq!(statuses(&exchange(&server, &chunked(mib + 1))), vec![413]);
}
