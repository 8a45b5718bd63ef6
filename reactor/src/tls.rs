//! TLS connections: `listen_tls`, `connect_tls`, `start_tls`, the handshake phase and its
//! deadline, and the close timeout. TLS itself is a byte layer in the transports crate
//! ([`TlsStream`]); everything else about a TLS connection (write buffer, watermarks,
//! producers, half-close, timers, panics, shutdown) is the shared stream core's.
//!
//! # When callbacks run
//! A connection from [`Reactor::listen_tls`] gets its protocol built (`build_protocol`) and
//! `connection_made` only once its handshake completed, so the TLS accessors answer from the
//! first callback and a failed handshake never creates a protocol: it is reported to
//! [`Factory::handshake_failed`] (server side, logged once at `info`) or to
//! [`ClientFactory::client_connection_failed`] with [`Error::Tls`] (client side, where that
//! callback's default logs it once). On a live
//! connection, [`Transport::start_tls`] starts the handshake and
//! [`Protocol::handshake_completed`](crate::Protocol::handshake_completed) follows it; a failure
//! there is `connection_lost(DisconnectReason::Tls(..))`.
//!
//! # Deadlines
//! A handshake must finish within the handshake timeout (default 10 s,
//! [`Reactor::set_handshake_timeout`]): a peer that connects and sends nothing, or drips its
//! ClientHello, is closed then; meanwhile it costs no CPU (nothing is polled for it). A TLS
//! `lose_connection` (flush, `close_notify`, FIN) must finish within the close timeout
//! (default 30 s, [`Reactor::set_tls_close_timeout`]), else the connection is aborted with
//! `TimedOut`; the peer's `close_notify` is not waited for (TLS 1.3 does not require it).

use std::sync::Arc;
use std::time::Duration;

use torsion_transports::rustls::pki_types::ServerName;
use torsion_transports::rustls::{ClientConfig, ServerConfig};
use torsion_transports::{Address, BoxedStream, TlsFailure, TlsRole, TlsStream};
use tracing::{debug, info};

use crate::core::{ConnId, Core, Internal, SourceKey, Task, TimerKind};
use crate::dispatch::{Owner, World};
use crate::protocol::{ClientFactory, DisconnectReason, Factory};
use crate::timers::TimerId;
use crate::{Error, ListeningPort, LoopCtx, Reactor, Transport};

/// What follows a connection's handshake.
pub(crate) enum AfterHandshake {
    /// Accepted by a TLS listener: build the protocol with its factory.
    Server { listener: SourceKey },
    /// Connected by `connect_tls`: build the protocol with this factory.
    Client { factory: Box<dyn ClientFactory> },
    /// `start_tls` on a live connection: `handshake_completed`.
    Started,
}

/// A connection's handshake in progress.
pub(crate) struct Handshake {
    pub(crate) then: AfterHandshake,
    pub(crate) timer: TimerId,
}

impl Core {
    /// Wraps a stream in TLS for `role`.
    pub(crate) fn wrap_tls(stream: BoxedStream, role: &TlsRole) -> Result<BoxedStream, Error> {
        Ok(Box::new(TlsStream::new(stream, role, Vec::new()).map_err(Error::TlsSetup)?))
    }

    /// Starts the handshake phase of connection `key`: its deadline, and a flush of what rustls
    /// has to say first (a client's ClientHello).
    pub(crate) fn begin_handshake(&mut self, key: SourceKey, then: AfterHandshake) {
        let timeout = self.config.handshake_timeout;
        let deadline = self.clock.now() + timeout;
        let timer =
            self.timers.schedule(deadline, TimerKind::Internal(Internal::HandshakeTimeout(key, timeout)));
        if let Some(conn) = self.conn_mut(key) {
            conn.timers.push(timer);
            conn.handshake = Some(Box::new(Handshake { then, timer }));
        }
        self.mark_dirty(key);
    }

    /// A TLS `lose_connection`: abort if it has not finished within the close timeout.
    pub(crate) fn arm_tls_close_timeout(&mut self, key: SourceKey) {
        let is_tls =
            self.open_conn_ref(key).and_then(|c| c.io.as_ref()).is_some_and(|io| io.socket().tls().is_some());
        if !is_tls {
            return;
        }
        let deadline = self.clock.now() + self.config.tls_close_timeout;
        let timer = self.timers.schedule(deadline, TimerKind::Internal(Internal::TlsCloseTimeout(key)));
        if let Some(conn) = self.conn_mut(key) {
            conn.timers.push(timer);
        }
    }

