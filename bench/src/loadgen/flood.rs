//! Flooding load: write as fast as the sockets accept, never wait for replies.
//!
//! Every connection writes its pattern stream in `size`-byte writes whenever its socket
//! is writable, so the target is pushed as hard as its (and the kernel's) buffers allow.
//! Anything that comes back is read and discarded. This is the load for a slow sink
//! behind a proxy: the proxy's backpressure, not the client, must keep its memory
//! bounded. The report counts the bytes the kernel accepted from the client during the
//! measured interval, which includes whatever is still sitting in socket buffers.
//!
//! There is no warm-up (there is no echo to wait for): the interval starts once every
//! connection is open, after an optional idle pause (`idle`) in which the connections
//! are held open without writing, so that the target's memory with all connections
//! open but idle can be observed. A server that closes a connection, or a run in which no byte can
//! be written for [`STALL_TIMEOUT`], is an error.
//!
//! [`STALL_TIMEOUT`]: super::STALL_TIMEOUT

use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Interest, Poll, Token};

use super::{
    connect_all, context, stalled, stream_base, Mode, Report, Stream, EVENT_CAPACITY, POLL_TICK,
    STALL_TIMEOUT,
};
use crate::cpu::self_cpu_time;
use crate::pattern::Pattern;
use crate::Endpoint;

/// Size of the buffer that replies (if any) are read into and discarded from.
const READ_BUF: usize = 64 * 1024;
/// Largest accepted write size (the pattern buffer is this big).
pub const MAX_SIZE: usize = 16 << 20;

/// Parameters of a flooding run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Target address (loopback TCP, or a Unix socket).
    pub addr: Endpoint,
    /// Number of concurrent connections.
    pub conns: usize,
    /// Bytes offered to each `write` call.
    pub size: usize,
    /// Length of the run.
    pub duration: Duration,
    /// How long to hold the connections open without writing before flooding (not
    /// part of the measured interval).
    pub idle: Duration,
}

/// One client connection's state.
#[derive(Debug)]
struct Conn {
    stream: Stream,
    /// Pattern offset of this connection's stream.
    base: u64,
    /// Bytes the kernel accepted so far.
    sent: u64,
}

impl Conn {
    /// Writes until the socket would block. Returns the number of bytes written.
    fn fill(&mut self, pattern: &Pattern, size: usize) -> io::Result<u64> {
        let before = self.sent;
        loop {
            match self.stream.write(pattern.window(self.base + self.sent, size)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(self.sent - before),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and discards everything available; the peer closing is an error.
    fn drain(&mut self, buf: &mut [u8]) -> io::Result<()> {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Handles one readiness event; returns the number of bytes written.
    fn on_event(&mut self, event: &Event, buf: &mut [u8], pattern: &Pattern, size: usize) -> io::Result<u64> {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.drain(buf)?;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            return self.fill(pattern, size);
        }
        Ok(0)
    }
}

/// Floods `config.addr` for `config.duration` and reports the bytes written.
pub fn run(config: &Config) -> io::Result<Report> {
    if config.size == 0 || config.conns == 0 || config.size > MAX_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("conns must be at least 1 and size between 1 and {MAX_SIZE}"),
        ));
    }
    let streams = connect_all(&config.addr, config.conns)?;
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(streams.len());
    for (i, mut stream) in streams.into_iter().enumerate() {
        poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn { stream, base: stream_base(i), sent: 0 });
    }
    if !config.idle.is_zero() {
        thread::sleep(config.idle);
    }
    let pattern = Pattern::new(config.size);
    let mut buf = vec![0u8; READ_BUF];
    let mut events = Events::with_capacity(EVENT_CAPACITY);

    let cpu_before = self_cpu_time();
    let start = Instant::now();
    let deadline = start + config.duration;
    let mut total = 0u64;
    for (i, conn) in conns.iter_mut().enumerate() {
        total += conn.fill(&pattern, config.size).map_err(|e| context(i, e))?;
    }
    let mut last_total = total;
    let mut last_progress = start;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if total != last_total {
            last_total = total;
            last_progress = now;
        } else if now - last_progress > STALL_TIMEOUT {
            return Err(stalled("flood"));
        }
        match poll.poll(&mut events, Some((deadline - now).min(POLL_TICK))) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in events.iter() {
            let index = event.token().0;
            total += conns[index]
                .on_event(event, &mut buf, &pattern, config.size)
                .map_err(|e| context(index, e))?;
        }
    }
    let elapsed = start.elapsed();
    let client_cpu = cpu_before.zip(self_cpu_time()).map(|(b, a)| a.saturating_sub(b));
    Ok(Report {
        mode: Mode::Flood,
        conns: config.conns,
        size: config.size,
        elapsed,
        messages: total / config.size as u64,
        bytes: total,
        latency: None,
        client_cpu,
    })
}
