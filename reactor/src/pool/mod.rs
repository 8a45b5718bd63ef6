//! Every core: a [`ReactorPool`] of N reactor threads, each an ordinary [`Reactor`].
//!
//! torsion's model stays as it is on each thread: protocols are built on their reactor's
//! thread and never leave it (they need not be `Send`), callbacks never re-enter, and
//! protocol code takes no locks. What the pool adds is how work reaches the threads:
//!
//! - **Listening on every thread.** [`ReactorPool::listen_tcp`] gives each reactor its own
//!   SO_REUSEPORT socket on the same port ([`Balance::ReusePort`], the default): the kernel
//!   spreads new connections over them by a hash of the 4-tuple, and no thread ever touches
//!   another's listener. The alternative, [`Balance::HandOff`], is one acceptor thread that
//!   accepts and hands each socket to a reactor (round-robin or least-loaded) through a
//!   bounded queue; Unix sockets always use it (they have no reuseport).
//! - **Factories per thread.** A listener takes a `Send + Sync` closure that builds one
//!   [`Factory`](crate::Factory) per reactor, on that reactor's thread, so per-thread state (an
//!   `Rc<RefCell<_>>` room, a cache) needs no lock, and state shared between threads is the
//!   user's explicit `Arc`.
//! - **Cross-reactor calls.** A connection is named across the pool by a [`PoolConnId`]
//!   (reactor index + [`ConnId`](crate::ConnId)); [`PoolHandle::call_conn`] runs a closure on
//!   the owning thread with that connection's transport (or `None` if it is gone).
//!   The queue to each reactor is bounded: a full one is [`Error::QueueFull`], seen by the
//!   caller, never unbounded memory.
//! - **Counters** per reactor (connections, accepts, bytes), readable from any thread:
//!   [`PoolHandle::stats`].
//! - **Stopping.** [`PoolHandle::stop`] (from any thread), a signal
//!   ([`ReactorPool::install_signal_handlers`]) or a callback on any reactor
//!   (`cx.stop_reactor()`) stops the whole pool: acceptor threads first (each accepts what
//!   is queued in its listener's backlog and hands it over), then every reactor's graceful
//!   shutdown, which also accepts the clients queued on its own listeners before closing them
//!   (so none is reset) and closes everything within its deadline.
//! - **Deaths are reported.** A panic in a callback aborts one connection, as on a single
//!   reactor. A reactor thread that ends on its own (its loop failed, or a panic escaped it)
//!   is logged at `error`, marked dead in [`PoolHandle::stats`], and returned by
//!   [`ReactorPool::join`] as [`Error::ReactorDied`]; the other reactors keep serving.
//!
//! ```no_run
//! use torsion_reactor::pool::ReactorPool;
//! use torsion_reactor::{Ctx, Protocol};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         cx.transport().write(data);
//!     }
//! }
//!
//! let mut pool = ReactorPool::builder().threads(0).start()?; // 0: one per core
//! let port = pool.listen_tcp("127.0.0.1:8000".parse().unwrap(), |_reactor| |_peer| Some(Echo))?;
//! println!("listening on {} with {} reactors", port.local_addr(), pool.threads());
//! pool.install_signal_handlers()?;
//! pool.join()?; // until Ctrl-C has stopped every reactor
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! # What is shared between threads
//! Nothing on the hot path: each reactor has its own poller, listener socket, connection table,
//! timers and read buffer. Its counters are atomics written only by its own thread. The
//! handles (`ReactorHandle`'s call queue, the pool's stop flag) are touched only by
//! cross-thread calls and stops.

mod acceptor;
mod calls;
mod listen;
mod stats;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, error, warn};

use crate::dispatch::panic_message;
use crate::handle::ReactorHandle;
use crate::protocol::DisconnectReason;
use crate::{Clock, Error, Reactor};

pub use calls::PoolConnId;
pub use listen::{Balance, Pick, PoolListener};
pub use stats::ReactorStats;

/// Default capacity of each reactor's cross-reactor call queue.
pub const DEFAULT_CALL_QUEUE: usize = 4096;
/// Default capacity of each reactor's hand-off queue (accepted sockets waiting for it).
pub const DEFAULT_HANDOFF_QUEUE: usize = 1024;
/// How long `start` and `listen_*` wait for a reactor thread to answer.
const SETUP_WAIT: Duration = Duration::from_secs(30);

type Configure = dyn Fn(&mut Reactor, usize) + Send + Sync;
type MakeReactor = dyn Fn(usize) -> Result<Reactor, Error> + Send + Sync;

