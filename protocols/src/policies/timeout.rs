//! Idle timeouts: Twisted's `TimeoutMixin` as a wrapper ([`TimeoutProtocol`]) and
//! `TimeoutFactory` as a factory wrapper ([`TimeoutFactory`]).

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion_reactor::{
    Address, ClientFactory, ConnId, Ctx, DisconnectReason, Factory, LoopCtx, Protocol, TimerId, Wrapper,
};

/// Default idle timeout of a [`TimeoutFactory`]: 30 minutes, Twisted's `TimeoutFactory`
/// default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Default grace period after the default timeout action: a connection that timed out and was
/// asked to close cleanly, but is still flushing to a peer that does not read, is aborted this
/// long afterwards (Twisted's HTTP channel uses the same 15 s).
pub const DEFAULT_ABORT_AFTER: Duration = Duration::from_secs(15);

/// The state shared by a [`TimeoutProtocol`] and its [`TimeoutHandle`]s.
#[derive(Debug)]
struct State {
    /// The idle period; `None`: no timeout.
    timeout: Option<Duration>,
    /// True while a timeout is in force: set by `set_timeout(Some(..))` and at
    /// `connection_made`, cleared when it fires (Twisted: reads do not re-arm a fired
    /// timeout; `set_timeout` does).
    armed: bool,
    /// The last activity: `connection_made`, a read, a counted write, `reset_timeout`.
    last_activity: Option<Instant>,
    /// Also count the wrapped protocol's writes as activity.
    reset_on_write: bool,
    /// After the default action, abort a connection still open this long afterwards.
    abort_after: Option<Duration>,
    /// Our pending idle timer and when it is due. It may be due earlier than the deadline
    /// (activity since it was set moves the deadline; the timer re-arms when it fires).
    timer: Option<(TimerId, Instant)>,
    /// The grace timer armed after the default action.
    abort_timer: Option<TimerId>,
    /// The connection, once `connection_made` ran.
    owner: Option<ConnId>,
    /// A change was made through a handle with another connection's `Ctx`: apply it at this
    /// connection's next callback.
    dirty: bool,
    /// The timeout fired (and no new one was set since).
    fired: bool,
}

impl State {
    fn deadline(&self) -> Option<Instant> {
        match (self.armed, self.timeout, self.last_activity) {
            (true, Some(timeout), Some(last)) => Some(last + timeout),
            _ => None,
        }
    }

    /// Makes sure a timer fires at or before the deadline. Cheap when a timer is already due
    /// at or before it (the common case after a read: nothing to do).
    fn arm(&mut self, cx: &mut Ctx<'_>) {
        if self.owner != Some(cx.conn_id()) {
            self.dirty = true;
            return;
        }
        self.dirty = false;
        let Some(deadline) = self.deadline() else { return };
        let now = cx.now();
        let delay = deadline.saturating_duration_since(now);
        match self.timer {
            Some((_, due)) if due <= deadline => {}
            Some((id, _)) if cx.reset_timer(id, delay) => self.timer = Some((id, deadline)),
            _ => self.timer = Some((cx.set_timer(delay), deadline)),
        }
    }
}

/// Controls the idle timeout of one connection from inside its protocol: change it, cancel it,
/// count activity by hand. Get one from [`TimeoutProtocol::handle`] or
/// [`TimeoutProtocol::build`]; clones share the same connection.
///
/// Methods that take a `Ctx` act at once when given the connection's own `Ctx` (any callback
/// of the wrapped protocol, or of a producer registered on it). Given another connection's
/// `Ctx`, the change is recorded and applied at this connection's next callback.
#[derive(Clone)]
pub struct TimeoutHandle(Rc<RefCell<State>>);

impl fmt::Debug for TimeoutHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.0.borrow();
        f.debug_struct("TimeoutHandle")
            .field("timeout", &state.timeout)
            .field("armed", &state.armed)
            .field("reset_on_write", &state.reset_on_write)
            .finish_non_exhaustive()
    }
}

impl TimeoutHandle {
    fn new(timeout: Option<Duration>) -> Self {
        TimeoutHandle(Rc::new(RefCell::new(State {
            timeout,
            armed: timeout.is_some(),
            last_activity: None,
            reset_on_write: false,
            abort_after: Some(DEFAULT_ABORT_AFTER),
            timer: None,
            abort_timer: None,
            owner: None,
            dirty: false,
            fired: false,
        })))
    }

