//! Standard I/O as a connection: [`Reactor::standard_io`] runs an ordinary [`Protocol`] over
//! the process's own stdin and stdout (Twisted's `StandardIO`), without making them
//! non-blocking. Two threads copy between them and a Unix socket pair whose other end is a
//! normal stream connection in the table (see `torsion_transports::stdio` for why), so the
//! write buffer, watermarks, producers and half-close are the same as for TCP:
//!
//! * end of stdin is `eof_received` (return `true` to keep writing, as for a half-close);
//! * `lose_connection` flushes, then ends stdout's copying thread after it wrote everything;
//! * the peer address is an unnamed Unix address.
//!
//! The copying thread reading stdin is blocked in `read` and cannot be interrupted: after the
//! connection ends it stays until the next input (then exits) or the process exits.
//!
//! # Closing while stdin is still open
//! A clean close (`lose_connection`, or a graceful stop) does not wait for the end of stdin:
//! unlike a network peer, the far end of the pair is our own copying thread, so there is no
//! in-flight data a reset could destroy and the connection does not linger for a FIN. The
//! stdout thread still writes everything that was flushed before the close; input not yet read
//! from stdin is dropped, as it is when a TCP protocol closes.
//!
//! When `run` returns, it first waits (at most the shutdown timeout) for the stdout threads of
//! ended standard I/O connections to write what they were given, so output flushed before a
//! stop reaches stdout even if the program exits right after.
//!
//! Started from a callback ([`LoopCtx::standard_io`]), the protocol's `connection_made` runs
//! after that callback returns, like every other effect.

use std::io::{Read, Write};

use torsion_transports::{Address, UnixAddr};

use crate::core::{ConnId, Core, Phase, SourceKey, Task};
use crate::ctx::LoopCtx;
use crate::protocol::Protocol;
use crate::{Error, Reactor};

impl Reactor {
    /// Connects `protocol` to this process's stdin and stdout; `connection_made` runs before
    /// this returns. See the [module docs](crate::stdio).
    pub fn standard_io(&mut self, protocol: impl Protocol) -> Result<ConnId, Error> {
        self.standard_io_with(std::io::stdin(), std::io::stdout(), protocol)
    }

    /// [`standard_io`](Reactor::standard_io) over any blocking reader and writer (a pipe, a
    /// file, a test's buffers).
    pub fn standard_io_with<R, W>(
        &mut self,
        input: R,
        output: W,
        protocol: impl Protocol,
    ) -> Result<ConnId, Error>
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let key = add_stdio(&mut self.world.core, input, output)?;
        self.world.protocols.insert(key, Box::new(protocol));
        self.world.call_protocol(key, "connection_made", |p, cx| p.connection_made(cx));
        Ok(ConnId(key))
    }
}

/// Standard I/O from callbacks.
impl LoopCtx<'_> {
    /// [`Reactor::standard_io`] from inside a callback (for example once an outbound
    /// connection is made); `connection_made` runs after this callback returns.
    pub fn standard_io(&mut self, protocol: impl Protocol) -> Result<ConnId, Error> {
        self.standard_io_with(std::io::stdin(), std::io::stdout(), protocol)
    }

    /// [`Reactor::standard_io_with`] from inside a callback.
    pub fn standard_io_with<R, W>(
        &mut self,
        input: R,
        output: W,
        protocol: impl Protocol,
    ) -> Result<ConnId, Error>
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let key = add_stdio(self.core, input, output)?;
        self.core.tasks.push_back(Task::StreamStarted(key, Box::new(protocol)));
        Ok(ConnId(key))
    }
}

/// The socket pair and its copying threads, as an open connection that does not linger.
fn add_stdio<R, W>(core: &mut Core, input: R, output: W) -> Result<SourceKey, Error>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    if core.stopping {
        return Err(Error::Stopping);
    }
    let pair = torsion_transports::stdio::stdio_pair(input, output)?;
    let peer = Address::Unix(UnixAddr::Unnamed);
    let key = core.add_stream(Box::new(pair.stream), peer, std::cell::OnceCell::from(None), Phase::Open)?;
    core.stdio_outputs.push(pair.output_done);
    if let Some(conn) = core.conn_mut(key) {
        conn.linger = false;
    }
    Ok(key)
}

impl Core {
    /// Waits, until `deadline` at the latest, for the output threads of ended standard I/O
    /// connections to finish writing.
    pub(crate) fn wait_for_stdio_output(&mut self, deadline: std::time::Instant) {
        for done in self.stdio_outputs.drain(..) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // Disconnected: the thread wrote everything and exited. Timeout: stdout is stuck
            // (nobody reads the pipe); give up rather than hang.
            let _ = done.recv_timeout(left);
        }
    }
}
