//! `udp-time`: the RFC 868 time protocol over UDP (Twisted's `protocols.wire` toy): any
//! datagram is answered with the current time as 4 bytes, big-endian seconds since
//! 1900-01-01 00:00 UTC.
//!
//! The idea it teaches: a datagram protocol reacts to a request and forgets it; nothing is
//! kept per peer. Conventions as `udp-echo`.
//!
//! ```text
//! cargo run -p torsion-examples --bin udp-time -- --listen 127.0.0.1:8037
//! echo | nc -u -q1 127.0.0.1 8037 | od -An -tu1
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use torsion_examples::{exit_with, init_logging};
use torsion_reactor::{DatagramCtx, DatagramProtocol};

#[path = "../udp_cli.rs"]
mod udp_cli;

/// Answers every datagram with the RFC 868 time (4 bytes). Stops on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on: `HOST:PORT`, `[V6]:PORT` or `udp:PORT[:interface=ADDR]`. Port 0
    /// picks a free port; the first line of stdout tells which.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8037")]
    listen: String,
}

/// Seconds from 1900-01-01 to 1970-01-01.
const RFC868_OFFSET: u64 = 2_208_988_800;

/// The current time in RFC 868 form (it wraps in 2036, as the protocol does).
fn rfc868_now() -> [u8; 4] {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    ((unix + RFC868_OFFSET) as u32).to_be_bytes()
}

struct Time;

impl DatagramProtocol for Time {
    fn datagram_received(&mut self, cx: &mut DatagramCtx<'_>, _data: &[u8], from: SocketAddr) {
        cx.send_to(&rfc868_now(), from);
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(udp_cli::serve_udp(&args.listen, "udp time", Time))
}
