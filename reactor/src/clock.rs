//! Clocks. The reactor reads time only through a [`Clock`], monotonic by default; tests inject a
//! [`ManualClock`] and move time by hand, so timer tests never sleep.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A monotonic time source.
pub trait Clock: 'static {
    /// The current time.
    fn now(&self) -> Instant;

    /// The longest the reactor may wait in the poller, whatever its timers say (`None`: no
    /// cap). A clock that only moves when told to returns a short cap: waiting in real time for
    /// a timer on such a clock would never end.
    fn max_poll_wait(&self) -> Option<Duration> {
        None
    }
}

/// The system's monotonic clock ([`Instant::now`]); the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when [`ManualClock::advance`] is called. Clones share the same time,
/// so a test keeps one clone and gives the other to the reactor.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - start, Duration::from_secs(5));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    now: Rc<Cell<Instant>>,
}

impl ManualClock {
    /// A manual clock starting at the current instant.
    pub fn new() -> Self {
        ManualClock { now: Rc::new(Cell::new(Instant::now())) }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.set(self.now.get() + by);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock").field("now", &self.now.get()).finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.now.get()
    }

    /// 10 ms: a reactor on a manual clock polls for I/O and then checks again.
    fn max_poll_wait(&self) -> Option<Duration> {
        Some(Duration::from_millis(10))
    }
}
