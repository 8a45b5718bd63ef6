//! A port forwarder (Twisted's `portforward`): the protocols behind the `proxy` binary,
//! public so that tests can run the proxy in-process and watch its buffers. Either side may be
//! TCP or a Unix socket: the target is an [`Address`], and the listener is whatever the
//! factory is given to.
//!
//! # The idea: producer/consumer across two connections
//! Each accepted client gets a second, outbound connection to the target (the *backend*).
//! Bytes read on one side are written to the other with `cx.transport_for(peer)`. The two
//! connections are then registered as each other's push producer:
//!
//! ```text
//!   client ──data_received──▶ backend.write()    backend's buffer > high ⇒ pause reading client
//!   client ◀──write()──────── backend             client's buffer > high  ⇒ pause reading backend
//! ```
//!
//! When the backend reads slowly, its transport's write buffer fills, crosses the high
//! watermark, and the reactor pauses reading on the *client* connection; the kernel's buffers
//! fill and TCP pushes back on the client. When the backend catches up (buffer at or below the
//! low watermark) the client is resumed. The same holds in the other direction. There is no
//! flow-control code here beyond the two `register_producer` calls, and memory stays bounded:
//! each direction buffers at most the high watermark plus one read.
//!
//! # Closing
//! * A FIN on one side is forwarded as `write_eof` on the other, after every byte before it
//!   (`eof_received` returns `true`, so the write side stays open for the other direction).
//!   The pair ends when both directions are closed.
//! * An abort or reset on one side (a `connection_lost` that is not clean) aborts the other.
//! * Failing to reach the backend closes the client.
//!
//! ```no_run
//! use torsion_examples::proxy::Proxy;
//! use torsion_reactor::{Address, Reactor};
//!
//! let mut reactor = Reactor::new().unwrap();
//! let target: Address = "127.0.0.1:8000".parse().unwrap(); // or "unix:/run/app.sock"
//! let proxy = Proxy::new(target);
//! let stats = proxy.stats();
//! let port = reactor.listen(&"unix:/tmp/proxy.sock".parse().unwrap(), proxy).unwrap();
//! println!("forwarding {} to 127.0.0.1:8000", port.local_addr());
//! reactor.run().unwrap();
//! println!("largest buffer seen: {} bytes", stats.max_buffered());
//! ```

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use torsion_reactor::rustls::pki_types::ServerName;
use torsion_reactor::rustls::ClientConfig;

use torsion_reactor::{
    Address, ClientFactory, ConnId, Ctx, DisconnectReason, Error, Factory, LoopCtx, Protocol,
};
use tracing::{debug, info, warn};

/// The proxy's [`Factory`]: builds a [`ClientSide`] protocol for each accepted connection,
/// which connects to `target`.
#[derive(Debug)]
pub struct Proxy {
    target: Address,
    target_tls: Option<TargetTls>,
    stats: ProxyStats,
}

/// TLS to the target: the client configuration and the name to verify the target as.
type TargetTls = (Arc<ClientConfig>, ServerName<'static>);

impl Proxy {
    /// A proxy forwarding every accepted connection to `target`.
    pub fn new(target: impl Into<Address>) -> Proxy {
        Proxy { target: target.into(), target_tls: None, stats: ProxyStats::default() }
    }

    /// Connects to the target over TLS, verifying it as `server_name`.
    pub fn with_target_tls(mut self, config: Arc<ClientConfig>, server_name: ServerName<'static>) -> Proxy {
        self.target_tls = Some((config, server_name));
        self
    }

    /// A handle on the proxy's statistics, shared with every protocol it builds.
    pub fn stats(&self) -> ProxyStats {
        self.stats.clone()
    }
}

impl Factory for Proxy {
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        debug!(%peer, "accepted a client");
        Some(Box::new(ClientSide {
            target: self.target.clone(),
            target_tls: self.target_tls.clone(),
            backend: None,
            stats: self.stats.clone(),
        }))
    }
}

/// Which way bytes flow through a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToBackend,
    ToClient,
}

#[derive(Default)]
struct StatsInner {
    max_to_backend: Cell<usize>,
    max_to_client: Cell<usize>,
    pairs: Cell<u64>,
    live: RefCell<Vec<ConnId>>,
}

/// What the proxy has seen, for tests and curious operators: the largest write buffer after
/// any write, per direction, the number of client/backend pairs linked, and the connections
/// alive now. Cheap to clone (it is shared); single-threaded like the reactor.
#[derive(Clone, Default)]
pub struct ProxyStats {
    inner: Rc<StatsInner>,
}

impl fmt::Debug for ProxyStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyStats")
            .field("max_to_backend", &self.max_to_backend())
            .field("max_to_client", &self.max_to_client())
            .field("pairs", &self.pairs())
            .field("live", &self.live_connections().len())
            .finish()
    }
}

impl ProxyStats {
    /// The most bytes ever waiting in a backend connection's write buffer (client → backend),
    /// sampled right after each write.
    pub fn max_to_backend(&self) -> usize {
        self.inner.max_to_backend.get()
    }

    /// The most bytes ever waiting in a client connection's write buffer (backend → client).
    pub fn max_to_client(&self) -> usize {
        self.inner.max_to_client.get()
    }

    /// The larger of [`max_to_backend`](Self::max_to_backend) and
    /// [`max_to_client`](Self::max_to_client).
    pub fn max_buffered(&self) -> usize {
        self.max_to_backend().max(self.max_to_client())
    }

    /// How many client/backend pairs were linked (backend connected) so far.
    pub fn pairs(&self) -> u64 {
        self.inner.pairs.get()
    }

