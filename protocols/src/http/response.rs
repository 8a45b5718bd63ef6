//! Responses: [`Body`], the framing decision, and the serialized head (with a `Date` formatted
//! once per second).

use std::cell::RefCell;
use std::fmt;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{StatusCode, Version};

/// A response as handlers build it: `http::Response` with a torsion [`Body`].
pub type Response = http::Response<Body>;

/// A response body.
pub enum Body {
    /// No body (`Content-Length: 0` where a body is allowed).
    Empty,
    /// The whole body, known now: sent with `Content-Length`.
    Full(Bytes),
    /// A reader streamed by a pull producer (a [`FileSender`](crate::FileSender)), one
    /// 64 KiB chunk each time the write buffer drains, so a 10 GiB file costs no memory. With
    /// `length` it is sent with `Content-Length` (the reader must give exactly that many
    /// bytes); without, chunked (or close-delimited for HTTP/1.0).
    Reader {
        /// The source (a `File`, a `Take` of one for a range).
        reader: Box<dyn Read>,
        /// Its length, when known.
        length: Option<u64>,
    },
    /// The handler writes the body itself, later, with
    /// [`HttpCtx::write_body`](super::HttpCtx::write_body) and ends it with
    /// [`HttpCtx::end_body`](super::HttpCtx::end_body) (a push stream: `write_body` reports
    /// when the write buffer is above its high mark, and the handler's
    /// [`writable`](super::Handler::writable) says when it has drained). With `length`, sent
    /// with `Content-Length`; without, chunked (close-delimited for HTTP/1.0).
    Stream {
        /// The total length, when known.
        length: Option<u64>,
    },
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Full(b) => f.debug_tuple("Full").field(&b.len()).finish(),
            Body::Reader { length, .. } => {
                f.debug_struct("Reader").field("length", length).finish_non_exhaustive()
            }
            Body::Stream { length } => f.debug_struct("Stream").field("length", length).finish(),
        }
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::Full(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::Full(Bytes::from(s))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::Full(Bytes::from(v))
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::Full(b)
    }
}

/// A response with `status`, `Content-Type: text/plain; charset=utf-8` and `body`.
pub fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = http::Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// An empty response with `status` (its reason phrase as the body for errors is not sent:
/// just the status line and headers, `Content-Length: 0`).
pub fn status(status: StatusCode) -> Response {
    let mut r = http::Response::new(Body::Empty);
    *r.status_mut() = status;
    r
}

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body bytes at all (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0 with an unknown length).
    Close,
}

/// Chooses the framing: a length when known, chunked otherwise for 1.1, close-delimited for
/// 1.0; nothing for HEAD, 1xx, 204 and 304 (HEAD keeps the length header of the GET).
pub(crate) fn framing(
    status: StatusCode,
    version: Version,
    head_request: bool,
    length: Option<u64>,
) -> (Framing, Option<u64>) {
    let no_body_status =
        status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if no_body_status {
        return (Framing::None, None);
    }
    let wire = match length {
        Some(n) => Framing::Length(n),
        None if version == Version::HTTP_11 => Framing::Chunked,
        None => Framing::Close,
    };
    if head_request {
        // HEAD: the headers a GET would get, no body (and no reason to close for 1.0).
        let advertised = if let Framing::Length(n) = wire { Some(n) } else { None };
        return (Framing::None, advertised);
    }
    (wire, if let Framing::Length(n) = wire { Some(n) } else { None })
}

thread_local! {
    /// `date: <IMF-fixdate>\r\n` and the second it was formatted for.
    static DATE: RefCell<(u64, [u8; 37])> = const { RefCell::new((u64::MAX, [0; 37])) };
}

/// Reads the clock and reformats the cached `Date` line if the second changed. Called once
/// per connection callback (not per response), so a batch of pipelined responses reads the
/// clock once.
pub(crate) fn refresh_date() {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                cell.1[..6].copy_from_slice(b"date: ");
                cell.1[6..35].copy_from_slice(text.as_bytes());
                cell.1[35..].copy_from_slice(b"\r\n");
            }
            cell.0 = secs;
        }
    });
}

/// Appends the cached `Date` line (formatting it first if this thread never did).
fn push_date_line(out: &mut Vec<u8>) {
    let fresh = DATE.with(|cell| cell.borrow().0 != u64::MAX);
    if !fresh {
        refresh_date();
    }
    DATE.with(|cell| out.extend_from_slice(&cell.borrow().1));
}

/// The status line for the common statuses in one piece.
fn status_line(status: StatusCode) -> Option<&'static [u8]> {
    Some(match status.as_u16() {
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        206 => b"HTTP/1.1 206 Partial Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        _ => return None,
    })
}

/// Serializes a status line and headers. `close` adds `Connection: close`; `keep_alive_10`
/// adds `Connection: keep-alive` (an HTTP/1.0 client that asked for it). User headers that
/// the framing owns (`Content-Length`, `Transfer-Encoding`, `Connection`) are replaced.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    advertised_length: Option<u64>,
    close: bool,
    keep_alive_10: bool,
    server_line: Option<&[u8]>,
) {
    out.reserve(160);
    if let Some(line) = status_line(status) {
        out.extend_from_slice(line);
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let (mut has_server, mut has_date) = (false, false);
    for (name, value) in headers {
        has_server |= name == header::SERVER;
        has_date |= name == header::DATE;
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            // Keep `Connection: upgrade` for a 101; otherwise the framing owns these.
            if !(name == header::CONNECTION && status == StatusCode::SWITCHING_PROTOCOLS) {
                continue;
            }
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let (Some(server_line), false) = (server_line, has_server) {
        out.extend_from_slice(server_line);
    }
    if !has_date {
        push_date_line(out);
    }
    match (framing, advertised_length) {
        (Framing::Chunked, _) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        (_, Some(n)) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if keep_alive_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal (without the formatting machinery: this is once per response).
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Byte by byte: a length has a few digits, and a copy of a run of unknown length is a
    // `memcpy` call (0.9% of a pipelined run, once per response).
    for &d in &digits[i..] {
        out.push(d);
    }
}

/// `n` in hexadecimal followed by CRLF, as a chunk-size line: the buffer and its used length.
pub(crate) fn chunk_size_line(mut n: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let mut i = 16;
    loop {
        i -= 1;
        line[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    line[16] = b'\r';
    line[17] = b'\n';
    line.copy_within(i.., 0);
    (line, 18 - i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_hex_lines() {
        for n in [0u64, 7, 10, 13, 65535, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for n in [0usize, 1, 15, 16, 65532, usize::MAX] {
            let (line, len) = chunk_size_line(n);
            assert_eq!(&line[..len], format!("{n:x}\r\n").as_bytes());
        }
    }
}
