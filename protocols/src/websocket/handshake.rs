//! The opening handshake (RFC 6455 §4): the server's checks of an upgrade request and its
//! `101` answer, and the client's request and its check of that answer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Version};
use sha1::{Digest, Sha1};

use crate::http::{Body, Request, Response};

/// The GUID RFC 6455 §1.3 appends to the key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Limit on the size of a handshake response head the client reads (16 KiB).
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
///
/// ```
/// // The example of RFC 6455 §1.3.
/// assert_eq!(
///     torsion_protocols::websocket::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Why an upgrade request (server side) or a handshake response (client side) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not `GET`, or not HTTP/1.1 or later.
    #[error("a WebSocket upgrade must be a GET over HTTP/1.1")]
    BadRequestLine,
    /// `Upgrade` does not list `websocket`.
    #[error("missing `Upgrade: websocket`")]
    NoUpgrade,
    /// `Connection` does not list `upgrade`.
    #[error("missing `Connection: upgrade`")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` is not 13 (the server answers 426 with the version it speaks).
    #[error("unsupported Sec-WebSocket-Version")]
    BadVersion,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes in base64.
    #[error("bad Sec-WebSocket-Key")]
    BadKey,
    /// The origin check refused the request's `Origin` (403).
    #[error("origin refused")]
    OriginRefused,
    /// Client side: the server did not answer `101`.
    #[error("server answered {0} instead of 101")]
    NotSwitching(u16),
    /// Client side: the response is not valid HTTP, or its head is over the limit.
    #[error("bad handshake response: {0}")]
    BadResponse(&'static str),
    /// Client side: `Sec-WebSocket-Accept` does not match the key sent.
    #[error("Sec-WebSocket-Accept does not match")]
    BadAccept,
}

impl HandshakeError {
    /// The status a server answers this refusal with.
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::BadVersion => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::OriginRefused => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The refusal as a response (426 names the version spoken, as §4.4 asks).
    pub fn response(&self) -> Response {
        let mut r = crate::http::text(self.status(), format!("{self}\n"));
        if matches!(self, HandshakeError::BadVersion) {
            r.headers_mut().insert("sec-websocket-version", HeaderValue::from_static("13"));
        }
        r
    }
}

/// True when a comma-separated header (all its occurrences) lists `token`, case-insensitively.
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
}

/// True when `request` asks for a WebSocket (an `Upgrade: websocket` header), valid or not.
pub fn is_upgrade_request(request: &Request) -> bool {
    lists(request.headers(), header::UPGRADE, "websocket")
}

/// The subprotocols a request offers (`Sec-WebSocket-Protocol`), in its order.
pub fn offered_protocols(request: &Request) -> Vec<String> {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Checks an upgrade request (RFC 6455 §4.2.1) and returns its key's accept value.
pub fn check_request(request: &Request) -> Result<String, HandshakeError> {
    if request.method() != Method::GET || request.version() < Version::HTTP_11 {
        return Err(HandshakeError::BadRequestLine);
    }
    let h = request.headers();
    if !lists(h, header::UPGRADE, "websocket") {
        return Err(HandshakeError::NoUpgrade);
    }
    if !lists(h, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    let versions: Vec<_> = h.get_all(header::SEC_WEBSOCKET_VERSION).iter().collect();
    if versions.len() != 1 || versions[0].as_bytes() != b"13" {
        return Err(HandshakeError::BadVersion);
    }
    let keys: Vec<_> = h.get_all(header::SEC_WEBSOCKET_KEY).iter().collect();
    if keys.len() != 1 {
        return Err(HandshakeError::BadKey);
    }
    let key = keys[0].to_str().map_err(|_| HandshakeError::BadKey)?.trim();
    match STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(accept_key(key)),
        _ => Err(HandshakeError::BadKey),
    }
}

/// The `101 Switching Protocols` answer, with the chosen subprotocol if any.
pub fn switching_response(accept: &str, protocol: Option<&str>) -> Response {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    r
}

/// A fresh random `Sec-WebSocket-Key` (16 random bytes in base64).
pub fn new_key() -> String {
    let a = super::conn::random_u64().to_le_bytes();
    let b = super::conn::random_u64().to_le_bytes();
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&a);
    raw[8..].copy_from_slice(&b);
    STANDARD.encode(raw)
}

/// The client's upgrade request for `path` on `host`, offering `protocols`.
pub fn client_request(host: &str, path: &str, key: &str, protocols: &[String]) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        req.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", protocols.join(", ")));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Parses the server's answer from `buf`: `Ok(None)` while its head is incomplete, else how
/// many bytes it took and the subprotocol the server chose.
pub fn parse_response(buf: &[u8], key: &str) -> Result<Option<(usize, Option<String>)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(HandshakeError::BadResponse("head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HandshakeError::BadResponse("not HTTP")),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::NotSwitching(code));
    }
    let find = |name: &str| resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let has = |name: &str, token: &str| {
        find(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has("upgrade", "websocket") {
        return Err(HandshakeError::NoUpgrade);
    }
    if !has("connection", "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if find("sec-websocket-accept") != Some(accept_key(key).as_bytes()) {
        return Err(HandshakeError::BadAccept);
    }
    let protocol =
        find("sec-websocket-protocol").and_then(|v| std::str::from_utf8(v).ok()).map(str::to_owned);
    Ok(Some((used, protocol)))
}
