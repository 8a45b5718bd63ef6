//! Child processes: [`Reactor::spawn_process`](crate::Reactor::spawn_process) runs a command
//! with its stdin, stdout and stderr on pipes the reactor drives, and reports to a
//! [`ProcessProtocol`] (Twisted's `ProcessProtocol`).
//!
//! # Design
//! A process is ONE source in the table (`Source::Process`): its three pipes are registered
//! with the poller under the process's token, and every event (or work carried over from the
//! previous turn) runs one "pump" that does everything due, in order: `connection_made`, flush
//! stdin, read stdout and stderr (with the per-turn read budget), the `*_connection_lost`
//! notifications, `process_exited`, `process_ended`. A process is not a stream connection
//! (no peer, no half-close, no lingering, three descriptors with one protocol), so it is a
//! small source of its own; what it shares with TCP is the transports crate's
//! [`WriteBuffer`] (stdin's buffer, its high/low watermarks and coalesced writes) and the
//! dispatcher (`World::invoke`: span, panic isolation, settling).
//!
//! # Call order
//! `connection_made` first; then `out_received` / `err_received` in any order; each of
//! `in_connection_lost`, `out_connection_lost`, `err_connection_lost` and `process_exited`
//! exactly once, in any order; `process_ended` exactly once, last, when the child has exited
//! AND stdout and stderr are closed (our end of stdin is closed then too). A grandchild that
//! holds stdout open delays `process_ended`, never `process_exited`.
//!
//! # Re-entrancy
//! [`ProcessCtx`] and [`ProcessTransport`] methods never run user code: a write, a
//! `close_stdin` or a resumed read is carried out by the next pump, on the next turn.
//!
//! # Exit detection
//! The first spawn registers SIGCHLD (signal-hook-mio) with the poller. On every SIGCHLD the
//! reactor checks EVERY child it spawned with `waitpid(pid, WNOHANG)` (signals coalesce;
//! `waitpid(-1)` would steal other code's children). A reaped child leaves no zombie.
//!
//! # Backpressure
//! [`ProcessTransport::write`] returns whether stdin's buffer is above the high watermark;
//! crossing it calls [`ProcessProtocol::pause_producing`], draining to the low mark calls
//! [`ProcessProtocol::resume_producing`] (both no-ops by default). Reading stdout and stderr
//! stops with [`ProcessTransport::pause_reading`] (the pipe fills, the child blocks).
//!
//! # Shutdown
//! A graceful stop closes every child's stdin (after flushing it) and waits for the children
//! to exit until the shutdown deadline; then it sends SIGKILL to those still running, reaps
//! them (a blocking `waitpid` on a SIGKILLed child, bounded by the kernel), closes their
//! pipes and delivers the remaining callbacks. A second SIGINT/SIGTERM during the stop does the
//! same at once. A panic in a process callback is logged and the child gets SIGKILL (its
//! remaining callbacks still follow).
//!
//! A reactor dropped while children run kills and reaps them (no zombie is left behind).

use std::fmt;
use std::io::{self, Read};
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, ExitStatus, Stdio};

use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Token};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use torsion_transports::{FlushStatus, WriteBuffer};
use tracing::{debug, warn};

use crate::core::{token_of, Core, Source, SourceKey};
use crate::ctx::LoopCtx;
use crate::dispatch::{Owner, World};
use crate::Error;

/// The poller token of the SIGCHLD signal pipe.
pub(crate) const CHILD_TOKEN: Token = Token(usize::MAX - 2);

/// A child process's identity. Generational: once the process has ended, its id resolves to
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId(pub(crate) SourceKey);