    /// A connection in its handshake ended before it completed: log it once and tell whoever
    /// waits (the listener's factory, or the client factory). Called from `finish`.
    pub(crate) fn handshake_failed(
        &mut self,
        key: SourceKey,
        then: AfterHandshake,
        reason: &DisconnectReason,
    ) {
        let peer = self.conn(key).map(|c| c.peer.clone());
        let Some(peer) = peer else { return };
        match then {
            AfterHandshake::Started => {}
            AfterHandshake::Server { listener } => {
                info!(%peer, %reason, "TLS handshake failed");
                self.tasks.push_back(Task::HandshakeFailed(listener, peer, reason.clone()));
            }
            AfterHandshake::Client { mut factory } => {
                // Logged by `client_connection_failed` (its default logs at warn): once.
                debug!(%peer, %reason, "TLS handshake failed");
                let error = match reason.clone() {
                    DisconnectReason::Tls(source) => Error::Tls { addr: peer, source },
                    DisconnectReason::Lost(source) => Error::ConnectFailed { addr: peer, source },
                    _ if self.stopping => Error::Cancelled { addr: peer },
                    _ => Error::Tls { addr: peer, source: TlsFailure::ClosedDuringHandshake },
                };
                self.tasks
                    .push_back(Task::Call(Box::new(move |cx| factory.client_connection_failed(cx, error))));
            }
        }
    }

    /// `start_tls` on an open connection.
    pub(crate) fn start_tls(&mut self, key: SourceKey, role: TlsRole) -> Result<(), Error> {
        let Some(conn) = self.open_conn(key) else { return Err(Error::TlsAlreadyStarted) };
        let Some(io) = conn.io.take() else { return Err(Error::TlsAlreadyStarted) };
        if io.socket().tls().is_some() || io.is_closing() {
            conn.io = Some(io);
            return Err(Error::TlsAlreadyStarted);
        }
        let session = match role.start() {
            Ok(session) => session,
            Err(e) => {
                conn.io = Some(io);
                return Err(Error::TlsSetup(e));
            }
        };
        // The plaintext still buffered goes out first, ahead of the handshake.
        let Ok(mut io) = io.wrap_socket(|socket, prefix| -> Result<BoxedStream, std::convert::Infallible> {
            Ok(Box::new(TlsStream::with_session(socket, session, prefix)))
        });
        // Input already in the kernel is the peer's handshake now.
        io.set_readable(false);
        if let Some(conn) = self.open_conn(key) {
            conn.io = Some(io);
        }
        self.begin_handshake(key, AfterHandshake::Started);
        self.requeue(key);
        Ok(())
    }
}

impl World {
    /// The handshake of connection `key` completed: build its protocol and `connection_made`,
    /// or `handshake_completed` after `start_tls`.
    pub(crate) fn handshake_done(&mut self, key: SourceKey) {
        let Some(conn) = self.core.conn_mut(key) else { return };
        let Some(handshake) = conn.handshake.take() else { return };
        let peer = conn.peer.clone();
        conn.timers.retain(|t| *t != handshake.timer);
        if let Some(io) = conn.io.as_mut() {
            // Plaintext held back during the handshake can go now.
            io.set_writable();
            if let Some(tls) = io.socket().tls() {
                debug!(
                    version = ?tls.protocol_version(),
                    suite = ?tls.cipher_suite().map(|s| s.suite()),
                    alpn = ?tls.alpn_protocol().map(String::from_utf8_lossy),
                    sni = ?tls.server_name(),
                    "TLS handshake completed"
                );
            }
        }
        self.core.timers.cancel(handshake.timer);
        self.core.mark_dirty(key);
        match handshake.then {
            AfterHandshake::Started => {
                self.call_protocol(key, "handshake_completed", |p, cx| p.handshake_completed(cx));
            }
            AfterHandshake::Client { mut factory } => {
                let built = self.invoke(Owner::Conn(key), "ClientFactory::build_protocol", |_| {
                    factory.build_protocol(peer)
                });
                if let Some(protocol) = built {
                    self.protocols.insert(key, protocol);
                    self.core.update_interest(key);
                    self.call_protocol(key, "connection_made", |p, cx| p.connection_made(cx));
                }
            }
            AfterHandshake::Server { listener } => {
                let factory = self.core.listener_mut(listener).and_then(|l| l.factory.take());
                let Some(mut factory) = factory else {
                    debug!(%peer, "the TLS listener stopped during the handshake; closing");
                    self.core.abort_with(key, DisconnectReason::Aborted);
                    self.settle();
                    return;
                };
                let built = self
                    .invoke(Owner::Loop, "Factory::build_protocol", |_| factory.build_protocol(peer.clone()));
                if let Some(l) = self.core.listener_mut(listener) {
                    l.factory = Some(factory);
                }
                match built.flatten() {
                    Some(protocol) => {
                        self.protocols.insert(key, protocol);
                        self.call_protocol(key, "connection_made", |p, cx| p.connection_made(cx));
                    }
                    None => {
                        debug!(%peer, "factory refused the connection (or panicked); closing it");
                        if let Some(io) = self.core.open_conn(key).and_then(|c| c.io.as_mut()) {
                            io.lose_connection();
                        }
                        self.core.mark_dirty(key);
                        self.settle();
                    }
                }
            }
        }
    }

