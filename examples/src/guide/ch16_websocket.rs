//! # Chapter 16: WebSocket, and the chat room in a browser
//!
//! A WebSocket starts as an HTTP request and becomes a two-way stream of messages. In torsion
//! it is one more [`Handler`](torsion_protocols::http::Handler) of the HTTP server
//! ([`WsServer`]): for each request a routing function says "upgrade this one, with this
//! [`WsHandler`]" or "answer it as plain HTTP". After the `101 Switching Protocols` the
//! connection speaks frames, and your handler gets whole messages. Run `ws-echo` for the
//! smallest server, and `chat-server --web 127.0.0.1:8080` for the browser chat.
//!
//! ## A handler gets messages, and sends them
//! ```
//! use std::rc::Rc;
//! use torsion_protocols::http::{status, HttpConfig, HttpProtocol, Request};
//! use torsion_protocols::websocket::{
//!     encode_frame, Message, Opcode, Route, WsConfig, WsCtx, WsHandler, WsServer,
//! };
//! use torsion_reactor::testing::Harness;
//!
//! /// Counts the messages of one connection and answers each with its number.
//! struct Counter(u32);
//! impl WsHandler for Counter {
//!     fn message_received(&mut self, wx: &mut WsCtx<'_, '_>, message: Message<'_>) {
//!         self.0 += 1;
//!         let kind = match message {
//!             Message::Text(_) => "text",
//!             Message::Binary(_) => "binary",
//!         };
//!         wx.send_text(&format!("{kind} message {}", self.0));
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let ws = Rc::new(WsConfig::default());
//! let http = Rc::new(HttpConfig::default());
//! let id = h
//!     .accept(&mut move |_| {
//!         let route = |request: &Request| match request.uri().path() {
//!             "/count" => Route::Upgrade(Counter(0)),
//!             _ => Route::Respond(status(http::StatusCode::NOT_FOUND)),
//!         };
//!         Some(HttpProtocol::new(WsServer::new(ws.clone(), route), http.clone()))
//!     })
//!     .unwrap();
//! h.feed(id, b"GET /count HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
//! assert!(h.take_written(id).starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! // A client's frames are masked; a ping is answered by the protocol, not by you.
//! let mut frames = Vec::new();
//! encode_frame(&mut frames, Opcode::Binary, true, &[1, 2, 3], Some([7, 7, 7, 7]));
//! encode_frame(&mut frames, Opcode::Ping, true, b"?", Some([1, 2, 3, 4]));
//! h.feed(id, &frames);
//! assert_eq!(h.take_written(id), b"\x81\x10binary message 1\x8a\x01?");
//! ```
//!
//! ## What the protocol does for you
//! The handshake checks (`Upgrade`, `Connection`, version 13, the key; an `Origin` check and
//! subprotocol choice in [`WsConfig`]), reassembling fragments (control frames may come
//! between them), answering pings, checking text is UTF-8 *as it arrives*, and the limits: a
//! message over 1 MiB by default closes the connection with code 1009, an unmasked client
//! frame with 1002, bad UTF-8 with 1007. A close from the peer is answered with the same code;
//! your [`close`] waits for the answer at most
//! [`DEFAULT_CLOSE_TIMEOUT`](torsion_protocols::websocket::DEFAULT_CLOSE_TIMEOUT), then
//! aborts. [`WsHandler::connection_lost`] gets a
//! [`CloseInfo`](torsion_protocols::websocket::CloseInfo): the code (1006 when no close frame
//! came) and whether the handshake completed.
//!
//! ## Backpressure, as everywhere else
//! A send writes one frame into the transport's buffer and returns true once the buffer is
//! over its high mark: stop sending, and go on in [`WsHandler::writable`]. There is no hidden
//! queue between your handler and the socket, so a client that stops reading cannot make the
//! server buffer without bound; past [`WsConfig::max_write_buffer`] (16 MiB by default) it is
//! cut off.
//!
//! ## The client
//! [`connect_ws`](torsion_protocols::websocket::connect_ws) (or
//! [`ws_client`](torsion_protocols::websocket::ws_client) from inside a callback) connects,
//! sends the upgrade request, checks the answer, masks every frame, and then runs the same
//! kind of [`WsHandler`]. The browser test of the chat drives Chromium's DevTools protocol
//! with it.
//!
//! ## The chat room in a browser
//! `chat-server --web ADDR` ([`torsion_examples::chat_web`](crate::chat_web)) serves a page at
//! `GET /` and the room at `/ws`. A browser user is the same
//! [`Chatter`](crate::chat::Chatter) as an `nc` user, reached through a different
//! [`Peer`](crate::chat::Peer): one text frame per line instead of `line\r\n`. The room writes
//! a broadcast to browsers as one frame built once, shared by every recipient's buffer like the
//! line version. Two rules for anything that shows other people's text: replace control
//! characters before they reach a terminal ([`sanitize`](crate::chat::sanitize)), and put
//! text into a page with `textContent`, never `innerHTML`.
//!
//! Next: run `ws-echo` and talk to it with `python3 -m websockets ws://127.0.0.1:9001/`.
//!
//! [`WsServer`]: torsion_protocols::websocket::WsServer
//! [`WsHandler`]: torsion_protocols::websocket::WsHandler
//! [`WsHandler::connection_lost`]: torsion_protocols::websocket::WsHandler::connection_lost
//! [`WsHandler::writable`]: torsion_protocols::websocket::WsHandler::writable
//! [`WsConfig`]: torsion_protocols::websocket::WsConfig
//! [`WsConfig::max_write_buffer`]: torsion_protocols::websocket::WsConfig::max_write_buffer
//! [`close`]: torsion_protocols::websocket::WsCtx::close
