//! Request/response load: one message in flight per connection.
//!
//! Every connection sends a `size`-byte message, waits until the whole message has been
//! echoed back (verifying each byte as it arrives), records the round-trip time, and
//! immediately sends the next one. All connections are driven concurrently by a single
//! mio event loop, which keeps the load generator to one core.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Interest, Poll, Token};

use super::{
    connect_all, context, mismatch, overrun, stalled, stream_base, Mode, Report, Stream, EVENT_CAPACITY,
    POLL_TICK, STALL_TIMEOUT, WARMUP_TIMEOUT,
};
use crate::cpu::self_cpu_time;
use crate::histogram::Histogram;
use crate::pattern::Pattern;
use crate::Endpoint;

/// Size of the receive buffer shared by all connections.
const READ_BUF: usize = 64 * 1024;

/// When a ping-pong run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Run for this long, then stop (messages still in flight are not counted).
    Duration(Duration),
    /// Every connection completes exactly this many messages.
    Messages(u64),
}

/// Parameters of a ping-pong run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Echo server address (loopback TCP, or a Unix socket).
    pub addr: Endpoint,
    /// Number of concurrent connections.
    pub conns: usize,
    /// Message size in bytes.
    pub size: usize,
    /// When the measured phase ends.
    pub limit: Limit,
    /// Hard cap on the measured phase when `limit` is a message count.
    pub timeout: Duration,
}

/// One client connection's state. The connection is a byte stream; message `k` covers
/// stream positions `k*size .. (k+1)*size`.
#[derive(Debug)]
struct Conn {
    stream: Stream,
    /// Pattern offset of this connection's stream.
    base: u64,
    /// Bytes written so far.
    sent: u64,
    /// Echoed bytes received (and verified) so far.
    recvd: u64,
    /// End position of the current message; a message is in flight while `recvd < target`.
    target: u64,
    /// When the current message was started.
    started: Instant,
    /// Messages this connection may still start in the current phase.
    budget: u64,
}

/// Counters shared by all connections of a run.
#[derive(Debug)]
struct Stats {
    size: usize,
    /// Whether completed messages go into the latency histogram.
    recording: bool,
    latency: Histogram,
    /// Messages completed in the current phase.
    completed: u64,
    /// Connections that have a message in flight or may start one.
    active: usize,
}

impl Conn {
    /// Starts the next message and writes as much of it as the socket takes.
    fn start_message(&mut self, now: Instant, pattern: &Pattern, size: usize) -> io::Result<()> {
        self.budget -= 1;
        self.target += size as u64;
        self.started = now;
        self.write(pattern)
    }

    /// Writes the unsent part of the current message until done or `WouldBlock`; the
    /// rest is sent on the next writable event.
    fn write(&mut self, pattern: &Pattern) -> io::Result<()> {
        while self.sent < self.target {
            // Bounded by the message size, which the pattern was built for.
            let len = (self.target - self.sent) as usize;
            match self.stream.write(pattern.window(self.base + self.sent, len)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads everything available, verifying it and completing messages.
    ///
    /// mio is edge-triggered, so the socket must be drained: reading stops at
    /// `WouldBlock`, or early at a short read (which means the receive queue was
    /// emptied) unless the peer's FIN was signalled, in which case reading continues
    /// until end-of-file is seen.
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let data = &buf[..n];
            if self.recvd + n as u64 > self.sent {
                return Err(overrun(index, self.sent, self.recvd + n as u64));
            }
            pattern
                .verify(self.base + self.recvd, data)
                .map_err(|at| mismatch(index, self.recvd + at as u64))?;
            self.recvd += n as u64;
            if self.recvd == self.target {
                let now = Instant::now();
                if stats.recording {
                    stats.latency.record(now - self.started);
                }
                stats.completed += 1;
                if self.budget > 0 {
                    self.start_message(now, pattern, stats.size)?;
                } else {
                    stats.active -= 1;
                }
            }
            if n < buf.len() && !read_closed {
                return Ok(());
            }
        }
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
            self.write(pattern)?;
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
    fn new(streams: Vec<Stream>, size: usize) -> io::Result<Self> {
        let poll = Poll::new()?;
        let now = Instant::now();
        let mut conns = Vec::with_capacity(streams.len());
        for (i, mut stream) in streams.into_iter().enumerate() {
            poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            conns.push(Conn {
                stream,
                base: stream_base(i),
                sent: 0,
                recvd: 0,
                target: 0,
                started: now,
                budget: 0,
            });
        }
        Ok(Self {
            poll,
            events: Events::with_capacity(EVENT_CAPACITY),
            conns,
            pattern: Pattern::new(size.max(READ_BUF)),
            buf: vec![0; READ_BUF],
            stats: Stats { size, recording: false, latency: Histogram::new(), completed: 0, active: 0 },
        })
    }

    /// Starts a phase: every (idle) connection may send `budget` messages, and sends
    /// its first one right away.
    fn start_phase(&mut self, budget: u64, recording: bool) -> io::Result<()> {
        self.stats.recording = recording;
        self.stats.latency.reset();
        self.stats.completed = 0;
        self.stats.active = 0;
        if budget == 0 {
            return Ok(());
        }
        let now = Instant::now();
        for (i, conn) in self.conns.iter_mut().enumerate() {
            conn.budget = budget;
            self.stats.active += 1;
            conn.start_message(now, &self.pattern, self.stats.size).map_err(|e| context(i, e))?;
        }
        Ok(())
    }

    /// Runs the event loop until every connection has used its budget (returns `true`)
    /// or `deadline` passes (returns `false`). Fails if no message completes for
    /// [`STALL_TIMEOUT`].
    fn drive(&mut self, deadline: Instant, what: &str) -> io::Result<bool> {
        let mut last_completed = self.stats.completed;
        let mut last_progress = Instant::now();
        loop {
            if self.stats.active == 0 {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if self.stats.completed != last_completed {
                last_completed = self.stats.completed;
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

/// Runs a ping-pong load against `config.addr` and reports the measured phase.
pub fn run(config: &Config) -> io::Result<Report> {
    if config.size == 0 || config.conns == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "size and conns must be at least 1"));
    }
    let streams = connect_all(&config.addr, config.conns)?;
    let mut driver = Driver::new(streams, config.size)?;

    // Warm-up: one message per connection, not measured.
    driver.start_phase(1, false)?;
    if !driver.drive(Instant::now() + WARMUP_TIMEOUT, "warm-up")? {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "warm-up did not finish in time"));
    }

    let (budget, duration) = match config.limit {
        Limit::Duration(d) => (u64::MAX, d),
        Limit::Messages(m) => (m, config.timeout),
    };
    let cpu_before = self_cpu_time();
    let start = Instant::now();
    driver.start_phase(budget, true)?;
    let finished = driver.drive(start + duration, "ping-pong")?;
    let elapsed = start.elapsed();
    let client_cpu = cpu_before.zip(self_cpu_time()).map(|(b, a)| a.saturating_sub(b));
    if matches!(config.limit, Limit::Messages(_)) && !finished {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("not all messages completed within {:.1} s", config.timeout.as_secs_f64()),
        ));
    }

    let messages = driver.stats.completed;
    Ok(Report {
        mode: Mode::PingPong,
        conns: config.conns,
        size: config.size,
        elapsed,
        messages,
        bytes: messages * config.size as u64,
        latency: Some(driver.stats.latency),
        client_cpu,
    })
}
