//! Listening sockets and accepting: one [`ListenerSocket`] for every stream kind,
//! [`ListenerSocket::accept_one`] classifying each outcome, and the [`ReserveFd`] spent when
//! descriptors run out.
//!
//! # Accept errors
//! `accept(2)` fails in two ways that call for opposite reactions. Errors that concern one
//! connection only (`ECONNABORTED`, `EPERM`, `EINTR`, `ECONNRESET`, `EPROTO`) mean "go on to
//! the next one". Errors that mean the process or system ran out of something (`EMFILE`,
//! `ENFILE`, `ENOBUFS`, `ENOMEM`) mean "stop and back off": retrying at once spins, and an
//! edge-triggered listener gets no new event for clients already queued, so the loop spends
//! the reserve descriptor to accept-and-close them (they get a clean close instead of hanging)
//! and retries after a pause.

use std::fs::File;
use std::io;

use mio::net::TcpListener;

use crate::address::Address;
use crate::socket::BoxedStream;

/// How many queued clients the reserve descriptor accepts and closes at most, per exhaustion.
pub const RESERVE_DRAIN_MAX: usize = 4096;

/// A listening stream socket of any kind.
#[derive(Debug)]
pub enum ListenerSocket {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix stream socket (its file is removed when it is dropped, if still ours).
    Unix(crate::unix::UnixListenerSocket),
    /// Connections another thread accepted and handed over (see [`crate::handoff`]).
    Handoff(crate::handoff::HandoffReceiver),
}

/// The result of one accept attempt.
#[derive(Debug)]
pub enum AcceptOutcome {
    /// A new connection and its peer's address.
    Accepted(BoxedStream, Address),
    /// Nothing is waiting.
    WouldBlock,
    /// This one connection failed (it was reset before we took it, …): go on to the next.
    Skip(io::Error),
    /// Out of descriptors or memory (or an unexpected error): stop accepting for a while.
    Exhausted(io::Error),
}

/// True for accept errors that concern one connection only.
pub fn is_per_connection_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPERM | libc::EINTR | libc::ECONNRESET | libc::EPROTO)
    ) || e.kind() == io::ErrorKind::Interrupted
}

/// True for accept errors that mean the process or system ran out of a resource.
pub fn is_resource_accept_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Classifies a failed accept.
pub fn classify_accept_error(e: io::Error) -> AcceptOutcome {
    if e.kind() == io::ErrorKind::WouldBlock {
        AcceptOutcome::WouldBlock
    } else if is_per_connection_accept_error(&e) {
        AcceptOutcome::Skip(e)
    } else {
        AcceptOutcome::Exhausted(e)
    }
}

impl ListenerSocket {
    /// The address it listens on (the real port when port 0 was asked for).
    pub fn local_address(&self) -> io::Result<Address> {
        match self {
            ListenerSocket::Tcp(l) => l.local_addr().map(Address::Inet),
            ListenerSocket::Unix(l) => Ok(Address::Unix(l.local_addr().clone())),
            ListenerSocket::Handoff(h) => Ok(h.local_address().clone()),
        }
    }

    /// Accepts one connection.
    pub fn accept_one(&self) -> AcceptOutcome {
        let result = match self {
            ListenerSocket::Tcp(l) => {
                l.accept().map(|(s, peer)| (Box::new(s) as BoxedStream, Address::Inet(peer)))
            }
            ListenerSocket::Unix(l) => {
                l.accept().map(|(s, peer)| (Box::new(s) as BoxedStream, Address::Unix(peer)))
            }
            ListenerSocket::Handoff(h) => return h.accept_one(),
        };
        match result {
            Ok((stream, peer)) => AcceptOutcome::Accepted(stream, peer),
            Err(e) => classify_accept_error(e),
        }
    }

    /// Accepts and closes queued clients (at most `max`), for when descriptors ran out and
    /// one was freed to do this. Returns how many were closed.
    pub fn close_queued(&self, max: usize) -> usize {
        let mut closed = 0;
        while closed < max {
            match self.accept_one() {
                AcceptOutcome::Accepted(stream, _) => drop(stream),
                AcceptOutcome::Skip(_) => {}
                AcceptOutcome::WouldBlock | AcceptOutcome::Exhausted(_) => break,
            }
            closed += 1;
        }
        closed
    }
}

impl mio::event::Source for ListenerSocket {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            ListenerSocket::Tcp(l) => l.register(registry, token, interests),
            ListenerSocket::Unix(l) => l.register(registry, token, interests),
            ListenerSocket::Handoff(h) => h.source().register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            ListenerSocket::Tcp(l) => l.reregister(registry, token, interests),
            ListenerSocket::Unix(l) => l.reregister(registry, token, interests),
            ListenerSocket::Handoff(h) => h.source().reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            ListenerSocket::Tcp(l) => l.deregister(registry),
            ListenerSocket::Unix(l) => l.deregister(registry),
            ListenerSocket::Handoff(h) => h.source().deregister(registry),
        }
    }
}

/// A spare descriptor (`/dev/null`), held so that when `accept` fails for lack of descriptors
/// one can be freed to accept-and-close the clients already queued.
#[derive(Debug)]
pub struct ReserveFd(Option<File>);

impl ReserveFd {
    /// Opens the spare descriptor (best effort: without it, queued clients wait for the
    /// retry instead).
    pub fn new() -> ReserveFd {
        ReserveFd(File::open("/dev/null").ok())
    }

    /// Frees the spare descriptor, runs `f` (which may open one descriptor), then takes the
    /// spare back. Returns `None` if there was no spare to free.
    pub fn spend<R>(&mut self, f: impl FnOnce() -> R) -> Option<R> {
        self.0.take()?;
        let result = f();
        self.0 = File::open("/dev/null").ok();
        Some(result)
    }
}

impl Default for ReserveFd {
    fn default() -> Self {
        ReserveFd::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_classified_by_errno() {
        for errno in [libc::ECONNABORTED, libc::EPERM, libc::EINTR, libc::ECONNRESET, libc::EPROTO] {
            assert!(matches!(
                classify_accept_error(io::Error::from_raw_os_error(errno)),
                AcceptOutcome::Skip(_)
            ));
        }
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(is_resource_accept_error(&e));
            assert!(matches!(classify_accept_error(e), AcceptOutcome::Exhausted(_)));
        }
        assert!(matches!(classify_accept_error(io::ErrorKind::WouldBlock.into()), AcceptOutcome::WouldBlock));
        assert!(matches!(
            classify_accept_error(io::Error::from_raw_os_error(libc::EBADF)),
            AcceptOutcome::Exhausted(_)
        ));
    }

    #[test]
    fn close_queued_accepts_and_closes_waiting_clients() {
        let listener = crate::bind_listener("127.0.0.1:0".parse().unwrap(), &Default::default()).unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = ListenerSocket::Tcp(listener);
        let clients: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut closed = 0;
        while closed < 3 {
            assert!(std::time::Instant::now() < deadline, "only {closed} closed");
            closed += socket.close_queued(10);
        }
        assert!(matches!(socket.accept_one(), AcceptOutcome::WouldBlock));
        for mut c in clients {
            let mut buf = [0u8; 1];
            c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            assert_eq!(io::Read::read(&mut c, &mut buf).unwrap(), 0, "closed cleanly: EOF");
        }
    }

    #[test]
    fn the_reserve_is_freed_for_the_closure_and_taken_back() {
        let mut reserve = ReserveFd::new();
        assert_eq!(reserve.spend(|| 7), Some(7));
        assert_eq!(reserve.spend(|| 8), Some(8), "taken back after each spend");
    }
}
