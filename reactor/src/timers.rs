//! The timer queue: a binary heap ordered by (deadline, sequence) over a generational slot map.
//! Cancel removes the slot and leaves the heap entry to be skipped lazily; reset gives the timer
//! a new sequence number and pushes a fresh entry. The heap is rebuilt when stale entries
//! outnumber live ones, so cancel-heavy workloads stay O(log n) in time and O(n) in memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use slotmap::SlotMap;

use crate::reactor::{Ctx, SourceKey};

slotmap::new_key_type! {
    /// Slot key of a timer.
    pub(crate) struct TimerKey;
}

/// A timer's identity: generational, so a fired or cancelled timer's id never matches a newer
/// timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub(crate) TimerKey);

/// A one-shot callback for the reactor-level `call_later`.
pub(crate) type TimerFn = Box<dyn FnOnce(&mut Ctx<'_>)>;
/// A repeating callback for `looping_call`.
pub(crate) type LoopFn = Box<dyn FnMut(&mut Ctx<'_>)>;

/// What a timer does when it fires.
pub(crate) enum TimerKind {
    /// `timer_fired` on the owning connection's protocol.
    Protocol(SourceKey),
    /// A reactor-level one-shot callback.
    Call(TimerFn),
    /// A looping call; `None` while the callback is running.
    Looping { interval: Duration, f: Option<LoopFn> },
    /// The reactor's own bookkeeping.
    Internal(Internal),
}

/// The reactor's own timers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Internal {
    ConnectTimeout(SourceKey, Duration),
    AcceptRetry(SourceKey),
    LingerTimeout(SourceKey),
    ShutdownDeadline,
}

pub(crate) struct Timer {
    pub(crate) deadline: Instant,
    seq: u64,
    pub(crate) kind: TimerKind,
}

/// The queue of pending timers.
#[derive(Default)]
pub(crate) struct Timers {
    slots: SlotMap<TimerKey, Timer>,
    heap: BinaryHeap<Reverse<(Instant, u64, TimerKey)>>,
    next_seq: u64,
}

impl fmt::Debug for Timers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timers").field("pending", &self.slots.len()).finish()
    }
}

