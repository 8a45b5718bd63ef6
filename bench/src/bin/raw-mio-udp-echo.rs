//! `raw-mio-udp-echo`: the hand-written baseline for the UDP benchmark: one mio `UdpSocket`,
//! `recv_from` until `WouldBlock`, each datagram sent straight back with `send_to` (a reply
//! the kernel cannot take now is dropped, as torsion's udp-echo does).
//!
//! Usage: `raw-mio-udp-echo [--listen 127.0.0.1:0]`. The first line on standard output is
//! `listening on <addr>`. SIGTERM ends it (default disposition).

use std::io;
use std::net::SocketAddr;

use clap::Parser;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

/// Raw mio UDP echo server (benchmark baseline).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on: IP:PORT (port 0 lets the kernel choose).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let mut socket = UdpSocket::bind(cli.listen)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cli.listen)))?;
    let mut poll = Poll::new()?;
    poll.registry().register(&mut socket, Token(0), Interest::READABLE)?;
    torsion_bench::announce_listening(socket.local_addr()?)?;
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; 65_536];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let _ = socket.send_to(&buf[..n], from);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors and the like: nothing to do for an echo.
                Err(_) => {}
            }
        }
    }
}
