//! Sockets and transports for torsion.
//!
//! This crate owns everything about a connection that is not the event loop and not the user's
//! protocol: building listening sockets (socket2: SO_REUSEADDR, backlog, SO_REUSEPORT, IPv6),
//! non-blocking connects completed as mio documents, the per-connection [`WriteBuffer`] with
//! watermarks, and the [`Connection`] state machine (reading, pausing, half-close, clean and
//! abortive close). The reactor drives it; it can be tested here without a loop.
//!
//! ```
//! use torsion_transports::{bind_listener, ListenOptions, WriteBuffer};
//!
//! let listener = bind_listener("127.0.0.1:0".parse().unwrap(), &ListenOptions::default()).unwrap();
//! assert_ne!(listener.local_addr().unwrap().port(), 0);
//!
//! let mut buffer = WriteBuffer::new();
//! assert!(!buffer.push_slice(b"hello"), "5 bytes are below the 64 KiB high watermark");
//! assert_eq!(buffer.len(), 5);
//! ```

pub mod buffer;
pub mod connection;
pub mod memory;
pub mod tcp;

use std::io;
use std::net::SocketAddr;

pub use buffer::{
    FlushStatus, WriteBuffer, DEFAULT_HIGH_WATERMARK, DEFAULT_LOW_WATERMARK, DIRECT_WRITE_MIN,
    MAX_WRITE_PER_CALL,
};
pub use connection::{Connection, ReadOutcome, Socket, WriteState};
pub use memory::{MemorySocket, Stream};
pub use tcp::{
    bind_listener, connect_progress, start_connect, ConnectProgress, ListenOptions, DEFAULT_BACKLOG,
};

/// Errors from setting up sockets and transports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Binding or listening on an address failed (address in use, permission, …).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// Starting a connect failed at once.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// Watermarks with low above high.
    #[error("invalid write buffer limits: low ({low}) is above high ({high})")]
    InvalidWatermarks {
        /// The high watermark given.
        high: usize,
        /// The low watermark given.
        low: usize,
    },
}
