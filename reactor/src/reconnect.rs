//! Keeping a client connected: [`ClientService`], Twisted's `ClientService` (the successor of
//! `ReconnectingClientFactory`).
//!
//! A service wraps any [`ClientFactory`]: it connects, and whenever the connection fails or is
//! lost it waits and connects again, with a delay that starts at 1 s and grows 1.5× per
//! failure up to 60 s, with ±10% jitter so a fleet of clients does not reconnect in step
//! ([`Backoff`]; Twisted's `ClientService` defaults, unlike the old
//! `ReconnectingClientFactory` whose delay reaches an hour after a few failures). The delay
//! starts over after a connection succeeds.
//!
//! ```no_run
//! use torsion_reactor::{client_factory, ClientService, Ctx, Protocol, Reactor};
//!
//! struct Hello;
//! impl Protocol for Hello {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         cx.transport().write(b"hello\n");
//!     }
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let address = "127.0.0.1:8000".parse::<torsion_reactor::Address>().unwrap();
//! let service = ClientService::new(address, client_factory(|_| Hello))
//!     .on_connected(|_cx, id| println!("connected: {id:?}"));
//! service.start(&mut reactor);
//! reactor.run()?;
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! # Stopping
//! [`stop_trying`](ClientService::stop_trying) stops for good, whether it is called while
//! waiting for the next attempt (the timer is cancelled) or while an attempt is connecting
//! (the attempt is cancelled: no extra retry, twisted#4846). A live connection is left alone;
//! [`stop`](ClientService::stop) also closes it (Twisted's `stopService`).
//!
//! # The wrapped factory
//! Its `build_protocol` is called for every connection. Its `client_connection_failed` is
//! **not** called (its default would stop an idle reactor, and failing is what the service
//! handles); observe failures with [`on_failure`](ClientService::on_failure) instead.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;

use torsion_transports::Address;

use crate::core::ConnId;
use crate::ctx::{Ctx, LoopCtx};
use crate::happy::HostConnectId;
use crate::protocol::{ClientFactory, DisconnectReason, Protocol, Wrapper};
use crate::timers::TimerId;
use crate::{Error, Reactor};

/// The retry delays of a [`ClientService`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay after the first failure (default 1 s).
    pub initial: Duration,
    /// Each further failure multiplies the delay by this (default 1.5).
    pub factor: f64,
    /// The delay never exceeds this (default 60 s).
    pub max: Duration,
    /// Each delay is multiplied by a random factor in `[1 - jitter, 1 + jitter]` (default 0.1;
    /// 0 for exact delays).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_secs(1), factor: 1.5, max: Duration::from_secs(60), jitter: 0.1 }
    }
}

impl Backoff {
    /// The delay before attempt `failures + 1`, without jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let grown =
            self.initial.as_secs_f64() * self.factor.powi(failures.saturating_sub(1).min(1000) as i32);
        Duration::from_secs_f64(grown.min(self.max.as_secs_f64()).max(0.0))
    }
}

/// Where a [`ClientService`] connects: an address, or a host name and port (resolved and
/// raced with Happy Eyeballs at every attempt, see [`crate::happy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An address (TCP or Unix).
    Address(Address),
    /// A host name (or IP literal) and port.
    Host(String, u16),
}

impl From<Address> for Target {
    fn from(address: Address) -> Self {
        Target::Address(address)
    }
}

impl From<std::net::SocketAddr> for Target {
    fn from(address: std::net::SocketAddr) -> Self {
        Target::Address(Address::Inet(address))
    }
}

/// A hook called with the loop and a connection id.
type ConnectedHook = Box<dyn FnMut(&mut LoopCtx<'_>, ConnId)>;
/// A hook called with the loop and a failure.
type FailureHook = Box<dyn FnMut(&mut LoopCtx<'_>, &Error)>;

/// What the service is doing.
enum Phase {
    Idle,
    Waiting(TimerId),
    Connecting(Attempt),
    Connected(ConnId),
}

enum Attempt {
    Conn(ConnId),
    Host(HostConnectId),
}

struct State {
    target: Target,
    factory: Box<dyn ClientFactory>,
    backoff: Backoff,
    phase: Phase,
    /// `stop_trying` was called: no more attempts.
    stopped: bool,
    /// Failures since the last successful connection.
    failures: u32,
    on_connected: Option<ConnectedHook>,
    on_failure: Option<FailureHook>,
    rng: u64,
}

/// Keeps a client connected; cheap to clone (clones share the service). See the
/// [module docs](crate::reconnect).
#[derive(Clone)]
pub struct ClientService {
    state: Rc<RefCell<State>>,
}

impl fmt::Debug for ClientService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("ClientService")
            .field("target", &state.target)
            .field("failures", &state.failures)
            .field("connection", &self.connection())
            .finish_non_exhaustive()
    }
}

