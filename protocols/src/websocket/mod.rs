//! WebSocket (RFC 6455): server upgrade from the HTTP server, a client, and a message-level
//! handler.
//!
//! A [`WsHandler`] gets whole messages ([`WsHandler::message_received`] with a
//! [`Message::Text`] or [`Message::Binary`]) and answers through the [`WsCtx`] it is lent:
//! [`send_text`](WsCtx::send_text), [`send_binary`](WsCtx::send_binary),
//! [`ping`](WsCtx::ping), [`close`](WsCtx::close). [`WsHandler::connection_lost`] says how it
//! ended ([`CloseInfo`]: the close code, whether the close handshake completed).
//! The server side is [`WsServer`], an HTTP [`Handler`](crate::http::Handler) that upgrades
//! the requests its routing function picks (so one port serves a page and its WebSocket); the
//! client side is [`WsClient`], started with [`connect_ws`] or [`ws_client`].
//!
//! # Framing: ours, not tungstenite's
//! The frame codec ([`FrameDecoder`], [`encode_frame`]) is written here rather than driving
//! `tungstenite` over an in-memory shim. It is small (one file), it is a pure push decoder
//! like every other framer in this crate (bytes in any pieces, events out, chunk-split
//! tested), and it writes straight into the transport: a server frame's payload is handed to
//! the transport's write buffer once, with no intermediate queue, so outgoing messages are
//! subject to the transport's watermarks (tokio-tungstenite#286 is an unbounded send queue)
//! and its hard cap. A shim would add a second buffer on each side and hide that.
//!
//! # What the protocol does for the handler
//! * **Handshake**: `Upgrade`, `Connection`, `Sec-WebSocket-Version: 13` and a 16-byte
//!   `Sec-WebSocket-Key` are checked (400; 426 naming version 13), an optional `Origin` check
//!   (403, [`WsConfig::origin_check`]), subprotocol selection ([`WsConfig::protocols`]), and
//!   `Sec-WebSocket-Accept` from the `sha1` and `base64` crates ([`accept_key`]).
//! * **Frames**: clients must mask, servers must not (else close 1002); reserved bits and
//!   unknown opcodes: 1002; control frames may come between fragments, must be final and at
//!   most 125 bytes (1002); pings are answered with pongs automatically; text is validated as
//!   UTF-8 as it arrives, across fragments (1007 as soon as a byte cannot be UTF-8); frames
//!   and messages over [`WsConfig::max_frame`] / [`WsConfig::max_message`] (1 MiB each by
//!   default): 1009.
//! * **Close**: a peer's close frame is answered with the same code (RFC 6455 §5.5.1) and the
//!   connection closed; [`WsCtx::close`] sends ours and waits for the answer at most
//!   [`WsConfig::close_timeout`] (5 s by default), then aborts.
//!
//! # Backpressure
//! Sends write into the transport's buffer at once and return true when it is above its high
//! mark: stop, and carry on in [`WsHandler::writable`]. There is no other queue. The buffer
//! also has a hard cap ([`WsConfig::max_write_buffer`], 16 MiB by default): a peer that never
//! reads is cut off there ([`DisconnectReason::BufferOverflow`](torsion_reactor::DisconnectReason)).
//! While the buffer is above its high mark the socket is not read. A push producer can feed a
//! WebSocket: register it with `wx.ctx().transport().register_producer(..)`; it is paused and
//! resumed by the same watermarks.
//!
//! ```
//! use std::rc::Rc;
//! use torsion_protocols::http::{status, HttpConfig, HttpProtocol};
//! use torsion_protocols::websocket::{encode_frame, Message, Opcode, Route, WsConfig, WsCtx, WsHandler, WsServer};
//! use torsion_reactor::testing::Harness;
//!
//! struct Echo;
//! impl WsHandler for Echo {
//!     fn message_received(&mut self, wx: &mut WsCtx<'_, '_>, message: Message<'_>) {
//!         if let Message::Text(t) = message {
//!             wx.send_text(&t.to_uppercase());
//!         }
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let ws = Rc::new(WsConfig::default());
//! let http = Rc::new(HttpConfig::default());
//! let id = h
//!     .accept(&mut move |_| {
//!         let route = |_: &torsion_protocols::http::Request| Route::Upgrade(Echo);
//!         Some(HttpProtocol::new(WsServer::new(ws.clone(), route), http.clone()))
//!     })
//!     .unwrap();
//! h.feed(id, b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
//! let head = String::from_utf8(h.take_written(id)).unwrap();
//! assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
//! assert!(head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
//! let mut frame = Vec::new();
//! encode_frame(&mut frame, Opcode::Text, true, b"hi", Some([1, 2, 3, 4]));
//! h.feed(id, &frame);
//! assert_eq!(h.take_written(id), b"\x81\x02HI");
//! ```

mod client;
mod conn;
mod frame;
mod handshake;
mod server;

pub use client::{connect_ws, ws_client, DeadOr, WsClient};
pub use conn::{
    CloseInfo, OriginCheck, WsConfig, WsCtx, WsHandler, DEFAULT_CLOSE_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_WRITE_BUFFER,
};
pub use frame::{
    apply_mask, close_code, close_payload, encode_frame, encode_header, valid_close_code, Event,
    FrameDecoder, Message, Opcode, Role, WsError, DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE,
};
pub use handshake::{
    accept_key, check_request, client_request, is_upgrade_request, new_key, offered_protocols,
    parse_response, switching_response, HandshakeError, MAX_RESPONSE_HEAD,
};
pub use server::{accept_request, Route, WsServer};
