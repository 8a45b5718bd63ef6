//! Benchmark harness for torsion's echo server.
//!
//! This crate is a tool, not a test suite. It provides:
//!
//! * three comparison echo servers (binaries `raw-mio-echo`, `tokio-echo`, and the
//!   Python script `bench/asyncio_echo.py` next to this crate); `raw-mio-echo` also
//!   listens on Unix sockets (`--listen unix:/path`);
//! * a single-threaded mio load generator (binary `loadgen`) with a request/response
//!   (`pingpong`) and a throughput (`stream`) mode, both of which verify every echoed byte,
//!   and a `flood` mode that writes without waiting for replies, over TCP or Unix
//!   sockets;
//! * a deliberately slow backend (binary `slow-sink`) that reads a limited number of bytes
//!   per connection per tick and discards them;
//! * `bench/run.sh`, which runs every server through every scenario and prints a table;
//!   `bench/compare.sh`, which compares torsion's echo server at an earlier commit with
//!   the working tree's; and `bench/proxy.sh`, which compares torsion's `proxy` example
//!   with direct echo and measures the proxy's peak memory in front of a slow backend.
//!
//! The library part holds what the binaries share: server addresses ([`Endpoint`]), the
//! verification [`pattern`], the latency [`histogram`], CPU-time sampling ([`cpu`]) and
//! the load generator itself ([`loadgen`]).

use std::fmt::Display;
use std::io::{self, Write};

pub mod cpu;
pub mod endpoint;
pub mod histogram;
pub mod loadgen;
pub mod pattern;

pub use endpoint::Endpoint;

/// Default address the comparison servers listen on: loopback, kernel-chosen port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// Prints the `listening on <addr>` line every benchmarked server must emit as its very
/// first line of standard output, and flushes it so a reader on a pipe or file sees it
/// at once (`bench/run.sh` learns the kernel-chosen port from it). `addr` is printed
/// with `Display`: a `SocketAddr`, or an [`Endpoint`] (`unix:/path` for a Unix socket).
pub fn announce_listening(addr: impl Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()
}
