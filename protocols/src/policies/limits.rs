//! Connection limits: Twisted's `LimitTotalConnectionsFactory` and `LimitConnectionsByPeer`
//! in one factory wrapper, [`LimitConnectionsFactory`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;

use bytes::Bytes;
use torsion_reactor::{Address, Ctx, DisconnectReason, Factory, Protocol, Wrapper};

/// Default cap on a [`LimitConnectionsFactory`]'s open connections: 10,000, half the
/// descriptor limit of the machines we run on (`ulimit -n` 20,000), so a flood cannot starve
/// the rest of the process of descriptors. Twisted's `LimitTotalConnectionsFactory` has no
/// default cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default cap on open connections from one peer IP address: 100. Twisted's
/// `LimitConnectionsByPeer` uses 5, which a single browser, a NAT gateway or a connection
/// pool exceeds in normal use; 100 still stops one host from taking the whole server.
pub const DEFAULT_MAX_PER_PEER: usize = 100;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
    refused: u64,
}

/// A read-only view of a [`LimitConnectionsFactory`]'s counters, for logging and tests.
#[derive(Clone, Default)]
pub struct ConnectionCounts(Rc<RefCell<Counts>>);

impl fmt::Debug for ConnectionCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.0.borrow();
        f.debug_struct("ConnectionCounts")
            .field("total", &counts.total)
            .field("peers", &counts.per_peer.len())
            .field("refused", &counts.refused)
            .finish()
    }
}

impl ConnectionCounts {
    /// Open connections counted against the limits.
    pub fn total(&self) -> usize {
        self.0.borrow().total
    }

    /// Open connections from `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn for_peer(&self, ip: IpAddr) -> usize {
        self.0.borrow().per_peer.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    /// Distinct peer addresses with open connections.
    pub fn peers(&self) -> usize {
        self.0.borrow().per_peer.len()
    }

    /// Connections refused so far for being over a limit.
    pub fn refused(&self) -> u64 {
        self.0.borrow().refused
    }
}

/// Limits a factory's open connections, in total and per peer IP address (Twisted's
/// `LimitTotalConnectionsFactory` and `LimitConnectionsByPeer`; the latter raises on every
/// connection in current Twisted, this one works).
///
/// - Limits default to [`DEFAULT_MAX_CONNECTIONS`] and [`DEFAULT_MAX_PER_PEER`]; each has a
///   setter, and `None` lifts it. IPv4-mapped IPv6 peers count as their IPv4 address.
/// - Unix socket peers have no IP address (and are usually unnamed): they count against the
///   total limit only, never a per-peer one.
/// - A connection over a limit is accepted and closed at once, cleanly: the peer reads the
///   optional [refusal message](Self::set_refusal_message) and then EOF (no reset), the
///   server logs one `info` line, and `connection_lost` reports
///   [`DisconnectReason::LimitExceeded`] saying which limit. The wrapped factory is not asked
///   to build anything for it.
/// - A connection is counted when the wrapped factory builds its protocol and released when
///   that protocol is dropped (after `connection_lost`, or if the reactor never starts it),
///   so counters cannot leak. A connection the wrapped factory refuses is not counted.
///
/// ```
/// use torsion_protocols::policies::LimitConnectionsFactory;
/// use torsion_protocols::Echo;
/// use torsion_reactor::testing::Harness;
/// use torsion_reactor::DisconnectReason;
///
/// let mut factory = LimitConnectionsFactory::new(|_| Some(Echo));
/// factory.set_max_connections(Some(1));
/// let counts = factory.counts();
///
/// let mut h = Harness::new();
/// let first = h.accept(&mut factory).unwrap();
/// let second = h.accept(&mut factory).unwrap();
/// assert!(matches!(h.disconnect_reason(second), Some(DisconnectReason::LimitExceeded(_))));
/// assert_eq!(counts.total(), 1);
/// h.feed_eof(first); // the peer closes: the slot is free again
/// assert_eq!(counts.total(), 0);
/// ```
#[doc(alias = "LimitConnectionsByPeer")]
#[doc(alias = "LimitTotalConnectionsFactory")]
pub struct LimitConnectionsFactory<F> {
    inner: F,
    max_total: Option<usize>,
    max_per_peer: Option<usize>,
    refusal: Option<Bytes>,
    counts: ConnectionCounts,
}

