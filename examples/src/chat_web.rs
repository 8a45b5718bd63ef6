//! The chat room in a browser: an HTTP server that serves one self-contained page at `GET /`
//! and upgrades `/ws` to a WebSocket whose text messages are chat lines, in the same [`Room`]
//! as the line clients.
//!
//! A browser user is a [`Chatter`] like any `nc` user: same name prompt, same commands, same
//! join/leave lines, same control-character replacement. Only the wire differs: each line is
//! one text frame (the [`Peer`] for a WebSocket sends frames; the room writes a broadcast to
//! a browser as one frame built once for all of them). The same limits apply: a message over
//! the line limit closes the WebSocket with 1009, each browser's write buffer is capped at
//! the same 1 MiB, the room's slow-consumer rule (hold the talkers back for up to a second,
//! then leave the non-reader to its cap) counts browsers like everyone else, through
//! [`WsHandler::writable`], and the idle timeout and the cap on clients apply to the web port
//! as to the line port (each counted apart).
//!
//! The page ([`PAGE`], embedded in the binary) has inline CSS and JavaScript and references no
//! other host; it renders every string from the server with `textContent`, never as HTML, and
//! reconnects with backoff (0.5 s doubling to 10 s) when the connection drops, logging back in
//! under the same name.

use std::rc::Rc;

use bytes::Bytes;

use http::header::{self, HeaderValue};
use http::StatusCode;
use torsion_protocols::http::{status, text, HttpServer, Request, Response};
use torsion_protocols::policies::{LimitConnectionsFactory, TimeoutFactory};
use torsion_protocols::websocket::{CloseInfo, Message, Route, WsConfig, WsCtx, WsHandler, WsServer};
use torsion_reactor::{Address, Ctx, ListeningPort, Reactor};

use crate::chat::{ChatConfig, Chatter, Peer, Room, WELCOME};

/// The page served at `GET /`: one HTML file, CSS and JavaScript inline, nothing fetched from
/// anywhere else.
pub const PAGE: &str = include_str!("chat_page.html");

/// What a browser that sends a binary message reads.
pub const BINARY_REFUSED: &str = "Binary messages are not chat; ignored.";

/// Serves the page and the WebSocket for `room` on `addr` (with the same line limit,
/// write-buffer cap, idle timeout and cap on connections as the line clients, from `config`;
/// over the cap a newcomer gets `503` and a close).
pub fn listen_web(
    reactor: &mut Reactor,
    addr: &Address,
    room: Room,
    config: &ChatConfig,
) -> Result<ListeningPort, torsion_reactor::Error> {
    let ws = Rc::new(
        WsConfig::default()
            .max_message(config.max_line_length)
            .max_frame(config.max_line_length)
            .max_write_buffer(Some(config.max_write_buffer)),
    );
    let server = HttpServer::new(move |_peer: &Address| {
        let room = room.clone();
        WsServer::new(ws.clone(), move |request: &Request| route(request, &room))
    });
    server.install_graceful_stop(reactor);
    // The same cap on connections as the line port (counted apart from it); one more reads
    // `Server full` (as plain text: it is not HTTP yet) and is closed.
    let mut limited = LimitConnectionsFactory::new(server);
    limited
        .set_max_connections(Some(config.max_clients))
        .set_max_per_peer(None)
        .set_refusal_message(Some(Bytes::from_static(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nConnection: close\r\n\r\nServer full\n",
    )));
    // And the same idle timeout (`--idle-timeout`): a browser that sends nothing for that long
    // is closed (the page reconnects).
    let mut idle = TimeoutFactory::new(limited);
    idle.set_timeout(config.idle_timeout);
    reactor.listen(addr, idle)
}

fn route(request: &Request, room: &Room) -> Route<WebChatter> {
    match request.uri().path() {
        "/ws" => Route::Upgrade(WebChatter(Chatter::new(room.clone(), true))),
        "/" => Route::Respond(page()),
        _ => Route::Respond(status(StatusCode::NOT_FOUND)),
    }
}

fn page() -> Response {
    let mut response = text(StatusCode::OK, PAGE);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Defence in depth: the page loads nothing and talks only to its own origin.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    response
}

/// A browser's [`Chatter`]: each text message is a line.
#[derive(Debug)]
pub struct WebChatter(Chatter);

/// The [`Peer`] of a browser: lines go out as text frames.
struct WsPeer<'w, 'a, 'b>(&'w mut WsCtx<'a, 'b>);

impl<'b> Peer<'b> for WsPeer<'_, '_, 'b> {
    fn ctx(&mut self) -> &mut Ctx<'b> {
        self.0.ctx()
    }

    fn send(&mut self, line: &str) {
        self.0.send_text(line);
    }

    fn quit(&mut self) {
        self.0.close(1000, "bye");
    }
}

impl WsHandler for WebChatter {
    fn open(&mut self, wx: &mut WsCtx<'_, '_>) {
        wx.send_text(WELCOME);
    }

    fn message_received(&mut self, wx: &mut WsCtx<'_, '_>, message: Message<'_>) {
        match message {
            Message::Text(line) => self.0.line(&mut WsPeer(wx), line),
            Message::Binary(_) => {
                wx.send_text(BINARY_REFUSED);
            }
        }
    }

    fn writable(&mut self, wx: &mut WsCtx<'_, '_>) {
        let id = wx.ctx().conn_id();
        self.0.room().drained(wx.ctx(), id);
    }

    fn connection_lost(&mut self, wx: &mut WsCtx<'_, '_>, close: CloseInfo) {
        let reason = format!("websocket closed ({}, {})", close.code, close.disconnect);
        self.0.left(wx.ctx(), &reason);
        let id = wx.ctx().conn_id();
        self.0.room().gone(wx.ctx(), id);
    }
}
