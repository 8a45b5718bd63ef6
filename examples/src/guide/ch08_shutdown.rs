//! # Chapter 8: shutting down cleanly
//!
//! A server that is stopped should not cut anyone off mid-message: it should stop accepting,
//! finish sending what it owes, close each connection cleanly, and only then exit, within a
//! bounded time. That is what a torsion *graceful stop* does.
//!
//! ## Asking for a stop
//! | from | call |
//! |---|---|
//! | the thread that owns the reactor, before or between runs | [`Reactor::stop`] |
//! | any callback (protocol, timer, hook) | `cx.stop_reactor()`, `cx.stop_with(value)`, `cx.stop_with_error(e)` |
//! | another thread | [`ReactorHandle::stop`] |
//! | the user | Ctrl-C or SIGTERM, after [`Reactor::install_signal_handlers`]; a second signal aborts every connection at once |
//!
//! ## What a graceful stop does
//! 1. The [`before_shutdown`](torsion_reactor::Reactor::before_shutdown) triggers run, in the
//!    order they were added, while everything is still open; each gets the deadline. This is
//!    where a chat server says goodbye ([chapter 3](super::ch03_chat)) or a server stops
//!    taking new work.
//! 2. Clients already queued on a listener (connected, not yet accepted) are accepted, so
//!    that they are closed cleanly in step 3 instead of reset by the listener's close (up to
//!    4096 per listener, [`Reactor::set_shutdown_drain_max`]).
//!    Listeners close (a Unix socket file is removed), pending outbound connects are
//!    cancelled (their factories hear `client_connection_failed`).
//! 3. Every connection is closed as by `lose_connection`: its buffer is flushed, FIN is
//!    sent, and its protocol gets `connection_lost(Clean)`.
//! 4. Whatever is still open at the deadline (5 s by default,
//!    [`Reactor::set_shutdown_timeout`]) is aborted: `connection_lost(Aborted)`.
//! 5. [`Reactor::run`] returns (with the value or error given to `stop_with*`, if any).
//!
//! ```
//! use torsion_protocols::Echo;
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::DisconnectReason;
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(Echo)).unwrap();
//! h.set_peer_window(id, Some(0)); // a peer that is not reading right now
//! h.feed(id, b"owed to the peer");
//!
//! h.reactor().before_shutdown(|cx, deadline| {
//!     println!("stopping; {:?} left", deadline - cx.now());
//! });
//! h.reactor().stop();
//! h.run();
//! assert!(h.is_open(id)); // still flushing: the reply is owed
//! h.set_peer_window(id, None); // the peer reads again...
//! assert_eq!(h.take_written(id), b"owed to the peer");
//! assert!(h.fin_sent(id)); // ...then gets a clean close
//! assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
//! ```
//!
//! ## The deadline
//! A peer that never reads must not hold the server up forever:
//!
//! ```
//! use std::time::Duration;
//! use torsion_protocols::Echo;
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::DisconnectReason;
//!
//! let mut h = Harness::new();
//! h.reactor().set_shutdown_timeout(Duration::from_secs(2));
//! let id = h.accept(&mut |_| Some(Echo)).unwrap();
//! h.set_peer_window(id, Some(0)); // never reads
//! h.feed(id, b"never delivered");
//! h.reactor().stop();
//! h.run();
//! h.advance(Duration::from_millis(1999));
//! assert!(h.is_open(id));
//! h.advance(Duration::from_millis(1));
//! assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Aborted));
//! assert!(h.rst_sent(id));
//! ```
//!
//! ## Lingering close
//! After a clean close the reactor does not drop the socket at once. If the peer is still
//! sending (a request we did not read, a pipelined command), closing a socket with unread
//! input makes the kernel send a reset, and a reset can destroy the reply the peer has not
//! read yet. So a closed connection *lingers*: its protocol has already had
//! `connection_lost(Clean)`, while the reactor keeps reading and discarding input until the
//! peer's FIN (for at most 5 s or 1 MiB). `run` waits for lingering sockets too, within the
//! shutdown deadline, so a stopped server does not reset the last replies it sent.
//!
//! A protocol that knows the peer sends nothing more (it said so in its protocol, and
//! everything it sent has been read) calls `cx.transport().expect_no_more_input()`: the clean
//! close then skips lingering, unless input is known to be waiting (the last read did not
//! drain the socket), which saves a wake-up and a read per connection. The HTTP server does
//! this for a request with `Connection: close` read to its end, never when it is the server
//! that decides to close.
//!
//! ```
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Ctx, Protocol};
//!
//! /// Answers the first chunk and hangs up.
//! struct OneShot;
//! impl Protocol for OneShot {
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
//!         cx.transport().write(b"bye\n");
//!         cx.transport().lose_connection();
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(OneShot)).unwrap();
//! h.feed(id, b"request");
//! assert!(h.fin_sent(id));
//! assert!(!h.is_open(id)); // the protocol is done...
//! assert_eq!(h.reactor().connection_count(), 0);
//! assert_eq!(h.reactor().source_count(), 1); // ...the socket lingers
//! h.feed(id, b"more input, read and dropped");
//! assert!(!h.rst_sent(id));
//! h.feed_eof(id); // the peer closes too: now the socket goes
//! assert_eq!(h.reactor().source_count(), 0);
//! assert_eq!(h.take_written(id), b"bye\n");
//! ```
//!
//! ## A real server's shutdown
//! Put together, as in the `chat-server` binary: signals, a goodbye, and an exit code.
//!
//! ```no_run
//! use std::time::Duration;
//! use torsion_protocols::Echo;
//! use torsion_reactor::Reactor;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut reactor = Reactor::new()?;
//!     reactor.set_shutdown_timeout(Duration::from_secs(10));
//!     reactor.listen_tcp("127.0.0.1:8000".parse()?, |_| Some(Echo))?;
//!     reactor.install_signal_handlers()?; // SIGINT/SIGTERM: graceful; a second one: abort
//!     reactor.before_shutdown(|_cx, deadline| {
//!         eprintln!("shutting down; connections are aborted at {deadline:?}");
//!     });
//!     reactor.run()?; // returns once every connection is closed
//!     eprintln!("stopped cleanly");
//!     Ok(())
//! }
//! ```
//!
//! Next: [chapter 9, Unix sockets](super::ch09_unix).
//!
//! [`Reactor::stop`]: torsion_reactor::Reactor::stop
//! [`Reactor::run`]: torsion_reactor::Reactor::run
//! [`Reactor::set_shutdown_timeout`]: torsion_reactor::Reactor::set_shutdown_timeout
//! [`Reactor::install_signal_handlers`]: torsion_reactor::Reactor::install_signal_handlers
//! [`ReactorHandle::stop`]: torsion_reactor::ReactorHandle::stop
//! [`Reactor::set_shutdown_drain_max`]: torsion_reactor::Reactor::set_shutdown_drain_max
