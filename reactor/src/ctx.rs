//! The contexts lent to user code: [`LoopCtx`] to callbacks that belong to no connection
//! (loop-level timers, `call_soon`, thread calls, failed connects, shutdown triggers), and
//! [`Ctx`], which adds "this connection", to protocol and producer callbacks. A `Ctx`
//! dereferences to a `LoopCtx`, so everything a loop callback may do, a protocol may do too;
//! only a `Ctx` has a [`transport`](Ctx::transport), so no call can silently do nothing for
//! want of a connection.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use torsion_transports::Address;

use crate::core::{ConnId, Core, Exit, ListenerId, SourceKey, Task};
use crate::handle::ReactorHandle;
use crate::protocol::ClientFactory;
use crate::timers::TimerId;
use crate::transport::Transport;
use crate::Error;

/// The context lent to callbacks that belong to no connection: reach connections by id, set
/// timers, connect out, control the reactor.
pub struct LoopCtx<'a> {
    pub(crate) core: &'a mut Core,
}

impl fmt::Debug for LoopCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopCtx").finish_non_exhaustive()
    }
}

/// The context lent to a protocol's (or a producer's) callbacks: this connection's
/// [`transport`](Ctx::transport) and protocol timers, plus everything a [`LoopCtx`] offers
/// (through `Deref`).
pub struct Ctx<'a> {
    lp: LoopCtx<'a>,
    conn: SourceKey,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("conn", &self.conn).finish_non_exhaustive()
    }
}

impl<'a> Deref for Ctx<'a> {
    type Target = LoopCtx<'a>;

    fn deref(&self) -> &LoopCtx<'a> {
        &self.lp
    }
}

impl DerefMut for Ctx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.lp
    }
}

impl<'a> LoopCtx<'a> {
    /// Only the dispatcher builds contexts.
    pub(crate) fn new(core: &'a mut Core) -> LoopCtx<'a> {
        LoopCtx { core }
    }

    /// A live connection's transport; `None` if it is gone (or never was).
    ///
    /// This is how one connection writes to others: shared state (in the factory) keeps
    /// [`ConnId`]s, never transports, and a broadcast looks each one up:
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use torsion_reactor::testing::Harness;
    /// use torsion_reactor::{ConnId, Ctx, DisconnectReason, Protocol};
    ///
    /// type Members = Rc<RefCell<Vec<ConnId>>>;
    ///
    /// struct Relay { members: Members }
    ///
    /// impl Protocol for Relay {
    ///     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
    ///         self.members.borrow_mut().push(cx.conn_id());
    ///     }
    ///     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
    ///         let me = cx.conn_id();
    ///         for &id in self.members.borrow().iter().filter(|&&id| id != me) {
    ///             if let Some(mut other) = cx.transport_for(id) {
    ///                 other.write(data);
    ///             }
    ///         }
    ///     }
    ///     fn connection_lost(&mut self, cx: &mut Ctx<'_>, _reason: DisconnectReason) {
    ///         let me = cx.conn_id();
    ///         self.members.borrow_mut().retain(|&id| id != me);
    ///     }
    /// }
    ///
    /// let members = Members::default();
    /// let mut h = Harness::new();
    /// let mut factory = move |_| Some(Relay { members: members.clone() });
    /// let a = h.accept(&mut factory).unwrap();
    /// let b = h.accept(&mut factory).unwrap();
    /// let c = h.accept(&mut factory).unwrap();
    /// h.feed(a, b"hi all");
    /// assert_eq!(h.take_written(b), b"hi all");
    /// assert_eq!(h.take_written(c), b"hi all");
    /// assert!(h.take_written(a).is_empty());
    /// ```
    pub fn transport_for(&mut self, id: ConnId) -> Option<Transport<'_>> {
        self.core.open_conn(id.0)?;
        Some(Transport::new(self.core, id.0))
    }

    /// Fires [`Protocol::timer_fired`](crate::Protocol::timer_fired) on the protocol of
    /// connection `id` after `delay`, like that connection's own [`Ctx::set_timer`]; `None` if
    /// the connection is gone. This is how code outside a connection (another connection, a
    /// loop timer) wakes it up to act on shared state it left there: an HTTP response computed
    /// elsewhere, a message in a mailbox. The timer is cancelled when the connection ends.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::testing::Harness;
    /// use torsion_reactor::{ConnId, Ctx, Protocol, TimerId};
    ///
    /// /// Wakes the connection in `TARGET` a second after any input.
    /// struct Waker;
    /// impl Protocol for Waker {
    ///     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
    ///         let _ = data;
    ///         let target = TARGET.with(|t| t.get()).unwrap();
    ///         assert!(cx.set_timer_for(target, Duration::from_secs(1)).is_some());
    ///     }
    /// }
    /// struct Sleeper;
    /// impl Protocol for Sleeper {
    ///     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    ///     fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
    ///         cx.transport().write(b"woken");
    ///     }
    /// }
    /// thread_local!(static TARGET: std::cell::Cell<Option<ConnId>> = const { std::cell::Cell::new(None) });
    ///
    /// let mut h = Harness::new();
    /// let sleeper = h.accept(&mut |_| Some(Sleeper)).unwrap();
    /// let waker = h.accept(&mut |_| Some(Waker)).unwrap();
    /// TARGET.with(|t| t.set(Some(sleeper)));
    /// h.feed(waker, b"go");
    /// h.advance(Duration::from_secs(1));
    /// assert_eq!(h.take_written(sleeper), b"woken");
    /// ```
    pub fn set_timer_for(&mut self, id: ConnId, delay: Duration) -> Option<TimerId> {
        self.core.open_conn(id.0)?;
        Some(self.core.set_protocol_timer(id.0, delay))
    }

