//! `echo-server`: the smallest complete torsion server.
//!
//! The idea it teaches is the **factory**: the reactor owns the listening socket, and for each
//! accepted connection it asks the factory (here a closure) for a fresh protocol, an
//! [`Echo`] that writes back every byte. The protocol never sees a socket; it reacts to
//! `data_received` through the [`Ctx`](torsion_reactor::Ctx) it is lent.
//!
//! Around that, what a real server needs:
//! * setup failures (bad address, address in use) come back as a `Result` from `listen_tcp`:
//!   one line on stderr, exit code 2;
//! * the first line of stdout is `listening on <addr>`, with the real port when `--listen`
//!   asked for port 0, so scripts can find it;
//! * SIGINT/SIGTERM stop the reactor gracefully (stop accepting, flush and close every
//!   connection), after which the process exits 0. A second signal aborts what is left.
//!
//! ```text
//! cargo run -p torsion-examples --bin echo-server -- --listen 127.0.0.1:0
//! RUST_LOG=debug cargo run -p torsion-examples --bin echo-server   # log every connection
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use torsion_examples::{
    announce_listening, exit_with, init_logging, listen_error, resolve_addr, run_failure, startup_failure,
    EXIT_FAILURE, EXIT_USAGE,
};
use torsion_protocols::Echo;
use torsion_reactor::{Protocol, Reactor};
use tracing::{debug, info};

/// Echoes every byte back to its sender. Stops gracefully on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on, HOST:PORT (port 0 picks a free port; the first line of stdout
    /// tells which).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(serve(&args))
}

/// Runs the server until a signal stops it. Errors carry the exit code and a one-line message.
fn serve(args: &Args) -> Result<(), (i32, String)> {
    let addr = resolve_addr(&args.listen).map_err(|message| (EXIT_USAGE, message))?;

    let mut reactor = Reactor::new().map_err(startup_failure)?;
    // The factory: called once per accepted connection, it builds that connection's protocol.
    let factory = |peer: SocketAddr| {
        debug!(%peer, "accepted a connection");
        Some(Box::new(Echo) as Box<dyn Protocol>)
    };
    let port = reactor.listen_tcp(addr, factory).map_err(|e| (EXIT_USAGE, listen_error(addr, &e)))?;
    reactor.install_signal_handlers().map_err(startup_failure)?;

    let local = port.local_addr();
    announce_listening(local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    info!(%local, "echo server listening; Ctrl-C (SIGINT) or SIGTERM stops it");

    reactor.run().map_err(run_failure)?;
    info!("stopped");
    Ok(())
}
