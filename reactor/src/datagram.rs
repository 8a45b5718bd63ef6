//! UDP: the [`DatagramProtocol`] contract, the [`DatagramCtx`] lent to it, the
//! [`DatagramPort`] returned by [`Reactor::listen_udp`](crate::Reactor::listen_udp), and the
//! loop's side (reading with the per-turn budget, writable requests, stopping).
//!
//! # The contract
//! - `started` once, before anything else (Twisted's `startProtocol`); then
//!   `datagram_received`, `error_received`, `writable` and `timer_fired` in any order; then
//!   `stopped` exactly once, last (Twisted's `stopProtocol`), when the port stops listening
//!   or the reactor shuts down. Nothing after it; its timers are cancelled.
//! - No re-entrancy: no method of [`DatagramCtx`] runs user code synchronously.
//! - A datagram larger than the port's maximum size (default
//!   [`DEFAULT_MAX_DATAGRAM`](torsion_transports::DEFAULT_MAX_DATAGRAM), 65,507 bytes) is
//!   dropped and counted ([`DatagramCtx::dropped_datagrams`], [`DatagramPort::dropped_datagrams`]),
//!   never delivered truncated.
//! - `error_received` reports errors the socket returned instead of a datagram: for a
//!   connected socket, ICMP errors (port unreachable is `ConnectionRefused`) about earlier
//!   sends. It never closes the socket.
//!
//! # No write buffer
//! [`DatagramCtx::send_to`] either hands the datagram to the kernel or says why not
//! ([`SendOutcome`]); nothing is queued. The network drops datagrams anyway, so a queue would
//! not make delivery reliable: it would hide loss from the protocol and grow memory while the
//! kernel's buffer is full. The protocol decides: drop the datagram, or keep it, call
//! [`DatagramCtx::request_writable`] after a [`SendOutcome::WouldBlock`] and retry in
//! [`DatagramProtocol::writable`].
//!
//! # Panics
//! A panic in a datagram callback is caught and logged, as for stream protocols, but the socket
//! **keeps serving**: there is no connection to abort, and one bad datagram (from anyone on the
//! network) must not take the port down for every other peer.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use torsion_reactor::{DatagramCtx, DatagramProtocol, Reactor};
//!
//! struct Echo;
//!
//! impl DatagramProtocol for Echo {
//!     fn datagram_received(&mut self, cx: &mut DatagramCtx<'_>, data: &[u8], from: SocketAddr) {
//!         cx.send_to(data, from); // dropped if the kernel's buffer is full
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Echo)?;
//! println!("listening on {}", port.local_addr());
//! reactor.run()?;
//! # Ok::<(), torsion_reactor::Error>(())
//! ```

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::Interest;
use slotmap::Key;
use torsion_transports::{bind_udp, RecvOutcome, SendOutcome, UdpOptions, UdpSocket};
use tracing::{debug, trace};

use crate::core::{token_of, Core, ListenerId, Source, SourceKey, Task, TimerKind};
use crate::ctx::LoopCtx;
use crate::dispatch::{Owner, World};
use crate::handle::ReactorHandle;
use crate::timers::TimerId;
use crate::Error;

/// A datagram protocol (Twisted's `DatagramProtocol`). See the [module docs](self) for the
/// call order, the missing write buffer and panics.
pub trait DatagramProtocol: 'static {
    /// The port is open (Twisted's `startProtocol`): called once, before anything else.
    fn started(&mut self, cx: &mut DatagramCtx<'_>) {
        let _ = cx;
    }

    /// A datagram arrived from `from`. `data` borrows the loop's read buffer.
    fn datagram_received(&mut self, cx: &mut DatagramCtx<'_>, data: &[u8], from: SocketAddr);

    /// The socket reported an error instead of a datagram (an ICMP error such as port
    /// unreachable, on a connected socket). The socket stays open. Logged at debug by default.
    fn error_received(&mut self, cx: &mut DatagramCtx<'_>, error: io::Error) {
        let _ = cx;
        debug!(%error, "datagram socket error");
    }

    /// The socket is writable again, once after [`DatagramCtx::request_writable`].
    fn writable(&mut self, cx: &mut DatagramCtx<'_>) {
        let _ = cx;
    }

    /// The port stopped (Twisted's `stopProtocol`): called exactly once, last. Sends still
    /// work here; the socket closes after it returns.
    fn stopped(&mut self, cx: &mut DatagramCtx<'_>) {
        let _ = cx;
    }

    /// A timer set with [`DatagramCtx::set_timer`] fired.
    fn timer_fired(&mut self, cx: &mut DatagramCtx<'_>, id: TimerId) {
        let _ = (cx, id);
    }
}

