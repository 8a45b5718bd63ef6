//! UDP request/response load: one datagram in flight per client socket.
//!
//! Every client socket (a "connection" in the report: a UDP socket connected to the server)
//! sends a `size`-byte datagram carrying its sequence number, waits for the echo, records
//! the round-trip time and sends the next. A datagram not echoed within [`RETRY_AFTER`] is
//! counted as lost and the next one is sent, so a loss cannot stall the run. Every echo is
//! checked byte-exact against what was sent.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::{Mode, Report, EVENT_CAPACITY, POLL_TICK, STALL_TIMEOUT, WARMUP_TIMEOUT};
use crate::cpu::self_cpu_time;
use crate::histogram::Histogram;

/// A datagram not echoed within this long is counted as lost and replaced by the next.
pub const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Parameters of a UDP ping-pong run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Echo server address (loopback only).
    pub addr: SocketAddr,
    /// Number of client sockets.
    pub conns: usize,
    /// Datagram size in bytes (at least 8: the sequence number).
    pub size: usize,
    /// Length of the measured phase.
    pub duration: Duration,
}

struct Client {
    socket: UdpSocket,
    seq: u64,
    sent_at: Instant,
    waiting: bool,
}

fn payload(buf: &mut [u8], conn: usize, seq: u64) {
    buf[..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in buf[8..].iter_mut().enumerate() {
        *b = (conn as u64 ^ seq).wrapping_add(i as u64) as u8;
    }
}

/// Runs the workload and reports datagrams/s and latency; lost datagrams are counted in
/// the returned tuple's second field.
pub fn run(config: &Config) -> io::Result<(Report, u64)> {
    if !config.addr.ip().is_loopback() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the load generator only targets loopback"));
    }
    let size = config.size.max(8);
    let mut poll = Poll::new()?;
    let bind: SocketAddr = if config.addr.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" }.parse().unwrap();
    let mut clients = Vec::with_capacity(config.conns);
    for i in 0..config.conns {
        let mut socket = UdpSocket::bind(bind)?;
        socket.connect(config.addr)?;
        poll.registry().register(&mut socket, Token(i), Interest::READABLE)?;
        clients.push(Client { socket, seq: 0, sent_at: Instant::now(), waiting: false });
    }
    let mut out = vec![0u8; size];
    let mut buf = vec![0u8; size + 1];
    let mut events = Events::with_capacity(EVENT_CAPACITY);
    let mut latency = Histogram::new();
    let (mut messages, mut lost) = (0u64, 0u64);
    let send = |c: &mut Client, i: usize, out: &mut [u8]| -> io::Result<()> {
        c.seq += 1;
        payload(out, i, c.seq);
        c.sent_at = Instant::now();
        c.waiting = true;
        match c.socket.send(out) {
            Ok(_) => Ok(()),
            // Counted as lost by the retry timeout.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    };

    // Warm-up: every socket completes one echo; then the clock starts.
    let mut measuring = false;
    let mut start = Instant::now();
    let warmup_deadline = start + WARMUP_TIMEOUT;
    let mut warm = 0usize;
    let mut cpu_start = None;
    for (i, c) in clients.iter_mut().enumerate() {
        send(c, i, &mut out)?;
    }
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        if measuring && now >= start + config.duration {
            break;
        }
        if !measuring && now >= warmup_deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "warm-up did not complete"));
        }
        if now.duration_since(last_progress) > STALL_TIMEOUT {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no echo for too long"));
        }
        poll.poll(&mut events, Some(POLL_TICK.min(RETRY_AFTER / 4)))?;
        for event in events.iter() {
            let i = event.token().0;
            loop {
                let c = &mut clients[i];
                let n = match c.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        return Err(io::Error::new(e.kind(), format!("{}: port unreachable", config.addr)));
                    }
                    Err(e) => return Err(e),
                };
                payload(&mut out, i, c.seq);
                if !c.waiting || n != size || buf[..n] != out[..] {
                    // A late echo of a datagram already counted as lost: ignore it.
                    continue;
                }
                c.waiting = false;
                last_progress = Instant::now();
                if measuring {
                    latency.record(c.sent_at.elapsed());
                    messages += 1;
                } else {
                    warm += 1;
                }
                send(c, i, &mut out)?;
            }
        }
        let now = Instant::now();
        for (i, c) in clients.iter_mut().enumerate() {
            if c.waiting && now.duration_since(c.sent_at) > RETRY_AFTER {
                if measuring {
                    lost += 1;
                }
                send(c, i, &mut out)?;
            }
        }
        if !measuring && warm >= clients.len() {
            measuring = true;
            start = Instant::now();
            cpu_start = self_cpu_time();
        }
    }
    let elapsed = start.elapsed();
    let client_cpu = match (cpu_start, self_cpu_time()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let report = Report {
        mode: Mode::PingPong,
        conns: config.conns,
        size,
        elapsed,
        messages,
        bytes: messages * size as u64,
        latency: Some(latency),
        client_cpu,
    };
    Ok((report, lost))
}
