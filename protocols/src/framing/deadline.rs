//! The per-frame deadline shared by the framing adapters.

use std::time::Duration;

use torsion_reactor::{Ctx, TimerId};

/// Arms a protocol timer when a frame begins and cancels it when the frame ends; a frame that
/// is still incomplete when it fires has taken too long.
#[derive(Debug, Default)]
pub(crate) struct FrameDeadline {
    limit: Option<Duration>,
    timer: Option<TimerId>,
    /// The decoder's frame count when the timer was armed: the frame it times.
    frame: u64,
}

impl FrameDeadline {
    pub(crate) fn limit(&self) -> Option<Duration> {
        self.limit
    }

    /// Changes the limit; takes effect from the next frame.
    pub(crate) fn set_limit(&mut self, limit: Option<Duration>) {
        self.limit = limit;
    }

    /// Called after every parse. `active`: a frame is in progress and the receiver is
    /// delivering (not paused, not closing, in a framed mode); `frame`: the decoder's count of
    /// completed frames, which identifies the frame in progress.
    pub(crate) fn update(&mut self, cx: &mut Ctx<'_>, active: bool, frame: u64) {
        let Some(limit) = self.limit.filter(|_| active) else {
            if let Some(timer) = self.timer.take() {
                cx.cancel(timer);
            }
            return;
        };
        if let Some(timer) = self.timer {
            if self.frame == frame && cx.is_active(timer) {
                return;
            }
            cx.cancel(timer);
        }
        self.timer = Some(cx.call_later(limit));
        self.frame = frame;
    }

    /// True (and forgets the timer) if `timer` is this deadline's.
    pub(crate) fn fired(&mut self, timer: TimerId) -> bool {
        if self.timer == Some(timer) {
            self.timer = None;
            true
        } else {
            false
        }
    }
}
