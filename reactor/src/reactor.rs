//! [`Reactor`]: construction, settings, the public calls, and the loop itself (`run`, `turn`).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Interest, Poll, Token};
use slotmap::SecondaryMap;
use torsion_transports::{
    bind_listener, Address, ListenOptions, ListenerSocket, UnixAddr, UnixListenOptions,
};
use tracing::{debug, warn};

use crate::accept::ListeningPort;
use crate::clock::{Clock, SystemClock};
use crate::core::{key_of, Config, ConnId, Core, Exit, Internal, ListenerId, Source, SourceKey, TimerKind};
use crate::ctx::LoopCtx;
use crate::dispatch::World;
use crate::handle::{ReactorHandle, Shared};
use crate::protocol::{ClientFactory, Factory};
use crate::timers::{next_loop_deadline, TimerId};
use crate::Error;

/// Default size of the loop-wide read buffer.
pub const DEFAULT_READ_BUFFER: usize = 256 * 1024;
/// Default number of reads per connection per turn.
pub const DEFAULT_READS_PER_TURN: usize = 16;
/// Default number of accepts per listener per turn.
pub const DEFAULT_ACCEPTS_PER_TURN: usize = 128;
/// Default number of `write_vectored` calls per connection per flush.
pub const DEFAULT_WRITES_PER_FLUSH: usize = 16;
/// Default deadline of a graceful shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default pause before accepting again after running out of file descriptors.
pub const DEFAULT_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Default number of queued clients a listener accepts (and then closes cleanly) when a
/// graceful stop closes it.
pub const DEFAULT_SHUTDOWN_DRAIN: usize = 4096;

const WAKER_TOKEN: Token = Token(usize::MAX);
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);

/// A single-threaded event loop: mio readiness, timers, thread wake-ups, and the protocols of
/// every connection.
pub struct Reactor {
    poll: Poll,
    events: Events,
    read_buf: Vec<u8>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    pub(crate) world: World,
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("connections", &self.world.core.connections)
            .field("timers", &self.world.core.timers.len())
            .field("stopping", &self.world.core.stopping)
            .finish_non_exhaustive()
    }
}

impl Reactor {
    /// A reactor on the system's monotonic clock.
    pub fn new() -> Result<Reactor, Error> {
        Reactor::with_clock(SystemClock)
    }

