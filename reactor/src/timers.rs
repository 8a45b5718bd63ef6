//! The timer queue: a binary heap ordered by (deadline, sequence) over a generational slot map,
//! generic over what a timer carries, so it knows nothing of the rest of the reactor.
//!
//! Cancel removes the slot and leaves the heap entry to be skipped lazily; reset gives the
//! timer a new sequence number and pushes a fresh entry. The heap is rebuilt when stale
//! entries outnumber live ones, so cancel-heavy workloads stay O(log n) in time and O(n) in
//! memory. A due timer is popped from the heap but stays live until its owner takes it
//! ([`Timers::take`]) or re-arms it ([`Timers::rearm`]), so a repeating timer keeps its id
//! while its callback runs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use slotmap::SlotMap;

slotmap::new_key_type! {
    /// Slot key of a timer.
    struct TimerKey;
}

/// A timer's identity: generational, so a fired or cancelled timer's id never matches a newer
/// timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(TimerKey);

impl TimerId {
    /// An id that names no timer: a slot to fill once the real timer is scheduled.
    pub(crate) fn placeholder() -> TimerId {
        TimerId(TimerKey::default())
    }
}

/// The sequence number of a timer that fired and was not re-armed: in no heap entry.
const FIRED: u64 = u64::MAX;

struct Timer<T> {
    deadline: Instant,
    seq: u64,
    payload: T,
}

/// The queue of pending timers, each carrying a `T`.
pub(crate) struct Timers<T> {
    slots: SlotMap<TimerKey, Timer<T>>,
    heap: BinaryHeap<Reverse<(Instant, u64, TimerKey)>>,
    next_seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers { slots: SlotMap::with_key(), heap: BinaryHeap::new(), next_seq: 0 }
    }
}

impl<T> fmt::Debug for Timers<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timers").field("pending", &self.slots.len()).finish()
    }
}

impl<T> Timers<T> {
    /// Number of live timers.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The sequence number the next scheduled timer will get. Timers with a smaller sequence
    /// existed before this point.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Schedules `payload` at `deadline`.
    pub(crate) fn schedule(&mut self, deadline: Instant, payload: T) -> TimerId {
        let seq = self.bump();
        let key = self.slots.insert(Timer { deadline, seq, payload });
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

    /// Moves a live timer's deadline (re-arming it if it fired); false if it is gone.
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

    /// Re-arms a timer that fired (a repeating one) at `deadline`.
    pub(crate) fn rearm(&mut self, id: TimerId, deadline: Instant) -> bool {
        self.reset(id, deadline)
    }

    /// True while a timer is live (pending, or fired and not yet taken).
    pub(crate) fn is_active(&self, id: TimerId) -> bool {
        self.slots.contains_key(id.0)
    }

    /// A live timer's payload.
    pub(crate) fn get_mut(&mut self, id: TimerId) -> Option<&mut T> {
        self.slots.get_mut(id.0).map(|t| &mut t.payload)
    }

    /// A live timer's deadline.
    pub(crate) fn deadline(&self, id: TimerId) -> Option<Instant> {
        self.slots.get(id.0).map(|t| t.deadline)
    }

    /// Removes a timer, returning its payload.
    pub(crate) fn take(&mut self, id: TimerId) -> Option<T> {
        self.slots.remove(id.0).map(|t| t.payload)
    }

    /// Drops heap entries that no longer match a live, armed timer.
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
            self.heap = self
                .slots
                .iter()
                .filter(|(_, t)| t.seq != FIRED)
                .map(|(k, t)| Reverse((t.deadline, t.seq, k)))
                .collect();
        }
    }

    /// The earliest deadline of an armed timer.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_stale();
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// The next timer due at `now` that was scheduled before sequence `limit`. It stays live
    /// (its id valid) until the caller takes or re-arms it.
    pub(crate) fn pop_due(&mut self, now: Instant, limit: u64) -> Option<TimerId> {
        self.skip_stale();
        let Reverse((deadline, seq, key)) = *self.heap.peek()?;
        if deadline > now || seq >= limit {
            return None;
        }
        self.heap.pop();
        if let Some(timer) = self.slots.get_mut(key) {
            timer.seq = FIRED;
        }
        Some(TimerId(key))
    }

    /// Cancels several timers (a connection's, when it ends).
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
        let a = timers.schedule(t0 + Duration::from_secs(1), 'a');
        let b = timers.schedule(t0 + Duration::from_secs(1), 'b');
        let c = timers.schedule(t0 + Duration::from_secs(2), 'c');
        assert!(timers.reset(a, t0 + Duration::from_secs(3)));
        assert!(timers.cancel(c));
        assert!(!timers.cancel(c));
        let limit = timers.next_seq();
        let later = t0 + Duration::from_secs(10);
        let first = timers.pop_due(later, limit).unwrap();
        assert_eq!(first, b);
        assert_eq!(timers.take(first), Some('b'));
        let second = timers.pop_due(later, limit).unwrap();
        assert_eq!(timers.take(second), Some('a'));
        assert!(timers.pop_due(later, limit).is_none());
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn a_fired_timer_keeps_its_id_until_taken_and_can_be_rearmed() {
        let mut timers = Timers::default();
        let t0 = Instant::now();
        let id = timers.schedule(t0, 1u32);
        let limit = timers.next_seq();
        assert_eq!(timers.pop_due(t0, limit), Some(id));
        assert!(timers.is_active(id), "live while its callback runs");
        assert_eq!(timers.next_deadline(), None, "not armed");
        assert!(timers.rearm(id, t0 + Duration::from_secs(1)));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(1), timers.next_seq()), Some(id));
        assert!(timers.cancel(id));
    }

    #[test]
    fn timers_added_while_running_wait_for_the_next_round() {
        let mut timers = Timers::default();
        let t0 = Instant::now();
        timers.schedule(t0, 'a');
        let limit = timers.next_seq();
        timers.schedule(t0, 'b');
        let id = timers.pop_due(t0, limit).unwrap();
        assert_eq!(timers.take(id), Some('a'));
        assert!(timers.pop_due(t0, limit).is_none(), "scheduled after the limit");
    }

    #[test]
    fn heap_compacts_under_cancel_churn() {
        let mut timers = Timers::default();
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            let id = timers.schedule(t0 + Duration::from_millis(i), ());
            timers.cancel(id);
        }
        assert!(timers.heap.len() <= 130, "heap kept {} stale entries", timers.heap.len());
    }
}
