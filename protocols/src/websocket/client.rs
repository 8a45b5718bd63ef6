//! The client side: [`WsClient`], a [`Protocol`] that sends the upgrade request, checks the
//! answer and then runs a [`WsHandler`]; [`connect_ws`] and [`ws_client`] to start one.

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use torsion_reactor::{Address, ConnId, Ctx, DisconnectReason, Protocol, Reactor, TimerId};

use super::conn::{CloseInfo, WsConfig, WsCtx, WsHandler, WsState};
use super::frame::{close_code, Role};
use super::handshake::{client_request, new_key, parse_response, HandshakeError};

/// A WebSocket client connection: the handshake, then the frames.
pub struct WsClient<H> {
    handler: H,
    config: Rc<WsConfig>,
    host: String,
    path: String,
    key: String,
    inbuf: Vec<u8>,
    timer: Option<TimerId>,
    failed: Option<HandshakeError>,
    ws: Option<WsState>,
}

impl<H> fmt::Debug for WsClient<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsClient").field("path", &self.path).field("open", &self.ws.is_some()).finish()
    }
}

impl<H: WsHandler> WsClient<H> {
    /// A client asking for `path` with `Host: host`, run by `handler` once open.
    pub fn new(host: impl Into<String>, path: impl Into<String>, handler: H, config: Rc<WsConfig>) -> Self {
        WsClient {
            handler,
            config,
            host: host.into(),
            path: path.into(),
            key: new_key(),
            inbuf: Vec::new(),
            timer: None,
            failed: None,
            ws: None,
        }
    }

    fn handshake(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.inbuf.extend_from_slice(data);
        match parse_response(&self.inbuf, &self.key) {
            Ok(None) => {}
            Ok(Some((used, protocol))) => {
                if let Some(t) = self.timer.take() {
                    cx.cancel_timer(t);
                }
                let mut ws = WsState::new(Role::Client, self.config.clone(), protocol);
                ws.open(cx, &mut self.handler);
                let rest = self.inbuf.split_off(used);
                self.inbuf = Vec::new();
                if !rest.is_empty() {
                    ws.data(cx, &mut self.handler, &rest);
                }
                self.ws = Some(ws);
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket client handshake failed");
                self.failed = Some(e);
                cx.transport()
                    .abort_connection_with(DisconnectReason::ProtocolError("websocket handshake".into()));
            }
        }
    }
}

impl<H: WsHandler> Protocol for WsClient<H> {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let req = client_request(&self.host, &self.path, &self.key, &self.config.protocols);
        cx.transport().write(&req);
        self.timer = Some(cx.set_timer(self.config.handshake_timeout));
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        match &mut self.ws {
            Some(ws) => ws.data(cx, &mut self.handler, data),
            None if self.failed.is_none() => self.handshake(cx, data),
            None => {}
        }
    }

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        match &mut self.ws {
            Some(ws) => ws.timer(cx, &mut self.handler, timer),
            None if self.timer == Some(timer) => {
                self.timer = None;
                self.failed = Some(HandshakeError::BadResponse("no answer before the handshake timeout"));
                cx.transport().abort_connection_with(DisconnectReason::TimedOut);
            }
            None => {}
        }
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().resume_reading();
        if let Some(ws) = &mut self.ws {
            ws.writable(cx, &mut self.handler);
        }
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        match &mut self.ws {
            Some(ws) => ws.lost(cx, &mut self.handler, reason),
            None => {
                let handshake =
                    Some(self.failed.take().unwrap_or(HandshakeError::BadResponse("connection closed")));
                let info = CloseInfo {
                    code: close_code::ABNORMAL,
                    reason: String::new(),
                    clean: false,
                    disconnect: reason,
                    handshake,
                };
                let mut ws = WsState::new(Role::Client, self.config.clone(), None);
                self.handler.connection_lost(&mut WsCtx { cx, tx: &mut ws.tx }, info);
            }
        }
    }
}

/// A client factory for one WebSocket connection to `addr` asking for `path`: pass it to
/// `cx.connect_tcp` (or [`Reactor::connect_tcp`]).
pub fn ws_client<H: WsHandler>(
    addr: SocketAddr,
    path: &str,
    handler: H,
    config: Rc<WsConfig>,
) -> impl FnMut(Address) -> WsClient<DeadOr<H>> {
    let mut handler = Some(handler);
    let host = addr.to_string();
    let path = path.to_owned();
    move |_peer| WsClient::new(host.clone(), path.clone(), DeadOr(handler.take()), config.clone())
}

/// Connects a WebSocket client to `addr` (`ws://addr/path`) on `reactor`.
pub fn connect_ws<H: WsHandler>(
    reactor: &mut Reactor,
    addr: SocketAddr,
    path: &str,
    handler: H,
    config: Rc<WsConfig>,
) -> Result<ConnId, torsion_reactor::Error> {
    reactor.connect_tcp(addr, ws_client(addr, path, handler, config))
}

/// The handler of a client built by [`ws_client`]: present the first time the factory builds
/// (a client factory builds once per connection; a second build gets a handler that ignores
/// everything).
#[derive(Debug)]
pub struct DeadOr<H>(Option<H>);

impl<H: WsHandler> WsHandler for DeadOr<H> {
    fn open(&mut self, wx: &mut WsCtx<'_, '_>) {
        if let Some(h) = &mut self.0 {
            h.open(wx);
        }
    }
    fn message_received(&mut self, wx: &mut WsCtx<'_, '_>, message: super::Message<'_>) {
        if let Some(h) = &mut self.0 {
            h.message_received(wx, message);
        }
    }
    fn pong_received(&mut self, wx: &mut WsCtx<'_, '_>, data: &[u8]) {
        if let Some(h) = &mut self.0 {
            h.pong_received(wx, data);
        }
    }
    fn writable(&mut self, wx: &mut WsCtx<'_, '_>) {
        if let Some(h) = &mut self.0 {
            h.writable(wx);
        }
    }
    fn timer_fired(&mut self, wx: &mut WsCtx<'_, '_>, timer: TimerId) {
        if let Some(h) = &mut self.0 {
            h.timer_fired(wx, timer);
        }
    }
    fn connection_lost(&mut self, wx: &mut WsCtx<'_, '_>, close: CloseInfo) {
        if let Some(h) = &mut self.0 {
            h.connection_lost(wx, close);
        }
    }
}
