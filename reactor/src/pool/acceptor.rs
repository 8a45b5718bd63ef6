//! The hand-off acceptor: one thread that accepts from a real listening socket and hands each
//! connection to a reactor through that reactor's bounded hand-off queue (round-robin or
//! least-loaded). When every queue is full it stops accepting, so clients wait in the kernel's
//! backlog instead of in memory. On stop it accepts what is queued in the backlog, hands it
//! over, and only then closes the socket.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use torsion_transports::listener::classify_accept_error;
use torsion_transports::{AcceptOutcome, Address, HandedOff, HandoffError, HandoffSender, ListenerSocket};
use tracing::{debug, error, warn};

use super::{Pick, PoolHandle};
use crate::core::ListenerId;
use crate::dispatch::panic_message;
use crate::reactor::{DEFAULT_ACCEPT_BACKOFF, DEFAULT_SHUTDOWN_DRAIN, DEFAULT_SHUTDOWN_TIMEOUT};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// How long the acceptor waits before retrying when every reactor's queue is full.
const FULL_RETRY: Duration = Duration::from_millis(1);

/// Stops an acceptor thread from anywhere.
#[derive(Debug, Clone)]
pub(crate) struct AcceptorCtl {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl AcceptorCtl {
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// One reactor as the acceptor sees it.
pub(crate) struct Target {
    pub(crate) reactor: usize,
    pub(crate) sender: HandoffSender,
    /// Connections this reactor took out of its hand-off queue (counted by its factory).
    pub(crate) taken: Arc<AtomicU64>,
    pub(crate) listener: ListenerId,
    handed: u64,
    gone: bool,
}

impl Target {
    pub(crate) fn new(
        reactor: usize,
        sender: HandoffSender,
        taken: Arc<AtomicU64>,
        listener: ListenerId,
    ) -> Self {
        Target { reactor, sender, taken, listener, handed: 0, gone: false }
    }
}

type Conn = (HandedOff, Address);

/// One accept from the real socket.
enum Next {
    Conn(Conn),
    Empty,
    Skip(io::Error),
    Exhausted(io::Error),
}

struct Acceptor {
    socket: ListenerSocket,
    targets: Vec<Target>,
    pick: Pick,
    next: usize,
    pool: PoolHandle,
}

/// Starts the acceptor thread for `socket`; the pool must count it in `acceptors_live`.
pub(crate) fn spawn(
    mut socket: ListenerSocket,
    targets: Vec<Target>,
    pick: Pick,
    pool: PoolHandle,
) -> io::Result<(AcceptorCtl, JoinHandle<()>)> {
    let poll = Poll::new()?;
    poll.registry().register(&mut socket, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let ctl = AcceptorCtl { waker, stop: Arc::new(AtomicBool::new(false)) };
    let stop = ctl.stop.clone();
    let acceptor = Acceptor { socket, targets, pick, next: 0, pool: pool.clone() };
    let thread = std::thread::Builder::new().name("torsion-acceptor".into()).spawn(move || {
        // `run` reports its end to the pool; a panic must not leave a stop waiting for it.
        if let Err(panic) = catch_unwind(AssertUnwindSafe(move || acceptor.run(poll, stop))) {
            error!(panic = panic_message(&*panic), "acceptor thread panicked; its listener is closed");
            pool.acceptor_done();
        }
    })?;
    Ok((ctl, thread))
}

impl Acceptor {
    fn run(mut self, mut poll: Poll, stop: Arc<AtomicBool>) {
        let mut events = Events::with_capacity(16);
        let mut pending: Option<Conn> = None;
        let mut backoff_until: Option<Instant> = None;
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let timeout = match (&pending, backoff_until) {
                (Some(_), _) => Some(FULL_RETRY),
                (None, Some(until)) => Some(until.saturating_duration_since(now)),
                (None, None) => None,
            };
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(error = %e, "acceptor: polling failed; closing the listener");
                    break;
                }
            }
            if let Some(conn) = pending.take() {
                if let Err(conn) = self.hand(conn) {
                    pending = Some(conn);
                    continue;
                }
            }
            if backoff_until.is_some_and(|until| Instant::now() < until) {
                continue;
            }
            backoff_until = None;
            // Edge-triggered: accept until the backlog is empty (or every queue is full).
            loop {
                match self.accept() {
                    Next::Conn(conn) => {
                        if let Err(conn) = self.hand(conn) {
                            pending = Some(conn);
                            break;
                        }
                    }
                    Next::Empty => break,
                    Next::Skip(e) => debug!(error = %e, "accept failed for one connection"),
                    Next::Exhausted(e) => {
                        warn!(error = %e, "acceptor: out of resources; backing off");
                        backoff_until = Some(Instant::now() + DEFAULT_ACCEPT_BACKOFF);
                        break;
                    }
                }
            }
        }
        self.drain(pending);
    }

