//! Listening and accepting: binding a listener of any stream kind, the accept loop (batch limit,
//! per-connection errors skipped, resource exhaustion backed off with the reserve descriptor),
//! and handing each new connection to its factory.

use std::io;

use mio::Interest;
use torsion_transports::{AcceptOutcome, Address, BoxedStream, ListenerSocket, RESERVE_DRAIN_MAX};
use tracing::{debug, error, warn};

use crate::core::{token_of, Core, Internal, Listener, ListenerId, Phase, Source, SourceKey, TimerKind};
use crate::dispatch::{Owner, World};
use crate::handle::ReactorHandle;
use crate::protocol::Factory;
use crate::Error;

/// A listening port: its bound address and a way to stop it from anywhere.
#[derive(Debug, Clone)]
pub struct ListeningPort {
    pub(crate) id: ListenerId,
    pub(crate) local: Address,
    pub(crate) handle: ReactorHandle,
}

impl ListeningPort {
    /// The bound address (the real port when port 0 was asked for; `unix:/path` for a Unix
    /// socket).
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// The listener's id.
    pub fn id(&self) -> ListenerId {
        self.id
    }

    /// Stops listening (takes effect at the reactor's next turn); existing connections stay.
    /// A Unix socket's file is removed, if it is still the one this listener created.
    pub fn stop_listening(&self) {
        let id = self.id;
        self.handle.call_from_thread(move |cx| cx.stop_listening(id));
    }
}

impl Core {
    /// Registers a bound listening socket with its factory.
    pub(crate) fn add_listener(
        &mut self,
        socket: ListenerSocket,
        factory: Box<dyn Factory>,
    ) -> Result<(ListenerId, Address), Error> {
        if self.stopping {
            return Err(Error::Stopping);
        }
        let local = socket.local_address()?;
        let registry = &self.registry;
        let mut registered = Ok(());
        let key = self.sources.insert_with_key(|key| {
            let mut socket = socket;
            registered = registry.register(&mut socket, token_of(key), Interest::READABLE);
            Source::Listener(Listener {
                socket,
                factory: Some(factory),
                local: local.clone(),
                backing_off: false,
                exhaustion_logged: false,
                queued: false,
                tls: None,
            })
        });
        if let Err(e) = registered {
            self.sources.remove(key);
            return Err(Error::Register(e));
        }
        debug!(%local, "listening");
        Ok((ListenerId(key), local))
    }

    /// Stops a listener (a Unix socket's file goes with it, if still ours).
    pub(crate) fn stop_listening(&mut self, key: SourceKey) {
        match self.sources.get(key) {
            Some(Source::Listener(_)) => self.remove_source(key),
            Some(Source::Datagram(_)) => self.stop_datagram(key),
            _ => {}
        }
    }

    /// EMFILE and friends: log once, spend the reserved descriptor to accept-and-close the
    /// queued clients, and retry after a backoff (an edge-triggered listener would otherwise
    /// never get another event for clients already queued).
    fn accept_exhausted(&mut self, key: SourceKey, e: io::Error) {
        let backoff = self.config.accept_backoff;
        let deadline = self.clock.now() + backoff;
        let Some(Source::Listener(l)) = self.sources.get_mut(key) else { return };
        if !l.exhaustion_logged {
            l.exhaustion_logged = true;
            if torsion_transports::listener::is_resource_accept_error(&e) {
                warn!(error = %e, local = %l.local, "accept: out of resources; closing queued clients and backing off");
            } else {
                error!(error = %e, local = %l.local, "accept failed; backing off");
            }
        }
        let socket = &l.socket;
        if let Some(closed) = self.reserve.spend(|| socket.close_queued(RESERVE_DRAIN_MAX)) {
            debug!(closed, "accepted and closed queued clients with the reserved descriptor");
        }
        l.backing_off = true;
        self.timers.schedule(deadline, TimerKind::Internal(Internal::AcceptRetry(key)));
    }
}

impl World {
    /// Accepts until `WouldBlock`, the per-turn batch, or an error that says stop.
    pub(crate) fn accept(&mut self, key: SourceKey, read_buf: &mut [u8]) {
        for _ in 0..self.core.config.accepts_per_turn {
            match self.core.listener_mut(key) {
                Some(listener) if !listener.backing_off => {}
                _ => return,
            }
            // The test seam is asked only for accepts that would really happen.
            let injected = self.core.seams.as_mut().and_then(|seams| seams.accept_fault(key));
            let Some(listener) = self.core.listener_mut(key) else { return };
            let outcome = match injected {
                Some(e) => torsion_transports::listener::classify_accept_error(e),
                None => listener.socket.accept_one(),
            };
            match outcome {
                AcceptOutcome::Accepted(stream, peer) => {
                    listener.exhaustion_logged = false;
                    self.accepted(key, stream, peer, read_buf);
                }
                AcceptOutcome::WouldBlock => return,
                AcceptOutcome::Skip(e) => debug!(error = %e, "accept failed for one connection"),
                AcceptOutcome::Exhausted(e) => {
                    self.core.accept_exhausted(key, e);
                    return;
                }
            }
        }
        // Budget used up: more may be waiting, and no new edge will say so.
        self.core.requeue(key);
    }

