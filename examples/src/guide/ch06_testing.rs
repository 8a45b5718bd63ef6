//! # Chapter 6: testing protocols without sockets
//!
//! Every example in this guide that runs uses [`Harness`]: Twisted's `StringTransport` and
//! `MemoryReactorClock` as one fake. It is a real [`Reactor`] on a [`ManualClock`] whose
//! connections run over in-memory sockets: the write buffer, watermarks, producers,
//! half-close and timers are the production ones; only the socket is simulated. The test plays
//! the peer, and every peer action runs the reactor until it is idle, so its effects are
//! visible when the call returns. No test sleeps, and none is flaky.
//!
//! | the peer... | harness call |
//! |---|---|
//! | connects (through your factory) | [`accept(&mut factory)`](torsion_reactor::testing::Harness::accept), [`connect(&mut client_factory)`](torsion_reactor::testing::Harness::connect) |
//! | sends bytes / half-closes / closes / resets | [`feed`](torsion_reactor::testing::Harness::feed), [`feed_eof`](torsion_reactor::testing::Harness::feed_eof), [`close_peer`](torsion_reactor::testing::Harness::close_peer), [`reset_peer`](torsion_reactor::testing::Harness::reset_peer) |
//! | reads what you wrote | [`take_written`](torsion_reactor::testing::Harness::take_written) |
//! | reads slowly, or not at all | [`set_peer_window(id, Some(n))`](torsion_reactor::testing::Harness::set_peer_window) |
//! | waits | [`advance(duration)`](torsion_reactor::testing::Harness::advance) |
//!
//! and to look at the result: [`fin_sent`](torsion_reactor::testing::Harness::fin_sent), [`rst_sent`](torsion_reactor::testing::Harness::rst_sent),
//! [`is_open`](torsion_reactor::testing::Harness::is_open), [`disconnect_reason`](torsion_reactor::testing::Harness::disconnect_reason), and
//! [`calls`](torsion_reactor::testing::Harness::calls), every callback the reactor made on the protocol, in order.
//!
//! ## Lifecycle and time
//! A protocol timer (`cx.set_timer(delay)`, delivered to `timer_fired`) fires when the
//! manual clock is advanced past it:
//!
//! ```
//! use std::time::Duration;
//! use torsion_reactor::testing::{Call, Harness};
//! use torsion_reactor::{Ctx, DisconnectReason, Protocol, TimerId};
//!
//! /// Says "ping" every 30 seconds; a peer that says nothing for 3 pings is dropped.
//! struct Pinger {
//!     silent: u32,
//! }
//!
//! impl Protocol for Pinger {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         cx.set_timer(Duration::from_secs(30));
//!     }
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {
//!         self.silent = 0;
//!     }
//!     fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
//!         self.silent += 1;
//!         if self.silent > 3 {
//!             cx.transport().lose_connection_with(DisconnectReason::TimedOut);
//!             return;
//!         }
//!         cx.transport().write(b"ping\n");
//!         cx.set_timer(Duration::from_secs(30));
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(Pinger { silent: 0 })).unwrap();
//! h.advance(Duration::from_secs(29));
//! assert!(h.take_written(id).is_empty());
//! h.advance(Duration::from_secs(1));
//! assert_eq!(h.take_written(id), b"ping\n");
//! h.feed(id, b"pong\n");
//! for _ in 0..4 {
//!     h.advance(Duration::from_secs(30));
//! }
//! assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
//! assert!(h.fin_sent(id));
//! assert_eq!(h.calls(id)[0], Call::Made);
//! assert!(matches!(h.calls(id).last(), Some(Call::Lost(DisconnectReason::TimedOut))));
//! ```
//!
//! The harness's reactor is yours too: [`Harness::reactor`] reaches loop-level timers
//! (`call_later`, `looping_call`), settings and `stop`, and [`Harness::clock`] is the
//! [`ManualClock`] they run on. A `ManualClock` also works on its own, for a
//! [`Reactor::with_clock`] you drive yourself.
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use std::time::Duration;
//! use torsion_reactor::testing::Harness;
//!
//! let mut h = Harness::new();
//! let ticks = Rc::new(Cell::new(0));
//! let counter = ticks.clone();
//! h.reactor().looping_call(Duration::from_secs(1), move |_cx| counter.set(counter.get() + 1));
//! h.run(); // a looping call runs once at once...
//! assert_eq!(ticks.get(), 1);
//! h.advance(Duration::from_secs(3)); // ...then every interval (a late loop skips missed ones)
//! assert!(ticks.get() >= 2);
//! ```
//!
//! ## A slow peer
//! [`set_peer_window`](torsion_reactor::testing::Harness::set_peer_window) limits how many bytes the peer accepts
//! before it stops reading, and each [`take_written`](torsion_reactor::testing::Harness::take_written) opens the window
//! by what it took: a slow reader in two calls. Chapter 5's examples are built on it; the
//! essence:
//!
//! ```
//! use torsion_reactor::testing::{Call, Harness, Upper};
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(Upper)).unwrap();
//! h.set_peer_window(id, Some(0));
//! h.feed(id, &[b'a'; 70 * 1024]); // 70 KiB echoed into a full socket: above 64 KiB
//! assert_eq!(h.calls(id).last(), Some(&Call::PauseProducing));
//! assert!(h.take_written(id).is_empty()); // nothing reached the peer
//! ```
//!
//! ## Every split of the stream
//! The bug every framing protocol has at first: it works when a message arrives in one
//! `data_received` and breaks when it is split. [`chunkings`] gives every way a test should
//! split an input (each fixed chunk size up to a maximum, plus seeded random splits) and
//! [`assert_chunking_invariant`] checks that a decode gives the same result for all of them.
//! With the harness, "decode" can be a whole protocol:
//!
//! ```
//! use torsion_protocols::{LineCtx, LineHandler, LineReceiver};
//! use torsion_reactor::testing::{assert_chunking_invariant, Harness};
//!
//! struct Count {
//!     n: usize,
//! }
//! impl LineHandler for Count {
//!     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
//!         self.n += 1;
//!         lx.send_line(format!("{} {}", self.n, line.len()).as_bytes());
//!     }
//! }
//!
//! let input = b"first\r\nsecond line\r\n\r\nlast\r\n";
//! assert_chunking_invariant(input, 8, 50, |pieces| {
//!     let mut h = Harness::new();
//!     let id = h.accept(&mut |_| Some(LineReceiver::new(Count { n: 0 }))).unwrap();
//!     for piece in pieces {
//!         h.feed(id, piece);
//!     }
//!     h.take_written(id)
//! });
//! ```
//!
//! and for a pure decoder, no harness at all:
//!
//! ```
//! use torsion_protocols::framing::NetstringDecoder;
//! use torsion_reactor::testing::{assert_chunking_invariant, chunkings};
//!
//! let input = b"5:hello,0:,3:abc,";
//! assert_eq!(chunkings(input, 4, 2).len(), 4 + 2);
//! assert_chunking_invariant(input, input.len(), 100, |pieces| {
//!     let mut decoder = NetstringDecoder::new();
//!     pieces.iter().flat_map(|p| decoder.feed(p)).collect::<Vec<_>>()
//! });
//! ```
//!
//! ## What the harness does not cover
//! Real sockets: connect errors, address reuse, Unix socket files, signals. Those tests
//! live in the workspace's `tests/` crate and use loopback; the examples in
//! [chapter 2](super::ch02_client) and [chapter 9](super::ch09_unix) show the pattern
//! (listen on port 0 or a temporary path, run the reactor until a callback stops it).
//!
//! Next: [chapter 7, timeouts, limits and throttling](super::ch07_policies).
//!
//! [`Harness`]: torsion_reactor::testing::Harness
//! [`Harness::accept`]: torsion_reactor::testing::Harness::accept
//! [`Harness::connect`]: torsion_reactor::testing::Harness::connect
//! [`Harness::feed`]: torsion_reactor::testing::Harness::feed
//! [`Harness::feed_eof`]: torsion_reactor::testing::Harness::feed_eof
//! [`Harness::close_peer`]: torsion_reactor::testing::Harness::close_peer
//! [`Harness::reset_peer`]: torsion_reactor::testing::Harness::reset_peer
//! [`Harness::take_written`]: torsion_reactor::testing::Harness::take_written
//! [`Harness::set_peer_window`]: torsion_reactor::testing::Harness::set_peer_window
//! [`Harness::advance`]: torsion_reactor::testing::Harness::advance
//! [`Harness::fin_sent`]: torsion_reactor::testing::Harness::fin_sent
//! [`Harness::rst_sent`]: torsion_reactor::testing::Harness::rst_sent
//! [`Harness::is_open`]: torsion_reactor::testing::Harness::is_open
//! [`Harness::disconnect_reason`]: torsion_reactor::testing::Harness::disconnect_reason
//! [`Harness::calls`]: torsion_reactor::testing::Harness::calls
//! [`Harness::reactor`]: torsion_reactor::testing::Harness::reactor
//! [`Harness::clock`]: torsion_reactor::testing::Harness::clock
//! [`Reactor`]: torsion_reactor::Reactor
//! [`Reactor::with_clock`]: torsion_reactor::Reactor::with_clock
//! [`ManualClock`]: torsion_reactor::ManualClock
//! [`chunkings`]: torsion_reactor::testing::chunkings
//! [`assert_chunking_invariant`]: torsion_reactor::testing::assert_chunking_invariant
