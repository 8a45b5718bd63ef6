//! Connecting to a host name: resolution on the thread pool, then Happy Eyeballs (RFC 8305),
//! as Twisted's `HostnameEndpoint`.
//!
//! [`LoopCtx::connect_host`] (and [`Reactor::connect_host`](crate::Reactor::connect_host))
//! never blocks the loop: the name is resolved by the reactor's [`Resolver`] on a worker of
//! the [thread pool](crate::threads) (an IP literal skips that step). The addresses are then
//! tried as RFC 8305 says:
//!
//! 1. ordered IPv6 first, alternating families (`v6, v4, v6, v4, ...`);
//! 2. the first attempt starts at once; each next one starts when the previous one fails, or
//!    after the *connection attempt delay* (250 ms, [`Reactor::set_connection_attempt_delay`](crate::Reactor::set_connection_attempt_delay))
//!    if it is still pending, so a blackholed address costs 250 ms, not a connect timeout;
//! 3. the first attempt to connect wins: the others are cancelled, and the factory builds the
//!    protocol for the winner (the protocol sees an ordinary connection);
//! 4. if every attempt fails, the factory's `client_connection_failed` gets
//!    [`Error::AllAttemptsFailed`] with every address and its error.
//!
//! A name that does not resolve is [`Error::Resolve`], through `client_connection_failed`
//! too. The id returned is a [`HostConnectId`]: [`LoopCtx::cancel_host_connect`] gives up.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use torsion_transports::Address;

use crate::core::ConnId;
use crate::ctx::{Ctx, LoopCtx};
use crate::protocol::{ClientFactory, Protocol, Wrapper};
use crate::timers::TimerId;
use crate::Error;

/// RFC 8305's recommended connection attempt delay.
pub const DEFAULT_CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Resolves a host name to socket addresses. Called on a worker thread of the reactor's pool,
/// so it may block.
pub trait Resolver: Send + Sync + 'static {
    /// The addresses of `host` (a name or an IP literal) at `port`, in the resolver's order.
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system's resolver (`getaddrinfo` through [`ToSocketAddrs`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// A host connection in progress, for [`LoopCtx::cancel_host_connect`].
#[derive(Clone)]
pub struct HostConnectId(Rc<RefCell<State>>);

impl fmt::Debug for HostConnectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.0.borrow();
        f.debug_struct("HostConnectId").field("host", &state.host).field("done", &state.done).finish()
    }
}

/// Orders addresses as RFC 8305 section 4 says: IPv6 first, then alternating families, each
/// family in the resolver's order.
pub fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs.iter().partition(|a| a.is_ipv6());
    let mut out = Vec::with_capacity(addrs.len());
    let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|addr| seen.insert(*addr));
    out
}

struct State {
    host: String,
    factory: Option<Box<dyn ClientFactory>>,
    /// Addresses not tried yet, in order.
    queue: Vec<SocketAddr>,
    /// Attempts in flight.
    attempts: Vec<(SocketAddr, ConnId)>,
    errors: Vec<(SocketAddr, Error)>,
    timer: Option<TimerId>,
    timeout: Duration,
    delay: Duration,
    /// Someone won, it was cancelled, or everything failed.
    done: bool,
}

/// Starts the next attempt (if any) and re-arms the attempt-delay timer.
fn start_next(state: &Rc<RefCell<State>>, cx: &mut LoopCtx<'_>) {
    loop {
        let (addr, timeout) = {
            let mut s = state.borrow_mut();
            if s.done || s.queue.is_empty() {
                break;
            }
            (s.queue.remove(0), s.timeout)
        };
        let attempt = Attempt { state: state.clone(), addr };
        match cx.connect_with_timeout(Address::Inet(addr), attempt, timeout) {
            Ok(id) => {
                state.borrow_mut().attempts.push((addr, id));
                break;
            }
            // Could not even start (out of descriptors): record it and try the next one now.
            Err(e) => state.borrow_mut().errors.push((addr, e)),
        }
    }
    let (more, delay, old) = {
        let mut s = state.borrow_mut();
        (!s.done && !s.queue.is_empty(), s.delay, s.timer.take())
    };
    if let Some(old) = old {
        cx.cancel_timer(old);
    }
    if more {
        let again = state.clone();
        let timer = cx.call_later(delay, move |cx| {
            again.borrow_mut().timer = None;
            start_next(&again, cx);
        });
        state.borrow_mut().timer = Some(timer);
    }
    finish_if_all_failed(state, cx);
}

