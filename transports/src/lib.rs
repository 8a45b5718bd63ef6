//! Sockets and transports for torsion.
//!
//! This crate owns everything about a connection that is not the event loop and not the user's
//! protocol, for every socket kind:
//!
//! | module | its one job |
//! |---|---|
//! | [`address`] | one [`Address`] type for peers and local ends (Internet or Unix), displayed as users write them |
//! | [`socket`] | [`StreamSocket`]: what the loop needs of a stream socket of any kind (see its "Adding a transport") |
//! | [`tcp`], [`unix`] | the two stream kinds: binding (socket2 options; stale Unix files, modes, lock files, abstract names), connecting, options |
//! | [`listener`] | [`ListenerSocket`], one accept with its outcome classified (per-connection vs resource errors), the reserve descriptor |
//! | [`endpoint`] | Twisted's endpoint strings (`tcp:8080:interface=127.0.0.1`, `unix:/run/app.sock`, `tls:host=…:port=443`) parsed into [`ServerEndpoint`] and [`ClientEndpoint`]: pure parsing, see its `# Grammar` |
//! | [`connector`] | starting a non-blocking connect of any kind, and establishing it |
//! | [`connection`] | the per-connection state machine: reading, pausing, half-close, clean, abortive and lingering close |
//! | [`buffer`] | the [`WriteBuffer`] with watermarks, coalescing, and the direct write of large chunks |
//! | [`producer`] | the producer/consumer contract as pure transitions ([`ProducerState`]) |
//! | [`tls`], [`tls_config`] | TLS as a byte layer between socket and buffer ([`TlsStream`], rustls sans-IO) and configuration helpers |
//! | [`udp`] | UDP sockets: binding, receiving with oversized datagrams dropped, typed send outcomes, connected mode, multicast and broadcast (no write buffer: see its docs) |
//! | [`memory`] | a memory socket for the test harness, driven like a real one |
//!
//! The reactor drives it; everything here is tested without a loop.
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

pub mod address;
pub mod buffer;
pub mod connection;
pub mod connector;
pub mod endpoint;
pub mod handoff;
pub mod listener;
pub mod memory;
pub mod producer;
pub mod socket;
pub mod stdio;
pub mod systemd;
pub mod tcp;
pub mod tls;
pub mod tls_config;
pub mod udp;
pub mod unix;

use std::io;
use std::net::SocketAddr;

pub use address::{Address, AddressParseError, UnixAddr, UNIX_PATH_MAX};
pub use buffer::{
    FlushStatus, WriteBuffer, DEFAULT_HIGH_WATERMARK, DEFAULT_LOW_WATERMARK, DIRECT_WRITE_MAX,
    DIRECT_WRITE_MIN, MAX_WRITE_PER_CALL,
};
pub use connection::{Connection, Linger, ReadOutcome, Socket};
pub use connector::{apply_nodelay, establish, start_stream_connect};
pub use endpoint::{ClientEndpoint, EndpointParseError, ServerEndpoint, SystemdDomain};
pub use handoff::{handoff_queue, HandedOff, HandoffError, HandoffReceiver, HandoffSender};
pub use listener::{AcceptOutcome, ListenerSocket, ReserveFd, RESERVE_DRAIN_MAX};
pub use memory::MemorySocket;
pub use producer::{ProducerCall, ProducerState};
/// rustls, re-exported so users build configurations with the same version torsion uses.
pub use rustls;
pub use socket::{BoxedStream, ConnectProgress, PeerCredentials, StreamSocket};
pub use systemd::{inherited_count, inherited_listener, InheritedKind};
pub use tcp::{bind_listener, connect_progress, start_connect, ListenOptions, DEFAULT_BACKLOG};
pub use tls::{
    TlsFailure, TlsRole, TlsStream, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_TLS_CLOSE_TIMEOUT, TLS_WRITE_BATCH,
};
pub use tls_config::{
    client_config_webpki, client_config_with_ca, client_config_with_ca_dir, client_config_with_roots,
    load_certs, load_private_key, server_config_from_pem, server_config_from_pem_chain, tls_provider,
    TlsConfigError,
};
pub use udp::{bind_udp, RecvOutcome, SendOutcome, UdpOptions, UdpSocket, DEFAULT_MAX_DATAGRAM};
pub use unix::{
    bind_unix_listener, connect_unix, peer_credentials, unix_connect_progress, UnixListenOptions,
    UnixListenerSocket, DEFAULT_UNIX_MODE,
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
    /// An inherited (socket-activated) listening socket could not be adopted.
    #[error("cannot use inherited socket {index} (descriptor {}): {reason}", index + 3)]
    Inherited {
        /// Its index (0 is descriptor 3).
        index: usize,
        /// What was wrong.
        reason: String,
    },
    /// Watermarks with low above high.
    #[error("invalid write buffer limits: low ({low}) is above high ({high})")]
    InvalidWatermarks {
        /// The high watermark given.
        high: usize,
        /// The low watermark given.
        low: usize,
    },
    /// A Unix socket path or abstract name longer than `sun_path` holds.
    #[error("Unix socket address {addr} is {len} bytes long; the limit is {max} bytes")]
    UnixPathTooLong {
        /// The address asked for.
        addr: UnixAddr,
        /// Its path's (or abstract name's) length in bytes.
        len: usize,
        /// [`UNIX_PATH_MAX`].
        max: usize,
    },
    /// A file that is not a socket is where a Unix listener was to be bound; it is left alone.
    #[error("cannot listen on unix:{}: the file there is not a socket (left untouched)", path.display())]
    NotASocket {
        /// The path asked for.
        path: std::path::PathBuf,
    },
    /// A live server is already listening on the address (its socket file, if any, is left
    /// untouched).
    #[error("cannot listen on {addr}: address in use: a live server is listening there")]
    AddressInUse {
        /// The address asked for.
        addr: Address,
    },
    /// Another live process holds the listener's lock file (`lockfile` option).
    #[error("cannot listen: lock file {} is held by live process {pid}", lock_path.display())]
    Locked {
        /// The lock file (`PATH.lock`).
        lock_path: std::path::PathBuf,
        /// The pid it names.
        pid: u32,
    },
    /// Creating, reading or replacing a lock file failed.
    #[error("cannot take lock file {}: {source}", lock_path.display())]
    LockFile {
        /// The lock file (`PATH.lock`).
        lock_path: std::path::PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An unnamed Unix address was given where a name is needed (listening or connecting).
    #[error("an unnamed Unix address cannot be listened on or connected to")]
    UnnamedUnixAddress,
    /// Binding or listening on a Unix address failed.
    #[error("cannot listen on {addr}: {source}")]
    BindUnix {
        /// The address asked for.
        addr: UnixAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// Starting a Unix connect failed at once (no such file, refused, backlog full: `WouldBlock`).
    #[error("cannot connect to {addr}: {source}")]
    ConnectUnix {
        /// The address asked for.
        addr: UnixAddr,
        /// The underlying error.
        source: io::Error,
    },
}