    /// A graceful stop is starting: accept what is already queued on every listener (at most
    /// `shutdown_drain_max` each) before the listeners close, so that clients the kernel has
    /// completed handshakes with are served or closed cleanly instead of reset by the close
    /// (pingora#427, envoy#15818). The shutdown then closes them like every other connection.
    pub(crate) fn drain_listeners(&mut self, read_buf: &mut [u8]) {
        let keys: Vec<SourceKey> = self
            .core
            .sources
            .iter()
            .filter(|(_, s)| matches!(s, Source::Listener(l) if !l.backing_off))
            .map(|(k, _)| k)
            .collect();
        let max = self.core.config.shutdown_drain_max;
        for key in keys {
            let mut drained = 0;
            while drained < max {
                let Some(listener) = self.core.listener_mut(key) else { break };
                match listener.socket.accept_one() {
                    AcceptOutcome::Accepted(stream, peer) => {
                        drained += 1;
                        self.accepted(key, stream, peer, read_buf);
                    }
                    AcceptOutcome::Skip(_) => {}
                    AcceptOutcome::WouldBlock | AcceptOutcome::Exhausted(_) => break,
                }
            }
            if drained > 0 {
                debug!(drained, "accepted the queued clients of a closing listener");
            }
        }
    }

    /// A new connection: build its protocol, register it, `connection_made`, first read.
    fn accepted(&mut self, listener: SourceKey, stream: BoxedStream, peer: Address, read_buf: &mut [u8]) {
        if let Some(config) = self.core.listener_mut(listener).and_then(|l| l.tls.clone()) {
            let role = torsion_transports::TlsRole::Server(config);
            return self.accepted_tls(listener, stream, peer, role);
        }
        let Some(mut factory) = self.core.listener_mut(listener).and_then(|l| l.factory.take()) else {
            return;
        };
        let built =
            self.invoke(Owner::Loop, "Factory::build_protocol", |_| factory.build_protocol(peer.clone()));
        if let Some(l) = self.core.listener_mut(listener) {
            l.factory = Some(factory);
        }
        let Some(protocol) = built.flatten() else {
            debug!(%peer, "factory refused the connection (or panicked); closing it");
            return;
        };
        torsion_transports::apply_nodelay(stream.as_ref(), self.core.config.nodelay);
        // Our address is read when first asked for: no `getsockname` per accept.
        let key = match self.core.add_stream(stream, peer, std::cell::OnceCell::new(), Phase::Open) {
            Ok(key) => key,
            Err(e) => {
                error!(error = %e, "dropping an accepted connection");
                return;
            }
        };
        self.protocols.insert(key, protocol);
        self.call_protocol(key, "connection_made", |p, cx| p.connection_made(cx));
        // Data may already be waiting; the registration edge reports it too, but reading now
        // saves a turn.
        self.read(key, read_buf);
    }

    /// A new TLS connection: its handshake first; the protocol is built once it completed.
    fn accepted_tls(
        &mut self,
        listener: SourceKey,
        stream: BoxedStream,
        peer: Address,
        role: torsion_transports::TlsRole,
    ) {
        torsion_transports::apply_nodelay(stream.as_ref(), self.core.config.nodelay);
        let added = Core::wrap_tls(stream, &role)
            .and_then(|stream| self.core.add_stream(stream, peer, std::cell::OnceCell::new(), Phase::Open));
        let key = match added {
            Ok(key) => key,
            Err(e) => {
                error!(error = %e, "dropping an accepted TLS connection");
                return;
            }
        };
        self.core.begin_handshake(key, crate::tls::AfterHandshake::Server { listener });
        // No eager read here, unlike a plain accept: a ClientHello costs the handshake's
        // whole key exchange (a millisecond with P-384), and doing that inside the accept
        // batch would make every event already reported this turn (other clients' Finished
        // messages, their data) wait behind it. The registration's edge reports the
        // ClientHello, in its turn; and when it has not arrived yet, which is usual, this
        // saves a `recv` that would only say `EAGAIN`.
        self.settle();
    }
}
