//! The load generator: drives many echo connections from one thread with mio.
//!
//! Three workloads are provided:
//!
//! * [`pingpong`]: each connection sends one message and waits for its complete echo
//!   before sending the next, so throughput is bounded by round-trip latency; per-message
//!   latency is recorded.
//! * [`stream`]: each connection keeps up to `depth x size` bytes in flight, measuring
//!   bulk echo throughput.
//! * [`flood`]: each connection writes as fast as its socket accepts and never waits
//!   for a reply (replies are discarded), to load a slow sink behind a proxy.
//! * [`udp`]: ping-pong over UDP, one datagram in flight per client socket, losses counted.
//!
//! The first two verify every echoed byte against the deterministic [`Pattern`]. All
//! connect to loopback TCP addresses or Unix sockets only (see [`Endpoint`]), and every
//! loop in them is bounded in time: a measured run ends at its deadline, and any phase in
//! which no progress is made for [`STALL_TIMEOUT`] fails with an error instead of hanging.
//!
//! The echo workloads run a short warm-up before the clock starts (every connection
//! completes one echo of `size` bytes), so connection setup and the server's accept work
//! are not part of the measured interval.
//!
//! [`Pattern`]: crate::pattern::Pattern

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::unix::net::SocketAddr as UnixSocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::histogram::Histogram;
use crate::Endpoint;

pub mod flood;
pub mod pingpong;
pub mod stream;
pub mod udp;

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the warm-up (one echo per connection) may take in total.
pub const WARMUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A phase that completes no message / receives no byte for this long fails.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of a single `poll` wait, so deadlines are checked regularly.
pub const POLL_TICK: Duration = Duration::from_millis(100);
/// Capacity of the mio event buffer.
pub const EVENT_CAPACITY: usize = 1024;
/// Pause before retrying a Unix connect refused with `WouldBlock` (full backlog).
const UNIX_CONNECT_RETRY: Duration = Duration::from_millis(1);

/// Per-connection offset of the pattern stream, so that data crossing from one
/// connection into another is detected.
fn stream_base(conn_index: usize) -> u64 {
    conn_index as u64 * 97
}

/// One non-blocking client connection: TCP or Unix stream socket.
///
/// The workloads are written once against this type; a `match` per call is nothing
/// next to the system call behind it.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection (with `TCP_NODELAY`).
    Tcp(TcpStream),
    /// A Unix stream socket connection.
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

impl Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
        }
    }
}

/// Opens `count` connections to `addr`: a loopback TCP address or a Unix socket.
///
/// TCP connections are opened one after another with a blocking connect (cheap on
/// loopback) and then switched to non-blocking mode with `TCP_NODELAY` set, ready for
/// mio. Unix connections are opened non-blocking (a Unix connect completes at once, or
/// fails with `WouldBlock` while the listener's backlog is full, which is retried for up
/// to [`CONNECT_TIMEOUT`]).
pub fn connect_all(addr: &Endpoint, count: usize) -> io::Result<Vec<Stream>> {
    if !addr.is_local() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to load {addr}: the load generator only targets loopback addresses"),
        ));
    }
    let connect: Box<dyn Fn() -> io::Result<Stream>> = match addr {
        Endpoint::Tcp(tcp) => {
            let tcp = *tcp;
            Box::new(move || connect_tcp(tcp))
        }
        Endpoint::Unix(_) | Endpoint::UnixAbstract(_) => {
            let unix = addr.unix_socket_addr()?;
            Box::new(move || connect_unix(&unix).map(Stream::Unix))
        }
    };
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        streams.push(connect().map_err(|e| {
            let hint =
                if e.raw_os_error() == Some(24) { " (raise the fd limit with `ulimit -n`)" } else { "" };
            io::Error::new(e.kind(), format!("connection {i} of {count} to {addr} failed: {e}{hint}"))
        })?);
    }
    Ok(streams)
}

