//! A connection's I/O events: flush on writability, read until a short read (edge-triggered
//! readiness), the peer's half-close, and draining a lingering socket.

use torsion_transports::{Linger, ReadOutcome, TlsFailure};
use tracing::{debug, trace};

use crate::core::{Phase, SourceKey, LINGER_MAX_BYTES};
use crate::dispatch::World;
use crate::protocol::DisconnectReason;

impl World {
    /// Readiness (or left-over work) on a connection.
    pub(crate) fn conn_event(&mut self, key: SourceKey, writable: bool, read_buf: &mut [u8]) {
        let Some(conn) = self.core.conn_mut(key) else { return };
        match conn.phase {
            Phase::Connecting { .. } => return self.connect_event(key, read_buf),
            Phase::Lingering { .. } => return self.linger_read(key, read_buf),
            Phase::Lost => return,
            Phase::Open => {}
        }
        let Some(io) = conn.io.as_mut() else { return };
        if writable {
            io.set_writable();
        }
        // Flush first (writable event or left-over write budget), then read.
        if io.needs_flush() {
            self.core.flush(key);
            self.settle();
        }
        self.read(key, read_buf);
    }

    /// Reads until a short read, `WouldBlock`, EOF, the per-turn budget, or a pause.
    pub(crate) fn read(&mut self, key: SourceKey, read_buf: &mut [u8]) {
        let budget = self.core.config.reads_per_turn;
        let mut reads = 0;
        loop {
            let Some(conn) = self.core.open_conn(key) else { return };
            let Some(io) = conn.io.as_mut() else { return };
            if !io.is_read_ready() || !io.wants_read() {
                return;
            }
            if reads == budget {
                self.core.requeue(key);
                return;
            }
            reads += 1;
            let handshaking = conn.handshake.is_some();
            let Some(io) = conn.io.as_mut() else { return };
            let outcome = io.read(read_buf);
            let short = match outcome {
                ReadOutcome::Data(n) => n < read_buf.len() && io.short_read_drained(),
                ReadOutcome::WouldBlock | ReadOutcome::Eof => {
                    io.note_drained();
                    true
                }
                ReadOutcome::Error(_) => true,
            };
            // TLS may have something to say (handshake messages, alerts, key updates).
            // (Plain sockets hold nothing back: their flushes keep to the turn's schedule.)
            let flush = io.socket().pending_output() > 0 && io.needs_flush();
            let done = handshaking
                && !matches!(outcome, ReadOutcome::Error(_))
                && !io.socket().tls().is_some_and(|tls| tls.is_handshaking());
            if flush {
                self.core.mark_dirty(key);
            }
            if done {
                self.handshake_done(key);
                if let ReadOutcome::Data(n) = outcome {
                    // `connection_made` may have paused reading (or closed): then the data read
                    // with the handshake's last flight waits in the TLS layer.
                    let deliver = self.protocols.contains_key(key)
                        && self
                            .core
                            .open_conn_ref(key)
                            .and_then(|c| c.io.as_ref())
                            .is_some_and(|io| io.wants_read());
                    if !deliver {
                        if let Some(io) = self.core.open_conn(key).and_then(|c| c.io.as_mut()) {
                            if let Some(tls) = io.socket_mut().tls_mut() {
                                tls.unread(&read_buf[..n]);
                            }
                            io.set_readable(false);
                        }
                        return;
                    }
                }
            } else if handshaking && matches!(outcome, ReadOutcome::Eof) {
                let reason = DisconnectReason::Tls(TlsFailure::ClosedDuringHandshake);
                self.core.finish(key, reason);
                self.settle();
                return;
            }
            match outcome {
                ReadOutcome::Data(n) => {
                    trace!(bytes = n, "read");
                    let data = &read_buf[..n];
                    self.call_protocol(key, "data_received", |p, cx| p.data_received(cx, data));
                    if short {
                        // A short read drained the socket: the next data raises a new edge.
                        return;
                    }
                }
                ReadOutcome::WouldBlock => {
                    if done || flush {
                        self.settle();
                    }
                    return;
                }
                ReadOutcome::Eof => {
                    self.eof(key);
                    return;
                }
                ReadOutcome::Error(e) => {
                    debug!(error = %e, "read failed");
                    self.core.finish(key, DisconnectReason::from_io(e));
                    self.settle();
                    return;
                }
            }
        }
    }

    /// The peer sent FIN.
    fn eof(&mut self, key: SourceKey) {
        debug!("peer half-closed");
        let keep_open = self.call_protocol(key, "eof_received", |p, cx| p.eof_received(cx)).unwrap_or(true);
        if let Some(io) = self.core.open_conn(key).and_then(|c| c.io.as_mut()) {
            if !keep_open {
                io.lose_connection();
            }
            self.core.mark_dirty(key);
        }
        self.settle();
    }

    /// Drains a lingering socket's input until EOF, an error, or the byte limit.
    pub(crate) fn linger_read(&mut self, key: SourceKey, read_buf: &mut [u8]) {
        let Some(conn) = self.core.conn_mut(key) else { return };
        let Some(io) = conn.io.as_mut() else { return };
        if io.drain_linger(read_buf, LINGER_MAX_BYTES) == Linger::Done {
            self.core.remove_source(key);
        }
    }
}
