//! `proxy`: a port forwarder, in the style of Twisted's `portforward`, over TCP or Unix
//! sockets on either side.
//!
//! The idea it teaches is **producer/consumer across two connections**. Every accepted client
//! gets an outbound connection to `--target`; bytes read on either side are written to the
//! other, and each connection is registered as the other's push producer. A slow reader on
//! either side fills its connection's write buffer, which pauses reading on the *other*
//! connection until it drains, so the proxy's memory stays bounded (about the high watermark
//! plus one read per direction) without a line of flow-control code. See
//! [`torsion_examples::proxy`] for the protocols, and the Backpressure section of
//! `torsion_reactor::protocol` for the contract.
//!
//! Closing is forwarded too: a FIN on one side becomes `write_eof` on the other after every
//! byte before it (half-close works end to end), a reset or abort on one side aborts the
//! other, and a backend that cannot be reached closes the client.
//!
//! Around that, the same conventions as `echo-server`:
//! * `--listen` and `--target` each take a TCP address (`127.0.0.1:8000`, `[::1]:8000`,
//!   `localhost:8000`) or a Unix socket (`unix:/path`, `unix:@name`), so the proxy also bridges
//!   a Unix socket to a TCP port and back;
//! * setup failures (bad address, address in use): one line on stderr, exit code 2;
//! * the first line of stdout is `listening on <addr>` (the real port when `--listen` asked
//!   for port 0);
//! * SIGINT/SIGTERM stop the reactor gracefully (stop accepting, flush and close every
//!   connection), after which the process exits 0. A second signal aborts what is left.
//!
//! ```text
//! cargo run -p torsion-examples --bin echo-server -- --listen 127.0.0.1:8000 &
//! cargo run -p torsion-examples --bin proxy -- --listen 127.0.0.1:8001 --target 127.0.0.1:8000
//! cargo run -p torsion-examples --bin proxy -- --listen unix:/tmp/echo.sock --target 127.0.0.1:8000
//! RUST_LOG=debug cargo run -p torsion-examples --bin proxy -- --target 127.0.0.1:8000
//! ```

use std::process::ExitCode;

use clap::Parser;
use torsion_examples::proxy::Proxy;
use torsion_examples::{
    announce_listening, exit_with, init_logging, run_failure, startup_failure, EXIT_FAILURE, EXIT_USAGE,
};
use torsion_examples::{endpoint_cli, tls_cli};
use torsion_reactor::Reactor;
use tracing::info;

/// Forwards every connection accepted on --listen to --target, with backpressure in both
/// directions. Stops gracefully on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to listen: an endpoint such as `HOST:PORT`, `[V6]:PORT`, `tcp:PORT`, `unix:PATH`,
    /// `unix:@NAME`, `ssl:PORT:...` or `systemd:...` (--help shows the grammar). Port 0 picks a
    /// free port; the first line of stdout tells which.
    #[arg(long, value_name = "ENDPOINT", default_value = "127.0.0.1:8001", long_help = torsion_examples::endpoint_cli::SERVER_HELP)]
    listen: String,
    #[command(flatten)]
    tls: tls_cli::TlsServerArgs,
    /// The backend to forward to: a client endpoint such as `HOST:PORT`, `[V6]:PORT`,
    /// `unix:PATH`, `unix:@NAME`, `tcp:host=HOST:port=PORT` or `tls:host=HOST:port=PORT`
    /// (--help shows the grammar). A host name is resolved once, at startup.
    #[arg(long, value_name = "ENDPOINT", long_help = torsion_examples::endpoint_cli::CLIENT_HELP)]
    target: String,
    /// Connect to the target over TLS (verified against --target-ca, else the public web roots).
    #[arg(long)]
    target_tls: bool,
    /// PEM file of the CA certificates to trust for the target (with --target-tls).
    #[arg(long, value_name = "PEM", requires = "target_tls")]
    target_ca: Option<std::path::PathBuf>,
    /// The name to verify the target's certificate as (default: the host in --target).
    #[arg(long, value_name = "NAME", requires = "target_tls")]
    target_server_name: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(serve(&args))
}

/// Runs the proxy until a signal stops it. Errors carry the exit code and a one-line message.
fn serve(args: &Args) -> Result<(), (i32, String)> {
    let listen = endpoint_cli::parse_server(&args.listen).map_err(|message| (EXIT_USAGE, message))?;
    let target_endpoint =
        endpoint_cli::parse_client(&args.target).map_err(|message| (EXIT_USAGE, message))?;
    let target = endpoint_cli::client_address(&target_endpoint)?;

    let mut reactor = Reactor::new().map_err(startup_failure)?;
    let mut proxy = Proxy::new(target.clone());
    if let torsion_reactor::ClientEndpoint::Tls { host, ca_certs_dir, .. } = &target_endpoint {
        // A tls: target endpoint: its trust roots directory, or the public web roots.
        let (name, config) =
            tls_cli::endpoint_tls(host, ca_certs_dir.as_deref(), args.target_server_name.as_deref())?;
        proxy = proxy.with_target_tls(config, name);
    } else if args.target_tls {
        let config = tls_cli::client_config(args.target_ca.as_ref())?;
        let name = tls_cli::server_name(args.target_server_name.as_deref(), &args.target)?;
        proxy = proxy.with_target_tls(config, name);
    }
    let port = endpoint_cli::listen(&mut reactor, &listen, args.tls.config()?, proxy)?;
    reactor.install_signal_handlers().map_err(startup_failure)?;

    let local = port.local_addr().clone();
    announce_listening(&local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    info!(%local, %target, "proxy listening; Ctrl-C (SIGINT) or SIGTERM stops it");

    reactor.run().map_err(run_failure)?;
    info!("stopped");
    Ok(())
}