/// One blocking TCP connect, then non-blocking with `TCP_NODELAY`.
fn connect_tcp(addr: SocketAddr) -> io::Result<Stream> {
    let stream = StdTcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(Stream::Tcp(TcpStream::from_std(stream)))
}

/// One non-blocking Unix connect, retried while the listener's backlog is full.
fn connect_unix(addr: &UnixSocketAddr) -> io::Result<UnixStream> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match UnixStream::connect_addr(addr) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(UNIX_CONNECT_RETRY);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the listener's backlog stayed full for {} s", CONNECT_TIMEOUT.as_secs()),
                ))
            }
            other => return other,
        }
    }
}

/// Maps an I/O error to a new error of the same kind with context prepended.
fn context(conn: usize, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("connection {conn}: {e}"))
}

/// Error for an echo that does not match what was sent.
fn mismatch(conn: usize, pos: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("connection {conn}: echoed byte at stream offset {pos} differs from the byte sent"),
    )
}

/// Error for a server returning more bytes than were sent to it.
fn overrun(conn: usize, sent: u64, received: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("connection {conn}: received {received} bytes but only {sent} were sent"),
    )
}

/// Error for a run that stopped making progress.
fn stalled(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what}: no progress for {} s, giving up", STALL_TIMEOUT.as_secs()),
    )
}

/// Which workload produced a [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Request/response, one message in flight per connection.
    PingPong,
    /// Bulk streaming with a window of bytes in flight per connection.
    Stream,
    /// Writing as fast as possible without waiting for replies.
    Flood,
}

impl Mode {
    /// Lower-case name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "pingpong",
            Mode::Stream => "stream",
            Mode::Flood => "flood",
        }
    }
}

/// Result of one measured run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The workload.
    pub mode: Mode,
    /// Number of connections.
    pub conns: usize,
    /// Message size (pingpong) or write unit (stream), in bytes.
    pub size: usize,
    /// Measured wall-clock interval.
    pub elapsed: Duration,
    /// Complete messages echoed in the interval (stream and flood: bytes / size, rounded
    /// down).
    pub messages: u64,
    /// Verified echoed bytes received in the interval (flood: bytes written, that is,
    /// accepted by the kernel).
    pub bytes: u64,
    /// Round-trip latency of each message (pingpong only).
    pub latency: Option<Histogram>,
    /// CPU time the load generator itself used during the interval, if measurable.
    pub client_cpu: Option<Duration>,
}

