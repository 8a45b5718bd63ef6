//! The event loop: [`Reactor`], its [`Ctx`] and [`Transport`] views, and dispatch.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slotmap::{Key, KeyData, SecondaryMap, SlotMap};
use torsion_transports::{
    bind_listener, connect_progress, start_connect, ConnectProgress, Connection, ListenOptions, MemorySocket,
    ReadOutcome, Stream, WriteState,
};
use tracing::{debug, error, trace, warn};

use crate::clock::{Clock, SystemClock};
use crate::handle::{ReactorHandle, Shared};
use crate::protocol::{ClientFactory, DisconnectReason, Factory, Producer, Protocol};
use crate::timers::{next_loop_deadline, Internal, LoopFn, Timer, TimerFn, TimerId, TimerKind, Timers};
use crate::Error;

slotmap::new_key_type! {
    /// Slot key of a source: a listener or a connection.
    pub(crate) struct SourceKey;
}

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
/// How long a cleanly closed socket keeps draining the peer's input, waiting for its FIN.
const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// How many bytes a lingering socket drains before giving up.
const LINGER_MAX_BYTES: usize = 1024 * 1024;

const WAKER_TOKEN: Token = Token(usize::MAX);
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
/// The longest a manual-clock reactor waits in the poller.
const MANUAL_CLOCK_POLL_CAP: Duration = Duration::from_millis(10);

/// A connection's identity. Generational: once the connection is gone, its id resolves to
/// nothing, never to a newer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) SourceKey);

/// A listening port's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub(crate) SourceKey);

fn token_of(key: SourceKey) -> Token {
    Token(key.data().as_ffi() as usize)
}

fn key_of(token: Token) -> SourceKey {
    KeyData::from_ffi(token.0 as u64).into()
}

/// Tunables, all with defaults and setters on [`Reactor`].
#[derive(Debug, Clone)]
struct Config {
    reads_per_turn: usize,
    accepts_per_turn: usize,
    writes_per_flush: usize,
    shutdown_timeout: Duration,
    connect_timeout: Duration,
    accept_backoff: Duration,
    nodelay: bool,
}

/// A listening socket and its factory.
struct Listener {
    socket: TcpListener,
    /// Taken out while `build_protocol` runs.
    factory: Option<Box<dyn Factory>>,
    local: SocketAddr,
    /// Waiting for the retry timer after running out of file descriptors.
    backing_off: bool,
    /// Resource exhaustion was logged; cleared by the next successful accept.
    exhaustion_logged: bool,
    queued: bool,
    /// Test seam ([`crate::testing::inject_accept_faults`]): asked before each accept; an error
    /// it returns stands in for that accept's result. `None` in production.
    fault: Option<AcceptFault>,
}

/// Injected accept results, for the test seam on [`Listener`].
type AcceptFault = Box<dyn FnMut() -> Option<io::Error>>;

/// Where a connection is in its life.
enum Phase {
    /// Connecting out; the factory builds the protocol on success.
    Connecting { factory: Option<Box<dyn ClientFactory>>, timeout: TimerId },
    /// Established, with a protocol.
    Open,
    /// Finished; `connection_lost` is queued.
    Lost,
    /// Closed cleanly by us, draining the peer's input until its FIN so unread input cannot turn
    /// the close into a reset (the protocol is gone already).
    Lingering { drained: usize, timer: TimerId },
}

/// A connection's state in the core.
struct Conn {
    io: Option<Connection<Stream>>,
    phase: Phase,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    /// Readiness for reading was seen and the socket may still hold data.
    read_ready: bool,
    /// The poller reported the peer's FIN or an error: read to the end, never stop at a short
    /// read (no further edge will come).
    hup: bool,
    /// In the ready list for more work next turn.
    queued: bool,
    /// In the flush list.
    dirty: bool,
    /// Registered with WRITABLE interest.
    writable_interest: bool,
    /// Who produces this connection's output, and its pause state.
    producer: ProducerSlot,
    /// Timers owned by this connection, cancelled when it ends.
    timers: Vec<TimerId>,
    /// The reason a clean close reports, when the protocol gave one (`lose_connection_with`).
    close_reason: Option<Box<DisconnectReason>>,
    span: tracing::Span,
}

/// What a transport registered as its producer.
enum ProducerKind {
    /// No registration: the connection's own protocol (pausing it pauses reading by default).
    Own,
    /// Another connection: pausing it pauses its reading (the proxy case).
    Conn(SourceKey),
    /// A producer object; `None` while one of its callbacks runs.
    Object(Option<Box<dyn Producer>>),
}

/// A connection's producer and its flow-control state.
struct ProducerSlot {
    kind: ProducerKind,
    /// Push (true) or pull (false).
    streaming: bool,
    /// A push producer was paused and not yet resumed.
    paused: bool,
    /// A pull producer's `resume_producing` is queued.
    resume_queued: bool,
    /// The connection ended while the producer object was out running: stop it when it returns.
    stop_pending: bool,
    /// Bumped on every (un)registration, so queued calls for an old producer are dropped.
    serial: u64,
}

impl Default for ProducerSlot {
    fn default() -> Self {
        ProducerSlot {
            kind: ProducerKind::Own,
            streaming: true,
            paused: false,
            resume_queued: false,
            stop_pending: false,
            serial: 0,
        }
    }
}

impl ProducerSlot {
    fn is_registered(&self) -> bool {
        !matches!(self.kind, ProducerKind::Own)
    }

    fn is_pull(&self) -> bool {
        self.is_registered() && !self.streaming
    }
}

/// A producer to register on a transport: another connection, or a [`Producer`] object.
pub enum ProducerSource {
    /// Another connection; its reading is paused and resumed, and `stop_producing` closes it.
    Conn(ConnId),
    /// A producer object.
    Object(Box<dyn Producer>),
}

impl fmt::Debug for ProducerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProducerSource::Conn(id) => f.debug_tuple("Conn").field(id).finish(),
            ProducerSource::Object(_) => f.write_str("Object(..)"),
        }
    }
}

impl From<ConnId> for ProducerSource {
    fn from(id: ConnId) -> Self {
        ProducerSource::Conn(id)
    }
}

impl<P: Producer> From<P> for ProducerSource {
    fn from(producer: P) -> Self {
        ProducerSource::Object(Box::new(producer))
    }
}

/// A flow-control call for a connection's producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProducerCall {
    Pause,
    Resume,
}

enum Source {
    Listener(Listener),
    Conn(Box<Conn>),
}

/// Work queued to run after the current callback.
enum Task {
    /// Deliver `connection_lost` and drop the protocol.
    Lost(SourceKey, DisconnectReason),
    /// Pause or resume the producer registered (at `serial`) on a connection.
    Producer(SourceKey, ProducerCall, u64),
    /// `resume_producing` on a connection's own protocol, which a registration displaced
    /// while it was paused.
    ResumeOwn(SourceKey),
    /// `stop_producing` on a producer object whose consumer is `SourceKey`.
    StopObject(SourceKey, Box<dyn Producer>),
    /// `stop_producing` on a connection registered as a producer: close it cleanly.
    StopConn(SourceKey),
    /// A callback queued from another thread or by `call_soon`.
    Call(Box<dyn FnOnce(&mut Ctx<'_>)>),
}

/// Everything the loop owns except protocols and the read buffer, so that a protocol
/// (`&mut`), the read buffer (`&`) and a [`Ctx`] (`&mut Core`) can be lent at once.
pub(crate) struct Core {
    registry: Registry,
    clock: Box<dyn Clock>,
    sources: SlotMap<SourceKey, Source>,
    timers: Timers,
    tasks: VecDeque<Task>,
    /// Sources with work left over from an earlier turn (read or accept budget, write budget).
    ready: Vec<SourceKey>,
    /// Connections written to since the last flush.
    dirty: Vec<SourceKey>,
    shared: Arc<Shared>,
    config: Config,
    /// Spare descriptor spent to accept-and-close queued clients when descriptors run out.
    reserve_fd: Option<File>,
    stop_requested: bool,
    stopping: bool,
    connections: usize,
    /// How `run` ends, when a callback said so (`stop_with_error`, `stop_with`).
    exit: Option<Exit>,
    /// Run once when a graceful stop begins, before anything is closed.
    shutdown_triggers: Vec<ShutdownTrigger>,
    /// Memory sockets of closed connections, kept for the test harness.
    closed_memory: SecondaryMap<SourceKey, MemorySocket>,
}

/// A callback run when a graceful stop begins, with the deadline after which connections are
/// aborted.
type ShutdownTrigger = Box<dyn FnOnce(&mut Ctx<'_>, Instant)>;

/// How a callback asked `run` to end.
enum Exit {
    Error(Error),
    Value(Box<dyn std::any::Any>),
}

/// The context lent to every callback: this connection's transport, any other live
/// connection's transport, timers, outbound connects and reactor control.
pub struct Ctx<'a> {
    core: &'a mut Core,
    conn: SourceKey,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("conn", &self.conn).finish_non_exhaustive()
    }
}

/// A view of one connection's transport, borrowed from a [`Ctx`]. Every method is a no-op
/// (or returns `None`/0) once the connection is gone.
pub struct Transport<'a> {
    core: &'a mut Core,
    key: SourceKey,
}

impl fmt::Debug for Transport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").field("conn", &self.key).finish_non_exhaustive()
    }
}

