//! [`Transport`]: one connection's transport, viewed through a context. Writes, closes,
//! pauses and producer registration record intent in the table; what follows (flushes,
//! `connection_lost`, producer calls) happens after the current callback.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use torsion_transports::{Address, BoxedStream, Connection, PeerCredentials};

use crate::core::{ConnId, Core, SourceKey};
use crate::protocol::{DisconnectReason, Producer};
use crate::Error;

/// A view of one connection's transport, borrowed from a [`Ctx`](crate::Ctx) or
/// [`LoopCtx`](crate::LoopCtx). Every method is a no-op (or returns `None`/0) once the
/// connection is gone.
pub struct Transport<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) key: SourceKey,
}

impl fmt::Debug for Transport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").field("conn", &self.key).finish_non_exhaustive()
    }
}

impl<'a> Transport<'a> {
    pub(crate) fn new(core: &'a mut Core, key: SourceKey) -> Transport<'a> {
        Transport { core, key }
    }

    /// This connection's id.
    pub fn conn_id(&self) -> ConnId {
        ConnId(self.key)
    }

    fn io(&mut self) -> Option<&mut Connection<BoxedStream>> {
        self.core.open_conn(self.key)?.io.as_mut()
    }

    pub(crate) fn io_ref(&self) -> Option<&Connection<BoxedStream>> {
        self.core.open_conn_ref(self.key)?.io.as_ref()
    }

    /// True while the connection is open (even if closing).
    pub fn is_connected(&self) -> bool {
        self.io_ref().is_some()
    }

    /// Queues a copy of `data`; it is sent after the current callback, together with every
    /// other write made in it. Returns whether the write buffer is now above its high watermark.
    /// Ignored after a close.
    ///
    /// One exception, invisible but for speed: a write of 16 KiB or more made while nothing is
    /// buffered goes to the socket at once, and only what the socket does not take is copied
    /// (coalescing gains nothing at that size, and the copy would be most of a streaming
    /// server's own CPU). A write error is still reported after the callback, as
    /// `connection_lost(Lost(..))`.
    pub fn write(&mut self, data: &[u8]) -> bool {
        let Some(io) = self.io() else { return false };
        if !io.accepts_writes() || data.is_empty() {
            return io.buffer().above_high();
        }
        let above = io.write(data);
        self.core.after_write(self.key, above);
        above
    }

    /// Queues an owned chunk without copying. Same rules as [`Transport::write`].
    pub fn write_bytes(&mut self, data: Bytes) -> bool {
        let Some(io) = self.io() else { return false };
        if !io.accepts_writes() || data.is_empty() {
            return io.buffer().above_high();
        }
        let above = io.write_bytes(data);
        self.core.after_write(self.key, above);
        above
    }

    /// Queues several slices in order. Same rules as [`Transport::write`].
    pub fn write_sequence<'d>(&mut self, data: impl IntoIterator<Item = &'d [u8]>) -> bool {
        let Some(io) = self.io() else { return false };
        if !io.accepts_writes() {
            return io.buffer().above_high();
        }
        let mut above = false;
        for chunk in data {
            above = io.write(chunk);
        }
        self.core.after_write(self.key, above);
        above
    }

    /// Closes cleanly: stop delivering input, flush everything buffered, send FIN, then
    /// `connection_lost(Clean)`. Repeated calls are no-ops.
    pub fn lose_connection(&mut self) {
        if let Some(io) = self.io() {
            if io.lose_connection() {
                self.core.mark_dirty(self.key);
                self.core.arm_tls_close_timeout(self.key);
            }
        }
    }

    /// Closes cleanly like [`lose_connection`](Transport::lose_connection), but
    /// `connection_lost` reports `reason` instead of `Clean` (for example
    /// [`DisconnectReason::LimitExceeded`] when a line was too long). Only the first reason
    /// given counts.
    pub fn lose_connection_with(&mut self, reason: DisconnectReason) {
        let key = self.key;
        if let Some(conn) = self.core.open_conn(key) {
            if conn.io.as_ref().is_some_and(|io| !io.is_closing()) && conn.close_reason.is_none() {
                conn.close_reason = Some(Box::new(reason));
            }
        }
        self.lose_connection();
    }

