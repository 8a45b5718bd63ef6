//! `chat-server`: a chat room you can join with `nc`, `telnet` or `socat`.
//!
//! The idea it teaches is **shared state in the factory**: the room (who is online) belongs to
//! the factory, every connection's protocol holds a handle on it, and the room stores
//! connection ids, not sockets. A message is broadcast by looking each member up with
//! `cx.transport_for(id)` and writing to it. This is safe without locks because the reactor is
//! single-threaded and never runs a callback from inside another. See
//! [`torsion_examples::chat`] for the protocol and its exact lines.
//!
//! Around that, what a public server needs: lines up to 4096 bytes (longer: an error, then a
//! close), each client's write buffer capped at 1 MiB (a client that stops reading is
//! disconnected instead of eating memory), an optional idle timeout, and a cap on clients
//! (`Server full`). The same conventions as `echo-server`: the first line of stdout is
//! `listening on <addr>`, logs go to stderr (`RUST_LOG`), SIGINT/SIGTERM stop gracefully
//! (every client gets what was queued for it, then EOF; exit 0), and a setup error is one line
//! on stderr with exit code 2.
//!
//! # One thread, on purpose
//! Unlike `echo-server` and `frame-echo`, this server has no `--threads`: a room is one
//! ordered conversation. On one reactor every member sees every message in the same order,
//! and the room is plain state no lock guards. Spread over a pool of reactors, each broadcast
//! would be a cross-reactor call per reactor, and two messages sent at the same moment from
//! two reactors could reach members in different orders; keeping one order would mean running
//! the room as a service on one thread, which is this server again. One reactor also carries
//! a great many chat clients: a room's cost is the broadcast, not the cores.
//!
//! ```text
//! cargo run --release -p torsion-examples --bin chat-server      # listens on 127.0.0.1:8000
//! nc 127.0.0.1 8000                                              # in two or more terminals
//! cargo run -p torsion-examples --bin chat-server -- --listen 127.0.0.1:0 --idle-timeout 300
//! cargo run -p torsion-examples --bin chat-server -- --listen unix:/tmp/chat.sock   # nc -U /tmp/chat.sock
//! cargo run -p torsion-examples --bin chat-server -- --web 127.0.0.1:8080  # and open http://127.0.0.1:8080/
//! ```
//!
//! # In a browser
//! With `--web ADDR` the same room is also served to browsers ([`torsion_examples::chat_web`]):
//! `GET /` is a self-contained page (transcript, input box, who is online, connection state,
//! reconnecting with backoff) and `/ws` its WebSocket; browser and `nc` users talk to each
//! other under the same rules.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::Parser;
use torsion_examples::chat::{self, ChatConfig, ChatServer, DEFAULT_MAX_CLIENTS};
use torsion_examples::chat_web;
use torsion_examples::{
    announce_listening, exit_with, init_logging, listen_error, parse_endpoint, run_failure, startup_failure,
    EXIT_FAILURE, EXIT_USAGE,
};
use torsion_reactor::{Address, Reactor, UnixAddr};
use tracing::info;

/// A chat room over TCP or a Unix socket: connect with `nc HOST PORT` (or `nc -U PATH`),
/// choose a name, talk. Commands: /who, /nick NEW, /me ACTION, /quit. Stops gracefully on
/// SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to listen: an endpoint such as `HOST:PORT`, `[V6]:PORT`, `tcp:PORT`, `unix:PATH`,
    /// `unix:@NAME`, `ssl:PORT:...` or `systemd:...` (--help shows the grammar). Port 0 picks a
    /// free port; the first line of stdout tells which.
    #[arg(long, value_name = "ENDPOINT", default_value = "127.0.0.1:8000", long_help = torsion_examples::endpoint_cli::SERVER_HELP)]
    listen: String,
    #[command(flatten)]
    tls: torsion_examples::tls_cli::TlsServerArgs,
    /// The most clients connected at once; one more reads `Server full` and is closed. With
    /// `--web`, the web port has the same cap, counted apart (one more gets a 503).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLIENTS,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    max_clients: usize,
    /// Disconnect a client that sends nothing for SECS seconds (default: never); browsers on
    /// `--web` too.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: Option<u64>,
    /// Also serve the room to browsers on this address (`HOST:PORT`; port 0 picks one): `GET /`
    /// is the chat page, `/ws` its WebSocket. The second line of stdout is `web on
    /// http://<addr>/`.
    #[arg(long, value_name = "ADDR")]
    web: Option<String>,
}

/// The command a user types to join: `nc 127.0.0.1 8000`, `nc -U /tmp/chat.sock`.
fn connect_hint(local: &Address) -> String {
    match local {
        Address::Inet(inet) => format!("nc {} {}", inet.ip(), inet.port()),
        Address::Unix(UnixAddr::Path(path)) => format!("nc -U {}", path.display()),
        Address::Unix(UnixAddr::Abstract(name)) => {
            format!("socat - ABSTRACT-CONNECT:{}", String::from_utf8_lossy(name))
        }
        Address::Unix(other) => format!("socat - UNIX-CONNECT:{other}"),
    }
}

/// The second line of stdout, `web on http://<addr>/`, flushed at once (tests read it).
fn announce_web(addr: &Address) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "web on http://{addr}/")?;
    out.flush()
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(serve(&args))
}

/// Runs the server until a signal stops it. Errors carry the exit code and a one-line message.
fn serve(args: &Args) -> Result<(), (i32, String)> {
    let endpoint = torsion_examples::endpoint_cli::parse_server(&args.listen)
        .map_err(|message| (EXIT_USAGE, message))?;
    let web = args.web.as_deref().map(parse_endpoint).transpose().map_err(|message| (EXIT_USAGE, message))?;

    let config = ChatConfig {
        max_clients: args.max_clients,
        idle_timeout: args.idle_timeout.map(Duration::from_secs),
        ..ChatConfig::default()
    };
    let mut reactor = Reactor::new().map_err(startup_failure)?;
    // Small reads per turn: a burst from the talkers is fanned out in slices, not megabytes.
    chat::tune_reactor(&mut reactor);
    // The factory owns the room; every protocol it builds shares it.
    let server = ChatServer::new(config.clone());
    let room = server.room();
    let port = torsion_examples::endpoint_cli::listen(&mut reactor, &endpoint, args.tls.config()?, server)?;
    let web_port = match &web {
        Some(web) => Some(
            chat_web::listen_web(&mut reactor, web, room.clone(), &config)
                .map_err(|e| (EXIT_USAGE, listen_error(web, &e)))?,
        ),
        None => None,
    };
    reactor.install_signal_handlers().map_err(startup_failure)?;
    // On SIGINT/SIGTERM, before any connection is closed: tell everyone why.
    let announcer = room.clone();
    reactor.before_shutdown(move |cx, _deadline| announcer.announce(cx, "* Server shutting down"));

    let local = port.local_addr().clone();
    announce_listening(&local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    info!(%local, "chat server listening; connect with `{}`", connect_hint(&local));
    if let Some(web) = &web_port {
        let web = web.local_addr();
        announce_web(web).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
        info!(%web, "chat page on http://{web}/");
    }

    reactor.run().map_err(run_failure)?;
    info!(online = room.len(), "stopped");
    Ok(())
}