/// A single-threaded event loop: mio readiness, timers, thread wake-ups, and the protocols of
/// every connection.
pub struct Reactor {
    poll: Poll,
    events: Events,
    read_buf: Vec<u8>,
    protocols: SecondaryMap<SourceKey, Box<dyn Protocol>>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    core: Core,
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("connections", &self.core.connections)
            .field("timers", &self.core.timers.len())
            .field("stopping", &self.core.stopping)
            .finish_non_exhaustive()
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Accept errors that concern one connection only: go on to the next.
fn is_per_connection_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPERM | libc::EINTR | libc::ECONNRESET | libc::EPROTO)
    ) || e.kind() == io::ErrorKind::Interrupted
}

/// Accept errors that mean the process or system ran out of a resource.
fn is_resource_accept_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Runs a protocol callback with panic isolation. A panic aborts the connection with
/// `Panicked`; returns `None` if the protocol is gone or panicked.
fn call_protocol<R>(
    protocols: &mut SecondaryMap<SourceKey, Box<dyn Protocol>>,
    core: &mut Core,
    key: SourceKey,
    f: impl FnOnce(&mut dyn Protocol, &mut Ctx<'_>) -> R,
) -> Option<R> {
    let protocol = protocols.get_mut(key)?;
    let span = core.conn(key).map(|c| c.span.clone()).unwrap_or_else(tracing::Span::none);
    let _enter = span.enter();
    let mut cx = Ctx { core, conn: key };
    match catch_unwind(AssertUnwindSafe(|| f(protocol.as_mut(), &mut cx))) {
        Ok(r) => Some(r),
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            let peer = peer_of(core, key);
            error!(id = ?key.data(), %peer, panic = %message, "protocol callback panicked; aborting its connection");
            core.abort_with(key, DisconnectReason::Panicked(message));
            None
        }
    }
}

/// The peer of connection `key`, for log lines that must name it even when the connection's
/// (debug-level) span is filtered out.
fn peer_of(core: &Core, key: SourceKey) -> String {
    core.conn(key).map_or_else(|| "?".to_owned(), |c| c.peer.to_string())
}

