//! The per-connection transport state machine: socket, write buffer, reading and half-close
//! state. It performs I/O when asked and reports what happened; the event loop decides when to
//! ask and which protocol callbacks follow. It knows nothing of protocols or of the loop, so it
//! is unit-tested here with plain sockets.

use std::io;

use bytes::Bytes;

use crate::buffer::{FlushStatus, WriteBuffer, DIRECT_WRITE_MAX, DIRECT_WRITE_MIN};
use crate::socket::ConnectProgress;

/// What a transport needs from its socket beyond `Read` and `Write`.
pub trait Socket: io::Read + io::Write {
    /// Shuts the write half down (sends FIN).
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Makes the coming close abortive (SO_LINGER 0: RST instead of FIN).
    fn set_abortive_close(&mut self) -> io::Result<()>;

    /// Bytes the socket layer itself holds for sending (TLS: ciphertext and a pre-TLS prefix
    /// not yet on the wire); `io::Write::flush` sends them. Zero for plain sockets.
    fn pending_output(&self) -> usize {
        0
    }

    /// True when the last read returned less than the buffer although the socket may still
    /// hold data (TLS: the ciphertext filled the buffer, the plaintext did not), so the
    /// short-read rule must not take it for a drained socket.
    fn may_have_more_input(&self) -> bool {
        false
    }

    /// Whether a short read may end the coming `read`: true unless the poller has reported
    /// the peer's hang-up, so that the next data or the peer's FIN raises a new edge (the
    /// short-read rule). A layer that reads its socket more than once per `read` (TLS reads on
    /// until a whole record is in) then stops after a short read with `WouldBlock` instead of
    /// asking the socket again only to hear `WouldBlock`. The connection says so before every
    /// read; plain sockets, which read once, ignore it.
    fn set_short_read_ends(&mut self, _ends: bool) {}
}

/// The result of one read attempt.
#[derive(Debug)]
pub enum ReadOutcome {
    /// `n` bytes were read into the front of the buffer.
    Data(usize),
    /// The peer closed its write half (FIN).
    Eof,
    /// Nothing to read right now.
    WouldBlock,
    /// The read failed (for example a reset).
    Error(io::Error),
}

/// One connection's transport: its socket, write buffer and close state.
#[derive(Debug)]
pub struct Connection<S> {
    socket: S,
    buffer: WriteBuffer,
    read_paused: bool,
    read_closed: bool,
    eof_requested: bool,
    write_closed: bool,
    closing: bool,
    aborted: bool,
    write_blocked: bool,
    max_buffer: Option<usize>,
    hold_fin: bool,
    /// An error from a direct write, reported by the next flush.
    write_error: Option<io::Error>,
    /// Bytes accepted by `write`/`write_bytes` so far, sent directly or buffered.
    accepted: u64,
    /// Readiness for reading was seen and the socket may still hold data.
    read_ready: bool,
    /// The poller reported the peer's FIN or an error: read to the end, never stop at a short
    /// read (no further edge will come).
    hup: bool,
    /// Bytes discarded while lingering after a clean close.
    lingered: usize,
}

/// What draining a lingering connection's input came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linger {
    /// Nothing more to read now; the peer's FIN has not come yet.
    Waiting,
    /// Done: the peer's FIN (or an error) arrived, or it sent more than the limit.
    Done,
}

impl<S: Socket> Connection<S> {
    /// Wraps a connected, non-blocking socket.
    pub fn new(socket: S) -> Self {
        Connection {
            socket,
            buffer: WriteBuffer::new(),
            read_paused: false,
            read_closed: false,
            eof_requested: false,
            write_closed: false,
            closing: false,
            aborted: false,
            write_blocked: false,
            max_buffer: None,
            hold_fin: false,
            write_error: None,
            accepted: 0,
            read_ready: true,
            hup: false,
            lingered: 0,
        }
    }

    /// Readiness for reading was reported; `hup` when the poller also reported the peer's FIN
    /// or an error (then reads go on to the end instead of stopping at a short read).
    pub fn set_readable(&mut self, hup: bool) {
        self.read_ready = true;
        self.hup |= hup;
    }