/// A UDP socket in the loop's table.
pub(crate) struct Datagram {
    pub(crate) socket: UdpSocket,
    pub(crate) local: SocketAddr,
    max_datagram: usize,
    dropped: Arc<AtomicU64>,
    /// `started` has been delivered (or is being delivered).
    started: bool,
    /// Stopping: `stopped` is queued; nothing else is delivered.
    stopped: bool,
    /// Registered with WRITABLE interest for a `writable` callback.
    want_writable: bool,
    /// In the ready list for more reads next turn.
    pub(crate) queued: bool,
    pub(crate) timers: Vec<TimerId>,
    pub(crate) span: tracing::Span,
}

/// A UDP port: its bound address, its dropped-datagram counter, and a way to stop it from
/// anywhere.
#[derive(Debug, Clone)]
pub struct DatagramPort {
    id: ListenerId,
    local: SocketAddr,
    dropped: Arc<AtomicU64>,
    handle: ReactorHandle,
}

impl DatagramPort {
    /// The bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The port's id (for [`LoopCtx::stop_listening`]).
    pub fn id(&self) -> ListenerId {
        self.id
    }

    /// Stops the port (takes effect at the reactor's next turn): `stopped` is called, then the
    /// socket closes.
    pub fn stop_listening(&self) {
        let id = self.id;
        self.handle.call_from_thread(move |cx| cx.stop_listening(id));
    }

    /// Datagrams dropped because they were larger than the maximum size.
    pub fn dropped_datagrams(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The context lent to a [`DatagramProtocol`]'s callbacks: this socket, plus everything a
/// [`LoopCtx`] offers (through `Deref`).
pub struct DatagramCtx<'a> {
    lp: LoopCtx<'a>,
    key: SourceKey,
}

impl fmt::Debug for DatagramCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramCtx").field("port", &self.key).finish_non_exhaustive()
    }
}

impl<'a> Deref for DatagramCtx<'a> {
    type Target = LoopCtx<'a>;

    fn deref(&self) -> &LoopCtx<'a> {
        &self.lp
    }
}

impl DerefMut for DatagramCtx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.lp
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the datagram port is closed")
}

impl<'a> DatagramCtx<'a> {
    pub(crate) fn new(core: &'a mut Core, key: SourceKey) -> DatagramCtx<'a> {
        DatagramCtx { lp: LoopCtx::new(core), key }
    }

    fn datagram(&self) -> Option<&Datagram> {
        self.lp.core.datagram(self.key)
    }

    fn with_socket<T>(&self, f: impl FnOnce(&UdpSocket) -> io::Result<T>) -> io::Result<T> {
        self.datagram().map_or_else(|| Err(gone()), |d| f(&d.socket))
    }

    /// This port's id.
    pub fn port_id(&self) -> ListenerId {
        ListenerId(self.key)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.datagram().map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |d| d.local)
    }

    /// Sends one datagram to `to`. Nothing is queued: see the module's "No write buffer".
    pub fn send_to(&mut self, data: &[u8], to: SocketAddr) -> SendOutcome {
        match self.datagram() {
            Some(d) => d.socket.send_to(data, to),
            None => SendOutcome::Error(gone()),
        }
    }

    /// Sends one datagram to the connected peer (after [`connect`](DatagramCtx::connect)).
    pub fn send(&mut self, data: &[u8]) -> SendOutcome {
        match self.datagram() {
            Some(d) => d.socket.send(data),
            None => SendOutcome::Error(gone()),
        }
    }

    /// Connects the socket to `addr` (Twisted's `transport.connect`): only its datagrams are
    /// received from now on, [`send`](DatagramCtx::send) goes there, and ICMP errors about it
    /// reach [`DatagramProtocol::error_received`].
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<()> {
        self.with_socket(|s| s.connect(addr))
    }