impl Report {
    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.secs()
    }

    /// Echoed (flood: written) megabytes (10^6 bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs()
    }

    /// Load generator CPU use over the interval, in percent of one core.
    pub fn client_cpu_pct(&self) -> Option<f64> {
        self.client_cpu.map(|c| 100.0 * c.as_secs_f64() / self.secs())
    }

    /// Latency quantile in microseconds.
    fn quantile_us(&self, q: f64) -> Option<f64> {
        self.latency.as_ref()?.quantile(q).map(|d| d.as_secs_f64() * 1e6)
    }

    /// One machine-readable line: `RESULT` followed by space-separated `key=value`
    /// pairs. Values that do not apply (latency in stream mode, an unmeasurable CPU
    /// time) are written as `na`.
    pub fn machine_line(&self) -> String {
        fn opt(v: Option<f64>, decimals: usize) -> String {
            v.map_or_else(|| "na".to_owned(), |v| format!("{v:.decimals$}"))
        }
        let mut line = String::from("RESULT");
        // Writing to a String cannot fail.
        let _ = write!(
            line,
            " mode={} conns={} size={} elapsed_s={:.4} messages={} bytes={} msgs_per_s={:.1} mb_per_s={:.3}",
            self.mode.name(),
            self.conns,
            self.size,
            self.elapsed.as_secs_f64(),
            self.messages,
            self.bytes,
            self.msgs_per_sec(),
            self.mb_per_sec(),
        );
        let _ = write!(
            line,
            " p50_us={} p99_us={} p999_us={} max_us={} client_cpu_pct={}",
            opt(self.quantile_us(0.50), 2),
            opt(self.quantile_us(0.99), 2),
            opt(self.quantile_us(0.999), 2),
            opt(self.latency.as_ref().filter(|h| h.count() > 0).map(|h| h.max().as_secs_f64() * 1e6), 2),
            opt(self.client_cpu_pct(), 1),
        );
        line
    }

    /// One line for people.
    pub fn human_line(&self) -> String {
        let cpu = self.client_cpu_pct().map_or_else(|| "n/a".to_owned(), |p| format!("{p:.0}%"));
        let head = format!(
            "{}: {} conns x {} B, {:.2} s",
            self.mode.name(),
            self.conns,
            self.size,
            self.elapsed.as_secs_f64()
        );
        match self.mode {
            Mode::PingPong => format!(
                "{head}: {:.0} msg/s ({:.2} MB/s), latency p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, \
                 max {:.1} us; loadgen CPU {cpu}",
                self.msgs_per_sec(),
                self.mb_per_sec(),
                self.quantile_us(0.50).unwrap_or(f64::NAN),
                self.quantile_us(0.99).unwrap_or(f64::NAN),
                self.quantile_us(0.999).unwrap_or(f64::NAN),
                self.latency.as_ref().map_or(f64::NAN, |h| h.max().as_secs_f64() * 1e6),
            ),
            Mode::Stream => format!(
                "{head}: {:.1} MB/s echoed ({} bytes verified); loadgen CPU {cpu}",
                self.mb_per_sec(),
                self.bytes
            ),
            Mode::Flood => format!(
                "{head}: {:.1} MB/s written ({} bytes, replies discarded); loadgen CPU {cpu}",
                self.mb_per_sec(),
                self.bytes
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    use super::*;

    /// Accepts `conns` connections with `accept` on a thread and echoes each on a thread
    /// of its own. If `corrupt_at` is set, the byte at that stream offset of every
    /// connection is flipped. The threads end when their client disconnects.
    fn spawn_echo<S: Read + Write + Send + 'static>(
        mut accept: impl FnMut() -> io::Result<S> + Send + 'static,
        conns: usize,
        corrupt_at: Option<u64>,
    ) {
        thread::spawn(move || {
            for _ in 0..conns {
                let Ok(mut stream) = accept() else { return };
                thread::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut pos = 0u64;
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if let Some(at) = corrupt_at.filter(|&at| (pos..pos + n as u64).contains(&at)) {
                            buf[(at - pos) as usize] ^= 0x55;
                        }
                        pos += n as u64;
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    /// A threaded TCP echo server on loopback (see [`spawn_echo`]).
    fn echo_server(conns: usize, corrupt_at: Option<u64>) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        spawn_echo(move || listener.accept().map(|(s, _)| s), conns, corrupt_at);
        addr.into()
    }

    /// A Unix socket file in the temporary directory, removed when dropped.
    struct SocketFile(PathBuf);

    impl Drop for SocketFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A threaded echo server on a fresh Unix socket path (see [`spawn_echo`]).
    fn unix_echo_server(conns: usize, corrupt_at: Option<u64>) -> (Endpoint, SocketFile) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("torsion-bench-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        spawn_echo(move || listener.accept().map(|(s, _)| s), conns, corrupt_at);
        (Endpoint::Unix(path.clone()), SocketFile(path))
    }

    fn pingpong_config(addr: Endpoint, limit: pingpong::Limit) -> pingpong::Config {
        pingpong::Config { addr, conns: 3, size: 100, limit, timeout: Duration::from_secs(20) }
    }

    #[test]
    fn pingpong_completes_exact_message_count() {
        let addr = echo_server(3, None);
        let report = pingpong::run(&pingpong_config(addr, pingpong::Limit::Messages(50))).unwrap();
        assert_eq!(report.messages, 150);
        assert_eq!(report.bytes, 15_000);
        assert_eq!(report.latency.as_ref().unwrap().count(), 150);
    }

    #[test]
    fn pingpong_over_a_unix_socket() {
        let (addr, _file) = unix_echo_server(3, None);
        let report = pingpong::run(&pingpong_config(addr, pingpong::Limit::Messages(50))).unwrap();
        assert_eq!(report.messages, 150);
        assert_eq!(report.latency.as_ref().unwrap().count(), 150);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pingpong_over_an_abstract_unix_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("torsion-bench-test-{}", std::process::id());
        let addr = UnixSocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        spawn_echo(move || listener.accept().map(|(s, _)| s), 3, None);
        let endpoint: Endpoint = format!("unix:@{name}").parse().unwrap();
        let report = pingpong::run(&pingpong_config(endpoint, pingpong::Limit::Messages(10))).unwrap();
        assert_eq!(report.messages, 30);
    }

    #[test]
    fn pingpong_runs_for_a_duration() {
        let addr = echo_server(3, None);
        let limit = pingpong::Limit::Duration(Duration::from_millis(200));
        let report = pingpong::run(&pingpong_config(addr, limit)).unwrap();
        assert!(report.messages > 0);
        assert!(report.elapsed >= Duration::from_millis(200));
    }

    #[test]
    fn pingpong_detects_a_corrupted_echo() {
        // Offset 250 lies in the third message, after the unmeasured warm-up one.
        let addr = echo_server(3, Some(250));
        let err = pingpong::run(&pingpong_config(addr, pingpong::Limit::Messages(5))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("offset 250"), "{err}");
    }

    fn stream_config(addr: Endpoint) -> stream::Config {
        stream::Config { addr, conns: 2, size: 4096, depth: 4, duration: Duration::from_millis(200) }
    }

    #[test]
    fn stream_verifies_bytes() {
        let addr = echo_server(2, None);
        let report = stream::run(&stream_config(addr)).unwrap();
        assert!(report.bytes > 0);
        assert_eq!(report.messages, report.bytes / 4096);
    }

    #[test]
    fn stream_over_a_unix_socket() {
        let (addr, _file) = unix_echo_server(2, None);
        let report = stream::run(&stream_config(addr)).unwrap();
        assert!(report.bytes > 0);
    }

    #[test]
    fn stream_detects_a_corrupted_echo() {
        let addr = echo_server(2, Some(10_000));
        let err = stream::run(&stream_config(addr)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let (addr, _file) = unix_echo_server(2, Some(10_000));
        let err = stream::run(&stream_config(addr)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn refuses_non_loopback_targets() {
        let err = connect_all(&"192.0.2.1:7".parse().unwrap(), 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_missing_unix_socket_fails_at_once() {
        let path = std::env::temp_dir().join(format!("torsion-bench-{}-missing.sock", std::process::id()));
        let start = Instant::now();
        let err = connect_all(&Endpoint::Unix(path.clone()), 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn report_lines() {
        let mut h = Histogram::new();
        h.record(Duration::from_micros(10));
        let r = Report {
            mode: Mode::PingPong,
            conns: 2,
            size: 64,
            elapsed: Duration::from_secs(2),
            messages: 10,
            bytes: 640,
            latency: Some(h),
            client_cpu: Some(Duration::from_secs(1)),
        };
        let line = r.machine_line();
        assert!(line.starts_with("RESULT mode=pingpong conns=2 size=64 "), "{line}");
        assert!(line.contains(" msgs_per_s=5.0 "), "{line}");
        assert!(line.contains(" client_cpu_pct=50.0"), "{line}");
        assert!(r.human_line().contains("5 msg/s"));
        let s = Report { mode: Mode::Stream, latency: None, client_cpu: None, ..r };
        assert!(s.machine_line().contains(" p50_us=na p99_us=na p999_us=na max_us=na client_cpu_pct=na"));
    }
}
