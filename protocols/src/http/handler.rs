//! The user's side: [`Handler`], the [`HttpCtx`] lent to it, and [`Responder`] for answering
//! from outside the connection.

use std::cell::RefCell;
use std::fmt;
use std::rc::Weak;
use std::time::Duration;

use torsion_reactor::{ConnId, Ctx, DisconnectReason, LoopCtx, TimerId};

use super::conn::{Shared, St};
use super::response::Response;

/// A request head as handlers see it (the body comes in [`Handler::body`] calls).
pub type Request = http::Request<()>;

/// Identifies one request on its connection (they are numbered from 0 in arrival order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

/// Misuse of the response API: answering a request twice, one that is gone, or writing a
/// streamed body that was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// No request with that id is waiting for a response (answered already, or never was).
    #[error("no request {0:?} is waiting for a response")]
    UnknownRequest(RequestId),
    /// The call needs a current request and this callback has none (`timer_fired`,
    /// `writable`): use the `_to` variant with an id.
    #[error("this callback has no current request")]
    NoCurrentRequest,
    /// `write_body`/`end_body` on a response that is not a [`Body::Stream`](super::Body::Stream).
    #[error("request {0:?} has no streamed response in progress")]
    NotStreaming(RequestId),
}

/// Serves the requests of one connection. The server calls, for each request in order:
/// [`request`](Handler::request) with the head, [`body`](Handler::body) for each piece of the
/// body (none if it has no body), then [`end`](Handler::end). The handler answers with
/// [`HttpCtx::respond`] whenever it likes: at once, later from a timer
/// ([`HttpCtx::set_timer`] then [`timer_fired`](Handler::timer_fired)), or from another
/// connection or a loop callback through a [`Responder`]. Responses go out strictly in request
/// order, whatever order they are made in.
///
/// Every method but `request` has a default that does nothing.
pub trait Handler: 'static {
    /// A request head arrived.
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request);

    /// A piece of the current request's body. Call [`HttpCtx::pause_body`] to stop reading
    /// the socket (flow control), [`HttpCtx::resume_body`] later to carry on.
    fn body(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
        let _ = (hx, data);
    }

    /// The current request's body is complete (called for bodiless requests too).
    fn end(&mut self, hx: &mut HttpCtx<'_, '_>) {
        let _ = hx;
    }

    /// A timer set with [`HttpCtx::set_timer`] fired.
    fn timer_fired(&mut self, hx: &mut HttpCtx<'_, '_>, timer: TimerId) {
        let _ = (hx, timer);
    }

    /// The write buffer drained to its low mark after a [`HttpCtx::write_body`] reported it
    /// above the high mark: a streaming handler writes more here.
    fn writable(&mut self, hx: &mut HttpCtx<'_, '_>) {
        let _ = hx;
    }

    /// After a `101 Switching Protocols` response has been sent, the connection is no longer
    /// HTTP: every byte that follows (those already read included) comes here, raw. Use
    /// `hx.ctx().transport()` to write; the WebSocket protocol plugs in this way.
    fn upgraded(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
        let _ = (hx, data);
    }

    /// The connection is over.
    fn connection_lost(&mut self, hx: &mut HttpCtx<'_, '_>, reason: DisconnectReason) {
        let _ = (hx, reason);
    }
}

/// What a [`Handler`] gets in each callback: the connection's [`Ctx`] plus the request it is
/// about and the response API.
pub struct HttpCtx<'a, 'b> {
    pub(crate) cx: &'a mut Ctx<'b>,
    pub(crate) st: &'a mut St,
    pub(crate) current: Option<RequestId>,
}

impl fmt::Debug for HttpCtx<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCtx").field("current", &self.current).finish_non_exhaustive()
    }
}

