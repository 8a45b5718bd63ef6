//! The torsion reactor: a single-threaded event loop on mio, with Twisted's protocol/factory
//! model.
//!
//! A [`Factory`] builds a [`Protocol`] for each accepted connection; the reactor calls its
//! `connection_made`, `data_received`, `eof_received` and `connection_lost`, lending each call a
//! [`Ctx`] through which the protocol writes to its [`Transport`], sets timers, reaches other
//! connections by [`ConnId`] and stops the reactor. Callbacks that belong to no connection
//! (loop-level timers, thread calls, failed connects) get a [`LoopCtx`] instead, which has
//! everything but "this connection". The contract (call order, re-entrancy, half-close,
//! backpressure, panics) is written down in [`protocol`].
//!
//! The same protocol runs over TCP ([`Reactor::listen_tcp`], [`Reactor::connect_tcp`]) and Unix
//! stream sockets ([`Reactor::listen_unix`], [`Reactor::connect_unix`]); peers and local ends
//! are one [`Address`] type, displayed as users write them (`127.0.0.1:8000`, `[::1]:8000`,
//! `unix:/run/app.sock`).
//!
//! Datagrams (UDP) have their own contract, [`DatagramProtocol`], served by
//! [`Reactor::listen_udp`]: one protocol per port, no connection and no write buffer (see
//! [`datagram`]).
//!
//! ```no_run
//! use torsion_reactor::{Ctx, Protocol, Reactor};
//!
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         cx.transport().write(data);
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! // The factory: called for each accepted connection, it builds that connection's protocol.
//! let port = reactor.listen_tcp("127.0.0.1:8000".parse().unwrap(), |_peer| Some(Echo))?;
//! println!("listening on {}", port.local_addr());
//! reactor.install_signal_handlers()?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Child processes run with their stdio on pipes the loop drives: [`Reactor::spawn_process`]
//! reports to a [`ProcessProtocol`] (see [`process`]).
//!
//! # The loop
//! [`Reactor::turn`] is one iteration, as in Twisted: time until the next timer, wait on mio,
//! run the due timers, dispatch readiness (accept, read, write, connect completion), run queued
//! callbacks, flush written transports. [`Reactor::run`] repeats it until a graceful
//! [`stop`](Reactor::stop) completes.
//!
//! # Where things are
//! | file | its one job |
//! |---|---|
//! | `reactor.rs` | [`Reactor`]: settings, the public calls, `run` and `turn` (the loop) |
//! | `core.rs` | the connection table: ids, phases, add / finish / abort, the task queue |
//! | `dispatch.rs` | the ONE function every user callback goes through (span, panic isolation, settling queued work) |
//! | `ctx.rs`, `transport.rs` | what user code is lent: [`LoopCtx`], [`Ctx`], [`Transport`] |
//! | `stream.rs`, `flow.rs` | a connection's reads, flushes and half-close; flow control applied to the table |
//! | `datagram.rs` | UDP: [`DatagramProtocol`], [`DatagramCtx`], [`DatagramPort`], reading with the budget, stopping (no write buffer: see its docs) |
//! | `process/` | child processes: [`ProcessProtocol`], [`ProcessCtx`], the pipes' pump, SIGCHLD reaping, killing at the shutdown deadline |
//! | `endpoint.rs` | [`Reactor::listen_endpoint`], [`Reactor::connect_endpoint`]: Twisted's endpoint strings |
//! | `happy.rs` | [`LoopCtx::connect_host`]: a host name resolved on the pool, then Happy Eyeballs (RFC 8305) |
//! | `reconnect.rs` | [`ClientService`]: keeps a client connected, retrying with backoff |
//! | `threads.rs` | the thread pool: [`LoopCtx::defer_to_thread`] runs blocking work on a worker and its `on_done` on the loop |
//! | `stdio.rs` | [`Reactor::standard_io`]: a protocol over the process's own stdin and stdout (socket pair + copying threads) |
//! | `accept.rs`, `connect.rs`, `shutdown.rs` | listening and accepting; connecting out; graceful stop |
//! | `timers.rs`, `clock.rs`, `handle.rs` | the timer queue (generic), time, other threads |
//! | `testing/` | the harness, and the test seams behind one optional field |
//! | `pool/` | every core: [`pool::ReactorPool`] of reactor threads, reuseport or hand-off listeners, cross-reactor calls, per-reactor counters |
//!
//! Socket kinds, their setup, the accept errno classes, the write buffer and the producer state
//! machine live in `torsion-transports`, unit-tested without a loop.
//!
//! # Edge-triggered readiness
//! mio reports readiness on edges. The reactor reads until a short read, `WouldBlock` or the
//! per-turn budget; a connection (or listener) with budget left over is put on a ready list and
//! served next turn with a zero poll timeout, because no new edge will come for data already in
//! the kernel. `resume_reading` schedules a read for the same reason.
//!
//! # Time
//! Time comes from a [`Clock`]: monotonic by default, a [`ManualClock`] in tests.
//!
//! # Logging
//! The reactor logs through [`tracing`](https://docs.rs/tracing): lifecycle at `debug` (one span
//! per connection with its id and peer), caught panics at `error`, failed client connections and
//! resource exhaustion at `warn`. Nothing is printed until the program installs a subscriber,
//! for example `tracing-subscriber` filtered by `RUST_LOG`:
//!
//! ```
//! use tracing_subscriber::EnvFilter;
//!
//! let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
//! tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
//! ```
//!
//! # Ending `run` with a result
//! [`Reactor::run`] returns when a graceful stop has finished. A callback ends it with an error
//! through [`LoopCtx::stop_with_error`], or with any value through [`LoopCtx::stop_with`] (read it with
//! [`Reactor::run_with_result`]); a client whose only connection fails ends it with that
//! failure by default (see [`ClientFactory`]). [`Reactor::before_shutdown`] runs code when a
//! stop begins, before connections are closed.

