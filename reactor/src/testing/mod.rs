//! Testing protocols without sockets: Twisted's `StringTransport` and `MemoryReactorClock` as
//! one verified fake.
//!
//! A [`Harness`] is a real [`Reactor`] on a [`ManualClock`] whose connections run over
//! in-memory sockets. The transport state machine, write buffer, watermarks, producers,
//! half-close and timers are the ones real sockets use; only the socket is simulated. The
//! test plays the peer: it feeds bytes and EOF, takes what was written, narrows the peer's
//! window to simulate a slow reader, resets, and moves time by hand. No test sleeps.
//!
//! ```
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Ctx, DisconnectReason, Protocol};
//!
//! struct Upper;
//! impl Protocol for Upper {
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         cx.transport().write(&data.to_ascii_uppercase());
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(Upper)).unwrap();
//! h.feed(id, b"hello");
//! assert_eq!(h.take_written(id), b"HELLO");
//! h.feed_eof(id);
//! assert!(h.fin_sent(id));
//! assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
//! ```

mod seams;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use crate::clock::ManualClock;
use crate::core::{ConnId, ListenerId};
use crate::ctx::Ctx;
use crate::protocol::{ClientFactory, DisconnectReason, Factory, Protocol, Wrapper};
use crate::reactor::Reactor;
use crate::timers::TimerId;

pub(crate) use seams::Seams;

/// A lifecycle or flow-control call seen on a harness connection's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `connection_made`.
    Made,
    /// `data_received` with this many bytes.
    Data(usize),
    /// `eof_received`.
    Eof,
    /// `pause_producing` on the protocol itself.
    PauseProducing,
    /// `resume_producing` on the protocol itself.
    ResumeProducing,
    /// `timer_fired`.
    Timer(TimerId),
    /// `connection_lost`, with its reason.
    Lost(DisconnectReason),
}

type Calls = Rc<RefCell<HashMap<ConnId, Vec<Call>>>>;

/// Wraps a protocol and records every call the reactor makes on it.
struct Probe {
    inner: Box<dyn Protocol>,
    calls: Calls,
}

impl Probe {
    fn record(&self, cx: &Ctx<'_>, call: Call) {
        self.calls.borrow_mut().entry(cx.conn_id()).or_default().push(call);
    }
}

impl Wrapper for Probe {
    type Inner = dyn Protocol;

    fn inner(&mut self) -> &mut dyn Protocol {
        self.inner.as_mut()
    }

    fn on_connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.record(cx, Call::Made);
        self.inner.connection_made(cx);
    }

    fn on_data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.record(cx, Call::Data(data.len()));
        self.inner.data_received(cx, data);
    }

    fn on_eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        self.record(cx, Call::Eof);
        self.inner.eof_received(cx)
    }

    fn on_connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.record(cx, Call::Lost(reason.clone()));
        self.inner.connection_lost(cx, reason);
    }

    fn on_timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        self.record(cx, Call::Timer(timer));
        self.inner.timer_fired(cx, timer);
    }

    fn on_pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.record(cx, Call::PauseProducing);
        self.inner.pause_producing(cx);
    }

    fn on_resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.record(cx, Call::ResumeProducing);
        self.inner.resume_producing(cx);
    }
}

/// Upper-cases what it receives and writes it back: the smallest protocol, for examples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upper;

impl Protocol for Upper {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(&data.to_ascii_uppercase());
    }
}

/// A reactor on a manual clock with in-memory connections; see the [module docs](self).
///
/// Every method that acts as the peer (`feed`, `take_written`, …) then runs the reactor until
/// it has no more work, so its effects are visible on return.
pub struct Harness {
    reactor: Reactor,
    clock: ManualClock,
    calls: Calls,
    next_port: u16,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness").field("reactor", &self.reactor).finish_non_exhaustive()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Turns per [`Harness::run`] before it gives up on a reactor that never goes idle.
const MAX_TURNS: usize = 100_000;

impl Harness {
    /// A harness with a fresh reactor on a manual clock.
    pub fn new() -> Harness {
        let clock = ManualClock::new();
        let reactor = Reactor::with_clock(clock.clone()).expect("creating a reactor (epoll) failed");
        Harness { reactor, clock, calls: Calls::default(), next_port: 40000 }
    }

    /// The reactor, to configure it or to call its timer API.
    pub fn reactor(&mut self) -> &mut Reactor {
        &mut self.reactor
    }