/// What a child process reports to. Every method has a default that does nothing; see the
/// [module docs](crate::process) for the call order.
#[allow(unused_variables)]
pub trait ProcessProtocol: 'static {
    /// The child has started; its stdin accepts writes.
    fn connection_made(&mut self, cx: &mut ProcessCtx<'_>) {}
    /// Bytes the child wrote to its stdout.
    fn out_received(&mut self, cx: &mut ProcessCtx<'_>, data: &[u8]) {}
    /// Bytes the child wrote to its stderr.
    fn err_received(&mut self, cx: &mut ProcessCtx<'_>, data: &[u8]) {}
    /// Our end of the child's stdin is closed (by `close_stdin`, a broken pipe, or the end of
    /// the process).
    fn in_connection_lost(&mut self, cx: &mut ProcessCtx<'_>) {}
    /// The child's stdout reached end of file.
    fn out_connection_lost(&mut self, cx: &mut ProcessCtx<'_>) {}
    /// The child's stderr reached end of file.
    fn err_connection_lost(&mut self, cx: &mut ProcessCtx<'_>) {}
    /// The child has exited (and was reaped), whatever its pipes are doing.
    fn process_exited(&mut self, cx: &mut ProcessCtx<'_>, status: ExitStatus) {}
    /// The child has exited and all its pipes are closed: the last call.
    fn process_ended(&mut self, cx: &mut ProcessCtx<'_>, status: ExitStatus) {}
    /// Stdin's write buffer went above the high watermark: stop writing for now.
    fn pause_producing(&mut self, cx: &mut ProcessCtx<'_>) {}
    /// Stdin's write buffer drained to the low watermark: writing may go on.
    fn resume_producing(&mut self, cx: &mut ProcessCtx<'_>) {}
}

/// A child process in the table.
pub(crate) struct Process {
    child: Child,
    pid: u32,
    stdin: Option<Sender>,
    stdout: Option<Receiver>,
    stderr: Option<Receiver>,
    buffer: WriteBuffer,
    /// `close_stdin` was asked for: close once the buffer is flushed.
    closing_stdin: bool,
    reading_paused: bool,
    /// The producer was told to pause (waiting for the low watermark).
    producer_paused: bool,
    /// A pause or resume is due (delivered by the next pump).
    producer_call_due: bool,
    started: bool,
    in_lost: bool,
    out_lost: bool,
    err_lost: bool,
    exit: Option<ExitStatus>,
    exited_delivered: bool,
    /// The flush stopped at its per-call budget: flush again next turn.
    more_flush: bool,
    pub(crate) queued: bool,
    pub(crate) span: tracing::Span,
}

impl Process {
    /// Sends a signal unless the child has been reaped already (its pid may be reused then).
    fn signal(&self, signal: Signal) -> io::Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).map_err(io::Error::other)?);
        nix::sys::signal::kill(pid, signal).map_err(io::Error::from)
    }

    /// `waitpid(pid, WNOHANG)`: records the exit status if the child has exited.
    fn try_reap(&mut self) {
        if self.exit.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    debug!(pid = self.pid, %status, "child exited");
                    self.exit = Some(status);
                }
                Ok(None) => {}
                Err(e) => warn!(pid = self.pid, error = %e, "waitpid failed"),
            }
        }
    }
}

impl Drop for Process {
    /// A process leaves the table early only when the reactor is dropped (or a process is
    /// removed before it ended): kill and reap the child so no zombie is left behind.
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn deregister<S: mio::event::Source>(core: &Core, pipe: Option<S>) {
    if let Some(mut pipe) = pipe {
        let _ = core.registry.deregister(&mut pipe);
    }
}

impl Core {
    pub(crate) fn process(&self, key: SourceKey) -> Option<&Process> {
        match self.sources.get(key) {
            Some(Source::Process(p)) => Some(p),
            _ => None,
        }
    }

    pub(crate) fn process_mut(&mut self, key: SourceKey) -> Option<&mut Process> {
        match self.sources.get_mut(key) {
            Some(Source::Process(p)) => Some(p),
            _ => None,
        }
    }

    /// Keys of every process in the table.
    pub(crate) fn process_keys(&self) -> Vec<SourceKey> {
        self.sources.iter().filter(|(_, s)| matches!(s, Source::Process(_))).map(|(k, _)| k).collect()
    }

    /// Spawns the command with piped stdio and adds it to the table; the pump delivers
    /// `connection_made` (the key is put on the ready list).
    pub(crate) fn add_process(&mut self, mut command: Command) -> Result<SourceKey, Error> {
        if self.stopping {
            return Err(Error::Stopping);
        }
        if self.child_signals.is_none() {
            let mut signals = signal_hook_mio::v1_0::Signals::new([signal_hook::consts::SIGCHLD])?;
            self.registry.register(&mut signals, CHILD_TOKEN, Interest::READABLE).map_err(Error::Register)?;
            self.child_signals = Some(signals);
        }
        let program = command.get_program().to_string_lossy().into_owned();
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child =
            command.spawn().map_err(|source| Error::Spawn { program: program.clone(), source })?;
        let pid = child.id();
        let pipes = (|| -> io::Result<(Sender, Receiver, Receiver)> {
            let stdin = Sender::from(child.stdin.take().ok_or_else(|| io::Error::other("no stdin pipe"))?);
            let stdout =
                Receiver::from(child.stdout.take().ok_or_else(|| io::Error::other("no stdout pipe"))?);
            let stderr =
                Receiver::from(child.stderr.take().ok_or_else(|| io::Error::other("no stderr pipe"))?);
            stdin.set_nonblocking(true)?;
            stdout.set_nonblocking(true)?;
            stderr.set_nonblocking(true)?;
            Ok((stdin, stdout, stderr))
        })();
        let (mut stdin, mut stdout, mut stderr) = match pipes {
            Ok(p) => p,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Io(e));
            }
        };
        let registry = &self.registry;
        let mut registered = Ok(());
        let key = self.sources.insert_with_key(|key| {
            let token = token_of(key);
            registered = registry
                .register(&mut stdin, token, Interest::WRITABLE)
                .and_then(|()| registry.register(&mut stdout, token, Interest::READABLE))
                .and_then(|()| registry.register(&mut stderr, token, Interest::READABLE));
            let span = tracing::debug_span!("process", id = ?slotmap::Key::data(&key), pid);
            Source::Process(Box::new(Process {
                child,
                pid,
                stdin: Some(stdin),
                stdout: Some(stdout),
                stderr: Some(stderr),
                buffer: WriteBuffer::new(),
                closing_stdin: false,
                reading_paused: false,
                producer_paused: false,
                producer_call_due: false,
                started: false,
                in_lost: false,
                out_lost: false,
                err_lost: false,
                exit: None,
                exited_delivered: false,
                more_flush: false,
                queued: false,
                span,
            }))
        });
        if let Err(e) = registered {
            if let Some(Source::Process(mut p)) = self.sources.remove(key) {
                deregister(self, p.stdin.take());
                deregister(self, p.stdout.take());
                deregister(self, p.stderr.take());
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
            return Err(Error::Register(e));
        }
        debug!(pid, %program, "spawned");
        self.requeue(key);
        Ok(key)
    }

    /// SIGCHLD: check every child we spawned with `waitpid(pid, WNOHANG)`.
    pub(crate) fn reap_children(&mut self) {
        if let Some(signals) = self.child_signals.as_mut() {
            // Drain the signal pipe; how many arrived does not matter (they coalesce).
            let _ = signals.pending().count();
        }
        for key in self.process_keys() {
            let Some(p) = self.process_mut(key) else { continue };
            if p.exit.is_none() {
                p.try_reap();
                if p.exit.is_some() {
                    self.requeue(key);
                }
            }
        }
    }

    /// Graceful stop: close every child's stdin once flushed.
    pub(crate) fn shutdown_processes(&mut self) {
        for key in self.process_keys() {
            if let Some(p) = self.process_mut(key) {
                p.closing_stdin = true;
            }
            self.requeue(key);
        }
    }

    /// SIGKILLs a child still running, reaps it (blocking on a SIGKILLed child is bounded),
    /// and closes its pipes, so the pump can deliver the remaining callbacks and remove it.
    pub(crate) fn kill_and_reap(&mut self, key: SourceKey) {
        let Some(p) = self.process_mut(key) else { return };
        if p.exit.is_none() {
            let _ = p.signal(Signal::SIGKILL);
            match p.child.wait() {
                Ok(status) => p.exit = Some(status),
                Err(e) => warn!(pid = p.pid, error = %e, "waiting for a killed child failed"),
            }
        }
        let (stdout, stderr) = (p.stdout.take(), p.stderr.take());
        deregister(self, stdout);
        deregister(self, stderr);
        self.requeue(key);
    }

    /// Drops a process from the table (its pipes are closed; the child was reaped).
    pub(crate) fn remove_process(&mut self, mut p: Box<Process>) {
        deregister(self, p.stdin.take());
        deregister(self, p.stdout.take());
        deregister(self, p.stderr.take());
        // Dropping it reaps the child if it still runs (see `Drop for Process`).
    }
}

/// Which output pipe.
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

/// The context lent to a [`ProcessProtocol`]'s callbacks: this process's
/// [`ProcessTransport`] (through the shortcuts below or [`transport`](ProcessCtx::transport)),
/// plus everything a [`LoopCtx`] offers (through `Deref`).
pub struct ProcessCtx<'a> {
    lp: LoopCtx<'a>,
    key: SourceKey,
}

impl fmt::Debug for ProcessCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessCtx").field("process", &self.key).finish_non_exhaustive()
    }
}

