//! # Chapter 10: Datagrams (UDP)
//!
//! UDP has no connections, so it has its own trait: a [`DatagramProtocol`] owns one socket
//! (Twisted's `DatagramProtocol`, asyncio's `DatagramProtocol`). It is told when the port
//! opens (`started`), gets each datagram with its sender (`datagram_received`), hears ICMP
//! errors about earlier sends (`error_received`, never a reason to close), and is told once
//! when the port stops (`stopped`). Timers, panic isolation and graceful shutdown work as for
//! connections; a panic in `datagram_received` is logged and the port keeps serving, since
//! one bad datagram must not take the port down for everyone else.
//!
//! ## No write buffer
//! [`send_to`](torsion_reactor::DatagramCtx::send_to) hands the datagram to the kernel or
//! says why not ([`SendOutcome`](torsion_reactor::SendOutcome)): nothing is queued.
//! The network drops datagrams anyway, so a queue would not make delivery reliable; it would
//! hide loss and grow memory. Drop it, or keep it and call
//! [`request_writable`](torsion_reactor::DatagramCtx::request_writable), then retry in
//! `writable`.
//!
//! ## An echo and a client, for real on loopback
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use torsion_reactor::{DatagramCtx, DatagramProtocol, Reactor};
//!
//! /// Sends every datagram back where it came from.
//! struct Echo;
//! impl DatagramProtocol for Echo {
//!     fn datagram_received(&mut self, cx: &mut DatagramCtx<'_>, data: &[u8], from: SocketAddr) {
//!         cx.send_to(data, from); // dropped if the kernel's buffer is full: that is UDP
//!     }
//! }
//!
//! /// Sends one datagram when its port opens and stops the reactor with the reply.
//! struct Ask { server: SocketAddr }
//! impl DatagramProtocol for Ask {
//!     fn started(&mut self, cx: &mut DatagramCtx<'_>) {
//!         cx.send_to(b"ping", self.server);
//!         cx.set_timer(Duration::from_secs(5)); // give up if nothing comes back
//!     }
//!     fn datagram_received(&mut self, cx: &mut DatagramCtx<'_>, data: &[u8], _from: SocketAddr) {
//!         cx.stop_with(data.to_vec());
//!     }
//!     fn timer_fired(&mut self, cx: &mut DatagramCtx<'_>, _id: torsion_reactor::TimerId) {
//!         cx.stop_with(b"timed out".to_vec());
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let echo = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Echo)?;
//! reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Ask { server: echo.local_addr() })?;
//! assert_eq!(reactor.run_with_result::<Vec<u8>>()?, Some(b"ping".to_vec()));
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! ## Sizes, connected mode, multicast
//! - A datagram larger than the port's maximum (default 65,507 bytes, settable with
//!   [`UdpOptions`](torsion_reactor::UdpOptions) in
//!   [`listen_udp_with`](torsion_reactor::Reactor::listen_udp_with)) is dropped and counted
//!   ([`dropped_datagrams`](torsion_reactor::DatagramCtx::dropped_datagrams)), never
//!   delivered cut short.
//! - [`connect`](torsion_reactor::DatagramCtx::connect) fixes the peer: then `send` needs no
//!   address, only that peer's datagrams arrive, and a "port unreachable" from it comes back as
//!   `error_received`.
//! - Multicast and broadcast: `join_multicast_v4`/`_v6`, `set_multicast_ttl`,
//!   `set_multicast_loop`, `set_broadcast` on the context.
//!
//! Run the `udp-echo` binary (`--listen udp:9999:interface=127.0.0.1`) and try it with
//! `nc -u 127.0.0.1 9999`; `udp-time` is Twisted's RFC 868 time server.
//!
//! [`DatagramProtocol`]: torsion_reactor::DatagramProtocol
