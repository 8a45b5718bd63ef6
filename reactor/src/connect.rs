//! Outgoing connections: start a non-blocking connect of any stream kind, follow its progress
//! on events, build the protocol once it is established, or tell the factory it failed.

use std::time::Duration;

use slotmap::Key;
use torsion_transports::{start_stream_connect, Address, ConnectProgress, TlsRole, TransportError};
use tracing::debug;

use crate::core::{Conn, ConnId, Core, Internal, Phase, SourceKey, Task, TimerKind};
use crate::dispatch::{Owner, World};
use crate::protocol::ClientFactory;
use crate::timers::TimerId;
use crate::Error;

impl Core {
    /// Starts connecting to `addr`; the connection's timeout timer is its own. A connect that
    /// fails at once is reported to the factory like one that fails later; the id returned
    /// for it resolves to nothing.
    pub(crate) fn connect(
        &mut self,
        addr: Address,
        factory: Box<dyn ClientFactory>,
        timeout: Duration,
    ) -> Result<ConnId, Error> {
        self.connect_with(addr, None, factory, timeout, None)
    }

    /// [`connect`](Core::connect), from a local address when given (TCP only; Twisted's
    /// `bindAddress`), over TLS when `tls` is given.
    pub(crate) fn connect_with(
        &mut self,
        addr: Address,
        local: Option<std::net::IpAddr>,
        factory: Box<dyn ClientFactory>,
        timeout: Duration,
        tls: Option<TlsRole>,
    ) -> Result<ConnId, Error> {
        if self.stopping {
            return Err(Error::Stopping);
        }
        let started = match (&addr, local) {
            (Address::Inet(inet), Some(local)) => torsion_transports::tcp::start_connect_from(*inet, local)
                .map(|s| Box::new(s) as torsion_transports::BoxedStream),
            _ => start_stream_connect(&addr),
        };
        let stream = match started {
            Ok(stream) => stream,
            // The connect failed at once (a Unix socket with no listener, or a full backlog;
            // an unreachable network): like a refused TCP connect, that is the factory's
            // `client_connection_failed`, after the current callback, not an error here.
            Err(TransportError::Connect { source, .. } | TransportError::ConnectUnix { source, .. }) => {
                let mut factory = factory;
                self.tasks.push_back(Task::Call(Box::new(move |cx| {
                    factory.client_connection_failed(cx, Error::ConnectFailed { addr, source })
                })));
                return Ok(ConnId(SourceKey::null()));
            }
            Err(e) => return Err(e.into()),
        };
        let stream = match &tls {
            Some(role) => Core::wrap_tls(stream, role)?,
            None => stream,
        };
        let deadline = self.clock.now() + timeout;
        let phase = Phase::Connecting { factory: Some(factory), timeout: TimerId::placeholder() };
        let key = self.add_stream(stream, addr, std::cell::OnceCell::from(None), phase)?;
        let timer =
            self.timers.schedule(deadline, TimerKind::Internal(Internal::ConnectTimeout(key, timeout)));
        if let Some(Conn { phase: Phase::Connecting { timeout, .. }, timers, .. }) = self.conn_mut(key) {
            *timeout = timer;
            timers.push(timer);
        }
        Ok(ConnId(key))
    }
}

impl Core {
    /// Cancels a connect still in progress (Twisted's `stopConnecting`): the socket closes
    /// and the factory's `client_connection_failed` gets [`Error::ConnectCancelled`] after the
    /// current callback. Returns whether the connection was still connecting.
    pub(crate) fn cancel_connect(&mut self, key: SourceKey) -> bool {
        let Some(Conn { phase: Phase::Connecting { factory, timeout }, peer, .. }) = self.conn_mut(key)
        else {
            return false;
        };
        let (factory, timeout, addr) = (factory.take(), *timeout, peer.clone());
        self.timers.cancel(timeout);
        self.remove_source(key);
        if let Some(mut factory) = factory {
            self.tasks.push_back(Task::Call(Box::new(move |cx| {
                factory.client_connection_failed(cx, Error::ConnectCancelled { addr })
            })));
        }
        true
    }
}

impl World {
    /// An event on a connecting socket.
    pub(crate) fn connect_event(&mut self, key: SourceKey, read_buf: &mut [u8]) {
        let Some(io) = self.core.conn(key).and_then(|c| c.io.as_ref()) else { return };
        match io.connect_progress() {
            ConnectProgress::Pending => {}
            ConnectProgress::Failed(e) => {
                let addr = self.core.conn(key).map(|c| c.peer.clone()).expect("checked above");
                self.connect_failed(key, Error::ConnectFailed { addr, source: e });
            }
            ConnectProgress::Connected => self.connected(key, read_buf),
        }
    }

    /// The connect timed out.
    pub(crate) fn connect_timed_out(&mut self, key: SourceKey, timeout: Duration) {
        if let Some(conn) = self.core.conn(key) {
            let addr = conn.peer.clone();
            self.connect_failed(key, Error::ConnectTimeout { addr, timeout });
        }
    }

    fn connected(&mut self, key: SourceKey, read_buf: &mut [u8]) {
        let nodelay = self.core.config.nodelay;
        let Some(conn) = self.core.conn_mut(key) else { return };
        let Phase::Connecting { factory, timeout } = std::mem::replace(&mut conn.phase, Phase::Open) else {
            return;
        };
        let peer = conn.peer.clone();
        if let Some(io) = conn.io.as_mut() {
            conn.local = torsion_transports::establish(io.socket().as_ref(), nodelay).into();
            io.set_readable(false);
        }
        self.core.cancel_timer(timeout);
        let Some(mut factory) = factory else { return };
        debug!(%peer, "connected");
        if self.core.conn(key).and_then(|c| c.io.as_ref()).is_some_and(|io| io.socket().tls().is_some()) {
            // TLS: the protocol is built once the handshake completed.
            self.core.begin_handshake(key, crate::tls::AfterHandshake::Client { factory });
            self.core.update_interest(key);
            self.read(key, read_buf);
            self.settle();
            return;
        }
        // A panic is logged and aborts the connection with `Panicked`.
        let built =
            self.invoke(Owner::Conn(key), "ClientFactory::build_protocol", |_| factory.build_protocol(peer));
        if let Some(protocol) = built {
            self.protocols.insert(key, protocol);
            self.core.update_interest(key);
            self.call_protocol(key, "connection_made", |p, cx| p.connection_made(cx));
            self.read(key, read_buf);
        }
    }

    fn connect_failed(&mut self, key: SourceKey, reason: Error) {
        let factory = match self.core.conn_mut(key) {
            Some(Conn { phase: Phase::Connecting { factory, timeout }, .. }) => {
                let timeout = *timeout;
                let factory = factory.take();
                self.core.timers.cancel(timeout);
                factory
            }
            _ => return,
        };
        debug!(%reason, "connect failed");
        self.core.remove_source(key);
        if let Some(mut factory) = factory {
            self.call_loop("client_connection_failed", |cx| factory.client_connection_failed(cx, reason));
        }
    }
}