    /// Runs `f` after `delay` (on the reactor's clock), independent of any connection.
    pub fn call_later(&mut self, delay: Duration, f: impl FnOnce(&mut LoopCtx<'_>) + 'static) -> TimerId {
        self.core.call_later(delay, Box::new(f))
    }

    /// Runs `f` now and then every `interval`; a late loop skips the intervals it missed.
    /// Cancel the returned id to stop it.
    pub fn looping_call(&mut self, interval: Duration, f: impl FnMut(&mut LoopCtx<'_>) + 'static) -> TimerId {
        self.core.looping_call(interval, Box::new(f))
    }

    /// Queues `f` to run after the current callback, in this turn.
    pub fn call_soon(&mut self, f: impl FnOnce(&mut LoopCtx<'_>) + 'static) {
        self.core.tasks.push_back(Task::Call(Box::new(f)));
    }

    /// Cancels a timer or looping call; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.core.cancel_timer(id)
    }

    /// Moves a pending timer to fire `delay` from now; false if it is no longer pending.
    pub fn reset_timer(&mut self, id: TimerId, delay: Duration) -> bool {
        self.core.reset_timer(id, delay)
    }

    /// True while a timer is pending.
    pub fn is_timer_active(&self, id: TimerId) -> bool {
        self.core.timers.is_active(id)
    }

    /// The reactor's current time.
    pub fn now(&self) -> Instant {
        self.core.clock.now()
    }

    /// Connects to a TCP address; `connection_made` of the new protocol runs later, from the
    /// loop. Uses the reactor's connect timeout.
    pub fn connect_tcp(
        &mut self,
        addr: std::net::SocketAddr,
        factory: impl ClientFactory,
    ) -> Result<ConnId, Error> {
        self.connect(Address::Inet(addr), factory)
    }

    /// Connects to any stream address (TCP or Unix) with the reactor's connect timeout.
    pub fn connect(
        &mut self,
        addr: impl Into<Address>,
        factory: impl ClientFactory,
    ) -> Result<ConnId, Error> {
        let timeout = self.core.config.connect_timeout;
        self.core.connect(addr.into(), Box::new(factory), timeout)
    }

    /// Connects with an explicit timeout.
    pub fn connect_with_timeout(
        &mut self,
        addr: impl Into<Address>,
        factory: impl ClientFactory,
        timeout: Duration,
    ) -> Result<ConnId, Error> {
        self.core.connect(addr.into(), Box::new(factory), timeout)
    }

    /// Cancels an outbound connection that is still connecting (Twisted's
    /// `stopConnecting`): its factory's `client_connection_failed` gets
    /// [`Error::ConnectCancelled`] after this callback. Returns `false` (and does nothing) if
    /// it is connected already, or gone.
    pub fn cancel_connect(&mut self, id: ConnId) -> bool {
        self.core.cancel_connect(id.0)
    }

    /// Stops listening on a port (existing connections are unaffected).
    pub fn stop_listening(&mut self, id: ListenerId) {
        self.core.stop_listening(id.0);
    }

    /// Requests a graceful stop of the reactor (after this callback returns).
    pub fn stop_reactor(&mut self) {
        self.core.stop_requested = true;
    }

    /// Requests a graceful stop after which [`Reactor::run`](crate::Reactor::run) returns
    /// `error`. The first error or value given wins.
    pub fn stop_with_error(&mut self, error: impl Into<Error>) {
        self.core.exit_with(Exit::Error(error.into()));
    }

    /// Requests a graceful stop after which
    /// [`Reactor::run_with_result`](crate::Reactor::run_with_result) returns `value` (an exit
    /// status, a result computed by a client). The first error or value given wins.
    pub fn stop_with<T: 'static>(&mut self, value: T) {
        self.core.exit_with(Exit::Value(Box::new(value)));
    }

    /// Runs `trigger` once when a graceful stop begins; see
    /// [`Reactor::before_shutdown`](crate::Reactor::before_shutdown).
    pub fn before_shutdown(&mut self, trigger: impl FnOnce(&mut LoopCtx<'_>, Instant) + 'static) {
        self.core.shutdown_triggers.push(Box::new(trigger));
    }

    /// The default failure handling of a client: stop with `error` if the reactor has nothing
    /// else to do (no listener, no connection, no pending timer, no queued call).
    pub(crate) fn stop_with_error_if_idle(&mut self, error: Error) {
        if self.core.is_idle() && !self.core.stopping {
            self.stop_with_error(error);
        }
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle::new(self.core.shared.clone())
    }
}

impl<'a> Ctx<'a> {
    /// Only the dispatcher builds contexts.
    pub(crate) fn new(core: &'a mut Core, conn: SourceKey) -> Ctx<'a> {
        Ctx { lp: LoopCtx::new(core), conn }
    }

    /// This connection's id.
    pub fn conn_id(&self) -> ConnId {
        ConnId(self.conn)
    }

    /// This connection's transport.
    pub fn transport(&mut self) -> Transport<'_> {
        Transport::new(self.lp.core, self.conn)
    }

    /// Fires [`Protocol::timer_fired`](crate::Protocol::timer_fired) on this connection's
    /// protocol after `delay`, with the returned id. The timer is cancelled automatically when
    /// the connection ends. (For a closure instead, use [`LoopCtx::call_later`].)
    pub fn set_timer(&mut self, delay: Duration) -> TimerId {
        self.lp.core.set_protocol_timer(self.conn, delay)
    }
}
