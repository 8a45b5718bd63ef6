//! `echo-server`: the smallest complete torsion server.
//!
//! The idea it teaches is the **factory**: the reactor owns the listening socket, and for each
//! accepted connection it asks the factory (here a closure) for a fresh protocol, an
//! [`Echo`] that writes back every byte. The protocol never sees a socket; it reacts to
//! `data_received` through the [`Ctx`](torsion_reactor::Ctx) it is lent.
//!
//! Around that, what a real server needs:
//! * `--listen` takes a TCP address (`127.0.0.1:8000`, `[::1]:8000`, `localhost:8000`) or a
//!   Unix socket (`unix:/path`, or `unix:@name` in Linux's abstract namespace); the reactor's
//!   `listen` serves either with the same factory. A stale socket file (its server died) is
//!   replaced, and the file is removed again when the server stops;
//! * setup failures (bad address, address in use, a live server already on that Unix path)
//!   come back as a `Result` from `listen`: one line on stderr, exit code 2;
//! * the first line of stdout is `listening on <addr>`, with the real port when `--listen`
//!   asked for port 0, so scripts can find it;
//! * SIGINT/SIGTERM stop the reactor gracefully (stop accepting, flush and close every
//!   connection), after which the process exits 0. A second signal aborts what is left.
//! * `--threads N` uses N cores: N reactor threads, each with its own SO_REUSEPORT listener
//!   (the kernel spreads connections over them), each `Echo` living on the thread that
//!   accepted it. 1 (the default) is one reactor on the main thread; 0 is one per core. The
//!   factory code is the same.
//!
//! ```text
//! cargo run -p torsion-examples --bin echo-server -- --listen 127.0.0.1:0
//! cargo run -p torsion-examples --bin echo-server -- --listen 127.0.0.1:0 --threads 0   # every core
//! cargo run -p torsion-examples --bin echo-server -- --listen unix:/tmp/echo.sock   # nc -U /tmp/echo.sock
//! RUST_LOG=debug cargo run -p torsion-examples --bin echo-server   # log every connection
//! ```

use std::process::ExitCode;

use clap::Parser;
use torsion_examples::pool_cli::serve_on_pool;
use torsion_examples::{
    announce_listening, exit_with, init_logging, listen_error, parse_endpoint, run_failure, startup_failure,
    EXIT_FAILURE, EXIT_USAGE,
};
use torsion_protocols::Echo;
use torsion_reactor::{Address, Reactor};
use tracing::{debug, info};

/// Echoes every byte back to its sender. Stops gracefully on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on: `HOST:PORT`, `[V6]:PORT`, `unix:PATH` or `unix:@NAME` (Linux
    /// abstract socket). Port 0 picks a free port; the first line of stdout tells which. A stale
    /// socket file at PATH is replaced; a live server there is an error.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: String,

    /// Reactor threads: 1 runs one reactor on the main thread; N > 1 runs N reactors, each
    /// accepting on its own SO_REUSEPORT socket (a Unix socket is handed off by one acceptor
    /// thread); 0 runs one per core.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(serve(&args))
}

/// Runs the server until a signal stops it. Errors carry the exit code and a one-line message.
fn serve(args: &Args) -> Result<(), (i32, String)> {
    let addr = parse_endpoint(&args.listen).map_err(|message| (EXIT_USAGE, message))?;
    if args.threads != 1 {
        // Every core: the same factory, built once per reactor thread.
        return serve_on_pool(&addr, args.threads, "echo server", |_reactor| {
            |peer: Address| {
                debug!(%peer, "accepted a connection");
                Some(Echo)
            }
        });
    }

    let mut reactor = Reactor::new().map_err(startup_failure)?;
    // The factory: called once per accepted connection, it builds that connection's protocol.
    let factory = |peer: Address| {
        debug!(%peer, "accepted a connection");
        Some(Echo)
    };
    // TCP or Unix: the same factory, the same protocol.
    let port = reactor.listen(&addr, factory).map_err(|e| (EXIT_USAGE, listen_error(&addr, &e)))?;
    reactor.install_signal_handlers().map_err(startup_failure)?;

    let local = port.local_addr().clone();
    announce_listening(&local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    info!(%local, "echo server listening; Ctrl-C (SIGINT) or SIGTERM stops it");

    reactor.run().map_err(run_failure)?;
    info!("stopped");
    Ok(())
}
