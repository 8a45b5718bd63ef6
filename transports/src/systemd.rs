//! Socket activation: adopting listening sockets a service manager (systemd, or any launcher
//! speaking its protocol) opened for us and passed as descriptors 3, 4, ... with
//! `LISTEN_FDS=N` and `LISTEN_PID=<our pid>` in the environment (`sd_listen_fds(3)`).
//!
//! [`inherited_listener`] takes the socket at an index, checks it is a listening stream
//! socket of the kind asked for, makes it non-blocking and returns it ready for the loop.
//! Each index can be taken once per process (a second take is an error, never a second owner
//! of the same descriptor). The environment is left as it is. A Unix socket adopted this way
//! is never unlinked by us: its file belongs to whoever created it.
//!
//! The descriptors are read with the `listenfd` crate (its `LISTEN_PID` check: the sockets
//! are ignored when the variable names another process, as `sd_listen_fds` does; when it is
//! absent the check is skipped, which lets tools like `systemfd` proxy through wrappers).

use std::io;
use std::sync::{Mutex, OnceLock, PoisonError};

use listenfd::ListenFd;

use crate::listener::ListenerSocket;
use crate::TransportError;

/// The address family an inherited socket must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InheritedKind {
    /// A TCP socket over IPv4 (`domain=INET`).
    Inet,
    /// A TCP socket over IPv6 (`domain=INET6`).
    Inet6,
    /// A Unix stream socket (`domain=UNIX`).
    Unix,
}

/// The process's inherited descriptors, read from the environment once.
fn inherited() -> &'static Mutex<ListenFd> {
    static FDS: OnceLock<Mutex<ListenFd>> = OnceLock::new();
    FDS.get_or_init(|| Mutex::new(ListenFd::from_env()))
}

/// How many sockets were passed to this process (0 without socket activation).
pub fn inherited_count() -> usize {
    inherited().lock().unwrap_or_else(PoisonError::into_inner).len()
}

/// Takes the inherited listening socket at `index` (0 is descriptor 3), which must be of
/// `kind`; it is made non-blocking. Errors: no such index, already taken, or not a listening
/// socket of that kind ([`TransportError::Inherited`]).
pub fn inherited_listener(index: usize, kind: InheritedKind) -> Result<ListenerSocket, TransportError> {
    let fail = |reason: String| TransportError::Inherited { index, reason };
    let mut fds = inherited().lock().unwrap_or_else(PoisonError::into_inner);
    if index >= fds.len() {
        return Err(fail(format!("{} socket(s) were passed (LISTEN_FDS, for this LISTEN_PID)", fds.len())));
    }
    let taken = || fail("it was taken already".to_owned());
    let socket = match kind {
        InheritedKind::Inet | InheritedKind::Inet6 => {
            let listener = fds
                .take_tcp_listener(index)
                .map_err(|e| fail(format!("not a listening TCP socket: {e}")))?
                .ok_or_else(taken)?;
            let family_ok = match listener.local_addr() {
                Ok(addr) => addr.is_ipv6() == (kind == InheritedKind::Inet6),
                Err(e) => return Err(fail(format!("cannot read its address: {e}"))),
            };
            if !family_ok {
                return Err(fail(format!("its address family is not the {kind:?} asked for")));
            }
            listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
            ListenerSocket::Tcp(mio::net::TcpListener::from_std(listener))
        }
        InheritedKind::Unix => {
            let listener = fds
                .take_unix_listener(index)
                .map_err(|e| fail(format!("not a listening Unix socket: {e}")))?
                .ok_or_else(taken)?;
            listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
            ListenerSocket::Unix(
                crate::unix::UnixListenerSocket::adopt(listener)
                    .map_err(|e: io::Error| fail(e.to_string()))?,
            )
        }
    };
    Ok(socket)
}
