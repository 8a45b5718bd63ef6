//! # Chapter 14: An HTTP/1.1 server
//!
//! HTTP is a protocol like any other here: [`HttpProtocol`](torsion_protocols::http::HttpProtocol)
//! implements [`Protocol`](torsion_reactor::Protocol), and [`HttpServer`] is its factory. What
//! you write is a [`Handler`], one per connection, as a `LineHandler` is to `LineReceiver`:
//! it gets each request's head (`request`), its body in pieces (`body`), then `end`, and
//! answers through the [`HttpCtx`] it is lent. The server does the HTTP: parsing with limits,
//! keep-alive, pipelining (responses in request order whatever order you answer in), framing
//! (`Content-Length` or chunked), `HEAD`, `100-continue`, `Date`, flow control and the
//! graceful stop. Run the `http-server` binary for the whole thing.
//!
//! ## Answer at once
//! ```
//! use http::StatusCode;
//! use torsion_protocols::http::{text, Handler, HttpConfig, HttpCtx, HttpProtocol, Request};
//! use torsion_reactor::testing::Harness;
//!
//! struct Hello;
//! impl Handler for Hello {
//!     fn request(&mut self, hx: &mut HttpCtx<'_, '_>, _request: Request) {
//!         hx.respond(text(StatusCode::OK, "Hello, World!")).unwrap();
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let config = std::rc::Rc::new(HttpConfig::default());
//! let id = h.accept(&mut move |_| Some(HttpProtocol::new(Hello, config.clone()))).unwrap();
//! // Two pipelined requests in one piece: two responses, in order, on a kept connection.
//! h.feed(id, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
//! let out = String::from_utf8(h.take_written(id)).unwrap();
//! assert_eq!(out.matches("Hello, World!").count(), 2);
//! assert!(!h.fin_sent(id));
//! // A request the server refuses never reaches the handler: 400 and a close.
//! h.feed(id, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
//! assert!(String::from_utf8(h.take_written(id)).unwrap().starts_with("HTTP/1.1 400 "));
//! assert!(h.fin_sent(id));
//! ```
//!
//! ## Answer later
//! Keep the [`RequestId`](torsion_protocols::http::RequestId) and answer from a timer with
//! `respond_to`, or take a [`Responder`](torsion_protocols::http::Responder) and answer from
//! another connection or a loop callback. Later requests on the connection wait behind it:
//!
//! ```
//! use std::time::Duration;
//! use http::StatusCode;
//! use torsion_protocols::http::{text, Handler, HttpConfig, HttpCtx, HttpProtocol, Request};
//! use torsion_reactor::testing::Harness;
//!
//! struct Later;
//! impl Handler for Later {
//!     fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
//!         let responder = hx.responder().unwrap();
//!         let delay = if request.uri().path() == "/slow" { 2 } else { 1 };
//!         hx.ctx().call_later(Duration::from_secs(delay), move |lx| {
//!             responder.respond(lx, text(StatusCode::OK, format!("after {delay}s\n")));
//!         });
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let config = std::rc::Rc::new(HttpConfig::default());
//! let id = h.accept(&mut move |_| Some(HttpProtocol::new(Later, config.clone()))).unwrap();
//! h.feed(id, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\n");
//! h.advance(Duration::from_secs(1)); // /fast is answered, but must wait for /slow
//! assert!(h.take_written(id).is_empty());
//! h.advance(Duration::from_secs(1));
//! let out = String::from_utf8(h.take_written(id)).unwrap();
//! assert!(out.find("after 2s").unwrap() < out.find("after 1s").unwrap());
//! ```
//!
//! ## Stream, with flow control both ways
//! A body that is not all there yet is a [`Body::Stream`](torsion_protocols::http::Body):
//! write pieces with `write_body`, end with `end_body`. `write_body` returns true when the
//! connection's write buffer is over its high mark; pause the request body then
//! (`pause_body`: the server stops reading the socket, TCP pushes back on the client) and
//! resume in [`Handler::writable`]. That is the whole of the `POST /echo` handler in
//! `http-server`, which echoes a body of any size in constant memory. Files go as a
//! [`Body::Reader`](torsion_protocols::http::Body): the server streams the reader with the same
//! [`FileSender`](torsion_protocols::FileSender) as chapter 5 (limited to the `Content-Length`,
//! each chunk framed by a `transform` when the body is chunked), one 64 KiB chunk each time the
//! buffer drains, so a 10 GiB download costs no memory. A reader that ends short of its length
//! cuts the connection: the client sees the truncation instead of waiting.
//!
//! ## Limits and strictness
//! Every limit is on by default and has a setter on [`HttpConfig`](torsion_protocols::http::HttpConfig):
//! head size 8 KiB (431), 100 header fields (431), body 1 MiB (413; `None` for handlers that
//! stream any size), 16 requests read ahead, 10 s to send a head once started (slowloris: 408),
//! 60 s idle keep-alive, an optional response deadline (503). Anything ambiguous in the framing
//! (both `Content-Length` and `Transfer-Encoding`, a bare CR or LF, obs-fold, a bad chunk) is a
//! 400 and a close, never a guess: that ambiguity is how requests are smuggled past proxies.
//!
//! ## Closing
//! A connection closes after a response when the client asked (`Connection: close`, or
//! HTTP/1.0 without `keep-alive`) or the server decided (a handler's `Connection: close`, an
//! error, a close-delimited body, the graceful stop). When the client asked and everything it
//! sent has been read, the socket closes as soon as the response is out; otherwise it lingers,
//! reading and dropping input until the client's FIN, so requests still in flight cannot turn
//! the close into a reset that destroys the response (chapter 8).
//!
//! ## Stopping
//! [`HttpServer::listen`] installs the graceful stop: on Ctrl-C idle keep-alive connections
//! close at once and responses in flight finish (within the reactor's shutdown deadline).
//!
//! ## After HTTP: upgrades
//! A handler that answers `101 Switching Protocols` takes the connection over: the bytes that
//! follow go to [`Handler::upgraded`], raw. That is where WebSocket plugs in.
//!
//! [`HttpServer`]: torsion_protocols::http::HttpServer
//! [`HttpServer::listen`]: torsion_protocols::http::HttpServer::listen
//! [`Handler`]: torsion_protocols::http::Handler
//! [`Handler::writable`]: torsion_protocols::http::Handler::writable
//! [`Handler::upgraded`]: torsion_protocols::http::Handler::upgraded
//! [`HttpCtx`]: torsion_protocols::http::HttpCtx
