//! The one way user code is called: [`World::invoke`]. It enters the owning connection's
//! span, catches a panic, logs it the same way for every kind of callback, aborts the
//! connection it belongs to (if any), and then settles the work the callback queued: tasks
//! (`connection_lost`, producer calls, `call_soon`) and flushes. Every protocol, producer,
//! factory, timer, thread and shutdown callback goes through it, so the two central promises
//! (no re-entrancy, per-connection panic isolation) hold by construction.

use std::panic::{catch_unwind, AssertUnwindSafe};

use slotmap::{Key, SecondaryMap};
use torsion_transports::ProducerCall;
use tracing::{debug, error};

use crate::core::{Core, Phase, SourceKey, Task};
use crate::ctx::{Ctx, LoopCtx};
use crate::datagram::DatagramProtocol;
use crate::flow::Callee;
use crate::protocol::{DisconnectReason, Producer, Protocol};
use crate::transport::Transport;

/// Protocols and the table, lent to callbacks together (disjoint fields, checked by the
/// compiler).
pub(crate) struct World {
    pub(crate) protocols: SecondaryMap<SourceKey, Box<dyn Protocol>>,
    pub(crate) datagrams: SecondaryMap<SourceKey, Box<dyn DatagramProtocol>>,
    pub(crate) processes: SecondaryMap<SourceKey, Box<dyn crate::process::ProcessProtocol>>,
    pub(crate) core: Core,
}

