//! TLS as a byte layer inside a connection: [`TlsStream`] wraps any [`StreamSocket`] and drives
//! rustls sans-IO (`read_tls` / `process_new_packets` / `write_tls`), so the connection state
//! machine above it (write buffer, watermarks, producers, half-close, lingering close) is the
//! same for TLS as for TCP: ciphertext on the socket side, plaintext on the protocol side.
//!
//! # Reading
//! One `read` reads ciphertext from the socket straight into the caller's buffer (the loop-wide
//! read buffer), feeds it to rustls from there, and copies the decrypted plaintext back into the
//! front of the same buffer (plaintext never outgrows the ciphertext it came from, so it never
//! overwrites ciphertext not yet fed). This layer allocates nothing per read. rustls 0.23
//! underneath decrypts each record in place in its own buffer, then moves the plaintext into a
//! fresh `Vec` and resizes its record buffer when it empties (about 1.0 to 1.4 bytes allocated
//! and freed per byte read, measured in `tests/tests/tls_read_alloc.rs`). Its unbuffered API
//! hands out the same per-record `Vec` in 0.23, so driving that instead would not remove the
//! copy (a port measured 1.000, and cost a copy on the write path and buffers kept per
//! connection).
//!
//! A read returns less than the buffer only when the socket was drained, or tells the
//! connection there may be more ([`Socket::may_have_more_input`]), so the edge-triggered
//! short-read rule stays true. The rule holds inside too: a read that has no whole record yet
//! reads the socket again only if the last read filled the buffer, or if the poller reported
//! a hang-up ([`Socket::set_short_read_ends`]); otherwise it ends with `WouldBlock` after the
//! short read, since the rest of the record (or the FIN) raises a new edge. A handshake flight
//! thus costs one `recv`, not one and an `EAGAIN`.
//!
//! # Writing
//! Plaintext is handed to rustls only when no ciphertext is waiting for the socket, at most
//! [`TLS_WRITE_BATCH`] bytes at a time; the rest stays in the connection's write buffer. So the
//! bytes held for a slow reader are the write buffer (plaintext) plus at most one batch of
//! ciphertext; [`Socket::pending_output`] reports the latter, and the connection counts it
//! against the watermarks with the former ([`WriteBuffer::set_below`](crate::WriteBuffer::set_below)):
//! `write`'s above-high answer, producer pauses and resumes all see both.
//!
//! # Closing
//! `shutdown_write` sends `close_notify`, flushes it, then the FIN. A peer's `close_notify`
//! reads as end of stream (`Ok(0)`); a TCP EOF without it is [`TlsFailure::Truncated`].

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, Connection as RustlsConnection, ServerConfig, ServerConnection,
};

use crate::address::Address;
use crate::connection::Socket;
use crate::socket::{BoxedStream, ConnectProgress, PeerCredentials, StreamSocket};

/// Most plaintext handed to rustls in one write: the ciphertext waiting for the socket is at
/// most this much (plus record overhead).
pub const TLS_WRITE_BATCH: usize = 64 * 1024;

/// Default time a TLS handshake may take before the connection is closed.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time a TLS `lose_connection` may take (flush, `close_notify`, FIN) before the
/// connection is aborted (asyncio's `ssl_shutdown_timeout`).
pub const DEFAULT_TLS_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why TLS ended a connection or failed a handshake.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The handshake failed: bad or unknown certificate, no shared version, cipher suite or
    /// ALPN protocol, or bytes that are not TLS at all (plaintext HTTP, garbage). rustls has
    /// queued the alert, which is sent before the close where the socket takes it.
    #[error("TLS handshake failed: {0}")]
    Handshake(rustls::Error),
    /// A TLS error after the handshake (a corrupt record, a fatal alert from the peer).
    #[error("TLS error: {0}")]
    Protocol(rustls::Error),
    /// The peer closed the TCP connection during the handshake.
    #[error("the peer closed the connection during the TLS handshake")]
    ClosedDuringHandshake,
    /// The handshake did not finish within the deadline.
    #[error("the TLS handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    /// The peer closed the TCP connection without sending `close_notify` first: the data may
    /// have been cut short by an attacker, so this is not a clean close.
    #[error("the TLS connection was truncated: TCP EOF without close_notify")]
    Truncated,
}