    /// The proxy's connections (both sides) whose protocol is alive now.
    pub fn live_connections(&self) -> Vec<ConnId> {
        self.inner.live.borrow().clone()
    }

    fn record(&self, direction: Direction, buffered: usize) {
        let max = match direction {
            Direction::ToBackend => &self.inner.max_to_backend,
            Direction::ToClient => &self.inner.max_to_client,
        };
        max.set(max.get().max(buffered));
    }

    fn born(&self, id: ConnId) {
        self.inner.live.borrow_mut().push(id);
    }

    fn died(&self, id: ConnId) {
        self.inner.live.borrow_mut().retain(|c| *c != id);
    }
}

/// Writes `data` to `peer` and records how full its buffer got. Returns false if the peer is
/// gone (its `connection_lost` will close this side).
fn forward(cx: &mut Ctx<'_>, peer: ConnId, data: &[u8], stats: &ProxyStats, direction: Direction) -> bool {
    let Some(mut transport) = cx.transport_for(peer) else { return false };
    // The return value (above the high watermark?) needs no handling: the reactor pauses
    // reading on this connection, the peer's registered producer.
    transport.write(data);
    stats.record(direction, transport.write_buffer_len());
    true
}

/// The peer half-closed: forward the FIN after everything written before it. Returns whether
/// to keep this side's write half open (it is still needed for the other direction).
fn forward_eof(cx: &mut Ctx<'_>, peer: Option<ConnId>) -> bool {
    match peer.and_then(|p| cx.transport_for(p)) {
        Some(mut transport) => {
            transport.write_eof();
            true
        }
        None => false,
    }
}

/// This side is over: a clean end closes the peer cleanly (flushing), anything else aborts it.
fn end_peer(cx: &mut Ctx<'_>, peer: Option<ConnId>, reason: &DisconnectReason) {
    let Some(mut transport) = peer.and_then(|p| cx.transport_for(p)) else { return };
    if reason.is_clean() {
        transport.lose_connection();
    } else {
        transport.abort_connection();
    }
}

/// The protocol of an accepted client connection: connects to the backend and forwards bytes
/// and FINs to it once linked.
#[derive(Debug)]
pub struct ClientSide {
    target: Address,
    target_tls: Option<TargetTls>,
    /// The backend connection, once `connect` has started it.
    backend: Option<ConnId>,
    stats: ProxyStats,
}

impl Protocol for ClientSide {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.stats.born(cx.conn_id());
        // Read nothing until there is somewhere to put it: the backend links us and resumes.
        cx.transport().pause_reading();
        let connector = BackendConnector { client: cx.conn_id(), stats: self.stats.clone() };
        let started = match &self.target_tls {
            Some((config, name)) => {
                cx.connect_tls(self.target.clone(), name.clone(), config.clone(), connector)
            }
            None => cx.connect(self.target.clone(), connector),
        };
        match started {
            Ok(backend) => self.backend = Some(backend),
            Err(error) => {
                warn!(target_addr = %self.target, %error, "cannot connect to the backend; closing the client");
                cx.transport().lose_connection();
            }
        }
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if let Some(backend) = self.backend {
            forward(cx, backend, data, &self.stats, Direction::ToBackend);
        }
    }

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        debug!("client half-closed; forwarding the FIN to the backend");
        forward_eof(cx, self.backend)
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        debug!(%reason, "client connection ended");
        self.stats.died(cx.conn_id());
        end_peer(cx, self.backend, &reason);
    }
}

/// Builds the [`BackendSide`] once the outbound connection is up; closes the client if it
/// cannot be made.
#[derive(Debug)]
struct BackendConnector {
    client: ConnId,
    stats: ProxyStats,
}

impl ClientFactory for BackendConnector {
    fn build_protocol(&mut self, _peer: Address) -> Box<dyn Protocol> {
        Box::new(BackendSide { client: self.client, stats: self.stats.clone() })
    }

    fn client_connection_failed(&mut self, cx: &mut LoopCtx<'_>, reason: Error) {
        info!(%reason, "backend connection failed; closing the client");
        if let Some(mut client) = cx.transport_for(self.client) {
            client.lose_connection();
        }
    }
}

/// The protocol of the outbound connection to the backend: links the pair when connected,
/// then forwards bytes and FINs to the client.
#[derive(Debug)]
pub struct BackendSide {
    client: ConnId,
    stats: ProxyStats,
}

impl Protocol for BackendSide {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let backend = cx.conn_id();
        self.stats.born(backend);
        let Some(mut client) = cx.transport_for(self.client) else {
            debug!("the client left before the backend answered");
            cx.transport().lose_connection();
            return;
        };
        // The whole of flow control: each connection produces the other's output, so a full
        // buffer on one side pauses reading on the other.
        let linked = client.register_producer(backend, true);
        if linked.is_ok() {
            // There is somewhere to put the client's bytes now.
            client.resume_reading();
        }
        let linked = linked.and_then(|()| cx.transport().register_producer(self.client, true));
        match linked {
            Ok(()) => {
                self.stats.inner.pairs.set(self.stats.pairs() + 1);
                debug!("backend connected; forwarding");
            }
            Err(error) => {
                warn!(%error, "cannot link the connections; aborting both");
                cx.transport().abort_connection();
            }
        }
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        forward(cx, self.client, data, &self.stats, Direction::ToClient);
    }

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        debug!("backend half-closed; forwarding the FIN to the client");
        forward_eof(cx, Some(self.client))
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        debug!(%reason, "backend connection ended");
        self.stats.died(cx.conn_id());
        end_peer(cx, Some(self.client), &reason);
    }
}