impl<'a> Deref for ProcessCtx<'a> {
    type Target = LoopCtx<'a>;

    fn deref(&self) -> &LoopCtx<'a> {
        &self.lp
    }
}

impl DerefMut for ProcessCtx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.lp
    }
}

impl ProcessCtx<'_> {
    /// This process's id.
    pub fn process_id(&self) -> ProcessId {
        ProcessId(self.key)
    }

    /// This process's transport (stdin and controls).
    pub fn transport(&mut self) -> ProcessTransport<'_> {
        ProcessTransport { core: self.lp.core, key: self.key }
    }

    /// Writes to the child's stdin; true if its buffer is now above the high watermark.
    pub fn write(&mut self, data: &[u8]) -> bool {
        self.transport().write(data)
    }

    /// Writes shared bytes to the child's stdin; true if above the high watermark.
    pub fn write_bytes(&mut self, data: bytes::Bytes) -> bool {
        self.transport().write_bytes(data)
    }

    /// Whether stdin's buffer is above the high watermark.
    pub fn is_write_buffer_above_high(&mut self) -> bool {
        self.transport().is_write_buffer_above_high()
    }

    /// Closes the child's stdin once what was written is flushed.
    pub fn close_stdin(&mut self) {
        self.transport().close_stdin()
    }

    /// Stops reading the child's stdout and stderr.
    pub fn pause_reading(&mut self) {
        self.transport().pause_reading()
    }

    /// Reads the child's stdout and stderr again.
    pub fn resume_reading(&mut self) {
        self.transport().resume_reading()
    }

    /// Sends `signal` to the child (nothing once it has been reaped).
    pub fn signal_process(&mut self, signal: Signal) -> io::Result<()> {
        self.transport().signal_process(signal)
    }

    /// Sends SIGKILL to the child (nothing once it has been reaped).
    pub fn kill(&mut self) -> io::Result<()> {
        self.transport().kill()
    }

    /// The child's process id.
    pub fn pid(&mut self) -> u32 {
        self.transport().pid()
    }
}