    /// Asks for one [`DatagramProtocol::writable`] call when the socket can send again (use
    /// after a [`SendOutcome::WouldBlock`]).
    pub fn request_writable(&mut self) {
        self.lp.core.datagram_interest(self.key, true);
    }

    /// Fires [`DatagramProtocol::timer_fired`] after `delay`; cancelled when the port stops.
    pub fn set_timer(&mut self, delay: Duration) -> TimerId {
        let deadline = self.lp.core.clock.now() + delay;
        let id = self.lp.core.timers.schedule(deadline, TimerKind::Protocol(self.key));
        if let Some(Source::Datagram(d)) = self.lp.core.sources.get_mut(self.key) {
            d.timers.push(id);
        }
        id
    }

    /// Stops this port: `stopped` is called after this callback, then the socket closes.
    pub fn stop_listening(&mut self) {
        self.lp.core.stop_datagram(self.key);
    }

    /// Datagrams dropped because they were larger than the maximum size.
    pub fn dropped_datagrams(&self) -> u64 {
        self.datagram().map_or(0, |d| d.dropped.load(Ordering::Relaxed))
    }

    /// Joins an IPv4 multicast group on the interface with address `interface`.
    pub fn join_multicast_v4(&mut self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.with_socket(|s| s.join_multicast_v4(group, interface))
    }

    /// Leaves an IPv4 multicast group.
    pub fn leave_multicast_v4(&mut self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.with_socket(|s| s.leave_multicast_v4(group, interface))
    }

    /// Joins an IPv6 multicast group on the interface with index `interface` (0: any).
    pub fn join_multicast_v6(&mut self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        self.with_socket(|s| s.join_multicast_v6(group, interface))
    }

    /// Leaves an IPv6 multicast group.
    pub fn leave_multicast_v6(&mut self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        self.with_socket(|s| s.leave_multicast_v6(group, interface))
    }

    /// Sets the multicast TTL (IPv4) or hop limit (IPv6).
    pub fn set_multicast_ttl(&mut self, ttl: u32) -> io::Result<()> {
        let v6 = self.local_addr().is_ipv6();
        self.with_socket(|s| if v6 { s.set_multicast_hops_v6(ttl) } else { s.set_multicast_ttl_v4(ttl) })
    }

    /// Sets whether multicast datagrams sent here loop back to local listeners.
    pub fn set_multicast_loop(&mut self, on: bool) -> io::Result<()> {
        self.with_socket(|s| s.set_multicast_loop(on))
    }

    /// Sets the interface IPv4 multicast datagrams leave by.
    pub fn set_multicast_interface_v4(&mut self, interface: Ipv4Addr) -> io::Result<()> {
        self.with_socket(|s| s.set_multicast_interface_v4(interface))
    }

    /// Sets the interface (by index; 0: the system's choice) IPv6 multicast datagrams leave by.
    pub fn set_multicast_interface_v6(&mut self, interface: u32) -> io::Result<()> {
        self.with_socket(|s| s.set_multicast_interface_v6(interface))
    }

    /// Sets SO_BROADCAST.
    pub fn set_broadcast(&mut self, on: bool) -> io::Result<()> {
        self.with_socket(|s| s.set_broadcast(on))
    }

    /// Sets the unicast TTL (IPv4) or hop limit (IPv6).
    pub fn set_ttl(&mut self, ttl: u32) -> io::Result<()> {
        self.with_socket(|s| s.set_ttl(ttl))
    }
}

impl Core {
    pub(crate) fn datagram(&self, key: SourceKey) -> Option<&Datagram> {
        match self.sources.get(key) {
            Some(Source::Datagram(d)) => Some(d),
            _ => None,
        }
    }

    fn datagram_mut(&mut self, key: SourceKey) -> Option<&mut Datagram> {
        match self.sources.get_mut(key) {
            Some(Source::Datagram(d)) => Some(d),
            _ => None,
        }
    }