    /// The idle period in force; `None` when there is none (never set, cancelled, or it
    /// already fired).
    pub fn timeout(&self) -> Option<Duration> {
        let state = self.0.borrow();
        state.timeout.filter(|_| state.armed)
    }

    /// When the connection times out unless there is activity first; `None` without a
    /// timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.0.borrow().deadline()
    }

    /// Sets the idle period and restarts it from now (Twisted's `setTimeout`); `None` cancels
    /// the timeout. Also re-arms a timeout that already fired.
    pub fn set_timeout(&self, cx: &mut Ctx<'_>, timeout: Option<Duration>) {
        let mut state = self.0.borrow_mut();
        state.timeout = timeout;
        state.armed = timeout.is_some();
        state.fired = false;
        state.last_activity = Some(cx.now());
        // A pending timer due later than the new deadline is moved; an earlier one (or one
        // left over from a cancelled timeout) fires, finds no deadline passed, and re-arms or
        // does nothing. Cancelling it instead would cost the reactor a stale entry per call.
        state.arm(cx);
    }

    /// Counts activity now, restarting the idle period (Twisted's `resetTimeout`). Reads do
    /// this automatically, writes too with [`TimeoutProtocol::set_reset_on_write`]; call it
    /// for activity the wrapper cannot see (writes by a registered producer object, or by
    /// another connection). Does not re-arm a timeout that already fired.
    pub fn reset_timeout(&self, cx: &mut Ctx<'_>) {
        let mut state = self.0.borrow_mut();
        state.last_activity = Some(cx.now());
        if state.dirty {
            state.arm(cx);
        }
    }

    /// Whether the wrapped protocol's writes count as activity (off by default).
    pub fn set_reset_on_write(&self, on: bool) {
        self.0.borrow_mut().reset_on_write = on;
    }

    /// True if the timeout fired on this connection.
    pub fn timed_out(&self) -> bool {
        self.0.borrow().fired
    }
}

/// What to do on timeout instead of the default close; gets the wrapped protocol.
type Hook<P> = Box<dyn FnMut(&mut P, &mut Ctx<'_>)>;

/// Closes a connection that saw no activity for a given time (Twisted's `TimeoutMixin` /
/// `TimeoutProtocol`), wrapping any protocol.
///
/// - Every `data_received` restarts the idle period; with
///   [`set_reset_on_write`](Self::set_reset_on_write), so does every callback of the wrapped
///   protocol that writes to its transport.
/// - When the period passes with no activity the timeout fires, exactly at the deadline: by
///   default the connection is closed cleanly with [`DisconnectReason::TimedOut`] (anything
///   buffered is flushed first), and aborted [`DEFAULT_ABORT_AFTER`] later if it is still
///   flushing; [`on_timeout`](Self::on_timeout) replaces that action. A fired timeout stays
///   off until [`TimeoutHandle::set_timeout`] sets a new one.
/// - The wrapped protocol changes or cancels its timeout through a [`TimeoutHandle`].
///
/// # Cost
/// A read only stores the time. The wrapper keeps one timer; when it fires before the
/// (moved) deadline it re-arms for the rest, so a busy connection costs one timer firing per
/// idle period, not a timer operation per read.
///
/// # Timers
/// The wrapper's own timers are handled here; every other [`Protocol::timer_fired`] is passed
/// to the wrapped protocol, which uses `cx.set_timer` as usual.
///
/// ```
/// use std::time::Duration;
/// use torsion_protocols::policies::TimeoutProtocol;
/// use torsion_protocols::Echo;
/// use torsion_reactor::testing::Harness;
/// use torsion_reactor::DisconnectReason;
///
/// let mut h = Harness::new();
/// let id = h.accept(&mut |_| Some(TimeoutProtocol::new(Echo, Some(Duration::from_secs(10))))).unwrap();
/// h.advance(Duration::from_secs(9));
/// h.feed(id, b"ping"); // activity: the deadline moves to 19 s
/// h.advance(Duration::from_secs(9));
/// assert!(h.is_open(id));
/// h.advance(Duration::from_secs(1));
/// assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
/// ```
#[doc(alias = "TimeoutMixin")]
pub struct TimeoutProtocol<P: ?Sized + Protocol = dyn Protocol> {
    state: TimeoutHandle,
    on_timeout: Option<Hook<P>>,
    inner: Box<P>,
}

impl<P: ?Sized + Protocol> fmt::Debug for TimeoutProtocol<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutProtocol")
            .field("state", &self.state)
            .field("on_timeout", &self.on_timeout.is_some())
            .finish_non_exhaustive()
    }
}