impl Timers {
    /// Number of live timers.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The sequence number the next scheduled timer will get. Timers with a smaller sequence
    /// existed before this point.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub(crate) fn schedule(&mut self, deadline: Instant, kind: TimerKind) -> TimerId {
        let seq = self.bump();
        let key = self.slots.insert(Timer { deadline, seq, kind });
        self.heap.push(Reverse((deadline, seq, key)));
        TimerId(key)
    }

    fn bump(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Cancels a timer; false if it already fired or was cancelled.
    pub(crate) fn cancel(&mut self, id: TimerId) -> bool {
        let removed = self.slots.remove(id.0).is_some();
        if removed {
            self.maybe_compact();
        }
        removed
    }

    /// Moves a pending timer's deadline; false if it already fired or was cancelled.
    pub(crate) fn reset(&mut self, id: TimerId, deadline: Instant) -> bool {
        let seq = self.bump();
        match self.slots.get_mut(id.0) {
            Some(timer) => {
                timer.deadline = deadline;
                timer.seq = seq;
                self.heap.push(Reverse((deadline, seq, id.0)));
                self.maybe_compact();
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_active(&self, id: TimerId) -> bool {
        self.slots.contains_key(id.0)
    }

    pub(crate) fn get_mut(&mut self, id: TimerId) -> Option<&mut Timer> {
        self.slots.get_mut(id.0)
    }

    /// Re-arms a looping timer at `deadline` with a fresh sequence number.
    pub(crate) fn rearm(&mut self, id: TimerId, deadline: Instant, f: LoopFn) {
        let seq = self.bump();
        if let Some(timer) = self.slots.get_mut(id.0) {
            timer.deadline = deadline;
            timer.seq = seq;
            if let TimerKind::Looping { f: slot, .. } = &mut timer.kind {
                *slot = Some(f);
            }
            self.heap.push(Reverse((deadline, seq, id.0)));
        }
    }

    /// Drops heap entries that no longer match a live timer.
    fn skip_stale(&mut self) {
        while let Some(Reverse((_, seq, key))) = self.heap.peek() {
            match self.slots.get(*key) {
                Some(timer) if timer.seq == *seq => return,
                _ => {
                    self.heap.pop();
                }
            }
        }
    }

    fn maybe_compact(&mut self) {
        if self.heap.len() > 64 && self.heap.len() > 2 * self.slots.len() {
            self.heap = self.slots.iter().map(|(k, t)| Reverse((t.deadline, t.seq, k))).collect();
        }
    }

    /// The earliest deadline of a live timer.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_stale();
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// The next timer due at `now` that was scheduled before sequence `limit`. One-shot timers
    /// are removed; a looping timer stays in place (with its callback taken out) so its id stays
    /// valid while it runs.
    pub(crate) fn pop_due(&mut self, now: Instant, limit: u64) -> Option<(TimerId, TimerKind)> {
        loop {
            self.skip_stale();
            let Reverse((deadline, seq, key)) = *self.heap.peek()?;
            if deadline > now || seq >= limit {
                return None;
            }
            self.heap.pop();
            let id = TimerId(key);
            if let Some(Timer { kind: TimerKind::Looping { interval, f }, .. }) = self.slots.get_mut(key) {
                let Some(f) = f.take() else { continue };
                return Some((id, TimerKind::Looping { interval: *interval, f: Some(f) }));
            }
            let timer = self.slots.remove(key)?;
            return Some((id, timer.kind));
        }
    }

    /// Cancels every timer owned by a connection's protocol or bookkeeping.
    pub(crate) fn cancel_all(&mut self, ids: &[TimerId]) {
        for id in ids {
            self.slots.remove(id.0);
        }
        self.maybe_compact();
    }
}

/// The next deadline of a looping call whose previous deadline was `last`: one interval later,
/// or, if that is already in the past, the first interval boundary after `now` (missed
/// intervals are skipped, never run in a burst).
pub(crate) fn next_loop_deadline(last: Instant, interval: Duration, now: Instant) -> Instant {
    let next = last + interval;
    if next > now || interval.is_zero() {
        return next.max(now);
    }
    let behind = now.duration_since(last).as_nanos();
    let step = interval.as_nanos();
    let intervals = behind / step + 1;
    last + Duration::from_nanos((step * intervals).min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_loop_skips_missed_intervals() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(next_loop_deadline(t0, s, t0), t0 + s);
        assert_eq!(next_loop_deadline(t0, s, t0 + Duration::from_millis(3500)), t0 + 4 * s);
        assert_eq!(next_loop_deadline(t0, s, t0 + 3 * s), t0 + 4 * s);
    }

    #[test]
    fn cancel_and_reset_keep_order() {
        let mut timers = Timers::default();
        let t0 = Instant::now();
        let a = timers.schedule(t0 + Duration::from_secs(1), TimerKind::Internal(Internal::ShutdownDeadline));
        let b = timers.schedule(t0 + Duration::from_secs(1), TimerKind::Internal(Internal::ShutdownDeadline));
        let c = timers.schedule(t0 + Duration::from_secs(2), TimerKind::Internal(Internal::ShutdownDeadline));
        assert!(timers.reset(a, t0 + Duration::from_secs(3)));
        assert!(timers.cancel(c));
        assert!(!timers.cancel(c));
        let limit = timers.next_seq();
        let later = t0 + Duration::from_secs(10);
        assert_eq!(timers.pop_due(later, limit).map(|(id, _)| id), Some(b));
        assert_eq!(timers.pop_due(later, limit).map(|(id, _)| id), Some(a));
        assert!(timers.pop_due(later, limit).is_none());
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn heap_compacts_under_cancel_churn() {
        let mut timers = Timers::default();
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            let id = timers
                .schedule(t0 + Duration::from_millis(i), TimerKind::Internal(Internal::ShutdownDeadline));
            timers.cancel(id);
        }
        assert!(timers.heap.len() <= 130, "heap kept {} stale entries", timers.heap.len());
    }
}