    /// Binds and registers a UDP socket; its protocol goes into the protocol map (which a
    /// context cannot reach) with the queued `started`.
    pub(crate) fn add_datagram(
        &mut self,
        addr: SocketAddr,
        options: &UdpOptions,
        protocol: Box<dyn DatagramProtocol>,
    ) -> Result<(SourceKey, SocketAddr, Arc<AtomicU64>), Error> {
        if self.stopping {
            return Err(Error::Stopping);
        }
        let mut socket = bind_udp(addr, options)?;
        let local = socket.local_addr()?;
        let dropped = Arc::new(AtomicU64::new(0));
        let registry = &self.registry;
        let mut registered = Ok(());
        let key = self.sources.insert_with_key(|key| {
            registered = registry.register(&mut socket, token_of(key), Interest::READABLE);
            let span = tracing::debug_span!("udp", id = ?key.data(), %local);
            Source::Datagram(Box::new(Datagram {
                socket,
                local,
                max_datagram: options.max_datagram_size.max(1),
                dropped: dropped.clone(),
                started: false,
                stopped: false,
                want_writable: false,
                queued: false,
                timers: Vec::new(),
                span,
            }))
        });
        if let Err(e) = registered {
            self.sources.remove(key);
            return Err(Error::Register(e));
        }
        debug!(%local, "listening (udp)");
        self.tasks.push_back(Task::DatagramStarted(key, protocol));
        Ok((key, local, dropped))
    }

    /// Adds or removes WRITABLE interest.
    fn datagram_interest(&mut self, key: SourceKey, writable: bool) {
        let registry = &self.registry;
        let Some(Source::Datagram(d)) = self.sources.get_mut(key) else { return };
        if d.stopped || d.want_writable == writable {
            return;
        }
        d.want_writable = writable;
        let interest = if writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        if let Err(e) = registry.reregister(&mut d.socket, token_of(key), interest) {
            tracing::error!(error = %e, "changing a datagram socket's interest failed");
        }
    }

    /// Stops a datagram port: no more events, timers cancelled, `stopped` queued. The socket
    /// closes after `stopped` returns.
    pub(crate) fn stop_datagram(&mut self, key: SourceKey) {
        let registry = &self.registry;
        let Some(Source::Datagram(d)) = self.sources.get_mut(key) else { return };
        if std::mem::replace(&mut d.stopped, true) {
            return;
        }
        let _ = registry.deregister(&mut d.socket);
        let timers = std::mem::take(&mut d.timers);
        self.timers.cancel_all(&timers);
        self.tasks.push_back(Task::DatagramStopped(key));
    }

    /// Keys of every datagram port.
    pub(crate) fn datagram_keys(&self) -> Vec<SourceKey> {
        self.sources.iter().filter(|(_, s)| matches!(s, Source::Datagram(_))).map(|(k, _)| k).collect()
    }
}

