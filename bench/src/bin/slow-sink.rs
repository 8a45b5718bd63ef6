//! `slow-sink`: a deliberately slow backend that reads at a limited rate and discards.
//!
//! It accepts any number of connections and, on every tick (`--interval-ms`), reads at
//! most `--read-bytes` from each of them and throws the bytes away; it never writes. A
//! connection is closed when its peer closes it (end of file) or on an error. So each
//! connection drains at about `read-bytes / interval`, however fast its client writes:
//! the rest piles up in the kernel's socket buffers and then, behind a proxy, in the
//! proxy, whose backpressure must keep that bounded (`bench/proxy.sh` measures it).
//!
//! One thread: a mio poll on the listener whose timeout is the next tick; connections
//! are not registered for readiness, they are simply read (non-blocking) on each tick.
//!
//! Usage: `slow-sink [--listen 127.0.0.1:0] [--read-bytes 65536] [--interval-ms 100]`.
//! The first line on standard output is `listening on <addr>`.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// Token of the listening socket (the only registered source).
const LISTENER: Token = Token(0);
/// Size of the read buffer; one read never takes more than this.
const READ_BUF: usize = 64 * 1024;

/// Slow backend for the torsion proxy benchmark: reads a limited number of bytes per
/// connection per tick and discards them.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on (port 0 lets the kernel choose).
    #[arg(long, default_value = torsion_bench::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Most bytes read from each connection per tick.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    read_bytes: u64,
    /// Milliseconds between ticks.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    interval_ms: u64,
}

/// Whether an `accept` error concerns only that one connection, so accepting goes on.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

/// Reads at most `budget` bytes from `stream` into `buf` and discards them. Returns
/// `false` if the connection is finished (end of file or error).
fn read_some(stream: &mut TcpStream, buf: &mut [u8], budget: u64) -> bool {
    let mut left = budget;
    while left > 0 {
        // Bounded by the buffer length, so the cast is lossless.
        let len = left.min(buf.len() as u64) as usize;
        match stream.read(&mut buf[..len]) {
            Ok(0) => return false,
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let interval = Duration::from_millis(cli.interval_ms);
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(cli.listen)?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    torsion_bench::announce_listening(listener.local_addr()?)?;

    let mut events = Events::with_capacity(16);
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut next_tick = Instant::now() + interval;
    loop {
        let now = Instant::now();
        if now >= next_tick {
            conns.retain_mut(|stream| read_some(stream, &mut buf, cli.read_bytes));
            // Keep the cadence, but never try to catch up on missed ticks in a burst.
            next_tick += interval;
            if next_tick <= now {
                next_tick = now + interval;
            }
            continue;
        }
        match poll.poll(&mut events, Some(next_tick - now)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if events.is_empty() {
            continue;
        }
        // Only the listener is registered: accept everything pending (edge-triggered).
        loop {
            match listener.accept() {
                Ok((stream, _peer)) => conns.push(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_transient_accept_error(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
