//! What a process protocol holds in its callbacks ([`ProcessCtx`]), a child's transport
//! ([`ProcessTransport`]), and the public calls that spawn children.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::process::Command;

use nix::sys::signal::Signal;

use super::{Process, ProcessId, ProcessProtocol};
use crate::core::{Core, SourceKey};
use crate::ctx::LoopCtx;
use crate::Error;

/// The context lent to a [`ProcessProtocol`]'s callbacks: this process's
/// [`ProcessTransport`] (through the shortcuts below or [`transport`](ProcessCtx::transport)),
/// plus everything a [`LoopCtx`] offers (through `Deref`).
pub struct ProcessCtx<'a> {
    pub(super) lp: LoopCtx<'a>,
    pub(super) key: SourceKey,
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
    pub(super) key: SourceKey,
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