/// Builds a [`ReactorPool`]: thread count, per-reactor settings, queue capacities.
pub struct PoolBuilder {
    threads: usize,
    configure: Option<Arc<Configure>>,
    make_reactor: Option<Arc<MakeReactor>>,
    call_queue: usize,
    handoff_queue: usize,
    name: String,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("threads", &self.threads)
            .field("call_queue", &self.call_queue)
            .field("handoff_queue", &self.handoff_queue)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// Sets the number of reactor threads (default 0: one per core, from
    /// `std::thread::available_parallelism`).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Runs `configure(reactor, index)` on each reactor's thread before it starts (read
    /// buffer, budgets, shutdown timeout, ...).
    pub fn configure(mut self, configure: impl Fn(&mut Reactor, usize) + Send + Sync + 'static) -> Self {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// Gives each reactor the clock `clock(index)` returns (default: the system's monotonic
    /// clock), built on the reactor's thread.
    pub fn clock<C: Clock>(mut self, clock: impl Fn(usize) -> C + Send + Sync + 'static) -> Self {
        self.make_reactor = Some(Arc::new(move |index| Reactor::with_clock(clock(index))));
        self
    }

    /// Sets how many cross-reactor calls may wait for one reactor (default 4096); one more
    /// is refused with [`Error::QueueFull`].
    pub fn call_queue(mut self, capacity: usize) -> Self {
        self.call_queue = capacity.max(1);
        self
    }

    /// Sets how many handed-off sockets may wait for one reactor (default 1024); when every
    /// reactor's queue is full the acceptor stops accepting and clients wait in the kernel's
    /// backlog.
    pub fn handoff_queue(mut self, capacity: usize) -> Self {
        self.handoff_queue = capacity.max(1);
        self
    }

    /// Sets the threads' name prefix (default `torsion-reactor`; threads are `NAME-0`, ...).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts the reactor threads; each is running (and idle) when this returns.
    pub fn start(self) -> Result<ReactorPool, Error> {
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut joins = Vec::with_capacity(threads);
        let mut members = Vec::with_capacity(threads);
        let mut gos = Vec::with_capacity(threads);
        for index in 0..threads {
            let (ready_tx, ready_rx) = mpsc::channel::<Result<ReactorHandle, Error>>();
            let (go_tx, go_rx) = mpsc::channel::<PoolHandle>();
            let configure = self.configure.clone();
            let make_reactor = self.make_reactor.clone();
            let stats = Arc::new(stats::StatsCell::new());
            let thread_stats = stats.clone();
            let join =
                std::thread::Builder::new().name(format!("{}-{index}", self.name)).spawn(move || {
                    reactor_thread(index, make_reactor, configure, thread_stats, ready_tx, go_rx)
                })?;
            let handle = match ready_rx.recv_timeout(SETUP_WAIT) {
                Ok(Ok(handle)) => handle,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(Error::ReactorGone { reactor: index }),
            };
            joins.push(join);
            gos.push(go_tx);
            members.push(Member { handle, stats, inflight: AtomicUsize::new(0) });
        }
        let handle = PoolHandle {
            shared: Arc::new(PoolShared {
                members,
                stopping: AtomicBool::new(false),
                call_queue: self.call_queue,
                acceptors: Mutex::new(Vec::new()),
                acceptors_live: AtomicUsize::new(0),
                deaths: Mutex::new(Vec::new()),
            }),
        };
        for go in gos {
            // A thread that died already is found by `join`.
            let _ = go.send(handle.clone());
        }
        Ok(ReactorPool {
            handle,
            threads: joins,
            acceptor_threads: Vec::new(),
            signals: None,
            handoff_queue: self.handoff_queue,
        })
    }
}

/// One reactor thread: build the reactor, report its handle, wait for the pool, run.
fn reactor_thread(
    index: usize,
    make_reactor: Option<Arc<MakeReactor>>,
    configure: Option<Arc<Configure>>,
    stats: Arc<stats::StatsCell>,
    ready: mpsc::Sender<Result<ReactorHandle, Error>>,
    go: mpsc::Receiver<PoolHandle>,
) {
    let made = match &make_reactor {
        Some(make) => make(index),
        None => Reactor::new(),
    };
    let mut reactor = match made {
        Ok(reactor) => reactor,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let setup = catch_unwind(AssertUnwindSafe(|| {
        if let Some(configure) = &configure {
            configure(&mut reactor, index);
        }
    }));
    if let Err(panic) = setup {
        stats.set_dead();
        let reason = format!("configure panicked: {}", panic_message(&*panic));
        error!(reactor = index, %reason, "reactor thread died before starting");
        let _ = ready.send(Err(Error::ReactorDied { reactor: index, reason }));
        return;
    }
    let _ = ready.send(Ok(reactor.handle()));
    let Ok(pool) = go.recv() else { return };
    // A stop begun by this reactor (a callback's `stop_reactor`, its own signal handling)
    // stops the whole pool.
    let trigger = pool.clone();
    reactor.before_shutdown(move |_cx, _deadline| trigger.stop());
    let result = catch_unwind(AssertUnwindSafe(|| reactor.run()));
    stats.set_dead();
    let reason = match result {
        Ok(Ok(())) if pool.is_stopping() => {
            debug!(reactor = index, "reactor thread finished");
            return;
        }
        Ok(Ok(())) => "its loop ended without a pool stop".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(panic) => format!("panic: {}", panic_message(&*panic)),
    };
    // Dropping the reactor closes its sockets; do it before reporting, so a caller woken by the
    // report sees them closed. A panic while dropping is contained too.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(reactor)));
    error!(reactor = index, %reason, "reactor thread died; the other reactors keep serving");
    pool.shared
        .deaths
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Error::ReactorDied { reactor: index, reason });
}

/// One reactor as the pool sees it.
struct Member {
    handle: ReactorHandle,
    stats: Arc<stats::StatsCell>,
    /// Cross-reactor calls queued and not yet run.
    inflight: AtomicUsize,
}

/// State shared by the pool and its handles.
struct PoolShared {
    members: Vec<Member>,
    stopping: AtomicBool,
    call_queue: usize,
    acceptors: Mutex<Vec<acceptor::AcceptorCtl>>,
    /// Acceptor threads not yet finished; the last one to finish after a stop stops the
    /// reactors.
    acceptors_live: AtomicUsize,
    deaths: Mutex<Vec<Error>>,
}

/// A `Send + Sync + Clone` handle to a [`ReactorPool`]: stop it, reach its reactors and their
/// connections, read their counters, from any thread (a protocol may keep one).
#[derive(Clone)]
pub struct PoolHandle {
    shared: Arc<PoolShared>,
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHandle").field("threads", &self.threads()).finish_non_exhaustive()
    }
}

