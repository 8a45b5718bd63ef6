//! The loop's side of a child process: connection_made, flushing stdin, reading stdout and
//! stderr, reaping, and the notifications in their order, each through the one dispatch path.

use std::io::{self, Read};

use nix::sys::signal::Signal;
use torsion_transports::FlushStatus;
use tracing::{debug, warn};

use super::{deregister, ProcessCtx, ProcessProtocol};
use crate::core::{Core, Source, SourceKey};
use crate::ctx::LoopCtx;
use crate::dispatch::{Owner, World};

#[derive(Clone, Copy)]
enum Out {
    Stdout,
    Stderr,
}

impl World {
    /// Calls a process protocol callback (nothing if the protocol is gone). A panic is logged
    /// and kills the child.
    fn call_process(
        &mut self,
        key: SourceKey,
        what: &'static str,
        f: impl FnOnce(&mut dyn ProcessProtocol, &mut ProcessCtx<'_>),
    ) {
        if !self.processes.contains_key(key) {
            return;
        }
        let span = self.core.process(key).map_or_else(tracing::Span::none, |p| p.span.clone());
        let _enter = span.enter();
        let done = self.invoke(Owner::Loop, what, |world| {
            let protocol = world.processes.get_mut(key).expect("checked above");
            f(protocol.as_mut(), &mut ProcessCtx { lp: LoopCtx::new(&mut world.core), key });
        });
        if done.is_none() {
            warn!("a process callback panicked: killing the child");
            if let Some(p) = self.core.process_mut(key) {
                let _ = p.signal(Signal::SIGKILL);
            }
            self.core.requeue(key);
        }
    }

    /// Readiness on a process's pipes, or work carried over: do everything that is due.
    pub(crate) fn process_pump(&mut self, key: SourceKey, read_buf: &mut [u8]) {
        for (k, protocol) in std::mem::take(&mut self.core.new_processes) {
            self.processes.insert(k, protocol);
        }
        let Some(p) = self.core.process_mut(key) else { return };
        p.queued = false;
        if !p.started {
            p.started = true;
            self.call_process(key, "connection_made", |p, cx| p.connection_made(cx));
        }
        self.process_flush(key);
        self.process_read(key, Out::Stdout, read_buf);
        self.process_read(key, Out::Stderr, read_buf);
        let Some(p) = self.core.process_mut(key) else { return };
        p.try_reap();
        if let Some(status) = p.exit {
            if !std::mem::replace(&mut p.exited_delivered, true) {
                self.call_process(key, "process_exited", |p, cx| p.process_exited(cx, status));
            }
        }
        let Some(p) = self.core.process_mut(key) else { return };
        if p.exited_delivered && p.stdout.is_none() && p.stderr.is_none() {
            let status = p.exit.expect("exited");
            // Our end of stdin goes with the process.
            let stdin = p.stdin.take();
            p.buffer.clear();
            deregister(&self.core, stdin);
            self.deliver_lost_pipes(key);
            self.call_process(key, "process_ended", |p, cx| p.process_ended(cx, status));
            if let Some(protocol) = self.processes.remove(key) {
                self.invoke(Owner::Loop, "dropping a process protocol", move |_| drop(protocol));
            }
            if let Some(Source::Process(p)) = self.core.sources.remove(key) {
                debug!(pid = p.pid, "process ended");
                self.core.remove_process(p);
            }
        }
    }

    /// The `*_connection_lost` notifications that are due, each once.
    fn deliver_lost_pipes(&mut self, key: SourceKey) {
        let Some(p) = self.core.process_mut(key) else { return };
        if p.stdin.is_none() && !std::mem::replace(&mut p.in_lost, true) {
            self.call_process(key, "in_connection_lost", |p, cx| p.in_connection_lost(cx));
        }
        let Some(p) = self.core.process_mut(key) else { return };
        if p.stdout.is_none() && !std::mem::replace(&mut p.out_lost, true) {
            self.call_process(key, "out_connection_lost", |p, cx| p.out_connection_lost(cx));
        }
        let Some(p) = self.core.process_mut(key) else { return };
        if p.stderr.is_none() && !std::mem::replace(&mut p.err_lost, true) {
            self.call_process(key, "err_connection_lost", |p, cx| p.err_connection_lost(cx));
        }
    }

    /// Flushes stdin's buffer, closes stdin when asked and flushed, delivers producer calls.
    fn process_flush(&mut self, key: SourceKey) {
        let max_calls = self.core.config.writes_per_flush;
        let Some(p) = self.core.process_mut(key) else { return };
        let mut broken = false;
        if let Some(stdin) = p.stdin.as_mut() {
            if !p.buffer.is_empty() {
                match p.buffer.flush_to(stdin, max_calls) {
                    Ok(FlushStatus::Drained | FlushStatus::WouldBlock) => {}
                    Ok(FlushStatus::BudgetExhausted) => p.more_flush = true,
                    Err(e) => {
                        debug!(error = %e, "writing to the child's stdin failed");
                        broken = true;
                    }
                }
            }
        }
        if broken || (p.closing_stdin && p.buffer.is_empty()) {
            let stdin = p.stdin.take();
            p.buffer.clear();
            deregister(&self.core, stdin);
        }
        let Some(p) = self.core.process_mut(key) else { return };
        // A pause is delivered before the resume that may follow it in the same flush.
        let pause_due = std::mem::replace(&mut p.producer_call_due, false);
        if std::mem::replace(&mut p.more_flush, false) {
            self.core.requeue(key);
        }
        if pause_due && p_stdin_open(&self.core, key) {
            self.call_process(key, "pause_producing", |p, cx| p.pause_producing(cx));
        }
        let Some(p) = self.core.process_mut(key) else { return };
        if p.producer_paused && p.buffer.at_or_below_low() {
            p.producer_paused = false;
            // No resume once stdin is closed: there is nothing more to write.
            if p.stdin.is_some() {
                self.call_process(key, "resume_producing", |p, cx| p.resume_producing(cx));
            }
        }
        self.deliver_lost_pipes_in(key);
    }

    fn deliver_lost_pipes_in(&mut self, key: SourceKey) {
        let Some(p) = self.core.process_mut(key) else { return };
        if p.stdin.is_none() && !std::mem::replace(&mut p.in_lost, true) {
            self.call_process(key, "in_connection_lost", |p, cx| p.in_connection_lost(cx));
        }
    }

    /// Reads one output pipe until `WouldBlock`, EOF, the budget (then carried over) or a
    /// pause.
    fn process_read(&mut self, key: SourceKey, which: Out, read_buf: &mut [u8]) {
        let budget = self.core.config.reads_per_turn;
        for _ in 0..budget {
            let Some(p) = self.core.process_mut(key) else { return };
            if p.reading_paused {
                return;
            }
            let pipe = match which {
                Out::Stdout => p.stdout.as_mut(),
                Out::Stderr => p.stderr.as_mut(),
            };
            let Some(pipe) = pipe else { return };
            match pipe.read(read_buf) {
                Ok(0) => {
                    let pipe = match which {
                        Out::Stdout => p.stdout.take(),
                        Out::Stderr => p.stderr.take(),
                    };
                    deregister(&self.core, pipe);
                    self.deliver_lost_pipes(key);
                    return;
                }
                Ok(n) => {
                    let data = &read_buf[..n];
                    match which {
                        Out::Stdout => {
                            self.call_process(key, "out_received", |p, cx| p.out_received(cx, data))
                        }
                        Out::Stderr => {
                            self.call_process(key, "err_received", |p, cx| p.err_received(cx, data))
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(error = %e, "reading a child's pipe failed");
                    let pipe = match which {
                        Out::Stdout => p.stdout.take(),
                        Out::Stderr => p.stderr.take(),
                    };
                    deregister(&self.core, pipe);
                    self.deliver_lost_pipes(key);
                    return;
                }
            }
        }
        self.core.requeue(key);
    }

    /// Shutdown deadline: kill and reap the children still running, close their pipes.
    pub(crate) fn process_deadline(&mut self) {
        let keys = self.core.process_keys();
        if !keys.is_empty() {
            warn!(processes = keys.len(), "shutdown deadline passed; killing the remaining children");
        }
        for key in keys {
            self.core.kill_and_reap(key);
        }
    }
}

fn p_stdin_open(core: &Core, key: SourceKey) -> bool {
    core.process(key).is_some_and(|p| p.stdin.is_some())
}
