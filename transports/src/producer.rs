//! A connection's producer state (Twisted's `registerProducer` contract) as pure transitions:
//! each method takes what happened (a registration, a write, a flush) and returns which call,
//! if any, the event loop must make on the producer. No loop, no protocol, no I/O, so every
//! rule is unit-tested here.
//!
//! The loop keeps *who* the producer is (the connection's own protocol, another connection, a
//! producer object); this type keeps *where it stands*: push or pull, paused or not, a resume
//! already queued, and a serial number so that a call queued for an earlier registration is
//! recognised as stale and dropped.
//!
//! ```
//! use torsion_transports::producer::{ProducerCall, ProducerState};
//!
//! let mut state = ProducerState::default(); // the connection's own protocol: push
//! assert_eq!(state.after_write(true), Some(ProducerCall::Pause), "above high: pause once");
//! assert_eq!(state.after_write(true), None, "already paused");
//! assert_eq!(state.after_flush(true, false), Some(ProducerCall::Resume), "at low: resume once");
//! assert_eq!(state.after_flush(true, false), None);
//! ```

/// A flow-control call the loop must make on a connection's producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerCall {
    /// `pause_producing`.
    Pause,
    /// `resume_producing`.
    Resume,
}

/// What a registration asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The serial number of the new registration (queued calls carry it).
    pub serial: u64,
    /// The connection's own protocol was paused when it was displaced: resume it.
    pub resume_own: bool,
    /// The first call to make on the new producer, after the registering callback.
    pub call: Option<ProducerCall>,
}

/// A connection's producer state. The default is the connection's own protocol as a push
/// producer (pausing it pauses reading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    registered: bool,
    streaming: bool,
    paused: bool,
    resume_queued: bool,
    serial: u64,
}

impl Default for ProducerState {
    fn default() -> Self {
        ProducerState { registered: false, streaming: true, paused: false, resume_queued: false, serial: 0 }
    }
}

impl ProducerState {
    /// True while a producer other than the connection's own protocol is registered.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// True for a push producer (the connection's own protocol is one).
    pub fn is_streaming(&self) -> bool {
        self.streaming
    }

    /// True for a registered pull producer.
    pub fn is_pull(&self) -> bool {
        self.registered && !self.streaming
    }

    /// True while a push producer is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The current registration's serial number.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// A producer registers. A pull producer gets `resume_producing` at once; a push producer
    /// over a full buffer (`above_high`) is paused at once; a push producer below high gets
    /// its start `resume_producing` if `start_push` (a producer object, which has no other
    /// way to start writing; a connection registered as producer is left reading as it is).
    pub fn register(&mut self, streaming: bool, above_high: bool, start_push: bool) -> Registered {
        let resume_own = !self.registered && self.paused;
        self.serial += 1;
        self.registered = true;
        self.streaming = streaming;
        self.paused = false;
        self.resume_queued = false;
        let call = if !streaming {
            self.resume_queued = true;
            Some(ProducerCall::Resume)
        } else if above_high {
            self.paused = true;
            Some(ProducerCall::Pause)
        } else if start_push {
            Some(ProducerCall::Resume)
        } else {
            None
        };
        Registered { serial: self.serial, resume_own, call }
    }

    /// The producer unregisters (or is stopped): the connection's own protocol, unpaused,
    /// becomes the producer again, and calls queued for the old one become stale.
    pub fn unregister(&mut self) {
        *self = ProducerState { serial: self.serial + 1, ..ProducerState::default() };
    }

    /// Bytes were added to the buffer, which is now `above_high` or not: a push producer
    /// that pushed it above high is paused, once.
    pub fn after_write(&mut self, above_high: bool) -> Option<ProducerCall> {
        if above_high && self.streaming && !self.paused {
            self.paused = true;
            return Some(ProducerCall::Pause);
        }
        None
    }