    /// True while the socket may hold data to read (readiness seen, not yet drained).
    pub fn is_read_ready(&self) -> bool {
        self.read_ready
    }

    /// A read found nothing (`WouldBlock`) or the end (EOF): the next data raises a new edge.
    pub fn note_drained(&mut self) {
        self.read_ready = false;
    }

    /// A read returned less than the buffer: true if that drained the socket (the next data
    /// raises a new edge, so stop reading now and save the `WouldBlock` read). Not after the
    /// poller reported a hang-up: then no further edge will come, so read on to the end.
    pub fn short_read_drained(&mut self) -> bool {
        if self.hup || self.socket.may_have_more_input() {
            return false;
        }
        self.read_ready = false;
        true
    }

    /// For a connecting socket: where the connect stands.
    pub fn connect_progress(&self) -> ConnectProgress
    where
        S: std::ops::Deref<Target = dyn crate::socket::StreamSocket>,
    {
        self.socket.connect_progress()
    }

    /// After a clean close, reads and discards the peer's input until its FIN, an error, or
    /// more than `max` bytes in all, so unread input cannot turn our close into a reset that
    /// destroys data still in flight to the peer.
    pub fn drain_linger(&mut self, buf: &mut [u8], max: usize) -> Linger {
        loop {
            match self.read(buf) {
                ReadOutcome::Data(n) => {
                    self.lingered += n;
                    if self.lingered > max {
                        return Linger::Done;
                    }
                }
                ReadOutcome::WouldBlock => return Linger::Waiting,
                ReadOutcome::Eof | ReadOutcome::Error(_) => return Linger::Done,
            }
        }
    }

    /// The socket.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// The socket, mutably (for registration).
    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    /// Consumes the transport, returning its socket.
    pub fn into_socket(self) -> S {
        self.socket
    }

    /// Replaces the socket with what `wrap` makes of it and the bytes still buffered (TLS over
    /// an existing connection: the buffered plaintext goes out ahead of the handshake). The
    /// buffer is handed over empty; everything else (close state, counters) is kept.
    pub fn wrap_socket<E>(self, wrap: impl FnOnce(S, Vec<u8>) -> Result<S, E>) -> Result<Self, E> {
        let mut conn = self;
        let buffered = conn.buffer.take_all();
        let socket = wrap(conn.socket, buffered)?;
        Ok(Connection { socket, ..conn })
    }

    /// Bytes waiting to be sent: the write buffer plus what the socket layer holds (TLS
    /// ciphertext not yet on the wire).
    pub fn pending_len(&self) -> usize {
        self.buffer.len() + self.socket.pending_output()
    }

    /// The write buffer.
    pub fn buffer(&self) -> &WriteBuffer {
        &self.buffer
    }

    /// The write buffer, mutably (watermark settings).
    pub fn buffer_mut(&mut self) -> &mut WriteBuffer {
        &mut self.buffer
    }

    /// True while new writes are accepted: not aborted, and not closing or half-closed, except
    /// that a close held open for a pull producer ([`set_hold_fin`](Self::set_hold_fin)) still
    /// takes that producer's writes: the close waits for it precisely so it can finish.
    pub fn accepts_writes(&self) -> bool {
        !self.aborted && !self.write_closed && (self.hold_fin || !(self.closing || self.eof_requested))
    }