/// Runs a callback that belongs to no connection (timer, thread call) with panic isolation.
fn call_isolated(core: &mut Core, what: &str, f: impl FnOnce(&mut Ctx<'_>)) {
    let mut cx = Ctx { core, conn: SourceKey::null() };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(&mut cx))) {
        error!(panic = %panic_message(payload.as_ref()), "{what} panicked");
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
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            read_buf: vec![0; DEFAULT_READ_BUFFER],
            protocols: SecondaryMap::new(),
            signals: None,
            core: Core {
                registry,
                clock: Box::new(clock),
                sources: SlotMap::with_key(),
                timers: Timers::default(),
                tasks: VecDeque::new(),
                ready: Vec::new(),
                dirty: Vec::new(),
                shared: Arc::new(Shared::new(waker)),
                config: Config {
                    reads_per_turn: DEFAULT_READS_PER_TURN,
                    accepts_per_turn: DEFAULT_ACCEPTS_PER_TURN,
                    writes_per_flush: DEFAULT_WRITES_PER_FLUSH,
                    shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
                    connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                    accept_backoff: DEFAULT_ACCEPT_BACKOFF,
                    nodelay: true,
                },
                reserve_fd: File::open("/dev/null").ok(),
                stop_requested: false,
                stopping: false,
                connections: 0,
                exit: None,
                shutdown_triggers: Vec::new(),
                closed_memory: SecondaryMap::new(),
            },
        })
    }

    /// A `Send + Clone` handle for other threads: `call_from_thread` and `stop`.
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle::new(self.core.shared.clone())
    }

    /// Sets the size of the loop-wide read buffer (default 256 KiB; at least 1 byte).
    pub fn set_read_buffer_size(&mut self, bytes: usize) {
        self.read_buf = vec![0; bytes.max(1)];
    }

    /// Sets how many reads one connection gets per turn before others are served (default 16).
    pub fn set_reads_per_turn(&mut self, reads: usize) {
        self.core.config.reads_per_turn = reads.max(1);
    }

    /// Sets how many connections a listener accepts per turn (default 128).
    pub fn set_accepts_per_turn(&mut self, accepts: usize) {
        self.core.config.accepts_per_turn = accepts.max(1);
    }

    /// Sets the graceful-shutdown deadline after which remaining connections are aborted
    /// (default 5 s).
    pub fn set_shutdown_timeout(&mut self, timeout: Duration) {
        self.core.config.shutdown_timeout = timeout;
    }

    /// Sets the default connect timeout (default 30 s).
    pub fn set_connect_timeout(&mut self, timeout: Duration) {
        self.core.config.connect_timeout = timeout;
    }

    /// Sets the pause before accepting again after running out of descriptors (default 1 s).
    pub fn set_accept_backoff(&mut self, backoff: Duration) {
        self.core.config.accept_backoff = backoff;
    }

    /// Sets whether new connections get TCP_NODELAY (default on, as asyncio and Netty: small
    /// writes leave at once instead of waiting for Nagle's algorithm).
    pub fn set_nodelay_default(&mut self, on: bool) {
        self.core.config.nodelay = on;
    }

    /// Listens on `addr` with default options (backlog 1024, SO_REUSEADDR).
    pub fn listen_tcp(&mut self, addr: SocketAddr, factory: impl Factory) -> Result<ListeningPort, Error> {
        self.listen_tcp_with(addr, &ListenOptions::default(), factory)
    }

    /// Listens on `addr` with explicit socket options.
    pub fn listen_tcp_with(
        &mut self,
        addr: SocketAddr,
        options: &ListenOptions,
        factory: impl Factory,
    ) -> Result<ListeningPort, Error> {
        let id = self.core.listen_tcp(addr, options, Box::new(factory))?;
        let local = match self.core.sources.get(id.0) {
            Some(Source::Listener(l)) => l.local,
            _ => unreachable!("listener was just inserted"),
        };
        Ok(ListeningPort { id, local, handle: self.handle() })
    }

    /// Stops listening on a port (existing connections are unaffected).
    pub fn stop_listening(&mut self, id: ListenerId) {
        self.core.stop_listening(id.0);
    }

    /// Connects to `addr`; the factory builds the protocol once connected, or hears
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
        let timeout = self.core.config.connect_timeout;
        self.core.connect_tcp(addr, Box::new(factory), timeout)
    }

    /// Connects to `addr` with an explicit timeout.
    pub fn connect_tcp_with_timeout(
        &mut self,
        addr: SocketAddr,
        factory: impl ClientFactory,
        timeout: Duration,
    ) -> Result<ConnId, Error> {
        self.core.connect_tcp(addr, Box::new(factory), timeout)
    }

    /// Runs `f` after `delay` (on the reactor's clock).
    pub fn call_later(&mut self, delay: Duration, f: impl FnOnce(&mut Ctx<'_>) + 'static) -> TimerId {
        self.core.call_later_fn(delay, Box::new(f))
    }

    /// Runs `f` now and then every `interval`; a late loop skips the intervals it missed.
    /// Cancel the returned id to stop it.
    pub fn looping_call(&mut self, interval: Duration, f: impl FnMut(&mut Ctx<'_>) + 'static) -> TimerId {
        self.core.looping_call(interval, Box::new(f))
    }

    /// Cancels a timer or looping call; false if it already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.core.cancel_timer(id)
    }

    /// Moves a pending timer to fire `delay` from now; false if it is no longer pending.
    pub fn reset(&mut self, id: TimerId, delay: Duration) -> bool {
        let deadline = self.core.clock.now() + delay;
        self.core.timers.reset(id, deadline)
    }

    /// True while a timer is pending.
    pub fn is_active(&self, id: TimerId) -> bool {
        self.core.timers.is_active(id)
    }

    /// Requests a graceful stop: `run` stops accepting, closes every connection cleanly
    /// (flushing), aborts what is left after the shutdown timeout, then returns.
    pub fn stop(&mut self) {
        self.core.stop_requested = true;
    }

    /// Makes SIGINT and SIGTERM request a graceful stop (a second signal aborts every
    /// connection at once).
    pub fn install_signal_handlers(&mut self) -> io::Result<()> {
        let mut signals =
            signal_hook_mio::v1_0::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        self.poll.registry().register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Number of live connections (open or connecting, not yet delivered `connection_lost`).
    pub fn connection_count(&self) -> usize {
        self.core.connections
    }

    /// Number of pending timers, the reactor's own included.
    pub fn timer_count(&self) -> usize {
        self.core.timers.len()
    }

    /// Number of registered sources: listeners, connections and lingering sockets.
    pub fn source_count(&self) -> usize {
        self.core.sources.len()
    }

    /// The reactor's current time.
    pub fn now(&self) -> Instant {
        self.core.clock.now()
    }

    /// Runs the loop until [`stop`](Reactor::stop) (or a stop from a callback, a handle or a
    /// signal) has completed its graceful shutdown.
    ///
    /// Returns the error a callback gave to [`Ctx::stop_with_error`] (the default
    /// [`ClientFactory::client_connection_failed`] gives its reason when nothing else is left
    /// to do), or an error of the poller itself.
    pub fn run(&mut self) -> Result<(), Error> {
        match self.run_loop()? {
            Some(Exit::Error(e)) => Err(e),
            Some(Exit::Value(_)) | None => Ok(()),
        }
    }

    /// [`run`](Reactor::run), returning the value a callback gave to [`Ctx::stop_with`]
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
            if self.core.stopping && self.core.sources.is_empty() && self.core.tasks.is_empty() {
                self.finish_shutdown();
                return Ok(self.core.exit.take());
            }
        }
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
    pub fn before_shutdown(&mut self, trigger: impl FnOnce(&mut Ctx<'_>, Instant) + 'static) {
        self.core.shutdown_triggers.push(Box::new(trigger));
    }

    /// Runs the loop until `done` returns true or `timeout` passes (real time); returns whether
    /// `done` became true. For tests and embedding.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Reactor) -> bool,
    ) -> io::Result<bool> {
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
    /// Steps 5 and 6 also run after every callback, so writes made in one callback leave in one
    /// `write_vectored` call right after it returns.
    pub fn turn(&mut self) -> io::Result<()> {
        self.turn_within(None)
    }

    /// [`Reactor::turn`], waiting in the poller at most `max_wait`.
    fn turn_within(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        self.pick_up_stop_request();

        // 1. How long may we sleep?
        let now = self.core.clock.now();
        let until_timer = self.core.timers.next_deadline().map(|d| d.saturating_duration_since(now));
        let busy = !self.core.ready.is_empty()
            || !self.core.tasks.is_empty()
            || self.core.shared.has_calls()
            || (self.core.stopping && self.core.sources.is_empty());
        let timeout = if busy {
            Some(Duration::ZERO)
        } else if self.core.clock.is_manual() {
            Some(until_timer.map_or(MANUAL_CLOCK_POLL_CAP, |t| t.min(MANUAL_CLOCK_POLL_CAP)))
        } else {
            until_timer
        };
        let timeout = match (timeout, max_wait) {
            (Some(t), Some(m)) => Some(t.min(m)),
            (t, m) => t.or(m),
        };

        // 2. Wait for readiness.
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }

        // 3. Run the timers that are due, but only those scheduled before this point.
        self.run_timers();

        // 4. Dispatch readiness, then work carried over from the previous turn.
        let mut carried = std::mem::take(&mut self.core.ready);
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            self.dispatch(event);
        }
        self.events = events;
        for key in carried.drain(..) {
            self.dispatch_carried(key);
        }
        if self.core.ready.is_empty() {
            // Keep the allocation for the next turn's carried work.
            self.core.ready = carried;
        }

        // 5 and 6. Callbacks from other threads, then queued work and flushes.
        self.run_thread_calls();
        self.settle();
        self.pick_up_stop_request();
        Ok(())
    }

    fn pick_up_stop_request(&mut self) {
        if self.core.shared.take_stop() {
            self.core.stop_requested = true;
        }
        if self.core.stop_requested && !self.core.stopping {
            // Before-shutdown triggers run first, while everything is still open.
            let deadline = self.core.clock.now() + self.core.config.shutdown_timeout;
            for trigger in std::mem::take(&mut self.core.shutdown_triggers) {
                call_isolated(&mut self.core, "before_shutdown trigger", |cx| trigger(cx, deadline));
                self.settle();
            }
            self.core.begin_shutdown();
            self.settle();
        }
    }

    fn finish_shutdown(&mut self) {
        self.core.timers = Timers::default();
        self.core.stopping = false;
        self.core.stop_requested = false;
    }

    fn run_timers(&mut self) {
        let now = self.core.clock.now();
        let limit = self.core.timers.next_seq();
        while let Some((id, kind)) = self.core.timers.pop_due(now, limit) {
            match kind {
                TimerKind::Protocol(key) => {
                    if let Some(conn) = self.core.conn_mut(key) {
                        conn.timers.retain(|t| *t != id);
                    }
                    call_protocol(&mut self.protocols, &mut self.core, key, |p, cx| p.timer_fired(cx, id));
                }
                TimerKind::Call(f) => call_isolated(&mut self.core, "timer callback", f),
                TimerKind::Looping { interval, f: Some(mut f) } => {
                    let last = self.core.timers.get_mut(id).map(|t| t.deadline).unwrap_or(now);
                    call_isolated(&mut self.core, "looping call", &mut f);
                    if self.core.timers.is_active(id) {
                        let next = next_loop_deadline(last, interval, self.core.clock.now());
                        self.core.timers.rearm(id, next, f);
                    }
                }
                TimerKind::Looping { f: None, .. } => {}
                TimerKind::Internal(internal) => self.internal_timer(internal),
            }
            self.settle();
        }
    }

    fn internal_timer(&mut self, internal: Internal) {
        match internal {
            Internal::ConnectTimeout(key, timeout) => {
                if let Some(conn) = self.core.conn(key) {
                    let addr = conn.peer;
                    self.connect_failed(key, Error::ConnectTimeout { addr, timeout });
                }
            }
            Internal::AcceptRetry(key) => {
                if let Some(Source::Listener(l)) = self.core.sources.get_mut(key) {
                    l.backing_off = false;
                    self.accept(key);
                }
            }
            Internal::LingerTimeout(key) => self.core.remove_source(key),
            Internal::ShutdownDeadline => {
                let open: Vec<SourceKey> = self.core.conn_keys();
                if !open.is_empty() {
                    warn!(connections = open.len(), "shutdown deadline passed; aborting the rest");
                }
                for key in open {
                    self.core.abort_with(key, DisconnectReason::Aborted);
                }
                // Lingering sockets have sent everything and their FIN; stop waiting for peers.
                let lingering: Vec<SourceKey> = self.core.sources.keys().collect();
                for key in lingering {
                    if matches!(self.core.conn(key), Some(Conn { phase: Phase::Lingering { .. }, .. })) {
                        self.core.remove_source(key);
                    }
                }
            }
        }
    }

    fn run_thread_calls(&mut self) {
        for f in self.core.shared.take_calls() {
            call_isolated(&mut self.core, "call_from_thread callback", f);
            self.settle();
        }
    }

    fn dispatch(&mut self, event: &Event) {
        match event.token() {
            WAKER_TOKEN => {}
            SIGNAL_TOKEN => self.handle_signals(),
            token => {
                let key = key_of(token);
                match self.core.sources.get_mut(key) {
                    Some(Source::Listener(_)) => self.accept(key),
                    Some(Source::Conn(conn)) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            conn.read_ready = true;
                        }
                        if event.is_read_closed() || event.is_error() {
                            conn.hup = true;
                        }
                        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
                        self.conn_event(key, writable);
                    }
                    None => {}
                }
            }
        }
    }

    fn dispatch_carried(&mut self, key: SourceKey) {
        match self.core.sources.get_mut(key) {
            Some(Source::Listener(l)) => {
                l.queued = false;
                self.accept(key);
            }
            Some(Source::Conn(conn)) => {
                conn.queued = false;
                self.conn_event(key, false);
            }
            None => {}
        }
    }

    fn handle_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else { return };
        let count = signals.pending().count();
        if count == 0 {
            return;
        }
        if self.core.stopping {
            warn!("second signal during shutdown: aborting every connection");
            for key in self.core.conn_keys() {
                self.core.abort_with(key, DisconnectReason::Aborted);
            }
        } else {
            debug!("signal received: stopping gracefully");
            self.core.stop_requested = true;
        }
        self.settle();
    }

    /// Handles readiness (or left-over work) on a connection.
    fn conn_event(&mut self, key: SourceKey, writable: bool) {
        let Some(conn) = self.core.conn_mut(key) else { return };
        match conn.phase {
            Phase::Connecting { .. } => return self.connect_event(key),
            Phase::Lingering { .. } => return self.linger_read(key),
            Phase::Lost => return,
            Phase::Open => {}
        }
        if writable {
            if let Some(io) = conn.io.as_mut() {
                io.set_writable();
            }
        }
        // Flush first (writable event or left-over write budget), then read.
        if conn.io.as_ref().is_some_and(|io| io.needs_flush()) {
            self.core.flush(key);
            self.settle();
        }
        self.read(key);
    }

    /// Reads until a short read, `WouldBlock`, EOF, the per-turn budget, or a pause.
    fn read(&mut self, key: SourceKey) {
        let budget = self.core.config.reads_per_turn;
        let mut reads = 0;
        loop {
            let Some(conn) = self.core.conn_mut(key) else { return };
            let Some(io) = conn.io.as_mut() else { return };
            if !conn.read_ready || !matches!(conn.phase, Phase::Open) || !io.wants_read() {
                return;
            }
            if reads == budget {
                self.core.requeue(key);
                return;
            }
            reads += 1;
            match io.read(&mut self.read_buf) {
                ReadOutcome::Data(n) => {
                    let hup = conn.hup;
                    trace!(bytes = n, "read");
                    let data = &self.read_buf[..n];
                    call_protocol(&mut self.protocols, &mut self.core, key, |p, cx| {
                        p.data_received(cx, data)
                    });
                    self.settle();
                    if n < self.read_buf.len() && !hup {
                        // A short read drained the socket: the next data raises a new edge.
                        if let Some(conn) = self.core.conn_mut(key) {
                            conn.read_ready = false;
                        }
                        return;
                    }
                }
                ReadOutcome::WouldBlock => {
                    conn.read_ready = false;
                    return;
                }
                ReadOutcome::Eof => {
                    conn.read_ready = false;
                    self.eof(key);
                    return;
                }
                ReadOutcome::Error(e) => {
                    debug!(error = %e, "read failed");
                    self.core.finish(key, DisconnectReason::Lost(e));
                    self.settle();
                    return;
                }
            }
        }
    }

    /// The peer sent FIN.
    fn eof(&mut self, key: SourceKey) {
        debug!("peer half-closed");
        let keep_open = call_protocol(&mut self.protocols, &mut self.core, key, |p, cx| p.eof_received(cx))
            .unwrap_or(true);
        if let Some(io) = self.core.conn_mut(key).and_then(|c| c.io.as_mut()) {
            if !keep_open {
                io.lose_connection();
            }
            self.core.mark_dirty(key);
        }
        self.settle();
    }

    /// Drains a lingering socket's input until EOF, an error, or the byte limit.
    fn linger_read(&mut self, key: SourceKey) {
        loop {
            let Some(conn) = self.core.conn_mut(key) else { return };
            let Phase::Lingering { drained, .. } = &mut conn.phase else { return };
            let Some(io) = conn.io.as_mut() else { return };
            match io.read(&mut self.read_buf) {
                ReadOutcome::Data(n) => {
                    *drained += n;
                    if *drained > LINGER_MAX_BYTES {
                        break;
                    }
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Eof | ReadOutcome::Error(_) => break,
            }
        }
        self.core.remove_source(key);
    }

    fn connect_event(&mut self, key: SourceKey) {
        let Some(conn) = self.core.conn_mut(key) else { return };
        let Some(io) = conn.io.as_ref() else { return };
        let Some(tcp) = io.socket().tcp() else { return };
        match connect_progress(tcp) {
            ConnectProgress::Pending => {}
            ConnectProgress::Failed(e) => {
                let addr = conn.peer;
                self.connect_failed(key, Error::ConnectFailed { addr, source: e });
            }
            ConnectProgress::Connected => self.connected(key),
        }
    }

    fn connected(&mut self, key: SourceKey) {
        let nodelay = self.core.config.nodelay;
        let Some(conn) = self.core.conn_mut(key) else { return };
        let Phase::Connecting { factory, timeout } = std::mem::replace(&mut conn.phase, Phase::Open) else {
            return;
        };
        let peer = conn.peer;
        conn.local = conn.io.as_ref().and_then(|io| io.socket().tcp()?.local_addr().ok());
        if nodelay {
            if let Some(io) = conn.io.as_ref() {
                if let Some(tcp) = io.socket().tcp() {
                    let _ = tcp.set_nodelay(true);
                }
            }
        }
        conn.read_ready = true;
        self.core.timers.cancel(timeout);
        let Some(mut factory) = factory else { return };
        debug!(%peer, "connected");
        match catch_unwind(AssertUnwindSafe(|| factory.build_protocol(peer))) {
            Ok(protocol) => {
                self.protocols.insert(key, protocol);
                self.core.update_interest(key);
                call_protocol(&mut self.protocols, &mut self.core, key, |p, cx| p.connection_made(cx));
                self.settle();
                self.read(key);
            }
            Err(payload) => {
                error!(panic = %panic_message(payload.as_ref()), "ClientFactory::build_protocol panicked");
                self.core.abort_with(key, DisconnectReason::Panicked(panic_message(payload.as_ref())));
                self.settle();
            }
        }
    }

    fn connect_failed(&mut self, key: SourceKey, reason: Error) {
        let factory = match self.core.conn_mut(key) {
            Some(Conn { phase: Phase::Connecting { factory, timeout }, .. }) => {
                let timeout = *timeout;
                let factory = factory.take();
                self.core.timers.cancel(timeout);
                factory
            }
            _ => return,
        };
        debug!(%reason, "connect failed");
        self.core.remove_source(key);
        if let Some(mut factory) = factory {
            call_isolated(&mut self.core, "client_connection_failed", |cx| {
                factory.client_connection_failed(cx, reason)
            });
        }
        self.settle();
    }

    /// Accepts until `WouldBlock`, the per-turn batch, or an error that says stop.
    fn accept(&mut self, key: SourceKey) {
        for _ in 0..self.core.config.accepts_per_turn {
            let Some(Source::Listener(listener)) = self.core.sources.get_mut(key) else { return };
            if listener.backing_off {
                return;
            }
            let result = match listener.fault.as_mut().and_then(|fault| fault()) {
                Some(injected) => Err(injected),
                None => listener.socket.accept(),
            };
            match result {
                Ok((stream, peer)) => {
                    listener.exhaustion_logged = false;
                    self.accepted(key, stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_per_connection_accept_error(&e) => {
                    debug!(error = %e, "accept failed for one connection");
                }
                Err(e) => {
                    self.core.accept_exhausted(key, e);
                    return;
                }
            }
        }
        // Budget used up: more may be waiting, and no new edge will say so.
        self.core.requeue(key);
    }

    fn accepted(&mut self, listener: SourceKey, stream: TcpStream, peer: SocketAddr) {
        let Some(Source::Listener(l)) = self.core.sources.get_mut(listener) else { return };
        let Some(mut factory) = l.factory.take() else { return };
        let built = catch_unwind(AssertUnwindSafe(|| factory.build_protocol(peer)));
        if let Some(Source::Listener(l)) = self.core.sources.get_mut(listener) {
            l.factory = Some(factory);
        }
        let protocol = match built {
            Ok(Some(protocol)) => protocol,
            Ok(None) => {
                debug!(%peer, "factory refused the connection");
                return;
            }
            Err(payload) => {
                error!(%peer, panic = %panic_message(payload.as_ref()), "Factory::build_protocol panicked");
                return;
            }
        };
        let Some(key) = self.core.add_conn(stream, peer, Phase::Open) else { return };
        self.protocols.insert(key, protocol);
        call_protocol(&mut self.protocols, &mut self.core, key, |p, cx| p.connection_made(cx));
        self.settle();
        // Data may already be waiting; the registration edge reports it too, but reading now
        // saves a turn.
        self.read(key);
    }

    /// Runs queued work and flushes written transports until nothing is left.
    fn settle(&mut self) {
        loop {
            while let Some(task) = self.core.tasks.pop_front() {
                self.run_task(task);
            }
            if self.core.dirty.is_empty() {
                return;
            }
            let mut dirty = std::mem::take(&mut self.core.dirty);
            for key in dirty.drain(..) {
                self.core.flush(key);
            }
            if self.core.dirty.is_empty() {
                // Keep the allocation: this runs after every callback.
                self.core.dirty = dirty;
            }
            if self.core.tasks.is_empty() && self.core.dirty.is_empty() {
                return;
            }
        }
    }

    fn run_task(&mut self, task: Task) {
        match task {
            Task::Lost(key, reason) => {
                let span = self.core.conn(key).map(|c| c.span.clone()).unwrap_or_else(tracing::Span::none);
                let _enter = span.enter();
                debug!(%reason, "connection lost");
                let peer = self.core.conn(key).map(|c| c.peer);
                let lingering =
                    matches!(self.core.conn(key), Some(Conn { phase: Phase::Lingering { .. }, .. }));
                if !lingering {
                    self.core.remove_source(key);
                }
                if let Some(mut protocol) = self.protocols.remove(key) {
                    let mut cx = Ctx { core: &mut self.core, conn: key };
                    if let Err(payload) =
                        catch_unwind(AssertUnwindSafe(|| protocol.connection_lost(&mut cx, reason)))
                    {
                        let panic = panic_message(payload.as_ref());
                        let peer = peer.map_or_else(|| "?".to_owned(), |p| p.to_string());
                        error!(id = ?key.data(), %peer, %panic, "connection_lost panicked");
                    }
                    if catch_unwind(AssertUnwindSafe(move || drop(protocol))).is_err() {
                        error!("dropping a protocol panicked");
                    }
                }
            }
            Task::Producer(key, call, serial) => self.producer_call(key, call, serial),
            Task::ResumeOwn(key) => {
                call_protocol(&mut self.protocols, &mut self.core, key, |p, cx| p.resume_producing(cx));
            }
            Task::StopObject(key, mut producer) => {
                let mut cx = Ctx { core: &mut self.core, conn: key };
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| producer.stop_producing(&mut cx))) {
                    error!(panic = %panic_message(payload.as_ref()), "stop_producing panicked");
                }
            }
            Task::StopConn(other) => Transport { core: &mut self.core, key: other }.lose_connection(),
            Task::Call(f) => call_isolated(&mut self.core, "queued callback", f),
        }
    }
}