/// A live child process's stdin and controls, borrowed from a context. No method runs user
/// code: effects happen in the process's next pump.
pub struct ProcessTransport<'a> {
    core: &'a mut Core,
    key: SourceKey,
}

impl fmt::Debug for ProcessTransport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessTransport").field("process", &self.key).finish_non_exhaustive()
    }
}

impl ProcessTransport<'_> {
    fn proc(&mut self) -> &mut Process {
        self.core.process_mut(self.key).expect("a ProcessTransport is made only for a live process")
    }

    /// This process's id.
    pub fn process_id(&self) -> ProcessId {
        ProcessId(self.key)
    }

    /// Writes to the child's stdin (ignored once stdin is closing or closed); true if its
    /// buffer is now above the high watermark (the protocol hears `pause_producing` once).
    pub fn write(&mut self, data: &[u8]) -> bool {
        self.write_bytes(bytes::Bytes::copy_from_slice(data))
    }

    /// [`write`](ProcessTransport::write) without a copy.
    pub fn write_bytes(&mut self, data: bytes::Bytes) -> bool {
        let p = self.proc();
        if p.stdin.is_none() || p.closing_stdin || data.is_empty() {
            return p.buffer.above_high();
        }
        p.buffer.push_bytes(data);
        let above = p.buffer.above_high();
        if above && !p.producer_paused {
            p.producer_paused = true;
            p.producer_call_due = true;
        }
        self.core.requeue(self.key);
        above
    }

    /// Whether stdin's buffer is above the high watermark.
    pub fn is_write_buffer_above_high(&mut self) -> bool {
        self.proc().buffer.above_high()
    }

    /// Bytes waiting in stdin's buffer.
    pub fn write_buffer_len(&mut self) -> usize {
        self.proc().buffer.len()
    }

    /// Sets stdin's high and low watermarks.
    pub fn set_write_buffer_limits(&mut self, high: usize, low: usize) -> Result<(), Error> {
        self.proc().buffer.set_limits(high, low).map_err(Error::from)
    }

    /// Closes the child's stdin once the buffer is flushed (`in_connection_lost` follows).
    pub fn close_stdin(&mut self) {
        self.proc().closing_stdin = true;
        self.core.requeue(self.key);
    }

    /// Stops reading the child's stdout and stderr (the pipes fill and the child blocks).
    pub fn pause_reading(&mut self) {
        self.proc().reading_paused = true;
    }

    /// Reads stdout and stderr again, including data already waiting in the pipes.
    pub fn resume_reading(&mut self) {
        self.proc().reading_paused = false;
        self.core.requeue(self.key);
    }

    /// Whether reading stdout and stderr is paused.
    pub fn is_reading_paused(&mut self) -> bool {
        self.proc().reading_paused
    }

    /// Sends `signal` to the child (nothing once it has been reaped: its pid may be reused).
    pub fn signal_process(&mut self, signal: Signal) -> io::Result<()> {
        self.proc().signal(signal)
    }

    /// Sends SIGKILL to the child.
    pub fn kill(&mut self) -> io::Result<()> {
        self.signal_process(Signal::SIGKILL)
    }

    /// The child's process id.
    pub fn pid(&mut self) -> u32 {
        self.proc().pid
    }

    /// Whether the child has exited (and been reaped).
    pub fn has_exited(&mut self) -> bool {
        self.proc().exit.is_some()
    }
}