impl ClientService {
    /// A service connecting to `target` with `factory`, not started yet.
    pub fn new(target: impl Into<Target>, factory: impl ClientFactory) -> ClientService {
        let seed = RandomState::new().build_hasher().finish() | 1;
        ClientService {
            state: Rc::new(RefCell::new(State {
                target: target.into(),
                factory: Box::new(factory),
                backoff: Backoff::default(),
                phase: Phase::Idle,
                stopped: false,
                failures: 0,
                on_connected: None,
                on_failure: None,
                rng: seed,
            })),
        }
    }

    /// Sets the retry delays.
    pub fn with_backoff(self, backoff: Backoff) -> Self {
        self.state.borrow_mut().backoff = backoff;
        self
    }

    /// Calls `hook` each time a connection is made (after the protocol's `connection_made`).
    pub fn on_connected(self, hook: impl FnMut(&mut LoopCtx<'_>, ConnId) + 'static) -> Self {
        self.state.borrow_mut().on_connected = Some(Box::new(hook));
        self
    }

    /// Calls `hook` each time an attempt fails (before the retry is scheduled).
    pub fn on_failure(self, hook: impl FnMut(&mut LoopCtx<'_>, &Error) + 'static) -> Self {
        self.state.borrow_mut().on_failure = Some(Box::new(hook));
        self
    }

    /// Starts connecting (from outside the loop); the first attempt is made on the next turn.
    pub fn start(&self, reactor: &mut Reactor) {
        let service = self.clone();
        reactor.call_later(Duration::ZERO, move |cx| service.start_in(cx));
    }

    /// Starts connecting now, from a callback. Does nothing if already started.
    pub fn start_in(&self, cx: &mut LoopCtx<'_>) {
        let idle = {
            let s = self.state.borrow();
            matches!(s.phase, Phase::Idle) && !s.stopped
        };
        if idle {
            self.attempt(cx);
        }
    }

    /// The live connection, if any.
    pub fn connection(&self) -> Option<ConnId> {
        match self.state.borrow().phase {
            Phase::Connected(id) => Some(id),
            _ => None,
        }
    }

    /// Failures since the last successful connection.
    pub fn failures(&self) -> u32 {
        self.state.borrow().failures
    }

    /// Whether [`stop_trying`](ClientService::stop_trying) or [`stop`](ClientService::stop)
    /// was called.
    pub fn is_stopped(&self) -> bool {
        self.state.borrow().stopped
    }

    /// Stops for good: cancels a pending retry or a connect in progress; a live connection
    /// stays open (but is not replaced when it ends).
    pub fn stop_trying(&self, cx: &mut LoopCtx<'_>) {
        let phase = {
            let mut state = self.state.borrow_mut();
            state.stopped = true;
            match state.phase {
                Phase::Connected(id) => Phase::Connected(id),
                _ => std::mem::replace(&mut state.phase, Phase::Idle),
            }
        };
        match phase {
            Phase::Waiting(timer) => {
                cx.cancel_timer(timer);
            }
            Phase::Connecting(Attempt::Conn(id)) => {
                cx.cancel_connect(id);
            }
            Phase::Connecting(Attempt::Host(id)) => {
                cx.cancel_host_connect(&id);
            }
            Phase::Connected(_) | Phase::Idle => {}
        }
    }

    /// [`stop_trying`](ClientService::stop_trying), and closes the live connection (flushing
    /// it first).
    pub fn stop(&self, cx: &mut LoopCtx<'_>) {
        let live = self.connection();
        self.stop_trying(cx);
        if let Some(mut transport) = live.and_then(|id| cx.transport_for(id)) {
            transport.lose_connection();
        }
    }

    /// Makes one connection attempt.
    fn attempt(&self, cx: &mut LoopCtx<'_>) {
        let factory = ServiceFactory { service: self.clone() };
        let target = self.state.borrow().target.clone();
        let attempt = match target {
            Target::Address(address) => match cx.connect(address, factory) {
                Ok(id) => Attempt::Conn(id),
                Err(e) => {
                    self.state.borrow_mut().phase = Phase::Idle;
                    return self.failed(cx, e);
                }
            },
            Target::Host(host, port) => Attempt::Host(cx.connect_host(&host, port, factory)),
        };
        // Outcomes are reported after this callback, so this is still the attempt's phase.
        self.state.borrow_mut().phase = Phase::Connecting(attempt);
    }

    /// An attempt failed or a connection ended: wait, then try again (unless stopped).
    fn failed(&self, cx: &mut LoopCtx<'_>, error: Error) {
        if self.is_stopped() {
            return;
        }
        let hook = {
            let mut state = self.state.borrow_mut();
            state.failures = state.failures.saturating_add(1);
            state.on_failure.take()
        };
        if let Some(mut hook) = hook {
            hook(cx, &error);
            let mut state = self.state.borrow_mut();
            if state.on_failure.is_none() {
                state.on_failure = Some(hook);
            }
        }
        self.schedule(cx);
    }

    fn schedule(&self, cx: &mut LoopCtx<'_>) {
        if self.is_stopped() {
            return;
        }
        let delay = self.state.borrow_mut().next_delay();
        tracing::debug!(?delay, failures = self.failures(), "reconnecting after a delay");
        let service = self.clone();
        let timer = cx.call_later(delay, move |cx| {
            if matches!(service.state.borrow().phase, Phase::Waiting(_)) {
                service.attempt(cx);
            }
        });
        self.state.borrow_mut().phase = Phase::Waiting(timer);
    }
}

impl State {
    /// The next delay with jitter (xorshift: no crate needed for this).
    fn next_delay(&mut self) -> Duration {
        let base = self.backoff.delay(self.failures.max(1));
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let scale = 1.0 + self.backoff.jitter * (2.0 * unit - 1.0);
        Duration::from_secs_f64((base.as_secs_f64() * scale).max(0.0))
    }
}

/// The factory given to each attempt.
struct ServiceFactory {
    service: ClientService,
}

impl ClientFactory for ServiceFactory {
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        let inner = self.service.state.borrow_mut().factory.build_protocol(peer);
        Box::new(Tracked { inner, service: self.service.clone() })
    }

    fn client_connection_failed(&mut self, cx: &mut LoopCtx<'_>, reason: Error) {
        let stopped = {
            let mut state = self.service.state.borrow_mut();
            state.phase = Phase::Idle;
            state.stopped
        };
        // A cancelled attempt (stop_trying) is not a failure to retry.
        if !stopped {
            tracing::info!(%reason, "connect failed; will retry");
            self.service.failed(cx, reason);
        }
    }
}

/// The user's protocol, with the service told when it starts and ends.
struct Tracked {
    inner: Box<dyn Protocol>,
    service: ClientService,
}

impl Wrapper for Tracked {
    type Inner = dyn Protocol;

    fn inner(&mut self) -> &mut dyn Protocol {
        &mut *self.inner
    }

    fn on_connection_made(&mut self, cx: &mut Ctx<'_>) {
        let id = cx.conn_id();
        {
            let mut state = self.service.state.borrow_mut();
            // The delay starts over after a success (twisted#1994).
            state.failures = 0;
            state.phase = Phase::Connected(id);
        }
        self.inner.connection_made(cx);
        let hook = self.service.state.borrow_mut().on_connected.take();
        if let Some(mut hook) = hook {
            hook(cx, id);
            let mut state = self.service.state.borrow_mut();
            if state.on_connected.is_none() {
                state.on_connected = Some(hook);
            }
        }
    }

    fn on_connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.inner.connection_lost(cx, reason.clone());
        let stopped = {
            let mut state = self.service.state.borrow_mut();
            state.phase = Phase::Idle;
            state.stopped
        };
        if !stopped {
            tracing::info!(%reason, "connection lost; will reconnect");
            // A lost connection waits like a failure, but the count was reset by the success.
            self.service.state.borrow_mut().failures += 1;
            self.service.schedule(cx);
        }
    }
}
