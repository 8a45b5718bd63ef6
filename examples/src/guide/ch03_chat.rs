//! # Chapter 3: the chat room
//!
//! A chat room is the classic Twisted demo because it needs the one thing an echo server does
//! not: **state shared between connections**. In torsion that state lives in the factory, and
//! each protocol the factory builds holds a clone of it.
//!
//! ## Shared state holds ids, not transports
//! The room is an `Rc<RefCell<..>>` mapping each member's [`ConnId`] to a name. A protocol
//! reaches another connection with `cx.transport_for(id)`, which returns `None` once that
//! connection has gone, so a stale id is harmless. Borrowing the room while writing to others
//! is safe: no method of a transport runs anyone's callbacks synchronously (the reactor's
//! no-re-entrancy rule), so the `RefCell` is never borrowed twice.
//!
//! ## The factory is a struct
//! A closure factory works until you want to hand the shared state to something else (a
//! shutdown hook, a test): then make the factory a struct that implements [`Factory`].
//!
//! ```
//! use std::cell::RefCell;
//! use std::collections::BTreeMap;
//! use std::rc::Rc;
//! use torsion_protocols::{LineCtx, LineEndings, LineHandler, LineReceiver};
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Address, ConnId, DisconnectReason, Factory, LoopCtx, Protocol};
//!
//! /// Who is online: shared by the factory and every protocol.
//! #[derive(Clone, Default)]
//! struct Room(Rc<RefCell<BTreeMap<ConnId, String>>>);
//!
//! impl Room {
//!     /// Sends `line` to every member except `except`.
//!     fn broadcast(&self, cx: &mut LoopCtx<'_>, except: Option<ConnId>, line: &str) {
//!         let msg = format!("{line}\r\n");
//!         for &id in self.0.borrow().keys().filter(|&&id| Some(id) != except) {
//!             if let Some(mut t) = cx.transport_for(id) {
//!                 t.write(msg.as_bytes());
//!             }
//!         }
//!     }
//! }
//!
//! /// One connection: the first line is the name, every later line is said to the room.
//! struct Chatter {
//!     room: Room,
//!     name: Option<String>,
//! }
//!
//! impl LineHandler for Chatter {
//!     fn connection_made(&mut self, lx: &mut LineCtx<'_, '_>) {
//!         lx.send_line(b"What's your name?");
//!     }
//!     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
//!         let text = String::from_utf8_lossy(line).into_owned();
//!         let me = lx.conn_id();
//!         match &self.name {
//!             None => {
//!                 self.room.0.borrow_mut().insert(me, text.clone());
//!                 self.room.broadcast(lx, Some(me), &format!("* {text} has joined"));
//!                 self.name = Some(text);
//!             }
//!             Some(name) => self.room.broadcast(lx, Some(me), &format!("<{name}> {text}")),
//!         }
//!     }
//!     fn connection_lost(&mut self, lx: &mut LineCtx<'_, '_>, _reason: DisconnectReason) {
//!         let me = lx.conn_id();
//!         if self.room.0.borrow_mut().remove(&me).is_some() {
//!             let name = self.name.take().unwrap_or_default();
//!             self.room.broadcast(lx, None, &format!("* {name} has left"));
//!         }
//!     }
//! }
//!
//! /// The factory owns the room and gives each protocol a clone.
//! struct ChatFactory {
//!     room: Room,
//! }
//!
//! impl Factory for ChatFactory {
//!     fn build_protocol(&mut self, _peer: Address) -> Option<Box<dyn Protocol>> {
//!         let chatter = Chatter { room: self.room.clone(), name: None };
//!         // `nc` ends lines with a bare `\n`: accept both endings (chapter 4).
//!         Some(Box::new(LineReceiver::new(chatter).with_line_endings(LineEndings::Lenient)))
//!     }
//! }
//!
//! let room = Room::default();
//! let mut factory = ChatFactory { room: room.clone() };
//! let mut h = Harness::new();
//! let alice = h.accept(&mut factory).unwrap();
//! let bob = h.accept(&mut factory).unwrap();
//! assert_eq!(h.take_written(alice), b"What's your name?\r\n");
//! h.feed(alice, b"alice\n");
//! h.feed(bob, b"bob\r\n");
//! assert_eq!(h.take_written(alice), b"* bob has joined\r\n");
//! h.take_written(bob);
//!
//! h.feed(alice, b"hi bob\n");
//! assert_eq!(h.take_written(bob), b"<alice> hi bob\r\n");
//! assert!(h.take_written(alice).is_empty()); // no echo to the talker
//!
//! h.reset_peer(bob); // however bob leaves, the room hears of it
//! assert_eq!(h.take_written(alice), b"* bob has left\r\n");
//! assert_eq!(room.0.borrow().len(), 1);
//! ```
//!
//! `LineCtx` (the line handler's context) dereferences to the reactor's [`Ctx`], which
//! dereferences to a [`LoopCtx`]; that is why `broadcast` takes a `&mut LoopCtx` and can be
//! called from a protocol (`lx`), from a timer, or from a shutdown hook alike.
//!
//! ## Saying goodbye on shutdown
//! [`Reactor::before_shutdown`] runs a closure once when a graceful stop begins (Ctrl-C, a
//! `stop` call), while every connection is still open. What it writes is flushed before the
//! connections close. The factory is moved into the reactor by `listen_tcp`, which is why the
//! room is cloned out of it first:
//!
//! ```no_run
//! # use std::cell::RefCell; use std::collections::BTreeMap; use std::rc::Rc;
//! # use torsion_reactor::{ConnId, LoopCtx, Reactor};
//! # #[derive(Clone, Default)] struct Room(Rc<RefCell<BTreeMap<ConnId, String>>>);
//! # impl Room { fn broadcast(&self, _: &mut LoopCtx<'_>, _: Option<ConnId>, _: &str) {} }
//! # let factory = |_| Some(torsion_protocols::Echo);
//! let room = Room::default();
//! let mut reactor = Reactor::new()?;
//! reactor.listen_tcp("127.0.0.1:8000".parse().unwrap(), factory)?;
//! reactor.install_signal_handlers()?;
//! let goodbye = room.clone();
//! reactor.before_shutdown(move |cx, _deadline| goodbye.broadcast(cx, None, "* Server shutting down"));
//! reactor.run()?;
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! The same thing in the harness, where it can be checked: stop the reactor, and every
//! member reads the goodbye before its connection is closed.
//!
//! ```
//! use torsion_examples::chat::{ChatConfig, ChatServer};
//! use torsion_reactor::testing::Harness;
//!
//! let mut server = ChatServer::new(ChatConfig::default()); // the chat-server binary's factory
//! let room = server.room();
//! let mut h = Harness::new();
//! let alice = h.accept(&mut server).unwrap();
//! h.feed(alice, b"alice\n");
//! h.take_written(alice);
//!
//! let goodbye = room.clone();
//! h.reactor().before_shutdown(move |cx, _deadline| goodbye.announce(cx, "* Server shutting down"));
//! h.reactor().stop();
//! h.run();
//! assert_eq!(h.take_written(alice), b"* Server shutting down\r\n");
//! assert!(h.fin_sent(alice));
//! ```
//!
//! ## The real one
//! [`torsion_examples::chat`](crate::chat) is the same design built to survive the public:
//! `/who`, `/nick`, `/me`, `/quit`; UTF-8 checks; a line limit; an idle timeout and a
//! connection cap composed around the protocol ([chapter 7](super::ch07_policies)); and
//! fan-out flow control, so one slow reader holds the talkers back and one that stops
//! reading is cut off instead of eating memory ([chapter 5](super::ch05_flow_control)).
//!
//! ```sh
//! cargo run --release -p torsion-examples --bin chat-server   # then nc 127.0.0.1 8000, twice
//! ```
//!
//! Next: [chapter 4, framing and limits](super::ch04_framing).
//!
//! [`ConnId`]: torsion_reactor::ConnId
//! [`Factory`]: torsion_reactor::Factory
//! [`Ctx`]: torsion_reactor::Ctx
//! [`LoopCtx`]: torsion_reactor::LoopCtx
//! [`Reactor::before_shutdown`]: torsion_reactor::Reactor::before_shutdown
