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
    /// A TLS connection failed its handshake (see [`TlsFailure`](torsion_transports::TlsFailure)).
    #[error("TLS connection to {addr} failed: {source}")]
    Tls {
        /// The address connected to.
        addr: Address,
        /// What went wrong.
        source: torsion_transports::TlsFailure,
    },
    /// A TLS session could not be started (rustls refused the configuration).
    #[error("cannot start TLS: {0}")]
    TlsSetup(torsion_transports::rustls::Error),
    /// `start_tls` on a connection that already has TLS (or is not open).
    #[error("start_tls: the connection already uses TLS or is not open")]
    TlsAlreadyStarted,
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
