//! Listening on every reactor: one SO_REUSEPORT socket per reactor, or one acceptor thread
//! handing sockets over.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use torsion_transports::{
    bind_listener, handoff_queue, Address, ListenOptions, ListenerSocket, UnixAddr, UnixListenOptions,
};

use super::acceptor::{self, AcceptorCtl, Target};
use super::stats::CountingFactory;
use super::{PoolReactor, ReactorPool, SETUP_WAIT};
use crate::accept::ListeningPort;
use crate::protocol::Factory;
use crate::Error;

/// How a pool listener spreads connections over the reactors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Balance {
    /// One SO_REUSEPORT socket per reactor on the same port; the kernel picks the socket by a
    /// hash of each connection's addresses and ports (the default: no thread touches another's
    /// listener, and the spread is even, where one shared listener woken on every thread gives
    /// up to 3:1 imbalance, libuv#747). TCP only.
    ///
    /// The port is probed first with a plain bind, so a port held by anyone (even another
    /// reuseport group of the same user, which a reuseport bind would silently join) is
    /// "address in use".
    #[default]
    ReusePort,
    /// One acceptor thread accepts and hands each socket to a reactor through that reactor's
    /// bounded queue. Unix sockets always use this.
    HandOff(Pick),
}

/// Which reactor the hand-off acceptor gives the next connection to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pick {
    /// Each in turn (skipping full queues).
    #[default]
    RoundRobin,
    /// The one with the fewest open plus queued connections (ties in turn).
    LeastLoaded,
}

/// A listener on every reactor of a pool.
#[derive(Debug)]
pub struct PoolListener {
    local: Address,
    balance: Balance,
    ports: Vec<ListeningPort>,
    acceptor: Option<AcceptorCtl>,
}

impl PoolListener {
    /// The bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// How connections are spread.
    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// Stops listening on every reactor (existing connections stay). A hand-off acceptor
    /// first hands over what is queued in its backlog; reuseport sockets close at once, as
    /// [`ListeningPort::stop_listening`] does, so clients still in their accept queues are
    /// reset by the kernel. Only a stop of the pool drains those queues first.
    pub fn stop_listening(&self) {
        match &self.acceptor {
            Some(acceptor) => acceptor.stop(),
            None => self.ports.iter().for_each(ListeningPort::stop_listening),
        }
    }
}

/// Builds one factory per reactor, on that reactor's thread.
type Make<F> = Arc<dyn Fn(&PoolReactor) -> F + Send + Sync>;

impl ReactorPool {
    /// Listens on a TCP address on every reactor, one SO_REUSEPORT socket each
    /// ([`Balance::ReusePort`]). `make_factory` runs once on each reactor's thread and
    /// builds that reactor's factory.
    pub fn listen_tcp<F: Factory>(
        &mut self,
        addr: SocketAddr,
        make_factory: impl Fn(&PoolReactor) -> F + Send + Sync + 'static,
    ) -> Result<PoolListener, Error> {
        self.listen_tcp_with(addr, Balance::ReusePort, &ListenOptions::default(), make_factory)
    }

    /// Listens on a TCP address on every reactor, spread as `balance` says, with explicit
    /// socket options (SO_REUSEPORT is turned on for [`Balance::ReusePort`]).
    pub fn listen_tcp_with<F: Factory>(
        &mut self,
        addr: SocketAddr,
        balance: Balance,
        options: &ListenOptions,
        make_factory: impl Fn(&PoolReactor) -> F + Send + Sync + 'static,
    ) -> Result<PoolListener, Error> {
        let make: Make<F> = Arc::new(make_factory);
        match balance {
            Balance::ReusePort => {
                // SO_REUSEPORT lets a socket join any group its user already has on the port:
                // a second server started by mistake would share the port instead of failing.
                // A probe without it fails with "address in use" if anything holds the port,
                // and picks the port when 0 was asked for.
                let probe = bind_listener(addr, &options.clone().reuse_port(false))?;
                let bound = probe.local_addr()?;
                drop(probe);
                let options = options.clone().reuse_port(true);
                let mut sockets = Vec::with_capacity(self.threads());
                for _ in 0..self.threads() {
                    sockets.push(ListenerSocket::Tcp(bind_listener(bound, &options)?));
                }
                let ports = self.add_everywhere(sockets, &make, None)?;
                Ok(PoolListener { local: Address::Inet(bound), balance, ports, acceptor: None })
            }
            Balance::HandOff(pick) => {
                let socket = ListenerSocket::Tcp(bind_listener(addr, options)?);
                self.listen_handoff(socket, pick, make)
            }
        }
    }

    /// Listens on a Unix socket path on every reactor, through a hand-off acceptor
    /// (round-robin).
    pub fn listen_unix<F: Factory>(
        &mut self,
        path: impl AsRef<Path>,
        make_factory: impl Fn(&PoolReactor) -> F + Send + Sync + 'static,
    ) -> Result<PoolListener, Error> {
        let addr = UnixAddr::Path(path.as_ref().to_owned());
        self.listen_unix_with(&addr, &UnixListenOptions::default(), Pick::RoundRobin, make_factory)
    }

