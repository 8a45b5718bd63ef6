//! The delivery gate shared by the framing adapters ([`LineReceiver`](super::LineReceiver)
//! and [`StringReceiver`](super::StringReceiver)): may the next frame be delivered?
//!
//! A receiver parses frames and calls its handler; the gate decides when it may. Delivery
//! stops while the handler paused it, while the write buffer is full (`pause_producing`), and
//! for good once the connection is closing. Input that arrives while delivery is stopped is
//! buffered by the receiver and reading is paused; a FIN that arrives while frames are held
//! back is reported after them; the per-frame deadline runs only while a frame is in
//! progress and delivery can go on.
//!
//! A receiver's callbacks follow one shape:
//! - `data_received`: [`Gate::on_data`] says drop, hold (buffer only) or deliver;
//! - deliver: `while gate.may_deliver(cx) { next frame to the handler }`, then
//!   [`Gate::take_held_eof`] for a FIN held back, then [`Gate::settle_deadline`];
//! - `eof_received`: [`Gate::on_eof`]; `timer_fired`: [`Gate::on_timer`] first;
//!   `pause_producing`/`resume_producing`: the gate's methods of the same name, then deliver.

use std::time::Duration;

use torsion_reactor::{Ctx, DisconnectReason, TimerId};

/// What to do with bytes that just arrived; see [`Gate::on_data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// The receiver is closed: ignore them.
    Drop,
    /// Delivery is stopped: buffer them without parsing (reading is paused).
    Hold,
    /// Parse and deliver.
    Deliver,
}

/// What to do with the peer's FIN; see [`Gate::on_eof`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eof {
    /// The receiver is closed: answer `false` (close).
    Ignore,
    /// Hand it to the handler now and answer what it says.
    Deliver,
    /// Frames are held back: answer `true` (keep writing); [`Gate::take_held_eof`] hands it
    /// on after them.
    Held,
}

/// May the next frame be delivered? The pause, close, held-back-EOF and frame-deadline state of
/// one framing receiver; see the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Paused by the handler.
    paused: bool,
    /// Paused because the write buffer is full (`pause_producing`).
    producer_paused: bool,
    /// Closed through the receiver, or noticed closing: deliver nothing more.
    closed: bool,
    /// The peer's FIN arrived while frames were held back.
    eof_pending: bool,
    /// The peer's FIN arrived: no frame can complete any more.
    eof_seen: bool,
    deadline: FrameDeadline,
}

impl Gate {
    /// True unless paused (by the handler or the write buffer) or closed.
    pub(crate) fn is_open(&self) -> bool {
        !(self.paused || self.producer_paused || self.closed)
    }

    /// May the next frame be delivered? Also notices a close made straight through the
    /// transport (by the handler) and then delivers nothing more.
    pub(crate) fn may_deliver(&mut self, cx: &mut Ctx<'_>) -> bool {
        if !self.is_open() {
            return false;
        }
        if cx.transport().is_closing() {
            self.closed = true;
            return false;
        }
        true
    }

    /// [`may_deliver`](Self::may_deliver) without recording a close: for a fast path that
    /// stops and leaves the rest to the delivery loop.
    pub(crate) fn may_continue(&self, cx: &mut Ctx<'_>) -> bool {
        self.is_open() && !cx.transport().is_closing()
    }

    /// The handler pauses delivery (and reading).
    pub(crate) fn pause(&mut self, cx: &mut Ctx<'_>) {
        self.paused = true;
        cx.transport().pause_reading();
    }

    /// The handler resumes delivery; reading resumes unless the write buffer is still full.
    pub(crate) fn resume(&mut self, cx: &mut Ctx<'_>) {
        self.paused = false;
        if !self.producer_paused {
            cx.transport().resume_reading();
        }
    }

    /// True while paused by the handler.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    /// Closes cleanly and delivers nothing more.
    pub(crate) fn lose_connection(&mut self, cx: &mut Ctx<'_>) {
        self.closed = true;
        cx.transport().lose_connection();
    }