    /// Stop: hand over what is queued in the backlog, then close the socket.
    fn drain(mut self, pending: Option<Conn>) {
        let deadline = Instant::now() + DEFAULT_SHUTDOWN_TIMEOUT;
        let mut drained = 0;
        if let Some(conn) = pending {
            self.hand_until(conn, deadline);
        }
        while drained < DEFAULT_SHUTDOWN_DRAIN {
            match self.accept() {
                Next::Conn(conn) => {
                    drained += 1;
                    self.hand_until(conn, deadline);
                }
                Next::Skip(_) => {}
                Next::Empty | Next::Exhausted(_) => break,
            }
        }
        debug!(drained, "acceptor: backlog handed over; closing the listener");
        drop(self.socket);
        if !self.pool.is_stopping() {
            // Stopped alone (`PoolListener::stop_listening`): the reactors' hand-off
            // listeners go too, after what was just handed over.
            for t in &self.targets {
                let id = t.listener;
                if let Ok(handle) = self.pool.reactor(t.reactor) {
                    handle.call_from_thread(move |cx| cx.stop_listening(id));
                }
            }
        }
        drop(self.targets);
        self.pool.acceptor_done();
    }

    /// Accepts one connection from the real socket, as a `Send` socket.
    fn accept(&self) -> Next {
        let accepted = match &self.socket {
            ListenerSocket::Tcp(l) => l.accept().map(|(s, peer)| (HandedOff::Tcp(s), Address::Inet(peer))),
            ListenerSocket::Unix(l) => l.accept().map(|(s, peer)| (HandedOff::Unix(s), Address::Unix(peer))),
            _ => Err(io::ErrorKind::WouldBlock.into()),
        };
        match accepted {
            Ok(conn) => Next::Conn(conn),
            Err(e) => match classify_accept_error(e) {
                AcceptOutcome::Skip(e) => Next::Skip(e),
                AcceptOutcome::Exhausted(e) => Next::Exhausted(e),
                _ => Next::Empty,
            },
        }
    }

    /// Hands a connection to a reactor: round-robin, or the one with the fewest open and
    /// queued connections. Every queue full: the connection comes back. Every reactor gone:
    /// it is closed.
    fn hand(&mut self, conn: Conn) -> Result<(), Conn> {
        let n = self.targets.len();
        let mut order: Vec<usize> = (0..n).map(|i| (self.next + i) % n).collect();
        if self.pick == Pick::LeastLoaded {
            let pool = &self.pool;
            let load = |t: &Target| {
                let open = pool.shared.members[t.reactor].stats.open();
                open + t.handed.saturating_sub(t.taken.load(Ordering::Relaxed))
            };
            // Stable: ties keep the round-robin order.
            order.sort_by_key(|&i| load(&self.targets[i]));
        }
        let (mut stream, mut peer) = conn;
        let mut full = false;
        for i in order {
            let target = &mut self.targets[i];
            if target.gone {
                continue;
            }
            match target.sender.send(stream, peer) {
                Ok(()) => {
                    target.handed += 1;
                    self.next = (i + 1) % n;
                    return Ok(());
                }
                Err(HandoffError::Full(s, p)) => {
                    full = true;
                    (stream, peer) = (s, p);
                }
                Err(HandoffError::Gone(s, p)) => {
                    target.gone = true;
                    (stream, peer) = (s, p);
                }
            }
        }
        if full {
            return Err((stream, peer));
        }
        warn!(%peer, "acceptor: no reactor left to take a connection; closing it");
        Ok(())
    }

    fn hand_until(&mut self, mut conn: Conn, deadline: Instant) {
        loop {
            match self.hand(conn) {
                Ok(()) => return,
                Err(back) if Instant::now() < deadline => {
                    conn = back;
                    std::thread::sleep(FULL_RETRY);
                }
                Err(_) => {
                    warn!("acceptor: every reactor's queue stayed full until the deadline; closing a client");
                    return;
                }
            }
        }
    }
}
