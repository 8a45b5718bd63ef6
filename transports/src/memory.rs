//! In-memory sockets for the test harness. A [`MemorySocket`] is a [`StreamSocket`] like TCP
//! and Unix streams and runs under the same [`Connection`](crate::Connection) state machine, so
//! a protocol tested over memory sees exactly what it would over a real socket (one verified
//! fake, not a second implementation of the transport). The event loop never matches on it.

use std::any::Any;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};

use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::connection::Socket;
use crate::socket::StreamSocket;

/// The far end of a memory connection, as a test drives it: bytes to deliver, bytes written,
/// the peer's window, and close state.
#[derive(Debug, Default)]
pub struct MemorySocket {
    inbound: VecDeque<u8>,
    /// The peer sent FIN: reads return EOF once `inbound` is drained.
    peer_eof: bool,
    /// The peer reset the connection: reads and writes fail.
    peer_reset: bool,
    /// The peer closed both ways: writes fail.
    peer_closed: bool,
    outbound: Vec<u8>,
    /// Bytes the peer still accepts before writes would block (`None`: unlimited).
    window: Option<usize>,
    /// Our side sent FIN (shutdown write).
    fin_sent: bool,
    /// Our side asked for an abortive close (RST).
    rst_sent: bool,
}

impl MemorySocket {
    /// An open memory socket with an unlimited peer window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues bytes for the transport to read.
    pub fn feed(&mut self, data: &[u8]) {
        self.inbound.extend(data);
    }

    /// The peer half-closes: after the queued bytes, reads return EOF.
    pub fn feed_eof(&mut self) {
        self.peer_eof = true;
    }

    /// The peer closes both ways: reads return EOF after the queued bytes, writes fail with
    /// `BrokenPipe`.
    pub fn close(&mut self) {
        self.peer_eof = true;
        self.peer_closed = true;
    }

    /// Opens the peer's window by `n` bytes (it read them), if a window is set.
    pub fn open_window(&mut self, n: usize) {
        if let Some(window) = self.window.as_mut() {
            *window += n;
        }
    }

    /// The peer resets the connection: reads and writes fail with `ConnectionReset`.
    pub fn reset(&mut self) {
        self.peer_reset = true;
    }

    /// Takes everything written so far.
    pub fn take_written(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outbound)
    }

    /// Bytes written and not yet taken.
    pub fn written_len(&self) -> usize {
        self.outbound.len()
    }

    /// Limits how many more bytes the peer accepts before writes would block (`None`: no
    /// limit). Simulates a slow reader.
    pub fn set_window(&mut self, window: Option<usize>) {
        self.window = window;
    }

    /// True once our side sent FIN.
    pub fn fin_sent(&self) -> bool {
        self.fin_sent
    }

    /// True once our side asked for a reset.
    pub fn rst_sent(&self) -> bool {
        self.rst_sent
    }

    /// True while bytes fed are waiting to be read.
    pub fn has_input(&self) -> bool {
        !self.inbound.is_empty() || self.peer_eof || self.peer_reset
    }
}

impl Read for MemorySocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.peer_reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if self.inbound.is_empty() {
            return if self.peer_eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(self.inbound.len());
        for (dst, src) in buf.iter_mut().zip(self.inbound.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for MemorySocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.peer_reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if self.fin_sent || self.peer_closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let mut room = self.window.unwrap_or(usize::MAX);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(room);
            self.outbound.extend_from_slice(&buf[..take]);
            n += take;
            room -= take;
            if room == 0 {
                break;
            }
        }
        if let Some(window) = self.window.as_mut() {
            *window -= n;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for MemorySocket {
    fn shutdown_write(&mut self) -> io::Result<()> {
        if self.peer_reset {
            return Err(io::ErrorKind::NotConnected.into());
        }
        self.fin_sent = true;
        Ok(())
    }

    fn set_abortive_close(&mut self) -> io::Result<()> {
        self.rst_sent = true;
        Ok(())
    }
}

impl Source for MemorySocket {
    fn register(&mut self, _registry: &Registry, _token: Token, _interests: Interest) -> io::Result<()> {
        Ok(())
    }

    fn reregister(&mut self, _registry: &Registry, _token: Token, _interests: Interest) -> io::Result<()> {
        Ok(())
    }

    fn deregister(&mut self, _registry: &Registry) -> io::Result<()> {
        Ok(())
    }
}

/// A memory socket stands for a connected TCP stream in tests: it is always connected, has no
/// local address of its own (the harness gives one) and no socket options.
impl StreamSocket for MemorySocket {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