impl<P: Protocol> TimeoutProtocol<P> {
    /// Wraps `inner` with an idle timeout (`None`: none until the handle sets one).
    pub fn new(inner: P, timeout: Option<Duration>) -> Self {
        Self::from_box(Box::new(inner), timeout)
    }

    /// Builds the wrapped protocol with this connection's [`TimeoutHandle`], so it can change
    /// its own timeout at run time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_protocols::policies::{TimeoutHandle, TimeoutProtocol};
    /// use torsion_reactor::{Ctx, Protocol};
    ///
    /// /// Short timeout until the client logs in, none afterwards.
    /// struct Login {
    ///     timeout: TimeoutHandle,
    /// }
    ///
    /// impl Protocol for Login {
    ///     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
    ///         if data.starts_with(b"LOGIN") {
    ///             self.timeout.set_timeout(cx, None);
    ///         }
    ///     }
    /// }
    ///
    /// let _p = TimeoutProtocol::build(Some(Duration::from_secs(5)), |timeout| Login { timeout });
    /// ```
    pub fn build(timeout: Option<Duration>, inner: impl FnOnce(TimeoutHandle) -> P) -> Self {
        let state = TimeoutHandle::new(timeout);
        let inner = Box::new(inner(state.clone()));
        TimeoutProtocol { state, on_timeout: None, inner }
    }
}

impl<P: ?Sized + Protocol> TimeoutProtocol<P> {
    /// Wraps a boxed protocol (a `Box<dyn Protocol>` from a factory, for example).
    pub fn from_box(inner: Box<P>, timeout: Option<Duration>) -> Self {
        TimeoutProtocol { state: TimeoutHandle::new(timeout), on_timeout: None, inner }
    }

    /// A handle to change this connection's timeout.
    pub fn handle(&self) -> TimeoutHandle {
        self.state.clone()
    }

    /// Counts the wrapped protocol's writes as activity too (off by default): after each of
    /// its callbacks that grew the transport's write buffer, the idle period restarts. Writes
    /// made by a registered [`Producer`](torsion_reactor::Producer) object or by another
    /// connection are not seen; count them with [`TimeoutHandle::reset_timeout`].
    pub fn set_reset_on_write(&mut self, on: bool) -> &mut Self {
        self.state.set_reset_on_write(on);
        self
    }

    /// After the default timeout action, abort the connection if it is still open (flushing
    /// to a peer that does not read) this long afterwards; `None`: never. Default
    /// [`DEFAULT_ABORT_AFTER`]. Not used with [`on_timeout`](Self::on_timeout).
    pub fn set_abort_after(&mut self, grace: Option<Duration>) -> &mut Self {
        self.state.0.borrow_mut().abort_after = grace;
        self
    }