    /// A flush ran (whether or not anything was buffered: a large write may have gone
    /// straight to the socket). At or below the low mark (`at_low`) a paused push producer is
    /// resumed, and a pull producer gets its next `resume_producing` unless one is queued or
    /// the connection is `finished`.
    pub fn after_flush(&mut self, at_low: bool, finished: bool) -> Option<ProducerCall> {
        if !at_low {
            return None;
        }
        if self.streaming && self.paused {
            self.paused = false;
            return Some(ProducerCall::Resume);
        }
        if self.is_pull() && !self.resume_queued && !finished {
            self.resume_queued = true;
            return Some(ProducerCall::Resume);
        }
        None
    }

    /// A queued call for registration `serial` is about to be delivered: false if it is
    /// stale (the producer changed since). Delivering a resume lets the next one be queued.
    pub fn deliver(&mut self, call: ProducerCall, serial: u64) -> bool {
        if serial != self.serial {
            return false;
        }
        if call == ProducerCall::Resume {
            self.resume_queued = false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pause_and_resume_alternate_exactly_once_each() {
        let mut s = ProducerState::default();
        assert_eq!(s.after_write(false), None);
        assert_eq!(s.after_write(true), Some(ProducerCall::Pause));
        assert_eq!(s.after_write(true), None);
        assert_eq!(s.after_flush(false, false), None, "not yet at low");
        assert_eq!(s.after_flush(true, false), Some(ProducerCall::Resume));
        assert_eq!(s.after_flush(true, false), None);
        assert_eq!(s.after_write(true), Some(ProducerCall::Pause));
    }

    #[test]
    fn a_pull_producer_is_resumed_at_registration_and_after_each_drain_never_paused() {
        let mut s = ProducerState::default();
        let r = s.register(false, false, true);
        assert_eq!(r.call, Some(ProducerCall::Resume));
        assert_eq!(s.after_flush(true, false), None, "one resume queued at a time");
        assert!(s.deliver(ProducerCall::Resume, r.serial));
        assert_eq!(s.after_write(true), None, "a pull producer is never paused");
        assert_eq!(s.after_flush(false, false), None);
        assert_eq!(s.after_flush(true, false), Some(ProducerCall::Resume));
        assert!(s.deliver(ProducerCall::Resume, r.serial));
        assert_eq!(s.after_flush(true, true), None, "not once the connection is finished");
    }

    #[test]
    fn a_push_producer_starts_below_high_and_is_paused_above() {
        let mut below = ProducerState::default();
        assert_eq!(below.register(true, false, true).call, Some(ProducerCall::Resume));
        let mut conn = ProducerState::default();
        assert_eq!(conn.register(true, false, false).call, None, "a connection is left as it is");
        let mut above = ProducerState::default();
        assert_eq!(above.register(true, true, true).call, Some(ProducerCall::Pause));
        assert!(above.is_paused());
        assert_eq!(above.after_flush(true, false), Some(ProducerCall::Resume));
    }

    #[test]
    fn calls_queued_for_an_earlier_registration_are_stale() {
        let mut s = ProducerState::default();
        let first = s.register(false, false, true);
        s.unregister();
        assert!(!s.deliver(ProducerCall::Resume, first.serial));
        let second = s.register(true, false, true);
        assert!(!s.deliver(ProducerCall::Resume, first.serial));
        assert!(s.deliver(ProducerCall::Resume, second.serial));
        assert!(!s.is_registered() || s.is_streaming());
    }

    #[test]
    fn displacing_a_paused_own_protocol_resumes_it() {
        let mut s = ProducerState::default();
        assert_eq!(s.after_write(true), Some(ProducerCall::Pause));
        let r = s.register(true, false, true);
        assert!(r.resume_own);
        let mut t = ProducerState::default();
        assert!(!t.register(true, false, true).resume_own);
    }

    #[test]
    fn unregistering_returns_to_an_unpaused_own_protocol() {
        let mut s = ProducerState::default();
        s.register(true, true, true);
        assert!(s.is_paused());
        s.unregister();
        assert!(!s.is_registered() && !s.is_paused() && s.is_streaming());
    }
}