/// The public calls on [`Reactor`](crate::Reactor).
impl crate::Reactor {
    /// Runs `command` with its stdin, stdout and stderr on pipes driven by this reactor,
    /// reporting to `protocol` (see [`ProcessProtocol`]). A missing or non-executable program
    /// is [`Error::Spawn`]; the reactor is stopping: [`Error::Stopping`].
    pub fn spawn_process(
        &mut self,
        command: Command,
        protocol: impl ProcessProtocol,
    ) -> Result<ProcessId, Error> {
        let key = self.world.core.add_process(command)?;
        self.world.processes.insert(key, Box::new(protocol));
        Ok(ProcessId(key))
    }

    /// The number of child processes not yet ended.
    pub fn process_count(&self) -> usize {
        self.world.core.process_keys().len()
    }
}

/// Processes from callbacks.
impl LoopCtx<'_> {
    /// [`Reactor::spawn_process`](crate::Reactor::spawn_process) from inside a callback;
    /// `connection_made` runs after this callback.
    pub fn spawn_process(
        &mut self,
        command: Command,
        protocol: impl ProcessProtocol,
    ) -> Result<ProcessId, Error> {
        let key = self.core.add_process(command)?;
        self.core.new_processes.push((key, Box::new(protocol)));
        Ok(ProcessId(key))
    }

    /// A live process's transport; `None` once it has ended.
    pub fn process(&mut self, id: ProcessId) -> Option<ProcessTransport<'_>> {
        self.core.process(id.0)?;
        Some(ProcessTransport { core: self.core, key: id.0 })
    }
}