    /// Queues a copy of `data`. Ignored after `lose_connection`, `write_eof` or `abort` (but
    /// see [`accepts_writes`](Self::accepts_writes) for a held close).
    /// Returns whether the buffer is now above the high watermark.
    ///
    /// A large write ([`DIRECT_WRITE_MIN`] bytes or more) made while nothing is buffered goes
    /// to the socket at once, at most [`DIRECT_WRITE_MAX`] bytes a call, and only what the
    /// socket does not take is copied into the buffer: coalescing gains nothing at that size,
    /// and the copy is most of a streaming server's own CPU. An error there is kept and reported
    /// by the next [`flush`](Self::flush), so the caller still learns of it after its callback.
    pub fn write(&mut self, data: &[u8]) -> bool {
        if !self.accepts_writes() {
            return false;
        }
        self.accepted += data.len() as u64;
        let mut data = data;
        if data.len() >= DIRECT_WRITE_MIN
            && self.buffer.is_empty()
            && !self.write_blocked
            && self.write_error.is_none()
        {
            while !data.is_empty() {
                let take = data.len().min(DIRECT_WRITE_MAX);
                self.buffer.note_write_call();
                match self.socket.write(&data[..take]) {
                    Ok(0) => {
                        self.write_error = Some(io::ErrorKind::WriteZero.into());
                        return false;
                    }
                    Ok(n) => {
                        data = &data[n..];
                        if n < take {
                            break; // The socket's buffer is full: queue the rest.
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Queue it; the flush after this callback meets the full socket again and
                    // waits for writability.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        self.write_error = Some(e);
                        return false;
                    }
                }
            }
            // TLS: the ciphertext of what was just taken may still wait below.
            self.buffer.set_below(self.socket.pending_output());
        }
        self.buffer.push_slice(data)
    }

    /// Queues an owned chunk without copying. Same rules as [`Connection::write`].
    pub fn write_bytes(&mut self, data: Bytes) -> bool {
        if !self.accepts_writes() {
            return false;
        }
        self.accepted += data.len() as u64;
        self.buffer.push_bytes(data)
    }

    /// Bytes accepted by [`write`](Self::write) and [`write_bytes`](Self::write_bytes) so far,
    /// whether they went to the socket at once or into the buffer. Wrappers that meter a
    /// protocol's output (throttling, write-activity timeouts) compare it before and after a
    /// callback.
    pub fn bytes_accepted(&self) -> u64 {
        self.accepted
    }

    /// Sets a hard cap on buffered bytes (`None`: no cap, the default).
    pub fn set_max_buffer(&mut self, cap: Option<usize>) {
        self.max_buffer = cap;
    }

    /// While set, a pending close or half-close does not send its FIN even once the buffer is
    /// empty (a pull producer is still registered and may write more).
    pub fn set_hold_fin(&mut self, hold: bool) {
        self.hold_fin = hold;
    }

    /// True when a hard cap is set and the buffer exceeds it.
    pub fn over_max_buffer(&self) -> bool {
        self.max_buffer.is_some_and(|cap| self.buffer.len() > cap)
    }

    /// Reads once into `buf`, retrying on `Interrupted`. Records the peer's EOF.
    pub fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        self.socket.set_short_read_ends(!self.hup);
        loop {
            return match self.socket.read(buf) {
                Ok(0) => {
                    self.read_closed = true;
                    ReadOutcome::Eof
                }
                Ok(n) => ReadOutcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Error(e),
            };
        }
    }

    /// Pauses reading (idempotent).
    pub fn pause_reading(&mut self) {
        self.read_paused = true;
    }

    /// Resumes reading (idempotent). Returns true if reading was paused and may now proceed.
    pub fn resume_reading(&mut self) -> bool {
        let was = self.read_paused;
        self.read_paused = false;
        was && self.wants_read()
    }

    /// True while reading is paused by the user.
    pub fn is_read_paused(&self) -> bool {
        self.read_paused
    }

    /// True when data should be read and delivered: not paused, no EOF yet, not closing.
    pub fn wants_read(&self) -> bool {
        !(self.read_paused || self.read_closed || self.closing || self.aborted)
    }

    /// True once the peer's FIN has been read.
    pub fn is_read_closed(&self) -> bool {
        self.read_closed
    }

    /// Marks the read half closed without reading an EOF (used when a close makes the rest of
    /// the input irrelevant).
    pub fn mark_read_closed(&mut self) {
        self.read_closed = true;
    }

    /// True once our FIN has been sent.
    pub fn is_write_closed(&self) -> bool {
        self.write_closed
    }