/// Whom a callback belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owner {
    /// A connection: its span is entered, and a panic aborts it.
    Conn(SourceKey),
    /// A datagram port: its span is entered; a panic is logged and the port keeps serving
    /// (there is no connection to abort).
    Datagram(SourceKey),
    /// The loop (timers, thread calls, factories, shutdown triggers): a panic is logged only.
    Loop,
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl World {
    /// Runs user code `f` for `owner`: span, panic isolation, uniform logging, then settles
    /// what it queued. `what` names the callback in the log. Returns `None` if it panicked.
    pub(crate) fn invoke<R>(
        &mut self,
        owner: Owner,
        what: &'static str,
        f: impl FnOnce(&mut World) -> R,
    ) -> Option<R> {
        let span = match owner {
            Owner::Conn(key) | Owner::Datagram(key) => self.core.span_of(key),
            Owner::Loop => tracing::Span::none(),
        };
        let result = {
            let _enter = span.enter();
            catch_unwind(AssertUnwindSafe(|| f(self)))
        };
        let out = match result {
            Ok(r) => Some(r),
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                match owner {
                    Owner::Conn(key) => {
                        let peer = self.core.peer_text(key);
                        error!(id = ?key.data(), %peer, panic = %message, "{what} panicked; aborting its connection");
                        self.core.abort_with(key, DisconnectReason::Panicked(message));
                    }
                    Owner::Datagram(key) => {
                        error!(id = ?key.data(), panic = %message, "{what} panicked; the datagram port keeps serving");
                    }
                    Owner::Loop => error!(panic = %message, "{what} panicked"),
                }
                None
            }
        };
        self.settle();
        out
    }

    /// Calls a protocol callback on connection `key` (nothing if it has no protocol).
    pub(crate) fn call_protocol<R>(
        &mut self,
        key: SourceKey,
        what: &'static str,
        f: impl FnOnce(&mut dyn Protocol, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        if !self.protocols.contains_key(key) {
            return None;
        }
        self.invoke(Owner::Conn(key), what, |world| {
            let protocol = world.protocols.get_mut(key).expect("checked above");
            f(protocol.as_mut(), &mut Ctx::new(&mut world.core, key))
        })
    }

    /// Calls a callback that belongs to no connection.
    pub(crate) fn call_loop(&mut self, what: &'static str, f: impl FnOnce(&mut LoopCtx<'_>)) {
        self.invoke(Owner::Loop, what, |world| f(&mut LoopCtx::new(&mut world.core)));
    }

    /// Calls a producer object whose consumer is connection `key`.
    pub(crate) fn call_producer(
        &mut self,
        key: SourceKey,
        what: &'static str,
        producer: &mut dyn Producer,
        f: impl FnOnce(&mut dyn Producer, &mut Ctx<'_>),
    ) {
        self.invoke(Owner::Conn(key), what, |world| f(producer, &mut Ctx::new(&mut world.core, key)));
    }

    /// Runs queued work and flushes written transports until nothing is left. A callback
    /// invoked from here does not settle again: this loop picks its work up.
    pub(crate) fn settle(&mut self) {
        if std::mem::replace(&mut self.core.settling, true) {
            return;
        }
        loop {
            while let Some(task) = self.core.tasks.pop_front() {
                self.run_task(task);
            }
            if self.core.dirty.is_empty() {
                break;
            }
            let mut dirty = std::mem::take(&mut self.core.dirty);
            for key in dirty.drain(..) {
                self.core.flush(key);
            }
            if self.core.dirty.is_empty() {
                // Keep the allocation: this runs after every callback.
                self.core.dirty = dirty;
            }
            if self.core.tasks.is_empty() && self.core.dirty.is_empty() {
                break;
            }
        }
        self.core.settling = false;
    }

    fn run_task(&mut self, task: Task) {
        match task {
            Task::Lost(key, reason) => self.deliver_lost(key, reason),
            Task::Producer(key, call, serial) => self.deliver_producer_call(key, call, serial),
            Task::ResumeOwn(key) => {
                self.call_protocol(key, "resume_producing", |p, cx| p.resume_producing(cx));
            }
            Task::StopObject(key, mut producer) => {
                self.call_producer(key, "stop_producing", producer.as_mut(), |p, cx| p.stop_producing(cx));
            }
            Task::StopConn(other) => Transport::new(&mut self.core, other).lose_connection(),
            Task::Call(f) => self.call_loop("queued callback", f),
            Task::DatagramStarted(key, protocol) => {
                self.datagrams.insert(key, protocol);
                // Datagrams that arrived before the protocol did are waiting in the kernel.
                self.core.requeue(key);
                self.datagram_start(key);
            }
            Task::DatagramStopped(key) => self.datagram_stopped(key),
            Task::StreamStarted(key, protocol) => {
                self.protocols.insert(key, protocol);
                self.call_protocol(key, "connection_made", |p, cx| p.connection_made(cx));
                // Input that arrived before the protocol did is waiting in the kernel.
                self.core.requeue(key);
            }
        }
    }

    /// `connection_lost`, then the protocol is dropped and the connection leaves the table
    /// (unless it lingers, draining the peer's input).
    fn deliver_lost(&mut self, key: SourceKey, reason: DisconnectReason) {
        {
            let span = self.core.span_of(key);
            let _enter = span.enter();
            debug!(%reason, "connection lost");
        }
        if let Some(mut protocol) = self.protocols.remove(key) {
            self.invoke(Owner::Conn(key), "connection_lost", |world| {
                protocol.connection_lost(&mut Ctx::new(&mut world.core, key), reason)
            });
            self.invoke(Owner::Loop, "dropping a protocol", move |_| drop(protocol));
        }
        let lingering = matches!(self.core.conn(key).map(|c| &c.phase), Some(Phase::Lingering { .. }));
        if !lingering {
            self.core.remove_source(key);
        }
    }

    /// Delivers a pause or resume to whatever produces for connection `key`.
    fn deliver_producer_call(&mut self, key: SourceKey, call: ProducerCall, serial: u64) {
        let Some(callee) = self.core.take_producer_call(key, call, serial) else { return };
        match callee {
            Callee::Own => {
                self.call_protocol(key, "pause_producing/resume_producing", |p, cx| match call {
                    ProducerCall::Pause => p.pause_producing(cx),
                    ProducerCall::Resume => p.resume_producing(cx),
                });
            }
            Callee::Conn(other) => {
                let mut transport = Transport::new(&mut self.core, other);
                match call {
                    ProducerCall::Pause => transport.pause_reading(),
                    ProducerCall::Resume => transport.resume_reading(),
                }
            }
            Callee::Object(mut producer) => {
                self.call_producer(key, "producer callback", producer.as_mut(), |p, cx| match call {
                    ProducerCall::Pause => p.pause_producing(cx),
                    ProducerCall::Resume => p.resume_producing(cx),
                });
                self.core.return_producer(key, serial, producer);
            }
        }
    }
}
