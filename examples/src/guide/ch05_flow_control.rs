//! # Chapter 5: flow control
//!
//! `write` never blocks and never fails: it appends to the connection's user-space write
//! buffer, which the reactor flushes as the socket accepts bytes. So what happens when the
//! peer reads slower than you write? Without flow control the buffer grows until memory runs
//! out. torsion's answer is Twisted's producer/consumer contract with asyncio's watermarks.
//!
//! ## Watermarks, and the echo server for free
//! Each transport has a high watermark (64 KiB) and a low one (16 KiB); change them with
//! `transport().set_write_buffer_limits(high, low)`. When the buffer goes strictly above
//! high, the transport's *producer* gets `pause_producing`; when it drains to low or below,
//! `resume_producing`. They alternate strictly.
//!
//! By default a connection's producer is its own protocol, and [`Protocol`]'s default
//! `pause_producing`/`resume_producing` pause and resume *reading*. So an echo server facing
//! a peer that sends but does not read stops reading from it: the kernel buffers fill, and TCP
//! pushes back on the sender. No code needed:
//!
//! ```
//! use torsion_protocols::Echo;
//! use torsion_reactor::testing::{Call, Harness};
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(Echo)).unwrap();
//! h.set_peer_window(id, Some(0)); // the peer stops reading
//! h.feed(id, &vec![b'x'; 100 * 1024]); // and sends 100 KiB
//! assert!(h.calls(id).contains(&Call::PauseProducing)); // over 64 KiB buffered: reading paused
//!
//! let mut echoed = 0;
//! h.set_peer_window(id, None); // the peer reads again
//! loop {
//!     let n = h.take_written(id).len();
//!     if n == 0 {
//!         break;
//!     }
//!     echoed += n;
//! }
//! assert_eq!(echoed, 100 * 1024);
//! assert_eq!(h.calls(id).last(), Some(&Call::ResumeProducing)); // drained: reading resumed
//! ```
//!
//! ## `write`'s return value: writers that loop
//! `write` returns `true` when the buffer is now above the high mark. A protocol that
//! generates data (rather than answering input) writes until then, and carries on in
//! `resume_producing`, which it overrides:
//!
//! ```
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Ctx, Protocol};
//!
//! /// Sends `left` blocks of 1 KiB, never more than the high watermark ahead of the peer.
//! struct Generator {
//!     left: usize,
//! }
//!
//! impl Generator {
//!     fn produce(&mut self, cx: &mut Ctx<'_>) {
//!         while self.left > 0 {
//!             self.left -= 1;
//!             if cx.transport().write(&[b'.'; 1024]) {
//!                 return; // above high: wait for resume_producing
//!             }
//!         }
//!         cx.transport().lose_connection();
//!     }
//! }
//!
//! impl Protocol for Generator {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         self.produce(cx);
//!     }
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
//!     fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {} // produce() already stopped
//!     fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
//!         self.produce(cx);
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(Generator { left: 1000 })).unwrap();
//! h.set_peer_window(id, Some(10 * 1024));
//! let mut total = 0;
//! while !h.fin_sent(id) || total < 1000 * 1024 {
//!     total += h.take_written(id).len(); // each take opens the window by as much
//! }
//! assert_eq!(total, 1000 * 1024);
//! ```
//!
//! ## Producers
//! For data that comes from somewhere else, register a [`Producer`] on the transport
//! (Twisted's `registerProducer`):
//!
//! * a **push** producer (`register_producer(p, true)`) writes whenever it likes and gets
//!   `pause_producing` / `resume_producing` at the watermarks. Registered below high it gets
//!   one `resume_producing` at once: that is where it starts.
//! * a **pull** producer (`register_producer(p, false)`) gets `resume_producing` after
//!   registering and after each drain to the low mark, and writes one chunk each time.
//!   [`FileSender`] streams any `impl Read` this way, 16 KiB at a time (`chunk_size`), all of
//!   it or exactly `limit` bytes, and can frame each chunk with a `transform` (the HTTP server
//!   streams file bodies with it, in chunked encoding when the length is unknown).
//!
//! Both get `stop_producing` exactly once if the connection is lost while they are
//! registered. `lose_connection` with a pull producer registered waits for it to unregister,
//! so "send this file, then close" is two calls:
//!
//! ```
//! use torsion_protocols::FileSender;
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Ctx, Protocol};
//!
//! struct SendReport;
//!
//! impl Protocol for SendReport {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         let report = std::io::Cursor::new(vec![b'r'; 100_000]); // any impl Read: a File...
//!         cx.transport().register_producer(FileSender::new(report), false).unwrap();
//!         cx.transport().lose_connection(); // waits for the whole report
//!     }
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
//! }
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(SendReport)).unwrap();
//! let mut got = 0;
//! while !h.fin_sent(id) {
//!     got += h.take_written(id).len();
//! }
//! got += h.take_written(id).len();
//! assert_eq!(got, 100_000);
//! ```
//!
//! The [`Producer`] trait's own documentation has a hand-written push and pull producer.
//!
//! ## Two connections: the proxy
//! A proxy reads from one connection and writes to another, so the *other* connection's
//! buffer is the one that fills. Register each connection as the other's producer (a
//! [`ConnId`] is a producer: pausing it pauses its reading) and a slow reader on either side
//! pauses reading on the opposite side. That is the whole of flow control in the `proxy`
//! binary ([`torsion_examples::proxy`](crate::proxy)):
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use torsion_reactor::testing::{Call, Harness};
//! use torsion_reactor::{ConnId, Ctx, Protocol};
//!
//! /// Forwards to the other connection of the pair; the second to arrive links the two.
//! struct Pipe {
//!     pair: Rc<RefCell<Vec<ConnId>>>,
//! }
//!
//! impl Protocol for Pipe {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         let me = cx.conn_id();
//!         self.pair.borrow_mut().push(me);
//!         let first = self.pair.borrow()[0];
//!         if first != me {
//!             // Each side produces the other's output.
//!             cx.transport().register_producer(first, true).unwrap();
//!             cx.transport_for(first).unwrap().register_producer(me, true).unwrap();
//!         }
//!     }
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         let me = cx.conn_id();
//!         let partner = self.pair.borrow().iter().copied().find(|&id| id != me);
//!         if let Some(mut t) = partner.and_then(|id| cx.transport_for(id)) {
//!             t.write(data);
//!         }
//!     }
//! }
//!
//! let pair = Rc::new(RefCell::new(Vec::new()));
//! let mut factory = move |_| Some(Pipe { pair: pair.clone() });
//! let mut h = Harness::new();
//! let client = h.accept(&mut factory).unwrap();
//! let backend = h.accept(&mut factory).unwrap();
//!
//! const MIB: usize = 1024 * 1024;
//! h.set_peer_window(backend, Some(0)); // the backend stops reading
//! for _ in 0..16 {
//!     h.feed(client, &vec![b'x'; MIB / 16]); // the client sends 1 MiB
//! }
//! let read_from_client: usize = h
//!     .calls(client)
//!     .iter()
//!     .map(|c| if let Call::Data(n) = c { *n } else { 0 })
//!     .sum();
//! assert!(read_from_client < MIB, "reading paused once the backend's buffer filled");
//!
//! h.set_peer_window(backend, None); // the backend catches up: the client is resumed
//! let mut forwarded = 0;
//! loop {
//!     let n = h.take_written(backend).len();
//!     if n == 0 {
//!         break;
//!     }
//!     forwarded += n;
//! }
//! assert_eq!(forwarded, MIB); // nothing lost, memory bounded all along
//! ```
//!
//! ## A hard cap
//! Watermarks ask a producer to pause; a buffer can still grow if something writes anyway
//! (a chat broadcast to a member who never reads). `set_max_write_buffer(Some(cap))` aborts
//! a connection whose buffer exceeds `cap`, with
//! [`DisconnectReason::BufferOverflow`](torsion_reactor::DisconnectReason::BufferOverflow).
//! The chat server uses 1 MiB.
//!
//! Next: [chapter 6, testing without sockets](super::ch06_testing).
//!
//! [`Protocol`]: torsion_reactor::Protocol
//! [`Producer`]: torsion_reactor::Producer
//! [`ConnId`]: torsion_reactor::ConnId
//! [`FileSender`]: torsion_protocols::FileSender