    /// Replaces the default timeout action (close with [`DisconnectReason::TimedOut`]); the
    /// hook gets the wrapped protocol and the connection's [`Ctx`], to say goodbye first, or
    /// to keep the connection and set a new timeout through the handle. The hook closes the
    /// connection itself if it should close (no grace abort follows a hook).
    ///
    /// When the wrapped protocol is a framer ([`LineReceiver`](crate::LineReceiver),
    /// [`StringReceiver`](crate::framing::StringReceiver)), its `call_handler` reaches the
    /// handler with a [`LineCtx`](crate::LineCtx) or [`StringCtx`](crate::StringCtx), so the
    /// goodbye can be a `send_line`:
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_protocols::policies::TimeoutProtocol;
    /// use torsion_protocols::{LineCtx, LineHandler, LineReceiver};
    /// use torsion_reactor::DisconnectReason;
    ///
    /// struct Session;
    /// impl LineHandler for Session {
    ///     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
    ///         lx.send_line(line);
    ///     }
    /// }
    ///
    /// let mut protocol = TimeoutProtocol::new(LineReceiver::new(Session), Some(Duration::from_secs(60)));
    /// protocol.on_timeout(|receiver, cx| {
    ///     receiver.call_handler(cx, |_session, lx| {
    ///         lx.send_line(b"idle for a minute, goodbye");
    ///         lx.lose_connection_with(DisconnectReason::TimedOut);
    ///     })
    /// });
    /// ```
    #[doc(alias = "timeout_connection")]
    #[doc(alias = "timeoutConnection")]
    pub fn on_timeout(&mut self, hook: impl FnMut(&mut P, &mut Ctx<'_>) + 'static) -> &mut Self {
        self.on_timeout = Some(Box::new(hook));
        self
    }

    /// Builder form of [`set_reset_on_write`](Self::set_reset_on_write), by value, for
    /// chaining into `Box::new(..)`.
    pub fn with_reset_on_write(mut self, on: bool) -> Self {
        self.set_reset_on_write(on);
        self
    }

    /// Builder form of [`set_abort_after`](Self::set_abort_after), by value, for chaining
    /// into `Box::new(..)`.
    pub fn with_abort_after(mut self, grace: Option<Duration>) -> Self {
        self.set_abort_after(grace);
        self
    }

    /// Builder form of [`on_timeout`](Self::on_timeout), by value, for chaining into
    /// `Box::new(..)`.
    pub fn with_on_timeout(mut self, hook: impl FnMut(&mut P, &mut Ctx<'_>) + 'static) -> Self {
        self.on_timeout(hook);
        self
    }

    /// The wrapped protocol.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped protocol, mutably.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    /// Calls the wrapped protocol, then counts its writes and applies handle changes.
    fn forward<R>(&mut self, cx: &mut Ctx<'_>, f: impl FnOnce(&mut P, &mut Ctx<'_>) -> R) -> R {
        let count_writes = self.state.0.borrow().reset_on_write;
        let before = if count_writes { cx.transport().bytes_written() } else { 0 };
        let result = f(&mut self.inner, cx);
        let wrote = count_writes && cx.transport().bytes_written() > before;
        let mut state = self.state.0.borrow_mut();
        if wrote {
            state.last_activity = Some(cx.now());
        }
        if state.dirty {
            state.arm(cx);
        }
        result
    }

    /// Our idle timer fired.
    fn idle_timer(&mut self, cx: &mut Ctx<'_>) {
        let expired = {
            let mut state = self.state.0.borrow_mut();
            state.timer = None;
            match state.deadline() {
                None => false,
                Some(deadline) if cx.now() < deadline => {
                    state.arm(cx);
                    false
                }
                Some(_) => {
                    state.armed = false;
                    state.fired = true;
                    true
                }
            }
        };
        if !expired {
            return;
        }
        tracing::debug!(timeout = ?self.state.0.borrow().timeout, "idle timeout");
        match self.on_timeout.as_mut() {
            Some(hook) => hook(&mut self.inner, cx),
            None => {
                cx.transport().lose_connection_with(DisconnectReason::TimedOut);
                let grace = self.state.0.borrow().abort_after;
                if let Some(grace) = grace {
                    let id = cx.set_timer(grace);
                    self.state.0.borrow_mut().abort_timer = Some(id);
                }
            }
        }
    }
}

/// Every callback goes through [`Wrapper`]; each one is overridden here because each either
/// counts activity, applies handle changes after the wrapped protocol ran (see `forward`), or
/// handles the wrapper's own timers.
impl<P: ?Sized + Protocol> Wrapper for TimeoutProtocol<P> {
    type Inner = P;

    fn inner(&mut self) -> &mut P {
        &mut self.inner
    }

    fn on_connection_made(&mut self, cx: &mut Ctx<'_>) {
        {
            let mut state = self.state.0.borrow_mut();
            state.owner = Some(cx.conn_id());
            state.last_activity = Some(cx.now());
            state.arm(cx);
        }
        self.forward(cx, |p, cx| p.connection_made(cx));
    }

    fn on_data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.state.0.borrow_mut().last_activity = Some(cx.now());
        self.forward(cx, |p, cx| p.data_received(cx, data));
    }

    fn on_eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        self.forward(cx, |p, cx| p.eof_received(cx))
    }

    fn on_connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        {
            let mut state = self.state.0.borrow_mut();
            state.timer = None;
            state.abort_timer = None;
            state.owner = None;
        }
        self.inner.connection_lost(cx, reason);
    }

    fn on_timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        let (idle, abort) = {
            let state = self.state.0.borrow();
            (state.timer.is_some_and(|(id, _)| id == timer), state.abort_timer == Some(timer))
        };
        if idle {
            self.idle_timer(cx);
        } else if abort {
            self.state.0.borrow_mut().abort_timer = None;
            tracing::debug!("still open after the timeout's grace period: aborting");
            cx.transport().abort_connection_with(DisconnectReason::TimedOut);
        } else {
            self.forward(cx, |p, cx| p.timer_fired(cx, timer));
        }
    }

    fn on_pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.forward(cx, |p, cx| p.pause_producing(cx));
    }

    fn on_resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.forward(cx, |p, cx| p.resume_producing(cx));
    }
}