impl Reactor {
    /// Delivers a pause or resume to whatever produces for connection `key`.
    fn producer_call(&mut self, key: SourceKey, call: ProducerCall, serial: u64) {
        let Some(conn) = self.core.conn_mut(key) else { return };
        if conn.producer.serial != serial || !matches!(conn.phase, Phase::Open) {
            return;
        }
        if call == ProducerCall::Resume {
            conn.producer.resume_queued = false;
        }
        match &mut conn.producer.kind {
            ProducerKind::Own => {
                call_protocol(&mut self.protocols, &mut self.core, key, |p, cx| match call {
                    ProducerCall::Pause => p.pause_producing(cx),
                    ProducerCall::Resume => p.resume_producing(cx),
                });
            }
            ProducerKind::Conn(other) => {
                let other = *other;
                let mut transport = Transport { core: &mut self.core, key: other };
                match call {
                    ProducerCall::Pause => transport.pause_reading(),
                    ProducerCall::Resume => transport.resume_reading(),
                }
            }
            ProducerKind::Object(slot) => {
                let Some(mut producer) = slot.take() else { return };
                let mut cx = Ctx { core: &mut self.core, conn: key };
                let result = catch_unwind(AssertUnwindSafe(|| match call {
                    ProducerCall::Pause => producer.pause_producing(&mut cx),
                    ProducerCall::Resume => producer.resume_producing(&mut cx),
                }));
                if let Err(payload) = result {
                    let message = panic_message(payload.as_ref());
                    let peer = peer_of(&self.core, key);
                    error!(id = ?key.data(), %peer, panic = %message, "producer callback panicked; aborting its consumer");
                    self.core.abort_with(key, DisconnectReason::Panicked(message));
                }
                self.core.return_producer(key, serial, producer);
            }
        }
    }
}