mod accept;
pub mod clock;
mod connect;
mod core;
mod ctx;
pub mod datagram;
mod dispatch;
pub mod endpoint;
mod error;
mod flow;
mod handle;
pub mod happy;
pub mod pool;
pub mod process;
pub mod protocol;
mod reactor;
pub mod reconnect;
mod shutdown;
pub mod stdio;
mod stream;
pub mod testing;
pub mod threads;
mod timers;
mod transport;

pub use accept::ListeningPort;
pub use bytes::Bytes;
pub use clock::{Clock, ManualClock, SystemClock};
pub use core::{ConnId, ListenerId};
pub use ctx::{Ctx, LoopCtx};
pub use datagram::{DatagramCtx, DatagramPort, DatagramProtocol};
pub use endpoint::Connecting;
pub use error::Error;
pub use handle::ReactorHandle;
pub use happy::{HostConnectId, Resolver, SystemResolver};
pub use nix::sys::signal::Signal;
pub use process::{ProcessCtx, ProcessId, ProcessProtocol, ProcessTransport};
pub use protocol::{
    client_factory, ClientFactory, ClientFn, DefaultFailure, DisconnectReason, Factory, Producer, Protocol,
    Wrapper,
};
pub use reactor::{
    Reactor, DEFAULT_ACCEPTS_PER_TURN, DEFAULT_ACCEPT_BACKOFF, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READS_PER_TURN, DEFAULT_READ_BUFFER, DEFAULT_SHUTDOWN_DRAIN, DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_WRITES_PER_FLUSH,
};
pub use reconnect::{Backoff, ClientService, Target};
pub use threads::JobError;
pub use timers::TimerId;
pub use torsion_transports::{
    Address, AddressParseError, ClientEndpoint, EndpointParseError, InheritedKind, ListenOptions,
    PeerCredentials, RecvOutcome, SendOutcome, ServerEndpoint, SystemdDomain, TransportError, UdpOptions,
    UnixAddr, UnixListenOptions, DEFAULT_MAX_DATAGRAM,
};
pub use transport::{ProducerSource, Transport};
