//! Graceful shutdown: before-shutdown triggers, then stop accepting, cancel connects, close
//! every connection cleanly (flushing), and abort what is left at the deadline.

use tracing::{debug, warn};

use crate::core::{Conn, Core, Internal, Phase, Source, SourceKey, Task, TimerKind};
use crate::dispatch::World;
use crate::protocol::DisconnectReason;
use crate::Error;

impl World {
    /// Starts the graceful stop if one was requested (from a callback, a handle or a signal)
    /// and has not started yet.
    pub(crate) fn begin_shutdown_if_requested(&mut self, read_buf: &mut [u8]) {
        if self.core.shared.take_stop() {
            self.core.stop_requested = true;
        }
        if !self.core.stop_requested || self.core.stopping {
            return;
        }
        // Before-shutdown triggers run first, while everything is still open.
        let deadline = self.core.clock.now() + self.core.config.shutdown_timeout;
        for trigger in std::mem::take(&mut self.core.shutdown_triggers) {
            self.call_loop("before_shutdown trigger", |cx| trigger(cx, deadline));
        }
        // Clients already queued on a listener are taken in (and then closed like the rest),
        // not reset by the listener's close.
        self.drain_listeners(read_buf);
        self.core.begin_shutdown();
        self.settle();
    }

    /// The shutdown deadline passed: abort what is left, stop waiting for lingering peers.
    pub(crate) fn shutdown_deadline(&mut self) {
        let open = self.core.conn_keys();
        if !open.is_empty() {
            warn!(connections = open.len(), "shutdown deadline passed; aborting the rest");
        }
        for key in open {
            self.core.abort_with(key, DisconnectReason::Aborted);
        }
        self.process_deadline();
        // Jobs still running on the pool are abandoned.
        let abandoned = self.core.threads.cancel_all();
        self.core.tasks.extend(crate::threads::cancelled(abandoned));
        // Lingering sockets have sent everything and their FIN; stop waiting for peers.
        let lingering: Vec<SourceKey> = self
            .core
            .sources
            .iter()
            .filter(|(_, s)| matches!(s, Source::Conn(c) if matches!(c.phase, Phase::Lingering { .. })))
            .map(|(k, _)| k)
            .collect();
        for key in lingering {
            self.core.remove_source(key);
        }
        self.settle();
    }

    /// A second signal during the shutdown: abort every connection at once.
    pub(crate) fn abort_all(&mut self) {
        for key in self.core.conn_keys() {
            self.core.abort_with(key, DisconnectReason::Aborted);
        }
        // Children too: SIGKILL, reap, close their pipes.
        self.process_deadline();
        self.settle();
    }
}

impl Core {
    fn begin_shutdown(&mut self) {
        self.stopping = true;
        debug!(connections = self.connections, "graceful shutdown");
        let listeners: Vec<SourceKey> =
            self.sources.iter().filter(|(_, s)| matches!(s, Source::Listener(_))).map(|(k, _)| k).collect();
        for key in listeners {
            self.remove_source(key);
        }
        // Datagram ports hear `stopped`, then close.
        for key in self.datagram_keys() {
            self.stop_datagram(key);
        }
        for key in self.conn_keys() {
            match self.conn_mut(key) {
                Some(Conn { phase: Phase::Connecting { factory, timeout }, peer, .. }) => {
                    let (factory, timeout, addr) = (factory.take(), *timeout, peer.clone());
                    self.timers.cancel(timeout);
                    self.remove_source(key);
                    if let Some(mut factory) = factory {
                        self.tasks.push_back(Task::Call(Box::new(move |cx| {
                            factory.client_connection_failed(cx, Error::Cancelled { addr })
                        })));
                    }
                }
                Some(Conn { phase: Phase::Open, io: Some(io), .. }) => {
                    io.lose_connection();
                    self.mark_dirty(key);
                }
                _ => {}
            }
        }
        // Children: stdin is closed once flushed; they have until the deadline to exit.
        self.shutdown_processes();
        // Jobs no worker has started are cancelled; running ones have until the deadline.
        let queued = self.threads.cancel_queued();
        self.tasks.extend(crate::threads::cancelled(queued));
        let deadline = self.clock.now() + self.config.shutdown_timeout;
        self.timers.schedule(deadline, TimerKind::Internal(Internal::ShutdownDeadline));
    }
}
