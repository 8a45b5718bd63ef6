//! The one shared util of torsion's loopback integration tests (`tests/tests/*.rs`, one file per
//! behaviour):
//!
//! - bounded waits: [`WAIT`], [`run_until`] (turn a reactor until a condition, with a
//!   deadline), [`wait_for`], [`recv`];
//! - a reactor on its own thread: [`ReactorThread`], and [`Server`] for the common case of one
//!   listener on it;
//! - the stream kinds a transport suite runs over: [`Kind`] (TCP on `127.0.0.1:0`, or a Unix
//!   socket at a unique temporary path), [`listen`], a blocking client [`AnyStream`] and
//!   [`connect`], and [`over_kinds!`](crate::over_kinds) to make one test per kind from one body;
//! - `expect_*` helpers for what a client sees: [`expect_closed`], [`expect_eof`],
//!   [`expect_aborted`];
//! - load and measurement: [`Pinger`] (round trips without a thread per peer), [`LoadChild`],
//!   [`Stats`], log capture ([`capture_logs`]), descriptor, CPU and RSS figures, and the
//!   [`serial`] lock for tests that measure process-wide figures;
//! - deterministic bytes ([`pattern`]) and a recording protocol ([`Recorder`]).
//!
//! ```
//! use torsion_tests::pattern;
//!
//! let a = pattern(1, 1024);
//! assert_eq!(a, pattern(1, 1024), "the same seed gives the same bytes");
//! assert_ne!(a, pattern(2, 1024));
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use torsion_reactor::{
    Address, Ctx, DisconnectReason, Factory, ListeningPort, Protocol, Reactor, ReactorHandle, UnixAddr,
};

// ---------------------------------------------------------------------------------------------
// Bounded waits

/// The longest any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Turns `reactor` until `done` holds, failing the test with `what` after [`WAIT`]. Each
/// poll waits at most 5 ms, so a condition that another thread makes true (with no event for
/// this reactor) is noticed promptly.
pub fn run_until(reactor: &mut Reactor, what: &str, mut done: impl FnMut(&Reactor) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if reactor.run_until(Duration::from_millis(5), &mut done).expect("reactor turn failed") {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting for: {what}");
    }
}

/// Polls `done` until it holds, failing with `what` after [`WAIT`]. For waiting on another
/// thread or process; each poll sleeps 1 ms (a bounded wait, not a synchronisation sleep).
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Receives from `rx`, failing with `what` after [`WAIT`].
pub fn recv<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// Runs `body` on its own thread and waits for it, bounded by [`WAIT`]: for tests that call
/// `turn()` or `run()` on a reactor with a real clock, which a bug could block forever.
pub fn bounded(what: &str, body: impl FnOnce() + Send + 'static) {
    let thread = std::thread::spawn(body);
    wait_for(what, || thread.is_finished());
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------------
// Stream kinds

/// A kind of stream socket: a transport suite runs over every kind (see
/// [`over_kinds!`](crate::over_kinds)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// TCP over IPv4 loopback, port 0.
    Tcp,
    /// A Unix stream socket at a unique path in the temporary directory.
    Unix,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 2] = [Kind::Tcp, Kind::Unix];

    /// A fresh address to listen on: `127.0.0.1:0`, or a unique socket path (whose file the
    /// returned guard removes).
    pub fn listen_addr(self) -> ListenAddr {
        match self {
            Kind::Tcp => ListenAddr { addr: Address::Inet(localhost()), path: None },
            Kind::Unix => {
                let path = TempPath::new(".sock");
                ListenAddr { addr: Address::unix_path(path.path()), path: Some(path) }
            }
        }
    }

    /// The kind of an address.
    pub fn of(addr: &Address) -> Kind {
        match addr {
            Address::Inet(_) => Kind::Tcp,
            Address::Unix(_) => Kind::Unix,
        }
    }

    /// Whether `error`, from a client's connect, says that nothing listens there: refused
    /// for TCP; for a Unix path, refused (a file without a listener) or not found (the file
    /// was removed, as a stopped listener does).
    pub fn is_refusal(self, error: &std::io::Error) -> bool {
        match self {
            Kind::Tcp => error.kind() == ErrorKind::ConnectionRefused,
            Kind::Unix => matches!(error.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Tcp => "tcp",
            Kind::Unix => "unix",
        })
    }
}