/// Hooks for the in-memory test harness ([`crate::testing`]).
impl Reactor {
    /// Adds a connected memory connection whose protocol is built by `build`, and runs
    /// `connection_made`.
    pub(crate) fn add_memory_conn(
        &mut self,
        peer: SocketAddr,
        local: SocketAddr,
        protocol: Box<dyn Protocol>,
    ) -> Option<ConnId> {
        let key =
            self.core.add_stream(Stream::Memory(MemorySocket::new()), peer, Some(local), Phase::Open)?;
        self.protocols.insert(key, protocol);
        call_protocol(&mut self.protocols, &mut self.core, key, |p, cx| p.connection_made(cx));
        self.settle();
        Some(ConnId(key))
    }

    /// The memory socket of a connection, live or closed.
    pub(crate) fn memory_socket(&mut self, id: ConnId) -> Option<&mut MemorySocket> {
        match self.core.sources.get_mut(id.0) {
            Some(Source::Conn(conn)) => conn.io.as_mut()?.socket_mut().memory(),
            _ => self.core.closed_memory.get_mut(id.0),
        }
    }

    /// Tells the reactor a memory connection may be readable and writable again (after the
    /// test fed input or took output), as an edge from the poller would.
    pub(crate) fn memory_ready(&mut self, id: ConnId) {
        let Some(conn) = self.core.conn_mut(id.0) else { return };
        conn.read_ready = true;
        conn.hup = true; // memory reads are exact: read until WouldBlock
        if let Some(io) = conn.io.as_mut() {
            io.set_writable();
        }
        self.core.mark_dirty(id.0);
        self.core.requeue(id.0);
    }

    /// True while the reactor has work it would do without new events: ready connections,
    /// queued callbacks, thread calls, or timers already due.
    pub(crate) fn has_work(&mut self) -> bool {
        let now = self.core.clock.now();
        !self.core.ready.is_empty()
            || !self.core.tasks.is_empty()
            || !self.core.dirty.is_empty()
            || self.core.shared.has_calls()
            || self.core.timers.next_deadline().is_some_and(|d| d <= now)
    }

    /// One turn without waiting in the poller.
    pub(crate) fn turn_now(&mut self) -> io::Result<()> {
        self.turn_within(Some(Duration::ZERO))
    }

    /// Installs an accept fault injector on a listener; false if there is no such listener.
    pub(crate) fn set_accept_fault(&mut self, id: ListenerId, fault: AcceptFault) -> bool {
        match self.core.sources.get_mut(id.0) {
            Some(Source::Listener(l)) => {
                l.fault = Some(fault);
                true
            }
            _ => false,
        }
    }
}

impl Core {
    fn conn(&self, key: SourceKey) -> Option<&Conn> {
        match self.sources.get(key) {
            Some(Source::Conn(c)) => Some(c),
            _ => None,
        }
    }

    fn conn_mut(&mut self, key: SourceKey) -> Option<&mut Conn> {
        match self.sources.get_mut(key) {
            Some(Source::Conn(c)) => Some(c),
            _ => None,
        }
    }

    /// An open connection (not connecting, lost or lingering).
    fn open_conn(&mut self, key: SourceKey) -> Option<&mut Conn> {
        self.conn_mut(key).filter(|c| matches!(c.phase, Phase::Open))
    }

    /// Keys of connections that still count (open or connecting).
    fn conn_keys(&self) -> Vec<SourceKey> {
        self.sources
            .iter()
            .filter(|(_, s)| matches!(s, Source::Conn(c) if matches!(c.phase, Phase::Open | Phase::Connecting { .. })))
            .map(|(k, _)| k)
            .collect()
    }

    fn listen_tcp(
        &mut self,
        addr: SocketAddr,
        options: &ListenOptions,
        factory: Box<dyn Factory>,
    ) -> Result<ListenerId, Error> {
        if self.stopping {
            return Err(Error::Stopping);
        }
        let socket = bind_listener(addr, options)?;
        let local = socket.local_addr()?;
        let registry = &self.registry;
        let mut registered = Ok(());
        let key = self.sources.insert_with_key(|key| {
            let mut socket = socket;
            registered = registry.register(&mut socket, token_of(key), Interest::READABLE);
            Source::Listener(Listener {
                socket,
                factory: Some(factory),
                local,
                backing_off: false,
                exhaustion_logged: false,
                queued: false,
                fault: None,
            })
        });
        if let Err(e) = registered {
            self.sources.remove(key);
            return Err(e.into());
        }
        debug!(%local, "listening");
        Ok(ListenerId(key))
    }

    fn stop_listening(&mut self, key: SourceKey) {
        if let Some(Source::Listener(_)) = self.sources.get(key) {
            self.remove_source(key);
        }
    }

    fn connect_tcp(
        &mut self,
        addr: SocketAddr,
        factory: Box<dyn ClientFactory>,
        timeout: Duration,
    ) -> Result<ConnId, Error> {
        if self.stopping {
            return Err(Error::Stopping);
        }
        let stream = start_connect(addr)?;
        let deadline = self.clock.now() + timeout;
        let phase = Phase::Connecting { factory: Some(factory), timeout: TimerId(Default::default()) };
        let key = self
            .add_conn(stream, addr, phase)
            .ok_or_else(|| Error::Io(io::Error::other("registering the connecting socket failed")))?;
        let timer =
            self.timers.schedule(deadline, TimerKind::Internal(Internal::ConnectTimeout(key, timeout)));
        if let Some(Conn { phase: Phase::Connecting { timeout, .. }, timers, .. }) = self.conn_mut(key) {
            *timeout = timer;
            timers.push(timer);
        }
        Ok(ConnId(key))
    }

    /// Registers a connected (or connecting) stream as a new connection.
    fn add_conn(&mut self, stream: TcpStream, peer: SocketAddr, phase: Phase) -> Option<SourceKey> {
        let connecting = matches!(phase, Phase::Connecting { .. });
        let local = if connecting { None } else { stream.local_addr().ok() };
        if !connecting && self.config.nodelay {
            // Best effort: a failure here leaves Nagle on, nothing worse.
            let _ = stream.set_nodelay(true);
        }
        self.add_stream(Stream::Tcp(stream), peer, local, phase)
    }

    /// Registers any stream (TCP, or memory for tests) as a new connection.
    fn add_stream(
        &mut self,
        mut stream: Stream,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        phase: Phase,
    ) -> Option<SourceKey> {
        let connecting = matches!(phase, Phase::Connecting { .. });
        let interest = if connecting { Interest::WRITABLE | Interest::READABLE } else { Interest::READABLE };
        let registry = &self.registry;
        let mut registered = Ok(());
        let key = self.sources.insert_with_key(|key| {
            registered = registry.register(&mut stream, token_of(key), interest);
            Source::Conn(Box::new(Conn {
                io: Some(Connection::new(stream)),
                phase,
                peer,
                local,
                read_ready: !connecting,
                hup: false,
                queued: false,
                dirty: false,
                writable_interest: connecting,
                producer: ProducerSlot::default(),
                timers: Vec::new(),
                close_reason: None,
                span: tracing::debug_span!("conn", id = ?key.data(), %peer),
            }))
        });
        if let Err(e) = registered {
            error!(error = %e, "registering a connection failed");
            self.sources.remove(key);
            return None;
        }
        self.connections += 1;
        Some(key)
    }

    /// Deregisters and drops a source of any kind.
    fn remove_source(&mut self, key: SourceKey) {
        match self.sources.remove(key) {
            Some(Source::Listener(mut l)) => {
                let _ = self.registry.deregister(&mut l.socket);
                debug!(local = %l.local, "stopped listening");
            }
            Some(Source::Conn(mut conn)) => {
                if let Some(io) = conn.io.take() {
                    self.close_io(key, io);
                }
                if matches!(conn.phase, Phase::Open | Phase::Connecting { .. }) {
                    self.connections -= 1;
                }
                self.timers.cancel_all(&conn.timers);
                if let Phase::Lingering { timer, .. } = conn.phase {
                    self.timers.cancel(timer);
                }
            }
            None => {}
        }
    }

    /// Deregisters and closes a connection's socket. A memory socket is kept for the test
    /// harness to inspect (what was written, FIN, RST).
    fn close_io(&mut self, key: SourceKey, mut io: Connection<Stream>) {
        let _ = self.registry.deregister(io.socket_mut());
        if let Stream::Memory(socket) = io.into_socket() {
            self.closed_memory.insert(key, socket);
        }
    }