    /// Listens on a Unix socket address on every reactor through a hand-off acceptor.
    pub fn listen_unix_with<F: Factory>(
        &mut self,
        addr: &UnixAddr,
        options: &UnixListenOptions,
        pick: Pick,
        make_factory: impl Fn(&PoolReactor) -> F + Send + Sync + 'static,
    ) -> Result<PoolListener, Error> {
        let socket = ListenerSocket::Unix(torsion_transports::bind_unix_listener(addr, options)?);
        self.listen_handoff(socket, pick, Arc::new(make_factory))
    }

    /// Listens on any stream address: TCP with SO_REUSEPORT per reactor, Unix through the
    /// hand-off acceptor.
    pub fn listen<F: Factory>(
        &mut self,
        addr: &Address,
        make_factory: impl Fn(&PoolReactor) -> F + Send + Sync + 'static,
    ) -> Result<PoolListener, Error> {
        match addr {
            Address::Inet(inet) => {
                self.listen_tcp_with(*inet, Balance::ReusePort, &ListenOptions::default(), make_factory)
            }
            Address::Unix(unix) => {
                self.listen_unix_with(unix, &UnixListenOptions::default(), Pick::RoundRobin, make_factory)
            }
        }
    }

    fn listen_handoff<F: Factory>(
        &mut self,
        socket: ListenerSocket,
        pick: Pick,
        make: Make<F>,
    ) -> Result<PoolListener, Error> {
        let local = socket.local_address()?;
        let mut receivers = Vec::new();
        let mut senders = Vec::new();
        let mut taken = Vec::new();
        for _ in 0..self.threads() {
            let (tx, rx) = handoff_queue(self.handoff_queue, local.clone())?;
            receivers.push(ListenerSocket::from(rx));
            senders.push(tx);
            taken.push(Arc::new(AtomicU64::new(0)));
        }
        let ports = self.add_everywhere(receivers, &make, Some(&taken))?;
        let targets = senders
            .into_iter()
            .zip(taken)
            .zip(&ports)
            .enumerate()
            .map(|(i, ((sender, taken), port))| Target::new(i, sender, taken, port.id()))
            .collect();
        let shared = &self.handle.shared;
        shared.acceptors_live.fetch_add(1, Ordering::SeqCst);
        let (ctl, thread) = match acceptor::spawn(socket, targets, pick, self.handle.clone()) {
            Ok(started) => started,
            Err(e) => {
                shared.acceptors_live.fetch_sub(1, Ordering::SeqCst);
                ports.iter().for_each(ListeningPort::stop_listening);
                return Err(e.into());
            }
        };
        shared.acceptors.lock().unwrap_or_else(|p| p.into_inner()).push(ctl.clone());
        if self.handle.is_stopping() {
            ctl.stop();
        }
        self.acceptor_threads.push(thread);
        Ok(PoolListener { local, balance: Balance::HandOff(pick), ports, acceptor: Some(ctl) })
    }

    /// Gives socket `i` to reactor `i`, with a factory built there; waits for every reactor.
    fn add_everywhere<F: Factory>(
        &mut self,
        sockets: Vec<ListenerSocket>,
        make: &Make<F>,
        taken: Option<&[Arc<AtomicU64>]>,
    ) -> Result<Vec<ListeningPort>, Error> {
        if self.handle.is_stopping() {
            return Err(Error::Stopping);
        }
        let mut waiting = Vec::new();
        for (index, socket) in sockets.into_iter().enumerate() {
            let member = &self.handle.shared.members[index];
            let (tx, rx) = mpsc::channel();
            let make = make.clone();
            let reactor = PoolReactor { index, pool: self.handle.clone() };
            let stats = member.stats.clone();
            let taken = taken.map(|t| t[index].clone());
            member.handle.call_from_thread(move |cx| {
                let factory = CountingFactory { inner: make(&reactor), stats, taken };
                let _ = tx.send(cx.core.add_listener(socket, Box::new(factory)));
            });
            waiting.push((index, rx, member.handle.clone()));
        }
        let mut ports = Vec::new();
        let mut failure = None;
        for (index, rx, handle) in waiting {
            match rx.recv_timeout(SETUP_WAIT) {
                Ok(Ok((id, local))) => ports.push(ListeningPort { id, local, handle }),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                // The call was dropped unrun (the reactor is gone) or building the factory
                // panicked (logged there).
                Err(_) => failure = failure.or(Some(Error::ReactorGone { reactor: index })),
            }
        }
        if let Some(e) = failure {
            ports.iter().for_each(ListeningPort::stop_listening);
            return Err(e);
        }
        Ok(ports)
    }
}
