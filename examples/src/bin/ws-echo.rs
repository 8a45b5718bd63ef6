//! `ws-echo`: a WebSocket echo server built from [`torsion_protocols::websocket`].
//!
//! The idea it teaches is the **upgrade**: an HTTP server whose handler, for `GET /` (any
//! path), checks the WebSocket handshake, answers `101 Switching Protocols` and from then on
//! speaks frames; the application is a [`WsHandler`] that gets whole messages and sends them
//! back. Flow control is the transport's: while a client is not reading, the server stops
//! reading from it (the write buffer is above its high mark) and starts again once it drains.
//!
//! `listening on <addr>` is the first line of stdout; exit code 2 for setup failures;
//! SIGINT/SIGTERM stop it.
//!
//! ```text
//! cargo run --release -p torsion-examples --bin ws-echo -- --listen 127.0.0.1:9001
//! python3 -m websockets ws://127.0.0.1:9001/
//! ```

use std::process::ExitCode;
use std::rc::Rc;

use clap::Parser;
use torsion_examples::{
    announce_listening, exit_with, init_logging, run_failure, startup_failure, EXIT_FAILURE, EXIT_USAGE,
};
use torsion_protocols::http::{HttpConfig, HttpServer, Request};
use torsion_protocols::websocket::{Message, Route, WsConfig, WsCtx, WsHandler, WsServer};
use torsion_reactor::{Address, Reactor};
use tracing::info;

/// Echoes every WebSocket message (text and binary) on any path. Stops on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to listen: an endpoint such as `HOST:PORT`, `[V6]:PORT`, `tcp:PORT`, `unix:PATH`,
    /// `unix:@NAME`, `ssl:PORT:...` or `systemd:...` (--help shows the grammar). Port 0 picks a
    /// free port; the first line of stdout tells which.
    #[arg(long, value_name = "ENDPOINT", default_value = "127.0.0.1:9001", long_help = torsion_examples::endpoint_cli::SERVER_HELP)]
    listen: String,

    /// Largest message accepted, in bytes (over it: close 1009).
    #[arg(long, value_name = "BYTES", default_value_t = torsion_protocols::websocket::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
}

/// Sends each message back as it came.
struct Echo;

impl WsHandler for Echo {
    fn message_received(&mut self, wx: &mut WsCtx<'_, '_>, message: Message<'_>) {
        // A send over the high mark pauses reading this client until it drains (the
        // protocol does it); an echo has nothing else to hold back.
        match message {
            Message::Text(t) => wx.send_text(t),
            Message::Binary(b) => wx.send_binary(b),
        };
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(serve(&args))
}

fn serve(args: &Args) -> Result<(), (i32, String)> {
    let endpoint = torsion_examples::endpoint_cli::parse_server(&args.listen)
        .map_err(|message| (EXIT_USAGE, message))?;
    let mut reactor = Reactor::new().map_err(startup_failure)?;
    let ws = Rc::new(WsConfig::default().max_message(args.max_message).max_frame(args.max_message));
    let server = HttpServer::new(move |_peer: &Address| {
        WsServer::new(ws.clone(), |_request: &Request| Route::Upgrade(Echo))
    })
    .with_config(HttpConfig::default().access_log(false));
    server.install_graceful_stop(&mut reactor);
    let port = torsion_examples::endpoint_cli::listen(&mut reactor, &endpoint, None, server)?;
    reactor.install_signal_handlers().map_err(startup_failure)?;
    let local = port.local_addr().clone();
    announce_listening(&local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    info!(%local, "websocket echo server listening; Ctrl-C (SIGINT) or SIGTERM stops it");
    reactor.run().map_err(run_failure)?;
    info!("stopped");
    Ok(())
}