    /// Ends a connection for its protocol: queues `connection_lost(reason)` exactly once.
    /// A clean close whose peer has not sent FIN yet keeps draining input (lingering) so the
    /// close cannot turn into a reset that destroys data still in flight to the peer.
    fn finish(&mut self, key: SourceKey, reason: DisconnectReason) {
        let linger_deadline = self.clock.now() + LINGER_TIMEOUT;
        let Some(conn) = self.conn_mut(key) else { return };
        if !matches!(conn.phase, Phase::Open | Phase::Connecting { .. }) {
            return;
        }
        let timers = std::mem::take(&mut conn.timers);
        // A clean close (our FIN after a flush) lingers, whatever reason the protocol reports.
        let clean_close = reason.is_clean();
        let reason = match (reason, conn.close_reason.take()) {
            (DisconnectReason::Clean, Some(given)) => *given,
            (reason, _) => reason,
        };
        self.stop_producer(key);
        let Some(conn) = self.conn_mut(key) else { return };
        let linger =
            clean_close && conn.io.as_ref().is_some_and(|io| !io.is_read_closed() && !io.is_aborted());
        if linger {
            conn.phase = Phase::Lingering { drained: 0, timer: TimerId(Default::default()) };
            conn.read_ready = true;
        } else {
            conn.phase = Phase::Lost;
            if let Some(io) = conn.io.take() {
                self.close_io(key, io);
            }
        }
        self.connections -= 1;
        self.timers.cancel_all(&timers);
        if linger {
            let timer =
                self.timers.schedule(linger_deadline, TimerKind::Internal(Internal::LingerTimeout(key)));
            if let Some(Conn { phase: Phase::Lingering { timer: t, .. }, .. }) = self.conn_mut(key) {
                *t = timer;
            }
            // Drain whatever is already there next turn; edges report the rest.
            self.requeue(key);
        }
        self.tasks.push_back(Task::Lost(key, reason));
    }

    /// Aborts a connection (RST) and queues `connection_lost(reason)`.
    fn abort_with(&mut self, key: SourceKey, reason: DisconnectReason) {
        if let Some(io) = self.open_conn(key).and_then(|c| c.io.as_mut()) {
            io.abort();
        }
        if let Some(conn) = self.conn_mut(key) {
            if let Phase::Connecting { .. } = conn.phase {
                if let Some(io) = conn.io.as_mut() {
                    io.abort();
                }
            }
        }
        self.finish(key, reason);
    }

    /// Puts a source on the list for more work next turn.
    fn requeue(&mut self, key: SourceKey) {
        let queued = match self.sources.get_mut(key) {
            Some(Source::Conn(c)) => std::mem::replace(&mut c.queued, true),
            Some(Source::Listener(l)) => std::mem::replace(&mut l.queued, true),
            None => true,
        };
        if !queued {
            self.ready.push(key);
        }
    }

    /// Cancels a timer; a protocol timer also leaves its connection's list, so a protocol that
    /// cancels and re-arms a timer per message does not grow that list.
    fn cancel_timer(&mut self, id: TimerId) -> bool {
        let owner = match self.timers.get_mut(id) {
            Some(Timer { kind: TimerKind::Protocol(key), .. }) => Some(*key),
            _ => None,
        };
        if let Some(conn) = owner.and_then(|key| self.conn_mut(key)) {
            conn.timers.retain(|t| *t != id);
        }
        self.timers.cancel(id)
    }

    fn mark_dirty(&mut self, key: SourceKey) {
        if let Some(conn) = self.conn_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// After bytes were added to a connection's buffer: schedule the flush, enforce the hard
    /// cap, and pause a push producer that pushed the buffer above its high watermark.
    fn after_write(&mut self, key: SourceKey, above_high: bool) {
        self.mark_dirty(key);
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.io.as_ref().is_some_and(|io| io.over_max_buffer()) {
            warn!("write buffer over its hard cap; aborting the connection");
            self.abort_with(key, DisconnectReason::BufferOverflow);
            return;
        }
        let producer = &mut conn.producer;
        if above_high && producer.streaming && !producer.paused {
            producer.paused = true;
            let serial = producer.serial;
            self.tasks.push_back(Task::Producer(key, ProducerCall::Pause, serial));
        }
    }

    /// Puts a producer object back after one of its callbacks, unless it was unregistered
    /// meanwhile (then it is dropped) or its consumer ended (then it is stopped).
    fn return_producer(&mut self, key: SourceKey, serial: u64, producer: Box<dyn Producer>) {
        let Some(conn) = self.conn_mut(key) else { return };
        let slot = &mut conn.producer;
        if slot.serial != serial || !matches!(slot.kind, ProducerKind::Object(None)) {
            return;
        }
        if slot.stop_pending {
            slot.kind = ProducerKind::Own;
            slot.stop_pending = false;
            self.tasks.push_back(Task::StopObject(key, producer));
        } else {
            slot.kind = ProducerKind::Object(Some(producer));
        }
    }

    /// Takes the registered producer off a connection and queues its `stop_producing`.
    fn stop_producer(&mut self, key: SourceKey) {
        let Some(Source::Conn(conn)) = self.sources.get_mut(key) else { return };
        let slot = &mut conn.producer;
        match std::mem::replace(&mut slot.kind, ProducerKind::Own) {
            ProducerKind::Own => return,
            ProducerKind::Conn(other) => self.tasks.push_back(Task::StopConn(other)),
            ProducerKind::Object(Some(producer)) => self.tasks.push_back(Task::StopObject(key, producer)),
            ProducerKind::Object(None) => {
                // Its callback is running; it is stopped when it returns.
                slot.kind = ProducerKind::Object(None);
                slot.stop_pending = true;
                return;
            }
        }
        slot.serial += 1;
        slot.paused = false;
        slot.resume_queued = false;
        if let Some(io) = conn.io.as_mut() {
            io.set_hold_fin(false);
        }
    }

    /// Registers a producer on connection `key` (see [`Transport::register_producer`]).
    fn register_producer(
        &mut self,
        key: SourceKey,
        source: ProducerSource,
        streaming: bool,
    ) -> Result<(), Error> {
        let Some(conn) = self.open_conn(key) else {
            // A closed consumer: stop the producer at once (after this callback).
            match source {
                ProducerSource::Conn(id) => self.tasks.push_back(Task::StopConn(id.0)),
                ProducerSource::Object(producer) => self.tasks.push_back(Task::StopObject(key, producer)),
            }
            return Ok(());
        };
        if conn.producer.is_registered() {
            return Err(Error::ProducerAlreadyRegistered);
        }
        let own_was_paused = conn.producer.paused;
        let serial = conn.producer.serial + 1;
        let is_object = matches!(source, ProducerSource::Object(_));
        conn.producer = ProducerSlot {
            kind: match source {
                ProducerSource::Conn(id) => ProducerKind::Conn(id.0),
                ProducerSource::Object(producer) => ProducerKind::Object(Some(producer)),
            },
            streaming,
            paused: false,
            resume_queued: !streaming,
            stop_pending: false,
            serial,
        };
        let above_high = conn.io.as_ref().is_some_and(|io| io.buffer().above_high());
        if let Some(io) = conn.io.as_mut() {
            io.set_hold_fin(!streaming);
        }
        if own_was_paused {
            self.tasks.push_back(Task::ResumeOwn(key));
        }
        if !streaming {
            self.tasks.push_back(Task::Producer(key, ProducerCall::Resume, serial));
        } else if above_high {
            if let Some(conn) = self.conn_mut(key) {
                conn.producer.paused = true;
            }
            self.tasks.push_back(Task::Producer(key, ProducerCall::Pause, serial));
        } else if is_object {
            // The start: a push producer object only ever gets a `Ctx` in its own callbacks, so
            // without this first `resume_producing` it could never write at all.
            self.tasks.push_back(Task::Producer(key, ProducerCall::Resume, serial));
        }
        Ok(())
    }

    /// Unregisters the producer of connection `key`; never calls `stop_producing`.
    fn unregister_producer(&mut self, key: SourceKey) {
        let Some(conn) = self.open_conn(key) else { return };
        if !conn.producer.is_registered() {
            return;
        }
        let serial = conn.producer.serial + 1;
        conn.producer = ProducerSlot { serial, ..ProducerSlot::default() };
        if let Some(io) = conn.io.as_mut() {
            io.set_hold_fin(false);
            if io.is_closing() {
                // A close was waiting for this producer: let it finish.
                self.mark_dirty(key);
            }
        }
    }

    /// Writes out a connection's buffer and acts on the result: wait for writability, come back
    /// next turn, resume the producer, or finish the connection.
    fn flush(&mut self, key: SourceKey) {
        let budget = self.config.writes_per_flush;
        let Some(Source::Conn(conn)) = self.sources.get_mut(key) else { return };
        conn.dirty = false;
        if !matches!(conn.phase, Phase::Open) {
            return;
        }
        let Some(io) = conn.io.as_mut() else { return };
        // Nothing to write (a large write went straight to the socket, or the socket is known
        // to be blocked) still goes through the flow-control checks below: a pull producer
        // whose chunk the socket took whole must get its next `resume_producing` all the same.
        let result = if io.needs_flush() { io.flush(budget) } else { Ok(WriteState::Idle) };
        let at_low = io.buffer().at_or_below_low();
        let drained_for_close = io.is_closing() && io.buffer().is_empty();
        let finished = io.is_finished();
        if let Err(e) = result {
            debug!(error = %e, "write failed");
            self.finish(key, DisconnectReason::Lost(e));
            return;
        }
        let budget_left = result.as_ref().is_ok_and(|state| *state == WriteState::Budget);
        // Flow control: resume a paused push producer at the low watermark; give a pull
        // producer its next turn after each drain (Twisted's doWrite: also while a close waits
        // for it, which is what the close is waiting for).
        let producer = &mut conn.producer;
        let serial = producer.serial;
        if at_low && producer.streaming && producer.paused {
            producer.paused = false;
            self.tasks.push_back(Task::Producer(key, ProducerCall::Resume, serial));
        } else if at_low && producer.is_pull() && !producer.resume_queued && !finished {
            producer.resume_queued = true;
            self.tasks.push_back(Task::Producer(key, ProducerCall::Resume, serial));
        }
        // A push producer on a closing connection is stopped once everything it wrote is out.
        let stop = drained_for_close && producer.is_registered() && producer.streaming;
        if budget_left {
            self.requeue(key);
        }
        if stop {
            self.stop_producer(key);
        }
        if finished {
            self.finish(key, DisconnectReason::Clean);
        } else {
            self.update_interest(key);
        }
    }

    /// Registers WRITABLE interest exactly while data waits for a blocked socket.
    fn update_interest(&mut self, key: SourceKey) {
        let Some(Source::Conn(conn)) = self.sources.get_mut(key) else { return };
        let Some(io) = conn.io.as_mut() else { return };
        let want = io.is_write_blocked();
        if want != conn.writable_interest {
            conn.writable_interest = want;
            let interest = io.interest();
            if let Err(e) = self.registry.reregister(io.socket_mut(), token_of(key), interest) {
                error!(error = %e, "reregistering a connection failed");
                self.finish(key, DisconnectReason::Lost(e));
            }
        }
    }

    /// EMFILE and friends: log once, spend the reserved descriptor to accept-and-close the
    /// queued clients, and retry after a backoff (an edge-triggered listener would otherwise
    /// never get another event for clients already queued).
    fn accept_exhausted(&mut self, key: SourceKey, e: io::Error) {
        let backoff = self.config.accept_backoff;
        let Some(Source::Listener(l)) = self.sources.get_mut(key) else { return };
        if !l.exhaustion_logged {
            l.exhaustion_logged = true;
            if is_resource_accept_error(&e) {
                warn!(error = %e, local = %l.local, "accept: out of resources; closing queued clients and backing off");
            } else {
                error!(error = %e, local = %l.local, "accept failed; backing off");
            }
        }
        if self.reserve_fd.take().is_some() {
            let mut closed = 0;
            while let Ok((stream, _)) = l.socket.accept() {
                drop(stream);
                closed += 1;
                if closed == 4096 {
                    break;
                }
            }
            debug!(closed, "accepted and closed queued clients with the reserved descriptor");
            self.reserve_fd = File::open("/dev/null").ok();
        }
        l.backing_off = true;
        let deadline = self.clock.now() + backoff;
        self.timers.schedule(deadline, TimerKind::Internal(Internal::AcceptRetry(key)));
    }

    fn begin_shutdown(&mut self) {
        self.stopping = true;
        debug!(connections = self.connections, "graceful shutdown");
        let listeners: Vec<SourceKey> =
            self.sources.iter().filter(|(_, s)| matches!(s, Source::Listener(_))).map(|(k, _)| k).collect();
        for key in listeners {
            self.remove_source(key);
        }
        for key in self.conn_keys() {
            let connecting = matches!(self.conn(key), Some(Conn { phase: Phase::Connecting { .. }, .. }));
            if connecting {
                if let Some(Conn { phase: Phase::Connecting { factory, timeout }, peer, .. }) =
                    self.conn_mut(key)
                {
                    let (factory, timeout, addr) = (factory.take(), *timeout, *peer);
                    self.timers.cancel(timeout);
                    self.remove_source(key);
                    if let Some(mut factory) = factory {
                        self.tasks.push_back(Task::Call(Box::new(move |cx| {
                            factory.client_connection_failed(cx, Error::Cancelled { addr })
                        })));
                    }
                }
            } else if let Some(io) = self.open_conn(key).and_then(|c| c.io.as_mut()) {
                io.lose_connection();
                self.mark_dirty(key);
            }
        }
        let deadline = self.clock.now() + self.config.shutdown_timeout;
        self.timers.schedule(deadline, TimerKind::Internal(Internal::ShutdownDeadline));
    }

    fn call_later_fn(&mut self, delay: Duration, f: TimerFn) -> TimerId {
        let deadline = self.clock.now() + delay;
        self.timers.schedule(deadline, TimerKind::Call(f))
    }

    fn looping_call(&mut self, interval: Duration, f: LoopFn) -> TimerId {
        let now = self.clock.now();
        self.timers.schedule(now, TimerKind::Looping { interval, f: Some(f) })
    }
}

impl<'a> Ctx<'a> {
    /// This connection's id. In callbacks that belong to no connection (reactor timers, thread
    /// calls, `client_connection_failed`) it is an id that resolves to nothing.
    pub fn conn_id(&self) -> ConnId {
        ConnId(self.conn)
    }

