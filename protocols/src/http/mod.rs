//! HTTP/1.1 server: strict, pipelined, flow-controlled.
//!
//! A [`Handler`] (one per connection) gets each request's head ([`Handler::request`]), its
//! body in pieces ([`Handler::body`]) and its end ([`Handler::end`]), and answers through the
//! [`HttpCtx`] it is lent: at once, later from a timer, or from anywhere on the reactor thread
//! with a [`Responder`]. [`HttpServer`] is the factory; [`HttpProtocol`] the per-connection
//! protocol, usable on its own.
//!
//! ```
//! use http::StatusCode;
//! use torsion_protocols::http::{text, Handler, HttpConfig, HttpProtocol, HttpCtx, Request};
//! use torsion_reactor::testing::Harness;
//!
//! struct Hello;
//! impl Handler for Hello {
//!     fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
//!         let body = format!("Hello, {}!", request.uri().path());
//!         hx.respond(text(StatusCode::OK, body)).unwrap();
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let config = std::rc::Rc::new(HttpConfig::default());
//! let id = h.accept(&mut move |_| Some(HttpProtocol::new(Hello, config.clone()))).unwrap();
//! h.feed(id, b"GET /you HTTP/1.1\r\nHost: x\r\n\r\n");
//! let out = String::from_utf8(h.take_written(id)).unwrap();
//! assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(out.ends_with("\r\n\r\nHello, /you!"));
//! ```
//!
//! # What the server does for the handler
//! * **Keep-alive** by default on HTTP/1.1, `Connection: close` honoured both ways; HTTP/1.0
//!   keeps the connection only when the client asks (`Connection: keep-alive`) and the
//!   response has a length.
//! * **Pipelining**: requests are read ahead of their responses up to
//!   [`HttpConfig::max_pipeline`]; responses go out strictly in request order, whatever order
//!   the handler answers in (a slow answer holds the later ones back).
//! * **Framing**: request bodies by `Content-Length` or `chunked`; responses with
//!   `Content-Length` when the length is known, chunked otherwise (close-delimited for 1.0);
//!   `HEAD` gets the headers only; `Expect: 100-continue` is answered with `100 Continue`
//!   unless the handler answered already in `request` (then the body is not read and the
//!   connection closes after the response); `Date` (formatted once a second) and `Server`.
//! * **Strictness**: each of these is a 400 and a close, never a guess: both `Content-Length`
//!   and `Transfer-Encoding`; a duplicate or non-numeric `Content-Length`; a transfer coding
//!   other than one final `chunked`; a bad chunk size or extension; a bare CR or LF anywhere in
//!   the head, or obs-fold (twisted#10323, CVE-2022-24801); invalid header names or values; no
//!   `Host` (or two) on 1.1; a target that is not origin-form, `*` (OPTIONS only) or
//!   absolute-form. Other versions of HTTP get 505; an unknown `Expect`, 417.
//! * **Limits** ([`HttpConfig`]): head size (431), header count (431), body size (413),
//!   pipeline depth, header deadline (slowloris: 408 and close; idle connections are not
//!   charged), keep-alive idle timeout, optional response deadline (503).
//! * **Flow control**: a handler that calls [`HttpCtx::pause_body`] stops the socket being
//!   read; a response body from a reader ([`Body::Reader`]) is a pull producer, one chunk per
//!   drain of the write buffer; a streamed body ([`Body::Stream`]) is written with
//!   [`HttpCtx::write_body`], which reports a full buffer, and [`Handler::writable`] says when
//!   to go on. While the write buffer is above its high mark the socket is not read either.
//! * **Graceful stop** ([`HttpServer::listen`]): idle keep-alive connections close at once,
//!   responses in flight finish within the reactor's shutdown deadline. (The reactor stops
//!   reading every connection when the stop begins, so a request whose body is still arriving
//!   then cannot complete; it is cut at the deadline.)
//!
//! # Upgrades (WebSocket)
//! A handler that answers `101 Switching Protocols` takes the connection over: parsing stops
//! at that request, and once the 101 is written every byte that follows (those already read
//! included) goes to [`Handler::upgraded`], raw; the handler writes with
//! `hx.ctx().transport()`. A WebSocket layer is a handler that checks the handshake headers in
//! `request`, answers 101 with `Sec-WebSocket-Accept`, and parses frames in `upgraded`.
//!
//! # HTTPS
//! See [`HttpServer`]: TLS plugs in below the protocol, which never sees ciphertext.

mod body;
mod config;
mod conn;
mod handler;
mod head;
mod outgoing;
mod producer;
mod response;
mod router;
mod server;

pub use body::{BodyDecoder, BodyError, Decoded, DEFAULT_MAX_CHUNK_LINE};
pub use config::{
    HttpConfig, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MAX_HEAD,
    DEFAULT_MAX_HEADERS, DEFAULT_MAX_PIPELINE,
};
pub use conn::HttpProtocol;
pub use handler::{Handler, HttpCtx, HttpError, Request, RequestId, Responder};
pub use head::{BodyFraming, HeadError};
pub use response::{status, text, Body, Response};
pub use router::Router;
pub use server::HttpServer;

/// Re-exported: the `http` crate, whose types (`Method`, `StatusCode`, `HeaderMap`, `Uri`,
/// `Request`, `Response`) this API uses.
pub use ::http as types;
