//! Bulk streaming load: a window of bytes in flight per connection.
//!
//! Every connection writes its pattern stream as fast as the server echoes it, keeping
//! at most `depth x size` bytes sent but not yet echoed back. Every echoed byte is
//! verified against the pattern. All connections are driven by one mio event loop.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Interest, Poll, Token};

use super::{
    connect_all, context, mismatch, overrun, stalled, stream_base, Mode, Report, Stream, EVENT_CAPACITY,
    POLL_TICK, STALL_TIMEOUT, WARMUP_TIMEOUT,
};
use crate::cpu::self_cpu_time;
use crate::pattern::Pattern;
use crate::Endpoint;

/// Size of the receive buffer shared by all connections, and the largest single write.
const IO_CHUNK: usize = 256 * 1024;

/// Parameters of a streaming run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Echo server address (loopback TCP, or a Unix socket).
    pub addr: Endpoint,
    /// Number of concurrent connections.
    pub conns: usize,
    /// Write unit in bytes; the in-flight window is `depth * size`.
    pub size: usize,
    /// Number of `size` units that may be in flight per connection.
    pub depth: usize,
    /// Length of the measured phase.
    pub duration: Duration,
}

/// One client connection's state.
#[derive(Debug)]
struct Conn {
    stream: Stream,
    /// Pattern offset of this connection's stream.
    base: u64,
    /// Bytes written so far.
    sent: u64,
    /// Echoed bytes received (and verified) so far.
    recvd: u64,
    /// Never send beyond this stream position (bounds the warm-up).
    cap: u64,
}

/// Counters shared by all connections of a run.
#[derive(Debug)]
struct Stats {
    /// Maximum bytes in flight per connection.
    window: u64,
    /// Write unit: writing waits until this much of the window is free.
    unit: u64,
    /// Total echoed bytes received, all connections.
    received: u64,
    /// Connections that have not yet received everything up to their `cap`.
    active: usize,
}

