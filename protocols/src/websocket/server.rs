//! The server side: an HTTP [`Handler`] that upgrades requests to WebSocket connections.

use std::fmt;
use std::rc::Rc;

use http::header;
use torsion_reactor::{DisconnectReason, TimerId};

use super::conn::{WsConfig, WsHandler, WsState};
use super::frame::Role;
use super::handshake::{check_request, offered_protocols, switching_response, HandshakeError};
use crate::http::{Handler, HttpCtx, Request, Response};

/// What [`WsServer`]'s routing function decides for a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Route<H> {
    /// Upgrade this request to a WebSocket served by the handler (if the handshake is valid;
    /// an invalid one is answered 400/403/426 and the connection stays HTTP).
    Upgrade(H),
    /// Answer with this plain HTTP response (a page, a 404).
    Respond(Response),
}

/// An HTTP [`Handler`] (one per connection) that serves WebSockets: for each request,
/// `route(&request)` says whether to upgrade it (with which [`WsHandler`]) or answer it as
/// plain HTTP. After a `101` the connection is a WebSocket until it closes.
///
/// ```no_run
/// use std::rc::Rc;
/// use torsion_protocols::http::{status, HttpServer};
/// use torsion_protocols::websocket::{Message, Route, WsConfig, WsCtx, WsHandler, WsServer};
/// use torsion_reactor::Reactor;
///
/// struct Echo;
/// impl WsHandler for Echo {
///     fn message_received(&mut self, wx: &mut WsCtx<'_, '_>, message: Message<'_>) {
///         match message {
///             Message::Text(t) => wx.send_text(t),
///             Message::Binary(b) => wx.send_binary(b),
///         };
///     }
/// }
///
/// let mut reactor = Reactor::new().unwrap();
/// let ws = Rc::new(WsConfig::default());
/// let server = HttpServer::new(move |_peer: &torsion_reactor::Address| {
///     WsServer::new(ws.clone(), |request| match request.uri().path() {
///         "/ws" => Route::Upgrade(Echo),
///         _ => Route::Respond(status(http::StatusCode::NOT_FOUND)),
///     })
/// });
/// let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
/// server.listen(&mut reactor, &addr.into()).unwrap();
/// reactor.run().unwrap();
/// ```
pub struct WsServer<H, F> {
    route: F,
    config: Rc<WsConfig>,
    open: Option<(WsState, H)>,
}

impl<H, F> fmt::Debug for WsServer<H, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsServer").field("upgraded", &self.open.is_some()).finish_non_exhaustive()
    }
}

impl<H: WsHandler, F: FnMut(&Request) -> Route<H> + 'static> WsServer<H, F> {
    /// A handler routing each request with `route`.
    pub fn new(config: Rc<WsConfig>, route: F) -> Self {
        WsServer { route, config, open: None }
    }
}

/// Checks the handshake of `request` against `config` (origin, version, key) and picks the
/// subprotocol: the first the client offers that `config` lists.
pub fn accept_request(
    config: &WsConfig,
    request: &Request,
) -> Result<(Response, Option<String>), HandshakeError> {
    let accept = check_request(request)?;
    if let Some(check) = &config.origin {
        let origin = request.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if !check(origin) {
            return Err(HandshakeError::OriginRefused);
        }
    }
    let protocol = offered_protocols(request).into_iter().find(|p| config.protocols.iter().any(|q| q == p));
    Ok((switching_response(&accept, protocol.as_deref()), protocol))
}

impl<H: WsHandler, F: FnMut(&Request) -> Route<H> + 'static> Handler for WsServer<H, F> {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        let response = match (self.route)(&request) {
            Route::Respond(r) => r,
            Route::Upgrade(mut handler) => match accept_request(&self.config, &request) {
                Ok((response, protocol)) => {
                    if hx.respond(response).is_ok() {
                        // The 101 is queued first: frames written from `open` follow it.
                        let mut st = WsState::new(Role::Server, self.config.clone(), protocol);
                        st.open(hx.ctx(), &mut handler);
                        self.open = Some((st, handler));
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "websocket handshake refused");
                    e.response()
                }
            },
        };
        let _ = hx.respond(response);
    }

    fn upgraded(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
        if let Some((st, handler)) = &mut self.open {
            st.data(hx.ctx(), handler, data);
        }
    }

    fn timer_fired(&mut self, hx: &mut HttpCtx<'_, '_>, timer: TimerId) {
        if let Some((st, handler)) = &mut self.open {
            st.timer(hx.ctx(), handler, timer);
        }
    }

    fn writable(&mut self, hx: &mut HttpCtx<'_, '_>) {
        if let Some((st, handler)) = &mut self.open {
            st.writable(hx.ctx(), handler);
        }
    }

    fn connection_lost(&mut self, hx: &mut HttpCtx<'_, '_>, reason: DisconnectReason) {
        if let Some((st, handler)) = &mut self.open {
            st.lost(hx.ctx(), handler, reason);
        }
    }
}