    /// Tells the transport that the peer sends nothing more on this connection: it said so in
    /// its protocol (an HTTP request with `Connection: close`, read to its end) and everything
    /// it sent has been consumed. A clean close ([`lose_connection`](Transport::lose_connection))
    /// then closes the socket as soon as the buffer is flushed and the FIN sent, instead of
    /// lingering, draining input until the peer's FIN (up to 5 s); that saves a wake-up and a
    /// read per connection.
    ///
    /// # Resets
    ///
    /// Lingering exists because closing a socket with unread input makes the kernel send RST
    /// instead of FIN, and a peer that receives RST may discard our last response before its
    /// application has read it. So the close skips lingering only if, at that moment, no input
    /// is known to be waiting (the last read drained the socket and no readiness has been
    /// reported since); otherwise it lingers as usual. Input that arrives after the close is
    /// answered with RST by the kernel, which a peer that promised to send nothing more has
    /// brought on itself. Leave this off when the *local* side decides to close (the peer may
    /// still be sending: pipelined requests, an upload), and for a protocol with no such
    /// promise from the peer.
    pub fn expect_no_more_input(&mut self) {
        if let Some(conn) = self.core.open_conn(self.key) {
            conn.input_done = true;
        }
    }

    /// Aborts like [`abort_connection`](Transport::abort_connection), reporting `reason`.
    pub fn abort_connection_with(&mut self, reason: DisconnectReason) {
        if self.io().is_some() {
            self.core.abort_with(self.key, reason);
        }
    }

    /// Closes at once: drop the buffer, reset (RST), then `connection_lost(Aborted)`.
    pub fn abort_connection(&mut self) {
        if self.io().is_some() {
            self.core.abort_with(self.key, DisconnectReason::Aborted);
        }
    }

    /// Half-closes: flush, then FIN; reading goes on. When the peer's FIN has also arrived,
    /// `connection_lost(Clean)` follows.
    pub fn write_eof(&mut self) {
        if let Some(io) = self.io() {
            if io.write_eof() {
                self.core.mark_dirty(self.key);
            }
        }
    }

    /// Stops reading; the kernel's buffer fills and TCP pushes back on the peer. Idempotent.
    pub fn pause_reading(&mut self) {
        if let Some(io) = self.io() {
            io.pause_reading();
        }
    }

    /// Resumes reading. Data that arrived while paused (it raised no new edge) is read on the
    /// next turn. Idempotent.
    pub fn resume_reading(&mut self) {
        let key = self.key;
        let Some(io) = self.io() else { return };
        if io.resume_reading() {
            io.set_readable(false);
            self.core.requeue(key);
        }
    }

    /// True once `lose_connection` or an abort has been asked for, or the connection is gone:
    /// no more input will be delivered and ordinary writes are ignored. (A half-close with
    /// `write_eof` is not closing: reading goes on.) Framers check it to stop delivering frames
    /// however their handler closed the connection.
    pub fn is_closing(&self) -> bool {
        self.io_ref().is_none_or(|io| io.is_closing())
    }

    /// True while reading is paused.
    pub fn is_reading_paused(&self) -> bool {
        self.io_ref().is_some_and(|io| io.is_read_paused())
    }

    /// The peer's address (`127.0.0.1:5555`, `unix:(unnamed)`, …). Also available in
    /// `connection_lost`.
    pub fn peer_addr(&self) -> Option<Address> {
        self.core.conn(self.key).map(|c| c.peer.clone())
    }

    /// Our address. For an accepted connection it is read from the socket the first time it
    /// is asked for (accepting does not pay a `getsockname` per connection), so ask while the
    /// connection is open: once its socket is closed, an address never asked for is `None`.
    pub fn local_addr(&self) -> Option<Address> {
        let conn = self.core.conn(self.key)?;
        conn.local.get_or_init(|| conn.io.as_ref().and_then(|io| io.socket().local_address())).clone()
    }