/// Wraps every protocol a factory builds in a [`TimeoutProtocol`] (Twisted's
/// `TimeoutFactory`). The idle period defaults to [`DEFAULT_IDLE_TIMEOUT`] (30 minutes).
///
/// A protocol that needs to change its own timeout at run time should be wrapped by hand with
/// [`TimeoutProtocol::build`], which hands it a [`TimeoutHandle`].
///
/// ```no_run
/// use std::time::Duration;
/// use torsion_protocols::policies::TimeoutFactory;
/// use torsion_protocols::Echo;
/// use torsion_reactor::Reactor;
///
/// let mut factory = TimeoutFactory::new(|_peer| Some(Echo));
/// factory.set_timeout(Some(Duration::from_secs(60)));
/// let mut reactor = Reactor::new()?;
/// reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), factory)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TimeoutFactory<F> {
    inner: F,
    timeout: Option<Duration>,
    reset_on_write: bool,
    abort_after: Option<Duration>,
}

impl<F> fmt::Debug for TimeoutFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutFactory")
            .field("timeout", &self.timeout)
            .field("reset_on_write", &self.reset_on_write)
            .field("abort_after", &self.abort_after)
            .finish_non_exhaustive()
    }
}

impl<F> TimeoutFactory<F> {
    /// Wraps `inner` with the default idle timeout, reads only, default grace.
    pub fn new(inner: F) -> Self {
        TimeoutFactory {
            inner,
            timeout: Some(DEFAULT_IDLE_TIMEOUT),
            reset_on_write: false,
            abort_after: Some(DEFAULT_ABORT_AFTER),
        }
    }

    /// The idle period for new connections (`None`: none). Default [`DEFAULT_IDLE_TIMEOUT`].
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.timeout = timeout;
        self
    }

    /// The idle period for new connections.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether writes count as activity; see [`TimeoutProtocol::set_reset_on_write`].
    /// Default off.
    pub fn set_reset_on_write(&mut self, on: bool) -> &mut Self {
        self.reset_on_write = on;
        self
    }

    /// The grace period before aborting a timed-out connection that is still flushing; see
    /// [`TimeoutProtocol::set_abort_after`]. Default [`DEFAULT_ABORT_AFTER`].
    pub fn set_abort_after(&mut self, grace: Option<Duration>) -> &mut Self {
        self.abort_after = grace;
        self
    }

    /// Builder form of [`set_timeout`](Self::set_timeout), by value.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.set_timeout(timeout);
        self
    }

    /// Builder form of [`set_reset_on_write`](Self::set_reset_on_write), by value.
    pub fn with_reset_on_write(mut self, on: bool) -> Self {
        self.set_reset_on_write(on);
        self
    }

    /// Builder form of [`set_abort_after`](Self::set_abort_after), by value.
    pub fn with_abort_after(mut self, grace: Option<Duration>) -> Self {
        self.set_abort_after(grace);
        self
    }

    /// The wrapped factory.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F> TimeoutFactory<F> {
    fn wrap(&self, inner: Box<dyn Protocol>) -> Box<dyn Protocol> {
        let mut protocol = TimeoutProtocol::from_box(inner, self.timeout);
        protocol.set_reset_on_write(self.reset_on_write).set_abort_after(self.abort_after);
        Box::new(protocol)
    }
}

impl<F: Factory> Factory for TimeoutFactory<F> {
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        let inner = self.inner.build_protocol(peer)?;
        Some(self.wrap(inner))
    }
    fn handshake_failed(&mut self, peer: Address, reason: &torsion_reactor::DisconnectReason) {
        self.inner.handshake_failed(peer, reason);
    }
}

/// Outgoing connections get the same idle timeout.
impl<F: ClientFactory> ClientFactory for TimeoutFactory<F> {
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        let inner = self.inner.build_protocol(peer);
        self.wrap(inner)
    }

    fn client_connection_failed(&mut self, cx: &mut LoopCtx<'_>, reason: torsion_reactor::Error) {
        self.inner.client_connection_failed(cx, reason);
    }
}
