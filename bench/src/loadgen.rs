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
//!
//! The first two verify every echoed byte against the deterministic [`Pattern`]. All
//! connect to loopback addresses only, and every loop in them is bounded in time: a
//! measured run ends at its deadline, and any phase in which no progress is made for
//! [`STALL_TIMEOUT`] fails with an error instead of hanging.
//!
//! The echo workloads run a short warm-up before the clock starts (every connection
//! completes one echo of `size` bytes), so connection setup and the server's accept work
//! are not part of the measured interval.
//!
//! [`Pattern`]: crate::pattern::Pattern

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::Duration;

use mio::net::TcpStream;

use crate::histogram::Histogram;

pub mod flood;
pub mod pingpong;
pub mod stream;

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

/// Per-connection offset of the pattern stream, so that data crossing from one
/// connection into another is detected.
fn stream_base(conn_index: usize) -> u64 {
    conn_index as u64 * 97
}

/// Opens `count` TCP connections to `addr`, which must be a loopback address.
///
/// Connections are opened one after another with a blocking connect (cheap on loopback)
/// and then switched to non-blocking mode with `TCP_NODELAY` set, ready for mio.
pub fn connect_all(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpStream>> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to load {addr}: the load generator only targets loopback addresses"),
        ));
    }
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let stream = StdTcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| {
            let hint =
                if e.raw_os_error() == Some(24) { " (raise the fd limit with `ulimit -n`)" } else { "" };
            io::Error::new(e.kind(), format!("connection {i} of {count} to {addr} failed: {e}{hint}"))
        })?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        streams.push(TcpStream::from_std(stream));
    }
    Ok(streams)
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
    use std::thread;

    use super::*;

    /// Starts a threaded echo server on loopback accepting `conns` connections. If
    /// `corrupt_at` is set, the byte at that stream offset of every connection is
    /// flipped. The threads end when their client disconnects.
    fn echo_server(conns: usize, corrupt_at: Option<u64>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for _ in 0..conns {
                let Ok((mut stream, _)) = listener.accept() else { return };
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
        addr
    }

    fn pingpong_config(addr: SocketAddr, limit: pingpong::Limit) -> pingpong::Config {
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

    fn stream_config(addr: SocketAddr) -> stream::Config {
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
    fn stream_detects_a_corrupted_echo() {
        let addr = echo_server(2, Some(10_000));
        let err = stream::run(&stream_config(addr)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn refuses_non_loopback_targets() {
        let err = connect_all("192.0.2.1:7".parse().unwrap(), 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
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
