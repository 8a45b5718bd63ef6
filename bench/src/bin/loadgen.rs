//! `loadgen`: single-threaded mio load generator for echo servers.
//!
//! ```text
//! loadgen pingpong --addr 127.0.0.1:7000 --conns 100 --size 64 --duration 5
//! loadgen pingpong --addr 127.0.0.1:7000 --conns 100 --size 64 --messages 10000
//! loadgen stream   --addr 127.0.0.1:7000 --conns 10 --size 65536 --duration 5
//! loadgen flood    --addr 127.0.0.1:7000 --conns 100 --size 65536 --duration 5
//! loadgen pingpong --addr unix:/tmp/echo.sock --conns 100 --size 64 --duration 5
//! ```
//!
//! Prints one machine-readable `RESULT key=value ...` line and one human-readable line
//! on standard output, and exits non-zero (with the reason on standard error) if a
//! connection fails, an echoed byte is wrong, or the run stalls. Only loopback TCP
//! addresses and Unix sockets (`unix:/path`, or `unix:@name` for a Linux abstract
//! name) are accepted as targets.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use torsion_bench::loadgen::{flood, pingpong, stream, udp, Report};
use torsion_bench::Endpoint;

/// Load generator for the torsion echo benchmark.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The workloads.
#[derive(Debug, Subcommand)]
enum Command {
    /// Request/response: each connection sends a message and waits for its whole echo
    /// before sending the next. Reports messages/s and latency quantiles.
    Pingpong(PingPongArgs),
    /// Bulk: each connection keeps up to `depth x size` bytes in flight. Reports MB/s.
    Stream(StreamArgs),
    /// Flood: each connection writes as fast as its socket accepts and never waits for
    /// replies (anything that comes back is discarded). Reports MB/s written. For loading
    /// a slow sink behind a proxy.
    Flood(FloodArgs),
    /// UDP request/response: each client socket sends a datagram and waits for its echo
    /// before sending the next (a datagram not echoed within 200 ms counts as lost and the
    /// next one goes). Reports datagrams/s (as msgs_per_s) and latency; losses on stderr.
    UdpPingpong(UdpArgs),
}

/// `udp-pingpong` options.
#[derive(Debug, Args)]
struct UdpArgs {
    /// Server address: loopback IP:PORT.
    #[arg(long)]
    addr: std::net::SocketAddr,
    /// Number of client sockets.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Datagram size in bytes (at least 8).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Length of the measured phase in seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
}

/// Options common to all workloads.
#[derive(Debug, Args)]
struct Common {
    /// Server address: loopback IP:PORT, unix:/path or unix:@name.
    #[arg(long)]
    addr: Endpoint,
    /// Number of concurrent connections.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Message size (pingpong) or write unit (stream, flood), in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

/// `pingpong` options.
#[derive(Debug, Args)]
struct PingPongArgs {
    #[command(flatten)]
    common: Common,
    /// Length of the measured phase in seconds [default: 5].
    #[arg(long, conflicts_with = "messages")]
    duration: Option<f64>,
    /// Instead of a duration: messages each connection completes.
    #[arg(long)]
    messages: Option<u64>,
    /// With --messages: give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

/// `stream` options.
#[derive(Debug, Args)]
struct StreamArgs {
    #[command(flatten)]
    common: Common,
    /// Length of the measured phase in seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Units of `size` bytes that may be in flight per connection.
    #[arg(long, default_value_t = 4)]
    depth: usize,
}

/// `flood` options.
#[derive(Debug, Args)]
struct FloodArgs {
    #[command(flatten)]
    common: Common,
    /// Length of the run in seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds to hold the connections open without writing before flooding (not part
    /// of the measured run).
    #[arg(long, default_value_t = 0.0)]
    idle: f64,
}

/// Validates a duration given in seconds on the command line.
fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    // Bounded so a typo cannot start a run of days.
    if value.is_finite() && value > 0.0 && value <= 3600.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("--{flag} must be between 0 and 3600 seconds, got {value}"))
    }
}

fn run(cli: Cli) -> Result<Report, String> {
    match cli.command {
        Command::Pingpong(args) => {
            let limit = match (args.duration, args.messages) {
                (_, Some(0)) => return Err("--messages must be at least 1".into()),
                (_, Some(m)) => pingpong::Limit::Messages(m),
                (d, None) => pingpong::Limit::Duration(seconds(d.unwrap_or(5.0), "duration")?),
            };
            let config = pingpong::Config {
                addr: args.common.addr,
                conns: args.common.conns,
                size: args.common.size,
                limit,
                timeout: seconds(args.timeout, "timeout")?,
            };
            pingpong::run(&config).map_err(|e| e.to_string())
        }
        Command::Stream(args) => {
            let config = stream::Config {
                addr: args.common.addr,
                conns: args.common.conns,
                size: args.common.size,
                depth: args.depth,
                duration: seconds(args.duration, "duration")?,
            };
            stream::run(&config).map_err(|e| e.to_string())
        }
        Command::Flood(args) => {
            let config = flood::Config {
                addr: args.common.addr,
                conns: args.common.conns,
                size: args.common.size,
                duration: seconds(args.duration, "duration")?,
                idle: if args.idle == 0.0 { Duration::ZERO } else { seconds(args.idle, "idle")? },
            };
            flood::run(&config).map_err(|e| e.to_string())
        }
        Command::UdpPingpong(args) => {
            let config = udp::Config {
                addr: args.addr,
                conns: args.conns,
                size: args.size,
                duration: seconds(args.duration, "duration")?,
            };
            let (report, lost) = udp::run(&config).map_err(|e| e.to_string())?;
            println!("udp-pingpong: {lost} datagrams lost (not echoed within 200 ms)");
            Ok(report)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(report) => {
            let mut out = io::stdout().lock();
            match writeln!(out, "{}\n{}", report.machine_line(), report.human_line())
                .and_then(|()| out.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                // E.g. a closed pipe: the result was not delivered.
                Err(e) => {
                    eprintln!("loadgen: writing the result: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