/// Makes two tests of each named function `fn NAME(kind: Kind)`: `NAME::tcp` and `NAME::unix`
/// (a module beside the function, of the same name). The function's doc comment is the
/// tests' doc comment.
///
/// ```ignore
/// /// Catalogue 8 (peer_half_close_echo): ...
/// fn half_close_echo(kind: Kind) { /* ... */ }
/// over_kinds!(half_close_echo);
/// ```
#[macro_export]
macro_rules! over_kinds {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn tcp() {
                super::$name($crate::Kind::Tcp)
            }
            #[test]
            fn unix() {
                super::$name($crate::Kind::Unix)
            }
        }
    )+};
}

/// A unique path in the temporary directory (this process's id and a counter), removed (if
/// anything is there) when dropped.
#[derive(Debug)]
pub struct TempPath(PathBuf);

impl TempPath {
    /// A new unique path ending in `suffix`; nothing is created.
    pub fn new(suffix: &str) -> TempPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!("torsion-test-{}-{n}{suffix}", std::process::id())))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An address to listen on, from [`Kind::listen_addr`].
#[derive(Debug)]
pub struct ListenAddr {
    /// The address.
    pub addr: Address,
    /// For a Unix socket: the guard that removes its file.
    pub path: Option<TempPath>,
}

/// A listener made by [`listen`].
#[derive(Debug)]
pub struct Listener {
    /// The listening port.
    pub port: ListeningPort,
    /// Its bound address (the real port for TCP; `unix:/path`).
    pub addr: Address,
    /// For a Unix socket: the guard that removes its file if the listener did not.
    pub path: Option<TempPath>,
}

/// Listens with `factory` on a fresh address of `kind` (`127.0.0.1:0`, or a unique socket
/// path), through [`Reactor::listen`].
pub fn listen(reactor: &mut Reactor, kind: Kind, factory: impl Factory) -> Listener {
    let ListenAddr { addr, path } = kind.listen_addr();
    let port = reactor.listen(&addr, factory).unwrap_or_else(|e| panic!("listen on {addr}: {e}"));
    Listener { addr: port.local_addr().clone(), port, path }
}

/// 127.0.0.1 port 0.
pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A blocking client stream of either kind: a std `TcpStream` or `UnixStream` behind one type.
#[derive(Debug)]
pub enum AnyStream {
    /// A TCP stream.
    Tcp(TcpStream),
    /// A Unix stream.
    Unix(UnixStream),
}

