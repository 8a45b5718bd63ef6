//! # Coming from Twisted
//!
//! torsion is Twisted's protocol/factory model, so most of what you know carries over: the
//! same callbacks, the same producer/consumer contract, the same `basic.py` framers and
//! `policies.py` wrappers. The differences come from Rust:
//!
//! * **The transport is lent, not stored.** Twisted's `self.transport` becomes
//!   `cx.transport()`, from the [`Ctx`](torsion_reactor::Ctx) each callback receives. Other
//!   connections are reached by [`ConnId`](torsion_reactor::ConnId) through
//!   `cx.transport_for(id)`; shared state stores ids, never transports.
//! * **No re-entrancy.** Nothing you call runs user code before your callback returns:
//!   `lose_connection` does not call `connection_lost` from inside your `data_received`, a
//!   write to another connection does not run its callbacks. Shared `Rc<RefCell<_>>` state is
//!   never borrowed twice.
//! * **No Deferreds.** Completion is a callback (`connection_made` of an outbound
//!   connection, `client_connection_failed`, `timer_fired`, a producer's `resume_producing`);
//!   "later in this turn" is `cx.call_soon(f)`; "the program's result" is
//!   `cx.stop_with(value)` read by `run_with_result`.
//! * **No global reactor.** You create a [`Reactor`](torsion_reactor::Reactor) and pass it
//!   nothing: callbacks reach it through their context.
//! * **Limits are on by default**: line and string lengths, connection counts, and a monotonic
//!   clock rather than wall time.
//!
//! ## Names
//! | Twisted | torsion |
//! |---|---|
//! | `Protocol.connectionMade()` | [`Protocol::connection_made(cx)`](torsion_reactor::Protocol::connection_made) |
//! | `Protocol.dataReceived(data)` | [`Protocol::data_received(cx, data)`](torsion_reactor::Protocol::data_received) |
//! | `IHalfCloseableProtocol.readConnectionLost()` | [`Protocol::eof_received(cx) -> bool`](torsion_reactor::Protocol::eof_received) (return `true` to keep writing) |
//! | `Protocol.connectionLost(reason)` (`ConnectionDone`, `ConnectionLost`, ...) | [`Protocol::connection_lost(cx, reason)`](torsion_reactor::Protocol::connection_lost) with a [`DisconnectReason`](torsion_reactor::DisconnectReason) (`Clean`, `Lost(io::Error)`, `Aborted`, `TimedOut`, ...) |
//! | `Factory.buildProtocol(addr)` (`None` refuses) | [`Factory::build_protocol(Address)`](torsion_reactor::Factory::build_protocol), or any closure `\|peer\| Some(MyProtocol)` |
//! | `ClientFactory`, `clientConnectionFailed` | [`ClientFactory`](torsion_reactor::ClientFactory), `client_connection_failed`; or `client_factory(\|peer\| P).on_failure(..)` |
//! | `reactor.listenTCP(port, factory)` | [`reactor.listen_tcp(addr, factory)`](torsion_reactor::Reactor::listen_tcp) |
//! | `reactor.connectTCP(host, port, factory, timeout=30)` | [`reactor.connect_tcp(addr, factory)`](torsion_reactor::Reactor::connect_tcp) (30 s default; `connect_with_timeout`) |
//! | `reactor.listenUNIX(path, factory, mode=0o666)` | [`reactor.listen_unix(path, factory)`](torsion_reactor::Reactor::listen_unix), `listen_unix_with(.., UnixListenOptions::default().mode(..))` |
//! | `reactor.connectUNIX(path, factory)` | [`reactor.connect_unix(path, factory)`](torsion_reactor::Reactor::connect_unix) |
//! | endpoint strings `tcp:8000`, `unix:/p` | [`Address`](torsion_reactor::Address) parsing: `127.0.0.1:8000`, `[::1]:8000`, `unix:/p`, `unix:@name` |
//! | `reactor.run()`, `reactor.stop()` | [`run()`](torsion_reactor::Reactor::run) / [`run_with_result()`](torsion_reactor::Reactor::run_with_result); `reactor.stop()`, `cx.stop_reactor()`, `cx.stop_with(v)` |
//! | `reactor.callLater(d, f)` → `IDelayedCall` | `cx.call_later(d, \|cx\| ..)` (a closure) or `cx.set_timer(d)` (delivered to the protocol's `timer_fired`) → [`TimerId`](torsion_reactor::TimerId) |
//! | `IDelayedCall.cancel()`, `.reset(d)`, `.active()` | `cx.cancel_timer(id)`, `cx.reset_timer(id, d)`, `cx.is_timer_active(id)` |
//! | `task.LoopingCall(f).start(interval)` | [`cx.looping_call(interval, f)`](torsion_reactor::LoopCtx::looping_call) (runs now, then every interval; cancel its id) |
//! | `reactor.callFromThread(f)` | [`handle.call_from_thread(f)`](torsion_reactor::ReactorHandle::call_from_thread) (`reactor.handle()` is `Send`) |
//! | `reactor.addSystemEventTrigger('before', 'shutdown', f)` | [`reactor.before_shutdown(f)`](torsion_reactor::Reactor::before_shutdown) (gets the deadline) |
//! | `Deferred`, `addCallback` | none: callbacks, `cx.call_soon(f)`, `cx.stop_with(v)` |
//! | `transport.write(data)`, `writeSequence(seq)` | `cx.transport().write(data)` (returns "above high"), `write_sequence(seq)`, `write_bytes(Bytes)` |
//! | `transport.loseConnection()` | `lose_connection()` (flush, FIN, `connection_lost(Clean)`); `lose_connection_with(reason)` |
//! | `transport.abortConnection()` | `abort_connection()` (drop the buffer, RST, `connection_lost(Aborted)`) |
//! | `transport.loseWriteConnection()` | `write_eof()` |
//! | `transport.pauseProducing()` / `resumeProducing()` (stop/start reading) | `pause_reading()` / `resume_reading()` |
//! | `transport.getPeer()`, `getHost()` | `peer_addr()`, `local_addr()` |
//! | `setTcpNoDelay`, `setTcpKeepAlive` | `set_nodelay`, `set_keepalive` |
//! | `transport.registerProducer(p, streaming)` | [`register_producer(p, streaming)`](torsion_reactor::Transport::register_producer), `p` a [`Producer`](torsion_reactor::Producer) or another connection's `ConnId` |
//! | `transport.unregisterProducer()` | `unregister_producer()` (never calls `stop_producing`) |
//! | `IPushProducer.pauseProducing/resumeProducing/stopProducing` | [`Producer`](torsion_reactor::Producer)`::pause_producing/resume_producing/stop_producing` |
//! | `IPullProducer.resumeProducing` | a `Producer` registered with `streaming = false` |
//! | a protocol as its transport's producer | the default: `Protocol::pause_producing/resume_producing` pause and resume reading |
//! | `abstract.FileDescriptor.bufferSize` (one 64 KiB threshold) | watermarks: 64 KiB high, 16 KiB low, `set_write_buffer_limits(high, low)` |
//! | `basic.FileSender` | [`FileSender`](torsion_protocols::FileSender) |
//! | `basic.LineReceiver`: `lineReceived`, `sendLine`, `MAX_LENGTH`, `lineLengthExceeded`, `delimiter`, `setRawMode`, `setLineMode`, `clearLineBuffer` | [`LineReceiver`](torsion_protocols::LineReceiver) around a [`LineHandler`](torsion_protocols::LineHandler): `line_received`, `lx.send_line`, `with_max_length`, `line_length_exceeded`, `with_delimiter`, `lx.set_raw_mode`, `lx.set_line_mode`, `lx.clear_line_buffer`; plus [`LineEndings`](torsion_protocols::LineEndings) |
//! | `basic.Int8/16/32StringReceiver`, `stringReceived`, `sendString`, `lengthLimitExceeded` | [`IntNStringReceiver`](torsion_protocols::IntNStringReceiver)`::int8/int16/int32` around a [`StringHandler`](torsion_protocols::StringHandler): `string_received`, `sx.send_string`, `length_limit_exceeded` |
//! | `basic.NetstringReceiver` | [`NetstringReceiver::netstring(handler)`](torsion_protocols::NetstringReceiver) |
//! | `policies.TimeoutMixin`: `setTimeout`, `resetTimeout`, `timeoutConnection` | [`TimeoutProtocol`](torsion_protocols::policies::TimeoutProtocol) + [`TimeoutHandle`](torsion_protocols::policies::TimeoutHandle): `set_timeout`, `reset_timeout`, `with_on_timeout` |
//! | `policies.TimeoutFactory` | [`TimeoutFactory`](torsion_protocols::policies::TimeoutFactory) |
//! | `policies.ThrottlingFactory(readLimit, writeLimit)` | [`ThrottlingFactory`](torsion_protocols::policies::ThrottlingFactory)`::with_read_limit/with_write_limit` |
//! | `policies.LimitTotalConnectionsFactory`, `LimitConnectionsByPeer` | [`LimitConnectionsFactory`](torsion_protocols::policies::LimitConnectionsFactory)`::with_max_connections/with_max_per_peer` |
//! | `policies.WrappingFactory`, `ProtocolWrapper` | the [`Wrapper`](torsion_reactor::Wrapper) trait plus a factory struct ([chapter 7](super::ch07_policies)) |
//! | `wire.Echo`, `Discard`, `Chargen`, `Daytime`, `QOTD` | [`Echo`](torsion_protocols::Echo), [`wire`](torsion_protocols::wire)`::{Discard, Chargen, Daytime, Qotd}` |
//! | `testing.StringTransport` | [`Harness`](torsion_reactor::testing::Harness): `feed`, `take_written`, `feed_eof`, `reset_peer`, `set_peer_window` |
//! | `testing.MemoryReactorClock`, `task.Clock.advance` | [`Harness::advance`](torsion_reactor::testing::Harness::advance), [`ManualClock`](torsion_reactor::ManualClock) |
//! | `twisted.logger`, `logPrefix` | [`tracing`](https://docs.rs/tracing), one span per connection |
//! | `failure.Failure` from a callback | a caught panic: logged, the connection aborted with `DisconnectReason::Panicked` |
//!
//! ## The same protocol in both
//! Twisted:
//!
//! ```python
//! class Shout(LineReceiver):
//!     MAX_LENGTH = 100
//!     def lineReceived(self, line):
//!         if line == b"quit":
//!             self.transport.loseConnection()
//!         else:
//!             self.sendLine(line.upper())
//!
//! reactor.listenTCP(8000, Factory.forProtocol(Shout))
//! reactor.run()
//! ```
//!
//! torsion, tested rather than run:
//!
//! ```
//! use torsion_protocols::{LineCtx, LineHandler, LineReceiver};
//! use torsion_reactor::testing::Harness;
//!
//! struct Shout;
//!
//! impl LineHandler for Shout {
//!     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
//!         if line == b"quit" {
//!             lx.lose_connection();
//!         } else {
//!             lx.send_line(&line.to_ascii_uppercase());
//!         }
//!     }
//! }
//!
//! let mut factory = |_peer| Some(LineReceiver::new(Shout).with_max_length(100));
//! // For real: reactor.listen_tcp("0.0.0.0:8000".parse()?, factory)?; reactor.run()?;
//! let mut h = Harness::new();
//! let id = h.accept(&mut factory).unwrap();
//! h.feed(id, b"hello\r\nquit\r\n");
//! assert_eq!(h.take_written(id), b"HELLO\r\n");
//! assert!(h.fin_sent(id));
//! ```
//!
//! ## Deferred-style chains without Deferreds
//! "Connect, then send, then wait for the answer, then report" is a protocol whose callbacks
//! are the steps; the result leaves through `stop_with` (or a shared cell). Work to do after
//! the current callback, where Twisted would `callLater(0, f)`, is `cx.call_soon(f)`:
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use std::time::Duration;
//! use torsion_reactor::Reactor;
//!
//! let log = Rc::new(RefCell::new(Vec::new()));
//! let mut reactor = Reactor::new()?;
//! let l = log.clone();
//! reactor.call_later(Duration::ZERO, move |cx| {
//!     l.borrow_mut().push("first");
//!     let l2 = l.clone();
//!     cx.call_soon(move |cx| {
//!         l2.borrow_mut().push("then");
//!         cx.stop_with(l2.borrow().len());
//!     });
//!     l.borrow_mut().push("callback returns");
//! });
//! assert_eq!(reactor.run_with_result::<usize>()?, Some(3));
//! assert_eq!(*log.borrow(), ["first", "callback returns", "then"]);
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
