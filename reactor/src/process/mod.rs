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

use std::io;
use std::process::{Child, Command, ExitStatus, Stdio};

use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Token};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use torsion_transports::WriteBuffer;
use tracing::{debug, warn};

use crate::core::{token_of, Core, Source, SourceKey};
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
mod ctx;
mod pump;

pub use ctx::{ProcessCtx, ProcessTransport};
