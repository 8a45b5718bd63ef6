//! # Chapter 1: an echo server
//!
//! Three pieces make every torsion server: a **protocol** (what one connection does), a
//! **factory** (builds a protocol for each accepted connection) and the **reactor** (the loop
//! that owns the sockets and calls your protocol).
//!
//! ## The protocol
//! A [`Protocol`] gets callbacks; only `data_received` is required. Each callback is lent a
//! [`Ctx`], and `cx.transport()` is this connection's [`Transport`]: `write` queues bytes
//! (they leave right after the callback returns, coalesced with other writes), and
//! `lose_connection` closes after everything queued has been sent.
//!
//! `data` may hold any piece of the stream, from one byte to many messages: TCP has no
//! message boundaries. An echo server does not care; [chapter 4](super::ch04_framing) is about
//! protocols that do.
//!
//! ```
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Ctx, DisconnectReason, Protocol};
//!
//! /// Writes back every byte it receives.
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         cx.transport().write(data);
//!     }
//! }
//!
//! // The harness plays the peer over an in-memory socket (chapter 6).
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_peer| Some(Echo)).unwrap();
//! h.feed(id, b"hello");
//! assert_eq!(h.take_written(id), b"hello");
//! // The peer closes its side: by default we finish writing and close cleanly.
//! h.feed_eof(id);
//! assert!(h.fin_sent(id));
//! assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
//! ```
//!
//! ## The other callbacks
//! All have defaults. `connection_made` runs once, first; `eof_received` when the peer
//! half-closes (return `true` to keep writing); `connection_lost` exactly once, last, with a
//! [`DisconnectReason`] (a disconnect is an event, not an error).
//!
//! ```
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Ctx, DisconnectReason, Protocol};
//!
//! struct Greeter {
//!     lines: usize,
//! }
//!
//! impl Protocol for Greeter {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         let peer = cx.transport().peer_addr().expect("a connected peer");
//!         cx.transport().write(format!("hello {peer}\n").as_bytes());
//!     }
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         self.lines += data.iter().filter(|&&b| b == b'\n').count();
//!         if self.lines >= 2 {
//!             cx.transport().write(b"that's enough\n");
//!             cx.transport().lose_connection(); // flushes first, then FIN
//!         }
//!     }
//!     fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
//!         assert!(reason.is_clean());
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(Greeter { lines: 0 })).unwrap();
//! assert!(h.take_written(id).starts_with(b"hello 127.0.0.2:"));
//! h.feed(id, b"one\ntw");
//! h.feed(id, b"o\n");
//! assert_eq!(h.take_written(id), b"that's enough\n");
//! assert!(h.fin_sent(id));
//! ```
//!
//! ## The factory
//! A factory is called once per accepted connection with the peer's [`Address`] and returns
//! the protocol, or `None` to refuse the connection. Any closure
//! `FnMut(Address) -> Option<P>` is one, for any protocol type `P`: no boxing. For shared state
//! write a struct implementing [`Factory`] ([chapter 3](super::ch03_chat)).
//!
//! ```
//! use torsion_reactor::testing::{Harness, Upper};
//! use torsion_reactor::Address;
//!
//! let mut h = Harness::new();
//! // Refuse anyone not on the loopback network.
//! let mut factory = |peer: Address| peer.inet().filter(|a| a.ip().is_loopback()).map(|_| Upper);
//! let id = h.accept(&mut factory).expect("127.0.0.2 is loopback");
//! h.feed(id, b"shout");
//! assert_eq!(h.take_written(id), b"SHOUT");
//! ```
//!
//! ## Running it
//! [`Reactor::listen_tcp`] binds, listens and registers the factory; `port.local_addr()` is
//! the real address (useful with port 0). [`Reactor::install_signal_handlers`] makes Ctrl-C
//! (SIGINT) and SIGTERM start a graceful stop: stop accepting, flush and close every
//! connection, then [`Reactor::run`] returns `Ok(())`. A second Ctrl-C aborts what is left.
//!
//! ```no_run
//! use torsion_protocols::Echo; // the same protocol, ready-made
//! use torsion_reactor::Reactor;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut reactor = Reactor::new()?;
//!     let port = reactor.listen_tcp("127.0.0.1:8000".parse()?, |_peer| Some(Echo))?;
//!     println!("listening on {}", port.local_addr());
//!     reactor.install_signal_handlers()?;
//!     reactor.run()?; // until Ctrl-C
//!     Ok(())
//! }
//! ```
//!
//! Setup errors (address in use, permission denied) come back from `listen_tcp` as a
//! [`torsion_reactor::Error`]; nothing in a running connection does. The `echo-server`
//! binary is this program plus argument parsing, logging (`RUST_LOG=debug` shows each
//! connection) and exit codes:
//!
//! ```sh
//! cargo run -p torsion-examples --bin echo-server -- --listen 127.0.0.1:8000
//! nc 127.0.0.1 8000
//! ```
//!
//! Next: [chapter 2, a client](super::ch02_client).
//!
//! [`Protocol`]: torsion_reactor::Protocol
//! [`Ctx`]: torsion_reactor::Ctx
//! [`Transport`]: torsion_reactor::Transport
//! [`DisconnectReason`]: torsion_reactor::DisconnectReason
//! [`Address`]: torsion_reactor::Address
//! [`Factory`]: torsion_reactor::Factory
//! [`Reactor::listen_tcp`]: torsion_reactor::Reactor::listen_tcp
//! [`Reactor::install_signal_handlers`]: torsion_reactor::Reactor::install_signal_handlers
//! [`Reactor::run`]: torsion_reactor::Reactor::run
