//! A listener whose accept queue is in memory: another thread (an acceptor) accepts from the
//! real socket and hands each connection over through a bounded queue, and the receiving
//! reactor "accepts" it from there like from any listener (same accept loop, batch limit,
//! factory and shutdown drain).
//!
//! The queue is a `std::sync::mpsc::sync_channel` (bounded: a full queue is reported to the
//! sender, which tries another receiver or leaves the connection in the kernel's backlog). The
//! receiver is woken by one byte written to a socket pair it watches: edge-triggered, so
//! [`HandoffReceiver::accept_one`] drains the notification bytes before it reports the queue
//! empty, and a hand-off made after that writes a new byte (a new edge).

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use crate::address::Address;
use crate::listener::{classify_accept_error, AcceptOutcome, ListenerSocket};
use crate::socket::BoxedStream;

/// An accepted connection on its way to another thread (the socket kinds that are `Send`).
#[derive(Debug)]
pub enum HandedOff {
    /// A TCP connection.
    Tcp(mio::net::TcpStream),
    /// A Unix stream connection.
    Unix(mio::net::UnixStream),
}

impl HandedOff {
    fn boxed(self) -> BoxedStream {
        match self {
            HandedOff::Tcp(s) => Box::new(s),
            HandedOff::Unix(s) => Box::new(s),
        }
    }
}

/// Why a hand-off did not happen; the connection comes back so it can go elsewhere.
#[derive(Debug)]
pub enum HandoffError {
    /// The queue is full.
    Full(HandedOff, Address),
    /// The receiver is gone (its reactor stopped or died).
    Gone(HandedOff, Address),
}

/// The sending end: held by an acceptor thread. `Send + Sync + Clone`.
#[derive(Debug, Clone)]
pub struct HandoffSender {
    tx: SyncSender<(HandedOff, Address)>,
    notify: Arc<std::os::unix::net::UnixStream>,
}

impl HandoffSender {
    /// Queues a connection and wakes the receiver; a full queue or a gone receiver gives the
    /// connection back.
    pub fn send(&self, stream: HandedOff, peer: Address) -> Result<(), HandoffError> {
        match self.tx.try_send((stream, peer)) {
            Ok(()) => {
                // WouldBlock: the pair's buffer is full of wake-ups already; one is enough.
                let _ = (&*self.notify).write(&[1]);
                Ok(())
            }
            Err(TrySendError::Full((s, a))) => Err(HandoffError::Full(s, a)),
            Err(TrySendError::Disconnected((s, a))) => Err(HandoffError::Gone(s, a)),
        }
    }
}

/// The receiving end: a listener a reactor registers like a socket.
#[derive(Debug)]
pub struct HandoffReceiver {
    rx: Receiver<(HandedOff, Address)>,
    notify: mio::net::UnixStream,
    local: Address,
}

/// A bounded hand-off queue of `capacity` connections for a listener bound at `local`.
pub fn handoff_queue(capacity: usize, local: Address) -> io::Result<(HandoffSender, HandoffReceiver)> {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    let (wake_tx, wake_rx) = std::os::unix::net::UnixStream::pair()?;
    wake_tx.set_nonblocking(true)?;
    wake_rx.set_nonblocking(true)?;
    let sender = HandoffSender { tx, notify: Arc::new(wake_tx) };
    let receiver = HandoffReceiver { rx, notify: mio::net::UnixStream::from_std(wake_rx), local };
    Ok((sender, receiver))
}

impl HandoffReceiver {
    /// The address of the real listener the connections come from.
    pub fn local_address(&self) -> &Address {
        &self.local
    }

    /// Takes one handed-off connection, or `WouldBlock` once the queue is empty (after
    /// draining the wake-up bytes, so that the next hand-off raises a new edge).
    pub fn accept_one(&self) -> AcceptOutcome {
        if let Ok((s, peer)) = self.rx.try_recv() {
            return AcceptOutcome::Accepted(s.boxed(), peer);
        }
        let mut buf = [0u8; 64];
        loop {
            match (&self.notify).read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        match self.rx.try_recv() {
            Ok((s, peer)) => AcceptOutcome::Accepted(s.boxed(), peer),
            Err(_) => classify_accept_error(io::ErrorKind::WouldBlock.into()),
        }
    }

    pub(crate) fn source(&mut self) -> &mut mio::net::UnixStream {
        &mut self.notify
    }
}

impl From<HandoffReceiver> for ListenerSocket {
    fn from(receiver: HandoffReceiver) -> ListenerSocket {
        ListenerSocket::Handoff(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_gives_the_connection_back_and_an_empty_one_would_block() {
        let listener = crate::bind_listener("127.0.0.1:0".parse().unwrap(), &Default::default()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = handoff_queue(1, Address::Inet(addr)).unwrap();
        let socket = ListenerSocket::from(rx);
        assert!(matches!(socket.accept_one(), AcceptOutcome::WouldBlock));
        let _c1 = std::net::TcpStream::connect(addr).unwrap();
        let _c2 = std::net::TcpStream::connect(addr).unwrap();
        let mut accepted = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while accepted.len() < 2 {
            assert!(std::time::Instant::now() < deadline);
            if let Ok((s, peer)) = listener.accept() {
                accepted.push((s, peer));
            }
        }
        let (s2, p2) = accepted.pop().unwrap();
        let (s1, p1) = accepted.pop().unwrap();
        tx.send(HandedOff::Tcp(s1), Address::Inet(p1)).unwrap();
        assert!(matches!(tx.send(HandedOff::Tcp(s2), Address::Inet(p2)), Err(HandoffError::Full(..))));
        assert!(matches!(socket.accept_one(), AcceptOutcome::Accepted(_, peer) if peer == Address::Inet(p1)));
        assert!(matches!(socket.accept_one(), AcceptOutcome::WouldBlock));
    }
}
