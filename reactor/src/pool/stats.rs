//! Per-reactor counters: atomics written only by their reactor's thread (relaxed, on a
//! cache line no other thread writes), read from any thread. A wrapper around every protocol a
//! pool listener builds keeps them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use torsion_transports::Address;

use crate::ctx::Ctx;
use crate::protocol::{DisconnectReason, Factory, Protocol, Wrapper};

/// One reactor's counters at one moment, from [`PoolHandle::stats`](super::PoolHandle::stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReactorStats {
    /// The reactor's index in the pool.
    pub reactor: usize,
    /// Connections accepted through the pool's listeners since the start.
    pub accepted: u64,
    /// Of those, the ones still open.
    pub open: u64,
    /// Bytes received on them.
    pub bytes_received: u64,
    /// Bytes their protocols wrote (counted after each `data_received` and at
    /// `connection_lost`, so writes made from timers show up at the next of those).
    pub bytes_sent: u64,
    /// False once the reactor's thread has ended.
    pub alive: bool,
}

/// The live counters. Padded to its own cache line so that two reactors' counters never
/// share one (false sharing would put a cross-core transfer on every update).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct StatsCell {
    accepted: AtomicU64,
    closed: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    alive: AtomicBool,
}

impl StatsCell {
    pub(crate) fn new() -> StatsCell {
        StatsCell {
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            alive: AtomicBool::new(true),
        }
    }

    pub(crate) fn set_dead(&self) {
        self.alive.store(false, Ordering::Release);
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Open connections (for the least-loaded hand-off).
    pub(crate) fn open(&self) -> u64 {
        let closed = self.closed.load(Ordering::Relaxed);
        self.accepted.load(Ordering::Relaxed).saturating_sub(closed)
    }

    pub(crate) fn snapshot(&self, reactor: usize) -> ReactorStats {
        let closed = self.closed.load(Ordering::Relaxed);
        let accepted = self.accepted.load(Ordering::Relaxed);
        ReactorStats {
            reactor,
            accepted,
            open: accepted.saturating_sub(closed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            alive: self.is_alive(),
        }
    }
}

/// Wraps a pool listener's factory so that every protocol it builds is counted.
pub(crate) struct CountingFactory<F> {
    pub(crate) inner: F,
    pub(crate) stats: Arc<StatsCell>,
    /// For a hand-off listener: connections taken out of its queue (the least-loaded pick
    /// counts what is still queued as load).
    pub(crate) taken: Option<Arc<AtomicU64>>,
}

impl<F: Factory> Factory for CountingFactory<F> {
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        if let Some(taken) = &self.taken {
            taken.fetch_add(1, Ordering::Relaxed);
        }
        let inner = self.inner.build_protocol(peer)?;
        Some(Box::new(Counted { inner, stats: self.stats.clone(), sent: 0 }))
    }
}

/// A protocol with its reactor's counters.
struct Counted {
    inner: Box<dyn Protocol>,
    stats: Arc<StatsCell>,
    /// `bytes_written` already added to the counter.
    sent: u64,
}

impl Counted {
    fn count_sent(&mut self, cx: &mut Ctx<'_>) {
        let written = cx.transport().bytes_written();
        if written > self.sent {
            self.stats.bytes_sent.fetch_add(written - self.sent, Ordering::Relaxed);
            self.sent = written;
        }
    }
}

impl Wrapper for Counted {
    type Inner = dyn Protocol;

    fn inner(&mut self) -> &mut dyn Protocol {
        &mut *self.inner
    }

    fn on_connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.inner.connection_made(cx);
        self.count_sent(cx);
    }

    fn on_data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.stats.bytes_received.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.data_received(cx, data);
        self.count_sent(cx);
    }

    fn on_connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.count_sent(cx);
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        self.inner.connection_lost(cx, reason);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;
    use crate::testing::Harness;
    use crate::TimerId;

    /// Records which of its callbacks ran.
    struct Seen(Rc<RefCell<Vec<&'static str>>>);

    impl Protocol for Seen {
        fn connection_made(&mut self, cx: &mut Ctx<'_>) {
            self.0.borrow_mut().push("made");
            cx.set_timer(Duration::from_secs(1));
        }
        fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
            self.0.borrow_mut().push("data");
            cx.transport().write(&vec![b'x'; 100 * 1024]); // over the high watermark
            cx.transport().write(data);
        }
        fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
            self.0.borrow_mut().push("eof");
            false
        }
        fn connection_lost(&mut self, _cx: &mut Ctx<'_>, _reason: DisconnectReason) {
            self.0.borrow_mut().push("lost");
        }
        fn timer_fired(&mut self, _cx: &mut Ctx<'_>, _timer: TimerId) {
            self.0.borrow_mut().push("timer");
        }
        fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
            self.0.borrow_mut().push("pause");
        }
        fn resume_producing(&mut self, _cx: &mut Ctx<'_>) {
            self.0.borrow_mut().push("resume");
        }
    }

    /// The counting wrapper forwards every `Protocol` callback to the protocol it wraps, and
    /// counts the connection and its bytes.
    #[test]
    fn the_counting_wrapper_forwards_every_callback_and_counts() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let stats = Arc::new(StatsCell::new());
        let s = seen.clone();
        let mut factory =
            CountingFactory { inner: move |_peer| Some(Seen(s.clone())), stats: stats.clone(), taken: None };
        let mut h = Harness::new();
        let id = h.accept(&mut factory).expect("accepted");
        h.set_peer_window(id, Some(0));
        h.feed(id, b"hello");
        h.advance(Duration::from_secs(2));
        h.set_peer_window(id, None);
        assert_eq!(h.take_written(id).len(), 100 * 1024 + 5);
        h.feed_eof(id);
        h.close_peer(id);
        h.run();
        let seen = seen.borrow();
        for callback in ["made", "data", "eof", "lost", "timer", "pause", "resume"] {
            assert!(seen.contains(&callback), "{callback} was not forwarded: {seen:?}");
        }
        let snapshot = stats.snapshot(0);
        assert_eq!((snapshot.accepted, snapshot.open, snapshot.bytes_received), (1, 0, 5));
        assert_eq!(snapshot.bytes_sent, 100 * 1024 + 5);
    }
}