    /// The manual clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    fn peer_addr(&mut self) -> SocketAddr {
        self.next_port = self.next_port.wrapping_add(1).max(1024);
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), self.next_port))
    }

    fn add(&mut self, protocol: Box<dyn Protocol>, peer: SocketAddr) -> ConnId {
        let probe = Probe { inner: protocol, calls: self.calls.clone() };
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 8000));
        let id = self.reactor.add_memory_conn(peer.into(), local.into(), Box::new(probe));
        self.run();
        id
    }

    /// Accepts a memory connection through `factory`, as a listener would; `None` if the
    /// factory refused it.
    pub fn accept(&mut self, factory: &mut dyn Factory) -> Option<ConnId> {
        let peer = self.peer_addr();
        let protocol = factory.build_protocol(peer.into())?;
        Some(self.add(protocol, peer))
    }

    /// Makes an established outbound memory connection through `factory`.
    pub fn connect(&mut self, factory: &mut dyn ClientFactory) -> ConnId {
        let peer = self.peer_addr();
        let protocol = factory.build_protocol(peer.into());
        self.add(protocol, peer)
    }

    /// Runs the reactor until it has nothing left to do without input or time passing.
    ///
    /// # Panics
    /// If the reactor is still busy after 100,000 turns (a protocol that never settles).
    pub fn run(&mut self) {
        for _ in 0..MAX_TURNS {
            self.reactor.turn_now().expect("reactor turn failed");
            if !self.reactor.has_work() {
                return;
            }
        }
        panic!("the reactor did not go idle in {MAX_TURNS} turns");
    }

    fn socket(&mut self, id: ConnId) -> &mut torsion_transports::MemorySocket {
        self.reactor.memory_socket(id).expect("not a harness connection")
    }

    /// The peer sends `data`.
    pub fn feed(&mut self, id: ConnId, data: &[u8]) {
        self.socket(id).feed(data);
        self.reactor.memory_ready(id);
        self.run();
    }

    /// The peer half-closes (FIN).
    pub fn feed_eof(&mut self, id: ConnId) {
        self.socket(id).feed_eof();
        self.reactor.memory_ready(id);
        self.run();
    }

    /// The peer closes both ways: FIN, and our further writes fail.
    pub fn close_peer(&mut self, id: ConnId) {
        self.socket(id).close();
        self.reactor.memory_ready(id);
        self.run();
    }

    /// The peer resets the connection (RST).
    pub fn reset_peer(&mut self, id: ConnId) {
        self.socket(id).reset();
        self.reactor.memory_ready(id);
        self.run();
    }

    /// Takes what the connection wrote so far; the peer's window (if set) opens by as much.
    pub fn take_written(&mut self, id: ConnId) -> Vec<u8> {
        let socket = self.socket(id);
        let data = socket.take_written();
        socket.open_window(data.len());
        self.reactor.memory_ready(id);
        self.run();
        data
    }

    /// Limits how many bytes the peer accepts before it stops reading (`None`: no limit).
    pub fn set_peer_window(&mut self, id: ConnId, window: Option<usize>) {
        self.socket(id).set_window(window);
        self.reactor.memory_ready(id);
        self.run();
    }

    /// Moves the clock forward and runs what became due.
    pub fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.run();
    }

    /// True once our side sent FIN.
    pub fn fin_sent(&mut self, id: ConnId) -> bool {
        self.socket(id).fin_sent()
    }

    /// True once our side reset the connection.
    pub fn rst_sent(&mut self, id: ConnId) -> bool {
        self.socket(id).rst_sent()
    }

    /// Every call made on the connection's protocol, in order.
    pub fn calls(&self, id: ConnId) -> Vec<Call> {
        self.calls.borrow().get(&id).cloned().unwrap_or_default()
    }

    /// The reason `connection_lost` got, once it was called.
    pub fn disconnect_reason(&self, id: ConnId) -> Option<DisconnectReason> {
        self.calls(id).into_iter().find_map(|c| match c {
            Call::Lost(reason) => Some(reason),
            _ => None,
        })
    }

    /// True while the connection is open for its protocol (`connection_lost` not yet called).
    pub fn is_open(&self, id: ConnId) -> bool {
        self.disconnect_reason(id).is_none() && self.calls.borrow().contains_key(&id)
    }
}

/// Makes a real listener's accepts fail on demand, Twisted's fake `accept` in
/// `test_tcp_internals.py`: before each accept the reactor calls `faults`; an error it returns
/// is handled exactly as if `accept(2)` had returned it (EMFILE backs off, ECONNABORTED goes on
/// to the next accept, …), and `None` lets the real accept run. Each call is one accept
/// attempt, so the closure can also count them. Returns false if `listener` is not listening.
///
/// ```
/// use std::io;
/// use torsion_reactor::{testing, Protocol, Reactor};
///
/// let mut reactor = Reactor::new().unwrap();
/// let port = reactor
///     .listen_tcp("127.0.0.1:0".parse().unwrap(), |_| None::<Box<dyn Protocol>>)
///     .unwrap();
/// let mut errors = vec![io::Error::from_raw_os_error(24)]; // EMFILE, then real accepts
/// assert!(testing::inject_accept_faults(&mut reactor, port.id(), move || errors.pop()));
/// ```
pub fn inject_accept_faults(
    reactor: &mut Reactor,
    listener: ListenerId,
    faults: impl FnMut() -> Option<io::Error> + 'static,
) -> bool {
    reactor.set_accept_fault(listener, Box::new(faults))
}

/// Every way of splitting `input` that a chunking test should try: each fixed chunk size from
/// 1 to `max_chunk`, then `random` seeded random splits (1-byte pieces included).
pub fn chunkings(input: &[u8], max_chunk: usize, random: u64) -> Vec<Vec<&[u8]>> {
    let mut out = Vec::new();
    for size in 1..=max_chunk.max(1) {
        out.push(input.chunks(size).collect());
    }
    for seed in 0..random {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rest = input;
        let mut pieces = Vec::new();
        while !rest.is_empty() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let take = 1 + (state % (rest.len().min(64) as u64)) as usize;
            let (head, tail) = rest.split_at(take);
            pieces.push(head);
            rest = tail;
        }
        out.push(pieces);
    }
    out
}

/// Asserts that `decode` gives the same result for `input` whole and under every split from
/// [`chunkings`].
///
/// # Panics
/// With the first split whose result differs.
pub fn assert_chunking_invariant<T: PartialEq + fmt::Debug>(
    input: &[u8],
    max_chunk: usize,
    random: u64,
    mut decode: impl FnMut(&[&[u8]]) -> T,
) {
    let whole = decode(&[input]);
    for split in chunkings(input, max_chunk, random) {
        let got = decode(&split);
        assert_eq!(got, whole, "split into {} pieces {:?} gave a different result", split.len(), {
            split.iter().map(|p| p.len()).collect::<Vec<_>>()
        });
    }
}