/// Connects a blocking client to `addr`, which must be of `kind`, with read and write
/// timeouts of [`WAIT`]; a failed connect fails the test.
pub fn connect(kind: Kind, addr: &Address) -> AnyStream {
    assert_eq!(Kind::of(addr), kind, "{addr} is not a {kind} address");
    let stream = AnyStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Like [`connect`], for a client whose receive buffer is small and fixed (16 KiB, TCP), so that
/// data sent to it backs up in the server's user-space buffer rather than the kernel's. A Unix
/// stream's kernel buffering is the sender's send buffer (a receive buffer size does not
/// apply), so for Unix this is a plain connect.
pub fn connect_small_window(addr: &Address) -> AnyStream {
    let stream = match addr {
        Address::Inet(inet) => {
            let domain = if inet.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(16 * 1024).unwrap();
            socket.connect(&(*inet).into()).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
            AnyStream::Tcp(socket.into())
        }
        Address::Unix(_) => AnyStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}")),
    };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

impl AnyStream {
    /// Connects to `addr` (TCP for an inet address, Unix for a path or abstract name), with no
    /// timeouts set.
    pub fn connect(addr: &Address) -> std::io::Result<AnyStream> {
        match addr {
            Address::Inet(inet) => TcpStream::connect(inet).map(AnyStream::Tcp),
            Address::Unix(UnixAddr::Path(path)) => UnixStream::connect(path).map(AnyStream::Unix),
            Address::Unix(unix) => UnixStream::connect_addr(&unix.to_std()?).map(AnyStream::Unix),
        }
    }

    /// The kind of stream.
    pub fn kind(&self) -> Kind {
        match self {
            AnyStream::Tcp(_) => Kind::Tcp,
            AnyStream::Unix(_) => Kind::Unix,
        }
    }

    /// The TCP stream; panics for a Unix one.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            AnyStream::Tcp(s) => s,
            AnyStream::Unix(_) => panic!("a Unix stream, not TCP"),
        }
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        match self {
            AnyStream::Tcp(s) => s.shutdown(how),
            AnyStream::Unix(s) => s.shutdown(how),
        }
    }

    /// Shuts down the write half (sends FIN for TCP; the peer reads EOF either way).
    pub fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    /// Sets the read timeout.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            AnyStream::Tcp(s) => s.set_read_timeout(timeout),
            AnyStream::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Sets the write timeout.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            AnyStream::Tcp(s) => s.set_write_timeout(timeout),
            AnyStream::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    /// Moves the stream in or out of non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        match self {
            AnyStream::Tcp(s) => s.set_nonblocking(on),
            AnyStream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// A second handle to the same stream (for a writer thread beside a reader).
    pub fn try_clone(&self) -> std::io::Result<AnyStream> {
        match self {
            AnyStream::Tcp(s) => s.try_clone().map(AnyStream::Tcp),
            AnyStream::Unix(s) => s.try_clone().map(AnyStream::Unix),
        }
    }

    /// This end's address (for a Unix client that did not bind, `unix:(unnamed)`), as the
    /// server's transport reports it in `peer_addr()`.
    pub fn local_addr(&self) -> Address {
        match self {
            AnyStream::Tcp(s) => Address::Inet(s.local_addr().unwrap()),
            AnyStream::Unix(s) => Address::Unix(UnixAddr::from_std(&s.local_addr().unwrap())),
        }
    }

    /// Closes the stream the rudest way its kind has: TCP with SO_LINGER 0 (the kernel sends a
    /// reset instead of FIN); a Unix stream has no reset, so it is a plain close.
    pub fn reset(self) {
        if let AnyStream::Tcp(s) = &self {
            socket2::SockRef::from(s).set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(self);
    }
}

impl Read for AnyStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            AnyStream::Tcp(s) => s.read(buf),
            AnyStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for AnyStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            AnyStream::Tcp(s) => s.write(buf),
            AnyStream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `data` on a second thread while reading on this one; returns what came back before
/// EOF. Shuts the write half down after writing when `half_close` is set.
pub fn write_and_read_to_end(stream: AnyStream, data: Vec<u8>, half_close: bool) -> std::io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&data)?;
        if half_close {
            writer.shutdown_write()?;
        }
        Ok(())
    });
    let mut reader = stream;
    let mut got = Vec::new();
    let read = reader.read_to_end(&mut got);
    sender.join().expect("writer thread panicked")?;
    read.map(|_| got)
}

/// Reads until the server's end of the connection is gone, EOF or a reset (or, for an
/// aborted connection, `ConnectionAborted`); returns how many bytes came first. A timeout or
/// another error fails the test.
pub fn expect_closed(stream: &mut impl Read, what: &str) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return total
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("{what}: the connection was not closed: {e} (after {total} bytes)"),
        }
    }
}

/// Reads to EOF and returns the bytes; a reset, a timeout or another error fails the test.
pub fn expect_eof(stream: &mut impl Read, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    if let Err(e) = stream.read_to_end(&mut got) {
        panic!("{what}: expected data then EOF, got {e} after {} bytes", got.len());
    }
    got
}