    /// Closes cleanly with `reason` and delivers nothing more.
    pub(crate) fn lose_connection_with(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.closed = true;
        cx.transport().lose_connection_with(reason);
    }

    /// Aborts the connection and delivers nothing more.
    pub(crate) fn abort_connection(&mut self, cx: &mut Ctx<'_>) {
        self.closed = true;
        cx.transport().abort_connection();
    }

    /// Bytes arrived. While delivery is stopped they are held and reading is paused again
    /// (someone else may have resumed it).
    pub(crate) fn on_data(&mut self, cx: &mut Ctx<'_>) -> Input {
        if self.closed {
            Input::Drop
        } else if !self.is_open() {
            cx.transport().pause_reading();
            Input::Hold
        } else {
            Input::Deliver
        }
    }

    /// The peer's FIN arrived.
    pub(crate) fn on_eof(&mut self) -> Eof {
        if self.closed {
            return Eof::Ignore;
        }
        self.eof_seen = true;
        if self.is_open() {
            Eof::Deliver
        } else {
            self.eof_pending = true;
            Eof::Held
        }
    }

    /// True (once) when a held-back FIN is due: it was held and delivery can go on. The
    /// receiver hands it to the handler and closes unless the handler keeps the write side.
    pub(crate) fn take_held_eof(&mut self) -> bool {
        if self.eof_pending && self.is_open() {
            self.eof_pending = false;
            true
        } else {
            false
        }
    }

    /// The connection is gone.
    pub(crate) fn on_connection_lost(&mut self) {
        self.closed = true;
    }

    /// A timer fired: true if it was the frame deadline's, which closes the connection with
    /// [`DisconnectReason::TimedOut`] (`frame` names the frame in the log); false if it
    /// belongs to the handler.
    pub(crate) fn on_timer(&mut self, cx: &mut Ctx<'_>, timer: TimerId, frame: &str) -> bool {
        if !self.deadline.fired(timer) {
            return false;
        }
        if !self.closed {
            let limit = self.deadline.limit.unwrap_or_default();
            tracing::debug!(?limit, "{frame} not complete within its deadline; closing");
            self.lose_connection_with(cx, DisconnectReason::TimedOut);
        }
        true
    }

    /// The write buffer went above its high mark: hold frames back and pause reading.
    pub(crate) fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.producer_paused = true;
        cx.transport().pause_reading();
    }

    /// The write buffer drained: resume reading unless the handler paused or the receiver
    /// closed.
    pub(crate) fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.producer_paused = false;
        if !self.paused && !self.closed {
            cx.transport().resume_reading();
        }
    }

    /// The per-frame deadline.
    pub(crate) fn frame_deadline(&self) -> Option<Duration> {
        self.deadline.limit
    }

    /// Changes the per-frame deadline; takes effect from the next frame.
    pub(crate) fn set_frame_deadline(&mut self, limit: Option<Duration>) {
        self.deadline.limit = limit;
    }

    /// After delivering: runs the deadline for the frame in progress (`mid_frame`: a frame has
    /// begun and not ended; `frames`: how many have ended, which names the one in progress),
    /// and stops it when no frame is in progress, delivery is stopped or the FIN arrived.
    pub(crate) fn settle_deadline(&mut self, cx: &mut Ctx<'_>, mid_frame: bool, frames: u64) {
        let active = self.is_open() && !self.eof_seen && mid_frame;
        self.deadline.update(cx, active, frames);
    }
}

/// Arms a protocol timer when a frame begins and cancels it when the frame ends; a frame that
/// is still incomplete when it fires has taken too long.
#[derive(Debug, Default)]
struct FrameDeadline {
    limit: Option<Duration>,
    timer: Option<TimerId>,
    /// The decoder's frame count when the timer was armed: the frame it times.
    frame: u64,
}

