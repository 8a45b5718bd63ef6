//! `tokio-echo`: comparison echo server on tokio's single-threaded runtime.
//!
//! One task per connection with its own 64 KiB buffer: read, then `write_all` what was
//! read. This is the idiomatic tokio echo server, run on a `current_thread` runtime so
//! it competes on the same single core as the other servers.
//!
//! `--threads N` (N > 1) runs it on tokio's multi-thread runtime with N workers instead, the
//! comparison point for torsion's `echo-server --threads N` (bench/threads.sh).
//!
//! Usage: `tokio-echo [--listen 127.0.0.1:0] [--threads N]`. The first line on standard
//! output is `listening on <addr>`.

use std::io;
use std::net::SocketAddr;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Per-connection buffer size.
const BUF_SIZE: usize = 64 * 1024;

/// Tokio echo server for the torsion benchmark.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on (port 0 lets the kernel choose).
    #[arg(long, default_value = torsion_bench::DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Worker threads: 1 (default) is the `current_thread` runtime; more is the
    /// multi-thread runtime with that many workers (work-stealing, one shared listener).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Echoes everything read from `stream` back to it until the peer closes or an error.
async fn echo(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Whether an `accept` error concerns only that one connection, so accepting should
/// simply go on.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

/// Accepts connections forever, spawning one echo task per connection.
async fn serve(listen: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    torsion_bench::announce_listening(listener.local_addr()?)?;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                // Same setting as the other servers: answer small messages at once.
                stream.set_nodelay(true)?;
                tokio::spawn(async move {
                    // A reset by the peer is a normal end of a benchmark connection.
                    let _ = echo(stream).await;
                });
            }
            // Connection-level failures (the peer gave up before we accepted it) are
            // not the listener's problem.
            Err(e) if is_transient_accept_error(&e) => {}
            // Anything else (e.g. out of file descriptors) would repeat at once: report
            // it and stop, rather than spin.
            Err(e) => return Err(e),
        }
    }
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let runtime = if cli.threads > 1 {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads).enable_all().build()?
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    };
    runtime.block_on(serve(cli.listen))
}