    /// True once `lose_connection` was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// True once `abort` was called.
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// Requests a clean close: flush, then FIN. Returns false if it was already requested.
    pub fn lose_connection(&mut self) -> bool {
        if self.closing || self.aborted {
            return false;
        }
        self.closing = true;
        true
    }

    /// Requests a half-close: flush, then FIN, reading goes on. Returns false if already done.
    pub fn write_eof(&mut self) -> bool {
        if self.eof_requested || self.closing || self.aborted {
            return false;
        }
        self.eof_requested = true;
        true
    }

    /// Drops the buffer and arranges an RST on close. Returns false if already aborted.
    pub fn abort(&mut self) -> bool {
        if self.aborted {
            return false;
        }
        self.aborted = true;
        self.buffer.clear();
        self.write_blocked = false;
        // Best effort: the socket may already be dead, in which case a plain close is fine.
        let _ = self.socket.set_abortive_close();
        true
    }

    /// True when a flush has work to do now: buffered data, or a pending FIN, and the socket is
    /// not known to be blocked.
    pub fn needs_flush(&self) -> bool {
        if self.write_error.is_some() && !self.aborted {
            return true;
        }
        !self.aborted
            && !self.write_blocked
            && (!self.buffer.is_empty()
                || self.socket.pending_output() > 0
                || ((self.closing || self.eof_requested) && !self.write_closed && !self.hold_fin))
    }

    /// True while waiting for writability.
    pub fn is_write_blocked(&self) -> bool {
        self.write_blocked
    }

    /// Called on a writable event: the socket may accept data again.
    pub fn set_writable(&mut self) {
        self.write_blocked = false;
    }