impl PoolHandle {
    /// Number of reactors.
    pub fn threads(&self) -> usize {
        self.shared.members.len()
    }

    /// Reactor `index`'s own handle. Its `call_from_thread` queue is not bounded (prefer
    /// [`call_reactor`](PoolHandle::call_reactor)), and its `stop` stops the whole pool, as
    /// any reactor's stop does.
    pub fn reactor(&self, index: usize) -> Result<ReactorHandle, Error> {
        self.member(index).map(|m| m.handle.clone())
    }

    /// True once a stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Stops the pool gracefully, from any thread: acceptor threads drain their listeners'
    /// backlogs into the reactors and close, then every reactor runs its graceful shutdown
    /// (which accepts what is queued on its own listeners first, then closes every connection
    /// cleanly, aborting what is left at its deadline). Returns at once; [`ReactorPool::join`]
    /// waits for the end. Calling it again does nothing.
    pub fn stop(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        debug!("stopping the reactor pool");
        for acceptor in self.shared.acceptors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            acceptor.stop();
        }
        if self.shared.acceptors_live.load(Ordering::SeqCst) == 0 {
            self.stop_reactors();
        }
    }

    /// Aborts every connection on every reactor at once (a second Ctrl-C).
    pub fn abort_all(&self) {
        for member in &self.shared.members {
            member.handle.call_from_thread(|cx| {
                for key in cx.core.conn_keys() {
                    cx.core.abort_with(key, DisconnectReason::Aborted);
                }
            });
        }
    }

    fn stop_reactors(&self) {
        for member in &self.shared.members {
            member.handle.stop();
        }
    }

    /// An acceptor thread finished; after a stop, the last one stops the reactors.
    fn acceptor_done(&self) {
        if self.shared.acceptors_live.fetch_sub(1, Ordering::SeqCst) == 1 && self.is_stopping() {
            self.stop_reactors();
        }
    }

    fn member(&self, index: usize) -> Result<&Member, Error> {
        self.shared
            .members
            .get(index)
            .ok_or(Error::NoSuchReactor { reactor: index, threads: self.shared.members.len() })
    }

    /// Reactor `index`'s counters.
    pub fn stats(&self, index: usize) -> Result<ReactorStats, Error> {
        self.member(index).map(|m| m.stats.snapshot(index))
    }

    /// Every reactor's counters, in index order.
    pub fn all_stats(&self) -> Vec<ReactorStats> {
        self.shared.members.iter().enumerate().map(|(i, m)| m.stats.snapshot(i)).collect()
    }

    /// The reactors that died (ended without a pool stop), with why, so far.
    pub fn deaths(&self) -> Vec<String> {
        self.shared.deaths.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|e| e.to_string()).collect()
    }
}

