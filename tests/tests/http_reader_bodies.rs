//! Response bodies from a reader ([`Body::Reader`]) over loopback: they are streamed by the
//! general `FileSender`, framed by `Content-Length` when the length is known, chunked for
//! HTTP/1.1 when it is not, close-delimited for HTTP/1.0; a reader shorter than its promised
//! length cuts the connection instead of leaving the client waiting or reading the next
//! response as body.

use std::io::{Read, Write};

use http::StatusCode;
use torsion_protocols::http::{Body, Handler, HttpCtx, HttpServer, Request, Response};
use torsion_tests::{pattern, AnyStream, Server};

/// 200 KiB: several 64 KiB chunks, and a last one shorter.
const LEN: usize = 200 * 1024 + 7;

struct Readers;

impl Handler for Readers {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        let data = pattern(9, LEN);
        let (reader, length): (Box<dyn Read>, Option<u64>) = match request.uri().path() {
            "/unknown-length" => (Box::new(std::io::Cursor::new(data)), None),
            "/known-length" => (Box::new(std::io::Cursor::new(data)), Some(LEN as u64)),
            // Promises more than it has.
            _ => (Box::new(std::io::Cursor::new(data[..100].to_vec())), Some(1000)),
        };
        let mut response = Response::new(Body::Reader { reader, length });
        *response.status_mut() = StatusCode::OK;
        let _ = hx.respond(response);
    }
}

/// Reads one response head; returns it (lower-cased) and the bytes read after it.
fn head(s: &mut AnyStream, buf: &mut Vec<u8>) -> String {
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            return head;
        }
        let n = s.read(&mut chunk).expect("read (bounded by the stream's timeout)");
        assert!(n > 0, "closed before a response head: {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until `buf` holds `n` bytes.
fn fill(s: &mut AnyStream, buf: &mut Vec<u8>, n: usize) {
    let mut chunk = [0u8; 65536];
    while buf.len() < n {
        let got = s.read(&mut chunk).expect("read (bounded by the stream's timeout)");
        assert!(got > 0, "closed after {} of {n} bytes", buf.len());
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// Decodes one chunked body from the front of `buf`, reading more as needed; returns the
/// data and the sizes of its chunks.
fn dechunk(s: &mut AnyStream, buf: &mut Vec<u8>) -> (Vec<u8>, Vec<usize>) {
    let (mut data, mut sizes) = (Vec::new(), Vec::new());
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            let want = buf.len() + 1;
            fill(s, buf, want);
        };
        let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
        buf.drain(..line_end + 2);
        fill(s, buf, size + 2);
        assert_eq!(&buf[size..size + 2], b"\r\n", "chunk data ends with CRLF");
        if size == 0 {
            buf.drain(..2);
            return (data, sizes);
        }
        data.extend_from_slice(&buf[..size]);
        sizes.push(size);
        buf.drain(..size + 2);
    }
}

#[test]
fn a_reader_of_unknown_length_is_chunked_and_the_connection_kept() {
    let server = Server::start(|| HttpServer::new(|_| Readers));
    let mut s = server.connect();
    let mut buf = Vec::new();
    for _ in 0..2 {
        s.write_all(b"GET /unknown-length HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let head = head(&mut s, &mut buf);
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        let (data, sizes) = dechunk(&mut s, &mut buf);
        assert_eq!(data, pattern(9, LEN), "the body byte-exact");
        assert_eq!(sizes, [65536, 65536, 65536, LEN - 3 * 65536], "one chunk per 64 KiB read");
    }
    // Both answered on one connection: nothing left over.
    assert!(buf.is_empty());
}

#[test]
fn a_reader_of_known_length_is_sent_with_content_length() {
    let server = Server::start(|| HttpServer::new(|_| Readers));
    let mut s = server.connect();
    let mut buf = Vec::new();
    s.write_all(
        b"GET /known-length HTTP/1.1\r\nHost: a\r\n\r\nGET /known-length HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    for _ in 0..2 {
        let head = head(&mut s, &mut buf);
        assert!(head.contains(&format!("content-length: {LEN}")), "{head}");
        fill(&mut s, &mut buf, LEN);
        assert_eq!(buf[..LEN], pattern(9, LEN)[..]);
        buf.drain(..LEN);
    }
}

#[test]
fn an_http_1_0_reader_of_unknown_length_is_close_delimited() {
    let server = Server::start(|| HttpServer::new(|_| Readers));
    let mut s = server.connect();
    s.write_all(b"GET /unknown-length HTTP/1.0\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let head = head(&mut s, &mut buf);
    assert!(!head.contains("transfer-encoding") && !head.contains("content-length"), "{head}");
    s.read_to_end(&mut buf).expect("the body, then EOF");
    assert_eq!(buf, pattern(9, LEN));
}

#[test]
fn a_reader_shorter_than_its_length_cuts_the_connection() {
    let server = Server::start(|| HttpServer::new(|_| Readers));
    let mut s = server.connect();
    s.write_all(b"GET /short HTTP/1.1\r\nHost: a\r\n\r\nGET /known-length HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let head = head(&mut s, &mut buf);
    assert!(head.contains("content-length: 1000"), "{head}");
    // The 100 bytes there are, then the end (an abort: EOF or a reset), never the next response.
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("expected the connection cut, got {e}"),
        }
    }
    assert_eq!(buf, pattern(9, LEN)[..100], "the short body and nothing after it");
}
