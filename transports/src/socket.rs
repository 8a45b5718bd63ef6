//! The one trait every stream transport's socket implements ([`StreamSocket`]), and the boxed
//! form the event loop drives ([`BoxedStream`]).
//!
//! # Adding a transport
//! A new kind of stream connection is a socket type that can read, write, shut its write half
//! down and close abortively ([`Socket`]), register with mio ([`mio::event::Source`]), and
//! answer the few questions in [`StreamSocket`] (local address, connect progress, socket
//! options that apply to it), plus its setup: a [`ListenerSocket`](crate::ListenerSocket)
//! variant that accepts it and a connector that starts it. Everything above it (write buffer,
//! watermarks, producers, half-close, lingering close, timers, panics, shutdown) is shared.
//!
//! The loop holds each connection's socket as a `Box<dyn StreamSocket>`: one indirect call per
//! read or write system call, and no match on socket kinds anywhere in the loop.

use std::any::Any;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::address::Address;
use crate::connection::Socket;

/// Where a non-blocking connect stands after a writable (or error) event.
#[derive(Debug)]
pub enum ConnectProgress {
    /// The connection is established.
    Connected,
    /// Not yet: wait for the next event.
    Pending,
    /// The connect failed (refused, unreachable, …).
    Failed(io::Error),
}

impl ConnectProgress {
    /// Where a non-blocking connect stands, following mio's documented steps: the socket's
    /// pending error (`take_error`) first, then whether it has a peer (`peer_addr`:
    /// `NotConnected` or `EINPROGRESS` means "not yet"). Shared by every stream kind.
    pub fn check<A>(take_error: io::Result<Option<io::Error>>, peer: io::Result<A>) -> ConnectProgress {
        match take_error {
            Ok(Some(e)) | Err(e) => return ConnectProgress::Failed(e),
            Ok(None) => {}
        }
        match peer {
            Ok(_) => ConnectProgress::Connected,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectProgress::Pending,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => ConnectProgress::Pending,
            Err(e) => ConnectProgress::Failed(e),
        }
    }
}

/// A stream socket the event loop drives: TCP, Unix, or a test's memory socket.
pub trait StreamSocket: Socket + mio::event::Source + fmt::Debug + Any {
    /// Our end's address, once connected (`None` when the socket cannot tell).
    fn local_address(&self) -> Option<Address> {
        None
    }

    /// After an event on a connecting socket: connected, still pending, or failed. Sockets
    /// that are connected from the start (accepted, or memory) report `Connected`.
    fn connect_progress(&self) -> ConnectProgress {
        ConnectProgress::Connected
    }

    /// Sets TCP_NODELAY; a no-op for sockets without Nagle's algorithm.
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let _ = on;
        Ok(())
    }

    /// Turns TCP keep-alive on (with the given idle time) or off; a no-op where it does not
    /// apply.
    fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        let _ = idle;
        Ok(())
    }

    /// The credentials of the process at the other end (Unix sockets only).
    fn peer_credentials(&self) -> Option<crate::PeerCredentials> {
        None
    }

    /// The TLS layer, when this socket is one ([`crate::tls::TlsStream`]).
    fn tls(&self) -> Option<&crate::tls::TlsStream> {
        None
    }

    /// The TLS layer, mutably.
    fn tls_mut(&mut self) -> Option<&mut crate::tls::TlsStream> {
        None
    }

    /// The socket as `Any`, for tests that reach the concrete type (the harness's memory
    /// socket).
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The form in which the loop holds a connection's socket.
pub type BoxedStream = Box<dyn StreamSocket>;

impl<S: Socket + ?Sized> Socket for Box<S> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        (**self).shutdown_write()
    }

    fn set_abortive_close(&mut self) -> io::Result<()> {
        (**self).set_abortive_close()
    }

    fn pending_output(&self) -> usize {
        (**self).pending_output()
    }

    fn may_have_more_input(&self) -> bool {
        (**self).may_have_more_input()
    }

    fn set_short_read_ends(&mut self, ends: bool) {
        (**self).set_short_read_ends(ends)
    }
}

/// The credentials of the process at the other end of a Unix socket, as the kernel recorded
/// them when it connected (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer's process id (`None` where the kernel gave none).
    pub pid: Option<i32>,
    /// The peer's user id.
    pub uid: u32,
    /// The peer's group id.
    pub gid: u32,
}
