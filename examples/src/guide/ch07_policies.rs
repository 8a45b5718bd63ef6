//! # Chapter 7: timeouts, limits and throttling
//!
//! A server on the public internet meets peers that connect and say nothing, open ten
//! thousand connections, or send as fast as the link allows. Twisted answers with
//! `policies.py`, wrappers that compose around any protocol or factory; so does torsion
//! ([`torsion_protocols::policies`]). Every limit has a default, a setter (`set_*`) and a
//! builder form (`with_*`).
//!
//! | policy | wraps | Twisted name | default |
//! |---|---|---|---|
//! | [`TimeoutProtocol`] | a protocol | `TimeoutMixin`, `TimeoutProtocol` | given per use |
//! | [`TimeoutFactory`] | a factory | `TimeoutFactory` | 30 minutes idle |
//! | [`LimitConnectionsFactory`] | a factory | `LimitTotalConnectionsFactory`, `LimitConnectionsByPeer` | 10,000 total, 100 per IP |
//! | [`ThrottlingFactory`] | a factory | `ThrottlingFactory` | unlimited until set |
//!
//! ## Idle timeouts
//! [`TimeoutProtocol`] closes a connection that received nothing for a while, with
//! [`DisconnectReason::TimedOut`] (flushing first; aborted 15 s later if the flush is stuck).
//! The wrapped protocol can change its own timeout through a [`TimeoutHandle`] (Twisted's
//! `setTimeout`), and `with_on_timeout` replaces the close with your own action:
//!
//! ```
//! use std::time::Duration;
//! use torsion_protocols::policies::{TimeoutHandle, TimeoutProtocol};
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Address, Ctx, DisconnectReason, Protocol};
//!
//! /// 10 seconds to log in; after that, no timeout.
//! struct Login {
//!     timeout: TimeoutHandle,
//! }
//!
//! impl Protocol for Login {
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         if data.starts_with(b"LOGIN") {
//!             self.timeout.set_timeout(cx, None);
//!             cx.transport().write(b"welcome\n");
//!         }
//!     }
//! }
//!
//! /// The factory: a plain `fn` is a closure factory too.
//! fn build(_peer: Address) -> Option<TimeoutProtocol<Login>> {
//!     let protocol = TimeoutProtocol::build(Some(Duration::from_secs(10)), |timeout| Login { timeout })
//!         .with_on_timeout(|_login, cx| {
//!             cx.transport().write(b"too slow\n");
//!             cx.transport().lose_connection_with(DisconnectReason::TimedOut);
//!         });
//!     Some(protocol)
//! }
//!
//! let mut h = Harness::new();
//! let slow = h.accept(&mut build).unwrap();
//! let quick = h.accept(&mut build).unwrap();
//! h.feed(quick, b"LOGIN bob");
//! h.advance(Duration::from_secs(10));
//! assert_eq!(h.take_written(slow), b"too slow\n");
//! assert_eq!(h.disconnect_reason(slow), Some(DisconnectReason::TimedOut));
//! h.advance(Duration::from_secs(3600));
//! assert!(h.is_open(quick));
//! ```
//!
//! ## Composing factories
//! The factory wrappers nest: each is a [`Factory`] around a [`Factory`]. The outermost sees
//! a connection first, so put the cheapest refusal (the connection limit) outside:
//!
//! ```
//! use bytes::Bytes;
//! use std::time::Duration;
//! use torsion_protocols::policies::{LimitConnectionsFactory, ThrottlingFactory, TimeoutFactory};
//! use torsion_protocols::Echo;
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::DisconnectReason;
//!
//! let idle = TimeoutFactory::new(|_| Some(Echo)).with_timeout(Some(Duration::from_secs(60)));
//! let throttled = ThrottlingFactory::new(idle).with_write_limit(Some(1 << 20)); // 1 MiB/s out
//! let mut factory = LimitConnectionsFactory::new(throttled)
//!     .with_max_connections(Some(2))
//!     .with_max_per_peer(None)
//!     .with_refusal_message(Some(Bytes::from_static(b"Server full\r\n")));
//! let counts = factory.counts();
//!
//! let mut h = Harness::new();
//! let a = h.accept(&mut factory).unwrap();
//! let _b = h.accept(&mut factory).unwrap();
//! let c = h.accept(&mut factory).unwrap(); // one too many
//! assert_eq!(h.take_written(c), b"Server full\r\n");
//! assert!(h.fin_sent(c)); // a clean close, not a reset
//! assert!(matches!(h.disconnect_reason(c), Some(DisconnectReason::LimitExceeded(_))));
//! assert_eq!(counts.total(), 2);
//!
//! h.feed(a, b"hi");
//! assert_eq!(h.take_written(a), b"hi");
//! h.advance(Duration::from_secs(60));
//! assert_eq!(h.disconnect_reason(a), Some(DisconnectReason::TimedOut));
//! assert_eq!(counts.total(), 0); // the slots are free again
//! ```
//!
//! ## Throttling
//! [`ThrottlingFactory`] limits reading and writing, in bytes per second over all its
//! connections together, with token buckets refilled every 20 ms and a 100 ms burst. Over
//! the read limit, reading pauses (TCP pushes back on the senders); over the write limit, the
//! protocols are paused as producers, exactly as a full buffer would (chapter 5).
//!
//! ```
//! use std::time::Duration;
//! use torsion_protocols::policies::ThrottlingFactory;
//! use torsion_protocols::Echo;
//! use torsion_reactor::testing::Harness;
//!
//! let mut factory = ThrottlingFactory::new(|_| Some(Echo)).with_read_limit(Some(10_000));
//! let mut h = Harness::new();
//! let id = h.accept(&mut factory).unwrap();
//! h.feed(id, &[b'x'; 50_000]);
//! let first = h.take_written(id).len();
//! assert!(first < 50_000, "only the burst is read at once");
//! let mut total = first;
//! for _ in 0..500 {
//!     h.advance(Duration::from_millis(10));
//!     total += h.take_written(id).len();
//! }
//! assert_eq!(total, 50_000); // all of it, at about 10 kB/s
//! ```
//!
//! ## Your own wrapper: the `Wrapper` trait
//! A policy of your own is a protocol that wraps another. Implement [`Wrapper`] rather than
//! [`Protocol`]: every callback you do not override is forwarded to
//! [`inner`](torsion_reactor::Wrapper::inner) for you. (Writing `impl Protocol` by hand and
//! forgetting, say, `timer_fired` would silently drop the inner protocol's timers.) A factory
//! wrapper then builds the inner protocol and wraps it; a `Box<dyn Protocol>` is a protocol,
//! so the wrapper can hold what any factory returns.
//!
//! ```
//! use torsion_protocols::Echo;
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Address, Ctx, DisconnectReason, Factory, Protocol, Wrapper};
//!
//! /// Closes a connection once it has sent more than its quota.
//! struct Quota<P> {
//!     inner: P,
//!     left: usize,
//! }
//!
//! impl<P: Protocol> Wrapper for Quota<P> {
//!     type Inner = P;
//!     fn inner(&mut self) -> &mut P {
//!         &mut self.inner
//!     }
//!     fn on_data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         if data.len() > self.left {
//!             let reason = DisconnectReason::LimitExceeded("quota used up".into());
//!             cx.transport().lose_connection_with(reason);
//!             return;
//!         }
//!         self.left -= data.len();
//!         self.inner.data_received(cx, data);
//!     }
//!     // connection_made, eof_received, connection_lost, timer_fired, pause/resume_producing:
//!     // forwarded by the trait's defaults.
//! }
//!
//! /// Wraps every protocol its inner factory builds.
//! struct QuotaFactory<F> {
//!     inner: F,
//!     quota: usize,
//! }
//!
//! impl<F: Factory> Factory for QuotaFactory<F> {
//!     fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
//!         let inner = self.inner.build_protocol(peer)?; // None: refused inside, refuse too
//!         Some(Box::new(Quota { inner, left: self.quota }))
//!     }
//! }
//!
//! let mut factory = QuotaFactory { inner: |_| Some(Echo), quota: 10 };
//! let mut h = Harness::new();
//! let id = h.accept(&mut factory).unwrap();
//! h.feed(id, b"0123456789");
//! assert_eq!(h.take_written(id), b"0123456789");
//! h.feed(id, b"!");
//! assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::LimitExceeded("quota used up".into())));
//! ```
//!
//! The chat server composes exactly these pieces: [`LimitConnectionsFactory`] outside, a
//! [`TimeoutProtocol`] (with `--idle-timeout`) around a small [`Wrapper`] of its own
//! ([`chat::Member`](crate::chat::Member)) around a `LineReceiver`.
//!
//! Next: [chapter 8, shutting down cleanly](super::ch08_shutdown).
//!
//! [`TimeoutProtocol`]: torsion_protocols::policies::TimeoutProtocol
//! [`TimeoutFactory`]: torsion_protocols::policies::TimeoutFactory
//! [`TimeoutHandle`]: torsion_protocols::policies::TimeoutHandle
//! [`LimitConnectionsFactory`]: torsion_protocols::policies::LimitConnectionsFactory
//! [`ThrottlingFactory`]: torsion_protocols::policies::ThrottlingFactory
//! [`DisconnectReason::TimedOut`]: torsion_reactor::DisconnectReason::TimedOut
//! [`Factory`]: torsion_reactor::Factory
//! [`Protocol`]: torsion_reactor::Protocol
//! [`Wrapper`]: torsion_reactor::Wrapper
