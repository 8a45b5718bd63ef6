//! `http-server`: an HTTP/1.1 server built from [`torsion_protocols::http`].
//!
//! The idea it teaches is the **handler**: the server protocol does the HTTP (parsing, limits,
//! keep-alive, pipelining, framing, flow control); the application is a
//! [`Handler`](torsion_protocols::http::Handler) per connection that gets each request's head,
//! body and end and answers through the context it is lent. Here a small
//! [`Router`](torsion_protocols::http::Router) picks one of three handlers:
//!
//! * `GET /hello`: `Hello, World!` (text/plain), the benchmark's request;
//! * `POST /echo`: the request body streamed back as it arrives, of any size, flow-controlled
//!   both ways (a client that does not read stops the server reading);
//! * with `--root DIR`, `GET`/`HEAD` of any other path: files under DIR, with `Content-Type` by
//!   extension, `Last-Modified`/`If-Modified-Since`, a single `Range`, traversal (`..`)
//!   refused, and the body streamed by a pull producer, so a 10 GiB file costs no memory.
//!
//! One access-log line per request at `info` (target `torsion::http::access`), `listening on
//! <addr>` as the first line of stdout, exit code 2 for setup failures, and a graceful stop on
//! SIGINT/SIGTERM: idle keep-alive connections close at once, responses in flight finish.
//! HTTPS is the same server over TLS: `--tls-cert PEM --tls-key PEM`, or an `ssl:` endpoint.
//!
//! ```text
//! cargo run --release -p torsion-examples --bin http-server -- --listen 127.0.0.1:8080 --root .
//! curl -v http://127.0.0.1:8080/hello
//! curl --data-binary @Cargo.toml http://127.0.0.1:8080/echo
//! cargo run --release -p torsion-examples --bin http-server -- --listen 127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use clap::Parser;
use torsion_examples::http_files::router;
use torsion_examples::{
    announce_listening, exit_with, init_logging, run_failure, startup_failure, EXIT_FAILURE, EXIT_USAGE,
};
use torsion_protocols::http::{HttpConfig, HttpServer};
use torsion_reactor::Reactor;
use tracing::info;

/// Serves /hello, POST /echo and (with --root) static files over HTTP/1.1. Stops gracefully on
/// SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to listen: an endpoint such as `HOST:PORT`, `[V6]:PORT`, `tcp:PORT`, `unix:PATH`,
    /// `unix:@NAME`, `ssl:PORT:...` or `systemd:...` (--help shows the grammar). Port 0 picks a
    /// free port; the first line of stdout tells which.
    #[arg(long, value_name = "ENDPOINT", default_value = "127.0.0.1:8080", long_help = torsion_examples::endpoint_cli::SERVER_HELP)]
    listen: String,

    /// Serve the files under this directory for GET and HEAD (no directory listings;
    /// `index.html` for a directory).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Largest request body accepted, in bytes (0: no limit; `POST /echo` streams any size).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    max_body: u64,

    /// Log one line per request at info (on by default; `--access-log false` for benchmarks).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    access_log: bool,

    /// Reactor threads: 1 runs one reactor on the main thread; N > 1 runs N reactors, each
    /// accepting on its own SO_REUSEPORT socket; 0 runs one per core.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,

    #[command(flatten)]
    tls: torsion_examples::tls_cli::TlsServerArgs,
}

/// A reactor's graceful-stop step for its HTTP server.
type StopHook = Box<dyn FnOnce(&mut torsion_reactor::LoopCtx<'_>)>;

thread_local! {
    /// This reactor thread's server's graceful stop (with --threads), set when the thread's
    /// server is built and run by the `before_shutdown` hook installed before it.
    static GRACEFUL_STOP: std::cell::RefCell<Option<StopHook>> =
        const { std::cell::RefCell::new(None) };
}

/// The server's config from the options.
fn http_config(args: &Args) -> HttpConfig {
    HttpConfig::default()
        .access_log(args.access_log)
        .max_body_size((args.max_body > 0).then_some(args.max_body))
}

/// Every core: one HTTP server per reactor thread, each with its own graceful stop.
fn serve_threads(args: &Args, endpoint: &torsion_reactor::ServerEndpoint) -> Result<(), (i32, String)> {
    if args.tls.tls_cert.is_some() {
        return Err((EXIT_USAGE, "--threads N with TLS is not supported yet: use --threads 1".into()));
    }
    let addr = torsion_examples::endpoint_cli::pool_address(endpoint)?;
    let (access_log, max_body, root) = (args.access_log, args.max_body, args.root.clone());
    torsion_examples::pool_cli::serve_on_pool_with(
        &addr,
        args.threads,
        "http server",
        |reactor, _index| {
            reactor.before_shutdown(|lx, _deadline| {
                if let Some(stop) = GRACEFUL_STOP.with(|s| s.borrow_mut().take()) {
                    stop(lx);
                }
            });
        },
        move |_reactor| {
            let config = HttpConfig::default()
                .access_log(access_log)
                .max_body_size((max_body > 0).then_some(max_body));
            let root: Option<Rc<Path>> = root.as_deref().map(Rc::from);
            let server = HttpServer::new(move |_peer| router(root.as_ref())).with_config(config);
            let stop = server.graceful_stop_hook();
            GRACEFUL_STOP.with(|s| *s.borrow_mut() = Some(Box::new(stop)));
            server
        },
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(serve(&args))
}

fn serve(args: &Args) -> Result<(), (i32, String)> {
    let endpoint = torsion_examples::endpoint_cli::parse_server(&args.listen)
        .map_err(|message| (EXIT_USAGE, message))?;
    let tls = args.tls.config()?;
    if let Some(root) = &args.root {
        if !root.is_dir() {
            return Err((EXIT_USAGE, format!("--root {}: not a directory", root.display())));
        }
    }
    if args.threads != 1 {
        return serve_threads(args, &endpoint);
    }
    let mut reactor = Reactor::new().map_err(startup_failure)?;
    let config = http_config(args);
    let root: Option<Rc<Path>> = args.root.as_deref().map(Rc::from);
    let server = HttpServer::new(move |_peer| router(root.as_ref())).with_config(config);
    // HTTPS: the same server over TLS (--tls-cert/--tls-key, or an ssl: endpoint).
    server.install_graceful_stop(&mut reactor);
    let port = torsion_examples::endpoint_cli::listen(&mut reactor, &endpoint, tls, server)?;
    reactor.install_signal_handlers().map_err(startup_failure)?;

    let local = port.local_addr().clone();
    announce_listening(&local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    info!(%local, "http server listening; Ctrl-C (SIGINT) or SIGTERM stops it");
    reactor.run().map_err(run_failure)?;
    info!("stopped");
    Ok(())
}
