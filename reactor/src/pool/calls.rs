//! Cross-reactor calls: a connection named across the pool ([`PoolConnId`]), and closures run
//! on the thread that owns it, through bounded queues.

use std::sync::atomic::Ordering;

use super::PoolHandle;
use crate::core::ConnId;
use crate::ctx::LoopCtx;
use crate::transport::Transport;
use crate::Error;

/// A connection's name across a pool: the reactor that owns it and its [`ConnId`] there.
/// Generational like `ConnId`: once the connection is gone it resolves to nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolConnId {
    reactor: usize,
    conn: ConnId,
}

impl PoolConnId {
    /// Names connection `conn` of reactor `reactor` (see also
    /// [`PoolReactor::conn_id`](super::PoolReactor::conn_id)).
    pub fn new(reactor: usize, conn: ConnId) -> PoolConnId {
        PoolConnId { reactor, conn }
    }

    /// The owning reactor's index.
    pub fn reactor(&self) -> usize {
        self.reactor
    }

    /// The id on the owning reactor.
    pub fn conn(&self) -> ConnId {
        self.conn
    }
}

/// Frees a queue slot when the call has run, or was dropped unrun (its reactor gone).
struct Slot {
    pool: PoolHandle,
    reactor: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.shared.members[self.reactor].inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PoolHandle {
    /// Runs `f` on reactor `reactor`'s thread, after the callbacks it is running now (never
    /// re-entrantly), from any thread, including another reactor's callbacks.
    ///
    /// # Errors
    /// [`Error::QueueFull`] when the reactor already has its queue's capacity of calls waiting
    /// (see [`PoolBuilder::call_queue`](super::PoolBuilder::call_queue)): the call is not
    /// queued, and the caller decides (retry later, drop, answer "busy").
    /// [`Error::ReactorGone`] when the reactor's thread has ended, [`Error::NoSuchReactor`]
    /// for an index out of range.
    pub fn call_reactor(
        &self,
        reactor: usize,
        f: impl FnOnce(&mut LoopCtx<'_>) + Send + 'static,
    ) -> Result<(), Error> {
        let member = self.member(reactor)?;
        if !member.stats.is_alive() {
            return Err(Error::ReactorGone { reactor });
        }
        let capacity = self.shared.call_queue;
        if member.inflight.fetch_add(1, Ordering::AcqRel) >= capacity {
            member.inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::QueueFull { reactor, capacity });
        }
        let slot = Slot { pool: self.clone(), reactor };
        member.handle.call_from_thread(move |cx| {
            drop(slot);
            f(cx);
        });
        Ok(())
    }

    /// Runs `f` on the thread that owns connection `id`, with its transport, or with `None`
    /// if the connection is gone by then (a stale id never reaches another connection).
    ///
    /// ```no_run
    /// # fn demo(pool: &torsion_reactor::pool::PoolHandle, id: torsion_reactor::pool::PoolConnId) {
    /// // From any thread, or from a protocol on another reactor:
    /// let sent = pool.call_conn(id, |transport| {
    ///     if let Some(mut transport) = transport {
    ///         transport.write(b"hello from another core\r\n");
    ///     }
    /// });
    /// if let Err(e) = sent {
    ///     eprintln!("not delivered: {e}"); // a full queue, or the reactor is gone
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`call_reactor`](PoolHandle::call_reactor).
    pub fn call_conn(
        &self,
        id: PoolConnId,
        f: impl FnOnce(Option<Transport<'_>>) + Send + 'static,
    ) -> Result<(), Error> {
        self.call_reactor(id.reactor, move |cx| f(cx.transport_for(id.conn)))
    }
}