/// What the peer of an aborted connection reads, after whatever data the kernel already held:
/// a reset for TCP (the abort sends RST); for a Unix stream, which has no reset, end of file
/// or a reset (Linux reports `ECONNRESET` to the peer when a socket closes with unread input).
/// Returns the bytes read before it.
pub fn expect_aborted(stream: &mut AnyStream, what: &str) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) if stream.kind() == Kind::Unix => return read,
            Ok(0) => panic!("{what}: EOF after {read} B: expected a reset"),
            Ok(n) => read += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return read,
            Err(e) => panic!("{what}: expected a reset, got {e} after {read} B"),
        }
    }
}

/// A loopback address where a connect is refused, for as long as the returned socket lives.
///
/// The socket is bound but not listening, so the kernel answers a SYN with a reset, and no
/// other test (nor a client's ephemeral source port) can take the port meanwhile. Closing a
/// listener and reusing its port instead races with every other test binding port 0.
pub fn refused_addr() -> (socket2::Socket, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&localhost().into()).expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("local_addr").as_socket().expect("an inet address");
    (socket, addr)
}

/// A loopback listener whose accept queue is full, so that a further connect hangs until it
/// times out: `listen(1)`, never accepted, filled by up to four raw connects (the kernel then
/// drops further SYNs). Keep both returned values alive for as long as the queue must stay full.
pub fn full_accept_queue() -> (socket2::Socket, Vec<TcpStream>, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&localhost().into()).expect("bind 127.0.0.1:0");
    socket.listen(1).expect("listen(1)");
    let addr = socket.local_addr().expect("local_addr").as_socket().expect("an inet address");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        // Some of these complete (queued), the rest time out: either way the queue is full.
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    assert!(!fillers.is_empty(), "the accept queue took no connection at all");
    (socket, fillers, addr)
}

// ---------------------------------------------------------------------------------------------
// A reactor on a thread

/// A reactor running `run()` on its own thread. `setup` runs on that thread first (listen,
/// schedule timers) and returns what the test needs to know (addresses, ids).
///
/// Dropping it stops the reactor and waits (bounded) for `run()` to return, re-raising a panic
/// of its thread; while the test is already failing it only asks the reactor to stop.
#[derive(Debug)]
pub struct ReactorThread {
    /// Stops or calls into the reactor.
    pub handle: ReactorHandle,
    /// The reactor thread's kernel thread id, for [`thread_cpu`].
    pub tid: u32,
    thread: Option<JoinHandle<Result<(), torsion_reactor::Error>>>,
}

