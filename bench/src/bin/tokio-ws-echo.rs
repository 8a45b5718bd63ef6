//! `tokio-ws-echo`: comparison WebSocket echo server, tokio-tungstenite on tokio's
//! single-threaded (`current_thread`) runtime.
//!
//! One task per connection: accept the handshake, then send every text or binary message back
//! (pings are answered by tungstenite itself). This is the idiomatic tokio-tungstenite echo,
//! the reference bench/ws.sh measures torsion's `ws-echo` against.
//!
//! Usage: `tokio-ws-echo [--listen 127.0.0.1:0]`. The first line on standard output is
//! `listening on <addr>`.

use std::io;
use std::net::SocketAddr;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

/// tokio-tungstenite WebSocket echo server for the torsion benchmark.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on (port 0 lets the kernel choose).
    #[arg(long, default_value = torsion_bench::DEFAULT_LISTEN)]
    listen: SocketAddr,
}

/// Echoes every data message on one connection until it closes.
async fn echo(stream: TcpStream) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    while let Some(message) = ws.next().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            ws.send(message).await?;
        }
    }
    Ok(())
}

async fn serve(listen: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    torsion_bench::announce_listening(listener.local_addr()?)?;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                stream.set_nodelay(true)?;
                tokio::spawn(async move {
                    let _ = echo(stream).await;
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(serve(cli.listen))
}
