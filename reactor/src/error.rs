//! The crate's error type.

use std::io;
use std::time::Duration;

use torsion_transports::{Address, TransportError};

#[allow(unused_imports)] // for the doc links
use crate::{Ctx, LoopCtx, Reactor};

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
        addr: Address,
        /// The error the socket reported.
        source: io::Error,
    },
    /// The connect did not complete in time.
    #[error("connection to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address connected to.
        addr: Address,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The connect was cancelled because the reactor is stopping.
    #[error("connection to {addr} cancelled: the reactor is stopping")]
    Cancelled {
        /// The address connected to.
        addr: Address,
    },
    /// The connect was cancelled with [`LoopCtx::cancel_connect`].
    #[error("connection to {addr} cancelled")]
    ConnectCancelled {
        /// The address connected to.
        addr: Address,
    },
    /// A host name did not resolve (`connect_host`).
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Every address of a host failed (`connect_host`, Happy Eyeballs); each address with its
    /// error, in the order they were tried.
    #[error("cannot connect to {host}: {}", attempts_text(errors))]
    AllAttemptsFailed {
        /// The name (or literal) connected to.
        host: String,
        /// Each address tried and why it failed.
        errors: Vec<(std::net::SocketAddr, Error)>,
    },
    /// Something this build or this call cannot do (the text says what).
    #[error("unsupported: {what}")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },
    /// A producer is already registered on this transport.
    #[error("a producer is already registered on this transport")]
    ProducerAlreadyRegistered,
    /// The reactor is stopping and takes no new listeners or connections.
    #[error("the reactor is stopping")]
    Stopping,
    /// Registering a socket with the poller failed (the io error says why: out of memory,
    /// too many watched descriptors).
    #[error("registering a socket with the poller failed: {0}")]
    Register(io::Error),
    /// A child process could not be started (missing or non-executable program, out of
    /// processes or descriptors).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program asked for.
        program: String,
        /// Why `spawn` failed.
        source: io::Error,
    },
    /// A reactor pool's cross-reactor queue to this reactor is full: the call was not queued
    /// (see [`ReactorPool`](crate::pool::ReactorPool)).
    #[error("the call queue of reactor {reactor} is full ({capacity} calls waiting)")]
    QueueFull {
        /// The reactor's index in its pool.
        reactor: usize,
        /// The queue's capacity.
        capacity: usize,
    },
    /// A reactor pool has no reactor with this index.
    #[error("no reactor {reactor} in a pool of {threads}")]
    NoSuchReactor {
        /// The index asked for.
        reactor: usize,
        /// How many reactors the pool has.
        threads: usize,
    },
    /// A pool's reactor thread has ended (stopped, or died: see [`Error::ReactorDied`]), so
    /// it takes no more calls or listeners.
    #[error("reactor {reactor} of the pool is gone")]
    ReactorGone {
        /// The reactor's index in its pool.
        reactor: usize,
    },
    /// A pool's reactor thread ended without a pool stop (its loop failed or a panic escaped
    /// it), or ended its loop with an error.
    #[error("reactor {reactor} of the pool died: {reason}")]
    ReactorDied {
        /// The reactor's index in its pool.
        reactor: usize,
        /// What ended it.
        reason: String,
    },
    /// Another I/O error (creating the poller, installing signal handlers, polling).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An error of the application's own, given to [`LoopCtx::stop_with_error`] to end
    /// [`Reactor::run`] with it.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps an application error (for [`LoopCtx::stop_with_error`]).
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Other(error.into())
    }
}

/// `[::1]:80: refused; 127.0.0.1:80: refused`.
fn attempts_text(errors: &[(std::net::SocketAddr, Error)]) -> String {
    if errors.is_empty() {
        return "no address to try".to_owned();
    }
    errors.iter().map(|(addr, e)| format!("{addr}: {e}")).collect::<Vec<_>>().join("; ")
}
