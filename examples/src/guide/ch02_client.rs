//! # Chapter 2: a client
//!
//! A client is the same [`Protocol`] on an outbound connection. What differs is the factory:
//! a [`ClientFactory`] builds the protocol once the connection is established, and hears
//! about it if the connection cannot be made.
//!
//! ## Client factories
//! Any closure `FnMut(Address) -> P` is a client factory (note: no `Option`, a connection you
//! asked for is not refused). In the harness, [`Harness::connect`] makes an established
//! in-memory outbound connection through it:
//!
//! ```
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::{Ctx, Protocol};
//!
//! /// Sends a greeting, then collects what comes back.
//! struct Hello {
//!     reply: Vec<u8>,
//! }
//!
//! impl Protocol for Hello {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         cx.transport().write(b"hello\n");
//!     }
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
//!         self.reply.extend_from_slice(data);
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let id = h.connect(&mut |_server| Hello { reply: Vec::new() });
//! assert_eq!(h.take_written(id), b"hello\n");
//! ```
//!
//! ## Connecting, and ending `run` with a result
//! [`Reactor::connect_tcp`] (or `connect` for any [`Address`], `connect_unix` for a path)
//! starts a non-blocking connect and returns the new connection's [`ConnId`] at once;
//! `connection_made` runs later, from the loop. A client usually wants [`Reactor::run`] to
//! end when its work is done, with an outcome:
//!
//! * `cx.stop_with(value)` stops gracefully and [`Reactor::run_with_result`] returns
//!   `Some(value)`;
//! * `cx.stop_with_error(error)` stops and `run` returns `Err(error)`;
//! * `cx.stop_reactor()` just stops.
//!
//! [`client_factory`] wraps a closure and adds an `on_failure` hook for a connection that
//! could not be made (refused, unreachable, timed out, cancelled by a shutdown). Without a
//! hook, the default logs the failure and, when the reactor has nothing else to do, stops it
//! with that error, so a client whose only connection failed exits instead of hanging.
//!
//! This example runs for real over loopback: an echo server and a client in one reactor.
//!
//! ```
//! use torsion_protocols::Echo;
//! use torsion_reactor::{client_factory, Ctx, DisconnectReason, Protocol, Reactor};
//!
//! struct Ask {
//!     reply: Vec<u8>,
//! }
//!
//! impl Protocol for Ask {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         cx.transport().write(b"ping\n");
//!     }
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         self.reply.extend_from_slice(data);
//!         if self.reply.ends_with(b"\n") {
//!             cx.transport().lose_connection();
//!         }
//!     }
//!     fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
//!         let reply = String::from_utf8_lossy(&self.reply).into_owned();
//!         cx.stop_with(if reason.is_clean() { Ok(reply) } else { Err(reason) });
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), |_| Some(Echo))?;
//! let addr = port.local_addr().inet().unwrap();
//! let factory = client_factory(|_server| Ask { reply: Vec::new() }).on_failure(|cx, error| {
//!     cx.stop_with(Err::<String, _>(DisconnectReason::ProtocolError(error.to_string())));
//! });
//! reactor.connect_tcp(addr, factory)?;
//! let outcome: Option<Result<String, DisconnectReason>> = reactor.run_with_result()?;
//! assert_eq!(outcome, Some(Ok("ping\n".to_string())));
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! ## When the connection fails
//! Here nothing listens on the port. With a plain closure factory the default failure
//! handling stops the reactor and `run` returns the connect error:
//!
//! ```
//! use torsion_reactor::testing::Upper;
//! use torsion_reactor::{client_factory, Reactor};
//!
//! // A port that was free a moment ago: nothing listens there now.
//! let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
//!
//! let mut reactor = Reactor::new()?;
//! reactor.connect_tcp(addr, |_| Upper)?;
//! let error = reactor.run().unwrap_err();
//! println!("default handling: {error}");
//!
//! // With a hook, you decide: here, an exit status.
//! let mut reactor = Reactor::new()?;
//! reactor.connect_tcp(
//!     addr,
//!     client_factory(|_| Upper).on_failure(|cx, error| {
//!         eprintln!("cannot connect: {error}");
//!         cx.stop_with(1i32);
//!     }),
//! )?;
//! assert_eq!(reactor.run_with_result::<i32>()?, Some(1));
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! For state across attempts (a reconnecting client), implement [`ClientFactory`] on a struct:
//! `client_connection_failed` gets a [`LoopCtx`], which can `call_later` a new
//! `cx.connect(..)`.
//!
//! ## Other threads: `call_from_thread`
//! The reactor and every protocol live on one thread. Another thread (a stdin reader, a
//! worker) talks to it only through a [`ReactorHandle`]: `call_from_thread(f)` queues `f` to
//! run on the loop with a [`LoopCtx`], which reaches a connection by its [`ConnId`] through
//! `transport_for`. That is how the `echo-client` binary sends what you type.
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use std::sync::mpsc;
//! use torsion_protocols::Echo;
//! use torsion_reactor::{Ctx, Protocol, Reactor};
//!
//! /// Tells the thread when it may write; collects the echo; stops after the last line.
//! struct Collect {
//!     ready: mpsc::Sender<()>,
//!     got: Rc<RefCell<Vec<u8>>>,
//! }
//!
//! impl Protocol for Collect {
//!     fn connection_made(&mut self, _cx: &mut Ctx<'_>) {
//!         let _ = self.ready.send(());
//!     }
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         self.got.borrow_mut().extend_from_slice(data);
//!         if self.got.borrow().ends_with(b"bye\n") {
//!             let all = String::from_utf8(self.got.borrow().clone()).unwrap();
//!             cx.stop_with(all);
//!         }
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), |_| Some(Echo))?;
//! let (ready_tx, ready_rx) = mpsc::channel();
//! let got = Rc::new(RefCell::new(Vec::new()));
//! let conn = reactor.connect_tcp(port.local_addr().inet().unwrap(), move |_| Collect {
//!     ready: ready_tx.clone(),
//!     got: got.clone(),
//! })?;
//!
//! let handle = reactor.handle(); // Send + Sync + Clone
//! let worker = std::thread::spawn(move || {
//!     ready_rx.recv().unwrap(); // connected: transport_for(conn) finds it now
//!     for line in ["hello\n", "bye\n"] {
//!         // The closure runs on the reactor thread, in order.
//!         handle.call_from_thread(move |cx| {
//!             if let Some(mut t) = cx.transport_for(conn) {
//!                 t.write(line.as_bytes());
//!             }
//!         });
//!     }
//! });
//! let all: Option<String> = reactor.run_with_result()?;
//! worker.join().unwrap();
//! assert_eq!(all.as_deref(), Some("hello\nbye\n"));
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! `transport_for` finds only an open connection: `None` while it is still connecting and
//! after it has ended, which is why the thread waits for `connection_made` here.
//! `handle.stop()` requests a graceful stop from any thread, as Ctrl-C does.
//!
//! Next: [chapter 3, the chat room](super::ch03_chat).
//!
//! [`Protocol`]: torsion_reactor::Protocol
//! [`ClientFactory`]: torsion_reactor::ClientFactory
//! [`client_factory`]: torsion_reactor::client_factory
//! [`Address`]: torsion_reactor::Address
//! [`ConnId`]: torsion_reactor::ConnId
//! [`LoopCtx`]: torsion_reactor::LoopCtx
//! [`ReactorHandle`]: torsion_reactor::ReactorHandle
//! [`Harness::connect`]: torsion_reactor::testing::Harness::connect
//! [`Reactor::connect_tcp`]: torsion_reactor::Reactor::connect_tcp
//! [`Reactor::run`]: torsion_reactor::Reactor::run
//! [`Reactor::run_with_result`]: torsion_reactor::Reactor::run_with_result