impl FrameDeadline {
    /// `active`: a frame is in progress and the receiver is delivering; `frame`: the count of
    /// completed frames, which identifies the frame in progress.
    fn update(&mut self, cx: &mut Ctx<'_>, active: bool, frame: u64) {
        let Some(limit) = self.limit.filter(|_| active) else {
            if let Some(timer) = self.timer.take() {
                cx.cancel_timer(timer);
            }
            return;
        };
        if let Some(timer) = self.timer {
            if self.frame == frame && cx.is_timer_active(timer) {
                return;
            }
            cx.cancel_timer(timer);
        }
        self.timer = Some(cx.set_timer(limit));
        self.frame = frame;
    }

    /// True (and forgets the timer) if `timer` is this deadline's.
    fn fired(&mut self, timer: TimerId) -> bool {
        if self.timer == Some(timer) {
            self.timer = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    //! The gate on its own, driving a minimal receiver (frames end at `\n`) over the
    //! in-memory harness.

    use std::cell::RefCell;
    use std::rc::Rc;

    use torsion_reactor::testing::{Call, Harness};
    use torsion_reactor::{ConnId, Protocol};

    use super::*;

    /// What the minimal receiver's handler saw.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Frame(&'static str),
        Eof,
        Lost(DisconnectReason),
    }

    type Log = Rc<RefCell<Vec<Seen>>>;

    /// How long a `P` frame pauses delivery.
    const PAUSE: Duration = Duration::from_secs(1);

    /// What `W` and `Q` write: four times the default high watermark.
    const BIG: usize = 256 * 1024;

    /// Frames end at `\n`. The handler: `P` pauses for [`PAUSE`], `Q` too and writes
    /// [`BIG`] bytes, `R` too and resumes reading behind the gate's back, `C` closes through
    /// the gate, `X` closes straight through the transport, `W` writes [`BIG`] bytes; every
    /// frame is logged. A FIN closes after the frames before it.
    struct Frames {
        gate: Gate,
        buffer: Vec<u8>,
        ended: u64,
        resume: Option<TimerId>,
        log: Log,
    }

    impl Frames {
        fn pump(&mut self, cx: &mut Ctx<'_>) {
            while self.gate.may_deliver(cx) {
                let Some(end) = self.buffer.iter().position(|&b| b == b'\n') else { break };
                let frame: Vec<u8> = self.buffer.drain(..=end).collect();
                self.ended += 1;
                self.handle(cx, &frame[..end]);
            }
            if self.gate.take_held_eof() {
                self.log.borrow_mut().push(Seen::Eof);
                cx.transport().lose_connection();
            }
            self.gate.settle_deadline(cx, !self.buffer.is_empty(), self.ended);
        }

        fn handle(&mut self, cx: &mut Ctx<'_>, frame: &[u8]) {
            if let b"P" | b"Q" | b"R" = frame {
                self.gate.pause(cx);
                self.resume = Some(cx.set_timer(PAUSE));
            }
            let name = match frame {
                b"P" => "P",
                b"Q" => {
                    cx.transport().write(&[b'q'; BIG]);
                    "Q"
                }
                b"R" => {
                    cx.transport().resume_reading();
                    "R"
                }
                b"C" => {
                    self.gate.lose_connection(cx);
                    "C"
                }
                b"X" => {
                    cx.transport().lose_connection();
                    "X"
                }
                b"W" => {
                    cx.transport().write(&[b'w'; BIG]);
                    "W"
                }
                b"a" => "a",
                b"b" => "b",
                b"c" => "c",
                other => panic!("unexpected frame {other:?}"),
            };
            self.log.borrow_mut().push(Seen::Frame(name));
        }
    }

    impl Protocol for Frames {
        fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
            match self.gate.on_data(cx) {
                Input::Drop => return,
                Input::Hold | Input::Deliver => self.buffer.extend_from_slice(data),
            }
            self.pump(cx);
        }

        fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
            match self.gate.on_eof() {
                Eof::Ignore => false,
                Eof::Deliver => {
                    self.log.borrow_mut().push(Seen::Eof);
                    self.pump(cx);
                    false
                }
                Eof::Held => true,
            }
        }

        fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
            self.gate.on_connection_lost();
            self.log.borrow_mut().push(Seen::Lost(reason));
        }

        fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
            if self.gate.on_timer(cx, timer, "test frame") {
                return;
            }
            assert_eq!(Some(timer), self.resume.take());
            self.gate.resume(cx);
            self.pump(cx);
        }

        fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
            self.gate.pause_producing(cx);
            self.pump(cx);
        }

        fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
            self.gate.resume_producing(cx);
            self.pump(cx);
        }
    }

    /// A harness connection running [`Frames`] with the given frame deadline.
    fn start(deadline: Option<Duration>) -> (Harness, ConnId, Log) {
        let log = Log::default();
        let mut gate = Gate::default();
        gate.set_frame_deadline(deadline);
        let mut protocol =
            Some(Frames { gate, buffer: Vec::new(), ended: 0, resume: None, log: log.clone() });
        let mut h = Harness::new();
        let id = h.accept(&mut move |_| protocol.take()).expect("accepted");
        (h, id, log)
    }

    fn seen(log: &Log) -> Vec<Seen> {
        log.borrow().clone()
    }

    #[test]
    fn eof_is_delivered_held_back_or_ignored() {
        let mut gate = Gate::default();
        assert!(gate.is_open());
        assert_eq!(gate.on_eof(), Eof::Deliver, "nothing held back: straight to the handler");
        assert!(!gate.take_held_eof(), "a delivered FIN is not delivered again");

        let mut gate = Gate { paused: true, ..Gate::default() };
        assert_eq!(gate.on_eof(), Eof::Held);
        assert!(!gate.take_held_eof(), "not while paused");
        gate.paused = false;
        assert!(gate.take_held_eof());
        assert!(!gate.take_held_eof(), "once");

        let mut gate = Gate { producer_paused: true, ..Gate::default() };
        assert_eq!(gate.on_eof(), Eof::Held);
        gate.on_connection_lost();
        assert!(!gate.take_held_eof(), "never after the connection is gone");
        assert_eq!(gate.on_eof(), Eof::Ignore);
    }

    #[test]
    fn a_pause_holds_back_received_frames_and_the_fin_until_resumed() {
        let (mut h, id, log) = start(None);
        h.feed(id, b"a\nP\nb\n");
        assert_eq!(seen(&log), [Seen::Frame("a"), Seen::Frame("P")], "b is held back");
        h.feed(id, b"c\n");
        h.feed_eof(id);
        assert_eq!(seen(&log).len(), 2, "nothing more while paused");
        assert!(h.is_open(id), "the FIN waits for the held-back frames");
        h.advance(PAUSE);
        assert_eq!(
            seen(&log),
            [
                Seen::Frame("a"),
                Seen::Frame("P"),
                Seen::Frame("b"),
                Seen::Frame("c"),
                Seen::Eof,
                Seen::Lost(DisconnectReason::Clean)
            ]
        );
    }

    #[test]
    fn a_full_write_buffer_holds_back_frames_until_it_drains() {
        let (mut h, id, log) = start(None);
        h.set_peer_window(id, Some(0));
        h.feed(id, b"W\n");
        assert!(h.calls(id).contains(&Call::PauseProducing));
        h.feed(id, b"a\n");
        assert_eq!(seen(&log), [Seen::Frame("W")], "a is held back while the buffer is full");
        h.set_peer_window(id, None);
        assert_eq!(h.take_written(id).len(), BIG);
        assert!(h.calls(id).contains(&Call::ResumeProducing));
        assert_eq!(seen(&log), [Seen::Frame("W"), Seen::Frame("a")], "delivered once drained");
    }

    /// How many reads the connection's protocol got.
    fn reads(h: &Harness, id: ConnId) -> usize {
        h.calls(id).iter().filter(|c| matches!(c, Call::Data(_))).count()
    }

    #[test]
    fn frames_and_reading_wait_for_both_the_handler_and_the_write_buffer() {
        for handler_first in [true, false] {
            let (mut h, id, log) = start(None);
            h.set_peer_window(id, Some(0));
            h.feed(id, b"Q\nb\n"); // pauses and fills the write buffer
            assert!(h.calls(id).contains(&Call::PauseProducing));
            if handler_first {
                h.advance(PAUSE);
            } else {
                h.set_peer_window(id, None);
                assert_eq!(h.take_written(id).len(), BIG);
            }
            h.feed(id, b"c\n");
            assert_eq!(seen(&log), [Seen::Frame("Q")], "one of the two still holds b back");
            assert_eq!(reads(&h, id), 1, "and reading stays paused (handler first: {handler_first})");
            if handler_first {
                h.set_peer_window(id, None);
                assert_eq!(h.take_written(id).len(), BIG);
            } else {
                h.advance(PAUSE);
            }
            assert_eq!(seen(&log), [Seen::Frame("Q"), Seen::Frame("b"), Seen::Frame("c")]);
        }
    }

    #[test]
    fn input_arriving_while_frames_are_held_pauses_reading_again() {
        let (mut h, id, log) = start(None);
        h.feed(id, b"R\n");
        h.feed(id, b"a\n");
        assert_eq!(reads(&h, id), 2, "reading was resumed behind the gate's back");
        h.feed(id, b"b\n");
        assert_eq!(reads(&h, id), 2, "held input paused reading again");
        assert_eq!(seen(&log), [Seen::Frame("R")]);
        h.advance(PAUSE);
        assert_eq!(seen(&log), [Seen::Frame("R"), Seen::Frame("a"), Seen::Frame("b")]);
    }

    #[test]
    fn closing_stops_delivery_of_frames_already_received() {
        for (input, last) in [(b"a\nC\nb\n", "C"), (b"a\nX\nb\n", "X")] {
            let (mut h, id, log) = start(None);
            h.feed(id, input);
            assert_eq!(
                seen(&log),
                [Seen::Frame("a"), Seen::Frame(last), Seen::Lost(DisconnectReason::Clean)],
                "closed by {last}"
            );
        }
    }

    #[test]
    fn the_frame_deadline_runs_only_while_a_frame_is_in_progress_and_delivery_is_open() {
        const LIMIT: Duration = Duration::from_secs(2);
        let step = Duration::from_millis(1);

        // A frame that does not end in time.
        let (mut h, id, _log) = start(Some(LIMIT));
        h.feed(id, b"ab");
        h.advance(LIMIT - step);
        assert!(h.is_open(id));
        h.advance(step);
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));

        // A frame that ends in time stops the clock; no frame in progress, no clock.
        let (mut h, id, log) = start(Some(LIMIT));
        h.feed(id, b"a");
        h.advance(LIMIT - step);
        h.feed(id, b"\n");
        h.advance(LIMIT * 10);
        assert!(h.is_open(id));
        assert_eq!(seen(&log), [Seen::Frame("a")]);

        // The next frame gets its own time, from its own first byte.
        let (mut h, id, log) = start(Some(LIMIT));
        h.feed(id, b"a");
        h.advance(LIMIT - step);
        h.feed(id, b"\nb");
        h.advance(LIMIT - step);
        assert!(h.is_open(id), "b began {:?} ago", LIMIT - step);
        h.advance(step);
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
        assert_eq!(seen(&log), [Seen::Frame("a"), Seen::Lost(DisconnectReason::TimedOut)]);

        // Paused: the partial frame's clock starts when delivery resumes.
        let (mut h, id, _log) = start(Some(LIMIT));
        h.feed(id, b"P\nab");
        h.advance(PAUSE);
        h.advance(LIMIT - step);
        assert!(h.is_open(id), "the clock started at the resume, not at the first byte");
        h.advance(step);
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
    }
}
