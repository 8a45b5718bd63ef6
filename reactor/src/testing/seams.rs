//! The test seams, behind one optional field of the table (`Core::seams`, `None` in
//! production): injected accept results, memory sockets kept after their connection closed,
//! and the hooks the [`Harness`](super::Harness) drives a reactor through.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use slotmap::SecondaryMap;
use torsion_transports::{Address, BoxedStream, MemorySocket};

use crate::core::{ConnId, ListenerId, Phase, SourceKey};
use crate::protocol::Protocol;
use crate::reactor::Reactor;

/// Injected accept results: asked before each accept; an error returned stands in for that
/// accept's result.
pub(crate) type AcceptFault = Box<dyn FnMut() -> Option<io::Error>>;

/// Test-only state of a reactor.
#[derive(Default)]
pub(crate) struct Seams {
    accept_faults: HashMap<SourceKey, AcceptFault>,
    /// Memory sockets of closed connections, kept for the harness to inspect.
    closed_memory: SecondaryMap<SourceKey, MemorySocket>,
}

impl Seams {
    /// The injected result for the next accept on `listener`, if any.
    pub(crate) fn accept_fault(&mut self, listener: SourceKey) -> Option<io::Error> {
        self.accept_faults.get_mut(&listener).and_then(|fault| fault())
    }

    /// A connection closed: keep its socket if it is a memory socket.
    pub(crate) fn keep_closed(&mut self, key: SourceKey, mut socket: BoxedStream) {
        if let Some(memory) = socket.as_any_mut().downcast_mut::<MemorySocket>() {
            self.closed_memory.insert(key, std::mem::take(memory));
        }
    }
}

impl Reactor {
    fn seams(&mut self) -> &mut Seams {
        self.world.core.seams.get_or_insert_with(Box::default)
    }

    /// Adds a connected memory connection and runs `connection_made`.
    pub(crate) fn add_memory_conn(
        &mut self,
        peer: Address,
        local: Address,
        protocol: Box<dyn Protocol>,
    ) -> ConnId {
        self.seams();
        let key = self
            .world
            .core
            .add_stream(
                Box::new(MemorySocket::new()),
                peer,
                std::cell::OnceCell::from(Some(local)),
                Phase::Open,
            )
            .expect("memory sockets always register");
        self.world.protocols.insert(key, protocol);
        self.world.call_protocol(key, "connection_made", |p, cx| p.connection_made(cx));
        ConnId(key)
    }

    /// The memory socket of a connection, live or closed.
    pub(crate) fn memory_socket(&mut self, id: ConnId) -> Option<&mut MemorySocket> {
        let live = self.world.core.conn(id.0).is_some_and(|c| c.io.is_some());
        if live {
            let io = self.world.core.conn_mut(id.0)?.io.as_mut()?;
            return io.socket_mut().as_any_mut().downcast_mut::<MemorySocket>();
        }
        self.world.core.seams.as_mut()?.closed_memory.get_mut(id.0)
    }

    /// Tells the reactor a memory connection may be readable and writable again (after the
    /// test fed input or took output), as an edge from the poller would.
    pub(crate) fn memory_ready(&mut self, id: ConnId) {
        let core = &mut self.world.core;
        let Some(io) = core.conn_mut(id.0).and_then(|c| c.io.as_mut()) else { return };
        io.set_readable(true); // memory reads are exact: read until WouldBlock
        io.set_writable();
        core.mark_dirty(id.0);
        core.requeue(id.0);
    }

    /// True while the reactor has work it would do without new events: ready connections,
    /// queued callbacks, thread calls, or timers already due.
    pub(crate) fn has_work(&mut self) -> bool {
        let core = &mut self.world.core;
        let now = core.clock.now();
        !core.ready.is_empty()
            || !core.tasks.is_empty()
            || !core.dirty.is_empty()
            || core.shared.has_calls()
            || core.timers.next_deadline().is_some_and(|d| d <= now)
    }

    /// One turn without waiting in the poller.
    pub(crate) fn turn_now(&mut self) -> Result<(), crate::Error> {
        self.turn_within(Some(Duration::ZERO))
    }

    /// Installs an accept fault injector on a listener; false if there is no such listener.
    pub(crate) fn set_accept_fault(&mut self, id: ListenerId, fault: AcceptFault) -> bool {
        if self.world.core.listener_mut(id.0).is_none() {
            return false;
        }
        self.seams().accept_faults.insert(id.0, fault);
        true
    }
}