impl<'b> HttpCtx<'_, 'b> {
    /// The request this callback is about (`None` in `timer_fired`, `writable`, `upgraded`
    /// and `connection_lost`).
    pub fn request_id(&self) -> Option<RequestId> {
        self.current
    }

    /// The connection's context: its transport, timers, other connections, the reactor.
    pub fn ctx(&mut self) -> &mut Ctx<'b> {
        self.cx
    }

    /// Answers the current request.
    pub fn respond(&mut self, response: Response) -> Result<(), HttpError> {
        let id = self.current.ok_or(HttpError::NoCurrentRequest)?;
        self.respond_to(id, response)
    }

    /// Answers request `id` (from a timer, or after the body of a later request).
    pub fn respond_to(&mut self, id: RequestId, response: Response) -> Result<(), HttpError> {
        self.st.respond(self.cx, id, response)
    }

    /// Writes a piece of a [`Body::Stream`](super::Body::Stream) response to request `id`.
    /// Returns true when the write buffer is above its high mark: stop and wait for
    /// [`Handler::writable`].
    pub fn write_body(&mut self, id: RequestId, data: &[u8]) -> Result<bool, HttpError> {
        self.st.write_body(self.cx, id, data)
    }

    /// Ends a [`Body::Stream`](super::Body::Stream) response to request `id`.
    pub fn end_body(&mut self, id: RequestId) -> Result<(), HttpError> {
        self.st.end_body(self.cx, id)
    }

    /// A handle that answers the current request from anywhere on this reactor thread.
    pub fn responder(&self) -> Option<Responder> {
        self.current.map(|id| self.st.responder(self.cx.conn_id(), id))
    }

    /// Stops reading the request body (and the socket) until [`resume_body`](Self::resume_body):
    /// TCP pushes back on the client.
    pub fn pause_body(&mut self) {
        self.st.body_paused = true;
        self.st.sync_reading(self.cx);
    }

    /// Carries on reading the request body after [`pause_body`](Self::pause_body).
    pub fn resume_body(&mut self) {
        self.st.body_paused = false;
        self.st.sync_reading(self.cx);
    }

    /// Asks for the current request's body in one piece: one [`Handler::body`] call with all
    /// of it before [`Handler::end`], within the server's body limit (413 over it). Call it in
    /// [`Handler::request`].
    pub fn buffer_body(&mut self) {
        self.st.buffer_body();
    }

    /// Fires [`Handler::timer_fired`] after `delay`; cancelled when the connection ends.
    pub fn set_timer(&mut self, delay: Duration) -> TimerId {
        self.cx.set_timer(delay)
    }
}

/// Answers one request from outside its connection's callbacks: from another connection, a
/// loop timer or a thread call (on the reactor's thread). The response is handed to the
/// connection and sent in request order after the current callback; nothing runs re-entrantly.
///
/// ```
/// use torsion_protocols::http::{text, Handler, HttpCtx, Request};
/// use http::StatusCode;
/// use std::time::Duration;
///
/// /// Answers every request half a second later, from a loop-level timer.
/// struct Later;
/// impl Handler for Later {
///     fn request(&mut self, hx: &mut HttpCtx<'_, '_>, _request: Request) {
///         let responder = hx.responder().expect("in request()");
///         hx.ctx().call_later(Duration::from_millis(500), move |lx| {
///             responder.respond(lx, text(StatusCode::OK, "later\n"));
///         });
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Responder {
    pub(crate) conn: ConnId,
    pub(crate) id: RequestId,
    pub(crate) shared: Weak<RefCell<Shared>>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").field("conn", &self.conn).field("id", &self.id).finish()
    }
}

impl Responder {
    /// The connection the request came on.
    pub fn conn_id(&self) -> ConnId {
        self.conn
    }

    /// The request this answers.
    pub fn request_id(&self) -> RequestId {
        self.id
    }

    /// Hands `response` to the connection; false if the connection is gone.
    pub fn respond(self, lx: &mut LoopCtx<'_>, response: Response) -> bool {
        let Some(shared) = self.shared.upgrade() else { return false };
        let Some(timer) = lx.set_timer_for(self.conn, Duration::ZERO) else { return false };
        let mut shared = shared.borrow_mut();
        shared.outbox.push((self.id, response));
        shared.wakes.push(timer);
        true
    }
}