impl TlsFailure {
    /// The TLS failure an I/O error from a [`TlsStream`] carries, if any.
    pub fn from_io(e: &io::Error) -> Option<&TlsFailure> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<TlsFailure>())
    }

    /// The rustls error inside, if there is one.
    pub fn rustls_error(&self) -> Option<&rustls::Error> {
        match self {
            TlsFailure::Handshake(e) | TlsFailure::Protocol(e) => Some(e),
            _ => None,
        }
    }

    fn into_io(self) -> io::Error {
        let kind = match self {
            TlsFailure::Truncated | TlsFailure::ClosedDuringHandshake => io::ErrorKind::UnexpectedEof,
            TlsFailure::HandshakeTimeout(_) => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

/// Which side of a TLS session to start, with its configuration.
#[derive(Debug, Clone)]
pub enum TlsRole {
    /// Act as the server.
    Server(Arc<ServerConfig>),
    /// Act as the client, verifying the server against `server_name`.
    Client(Arc<ClientConfig>, ServerName<'static>),
}

impl TlsRole {
    /// Starts a rustls session for this role.
    pub fn start(&self) -> Result<RustlsConnection, rustls::Error> {
        Ok(match self {
            TlsRole::Server(config) => RustlsConnection::Server(ServerConnection::new(config.clone())?),
            TlsRole::Client(config, name) => {
                RustlsConnection::Client(ClientConnection::new(config.clone(), name.clone())?)
            }
        })
    }
}

/// A stream socket with TLS between it and the connection above: plaintext in and out,
/// ciphertext on the wire.
pub struct TlsStream {
    inner: BoxedStream,
    tls: RustlsConnection,
    /// Plaintext written before `start_tls`, sent ahead of the first TLS record.
    prefix: Vec<u8>,
    prefix_sent: usize,
    /// Plaintext handed to rustls whose ciphertext may not all be on the wire yet.
    unsent: usize,
    /// The last read filled the caller's buffer at the socket: more may be waiting.
    more_input: bool,
    /// A short read with no whole record may end a read ([`Socket::set_short_read_ends`]).
    short_read_ends: bool,
    close_notify_sent: bool,
    peer_closed: bool,
    /// Plaintext handed back with [`unread`](TlsStream::unread), returned by the next read.
    held: Vec<u8>,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("inner", &self.inner)
            .field("server", &matches!(self.tls, RustlsConnection::Server(_)))
            .field("handshaking", &self.tls.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    /// Wraps `inner`, starting a TLS session in `role`. `prefix` is plaintext already accepted
    /// for sending before TLS began (`start_tls`): it goes out first, unencrypted.
    pub fn new(inner: BoxedStream, role: &TlsRole, prefix: Vec<u8>) -> Result<TlsStream, rustls::Error> {
        Ok(TlsStream::with_session(inner, role.start()?, prefix))
    }

    /// Wraps `inner` with a session already started ([`TlsRole::start`]).
    pub fn with_session(inner: BoxedStream, mut tls: RustlsConnection, prefix: Vec<u8>) -> TlsStream {
        tls.set_buffer_limit(Some(TLS_WRITE_BATCH));
        TlsStream {
            inner,
            tls,
            prefix,
            prefix_sent: 0,
            unsent: 0,
            more_input: false,
            short_read_ends: false,
            close_notify_sent: false,
            peer_closed: false,
            held: Vec::new(),
        }
    }

    /// The socket under TLS.
    pub fn inner(&self) -> &BoxedStream {
        &self.inner
    }

    /// True until the handshake has completed.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// True on the server side.
    pub fn is_server(&self) -> bool {
        matches!(self.tls, RustlsConnection::Server(_))
    }

    /// The ALPN protocol both sides agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.alpn_protocol()
    }

    /// The server name (SNI) the client asked for; on the server side only.
    pub fn server_name(&self) -> Option<&str> {
        match &self.tls {
            RustlsConnection::Server(s) => s.server_name(),
            RustlsConnection::Client(_) => None,
        }
    }

    /// The negotiated protocol version, once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.tls.protocol_version()
    }

    /// The negotiated cipher suite, once known.
    pub fn cipher_suite(&self) -> Option<rustls::SupportedCipherSuite> {
        self.tls.negotiated_cipher_suite()
    }

    /// The peer's certificate chain (end entity first), if it sent one.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.tls.peer_certificates()
    }

    /// Hands plaintext back, to be returned (first) by the next read. The loop uses it when
    /// the read that completed the handshake also brought data, and the protocol whose
    /// `connection_made` ran meanwhile paused reading.
    pub fn unread(&mut self, data: &[u8]) {
        let mut held = data.to_vec();
        held.extend_from_slice(&self.held);
        self.held = held;
    }

    /// True once the peer's `close_notify` arrived.
    pub fn received_close_notify(&self) -> bool {
        self.peer_closed
    }

    /// True once our `close_notify` was queued.
    pub fn sent_close_notify(&self) -> bool {
        self.close_notify_sent
    }

    fn failure(&self, e: rustls::Error, handshaking: bool) -> io::Error {
        if handshaking {
            TlsFailure::Handshake(e).into_io()
        } else {
            TlsFailure::Protocol(e).into_io()
        }
    }

    /// Writes the plaintext prefix, then ciphertext, until nothing waits or the socket blocks.
    fn write_pending(&mut self) -> io::Result<()> {
        while self.prefix_sent < self.prefix.len() {
            match self.inner.write(&self.prefix[self.prefix_sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.prefix_sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.prefix.is_empty() {
            self.prefix = Vec::new();
            self.prefix_sent = 0;
        }
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.inner) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.unsent = 0;
        Ok(())
    }

    /// Sends what rustls queued (handshake messages, alerts) as far as the socket takes it; what
    /// it does not take waits for [`Socket::pending_output`]'s flush.
    fn push_out(&mut self) {
        match self.write_pending() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // A dead socket shows itself to the next read or flush.
            Err(_) => {}
        }
    }

    /// Moves decrypted plaintext into `buf[out..limit]`; returns the new `out`. Notes the
    /// peer's `close_notify`.
    fn take_plaintext(&mut self, buf: &mut [u8], mut out: usize, limit: usize) -> io::Result<usize> {
        while out < limit {
            match self.tls.reader().read(&mut buf[out..limit]) {
                Ok(0) => {
                    self.peer_closed = true;
                    break;
                }
                Ok(k) => out += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A TCP EOF without close_notify (handled by the caller) or a rustls error.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Feeds `buf[fed..end]` (ciphertext) to rustls and moves the plaintext it yields to
    /// `buf[out..]`. Returns the new `out`, or the TLS error.
    fn decrypt_in_place(
        &mut self,
        buf: &mut [u8],
        mut fed: usize,
        end: usize,
        mut out: usize,
    ) -> io::Result<usize> {
        while fed < end {
            let handshaking = self.tls.is_handshaking();
            let mut chunk = &buf[fed..end];
            let n = match self.tls.read_tls(&mut chunk) {
                Ok(n) => n,
                // rustls refuses more (its buffer is full): a protocol violation by the peer.
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            };
            if n == 0 {
                break; // close_notify came: anything after it is ignored.
            }
            fed += n;
            if let Err(e) = self.tls.process_new_packets() {
                self.push_out(); // the alert
                return Err(self.failure(e, handshaking));
            }
            // `out..fed` overwrites nothing not yet fed; plaintext that does not fit yet (a
            // record begun in an earlier read) is taken after the last chunk.
            out = self.take_plaintext(buf, out, fed)?;
        }
        out = self.take_plaintext(buf, out, buf.len())?;
        if self.tls.wants_write() {
            self.push_out(); // handshake messages, key updates, alerts
        }
        Ok(out)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.more_input = false;
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.held.is_empty() {
            let n = self.held.len().min(buf.len());
            buf[..n].copy_from_slice(&self.held[..n]);
            self.held.drain(..n);
            self.more_input = true;
            return Ok(n);
        }
        if self.peer_closed {
            return Ok(0);
        }
        // Plaintext left over from the last read (it did not fit in the buffer).
        let out = self.take_plaintext(buf, 0, buf.len())?;
        if out > 0 {
            self.more_input = true; // the socket was not read: it may hold more
            return Ok(out);
        }
        if self.peer_closed {
            return Ok(0);
        }
        loop {
            let got = match self.inner.read(buf) {
                Ok(0) => {
                    // TCP EOF: clean only after close_notify.
                    let handshaking = self.tls.is_handshaking();
                    let _ = self.tls.read_tls(&mut io::empty());
                    return match self.tls.reader().read(buf) {
                        Ok(n) => {
                            self.peer_closed |= n == 0;
                            Ok(n)
                        }
                        Err(_) if handshaking => Err(TlsFailure::ClosedDuringHandshake.into_io()),
                        Err(_) => Err(TlsFailure::Truncated.into_io()),
                    };
                }
                Ok(n) => n,
                Err(e) => return Err(e),
            };
            let out = self.decrypt_in_place(buf, 0, got, 0)?;
            if out > 0 {
                // A full buffer of ciphertext, or plaintext that did not all fit: not drained.
                self.more_input = got == buf.len() || out == buf.len();
                return Ok(out);
            }
            if self.peer_closed {
                return Ok(0);
            }
            // No whole record yet (or only handshake messages). A short read drained the
            // socket: unless the poller reported a hang-up, the next data or the FIN raises a
            // new edge, so stop here rather than read again for a `WouldBlock` (one system call
            // per handshake flight). After a hang-up read on: the FIN may have come with the
            // partial record, and no further edge would report it.
            if self.short_read_ends && got < buf.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_pending()?;
        let take = data.len().min(TLS_WRITE_BATCH);
        let n = self.tls.writer().write(&data[..take])?;
        if n == 0 && take > 0 {
            // During the handshake rustls holds at most one batch of plaintext.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.unsent = n;
        match self.write_pending() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()
    }
}

impl Socket for TlsStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.close_notify_sent {
            self.close_notify_sent = true;
            self.tls.send_close_notify();
        }
        self.write_pending()?;
        self.inner.shutdown_write()
    }

    fn set_abortive_close(&mut self) -> io::Result<()> {
        self.inner.set_abortive_close()
    }

    fn pending_output(&self) -> usize {
        let prefix = self.prefix.len() - self.prefix_sent;
        let tls = if self.tls.wants_write() { self.unsent.max(1) } else { 0 };
        prefix + tls
    }

    fn may_have_more_input(&self) -> bool {
        self.more_input
    }

    fn set_short_read_ends(&mut self, ends: bool) {
        self.short_read_ends = ends;
    }
}

impl mio::event::Source for TlsStream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.inner.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.inner.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.inner.deregister(registry)
    }
}

impl StreamSocket for TlsStream {
    fn local_address(&self) -> Option<Address> {
        self.inner.local_address()
    }

    fn connect_progress(&self) -> ConnectProgress {
        self.inner.connect_progress()
    }

    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.inner.set_nodelay(on)
    }

    fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        self.inner.set_keepalive(idle)
    }

    fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.inner.peer_credentials()
    }

    fn tls(&self) -> Option<&TlsStream> {
        Some(self)
    }

    fn tls_mut(&mut self) -> Option<&mut TlsStream> {
        Some(self)
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
