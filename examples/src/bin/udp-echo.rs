//! `udp-echo`: a datagram server, Twisted's `DatagramProtocol` echo.
//!
//! The idea it teaches is that **UDP has no connection and no write buffer**: there is one
//! protocol for the whole port (no factory), `datagram_received` gets each datagram with its
//! sender, and `send_to` either hands the reply to the kernel or reports why not; a reply that
//! cannot go now is dropped, as the network would drop it. A datagram larger than the maximum
//! size is dropped and counted, never delivered truncated.
//!
//! Conventions as the other servers: `--listen HOST:PORT`, `[V6]:PORT` or Twisted's
//! `udp:PORT[:interface=ADDR]`; the first line of stdout is `listening on <addr>`; logs on
//! stderr (`RUST_LOG`); SIGINT/SIGTERM exit 0; a bad or busy address is one line, exit 2.
//!
//! ```text
//! cargo run -p torsion-examples --bin udp-echo -- --listen 127.0.0.1:9000
//! echo hello | nc -u -q1 127.0.0.1 9000
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use torsion_examples::{exit_with, init_logging};
use torsion_reactor::{DatagramCtx, DatagramProtocol, SendOutcome};
use tracing::debug;

#[path = "../udp_cli.rs"]
mod udp_cli;

/// Echoes every datagram back to its sender. Stops gracefully on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on: `HOST:PORT`, `[V6]:PORT` or `udp:PORT[:interface=ADDR]`. Port 0
    /// picks a free port; the first line of stdout tells which.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    listen: String,
}

/// The echo: one protocol for the whole port.
struct UdpEcho;

impl DatagramProtocol for UdpEcho {
    fn datagram_received(&mut self, cx: &mut DatagramCtx<'_>, data: &[u8], from: SocketAddr) {
        match cx.send_to(data, from) {
            SendOutcome::Sent(_) => {}
            // No write buffer: a reply the kernel cannot take now is dropped.
            SendOutcome::WouldBlock => debug!(%from, "send buffer full; reply dropped"),
            SendOutcome::Error(error) => debug!(%from, %error, "reply failed"),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(udp_cli::serve_udp(&args.listen, "udp echo", UdpEcho))
}
