//! Request heads: finding the end of the head, strict line-ending checks, httparse, and the
//! validation httparse leaves to its caller (limits, framing headers, `Host`, request target).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use super::config::HttpConfig;

/// Why a request head was refused: the status to answer with (the connection closes after it)
/// and a short reason for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
#[non_exhaustive]
pub struct HeadError {
    /// The status sent back: 400, 413, 417, 431 or 505.
    pub status: StatusCode,
    /// What was wrong, for the log (never sent to the client).
    pub reason: &'static str,
}

fn bad(reason: &'static str) -> HeadError {
    HeadError { status: StatusCode::BAD_REQUEST, reason }
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no `Content-Length` and no `Transfer-Encoding`, or `Content-Length: 0`).
    None,
    /// `Content-Length: n` with n > 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and validated request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub request: http::Request<()>,
    pub framing: BodyFraming,
    /// The client asked to keep the connection (1.1 without `close`, 1.0 with `keep-alive`).
    pub keep_alive: bool,
    pub expect_continue: bool,
}

/// Where the head ends in `buf` (the index just past `\r\n\r\n`), checking on the way that
/// every LF is preceded by CR and every CR is followed by LF (bare CR or LF is what request
/// smuggling through lenient parsers is made of: twisted#10323, CVE-2022-24801). `scanned` is
/// where the previous call stopped, so a head dripping in byte by byte is scanned once.
pub(crate) fn find_head_end(buf: &[u8], scanned: &mut usize) -> Result<Option<usize>, HeadError> {
    // Resume one byte early so a CR at the previous end is checked against what follows it.
    let mut i = scanned.saturating_sub(1);
    while let Some(off) = memchr::memchr2(b'\r', b'\n', &buf[i..]) {
        let at = i + off;
        if buf[at] == b'\n' {
            return Err(bad("bare LF in the head"));
        }
        // A CR: it must be followed by LF (or we need more input).
        match buf.get(at + 1) {
            None => {
                *scanned = at;
                return Ok(None);
            }
            Some(b'\n') => {}
            Some(_) => return Err(bad("bare CR in the head")),
        }
        // CRLF at `at`: the head ends if another CRLF follows at once.
        match (buf.get(at + 2), buf.get(at + 3)) {
            (Some(b'\r'), Some(b'\n')) => {
                // A leading empty line (at == 0) is tolerated: skip it.
                if at == 0 {
                    i = 2;
                    continue;
                }
                return Ok(Some(at + 4));
            }
            (Some(b'\r'), None) | (None, _) => {
                *scanned = at;
                return Ok(None);
            }
            _ => i = at + 2,
        }
    }
    *scanned = buf.len();
    Ok(None)
}

