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
//! # Sharp edge: closing while stdin is still open
//! A clean close (`lose_connection`, or a graceful stop) of a connection whose input has not
//! ended lingers like any stream socket, waiting for the peer's FIN, which here only comes at
//! the end of stdin: a graceful stop then waits until the shutdown deadline (or the linger
//! timeout) before `run` returns. Close after `eof_received`, or abort, to avoid the wait.

use std::io::{Read, Write};

use torsion_transports::{Address, UnixAddr};

use crate::core::{ConnId, Phase};
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
        if self.world.core.stopping {
            return Err(Error::Stopping);
        }
        let stream = torsion_transports::stdio::stdio_pair(input, output)?;
        let peer = Address::Unix(UnixAddr::Unnamed);
        let key = self.world.core.add_stream(Box::new(stream), peer, None, Phase::Open)?;
        self.world.protocols.insert(key, Box::new(protocol));
        self.world.call_protocol(key, "connection_made", |p, cx| p.connection_made(cx));
        Ok(ConnId(key))
    }
}