impl ReactorThread {
    /// Builds a reactor on a new thread, lets `setup` configure it (its result comes back to
    /// the caller), then calls `run()`.
    pub fn start<T: Send + 'static>(
        setup: impl FnOnce(&mut Reactor) -> T + Send + 'static,
    ) -> (ReactorThread, T) {
        let (thread, out, _) = ReactorThread::spawn(None, setup);
        (thread, out)
    }

    /// Like [`ReactorThread::start`], capturing the reactor thread's log at `level` and above.
    pub fn start_logged<T: Send + 'static>(
        level: tracing_subscriber::filter::LevelFilter,
        setup: impl FnOnce(&mut Reactor) -> T + Send + 'static,
    ) -> (ReactorThread, T, Captured) {
        let (thread, out, log) = ReactorThread::spawn(Some(level), setup);
        (thread, out, log.expect("a log was captured"))
    }

    fn spawn<T: Send + 'static>(
        level: Option<tracing_subscriber::filter::LevelFilter>,
        setup: impl FnOnce(&mut Reactor) -> T + Send + 'static,
    ) -> (ReactorThread, T, Option<Captured>) {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let (captured, _guard) = match level {
                Some(level) => {
                    let (c, g) = capture_logs(level);
                    (Some(c), Some(g))
                }
                None => (None, None),
            };
            let mut reactor = Reactor::new()?;
            let out = setup(&mut reactor);
            tx.send((reactor.handle(), current_tid(), out, captured)).expect("send setup result");
            reactor.run()
        });
        let (handle, tid, out, captured) = rx.recv_timeout(WAIT).expect("reactor thread did not start");
        (ReactorThread { handle, tid, thread: Some(thread) }, out, captured)
    }

    /// True once `run()` has returned.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits (bounded by [`WAIT`]) for `run()` to return by itself, and checks it returned
    /// `Ok`; re-raises a panic of the thread.
    pub fn join(mut self, what: &str) {
        self.finish(what);
    }

    /// Stops the reactor (gracefully) and waits for `run()` to return.
    pub fn stop(mut self) {
        self.handle.stop();
        self.finish("the reactor thread to stop");
    }

    fn finish(&mut self, what: &str) {
        let Some(thread) = self.thread.take() else { return };
        wait_for(what, || thread.is_finished());
        match thread.join() {
            Ok(result) => result.expect("the reactor's run() failed"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for ReactorThread {
    fn drop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        self.handle.stop();
        if !std::thread::panicking() {
            self.finish("the reactor thread to stop");
        }
    }
}

/// A reactor on its own thread serving one listener, on `127.0.0.1:0` or a unique Unix socket
/// path. Dereferences to its [`ReactorThread`] (`server.handle`, `server.tid`).
#[derive(Debug)]
pub struct Server {
    /// The bound address.
    pub addr: Address,
    /// The kind of socket it listens on.
    pub kind: Kind,
    reactor: ReactorThread,
    /// Dropped after the reactor, so the socket file goes last.
    _path: Option<TempPath>,
}

impl Server {
    /// A TCP server whose factory is made on the server thread by `make_factory`.
    pub fn start<F: Factory>(make_factory: impl FnOnce() -> F + Send + 'static) -> Server {
        Server::on(Kind::Tcp, make_factory)
    }

    /// Like [`Server::start`], with a hook to configure the reactor first.
    pub fn start_with<F: Factory>(
        configure: impl FnOnce(&mut Reactor) + Send + 'static,
        make_factory: impl FnOnce() -> F + Send + 'static,
    ) -> Server {
        Server::on_with(Kind::Tcp, configure, make_factory)
    }

    /// A server listening on a socket of `kind`.
    pub fn on<F: Factory>(kind: Kind, make_factory: impl FnOnce() -> F + Send + 'static) -> Server {
        Server::on_with(kind, |_| {}, make_factory)
    }

    /// Like [`Server::on`], with a hook to configure the reactor first.
    pub fn on_with<F: Factory>(
        kind: Kind,
        configure: impl FnOnce(&mut Reactor) + Send + 'static,
        make_factory: impl FnOnce() -> F + Send + 'static,
    ) -> Server {
        let ListenAddr { addr, path } = kind.listen_addr();
        let (reactor, addr) = ReactorThread::start(move |reactor| {
            configure(reactor);
            let port =
                reactor.listen(&addr, make_factory()).unwrap_or_else(|e| panic!("listen on {addr}: {e}"));
            port.local_addr().clone()
        });
        Server { addr, kind, reactor, _path: path }
    }

    /// A blocking client connected to the server, with read/write timeouts of [`WAIT`].
    pub fn connect(&self) -> AnyStream {
        connect(self.kind, &self.addr)
    }

    /// Stops the server gracefully and waits (bounded) for its thread to end.
    pub fn stop(self) {
        let Server { reactor, .. } = self;
        reactor.stop();
    }

    /// Waits (bounded) for the server's `run()` to return by itself (after a stop).
    pub fn join(self, what: &str) {
        let Server { reactor, .. } = self;
        reactor.join(what);
    }
}

impl std::ops::Deref for Server {
    type Target = ReactorThread;

    fn deref(&self) -> &ReactorThread {
        &self.reactor
    }
}

// ---------------------------------------------------------------------------------------------
// Logs, latency, load

/// A `Write` sink shared with a tracing subscriber, to read the log back.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Log lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
}

/// Captures this thread's log at `level` and above until the guard drops.
pub fn capture_logs(level: tracing_subscriber::filter::LevelFilter) -> (Captured, impl Drop) {
    use tracing_subscriber::util::SubscriberInitExt;
    let captured = Captured::default();
    let sink = captured.clone();
    let guard = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(level)
        .finish()
        .set_default();
    (captured, guard)
}

/// p50, p99 and max of a set of durations (from a sorted `Vec<Duration>`).
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Stats {
    /// Sorts `samples` and reads the percentiles off it (nearest rank).
    pub fn of(mut samples: Vec<Duration>) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let rank =
            |p: f64| samples[(((samples.len() as f64) * p).ceil() as usize).clamp(1, samples.len()) - 1];
        Stats { n: samples.len(), p50: rank(0.50), p99: rank(0.99), max: *samples.last().unwrap() }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n={} p50={:?} p99={:?} max={:?}", self.n, self.p50, self.p99, self.max)
    }
}