impl Conn {
    /// Writes pattern bytes until the window is full, the cap is reached or the socket
    /// would block (the next writable event resumes).
    ///
    /// Writing only starts once a whole `unit` of the window is free. Topping the
    /// window up with every few bytes the server echoes would make a fast server's
    /// small echoes turn into small client writes, and the client (which is the
    /// bottleneck of this workload on loopback) would pay more syscalls per byte the
    /// faster the server is.
    fn fill(&mut self, pattern: &Pattern, window: u64, unit: u64) -> io::Result<()> {
        loop {
            let to_cap = self.cap - self.sent;
            let room = (window - (self.sent - self.recvd)).min(to_cap);
            if room == 0 || room < unit.min(to_cap) {
                return Ok(());
            }
            // Bounded by the pattern window, so the cast is lossless.
            let len = room.min(pattern.max_window() as u64) as usize;
            match self.stream.write(pattern.window(self.base + self.sent, len)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and verifies everything available (see the ping-pong reader for the
    /// edge-triggered draining rule), then refills the window.
    fn read(
        &mut self,
        index: usize,
        read_closed: bool,
        buf: &mut [u8],
        pattern: &Pattern,
        stats: &mut Stats,
    ) -> io::Result<()> {
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if self.recvd + n as u64 > self.sent {
                return Err(overrun(index, self.sent, self.recvd + n as u64));
            }
            pattern
                .verify(self.base + self.recvd, &buf[..n])
                .map_err(|at| mismatch(index, self.recvd + at as u64))?;
            let was_short = self.recvd < self.cap;
            self.recvd += n as u64;
            stats.received += n as u64;
            if was_short && self.recvd >= self.cap {
                stats.active -= 1;
            }
            if n < buf.len() && !read_closed {
                break;
            }
        }
        self.fill(pattern, stats.window, stats.unit)
    }

    /// Handles one readiness event.
    fn on_event(
        &mut self,
        index: usize,
        event: &Event,
        buf: &mut [u8],
        pattern: &Pattern,
        stats: &mut Stats,
    ) -> io::Result<()> {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read(index, event.is_read_closed(), buf, pattern, stats)?;
        }
        if event.is_writable() {
            self.fill(pattern, stats.window, stats.unit)?;
        }
        Ok(())
    }
}

/// A set of connections plus the event loop driving them.
#[derive(Debug)]
struct Driver {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    pattern: Pattern,
    buf: Vec<u8>,
    stats: Stats,
}

impl Driver {
    fn new(streams: Vec<Stream>, unit: u64, window: u64) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(streams.len());
        for (i, mut stream) in streams.into_iter().enumerate() {
            poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            conns.push(Conn { stream, base: stream_base(i), sent: 0, recvd: 0, cap: 0 });
        }
        Ok(Self {
            poll,
            events: Events::with_capacity(EVENT_CAPACITY),
            conns,
            pattern: Pattern::new(IO_CHUNK),
            buf: vec![0; IO_CHUNK],
            stats: Stats { window, unit, received: 0, active: 0 },
        })
    }

    /// Lets every connection send up to stream position `cap` and starts writing.
    fn start_phase(&mut self, cap: u64) -> io::Result<()> {
        self.stats.active = 0;
        for (i, conn) in self.conns.iter_mut().enumerate() {
            conn.cap = cap;
            if conn.recvd < conn.cap {
                self.stats.active += 1;
            }
            conn.fill(&self.pattern, self.stats.window, self.stats.unit).map_err(|e| context(i, e))?;
        }
        Ok(())
    }

    /// Runs the event loop until every connection has received up to its cap (returns
    /// `true`) or `deadline` passes (returns `false`). Fails if no byte arrives for
    /// [`STALL_TIMEOUT`].
    fn drive(&mut self, deadline: Instant, what: &str) -> io::Result<bool> {
        let mut last_received = self.stats.received;
        let mut last_progress = Instant::now();
        loop {
            if self.stats.active == 0 {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if self.stats.received != last_received {
                last_received = self.stats.received;
                last_progress = now;
            } else if now - last_progress > STALL_TIMEOUT {
                return Err(stalled(what));
            }
            match self.poll.poll(&mut self.events, Some((deadline - now).min(POLL_TICK))) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            }
            for event in self.events.iter() {
                let index = event.token().0;
                self.conns[index]
                    .on_event(index, event, &mut self.buf, &self.pattern, &mut self.stats)
                    .map_err(|e| context(index, e))?;
            }
        }
    }
}

/// Runs a streaming load against `config.addr` and reports the measured phase.
pub fn run(config: &Config) -> io::Result<Report> {
    if config.size == 0 || config.conns == 0 || config.depth == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "size, conns and depth must be at least 1"));
    }
    let window = config.size as u64 * config.depth as u64;
    let streams = connect_all(&config.addr, config.conns)?;
    let mut driver = Driver::new(streams, config.size as u64, window)?;

    // Warm-up: every connection echoes `size` bytes, not measured.
    let size = config.size as u64;
    driver.start_phase(size)?;
    if !driver.drive(Instant::now() + WARMUP_TIMEOUT, "warm-up")? {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "warm-up did not finish in time"));
    }

    let received_before = driver.stats.received;
    let cpu_before = self_cpu_time();
    let start = Instant::now();
    driver.start_phase(u64::MAX)?;
    driver.drive(start + config.duration, "stream")?;
    let elapsed = start.elapsed();
    let client_cpu = cpu_before.zip(self_cpu_time()).map(|(b, a)| a.saturating_sub(b));

    let bytes = driver.stats.received - received_before;
    Ok(Report {
        mode: Mode::Stream,
        conns: config.conns,
        size: config.size,
        elapsed,
        messages: bytes / size,
        bytes,
        latency: None,
        client_cpu,
    })
}
