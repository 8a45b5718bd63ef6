//! # Coming from tokio or asyncio
//!
//! ## Callbacks instead of `poll_read`
//! In tokio you write a task per connection that *pulls*: `stream.read(&mut buf).await` (or
//! `AsyncRead::poll_read` underneath), and the code between awaits is your state machine,
//! written by the compiler. In torsion the reactor *pushes*: it reads the socket and calls
//! `data_received(cx, data)` with what arrived, and your protocol struct is the state machine,
//! written by you. There are no futures, no wakers, no `Send` bounds and no `.await`; each
//! callback runs to completion on the one reactor thread.
//!
//! | tokio | torsion |
//! |---|---|
//! | `TcpListener::bind` + `loop { accept().await; spawn(..) }` | [`reactor.listen_tcp(addr, factory)`](torsion_reactor::Reactor::listen_tcp): the factory is called per connection |
//! | the spawned task's local variables | the protocol struct's fields |
//! | `stream.read(&mut buf).await` | [`Protocol::data_received`](torsion_reactor::Protocol::data_received) |
//! | `read` returning `Ok(0)` | [`Protocol::eof_received`](torsion_reactor::Protocol::eof_received) |
//! | an `io::Error` from read or write | [`Protocol::connection_lost`](torsion_reactor::Protocol::connection_lost) with a [`DisconnectReason`](torsion_reactor::DisconnectReason) |
//! | `write_all(..).await` (waits while the socket is full) | `cx.transport().write(..)` (never waits; buffered, flushed after the callback) |
//! | `AsyncWriteExt::shutdown` | `write_eof()`; `lose_connection()` to flush and close both ways |
//! | `Framed<_, LinesCodec>` / `LengthDelimitedCodec` | [`LineReceiver`](torsion_protocols::LineReceiver) / [`IntNStringReceiver`](torsion_protocols::IntNStringReceiver) ([chapter 4](super::ch04_framing)) |
//! | `tokio::time::sleep`, `timeout` | `cx.set_timer(d)` → `timer_fired`; [`TimeoutProtocol`](torsion_protocols::policies::TimeoutProtocol) |
//! | `tokio::time::interval` | [`cx.looping_call(interval, f)`](torsion_reactor::LoopCtx::looping_call) |
//! | `Semaphore` limiting connections | [`LimitConnectionsFactory`](torsion_protocols::policies::LimitConnectionsFactory) |
//! | `Arc<Mutex<State>>` shared between tasks | `Rc<RefCell<State>>` held by the factory; never borrowed twice (no re-entrancy) |
//! | an mpsc channel into a task | [`ReactorHandle::call_from_thread`](torsion_reactor::ReactorHandle::call_from_thread) from other threads; `cx.transport_for(id)` from other connections |
//! | `signal::ctrl_c()` + `CancellationToken` + `TaskTracker` | [`install_signal_handlers()`](torsion_reactor::Reactor::install_signal_handlers), [`before_shutdown`](torsion_reactor::Reactor::before_shutdown), the graceful stop ([chapter 8](super::ch08_shutdown)) |
//! | `tokio_test::io::Builder`, `time::pause()` + `advance` | [`Harness`](torsion_reactor::testing::Harness) + [`ManualClock`](torsion_reactor::ManualClock) ([chapter 6](super::ch06_testing)) |
//!
//! ## asyncio's Protocols: nearly the same names
//! asyncio's low-level API *is* this model (it was modelled on Twisted), so the mapping is
//! almost one to one:
//!
//! | asyncio | torsion |
//! |---|---|
//! | `loop.create_server(factory, host, port)` | `reactor.listen_tcp(addr, factory)` |
//! | `loop.create_connection(factory, host, port)` | `reactor.connect_tcp(addr, client_factory)` |
//! | `loop.create_unix_server` / `create_unix_connection` | `listen_unix` / `connect_unix` |
//! | `Protocol.connection_made(transport)` | `connection_made(cx)`; the transport is `cx.transport()` |
//! | `data_received(data)`, `eof_received()`, `connection_lost(exc)` | the same names, with `cx`; `connection_lost` gets a `DisconnectReason`, never `None` |
//! | `transport.write`, `writelines`, `write_eof`, `close`, `abort` | `write`, `write_sequence`, `write_eof`, `lose_connection`, `abort_connection` |
//! | `transport.pause_reading()`, `resume_reading()`, `is_reading()` | `pause_reading()`, `resume_reading()`, `!is_reading_paused()` |
//! | `transport.set_write_buffer_limits(high, low)`, `get_write_buffer_size()` | `set_write_buffer_limits(high, low)` (returns an error if low > high), `write_buffer_len()` |
//! | `Protocol.pause_writing()` / `resume_writing()` | `Protocol::pause_producing` / `resume_producing` (same hysteresis) |
//! | `transport.get_extra_info('peername')` | `peer_addr()`; `peer_credentials()` on Unix sockets |
//! | `loop.call_soon`, `call_later`, `call_soon_threadsafe` | `cx.call_soon`, `cx.call_later`, `handle.call_from_thread` |
//! | `loop.run_forever()`, `loop.stop()` | `reactor.run()`, `cx.stop_reactor()` |
//!
//! ### Watermarks: one difference that matters
//! asyncio calls `pause_writing` when the buffer passes its high-water mark and leaves the
//! rest to you: its default does nothing, so an asyncio echo server facing a peer that never
//! reads buffers without bound. torsion's default `pause_producing` **pauses reading**, so
//! backpressure reaches the sender through TCP without a line of code; override it (as
//! chapter 5's generator does) when the protocol produces data of its own. `write` also
//! returns whether the buffer is above high, for writers that loop.
//!
//! ```
//! use torsion_protocols::Echo;
//! use torsion_reactor::testing::{Call, Harness};
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(Echo)).unwrap();
//! h.set_peer_window(id, Some(0)); // never reads
//! for _ in 0..64 {
//!     h.feed(id, &[0; 16 * 1024]); // 1 MiB offered...
//! }
//! let read: usize =
//!     h.calls(id).iter().map(|c| if let Call::Data(n) = c { *n } else { 0 }).sum();
//! assert!(read < 512 * 1024, "...but reading stopped near the 64 KiB mark: {read} bytes");
//! ```
//!
//! ## When to pick which
//! Pick **torsion** for:
//! * servers with many connections and small per-connection state machines (chat, relays,
//!   proxies, line or length-prefixed protocols, gateways), where one core is plenty;
//! * code whose tests must be deterministic: the harness drives time and the peer, and no
//!   test sleeps;
//! * explicit, bounded memory per connection: watermarks, producers, hard caps and limits
//!   are on by default;
//! * porting Twisted or asyncio-protocol code.
//!
//! Pick **tokio** for:
//! * the async ecosystem: HTTP (hyper, axum), gRPC (tonic), TLS (rustls), database
//!   clients; torsion has none of these, and no TLS;
//! * handlers that wait on other I/O mid-request (call a database, then answer): in torsion
//!   that is another connection's callback, which is more code than an `.await`;
//! * using many cores from one process: torsion's reactor is one thread (run one reactor
//!   per process, or per thread with `SO_REUSEPORT`, if you must);
//! * CPU-heavy work per request: a callback that computes for long stalls every connection.
//!   (With torsion, do it on a worker thread and come back with `call_from_thread`.)