impl<F> fmt::Debug for LimitConnectionsFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitConnectionsFactory")
            .field("max_total", &self.max_total)
            .field("max_per_peer", &self.max_per_peer)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl<F> LimitConnectionsFactory<F> {
    /// Wraps `inner` with the default limits and no refusal message.
    pub fn new(inner: F) -> Self {
        LimitConnectionsFactory {
            inner,
            max_total: Some(DEFAULT_MAX_CONNECTIONS),
            max_per_peer: Some(DEFAULT_MAX_PER_PEER),
            refusal: None,
            counts: ConnectionCounts::default(),
        }
    }

    /// Caps open connections in total (`None`: no cap). Default [`DEFAULT_MAX_CONNECTIONS`].
    /// Lowering it closes nothing; new connections are refused until the count is below.
    pub fn set_max_connections(&mut self, max: Option<usize>) -> &mut Self {
        self.max_total = max;
        self
    }

    /// Caps open connections per peer IP address (`None`: no cap). Default
    /// [`DEFAULT_MAX_PER_PEER`].
    pub fn set_max_per_peer(&mut self, max: Option<usize>) -> &mut Self {
        self.max_per_peer = max;
        self
    }

    /// Bytes written to a refused peer before the close (say `"421 too many connections\r\n"`);
    /// none by default.
    pub fn set_refusal_message(&mut self, message: Option<Bytes>) -> &mut Self {
        self.refusal = message;
        self
    }

    /// Builder form of [`set_max_connections`](Self::set_max_connections), by value.
    pub fn with_max_connections(mut self, max: Option<usize>) -> Self {
        self.set_max_connections(max);
        self
    }

    /// Builder form of [`set_max_per_peer`](Self::set_max_per_peer), by value.
    pub fn with_max_per_peer(mut self, max: Option<usize>) -> Self {
        self.set_max_per_peer(max);
        self
    }

    /// Builder form of [`set_refusal_message`](Self::set_refusal_message), by value.
    pub fn with_refusal_message(mut self, message: Option<Bytes>) -> Self {
        self.set_refusal_message(message);
        self
    }

    /// The cap on open connections.
    pub fn max_connections(&self) -> Option<usize> {
        self.max_total
    }

    /// The cap on open connections per peer.
    pub fn max_per_peer(&self) -> Option<usize> {
        self.max_per_peer
    }

    /// A live view of the counters.
    pub fn counts(&self) -> ConnectionCounts {
        self.counts.clone()
    }

    /// The wrapped factory.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }

    /// Which limit a new connection from `ip` would break, if any.
    fn over_limit(&self, ip: Option<IpAddr>) -> Option<String> {
        let counts = self.counts.0.borrow();
        if let Some(max) = self.max_total.filter(|max| counts.total >= *max) {
            return Some(format!("too many connections (limit {max})"));
        }
        let ip = ip?;
        let from_peer = counts.per_peer.get(&ip).copied().unwrap_or(0);
        if let Some(max) = self.max_per_peer.filter(|max| from_peer >= *max) {
            return Some(format!("too many connections from {ip} (limit {max})"));
        }
        None
    }
}

impl<F: Factory> Factory for LimitConnectionsFactory<F> {
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        // Per-peer limits count Internet peers by IP; Unix peers (local processes, usually
        // unnamed) count against the total only.
        let ip = peer.inet().map(|a| a.ip().to_canonical());
        if let Some(reason) = self.over_limit(ip) {
            self.counts.0.borrow_mut().refused += 1;
            tracing::info!(%peer, %reason, "refusing connection");
            return Some(Box::new(Refused { reason: Some(reason), message: self.refusal.clone() }));
        }
        let inner = self.inner.build_protocol(peer)?;
        {
            let mut counts = self.counts.0.borrow_mut();
            counts.total += 1;
            if let Some(ip) = ip {
                *counts.per_peer.entry(ip).or_insert(0) += 1;
            }
        }
        let slot = Slot { counts: self.counts.clone(), ip };
        Some(Box::new(Limited { inner, _slot: slot }))
    }
    fn handshake_failed(&mut self, peer: Address, reason: &torsion_reactor::DisconnectReason) {
        self.inner.handshake_failed(peer, reason);
    }
}

/// One counted connection; releases its count when dropped.
struct Slot {
    counts: ConnectionCounts,
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.borrow_mut();
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = counts.per_peer.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.per_peer.remove(&ip);
                }
            }
        }
    }
}

/// A counted connection: the wrapped protocol plus its slot.
struct Limited {
    inner: Box<dyn Protocol>,
    _slot: Slot,
}

/// A pure wrapper: every callback is forwarded by [`Wrapper`]'s defaults.
impl Wrapper for Limited {
    type Inner = dyn Protocol;

    fn inner(&mut self) -> &mut dyn Protocol {
        &mut *self.inner
    }
}

/// The protocol of a refused connection: optional message, then a clean close.
struct Refused {
    reason: Option<String>,
    message: Option<Bytes>,
}

impl Protocol for Refused {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        if let Some(message) = self.message.take() {
            cx.transport().write_bytes(message);
        }
        let reason = self.reason.take().unwrap_or_default();
        cx.transport().lose_connection_with(DisconnectReason::LimitExceeded(reason));
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}
