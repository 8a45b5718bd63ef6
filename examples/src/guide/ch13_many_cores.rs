//! # Chapter 13: every core
//!
//! One reactor uses one core. Twisted and asyncio stop there, and their users run N processes
//! behind SO_REUSEPORT or a balancer. torsion runs N reactors in one process instead, a
//! [`ReactorPool`], without changing the model: each reactor is an ordinary
//! [`Reactor`](torsion_reactor::Reactor) on its own thread, and each protocol lives on the one
//! thread that accepted its connection, so protocol code still takes no locks, needs no
//! `Send`, and is never re-entered.
//!
//! ## A pool in five lines
//! The only new thing is one closure level: a listener takes a `Send + Sync` closure that
//! builds a *factory* per reactor, on that reactor's thread. The factory and the protocols it
//! builds never leave it.
//!
//! ```
//! use std::io::{Read, Write};
//! use torsion_protocols::Echo;
//! use torsion_reactor::pool::ReactorPool;
//!
//! let mut pool = ReactorPool::new(2)?; // 0 would mean one reactor per core
//! let port = pool.listen_tcp("127.0.0.1:0".parse().unwrap(), |_reactor| |_peer| Some(Echo))?;
//!
//! let torsion_reactor::Address::Inet(addr) = port.local_addr().clone() else { unreachable!() };
//! let mut client = std::net::TcpStream::connect(addr)?;
//! client.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
//! client.write_all(b"hello")?;
//! let mut reply = [0u8; 5];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"hello");
//! drop(client);
//!
//! pool.shutdown()?; // graceful, as Ctrl-C after `pool.install_signal_handlers()`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The example binaries take the same choice on the command line: `echo-server --threads 4`,
//! `frame-echo --threads 0` (one per core); `--threads 1`, the default, is one reactor on the
//! main thread, as before.
//!
//! ## How connections reach the threads
//! | [`Balance`] | how | when |
//! |---|---|---|
//! | `ReusePort` (default, TCP) | every reactor has its own SO_REUSEPORT socket on the port; the kernel picks one per connection by a hash of its addresses and ports | almost always: no thread touches another's listener, the spread is even |
//! | `HandOff(RoundRobin)` / `HandOff(LeastLoaded)` | one acceptor thread accepts and hands each socket to a reactor through that reactor's bounded queue | Unix sockets (no reuseport); few, long, uneven connections where the load should decide |
//!
//! Why not one listener shared by all threads? With epoll every thread is woken for each
//! connection and the fastest wins; libuv measured up to 3:1 imbalance that way (libuv#747).
//!
//! ## State per thread, state across threads
//! State that belongs to one reactor lives in its factory, as in [chapter 3](super::ch03_chat):
//! an `Rc<RefCell<_>>` is fine, since the factory is built on its thread and stays there.
//! State shared by all reactors is an explicit `Arc` captured by the outer closure, with
//! whatever synchronisation you choose: the pool never shares anything behind your back.
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use torsion_protocols::Echo;
//! use torsion_reactor::pool::ReactorPool;
//!
//! let everyone = Arc::new(AtomicU64::new(0)); // across threads: explicit
//! let mut pool = ReactorPool::new(2)?;
//! let all = everyone.clone();
//! pool.listen_tcp("127.0.0.1:0".parse().unwrap(), move |reactor| {
//!     let mine = Rc::new(Cell::new(0u64)); // this reactor's own: no lock
//!     let (all, index) = (all.clone(), reactor.index());
//!     move |_peer| {
//!         mine.set(mine.get() + 1);
//!         all.fetch_add(1, Ordering::Relaxed);
//!         tracing::debug!(reactor = index, here = mine.get(), "accepted");
//!         Some(Echo)
//!     }
//! })?;
//! pool.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Reaching a connection on another reactor
//! A [`ConnId`](torsion_reactor::ConnId) means something on its own reactor only; across the
//! pool a connection is a [`PoolConnId`] (reactor index + id), made with
//! [`PoolReactor::conn_id`](torsion_reactor::pool::PoolReactor::conn_id) or
//! [`PoolConnId::new`]. [`PoolHandle::call_conn`] runs a closure *on the owning thread* with
//! that connection's transport, or `None` if it has gone: the protocol's state is still
//! touched by its own thread only.
//!
//! ```no_run
//! # use torsion_reactor::pool::{PoolConnId, PoolHandle};
//! # fn tell(pool: &PoolHandle, id: PoolConnId) {
//! match pool.call_conn(id, |transport| {
//!     if let Some(mut transport) = transport {
//!         transport.write(b"from another core\r\n");
//!     }
//! }) {
//!     Ok(()) => {}
//!     // Bounded: a reactor with 4096 calls waiting (settable) refuses more.
//!     Err(torsion_reactor::Error::QueueFull { .. }) => { /* retry later, or drop */ }
//!     Err(e) => eprintln!("{e}"), // that reactor is gone, or no such reactor
//! }
//! # }
//! ```
//!
//! ## Stopping, counting, failing
//! - **Stop** from anywhere: [`PoolHandle::stop`], Ctrl-C after
//!   [`ReactorPool::install_signal_handlers`], or `cx.stop_reactor()` in a callback on any
//!   reactor: all of them stop the whole pool. Acceptor threads go first, handing over what
//!   waits in their backlog; then each reactor's graceful stop ([chapter 8](super::ch08_shutdown))
//!   accepts the clients still queued on its own listeners before closing them, so a stop
//!   resets nobody who had already connected.
//! - **Counters**: [`PoolHandle::stats`] gives each reactor's accepted and open connections
//!   and bytes, read from any thread (each reactor writes only its own).
//! - **Failures**: a panic in a callback aborts that connection, as on one reactor. A reactor
//!   thread that dies entirely (its loop failed, a panic escaped it) is logged, marked dead
//!   in its stats, listed by [`PoolHandle::deaths`] and returned by [`ReactorPool::join`]; the
//!   others keep serving, and the hand-off acceptor skips it.
//!
//! ## When one thread is the right answer
//! A single chat room ([chapter 3](super::ch03_chat)) stays on one reactor: every message goes
//! to every member in one total order, which one thread gives for free. Split over reactors,
//! each broadcast would become N cross-reactor calls, and two messages sent at once from two
//! reactors could reach members in different orders unless the room itself became a service
//! on one thread, which is one reactor again.
//!
//! [`ReactorPool`]: torsion_reactor::pool::ReactorPool
//! [`ReactorPool::install_signal_handlers`]: torsion_reactor::pool::ReactorPool::install_signal_handlers
//! [`ReactorPool::join`]: torsion_reactor::pool::ReactorPool::join
//! [`Balance`]: torsion_reactor::pool::Balance
//! [`PoolConnId`]: torsion_reactor::pool::PoolConnId
//! [`PoolConnId::new`]: torsion_reactor::pool::PoolConnId::new
//! [`PoolHandle::call_conn`]: torsion_reactor::pool::PoolHandle::call_conn
//! [`PoolHandle::stop`]: torsion_reactor::pool::PoolHandle::stop
//! [`PoolHandle::stats`]: torsion_reactor::pool::PoolHandle::stats
//! [`PoolHandle::deaths`]: torsion_reactor::pool::PoolHandle::deaths