    /// This connection's transport.
    pub fn transport(&mut self) -> Transport<'_> {
        Transport { core: self.core, key: self.conn }
    }

    /// Another live connection's transport; `None` if it is gone (or never was).
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
    /// let mut factory = |_| Some(Relay { members: members.clone() });
    /// let (a, b, c) = (h.accept(&mut factory).unwrap(), h.accept(&mut factory).unwrap(), h.accept(&mut factory).unwrap());
    /// h.feed(a, b"hi all");
    /// assert_eq!(h.take_written(b), b"hi all");
    /// assert_eq!(h.take_written(c), b"hi all");
    /// assert!(h.take_written(a).is_empty());
    /// ```
    pub fn transport_for(&mut self, id: ConnId) -> Option<Transport<'_>> {
        self.core.open_conn(id.0)?;
        Some(Transport { core: self.core, key: id.0 })
    }

    /// Fires [`Protocol::timer_fired`] on this connection's protocol after `delay`. The timer is
    /// cancelled automatically when the connection ends.
    pub fn call_later(&mut self, delay: Duration) -> TimerId {
        let deadline = self.core.clock.now() + delay;
        let id = self.core.timers.schedule(deadline, TimerKind::Protocol(self.conn));
        if let Some(conn) = self.core.conn_mut(self.conn) {
            conn.timers.push(id);
        }
        id
    }

    /// Runs `f` after `delay`, independent of any connection.
    pub fn call_later_fn(&mut self, delay: Duration, f: impl FnOnce(&mut Ctx<'_>) + 'static) -> TimerId {
        self.core.call_later_fn(delay, Box::new(f))
    }

    /// Runs `f` now and then every `interval`, skipping missed intervals.
    pub fn looping_call(&mut self, interval: Duration, f: impl FnMut(&mut Ctx<'_>) + 'static) -> TimerId {
        self.core.looping_call(interval, Box::new(f))
    }

    /// Queues `f` to run after the current callback, in this turn.
    pub fn call_soon(&mut self, f: impl FnOnce(&mut Ctx<'_>) + 'static) {
        self.core.tasks.push_back(Task::Call(Box::new(f)));
    }

    /// Cancels a timer; false if it already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.core.cancel_timer(id)
    }

    /// Moves a pending timer to fire `delay` from now; false if it is no longer pending.
    pub fn reset(&mut self, id: TimerId, delay: Duration) -> bool {
        let deadline = self.core.clock.now() + delay;
        self.core.timers.reset(id, deadline)
    }

    /// True while a timer is pending.
    pub fn is_active(&self, id: TimerId) -> bool {
        self.core.timers.is_active(id)
    }

    /// The reactor's current time.
    pub fn now(&self) -> Instant {
        self.core.clock.now()
    }

    /// Connects out; `connection_made` of the new protocol runs later, from the loop.
    pub fn connect_tcp(&mut self, addr: SocketAddr, factory: impl ClientFactory) -> Result<ConnId, Error> {
        let timeout = self.core.config.connect_timeout;
        self.core.connect_tcp(addr, Box::new(factory), timeout)
    }

    /// Connects out with an explicit timeout.
    pub fn connect_tcp_with_timeout(
        &mut self,
        addr: SocketAddr,
        factory: impl ClientFactory,
        timeout: Duration,
    ) -> Result<ConnId, Error> {
        self.core.connect_tcp(addr, Box::new(factory), timeout)
    }

    /// Stops listening on a port.
    pub fn stop_listening(&mut self, id: ListenerId) {
        self.core.stop_listening(id.0);
    }

    /// Requests a graceful stop of the reactor (after this callback returns).
    pub fn stop_reactor(&mut self) {
        self.core.stop_requested = true;
    }

    /// Requests a graceful stop after which [`Reactor::run`] returns `error`. The first error
    /// or value given wins.
    pub fn stop_with_error(&mut self, error: impl Into<Error>) {
        if self.core.exit.is_none() {
            self.core.exit = Some(Exit::Error(error.into()));
        }
        self.core.stop_requested = true;
    }

    /// Requests a graceful stop after which [`Reactor::run_with_result`] returns `value` (an
    /// exit status, a result computed by a client). The first error or value given wins.
    pub fn stop_with<T: 'static>(&mut self, value: T) {
        if self.core.exit.is_none() {
            self.core.exit = Some(Exit::Value(Box::new(value)));
        }
        self.core.stop_requested = true;
    }

    /// Runs `trigger` once when a graceful stop begins; see [`Reactor::before_shutdown`].
    pub fn before_shutdown(&mut self, trigger: impl FnOnce(&mut Ctx<'_>, Instant) + 'static) {
        self.core.shutdown_triggers.push(Box::new(trigger));
    }

    /// The default failure handling of a client: stop with `error` if the reactor has nothing
    /// else to do (no listener, no connection, no pending timer, no queued call).
    pub(crate) fn stop_with_error_if_idle(&mut self, error: Error) {
        let core = &*self.core;
        let idle = core.connections == 0
            && !core.sources.iter().any(|(_, s)| matches!(s, Source::Listener(_)))
            && core.timers.len() == 0
            && core.tasks.is_empty()
            && !core.shared.has_calls();
        if idle && !core.stopping {
            self.stop_with_error(error);
        }
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle::new(self.core.shared.clone())
    }
}

impl Transport<'_> {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        ConnId(self.key)
    }

    fn io(&mut self) -> Option<&mut Connection<Stream>> {
        self.core.open_conn(self.key)?.io.as_mut()
    }

    /// True while the connection is open (even if closing).
    pub fn is_connected(&mut self) -> bool {
        self.io().is_some()
    }

    /// Queues a copy of `data`; it is sent after the current callback, together with every
    /// other write made in it. Returns whether the write buffer is now above its high watermark.
    /// Ignored after a close.
    ///
    /// One exception, invisible but for speed: a write of 16 KiB or more made while nothing is
    /// buffered goes to the socket at once, and only what the socket does not take is copied
    /// (coalescing gains nothing at that size, and the copy would be most of a streaming
    /// server's own CPU). A write error is still reported after the callback, as
    /// `connection_lost(Lost(..))`.
    pub fn write(&mut self, data: &[u8]) -> bool {
        let Some(io) = self.io() else { return false };
        if !io.accepts_writes() || data.is_empty() {
            return io.buffer().above_high();
        }
        let above = io.write(data);
        self.core.after_write(self.key, above);
        above
    }

    /// Queues an owned chunk without copying. Same rules as [`Transport::write`].
    pub fn write_bytes(&mut self, data: Bytes) -> bool {
        let Some(io) = self.io() else { return false };
        if !io.accepts_writes() || data.is_empty() {
            return io.buffer().above_high();
        }
        let above = io.write_bytes(data);
        self.core.after_write(self.key, above);
        above
    }

    /// Queues several slices in order. Same rules as [`Transport::write`].
    pub fn write_sequence<'d>(&mut self, data: impl IntoIterator<Item = &'d [u8]>) -> bool {
        let Some(io) = self.io() else { return false };
        if !io.accepts_writes() {
            return io.buffer().above_high();
        }
        let mut above = false;
        for chunk in data {
            above = io.write(chunk);
        }
        self.core.after_write(self.key, above);
        above
    }

    /// Closes cleanly: stop delivering input, flush everything buffered, send FIN, then
    /// `connection_lost(Clean)`. Repeated calls are no-ops.
    pub fn lose_connection(&mut self) {
        if let Some(io) = self.io() {
            if io.lose_connection() {
                self.core.mark_dirty(self.key);
            }
        }
    }

    /// Closes cleanly like [`lose_connection`](Transport::lose_connection), but
    /// `connection_lost` reports `reason` instead of `Clean` (for example
    /// [`DisconnectReason::LimitExceeded`] when a line was too long). Only the first reason
    /// given counts.
    pub fn lose_connection_with(&mut self, reason: DisconnectReason) {
        let key = self.key;
        if let Some(conn) = self.core.open_conn(key) {
            if conn.io.as_ref().is_some_and(|io| !io.is_closing()) && conn.close_reason.is_none() {
                conn.close_reason = Some(Box::new(reason));
            }
        }
        self.lose_connection();
    }

    /// Aborts like [`abort_connection`](Transport::abort_connection), reporting `reason`.
    pub fn abort_connection_with(&mut self, reason: DisconnectReason) {
        if self.io().is_some() {
            self.core.abort_with(self.key, reason);
        }
    }

    /// Closes at once: drop the buffer, reset (RST), then `connection_lost(Aborted)`.
    pub fn abort_connection(&mut self) {
        if self.io().is_some() {
            self.core.abort_with(self.key, DisconnectReason::Aborted);
        }
    }

    /// Half-closes: flush, then FIN; reading goes on. When the peer's FIN has also arrived,
    /// `connection_lost(Clean)` follows.
    pub fn write_eof(&mut self) {
        if let Some(io) = self.io() {
            if io.write_eof() {
                self.core.mark_dirty(self.key);
            }
        }
    }

    /// Stops reading; the kernel's buffer fills and TCP pushes back on the peer. Idempotent.
    pub fn pause_reading(&mut self) {
        if let Some(io) = self.io() {
            io.pause_reading();
        }
    }

    /// Resumes reading. Data that arrived while paused (it raised no new edge) is read on the
    /// next turn. Idempotent.
    pub fn resume_reading(&mut self) {
        let key = self.key;
        let Some(conn) = self.core.open_conn(key) else { return };
        let Some(io) = conn.io.as_mut() else { return };
        if io.resume_reading() {
            conn.read_ready = true;
            self.core.requeue(key);
        }
    }

    /// True once `lose_connection` or an abort has been asked for, or the connection is gone:
    /// no more input will be delivered and ordinary writes are ignored. (A half-close with
    /// `write_eof` is not closing: reading goes on.) Framers check it to stop delivering frames
    /// however their handler closed the connection.
    pub fn is_closing(&mut self) -> bool {
        self.io().is_none_or(|io| io.is_closing())
    }

    /// True while reading is paused.
    pub fn is_reading_paused(&mut self) -> bool {
        self.io().is_some_and(|io| io.is_read_paused())
    }

    /// The peer's address.
    pub fn peer_addr(&mut self) -> Option<SocketAddr> {
        self.core.conn(self.key).map(|c| c.peer)
    }

    /// Our address.
    pub fn local_addr(&mut self) -> Option<SocketAddr> {
        self.core.conn(self.key).and_then(|c| c.local)
    }

    /// Sets TCP_NODELAY.
    pub fn set_nodelay(&mut self, on: bool) -> io::Result<()> {
        match self.io() {
            Some(io) => match io.socket().tcp() {
                Some(tcp) => torsion_transports::tcp::set_nodelay(tcp, on),
                None => Ok(()),
            },
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Turns SO_KEEPALIVE on with the given idle time, or off with `None`.
    pub fn set_keepalive(&mut self, idle: Option<Duration>) -> io::Result<()> {
        match self.io() {
            Some(io) => match io.socket().tcp() {
                Some(tcp) => torsion_transports::tcp::set_keepalive(tcp, idle),
                None => Ok(()),
            },
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// True while the write buffer is above its high watermark: the peer is not reading as fast
    /// as this connection writes (the same answer `write` returns).
    pub fn is_write_buffer_above_high(&mut self) -> bool {
        self.io().is_some_and(|io| io.buffer().above_high())
    }

    /// Bytes waiting in the user-space write buffer.
    pub fn write_buffer_len(&mut self) -> usize {
        self.io().map_or(0, |io| io.buffer().len())
    }

    /// Bytes this transport has accepted for sending so far (every `write`, `write_bytes` and
    /// `write_sequence` that was not ignored), whether sent at once or buffered. Compare it
    /// before and after a callback to meter what a protocol wrote; the buffer's length alone
    /// misses what went straight to the socket.
    pub fn bytes_written(&mut self) -> u64 {
        self.io().map_or(0, |io| io.bytes_accepted())
    }

    /// Sets the write buffer's watermarks (defaults 64 KiB / 16 KiB); `low` must not exceed
    /// `high`.
    pub fn set_write_buffer_limits(&mut self, high: usize, low: usize) -> Result<(), Error> {
        match self.io() {
            Some(io) => Ok(io.buffer_mut().set_limits(high, low)?),
            None => Ok(()),
        }
    }

    /// Registers a producer for this transport's output (Twisted's `registerProducer`):
    /// another connection ([`ConnId`]) or a [`Producer`] object; `streaming` is true for a push
    /// producer, false for a pull producer. A pull producer gets `resume_producing` right after
    /// this callback; a push producer registered over a full buffer is paused at once.
    /// Registering while another producer is registered is an error; registering on a closed
    /// transport calls `stop_producing` (after this callback).
    ///
    /// While a pull producer is registered, `lose_connection` waits for it to unregister; a push
    /// producer gets `stop_producing` once the buffer has drained, then FIN goes out.
    pub fn register_producer(
        &mut self,
        producer: impl Into<ProducerSource>,
        streaming: bool,
    ) -> Result<(), Error> {
        self.core.register_producer(self.key, producer.into(), streaming)
    }

    /// Unregisters the producer, if any (Twisted's `unregisterProducer`); never calls
    /// `stop_producing`. The connection's own protocol becomes its producer again.
    pub fn unregister_producer(&mut self) {
        self.core.unregister_producer(self.key);
    }

    /// True while a producer is registered.
    pub fn has_producer(&mut self) -> bool {
        self.core.open_conn(self.key).is_some_and(|c| c.producer.is_registered())
    }

    /// Sets a hard cap on the write buffer (`None`, the default: no cap). A write that takes
    /// the buffer over it aborts the connection with [`DisconnectReason::BufferOverflow`].
    pub fn set_max_write_buffer(&mut self, cap: Option<usize>) {
        if let Some(io) = self.io() {
            io.set_max_buffer(cap);
        }
    }

    /// Number of `write`/`write_vectored` system calls this transport has made.
    pub fn write_calls(&mut self) -> u64 {
        self.io().map_or(0, |io| io.buffer().write_calls())
    }
}

/// A listening port: its bound address and a way to stop it from anywhere.
#[derive(Debug, Clone)]
pub struct ListeningPort {
    id: ListenerId,
    local: SocketAddr,
    handle: ReactorHandle,
}

impl ListeningPort {
    /// The bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The listener's id.
    pub fn id(&self) -> ListenerId {
        self.id
    }

    /// Stops listening (takes effect at the reactor's next turn); existing connections stay.
    pub fn stop_listening(&self) {
        let id = self.id;
        self.handle.call_from_thread(move |cx| cx.stop_listening(id));
    }
}