/// A ping-pong client on its own thread: `conns` connections to `addr` (TCP or Unix), each
/// sending `msg` bytes and waiting for all of them back before sending again, one mio loop for
/// all. Records every round trip until told to stop.
#[derive(Debug)]
pub struct Pinger {
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    measured: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Result<Vec<Duration>, String>>>,
    started: Receiver<()>,
}

impl Pinger {
    /// Connects `conns` clients and starts ping-ponging once all are connected and have
    /// echoed once (so connection setup is not measured).
    pub fn start(addr: &Address, conns: usize, msg: usize) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let measuring = Arc::new(AtomicBool::new(false));
        let measured = Arc::new(AtomicUsize::new(0));
        let (started_tx, started) = mpsc::channel();
        let counters =
            Counters { stop: stop.clone(), measuring: measuring.clone(), measured: measured.clone() };
        let addr = addr.clone();
        let thread = std::thread::spawn(move || ping_loop(&addr, conns, msg, counters, started_tx));
        Pinger { stop, measuring, measured, thread: Some(thread), started }
    }

    /// Round trips measured so far (since [`Pinger::measure`]), for waiting (bounded) until the
    /// peers have done some more.
    pub fn round_trips(&self) -> usize {
        self.measured.load(Ordering::Relaxed)
    }

    /// Starts recording round trips (those before are warm-up).
    pub fn measure(&self) {
        self.measuring.store(true, Ordering::Relaxed);
    }

    /// Waits until every peer has done its first round trip.
    pub fn wait_started(&self) {
        self.started.recv_timeout(WAIT).expect("the pingers did not get going");
    }

    /// Stops and returns every round trip measured since [`Pinger::measure`].
    pub fn finish(mut self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().unwrap();
        wait_for("the pinger thread to end", || thread.is_finished());
        thread.join().expect("pinger panicked").unwrap_or_else(|e| panic!("pinger failed: {e}"))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A non-blocking mio stream of either kind.
enum MioStream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl MioStream {
    /// Connects (blocking, then switches to non-blocking).
    fn connect(addr: &Address) -> std::io::Result<MioStream> {
        match AnyStream::connect(addr)? {
            AnyStream::Tcp(s) => {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                Ok(MioStream::Tcp(mio::net::TcpStream::from_std(s)))
            }
            AnyStream::Unix(s) => {
                s.set_nonblocking(true)?;
                Ok(MioStream::Unix(mio::net::UnixStream::from_std(s)))
            }
        }
    }

    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> std::io::Result<()> {
        match self {
            MioStream::Tcp(s) => registry.register(s, token, mio::Interest::READABLE),
            MioStream::Unix(s) => registry.register(s, token, mio::Interest::READABLE),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            MioStream::Tcp(s) => s.read(buf),
            MioStream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            MioStream::Tcp(s) => s.write(buf),
            MioStream::Unix(s) => s.write(buf),
        }
    }
}

/// What the ping loop shares with its [`Pinger`].
struct Counters {
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    measured: Arc<AtomicUsize>,
}

struct Peer {
    stream: MioStream,
    sent_at: Instant,
    pending: usize,
    warm: bool,
}

fn ping_loop(
    addr: &Address,
    conns: usize,
    msg: usize,
    counters: Counters,
    started: mpsc::Sender<()>,
) -> Result<Vec<Duration>, String> {
    let Counters { stop, measuring, measured } = counters;
    let mut poll = mio::Poll::new().map_err(|e| e.to_string())?;
    let mut peers: HashMap<usize, Peer> = HashMap::new();
    for i in 0..conns {
        let mut stream = MioStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.register(poll.registry(), mio::Token(i)).map_err(|e| e.to_string())?;
        peers.insert(i, Peer { stream, sent_at: Instant::now(), pending: 0, warm: false });
    }
    let payload = vec![b'p'; msg];
    let mut buf = vec![0u8; 64 * 1024];
    let send = |peer: &mut Peer| -> Result<(), String> {
        peer.sent_at = Instant::now();
        peer.pending = payload.len();
        // A small write to a socket whose peer keeps up: the send buffer always has room.
        match peer.stream.write(&payload) {
            Ok(n) if n == payload.len() => Ok(()),
            Ok(n) => Err(format!("short write of {n}")),
            Err(e) => Err(format!("write: {e}")),
        }
    };
    for peer in peers.values_mut() {
        send(peer)?;
    }
    let mut samples = Vec::new();
    let mut warm = 0;
    let mut events = mio::Events::with_capacity(1024);
    let deadline_guard = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() > deadline_guard {
            return Err("ran for over 120 s".into());
        }
        poll.poll(&mut events, Some(Duration::from_millis(10))).map_err(|e| e.to_string())?;
        for event in events.iter() {
            let peer = peers.get_mut(&event.token().0).unwrap();
            loop {
                match peer.stream.read(&mut buf) {
                    Ok(0) => return Err("server closed a ping connection".into()),
                    Ok(n) => {
                        if n > peer.pending {
                            return Err(format!("{n} bytes back, {} expected", peer.pending));
                        }
                        peer.pending -= n;
                        if peer.pending == 0 {
                            let rtt = peer.sent_at.elapsed();
                            if peer.warm {
                                if measuring.load(Ordering::Relaxed) {
                                    samples.push(rtt);
                                    measured.fetch_add(1, Ordering::Relaxed);
                                }
                            } else {
                                peer.warm = true;
                                warm += 1;
                                if warm == conns {
                                    let _ = started.send(());
                                }
                            }
                            send(peer)?;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        }
    }
    Ok(samples)
}

/// The environment variable that turns a test binary into a load generator (see
/// [`LoadChild`]): `ADDR,CONNS,MSG`.
pub const LOAD_CHILD_ENV: &str = "TORSION_RELIABILITY_LOAD_CHILD";

/// A ping-pong load generator in a child process at the lowest CPU priority (`nice -n 19`):
/// the test binary re-run with only its `child_test` (which must call [`load_child_main`]).
/// On 2 cores a full-speed load client in the test's own process takes the server's CPU, and
/// the figures would measure the scheduler, not the reactor; niced, the load gets only what
/// the server leaves.
#[derive(Debug)]
pub struct LoadChild {
    child: Option<std::process::Child>,
}

impl LoadChild {
    /// Starts `conns` connections ping-ponging `msg` bytes to `addr` at full speed; returns once
    /// all are going.
    pub fn start(child_test: &str, addr: &Address, conns: usize, msg: usize) -> LoadChild {
        use std::io::BufRead;
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new("nice")
            .args(["-n", "19"])
            .arg(exe)
            .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
            .env(LOAD_CHILD_ENV, format!("{addr},{conns},{msg}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the load child");
        let stdout = child.stdout.take().unwrap();
        // Read its output on a thread (so the wait below is bounded, and the child never blocks
        // on a full pipe). libtest prints `test NAME ... ` before the test's own output.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.ends_with("load started") {
                    let _ = tx.send(());
                }
            }
        });
        let mut load = LoadChild { child: Some(child) };
        if rx.recv_timeout(WAIT).is_err() {
            drop(load.child.take().map(|mut c| (c.kill(), c.wait())));
            panic!("the load child did not start within {WAIT:?}");
        }
        load
    }
}

impl Drop for LoadChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a load child's test: does nothing unless [`LOAD_CHILD_ENV`] is set; then
/// ping-pongs until its stdin closes or it is killed.
pub fn load_child_main() {
    let Some(spec) = std::env::var_os(LOAD_CHILD_ENV) else { return };
    let spec = spec.into_string().unwrap();
    let parts: Vec<&str> = spec.split(',').collect();
    let addr: Address = parts[0].parse().unwrap();
    let (conns, msg) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
    let pinger = Pinger::start(&addr, conns, msg);
    pinger.wait_started();
    println!("load started");
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    pinger.measure();
    drop(pinger);
}

// ---------------------------------------------------------------------------------------------
// Bytes and recording protocols

/// Deterministic pseudo-random bytes (xorshift64*), so failures are reproducible.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One lifecycle event seen by a [`Recorder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `connection_made`.
    Made,
    /// `data_received` with these bytes.
    Data(Vec<u8>),
    /// `eof_received`.
    Eof,
    /// `connection_lost` with its reason.
    Lost(DisconnectReason),
}