    /// The credentials (pid, uid, gid) of the process at the other end of a Unix socket;
    /// `None` for other transports or a closed connection.
    pub fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.io_ref()?.socket().peer_credentials()
    }

    /// Sets TCP_NODELAY (a no-op on Unix sockets).
    pub fn set_nodelay(&mut self, on: bool) -> io::Result<()> {
        match self.io() {
            Some(io) => io.socket().set_nodelay(on),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Turns SO_KEEPALIVE on with the given idle time, or off with `None` (a no-op on Unix
    /// sockets).
    pub fn set_keepalive(&mut self, idle: Option<Duration>) -> io::Result<()> {
        match self.io() {
            Some(io) => io.socket().set_keepalive(idle),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// True while the write buffer is above its high watermark: the peer is not reading as fast
    /// as this connection writes (the same answer `write` returns).
    pub fn is_write_buffer_above_high(&self) -> bool {
        self.io_ref().is_some_and(|io| io.buffer().above_high())
    }

    /// Bytes waiting to be sent: the user-space write buffer, plus (TLS) ciphertext not yet on
    /// the wire.
    pub fn write_buffer_len(&self) -> usize {
        self.io_ref().map_or(0, |io| io.pending_len())
    }

    /// Bytes this transport has accepted for sending so far (every `write`, `write_bytes` and
    /// `write_sequence` that was not ignored), whether sent at once or buffered. Compare it
    /// before and after a callback to meter what a protocol wrote; the buffer's length alone
    /// misses what went straight to the socket.
    pub fn bytes_written(&self) -> u64 {
        self.io_ref().map_or(0, |io| io.bytes_accepted())
    }

    /// Sets the write buffer's watermarks (defaults 64 KiB / 16 KiB); `low` must not exceed
    /// `high`.
    pub fn set_write_buffer_limits(&mut self, high: usize, low: usize) -> Result<(), Error> {
        match self.io() {
            Some(io) => Ok(io.buffer_mut().set_limits(high, low)?),
            None => Ok(()),
        }
    }

    /// Registers a producer for this transport's output (Twisted's `registerProducer`):
    /// another connection ([`ConnId`]) or a [`Producer`] object; `streaming` is true for a push
    /// producer, false for a pull producer. A pull producer gets `resume_producing` right after
    /// this callback; a push producer registered over a full buffer is paused at once.
    /// Registering while another producer is registered is an error; registering on a closed
    /// transport calls `stop_producing` (after this callback).
    ///
    /// While a pull producer is registered, `lose_connection` waits for it to unregister; a push
    /// producer gets `stop_producing` once the buffer has drained, then FIN goes out.
    pub fn register_producer(
        &mut self,
        producer: impl Into<ProducerSource>,
        streaming: bool,
    ) -> Result<(), Error> {
        self.core.register_producer(self.key, producer.into(), streaming)
    }

    /// Unregisters the producer, if any (Twisted's `unregisterProducer`); never calls
    /// `stop_producing`. The connection's own protocol becomes its producer again.
    pub fn unregister_producer(&mut self) {
        self.core.unregister_producer(self.key);
    }

    /// True while a producer is registered.
    pub fn has_producer(&self) -> bool {
        self.core.open_conn_ref(self.key).is_some_and(|c| c.producer.is_registered())
    }

    /// Sets a hard cap on the write buffer (`None`, the default: no cap). A write that takes
    /// the buffer over it aborts the connection with [`DisconnectReason::BufferOverflow`].
    pub fn set_max_write_buffer(&mut self, cap: Option<usize>) {
        if let Some(io) = self.io() {
            io.set_max_buffer(cap);
        }
    }

    /// Number of `write`/`write_vectored` system calls this transport has made.
    pub fn write_calls(&self) -> u64 {
        self.io_ref().map_or(0, |io| io.buffer().write_calls())
    }
}

/// A producer to register on a transport: another connection, or a [`Producer`] object.
pub enum ProducerSource {
    /// Another connection; its reading is paused and resumed, and `stop_producing` closes it.
    Conn(ConnId),
    /// A producer object.
    Object(Box<dyn Producer>),
}

impl fmt::Debug for ProducerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProducerSource::Conn(id) => f.debug_tuple("Conn").field(id).finish(),
            ProducerSource::Object(_) => f.write_str("Object(..)"),
        }
    }
}

impl From<ConnId> for ProducerSource {
    fn from(id: ConnId) -> Self {
        ProducerSource::Conn(id)
    }
}

impl<P: Producer> From<P> for ProducerSource {
    fn from(producer: P) -> Self {
        ProducerSource::Object(Box::new(producer))
    }
}