/// What a listener's factory-building closure is given on each reactor's thread: which
/// reactor this is, and the pool.
#[derive(Debug, Clone)]
pub struct PoolReactor {
    index: usize,
    pool: PoolHandle,
}

impl PoolReactor {
    /// This reactor's index in the pool (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The pool, for cross-reactor calls and stopping.
    pub fn pool(&self) -> &PoolHandle {
        &self.pool
    }

    /// The pool's handle, owned (for a factory or protocol to keep).
    pub fn pool_handle(&self) -> PoolHandle {
        self.pool.clone()
    }

    /// Names a connection of this reactor across the pool.
    pub fn conn_id(&self, id: crate::ConnId) -> PoolConnId {
        PoolConnId::new(self.index, id)
    }
}

/// N reactor threads, each an ordinary [`Reactor`]. See the [module docs](self).
pub struct ReactorPool {
    handle: PoolHandle,
    threads: Vec<JoinHandle<()>>,
    acceptor_threads: Vec<JoinHandle<()>>,
    signals: Option<(signal_hook::iterator::Handle, JoinHandle<()>)>,
    handoff_queue: usize,
}

impl fmt::Debug for ReactorPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorPool").field("threads", &self.threads()).finish_non_exhaustive()
    }
}

impl ReactorPool {
    /// A builder with the defaults: one reactor per core, queues of 4096 calls and 1024
    /// handed-off sockets per reactor.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            threads: 0,
            configure: None,
            make_reactor: None,
            call_queue: DEFAULT_CALL_QUEUE,
            handoff_queue: DEFAULT_HANDOFF_QUEUE,
            name: "torsion-reactor".to_owned(),
        }
    }

    /// Starts `threads` reactors with default settings (0: one per core).
    pub fn new(threads: usize) -> Result<ReactorPool, Error> {
        ReactorPool::builder().threads(threads).start()
    }

    /// Number of reactors.
    pub fn threads(&self) -> usize {
        self.handle.threads()
    }

    /// A `Send + Sync + Clone` handle: stop, cross-reactor calls, counters.
    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }

    /// Makes SIGINT and SIGTERM stop the pool gracefully (a second signal aborts every
    /// connection), handled on a small thread of its own.
    pub fn install_signal_handlers(&mut self) -> Result<(), Error> {
        if self.signals.is_some() {
            return Ok(());
        }
        let mut signals =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        let close = signals.handle();
        let pool = self.handle.clone();
        let thread = std::thread::Builder::new().name("torsion-pool-signals".into()).spawn(move || {
            for _ in signals.forever() {
                if pool.is_stopping() {
                    warn!("second signal during shutdown: aborting every connection");
                    pool.abort_all();
                } else {
                    debug!("signal received: stopping the pool gracefully");
                    pool.stop();
                }
            }
        })?;
        self.signals = Some((close, thread));
        Ok(())
    }

    /// Waits until every reactor thread has ended (after a [`stop`](PoolHandle::stop) from
    /// anywhere), then returns the first reactor death or error, if any.
    pub fn join(mut self) -> Result<(), Error> {
        self.join_threads();
        let first = {
            let mut deaths = self.handle.shared.deaths.lock().unwrap_or_else(|p| p.into_inner());
            if deaths.is_empty() {
                None
            } else {
                Some(deaths.remove(0))
            }
        };
        first.map_or(Ok(()), Err)
    }

    /// Stops the pool and waits for it (see [`join`](ReactorPool::join)).
    pub fn shutdown(self) -> Result<(), Error> {
        self.handle.stop();
        self.join()
    }

    fn join_threads(&mut self) {
        for thread in self.threads.drain(..) {
            if let Err(panic) = thread.join() {
                error!(panic = panic_message(&*panic), "a reactor thread panicked outside its loop");
            }
        }
        for thread in self.acceptor_threads.drain(..) {
            let _ = thread.join();
        }
        if let Some((close, thread)) = self.signals.take() {
            close.close();
            let _ = thread.join();
        }
    }
}

impl Drop for ReactorPool {
    /// Dropping the pool stops it and waits for its threads.
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.stop();
            self.join_threads();
        }
    }
}