/// A shared log of events.
pub type Log = Rc<RefCell<Vec<Event>>>;

/// A protocol that records every callback and echoes data back.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Where events go.
    pub log: Log,
}

impl Protocol for Recorder {
    fn connection_made(&mut self, _cx: &mut Ctx<'_>) {
        self.log.borrow_mut().push(Event::Made);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.log.borrow_mut().push(Event::Data(data.to_vec()));
        cx.transport().write(data);
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.log.borrow_mut().push(Event::Eof);
        false
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.log.borrow_mut().push(Event::Lost(reason));
    }
}

// ---------------------------------------------------------------------------------------------
// Process-wide figures

/// Number of open file descriptors of this process (entries of `/proc/self/fd`, less the one
/// the listing itself opens). Process-wide: tests comparing it must not run beside other
/// tests that open sockets (see [`serial`]).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count().saturating_sub(1)
}

/// Serialises the tests of one binary that measure process-wide figures (fds, heap, CPU), so
/// `cargo test`'s parallel threads cannot disturb them. A failed test does not poison it.
/// (Under nextest every test is a process of its own.)
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The calling thread's kernel thread id (from the `/proc/thread-self` link, no unsafe code).
pub fn current_tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
    // The link reads "PID/task/TID".
    link.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()).expect("/proc/thread-self form")
}