    /// The handshake deadline passed.
    pub(crate) fn handshake_timed_out(&mut self, key: SourceKey, timeout: Duration) {
        if self.core.conn(key).is_some_and(|c| c.handshake.is_some()) {
            debug!(?timeout, "TLS handshake deadline passed");
            self.core.abort_with(key, DisconnectReason::Tls(TlsFailure::HandshakeTimeout(timeout)));
            self.settle();
        }
    }

    /// A TLS close did not finish in time.
    pub(crate) fn tls_close_timed_out(&mut self, key: SourceKey) {
        if self.core.open_conn(key).is_some() {
            debug!("TLS close timed out; aborting");
            self.core.abort_with(key, DisconnectReason::TimedOut);
            self.settle();
        }
    }

    /// Tells a TLS listener's factory that a handshake failed.
    pub(crate) fn deliver_handshake_failed(
        &mut self,
        listener: SourceKey,
        peer: Address,
        reason: DisconnectReason,
    ) {
        let Some(mut factory) = self.core.listener_mut(listener).and_then(|l| l.factory.take()) else {
            return;
        };
        self.invoke(Owner::Loop, "Factory::handshake_failed", |_| factory.handshake_failed(peer, &reason));
        if let Some(l) = self.core.listener_mut(listener) {
            l.factory = Some(factory);
        }
    }
}

impl Reactor {
    /// Listens on a TCP or Unix address for TLS connections. Each connection's handshake runs
    /// first; then `build_protocol`, then `connection_made` (see the [module docs](crate::tls)).
    pub fn listen_tls(
        &mut self,
        addr: &Address,
        config: Arc<ServerConfig>,
        factory: impl Factory,
    ) -> Result<ListeningPort, Error> {
        let port = self.listen(addr, factory)?;
        self.serve_tls_on(&port, config);
        Ok(port)
    }

    /// Connects to a TCP or Unix address over TLS, verifying the server as `server_name`. The
    /// factory builds the protocol once the handshake completed, or hears
    /// `client_connection_failed` ([`Error::Tls`] for a handshake failure).
    pub fn connect_tls(
        &mut self,
        addr: impl Into<Address>,
        server_name: ServerName<'static>,
        config: Arc<ClientConfig>,
        factory: impl ClientFactory,
    ) -> Result<ConnId, Error> {
        let timeout = self.world.core.config.connect_timeout;
        let role = TlsRole::Client(config, server_name);
        self.world.core.connect_with(addr.into(), None, Box::new(factory), timeout, Some(role))
    }

    /// Makes a listener just opened serve TLS with `config`.
    pub(crate) fn serve_tls_on(&mut self, port: &ListeningPort, config: Arc<ServerConfig>) {
        if let Some(l) = self.world.core.listener_mut(port.id.0) {
            l.tls = Some(config);
        }
    }

    /// Sets how long a TLS handshake may take (default 10 s).
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.world.core.config.handshake_timeout = timeout;
    }

    /// Sets how long a TLS `lose_connection` may take before the connection is aborted
    /// (default 30 s).
    pub fn set_tls_close_timeout(&mut self, timeout: Duration) {
        self.world.core.config.tls_close_timeout = timeout;
    }
}

impl LoopCtx<'_> {
    /// [`Reactor::connect_tls`] from a callback.
    pub fn connect_tls(
        &mut self,
        addr: impl Into<Address>,
        server_name: ServerName<'static>,
        config: Arc<ClientConfig>,
        factory: impl ClientFactory,
    ) -> Result<ConnId, Error> {
        let timeout = self.core.config.connect_timeout;
        let role = TlsRole::Client(config, server_name);
        self.core.connect_with(addr.into(), None, Box::new(factory), timeout, Some(role))
    }
}

impl Transport<'_> {
    /// The TLS layer of this connection, if it has one: negotiated ALPN protocol, SNI name,
    /// version, cipher suite, peer certificates ([`TlsStream`]'s accessors).
    pub fn tls(&self) -> Option<&TlsStream> {
        self.io_ref()?.socket().tls()
    }

    /// Starts TLS on this live connection (STARTTLS), as server or client.
    ///
    /// - Bytes written before this call go out first, in plaintext.
    /// - Bytes still unread in the kernel are the peer's handshake: plaintext the peer
    ///   pipelined after its STARTTLS command fails the handshake (an alert, then
    ///   `connection_lost(DisconnectReason::Tls(TlsFailure::Handshake(..)))`) and is never
    ///   delivered, let alone as if it were protected. What the protocol already received (the
    ///   rest of the current `data_received` slice) is the protocol's to discard.
    /// - Writes made after this call are encrypted; they wait in the write buffer while the
    ///   handshake runs. [`Protocol::handshake_completed`](crate::Protocol::handshake_completed)
    ///   follows a successful handshake.
    pub fn start_tls(&mut self, role: TlsRole) -> Result<(), Error> {
        self.core.start_tls(self.key, role)
    }
}
