//! Flow control in the table: after a write, after a flush, and producer (un)registration.
//! The decisions are `ProducerState`'s pure transitions (in transports); this file applies
//! them to the table and queues the calls they ask for.

use torsion_transports::{FlushStatus, ProducerCall};
use tracing::{debug, error, warn};

use crate::core::{token_of, Core, Phase, ProducerKind, Source, SourceKey, Task};
use crate::protocol::{DisconnectReason, Producer};
use crate::transport::ProducerSource;
use crate::Error;

impl Core {
    /// After bytes were added to a connection's buffer: schedule the flush, enforce the hard
    /// cap, and pause a push producer that pushed the buffer above its high watermark.
    pub(crate) fn after_write(&mut self, key: SourceKey, above_high: bool) {
        self.mark_dirty(key);
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.io.as_ref().is_some_and(|io| io.over_max_buffer()) {
            warn!("write buffer over its hard cap; aborting the connection");
            self.abort_with(key, DisconnectReason::BufferOverflow);
            return;
        }
        if let Some(call) = conn.producer.after_write(above_high) {
            let serial = conn.producer.serial();
            self.tasks.push_back(Task::Producer(key, call, serial));
        }
    }

    /// Writes out a connection's buffer and acts on the result: wait for writability, come back
    /// next turn, resume the producer, or finish the connection.
    pub(crate) fn flush(&mut self, key: SourceKey) {
        let budget = self.config.writes_per_flush;
        let Some(Source::Conn(conn)) = self.sources.get_mut(key) else { return };
        conn.dirty = false;
        if !matches!(conn.phase, Phase::Open) {
            return;
        }
        let Some(io) = conn.io.as_mut() else { return };
        // Nothing to write (a large write went straight to the socket, or the socket is known
        // to be blocked) still goes through the flow-control checks below: a pull producer
        // whose chunk the socket took whole must get its next `resume_producing` all the same.
        let result = if io.needs_flush() { io.flush(budget) } else { Ok(FlushStatus::Drained) };
        let at_low = io.buffer().at_or_below_low();
        let drained_for_close = io.is_closing() && io.buffer().is_empty();
        let finished = io.is_finished();
        let status = match result {
            Ok(status) => status,
            Err(e) => {
                debug!(error = %e, "write failed");
                self.finish(key, DisconnectReason::Lost(e));
                return;
            }
        };
        if let Some(call) = conn.producer.after_flush(at_low, finished) {
            let serial = conn.producer.serial();
            self.tasks.push_back(Task::Producer(key, call, serial));
        }
        // A push producer on a closing connection is stopped once everything it wrote is out.
        let stop = drained_for_close && conn.producer.is_registered() && conn.producer.is_streaming();
        if status == FlushStatus::BudgetExhausted {
            self.requeue(key);
        }
        if stop {
            self.stop_producer(key);
        }
        if finished {
            self.finish(key, DisconnectReason::Clean);
        } else {
            self.update_interest(key);
        }
    }

    /// Registers WRITABLE interest exactly while data waits for a blocked socket.
    pub(crate) fn update_interest(&mut self, key: SourceKey) {
        let Some(Source::Conn(conn)) = self.sources.get_mut(key) else { return };
        let Some(io) = conn.io.as_mut() else { return };
        let want = io.is_write_blocked();
        if want != conn.writable_interest {
            conn.writable_interest = want;
            let interest = io.interest();
            if let Err(e) = self.registry.reregister(io.socket_mut(), token_of(key), interest) {
                error!(error = %e, "reregistering a connection failed");
                self.finish(key, DisconnectReason::Lost(e));
            }
        }
    }