/// CPU time used so far by thread `tid` of this process, from its `schedstat` (nanoseconds).
pub fn thread_cpu(tid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .unwrap_or_else(|e| panic!("read schedstat of thread {tid}: {e}"));
    let ns: u64 = text.split_whitespace().next().and_then(|f| f.parse().ok()).expect("schedstat form");
    Duration::from_nanos(ns)
}

/// CPU share of one core used by thread `tid` over `window` (a measurement window: the
/// thread's CPU is sampled at both ends; nothing waits on it to synchronise).
pub fn cpu_share(tid: u32, window: Duration) -> (Duration, f64) {
    let before = thread_cpu(tid);
    std::thread::sleep(window);
    let used = thread_cpu(tid) - before;
    (used, used.as_secs_f64() / window.as_secs_f64())
}

/// CPU time (user + system, all threads) used so far by process `pid`, from `/proc/PID/stat`
/// (clock ticks; USER_HZ is 100 on Linux, and reading it would need unsafe `sysconf`).
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Resident set size of this process, in bytes (`/proc/self/statm`, 4 KiB pages).
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).and_then(|f| f.parse().ok()).expect("statm form");
    pages * 4096
}

/// This process's soft and hard `RLIMIT_NOFILE`, from `/proc/self/limits`.
pub fn nofile_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files line");
    let nums: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    (nums[0], nums[1])
}