impl World {
    /// Calls a datagram protocol callback (nothing if the port has no protocol any more).
    fn call_datagram(
        &mut self,
        key: SourceKey,
        what: &'static str,
        f: impl FnOnce(&mut dyn DatagramProtocol, &mut DatagramCtx<'_>),
    ) {
        if !self.datagrams.contains_key(key) {
            return;
        }
        self.invoke(Owner::Datagram(key), what, |world| {
            let protocol = world.datagrams.get_mut(key).expect("checked above");
            f(protocol.as_mut(), &mut DatagramCtx::new(&mut world.core, key));
        });
    }

    /// Delivers `started` once, if it has not been yet (and the protocol is there).
    pub(crate) fn datagram_start(&mut self, key: SourceKey) {
        if !self.datagrams.contains_key(key) {
            return;
        }
        match self.core.datagram_mut(key) {
            Some(d) if !d.started && !d.stopped => d.started = true,
            _ => return,
        }
        self.call_datagram(key, "started", |p, cx| p.started(cx));
    }

    /// `stopped`, then the protocol is dropped and the socket closed.
    pub(crate) fn datagram_stopped(&mut self, key: SourceKey) {
        if let Some(mut protocol) = self.datagrams.remove(key) {
            let started = self.core.datagram(key).is_some_and(|d| d.started);
            if started {
                self.invoke(Owner::Datagram(key), "stopped", |world| {
                    protocol.stopped(&mut DatagramCtx::new(&mut world.core, key))
                });
            }
            self.invoke(Owner::Loop, "dropping a datagram protocol", move |_| drop(protocol));
        }
        self.core.remove_source(key);
    }

    /// A protocol timer of a datagram port fired.
    pub(crate) fn datagram_timer(&mut self, key: SourceKey, id: TimerId) {
        if let Some(d) = self.core.datagram_mut(key) {
            d.timers.retain(|t| *t != id);
        }
        self.call_datagram(key, "timer_fired", |p, cx| p.timer_fired(cx, id));
    }

    /// Readiness on a datagram socket (or work carried over from the previous turn).
    pub(crate) fn datagram_event(&mut self, key: SourceKey, writable: bool, read_buf: &mut Vec<u8>) {
        if !self.datagrams.contains_key(key) {
            // Opened from a callback and its protocol is still queued: the task that brings it
            // schedules a read.
            return;
        }
        self.datagram_start(key);
        if writable && self.core.datagram(key).is_some_and(|d| d.want_writable) {
            self.core.datagram_interest(key, false);
            self.call_datagram(key, "writable", |p, cx| p.writable(cx));
        }
        self.datagram_read(key, read_buf);
    }

    /// Reads until `WouldBlock` or the per-turn budget (then carried over to the next turn:
    /// no new edge comes for datagrams already queued in the kernel).
    fn datagram_read(&mut self, key: SourceKey, read_buf: &mut Vec<u8>) {
        let budget = self.core.config.reads_per_turn;
        for _ in 0..budget {
            let Some(d) = self.core.datagram(key) else { return };
            if d.stopped {
                return;
            }
            let max = d.max_datagram;
            if read_buf.len() <= max {
                read_buf.resize(max + 1, 0);
            }
            match d.socket.recv_from(read_buf, max) {
                RecvOutcome::Datagram(n, from) => {
                    trace!(bytes = n, %from, "datagram");
                    let data = &read_buf[..n];
                    self.call_datagram(key, "datagram_received", |p, cx| p.datagram_received(cx, data, from));
                }
                RecvOutcome::Oversized(from) => {
                    d.dropped.fetch_add(1, Ordering::Relaxed);
                    debug!(%from, max, "dropped a datagram larger than the maximum size");
                }
                RecvOutcome::WouldBlock => return,
                RecvOutcome::Error(error) => {
                    self.call_datagram(key, "error_received", |p, cx| p.error_received(cx, error));
                }
            }
        }
        if let Some(d) = self.core.datagram_mut(key) {
            if !d.stopped && !std::mem::replace(&mut d.queued, true) {
                self.core.ready.push(key);
            }
        }
    }
}

/// The public calls on [`Reactor`](crate::Reactor).
impl crate::Reactor {
    /// Listens for datagrams on a UDP address with default options (no SO_REUSEADDR, maximum
    /// datagram 65,507 bytes). See [`DatagramProtocol`] for the contract.
    pub fn listen_udp(
        &mut self,
        addr: SocketAddr,
        protocol: impl DatagramProtocol,
    ) -> Result<DatagramPort, Error> {
        self.listen_udp_with(addr, &UdpOptions::default(), protocol)
    }

    /// Listens for datagrams with explicit options (SO_REUSEADDR, broadcast, IPv6-only, the
    /// maximum datagram size above which datagrams are dropped and counted).
    pub fn listen_udp_with(
        &mut self,
        addr: SocketAddr,
        options: &UdpOptions,
        protocol: impl DatagramProtocol,
    ) -> Result<DatagramPort, Error> {
        LoopCtx::new(&mut self.world.core).listen_udp_with(addr, options, protocol)
    }
}

/// Opening datagram ports from callbacks.
impl LoopCtx<'_> {
    /// Listens for datagrams from inside a callback (a UDP client is a port on
    /// `127.0.0.1:0` whose `started` connects or sends). `started` runs after this callback.
    pub fn listen_udp(
        &mut self,
        addr: SocketAddr,
        protocol: impl DatagramProtocol,
    ) -> Result<DatagramPort, Error> {
        self.listen_udp_with(addr, &UdpOptions::default(), protocol)
    }

    /// [`listen_udp`](LoopCtx::listen_udp) with explicit options.
    pub fn listen_udp_with(
        &mut self,
        addr: SocketAddr,
        options: &UdpOptions,
        protocol: impl DatagramProtocol,
    ) -> Result<DatagramPort, Error> {
        let handle = self.handle();
        let (key, local, dropped) = self.core.add_datagram(addr, options, Box::new(protocol))?;
        Ok(DatagramPort { id: ListenerId(key), local, dropped, handle })
    }
}