/// Parses and validates a complete head (`shared` ends with `\r\n\r\n`). The target and
/// every header value become slices of `shared` (no allocation per header); `headers` is an
/// empty map to fill (a recycled one keeps its capacity: no allocation for the map either).
// Inlined into its one caller: the head is then built in place, not moved out in a
// `Result` (a copy of some 200 bytes per request).
#[inline(always)]
pub(crate) fn parse_head(
    shared: bytes::Bytes,
    config: &HttpConfig,
    mut headers: HeaderMap,
) -> Result<Head, HeadError> {
    debug_assert!(headers.is_empty());
    let buf: &[u8] = &shared;
    // Uninitialised header slots: nothing to zero per request.
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
    let mut heap;
    let slots: &mut [std::mem::MaybeUninit<httparse::Header<'_>>] = if config.max_headers <= storage.len() {
        &mut storage[..config.max_headers]
    } else {
        heap = Vec::with_capacity(config.max_headers);
        heap.resize_with(config.max_headers, std::mem::MaybeUninit::uninit);
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: "too many header fields",
            })
        }
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(httparse::Error::HeaderName) => return Err(bad("invalid header name")),
        Err(httparse::Error::HeaderValue) => return Err(bad("invalid header value")),
        Err(httparse::Error::Token) => return Err(bad("invalid method")),
        Err(_) => return Err(bad("malformed request line or header")),
    }
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError { status: StatusCode::HTTP_VERSION_NOT_SUPPORTED, reason: "version" }),
    };
    let method =
        Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| bad("invalid method"))?;
    let target = req.path.unwrap_or("");
    let uri = parse_target(&method, target, shared.slice_ref(target.as_bytes()))?;

    headers.reserve(req.headers.len());
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(shared.slice_ref(h.value))
            .map_err(|_| bad("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            if content_length.is_some() {
                return Err(bad("more than one Content-Length"));
            }
            content_length = Some(parse_content_length(h.value)?);
        } else if name == header::TRANSFER_ENCODING {
            // Only a single, final `chunked`: any other coding (or chunked twice, or chunked
            // not last) is refused rather than guessed at.
            for coding in h.value.split(|&b| b == b',').map(trim_ows) {
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(bad("transfer coding other than a single final chunked"));
                }
                chunked = true;
            }
            transfer_encoding = true;
        } else if name == header::HOST {
            hosts += 1;
        } else if name == header::CONNECTION {
            for token in h.value.split(|&b| b == b',').map(trim_ows) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == header::EXPECT {
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(HeadError {
                    status: StatusCode::EXPECTATION_FAILED,
                    reason: "unknown expectation",
                });
            }
        }
        headers.append(name, value);
    }
    if transfer_encoding && !chunked {
        return Err(bad("empty Transfer-Encoding"));
    }
    if transfer_encoding && content_length.is_some() {
        return Err(bad("both Content-Length and Transfer-Encoding"));
    }
    if transfer_encoding && version == Version::HTTP_10 {
        return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if version == Version::HTTP_11 && hosts != 1 {
        return Err(bad(if hosts == 0 { "missing Host" } else { "more than one Host" }));
    }
    if hosts > 1 {
        return Err(bad("more than one Host"));
    }
    let framing = match (chunked, content_length) {
        (true, _) => BodyFraming::Chunked,
        (false, Some(0)) | (false, None) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    if let (BodyFraming::Length(n), Some(max)) = (framing, config.max_body_size) {
        if n > max {
            return Err(HeadError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                reason: "Content-Length over the limit",
            });
        }
    }
    let keep_alive = match version {
        Version::HTTP_11 => !close,
        _ => keep_alive_token && !close,
    };
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Head { request, framing, keep_alive, expect_continue: expect_continue && version == Version::HTTP_11 })
}

/// httparse says "version" for anything after the target that is not `HTTP/1.0` or `HTTP/1.1`:
/// a well-formed `HTTP/x.y` of another version is 505, anything else 400.
fn version_error(buf: &[u8]) -> HeadError {
    let line = buf.split(|&b| b == b'\r').next().unwrap_or(b"");
    let token = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    match token {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit()
                && minor.is_ascii_digit()
                && line.iter().filter(|&&b| b == b' ').count() == 2 =>
        {
            HeadError { status: StatusCode::HTTP_VERSION_NOT_SUPPORTED, reason: "unsupported HTTP version" }
        }
        _ => bad("malformed request line"),
    }
}

/// Origin-form (`/path?query`), `*` for OPTIONS, or absolute-form (`http://host/path`, parsed);
/// authority-form (CONNECT) and anything else is refused.
fn parse_target(method: &Method, target: &str, shared: bytes::Bytes) -> Result<Uri, HeadError> {
    if target == "*" {
        return if method == Method::OPTIONS {
            Ok(Uri::from_static("*"))
        } else {
            Err(bad("`*` target outside OPTIONS"))
        };
    }
    if target.starts_with('/') {
        let uri = Uri::from_maybe_shared(shared).map_err(|_| bad("invalid request target"))?;
        return if uri.scheme().is_none() { Ok(uri) } else { Err(bad("invalid request target")) };
    }
    if method == Method::CONNECT {
        return Err(bad("CONNECT is not supported"));
    }
    let uri: Uri = target.parse().map_err(|_| bad("invalid request target"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http") | Some("https"), Some(_)) => Ok(uri),
        _ => Err(bad("request target is not origin-form or absolute-form")),
    }
}

/// `Content-Length`: 1*DIGIT, nothing else (no sign, no list, no spaces inside), at most 19
/// digits so it fits a u64.
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad("invalid Content-Length"));
    }
    Ok(value.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
