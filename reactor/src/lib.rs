//! The torsion reactor: a single-threaded event loop on mio, with Twisted's protocol/factory
//! model.
//!
//! A [`Factory`] builds a [`Protocol`] for each accepted connection; the reactor calls its
//! `connection_made`, `data_received`, `eof_received` and `connection_lost`, lending each call a
//! [`Ctx`] through which the protocol writes to its [`Transport`], sets timers, reaches other
//! connections by [`ConnId`] and stops the reactor. The contract (call order, re-entrancy,
//! half-close, backpressure, panics) is written down in [`protocol`].
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
//! # The loop
//! [`Reactor::turn`] is one iteration, as in Twisted: time until the next timer, wait on mio,
//! run the due timers, dispatch readiness (accept, read, write, connect completion), run queued
//! callbacks, flush written transports. [`Reactor::run`] repeats it until a graceful
//! [`stop`](Reactor::stop) completes.
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
//! through [`Ctx::stop_with_error`], or with any value through [`Ctx::stop_with`] (read it with
//! [`Reactor::run_with_result`]); a client whose only connection fails ends it with that
//! failure by default (see [`ClientFactory`]). [`Reactor::before_shutdown`] runs code when a
//! stop begins, before connections are closed.

pub mod clock;
mod handle;
pub mod protocol;
mod reactor;
pub mod testing;
mod timers;

pub use bytes::Bytes;
pub use clock::{Clock, ManualClock, SystemClock};
pub use handle::ReactorHandle;
pub use protocol::{
    client_factory, ClientFactory, ClientFn, DefaultFailure, DisconnectReason, Factory, Producer, Protocol,
};
pub use reactor::{
    ConnId, Ctx, ListenerId, ListeningPort, ProducerSource, Reactor, Transport, DEFAULT_ACCEPTS_PER_TURN,
    DEFAULT_ACCEPT_BACKOFF, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READS_PER_TURN, DEFAULT_READ_BUFFER,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_WRITES_PER_FLUSH,
};
pub use timers::TimerId;
pub use torsion_transports::{ListenOptions, TransportError};

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Errors from setting up listeners and connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Socket setup failed (bind, listen, starting a connect, bad watermarks).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The connection was refused, the host unreachable, or another connect error.
    #[error("connection to {addr} failed: {source}")]
    ConnectFailed {
        /// The address connected to.
        addr: SocketAddr,
        /// The error the socket reported.
        source: io::Error,
    },
    /// The connect did not complete in time.
    #[error("connection to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address connected to.
        addr: SocketAddr,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The connect was cancelled because the reactor is stopping.
    #[error("connection to {addr} cancelled: the reactor is stopping")]
    Cancelled {
        /// The address connected to.
        addr: SocketAddr,
    },
    /// A producer is already registered on this transport.
    #[error("a producer is already registered on this transport")]
    ProducerAlreadyRegistered,
    /// The reactor is stopping and takes no new listeners or connections.
    #[error("the reactor is stopping")]
    Stopping,
    /// Another I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An error of the application's own, given to [`Ctx::stop_with_error`] to end
    /// [`Reactor::run`] with it.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps an application error (for [`Ctx::stop_with_error`]).
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Other(error.into())
    }
}