    /// A reactor reading time from `clock` (tests pass a [`ManualClock`](crate::ManualClock)).
    pub fn with_clock(clock: impl Clock) -> Result<Reactor, Error> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let config = Config {
            reads_per_turn: DEFAULT_READS_PER_TURN,
            accepts_per_turn: DEFAULT_ACCEPTS_PER_TURN,
            writes_per_flush: DEFAULT_WRITES_PER_FLUSH,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            accept_backoff: DEFAULT_ACCEPT_BACKOFF,
            nodelay: true,
            shutdown_drain_max: DEFAULT_SHUTDOWN_DRAIN,
        };
        let core = Core::new(registry, Box::new(clock), Arc::new(Shared::new(waker)), config);
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            read_buf: vec![0; DEFAULT_READ_BUFFER],
            signals: None,
            world: World {
                protocols: SecondaryMap::new(),
                datagrams: SecondaryMap::new(),
                processes: SecondaryMap::new(),
                core,
            },
        })
    }

    /// A `Send + Clone` handle for other threads: `call_from_thread` and `stop`.
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle::new(self.world.core.shared.clone())
    }

    /// Sets the size of the loop-wide read buffer (default 256 KiB; at least 1 byte).
    pub fn set_read_buffer_size(&mut self, bytes: usize) {
        self.read_buf = vec![0; bytes.max(1)];
    }

    /// Sets how many reads one connection gets per turn before others are served (default 16).
    pub fn set_reads_per_turn(&mut self, reads: usize) {
        self.world.core.config.reads_per_turn = reads.max(1);
    }

    /// Sets how many connections a listener accepts per turn (default 128).
    pub fn set_accepts_per_turn(&mut self, accepts: usize) {
        self.world.core.config.accepts_per_turn = accepts.max(1);
    }

    /// Sets the graceful-shutdown deadline after which remaining connections are aborted
    /// (default 5 s).
    pub fn set_shutdown_timeout(&mut self, timeout: Duration) {
        self.world.core.config.shutdown_timeout = timeout;
    }

    /// Sets the default connect timeout (default 30 s).
    pub fn set_connect_timeout(&mut self, timeout: Duration) {
        self.world.core.config.connect_timeout = timeout;
    }

    /// Sets the pause before accepting again after running out of descriptors (default 1 s).
    pub fn set_accept_backoff(&mut self, backoff: Duration) {
        self.world.core.config.accept_backoff = backoff;
    }

    /// Sets how many clients already queued on a listener a graceful stop accepts before
    /// closing it (default 4096; they are then closed cleanly like every open connection).
    /// 0 closes listeners at once, and the kernel resets whatever was queued.
    pub fn set_shutdown_drain_max(&mut self, clients: usize) {
        self.world.core.config.shutdown_drain_max = clients;
    }

    /// Sets whether new TCP connections get TCP_NODELAY (default on, as asyncio and Netty:
    /// small writes leave at once instead of waiting for Nagle's algorithm).
    pub fn set_nodelay_default(&mut self, on: bool) {
        self.world.core.config.nodelay = on;
    }

    /// Listens on a TCP address with default options (backlog 1024, SO_REUSEADDR).
    ///
    /// ```no_run
    /// use torsion_reactor::{Ctx, Protocol, Reactor};
    ///
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
    ///         cx.transport().write(b"hello\r\n");
    ///         cx.transport().lose_connection();
    ///     }
    ///     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), |_peer| Some(Hello))?;
    /// println!("listening on {}", port.local_addr()); // the real port
    /// reactor.run()?;
    /// # Ok::<(), torsion_reactor::Error>(())
    /// ```
    pub fn listen_tcp(&mut self, addr: SocketAddr, factory: impl Factory) -> Result<ListeningPort, Error> {
        self.listen_tcp_with(addr, &ListenOptions::default(), factory)
    }

    /// Listens on a TCP address with explicit socket options.
    pub fn listen_tcp_with(
        &mut self,
        addr: SocketAddr,
        options: &ListenOptions,
        factory: impl Factory,
    ) -> Result<ListeningPort, Error> {
        let socket = ListenerSocket::Tcp(bind_listener(addr, options)?);
        self.add_listener(socket, Box::new(factory))
    }

    /// Listens on a Unix socket path with default options (mode 0o666 as Twisted, backlog
    /// 1024, no lock file). See [`listen_unix_with`](Reactor::listen_unix_with).
    pub fn listen_unix(
        &mut self,
        path: impl AsRef<Path>,
        factory: impl Factory,
    ) -> Result<ListeningPort, Error> {
        let addr = UnixAddr::Path(path.as_ref().to_owned());
        self.listen_unix_with(&addr, &UnixListenOptions::default(), factory)
    }

    /// Listens on a Unix socket address: a path, or an abstract name (`UnixAddr::Abstract`,
    /// Linux only, no file).
    ///
    /// # Stale socket files
    /// If the path exists and is a socket nothing accepts on (a server that died), it is
    /// replaced. If a live server answers there, this fails with
    /// [`TransportError::AddressInUse`](torsion_transports::TransportError) and that server's
    /// file is left alone; a path that is not a socket is refused. The file is removed when the
    /// listener stops (or the reactor shuts down) if it is still the one created here.
    pub fn listen_unix_with(
        &mut self,
        addr: &UnixAddr,
        options: &UnixListenOptions,
        factory: impl Factory,
    ) -> Result<ListeningPort, Error> {
        let socket = ListenerSocket::Unix(torsion_transports::bind_unix_listener(addr, options)?);
        self.add_listener(socket, Box::new(factory))
    }

    /// Listens on any stream address (`Address::Inet` or `Address::Unix`) with default
    /// options.
    pub fn listen(&mut self, addr: &Address, factory: impl Factory) -> Result<ListeningPort, Error> {
        match addr {
            Address::Inet(inet) => self.listen_tcp(*inet, factory),
            Address::Unix(unix) => self.listen_unix_with(unix, &UnixListenOptions::default(), factory),
        }
    }

    /// Listens on a socket this process inherited through socket activation (systemd's
    /// `LISTEN_FDS`; index 0 is descriptor 3), which must be of `kind`. See
    /// [`torsion_transports::systemd`]: the socket is adopted as it is (its address, backlog
    /// and, for a Unix socket, its file belong to whoever created it).
    pub fn listen_inherited(
        &mut self,
        index: usize,
        kind: torsion_transports::InheritedKind,
        factory: impl Factory,
    ) -> Result<ListeningPort, Error> {
        let socket = torsion_transports::inherited_listener(index, kind)?;
        self.add_listener(socket, Box::new(factory))
    }

    fn add_listener(
        &mut self,
        socket: ListenerSocket,
        factory: Box<dyn Factory>,
    ) -> Result<ListeningPort, Error> {
        let (id, local) = self.world.core.add_listener(socket, factory)?;
        Ok(ListeningPort { id, local, handle: self.handle() })
    }

    /// Stops listening on a port (existing connections are unaffected).
    pub fn stop_listening(&mut self, id: ListenerId) {
        self.world.core.stop_listening(id.0);
    }

    /// Connects to a TCP address; the factory builds the protocol once connected, or hears
    /// `client_connection_failed`. Uses the reactor's connect timeout.
    ///
    /// A client that sends a line, prints the reply and exits with a status set from its
    /// callbacks:
    ///
    /// ```no_run
    /// use torsion_reactor::{client_factory, Ctx, DisconnectReason, Protocol, Reactor};
    ///
    /// struct Ask { reply: Vec<u8> }
    ///
    /// impl Protocol for Ask {
    ///     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
    ///         cx.transport().write(b"ping\r\n");
    ///     }
    ///     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
    ///         self.reply.extend_from_slice(data);
    ///         if self.reply.ends_with(b"\n") {
    ///             cx.transport().lose_connection();
    ///         }
    ///     }
    ///     fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
    ///         print!("{}", String::from_utf8_lossy(&self.reply));
    ///         cx.stop_with(if reason.is_clean() { 0 } else { 1 });
    ///     }
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let factory = client_factory(|_peer| Ask { reply: Vec::new() })
    ///     .on_failure(|cx, error| {
    ///         eprintln!("error: {error}");
    ///         cx.stop_with(1);
    ///     });
    /// reactor.connect_tcp("127.0.0.1:8000".parse().unwrap(), factory)?;
    /// let status: i32 = reactor.run_with_result()?.unwrap_or(0);
    /// std::process::exit(status);
    /// # Ok::<(), torsion_reactor::Error>(())
    /// ```
    pub fn connect_tcp(&mut self, addr: SocketAddr, factory: impl ClientFactory) -> Result<ConnId, Error> {
        self.connect(Address::Inet(addr), factory)
    }

    /// Connects to a Unix socket path with the reactor's connect timeout.
    pub fn connect_unix(
        &mut self,
        path: impl AsRef<Path>,
        factory: impl ClientFactory,
    ) -> Result<ConnId, Error> {
        self.connect(Address::unix_path(path.as_ref()), factory)
    }

    /// Connects to any stream address (TCP or Unix) with the reactor's connect timeout.
    pub fn connect(
        &mut self,
        addr: impl Into<Address>,
        factory: impl ClientFactory,
    ) -> Result<ConnId, Error> {
        let timeout = self.world.core.config.connect_timeout;
        self.world.core.connect(addr.into(), Box::new(factory), timeout)
    }

    /// Connects with an explicit timeout.
    pub fn connect_with_timeout(
        &mut self,
        addr: impl Into<Address>,
        factory: impl ClientFactory,
        timeout: Duration,
    ) -> Result<ConnId, Error> {
        self.world.core.connect(addr.into(), Box::new(factory), timeout)
    }

    /// Runs `f` after `delay` (on the reactor's clock).
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// reactor.call_later(Duration::from_millis(5), |cx| cx.stop_reactor());
    /// reactor.run()?; // returns once the timer stopped it
    /// # Ok::<(), torsion_reactor::Error>(())
    /// ```
    pub fn call_later(&mut self, delay: Duration, f: impl FnOnce(&mut LoopCtx<'_>) + 'static) -> TimerId {
        self.world.core.call_later(delay, Box::new(f))
    }

    /// Runs `f` now and then every `interval`; a late loop skips the intervals it missed.
    /// Cancel the returned id to stop it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// let mut ticks = 0;
    /// reactor.looping_call(Duration::from_millis(1), move |cx| {
    ///     ticks += 1;
    ///     if ticks == 3 {
    ///         cx.stop_with(ticks);
    ///     }
    /// });
    /// assert_eq!(reactor.run_with_result::<i32>()?, Some(3));
    /// # Ok::<(), torsion_reactor::Error>(())
    /// ```
    pub fn looping_call(&mut self, interval: Duration, f: impl FnMut(&mut LoopCtx<'_>) + 'static) -> TimerId {
        self.world.core.looping_call(interval, Box::new(f))
    }

    /// Cancels a timer or looping call; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.world.core.cancel_timer(id)
    }

    /// Moves a pending timer to fire `delay` from now; false if it is no longer pending.
    pub fn reset_timer(&mut self, id: TimerId, delay: Duration) -> bool {
        self.world.core.reset_timer(id, delay)
    }

    /// True while a timer is pending.
    pub fn is_timer_active(&self, id: TimerId) -> bool {
        self.world.core.timers.is_active(id)
    }

    /// Requests a graceful stop: `run` stops accepting, closes every connection cleanly
    /// (flushing), aborts what is left after the shutdown timeout, then returns.
    pub fn stop(&mut self) {
        self.world.core.stop_requested = true;
    }

    /// Makes SIGINT and SIGTERM request a graceful stop (a second signal aborts every
    /// connection at once).
    pub fn install_signal_handlers(&mut self) -> Result<(), Error> {
        let mut signals =
            signal_hook_mio::v1_0::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)
            .map_err(Error::Register)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs `trigger` once when a graceful stop begins (Twisted's `'before', 'shutdown'`
    /// system event trigger), before listeners and connections are closed, with the deadline
    /// after which what is left is aborted. What it writes is flushed by the shutdown: a chat
    /// server says goodbye to everyone here.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// reactor.before_shutdown(|cx, deadline| {
    ///     assert!(deadline > cx.now());
    ///     cx.stop_with("said goodbye");
    /// });
    /// reactor.call_later(Duration::from_millis(1), |cx| cx.stop_reactor());
    /// assert_eq!(reactor.run_with_result::<&str>()?, Some("said goodbye"));
    /// # Ok::<(), torsion_reactor::Error>(())
    /// ```
    pub fn before_shutdown(&mut self, trigger: impl FnOnce(&mut LoopCtx<'_>, Instant) + 'static) {
        self.world.core.shutdown_triggers.push(Box::new(trigger));
    }

    /// Number of live connections (open or connecting, not yet delivered `connection_lost`).
    pub fn connection_count(&self) -> usize {
        self.world.core.connections
    }

    /// Number of pending timers, the reactor's own included.
    pub fn timer_count(&self) -> usize {
        self.world.core.timers.len()
    }

    /// Number of registered sources: listeners, connections and lingering sockets.
    pub fn source_count(&self) -> usize {
        self.world.core.sources.len()
    }

    /// The reactor's current time.
    pub fn now(&self) -> Instant {
        self.world.core.clock.now()
    }

    /// Runs the loop until [`stop`](Reactor::stop) (or a stop from a callback, a handle or a
    /// signal) has completed its graceful shutdown.
    ///
    /// Returns the error a callback gave to [`LoopCtx::stop_with_error`] (the default
    /// [`ClientFactory::client_connection_failed`] gives its reason when nothing else is left
    /// to do), or an error of the poller itself.
    pub fn run(&mut self) -> Result<(), Error> {
        match self.run_loop()? {
            Some(Exit::Error(e)) => Err(e),
            Some(Exit::Value(_)) | None => Ok(()),
        }
    }

    /// [`run`](Reactor::run), returning the value a callback gave to [`LoopCtx::stop_with`]
    /// (`None` if the reactor stopped without one, or with a value of another type).
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// reactor.call_later(Duration::from_millis(1), |cx| cx.stop_with(42u32));
    /// assert_eq!(reactor.run_with_result::<u32>()?, Some(42));
    /// # Ok::<(), torsion_reactor::Error>(())
    /// ```
    pub fn run_with_result<T: 'static>(&mut self) -> Result<Option<T>, Error> {
        match self.run_loop()? {
            Some(Exit::Error(e)) => Err(e),
            Some(Exit::Value(v)) => Ok(v.downcast::<T>().ok().map(|v| *v)),
            None => Ok(None),
        }
    }

    fn run_loop(&mut self) -> Result<Option<Exit>, Error> {
        loop {
            self.turn()?;
            // Done when every connection has ended and every lingering socket has seen its
            // peer's FIN (dropping one earlier could reset a peer that is still reading).
            let core = &mut self.world.core;
            if core.stopping
                && core.sources.is_empty()
                && core.tasks.is_empty()
                && core.threads.outstanding() == 0
            {
                core.timers = Default::default();
                core.stopping = false;
                core.stop_requested = false;
                let deadline = Instant::now() + core.config.shutdown_timeout;
                core.wait_for_stdio_output(deadline);
                return Ok(core.exit.take());
            }
        }
    }

    /// Runs the loop until `done` returns true or `timeout` passes (real time); returns whether
    /// `done` became true. For tests and embedding.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Reactor) -> bool,
    ) -> Result<bool, Error> {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            self.turn_within(Some(deadline - now))?;
        }
        Ok(true)
    }

    /// One iteration of the loop, the same as Twisted's reactor iteration:
    ///
    /// 1. timeout = time until the next timer (zero if work is already queued);
    /// 2. wait on mio for readiness, at most that long;
    /// 3. run the timers that are due (a timer added while they run fires next turn);
    /// 4. dispatch ready events (accept, read, write, connect completion), then the work left
    ///    over from the previous turn's budgets;
    /// 5. run queued callbacks until the queue is empty;
    /// 6. flush every transport written to.
    ///
    /// Steps 5 and 6 also run after every callback (the dispatcher settles what each callback
    /// queued), so writes made in one callback leave in one `write_vectored` call right after
    /// it returns.
    pub fn turn(&mut self) -> Result<(), Error> {
        self.turn_within(None)
    }

    /// [`Reactor::turn`], waiting in the poller at most `max_wait`.
    pub(crate) fn turn_within(&mut self, max_wait: Option<Duration>) -> Result<(), Error> {
        self.world.begin_shutdown_if_requested(&mut self.read_buf);

        // 1. How long may we sleep?
        let core = &mut self.world.core;
        let now = core.clock.now();
        let until_timer = core.timers.next_deadline().map(|d| d.saturating_duration_since(now));
        let busy = !core.ready.is_empty()
            || !core.tasks.is_empty()
            || core.shared.has_calls()
            || (core.stopping && core.sources.is_empty() && core.threads.outstanding() == 0);
        let timeout = if busy { Some(Duration::ZERO) } else { until_timer };
        let timeout = [timeout, core.clock.max_poll_wait(), max_wait].into_iter().flatten().min();

        // 2. Wait for readiness.
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }

        // 3. Run the timers that are due, but only those scheduled before this point.
        self.run_timers();

        // 4. Dispatch readiness, then work carried over from the previous turn.
        let mut carried = std::mem::take(&mut self.world.core.ready);
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            self.dispatch_event(event);
        }
        self.events = events;
        for key in carried.drain(..) {
            self.dispatch_carried(key);
        }
        if self.world.core.ready.is_empty() {
            // Keep the allocation for the next turn's carried work.
            self.world.core.ready = carried;
        }

        // 5 and 6. Callbacks from other threads, then queued work and flushes.
        for f in self.world.core.shared.take_calls() {
            self.world.call_loop("call_from_thread callback", f);
        }
        self.world.settle();
        self.world.begin_shutdown_if_requested(&mut self.read_buf);
        Ok(())
    }

    fn run_timers(&mut self) {
        let read_buf = &mut self.read_buf;
        let world = &mut self.world;
        let now = world.core.clock.now();
        let limit = world.core.timers.next_seq();
        while let Some(id) = world.core.timers.pop_due(now, limit) {
            let deadline = world.core.timers.deadline(id).unwrap_or(now);
            if let Some(TimerKind::Looping { interval, f }) = world.core.timers.get_mut(id) {
                // A looping call keeps its id while it runs; cancelling it from inside stops it.
                let interval = *interval;
                let Some(mut f) = f.take() else { continue };
                world.call_loop("looping call", &mut f);
                if let Some(TimerKind::Looping { f: slot, .. }) = world.core.timers.get_mut(id) {
                    *slot = Some(f);
                    let next = next_loop_deadline(deadline, interval, world.core.clock.now());
                    world.core.timers.rearm(id, next);
                }
                continue;
            }
            match world.core.timers.take(id) {
                Some(TimerKind::Protocol(key)) if world.core.datagram(key).is_some() => {
                    world.datagram_timer(key, id);
                }
                Some(TimerKind::Protocol(key)) => {
                    if let Some(conn) = world.core.conn_mut(key) {
                        conn.timers.retain(|t| *t != id);
                    }
                    world.call_protocol(key, "timer_fired", |p, cx| p.timer_fired(cx, id));
                }
                Some(TimerKind::Call(f)) => world.call_loop("timer callback", f),
                Some(TimerKind::Internal(internal)) => match internal {
                    Internal::ConnectTimeout(key, timeout) => world.connect_timed_out(key, timeout),
                    Internal::AcceptRetry(key) => {
                        if let Some(l) = world.core.listener_mut(key) {
                            l.backing_off = false;
                            world.accept(key, read_buf);
                        }
                    }
                    Internal::LingerTimeout(key) => world.core.remove_source(key),
                    Internal::ShutdownDeadline => world.shutdown_deadline(),
                },
                Some(TimerKind::Looping { .. }) | None => {}
            }
        }
    }

    fn dispatch_event(&mut self, event: &Event) {
        match event.token() {
            WAKER_TOKEN => {}
            SIGNAL_TOKEN => self.handle_signals(),
            crate::process::CHILD_TOKEN => self.world.core.reap_children(),
            token => {
                let key = key_of(token);
                let world = &mut self.world;
                match world.core.sources.get_mut(key) {
                    Some(Source::Listener(_)) => world.accept(key, &mut self.read_buf),
                    Some(Source::Conn(conn)) => {
                        let hup = event.is_read_closed() || event.is_error();
                        if event.is_readable() || hup {
                            if let Some(io) = conn.io.as_mut() {
                                io.set_readable(hup);
                            }
                        }
                        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
                        world.conn_event(key, writable, &mut self.read_buf);
                    }
                    Some(Source::Datagram(_)) => {
                        let writable = event.is_writable() || event.is_error();
                        world.datagram_event(key, writable, &mut self.read_buf);
                    }
                    Some(Source::Process(_)) => world.process_pump(key, &mut self.read_buf),
                    None => {}
                }
            }
        }
    }

    fn dispatch_carried(&mut self, key: SourceKey) {
        let world = &mut self.world;
        match world.core.sources.get_mut(key) {
            Some(Source::Listener(l)) => {
                l.queued = false;
                world.accept(key, &mut self.read_buf);
            }
            Some(Source::Conn(conn)) => {
                conn.queued = false;
                world.conn_event(key, false, &mut self.read_buf);
            }
            Some(Source::Datagram(d)) => {
                d.queued = false;
                world.datagram_event(key, false, &mut self.read_buf);
            }
            Some(Source::Process(_)) => world.process_pump(key, &mut self.read_buf),
            None => {}
        }
    }

    fn handle_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else { return };
        if signals.pending().count() == 0 {
            return;
        }
        if self.world.core.stopping {
            warn!("second signal during shutdown: aborting every connection");
            self.world.abort_all();
        } else {
            debug!("signal received: stopping gracefully");
            self.world.core.stop_requested = true;
        }
    }
}