    /// Registers a producer on connection `key` (see
    /// [`Transport::register_producer`](crate::Transport::register_producer)).
    pub(crate) fn register_producer(
        &mut self,
        key: SourceKey,
        source: ProducerSource,
        streaming: bool,
    ) -> Result<(), Error> {
        let Some(conn) = self.open_conn(key) else {
            // A closed consumer: stop the producer at once (after this callback).
            match source {
                ProducerSource::Conn(id) => self.tasks.push_back(Task::StopConn(id.0)),
                ProducerSource::Object(producer) => self.tasks.push_back(Task::StopObject(key, producer)),
            }
            return Ok(());
        };
        if conn.producer.is_registered() {
            return Err(Error::ProducerAlreadyRegistered);
        }
        let above_high = conn.io.as_ref().is_some_and(|io| io.buffer().above_high());
        let is_object = matches!(source, ProducerSource::Object(_));
        let registered = conn.producer.register(streaming, above_high, is_object);
        conn.producer_kind = match source {
            ProducerSource::Conn(id) => ProducerKind::Conn(id.0),
            ProducerSource::Object(producer) => ProducerKind::Object(Some(producer)),
        };
        conn.stop_pending = false;
        if let Some(io) = conn.io.as_mut() {
            io.set_hold_fin(!streaming);
        }
        if registered.resume_own {
            self.tasks.push_back(Task::ResumeOwn(key));
        }
        if let Some(call) = registered.call {
            self.tasks.push_back(Task::Producer(key, call, registered.serial));
        }
        Ok(())
    }

    /// Unregisters the producer of connection `key`; never calls `stop_producing`.
    pub(crate) fn unregister_producer(&mut self, key: SourceKey) {
        let Some(conn) = self.open_conn(key) else { return };
        if !conn.producer.is_registered() {
            return;
        }
        conn.producer.unregister();
        conn.producer_kind = ProducerKind::Own;
        conn.stop_pending = false;
        if let Some(io) = conn.io.as_mut() {
            io.set_hold_fin(false);
            if io.is_closing() {
                // A close was waiting for this producer: let it finish.
                self.mark_dirty(key);
            }
        }
    }

    /// Takes the registered producer off a connection and queues its `stop_producing`.
    pub(crate) fn stop_producer(&mut self, key: SourceKey) {
        let Some(Source::Conn(conn)) = self.sources.get_mut(key) else { return };
        match std::mem::replace(&mut conn.producer_kind, ProducerKind::Own) {
            ProducerKind::Own => return,
            ProducerKind::Conn(other) => self.tasks.push_back(Task::StopConn(other)),
            ProducerKind::Object(Some(producer)) => self.tasks.push_back(Task::StopObject(key, producer)),
            ProducerKind::Object(None) => {
                // Its callback is running; it is stopped when it returns.
                conn.producer_kind = ProducerKind::Object(None);
                conn.stop_pending = true;
                return;
            }
        }
        conn.producer.unregister();
        if let Some(io) = conn.io.as_mut() {
            io.set_hold_fin(false);
        }
    }

    /// Puts a producer object back after one of its callbacks, unless it was unregistered
    /// meanwhile (then it is dropped) or its consumer ended (then it is stopped).
    pub(crate) fn return_producer(&mut self, key: SourceKey, serial: u64, producer: Box<dyn Producer>) {
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.producer.serial() != serial || !matches!(conn.producer_kind, ProducerKind::Object(None)) {
            return;
        }
        if conn.stop_pending {
            conn.producer_kind = ProducerKind::Own;
            conn.stop_pending = false;
            conn.producer.unregister();
            self.tasks.push_back(Task::StopObject(key, producer));
        } else {
            conn.producer_kind = ProducerKind::Object(Some(producer));
        }
    }

    /// Takes a producer call off the queue: the producer to call, if the call is still current
    /// (the same registration, an open connection).
    pub(crate) fn take_producer_call(
        &mut self,
        key: SourceKey,
        call: ProducerCall,
        serial: u64,
    ) -> Option<Callee> {
        let conn = self.open_conn(key)?;
        if !conn.producer.deliver(call, serial) {
            return None;
        }
        match &mut conn.producer_kind {
            ProducerKind::Own => Some(Callee::Own),
            ProducerKind::Conn(other) => Some(Callee::Conn(*other)),
            ProducerKind::Object(slot) => slot.take().map(Callee::Object),
        }
    }
}

/// Who a producer call goes to.
pub(crate) enum Callee {
    /// The connection's own protocol.
    Own,
    /// Another connection (its reading is paused or resumed).
    Conn(SourceKey),
    /// A producer object, taken out while it runs (give it back with `return_producer`).
    Object(Box<dyn Producer>),
}