/// Nothing in flight and nothing left: report every failure.
fn finish_if_all_failed(state: &Rc<RefCell<State>>, cx: &mut LoopCtx<'_>) {
    let mut s = state.borrow_mut();
    if s.done || !s.attempts.is_empty() || !s.queue.is_empty() {
        return;
    }
    s.done = true;
    let errors = std::mem::take(&mut s.errors);
    let host = s.host.clone();
    let factory = s.factory.take();
    drop(s);
    if let Some(mut factory) = factory {
        factory.client_connection_failed(cx, Error::AllAttemptsFailed { host, errors });
    }
}

/// One connection attempt's factory: reports to the shared state.
struct Attempt {
    state: Rc<RefCell<State>>,
    addr: SocketAddr,
}

impl ClientFactory for Attempt {
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        let mut s = self.state.borrow_mut();
        s.attempts.retain(|(a, _)| *a != self.addr);
        if s.done {
            // Another attempt won in the same turn: this one closes at once.
            return Box::new(Loser);
        }
        s.done = true;
        let Some(mut factory) = s.factory.take() else { return Box::new(Loser) };
        drop(s);
        let inner = factory.build_protocol(peer);
        Box::new(Winner { inner, state: Some(self.state.clone()) })
    }

    fn client_connection_failed(&mut self, cx: &mut LoopCtx<'_>, reason: Error) {
        let go_on = {
            let mut s = self.state.borrow_mut();
            s.attempts.retain(|(a, _)| *a != self.addr);
            if s.done {
                false
            } else {
                s.errors.push((self.addr, reason));
                true
            }
        };
        if go_on {
            // A failure starts the next attempt at once (RFC 8305 section 5).
            start_next(&self.state, cx);
        }
    }
}

/// The winning attempt's protocol: cancels the other attempts, then is the user's protocol.
struct Winner {
    inner: Box<dyn Protocol>,
    state: Option<Rc<RefCell<State>>>,
}

impl Wrapper for Winner {
    type Inner = dyn Protocol;

    fn inner(&mut self) -> &mut dyn Protocol {
        &mut *self.inner
    }

    fn on_connection_made(&mut self, cx: &mut Ctx<'_>) {
        if let Some(state) = self.state.take() {
            cancel_rest(&state, cx);
        }
        self.inner.connection_made(cx);
    }
}

/// Cancels attempts in flight and the delay timer.
fn cancel_rest(state: &Rc<RefCell<State>>, cx: &mut LoopCtx<'_>) {
    let (attempts, timer) = {
        let mut s = state.borrow_mut();
        s.queue.clear();
        (std::mem::take(&mut s.attempts), s.timer.take())
    };
    if let Some(timer) = timer {
        cx.cancel_timer(timer);
    }
    for (_, id) in attempts {
        cx.cancel_connect(id);
    }
}

/// An attempt that connected after another won.
struct Loser;

impl Protocol for Loser {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().abort_connection();
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

impl LoopCtx<'_> {
    /// Connects to `host` (a name or an IP literal) at `port`: resolves it on the thread pool,
    /// then races the addresses as RFC 8305 says. See the [module docs](crate::happy).
    pub fn connect_host(&mut self, host: &str, port: u16, factory: impl ClientFactory) -> HostConnectId {
        let timeout = self.core.config.connect_timeout;
        self.connect_host_within(host, port, factory, timeout)
    }

