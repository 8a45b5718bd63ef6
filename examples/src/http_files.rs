//! The handlers of the `http-server` example: `/hello`, a streaming `/echo`, and static files
//! under a root directory (content type by extension, `Last-Modified`/`If-Modified-Since`, one
//! `Range`, traversal refused, bodies streamed by a pull producer).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use torsion_protocols::http::{status, text, Body, Handler, HttpCtx, Request, RequestId, Response, Router};

/// `GET /hello`: `Hello, World!` as text/plain (the benchmark's request).
#[derive(Debug, Default)]
pub struct Hello;

impl Handler for Hello {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, _request: Request) {
        let _ = hx.respond(text(StatusCode::OK, "Hello, World!"));
    }
}

/// `POST /echo`: the request body streamed back as it arrives, of any size. When the client
/// reads slower than it sends, the write buffer fills, `write_body` says so, and the body is
/// paused (the socket is not read) until [`Handler::writable`].
#[derive(Debug, Default)]
pub struct EchoBody {
    current: Option<RequestId>,
}

impl Handler for EchoBody {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        let length =
            request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let mut response = http::Response::new(Body::Stream { length: Some(length.unwrap_or(0)) });
        if request.headers().contains_key(header::TRANSFER_ENCODING) {
            *response.body_mut() = Body::Stream { length: None };
        }
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        self.current = hx.request_id();
        let _ = hx.respond(response);
    }

    fn body(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
        let Some(id) = self.current else { return };
        if let Ok(true) = hx.write_body(id, data) {
            hx.pause_body();
        }
    }

    fn end(&mut self, hx: &mut HttpCtx<'_, '_>) {
        if let Some(id) = self.current.take() {
            let _ = hx.end_body(id);
        }
    }

    fn writable(&mut self, hx: &mut HttpCtx<'_, '_>) {
        hx.resume_body();
    }
}

/// Static files under `root`: `GET` and `HEAD`. Paths with `..`, encoded slashes or NUL are
/// refused (403); symbolic links inside the root are followed (point them only where you
/// would serve from).
#[derive(Debug, Clone)]
pub struct Files {
    root: Rc<Path>,
}

impl Files {
    /// Serves files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Files {
        Files { root: Rc::from(root.into()) }
    }

    /// Serves files under `root`, sharing the path (no copy per connection).
    pub fn shared(root: Rc<Path>) -> Files {
        Files { root }
    }

    fn answer(&self, request: &Request) -> Response {
        let Some(path) = self.resolve(request.uri().path()) else {
            return text(StatusCode::FORBIDDEN, "forbidden\n");
        };
        let path = if path.is_dir() { path.join("index.html") } else { path };
        let Ok(mut file) = File::open(&path) else { return text(StatusCode::NOT_FOUND, "not found\n") };
        let Ok(meta) = file.metadata() else { return text(StatusCode::NOT_FOUND, "not found\n") };
        if !meta.is_file() {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        let size = meta.len();
        let modified = meta.modified().ok();
        if let (Some(modified), Some(since)) = (modified, request.headers().get(header::IF_MODIFIED_SINCE)) {
            let since = since.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok());
            if since.is_some_and(|since| truncate(modified) <= since) {
                return status(StatusCode::NOT_MODIFIED);
            }
        }
        let range =
            request.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| parse_range(v, size));
        let (status_code, start, length) = match range {
            None | Some(Range::Ignore) => (StatusCode::OK, 0, size),
            Some(Range::Unsatisfiable) => {
                let mut r = status(StatusCode::RANGE_NOT_SATISFIABLE);
                r.headers_mut().insert(header::CONTENT_RANGE, hv(format!("bytes */{size}")));
                return r;
            }
            Some(Range::Bytes(a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        };
        if start > 0 && file.seek(SeekFrom::Start(start)).is_err() {
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
        let reader: Box<dyn Read> = Box::new(file.take(length));
        let mut r = http::Response::new(Body::Reader { reader, length: Some(length) });
        *r.status_mut() = status_code;
        let headers = r.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&path)));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(modified) = modified {
            headers.insert(header::LAST_MODIFIED, hv(httpdate::fmt_http_date(modified)));
        }
        if status_code == StatusCode::PARTIAL_CONTENT {
            headers.insert(header::CONTENT_RANGE, hv(format!("bytes {start}-{}/{size}", start + length - 1)));
        }
        r
    }

    /// The file for a request path, or `None` when the path tries to leave the root (`..`,
    /// an encoded slash or NUL, anything that is not a plain name).
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        let decoded = percent_decode(path)?;
        let mut out = self.root.to_path_buf();
        for component in Path::new(&decoded).components() {
            match component {
                Component::RootDir => {}
                Component::Normal(name) => out.push(name),
                _ => return None,
            }
        }
        Some(out)
    }
}

impl Handler for Files {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        let _ = hx.respond(self.answer(&request));
    }
}

/// The example's router: `/hello`, `POST /echo`, and (with a root) files for `GET`/`HEAD`.
/// Built per connection, from static prefixes and a shared root: a few small allocations.
pub fn router(root: Option<&Rc<Path>>) -> Router {
    let mut router = Router::new()
        .route(Some(Method::GET), "/hello", Hello)
        .route(Some(Method::HEAD), "/hello", Hello)
        .route(Some(Method::POST), "/echo", EchoBody::default());
    if let Some(root) = root {
        router = router.route(Some(Method::GET), "/", Files::shared(root.clone())).route(
            Some(Method::HEAD),
            "/",
            Files::shared(root.clone()),
        );
    }
    router
}

fn hv(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// HTTP dates have whole seconds.
fn truncate(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

enum Range {
    /// Malformed or several ranges: serve the whole file (RFC 9110 allows ignoring Range).
    Ignore,
    Unsatisfiable,
    Bytes(u64, u64),
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range.
fn parse_range(value: &str, size: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Range::Ignore };
    if spec.contains(',') {
        return Range::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Range::Ignore };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten()
    };
    match (parse(a), parse(b)) {
        (Some(a), _) if a >= size => Range::Unsatisfiable,
        (Some(a), Some(b)) if b >= a => Range::Bytes(a, b.min(size - 1)),
        (Some(a), None) if b.is_empty() => Range::Bytes(a, size - 1),
        (None, Some(n)) if a.is_empty() => {
            if n == 0 || size == 0 {
                Range::Unsatisfiable
            } else {
                Range::Bytes(size - n.min(size), size - 1)
            }
        }
        _ => Range::Ignore,
    }
}

fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            // An encoded slash, backslash or NUL never names a file here.
            if b == b'/' || b == b'\\' || b == 0 {
                return None;
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `Content-Type` by file extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "md" | "rs" | "toml" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}