    /// Writes buffered data (at most `max_calls` calls), then sends the FIN if a close or
    /// half-close is pending and everything is out. An error means the connection is lost.
    pub fn flush(&mut self, max_calls: usize) -> io::Result<FlushStatus> {
        if self.aborted {
            return Ok(FlushStatus::Drained);
        }
        if let Some(e) = self.write_error.take() {
            return Err(e);
        }
        let status = self.buffer.flush_to(&mut self.socket, max_calls)?;
        self.buffer.set_below(self.socket.pending_output());
        match status {
            FlushStatus::WouldBlock => {
                self.write_blocked = true;
                return Ok(FlushStatus::WouldBlock);
            }
            FlushStatus::BudgetExhausted => return Ok(FlushStatus::BudgetExhausted),
            FlushStatus::Drained => {}
        }
        if self.socket.pending_output() > 0 {
            let flushed = self.socket.flush();
            self.buffer.set_below(self.socket.pending_output());
            match flushed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return Ok(FlushStatus::WouldBlock);
                }
                Err(e) => return Err(e),
            }
        }
        if (self.closing || self.eof_requested) && !self.write_closed && !self.hold_fin {
            match self.socket.shutdown_write() {
                Ok(()) => self.write_closed = true,
                // TLS: the close_notify is queued but the socket is full; finish on writable.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return Ok(FlushStatus::WouldBlock);
                }
                // The peer is already gone; the close goes on regardless.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => self.write_closed = true,
                Err(e) => {
                    self.write_closed = true;
                    return Err(e);
                }
            }
        }
        Ok(FlushStatus::Drained)
    }

    /// True when both halves are closed, or a requested close has sent its FIN: the connection
    /// is over for its protocol.
    pub fn is_finished(&self) -> bool {
        self.aborted || (self.write_closed && (self.closing || self.read_closed))
    }

    /// The readiness this connection needs: always readable (errors and EOF arrive that way),
    /// writable only while data waits for a blocked socket.
    pub fn interest(&self) -> mio::Interest {
        if self.write_blocked {
            mio::Interest::READABLE | mio::Interest::WRITABLE
        } else {
            mio::Interest::READABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn pair() -> (Connection<mio::net::TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (Connection::new(mio::net::TcpStream::from_std(server)), client)
    }

    #[test]
    fn a_large_write_goes_to_the_socket_at_once_and_only_the_rest_is_buffered() {
        let mut socket = crate::MemorySocket::new();
        socket.set_window(Some(100 * 1024));
        let mut conn = Connection::new(socket);
        // Small writes are buffered (coalesced); nothing reaches the socket yet.
        assert!(!conn.write(&[1; 100]));
        assert_eq!((conn.socket().written_len(), conn.buffer().len()), (0, 100));
        assert_eq!(conn.flush(usize::MAX).unwrap(), FlushStatus::Drained);
        // A large write on an empty buffer: the socket takes what its window allows (in calls of
        // at most 128 KiB), the rest is buffered, and it all counts as accepted.
        assert!(conn.write(&[2; 200 * 1024]), "the 100 KiB left over is above the high mark");
        assert_eq!(conn.socket().written_len(), 100 * 1024);
        assert_eq!(conn.buffer().len(), 100 * 1024 + 100);
        assert_eq!(conn.bytes_accepted(), 100 + 200 * 1024);
        // With data buffered, even a large write queues behind it, in order.
        conn.write(&[3; 20 * 1024]);
        assert_eq!(conn.buffer().len(), 120 * 1024 + 100);
        let mut out = conn.socket_mut().take_written();
        conn.socket_mut().set_window(None);
        assert_eq!(conn.flush(usize::MAX).unwrap(), FlushStatus::Drained);
        out.extend(conn.socket_mut().take_written());
        let mut expected = vec![1; 100];
        expected.extend([2; 200 * 1024]);
        expected.extend([3; 20 * 1024]);
        assert!(out == expected, "every byte, in order");
    }

    #[test]
    fn a_direct_write_error_is_reported_by_the_next_flush() {
        let mut socket = crate::MemorySocket::new();
        socket.reset();
        let mut conn = Connection::new(socket);
        assert!(!conn.write(&[0; 64 * 1024]));
        assert!(conn.needs_flush(), "the error waits for the flush after the callback");
        assert!(conn.flush(usize::MAX).is_err());
    }

    #[test]
    fn lose_connection_flushes_then_sends_fin() {
        let (mut conn, mut peer) = pair();
        conn.write(b"hello ");
        conn.write_bytes(Bytes::from_static(&[b'w'; 1000]));
        assert!(conn.lose_connection());
        assert!(!conn.lose_connection(), "second close is a no-op");
        assert!(!conn.write(b"ignored"), "writes after lose_connection are ignored");
        assert_eq!(conn.flush(usize::MAX).unwrap(), FlushStatus::Drained);
        assert!(conn.is_finished());
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 1006);
        assert!(got.starts_with(b"hello w"));
    }

    #[test]
    fn eof_then_write_eof_finishes() {
        let (mut conn, mut peer) = pair();
        peer.write_all(b"abc").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 16];
        let mut data = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match conn.read(&mut buf) {
                ReadOutcome::Data(n) => data.extend_from_slice(&buf[..n]),
                ReadOutcome::Eof => break,
                ReadOutcome::WouldBlock => assert!(std::time::Instant::now() < deadline, "no EOF"),
                ReadOutcome::Error(e) => panic!("{e}"),
            }
        }
        assert_eq!(data, b"abc");
        assert!(!conn.is_finished(), "half-closed by the peer only");
        conn.write(b"reply");
        conn.write_eof();
        conn.flush(usize::MAX).unwrap();
        assert!(conn.is_finished());
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"reply");
    }

    #[test]
    fn abort_sends_reset() {
        let (mut conn, mut peer) = pair();
        conn.write(b"dropped");
        assert!(conn.abort());
        assert!(!conn.abort());
        assert!(conn.is_finished());
        drop(conn.into_socket());
        let mut buf = [0u8; 16];
        let err = peer.read(&mut buf).expect_err("expected a reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn pause_and_resume_are_idempotent() {
        let (mut conn, _peer) = pair();
        assert!(conn.wants_read());
        conn.pause_reading();
        conn.pause_reading();
        assert!(!conn.wants_read());
        assert!(conn.resume_reading());
        assert!(!conn.resume_reading());
        assert!(conn.wants_read());
    }
}