    /// [`connect_host`](LoopCtx::connect_host) with `timeout` for each attempt.
    pub(crate) fn connect_host_within(
        &mut self,
        host: &str,
        port: u16,
        factory: impl ClientFactory,
        timeout: Duration,
    ) -> HostConnectId {
        let state = Rc::new(RefCell::new(State {
            host: host.to_owned(),
            factory: Some(Box::new(factory)),
            queue: Vec::new(),
            attempts: Vec::new(),
            errors: Vec::new(),
            timer: None,
            timeout,
            delay: self.core.happy.attempt_delay,
            done: false,
        }));
        let id = HostConnectId(state.clone());
        // An IP literal needs no resolver (and no thread).
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        if let Some(ip) = literal {
            state.borrow_mut().queue = vec![SocketAddr::new(ip, port)];
            self.call_soon(move |cx| start_next(&state, cx));
            return id;
        }
        let resolver = self.core.happy.resolver.clone();
        let name = host.to_owned();
        self.defer_to_thread(
            move || resolver.resolve(&name, port),
            move |cx, result| {
                let host = state.borrow().host.clone();
                let addrs = match result {
                    Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
                    Ok(Ok(_)) => {
                        let e = io::Error::new(io::ErrorKind::NotFound, "no addresses");
                        return resolve_failed(&state, cx, Error::Resolve { host, source: e });
                    }
                    Ok(Err(e)) => return resolve_failed(&state, cx, Error::Resolve { host, source: e }),
                    Err(e) => {
                        let e = io::Error::other(e.to_string());
                        return resolve_failed(&state, cx, Error::Resolve { host, source: e });
                    }
                };
                if state.borrow().done {
                    return; // cancelled while resolving
                }
                state.borrow_mut().queue = interleave(&addrs);
                start_next(&state, cx);
            },
        );
        id
    }

    /// Gives up a [`connect_host`](LoopCtx::connect_host) still in progress: attempts in
    /// flight are cancelled and the factory hears nothing more. Returns whether it was still
    /// in progress.
    pub fn cancel_host_connect(&mut self, id: &HostConnectId) -> bool {
        if std::mem::replace(&mut id.0.borrow_mut().done, true) {
            return false;
        }
        id.0.borrow_mut().factory = None;
        cancel_rest(&id.0, self);
        true
    }
}

fn resolve_failed(state: &Rc<RefCell<State>>, cx: &mut LoopCtx<'_>, error: Error) {
    let factory = {
        let mut s = state.borrow_mut();
        if std::mem::replace(&mut s.done, true) {
            return;
        }
        s.factory.take()
    };
    if let Some(mut factory) = factory {
        factory.client_connection_failed(cx, error);
    }
}

/// Host connections and the resolver.
impl crate::Reactor {
    /// [`LoopCtx::connect_host`] from outside the loop.
    pub fn connect_host(&mut self, host: &str, port: u16, factory: impl ClientFactory) -> HostConnectId {
        LoopCtx::new(&mut self.world.core).connect_host(host, port, factory)
    }

    /// Sets the resolver [`connect_host`](LoopCtx::connect_host) uses (default:
    /// [`SystemResolver`]); tests give a fixed table.
    pub fn set_resolver(&mut self, resolver: impl Resolver) {
        self.world.core.happy.resolver = Arc::new(resolver);
    }

    /// Sets RFC 8305's connection attempt delay (default 250 ms).
    pub fn set_connection_attempt_delay(&mut self, delay: Duration) {
        self.world.core.happy.attempt_delay = delay;
    }
}

/// The resolver and the attempt delay, kept by the reactor.
pub(crate) struct HappyConfig {
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) attempt_delay: Duration,
}

impl Default for HappyConfig {
    fn default() -> Self {
        HappyConfig { resolver: Arc::new(SystemResolver), attempt_delay: DEFAULT_CONNECTION_ATTEMPT_DELAY }
    }
}
