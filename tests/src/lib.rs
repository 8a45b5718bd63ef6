//! Shared vocabulary for torsion's loopback integration tests: bounded waits, a server reactor
//! on its own thread, deterministic random bytes, and recording protocols.
//!
//! ```
//! use torsion_tests::pattern;
//!
//! let a = pattern(1, 1024);
//! assert_eq!(a, pattern(1, 1024), "the same seed gives the same bytes");
//! assert_ne!(a, pattern(2, 1024));
//! ```

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use torsion_reactor::{Ctx, DisconnectReason, Factory, Protocol, Reactor, ReactorHandle};

/// The longest any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

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

/// A reactor running on its own thread, serving one listener on 127.0.0.1 port 0.
#[derive(Debug)]
pub struct Server {
    /// The bound address.
    pub addr: SocketAddr,
    /// A handle to the server's reactor.
    pub handle: ReactorHandle,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server whose factory is made on the server thread by `make_factory`.
    pub fn start<F: Factory>(make_factory: impl FnOnce() -> F + Send + 'static) -> Server {
        Server::start_with(|_| {}, make_factory)
    }

    /// Like [`Server::start`], with a hook to configure the reactor first.
    pub fn start_with<F: Factory>(
        configure: impl FnOnce(&mut Reactor) + Send + 'static,
        make_factory: impl FnOnce() -> F + Send + 'static,
    ) -> Server {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut reactor = Reactor::new().expect("reactor");
            configure(&mut reactor);
            let port = reactor.listen_tcp(localhost(), make_factory()).expect("listen");
            tx.send((port.local_addr(), reactor.handle())).expect("send address");
            reactor.run().expect("server reactor failed");
        });
        let (addr, handle) = rx.recv_timeout(WAIT).expect("server did not start");
        Server { addr, handle, thread: Some(thread) }
    }

    /// A blocking client connected to the server, with read/write timeouts of [`WAIT`].
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to test server");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream
    }

    /// Stops the server gracefully and waits (bounded) for its thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.handle.stop();
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + WAIT;
            while !thread.is_finished() {
                assert!(Instant::now() < deadline, "server thread did not stop");
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.shutdown();
        } else {
            self.handle.stop();
        }
    }
}

/// 127.0.0.1 port 0.
pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Writes `data` on a second thread while reading on this one; returns what came back before
/// EOF. Shuts the write half down after writing when `half_close` is set.
pub fn write_and_read_to_end(stream: TcpStream, data: Vec<u8>, half_close: bool) -> std::io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&data)?;
        if half_close {
            writer.shutdown(std::net::Shutdown::Write)?;
        }
        Ok(())
    });
    let mut reader = stream;
    let mut got = Vec::new();
    let read = reader.read_to_end(&mut got);
    sender.join().expect("writer thread panicked")?;
    read.map(|_| got)
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
    /// `connection_lost` with the reason's debug text.
    Lost(String),
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
        self.log.borrow_mut().push(Event::Lost(format!("{reason:?}")));
    }
}

/// Number of open file descriptors of this process (entries of `/proc/self/fd`, less the one
/// the listing itself opens). Process-wide: tests comparing it must not run beside other
/// tests that open sockets (see [`serial`]).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count().saturating_sub(1)
}

/// Serialises the tests of one binary that measure process-wide figures (fds, heap, CPU), so
/// `cargo test`'s parallel threads cannot disturb them. A failed test does not poison it.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
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

/// Like [`Server::start_with`], and also returns the server thread's kernel id, for
/// [`thread_cpu`].
pub fn start_server_with_tid<F: Factory>(
    configure: impl FnOnce(&mut Reactor) + Send + 'static,
    make_factory: impl FnOnce() -> F + Send + 'static,
) -> (Server, u32) {
    let (tx, rx) = mpsc::channel();
    let server = Server::start_with(
        move |reactor| {
            let _ = tx.send(current_tid());
            configure(reactor);
        },
        make_factory,
    );
    let tid = rx.recv_timeout(WAIT).expect("server thread id");
    (server, tid)
}
