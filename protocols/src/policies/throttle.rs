//! Bandwidth throttling: Twisted's `ThrottlingFactory` with token buckets and sub-second
//! resolution, [`ThrottlingFactory`].

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion_reactor::{
    Address, ClientFactory, Ctx, DisconnectReason, Factory, LoopCtx, Protocol, TimerId, Wrapper,
};

/// Default refill interval: a throttled connection is looked at again every 20 ms (Twisted
/// accounts once a second, which lets a connection burst a whole second's worth and then
/// stall).
pub const DEFAULT_THROTTLE_INTERVAL: Duration = Duration::from_millis(20);

/// Default burst: each bucket holds at most 100 ms worth of its rate, so after an idle spell
/// a factory may move at most `rate × 100 ms` bytes at once before the rate applies.
pub const DEFAULT_BURST: Duration = Duration::from_millis(100);

/// Smallest and largest refill interval accepted by [`ThrottlingFactory::set_interval`].
const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(1));

/// Most input a connection holds back; past it (only when something else resumed its reading)
/// the oldest bytes are handed on at once, as debt on the read bucket.
const MAX_HELD: usize = 1 << 20;

/// Token amounts are kept in nano-bytes, so refills are exact integer arithmetic.
const NANOS: i128 = 1_000_000_000;
/// Longest elapsed time counted in one refill (about 31 years), so products stay in range.
const MAX_ELAPSED_NANOS: i128 = 1_000_000_000_000_000_000;

/// A token bucket: `rate` bytes per second, at most `capacity` banked. The balance may go
/// negative (a write larger than the balance is debt, repaid before the next one).
#[derive(Debug)]
struct Bucket {
    rate: u64,
    capacity: i128,
    tokens: i128,
    last: Option<Instant>,
}

impl Bucket {
    fn new(rate: u64, burst: Duration) -> Self {
        let burst = (burst.as_nanos() as i128).min(MAX_ELAPSED_NANOS);
        // At least one byte, so a tiny rate still moves data.
        let capacity = (rate as i128).saturating_mul(burst).max(NANOS);
        Bucket { rate, capacity, tokens: capacity, last: None }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = (now.saturating_duration_since(last).as_nanos() as i128).min(MAX_ELAPSED_NANOS);
            self.tokens =
                self.tokens.saturating_add(elapsed.saturating_mul(self.rate as i128)).min(self.capacity);
        }
        self.last = Some(now);
    }

    /// Whole bytes that may move now.
    fn available(&self) -> usize {
        usize::try_from(self.tokens.max(0) / NANOS).unwrap_or(usize::MAX)
    }

    fn take(&mut self, bytes: usize) {
        self.tokens = self.tokens.saturating_sub((bytes as i128).saturating_mul(NANOS));
    }

    /// How long until the balance reaches `bytes`; `None` at rate 0.
    fn wait_for(&self, bytes: usize) -> Option<Duration> {
        let need = (bytes as i128).saturating_mul(NANOS).saturating_sub(self.tokens);
        if need <= 0 {
            return Some(Duration::ZERO);
        }
        if self.rate == 0 {
            return None;
        }
        let rate = self.rate as i128;
        let nanos = (need + rate - 1) / rate;
        Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

/// Buckets and settings shared by a factory and all its connections.
#[derive(Debug)]
struct Shared {
    read: Option<Bucket>,
    write: Option<Bucket>,
    interval: Duration,
    /// Connections whose reading is held by the read limit.
    read_waiting: usize,
    /// The current hand-out round of held-back input: its time, the read tokens available
    /// when it began, and how many connections were waiting. Each waiting connection takes an
    /// equal share, so none is starved by the timer order.
    round: Option<(Instant, usize, usize)>,
}

impl Shared {
    /// Read tokens a held connection may take now: its share of this round.
    fn read_share(&mut self, now: Instant, want: usize) -> usize {
        let waiting = self.read_waiting.max(1);
        let Some(bucket) = self.read.as_mut() else { return want };
        bucket.refill(now);
        let available = bucket.available();
        let round = match self.round {
            Some(round) if round.0 == now => round,
            _ => {
                let round = (now, available, waiting);
                self.round = Some(round);
                round
            }
        };
        let share = round.1.div_ceil(round.2).max(1);
        let n = want.min(share).min(available);
        bucket.take(n);
        n
    }
}

/// Limits the bandwidth of all of a factory's connections together (Twisted's
/// `ThrottlingFactory`): `read_limit` and `write_limit` in bytes per second, each a token
/// bucket shared by every connection the factory built.
///
/// # Reading
/// Each `data_received` takes tokens from the read bucket. What the balance does not cover
/// is held back in the wrapper (at most one read's worth per connection: reading is paused
/// at once, so TCP pushes back on the peer; never more than 1 MiB even if something else
/// keeps resuming its reading) and handed on as tokens come in, every
/// [refill interval](Self::set_interval). Over any span of `T` seconds the wrapped protocols
/// together receive at most `burst + read_limit × T` bytes. A peer's FIN is passed on only
/// after the held-back bytes.
///
/// # Writing
/// Bytes the wrapped protocol adds to its transport's write buffer during its callbacks take
/// tokens from the write bucket; the balance may go negative. While it is negative the
/// wrapped protocol is paused as a producer (`pause_producing`: by default it stops reading,
/// so an echo or proxy stops too; a push producer such as [`Chargen`](crate::wire::Chargen)
/// stops writing) and resumed once the debt is repaid. Over `T` seconds the buffered bytes
/// are at most `burst + write_limit × T` plus what one callback writes. The reactor's own
/// watermark pauses are merged in: the wrapped protocol sees one pause and one resume,
/// strictly alternating.
///
/// # Limits
/// Both limits default to `None`, unlimited (as in Twisted: a throttle is told its rate).
/// The burst (bucket size) defaults to [`DEFAULT_BURST`] worth of the rate, the refill
/// interval to [`DEFAULT_THROTTLE_INTERVAL`]; each has a setter, and changing a limit also
/// applies to open connections.
///
/// # Not seen
/// Writes into a connection from elsewhere (another connection's `transport_for`, a
/// registered [`Producer`](torsion_reactor::Producer) object) are not metered; a registered
/// producer object is not paused by the write limit (its connection's protocol is).
///
/// Bytes already held back are still handed on if the wrapped protocol calls
/// `lose_connection` and the close then waits on a slow flush: the transport API does not say
/// whether a close is under way. (With an empty buffer the connection ends at once and
/// nothing more is delivered.)
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion_protocols::policies::ThrottlingFactory;
/// use torsion_reactor::testing::Harness;
/// use torsion_reactor::{Ctx, Protocol};
///
/// /// Counts the bytes it is handed.
/// struct Count(Rc<Cell<usize>>);
/// impl Protocol for Count {
///     fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
///         self.0.set(self.0.get() + data.len());
///     }
/// }
///
/// let got = Rc::new(Cell::new(0));
/// let counter = got.clone();
/// let mut factory =
///     ThrottlingFactory::new(move |_| Some(Count(counter.clone())));
/// factory.set_read_limit(Some(1000)); // bytes per second, for all connections together
///
/// let mut h = Harness::new();
/// let id = h.accept(&mut factory).unwrap();
/// h.feed(id, &[0; 5000]);
/// assert_eq!(got.get(), 100, "the burst: 100 ms worth");
/// for _ in 0..100 {
///     h.advance(Duration::from_millis(10));
/// }
/// assert_eq!(got.get(), 1100, "plus one second at 1000 B/s");
/// ```
pub struct ThrottlingFactory<F> {
    inner: F,
    shared: Rc<RefCell<Shared>>,
    read_limit: Option<u64>,
    write_limit: Option<u64>,
    burst: Duration,
}

impl<F> fmt::Debug for ThrottlingFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottlingFactory")
            .field("read_limit", &self.read_limit)
            .field("write_limit", &self.write_limit)
            .field("burst", &self.burst)
            .field("interval", &self.shared.borrow().interval)
            .finish_non_exhaustive()
    }
}

impl<F> ThrottlingFactory<F> {
    /// Wraps `inner`, unlimited until a limit is set.
    pub fn new(inner: F) -> Self {
        ThrottlingFactory {
            inner,
            shared: Rc::new(RefCell::new(Shared {
                read: None,
                write: None,
                interval: DEFAULT_THROTTLE_INTERVAL,
                read_waiting: 0,
                round: None,
            })),
            read_limit: None,
            write_limit: None,
            burst: DEFAULT_BURST,
        }
    }

    /// Limits reading, over all connections together, to `bytes_per_second` (`None`:
    /// unlimited, the default). Restarts the bucket full.
    pub fn set_read_limit(&mut self, bytes_per_second: Option<u64>) -> &mut Self {
        self.read_limit = bytes_per_second;
        let burst = self.effective_burst();
        self.shared.borrow_mut().read = bytes_per_second.map(|rate| Bucket::new(rate, burst));
        self
    }

    /// The bucket size as time: the burst, but at least two refill intervals, or a connection
    /// woken once per interval could not reach the rate.
    fn effective_burst(&self) -> Duration {
        self.burst.max(2 * self.shared.borrow().interval)
    }

    /// Limits writing, over all connections together, to `bytes_per_second` (`None`:
    /// unlimited, the default). Restarts the bucket full.
    pub fn set_write_limit(&mut self, bytes_per_second: Option<u64>) -> &mut Self {
        self.write_limit = bytes_per_second;
        let burst = self.effective_burst();
        self.shared.borrow_mut().write = bytes_per_second.map(|rate| Bucket::new(rate, burst));
        self
    }

    /// How much may move at once after an idle spell, as time at the limit's rate (at least
    /// one byte, and at least two refill intervals). Default [`DEFAULT_BURST`]. Restarts the
    /// buckets full.
    pub fn set_burst(&mut self, burst: Duration) -> &mut Self {
        self.burst = burst;
        let (read, write) = (self.read_limit, self.write_limit);
        self.set_read_limit(read).set_write_limit(write)
    }

    /// How often a throttled connection is looked at again, clamped to 1 ms ..= 1 s. Default
    /// [`DEFAULT_THROTTLE_INTERVAL`]. Each connection held back by a limit costs one timer
    /// firing per interval: with thousands of them, a longer interval is cheaper (and
    /// coarser). Restarts the buckets full.
    pub fn set_interval(&mut self, interval: Duration) -> &mut Self {
        self.shared.borrow_mut().interval = interval.clamp(INTERVAL_RANGE.0, INTERVAL_RANGE.1);
        let (read, write) = (self.read_limit, self.write_limit);
        self.set_read_limit(read).set_write_limit(write)
    }

    /// Builder form of [`set_read_limit`](Self::set_read_limit), by value.
    pub fn with_read_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.set_read_limit(bytes_per_second);
        self
    }

    /// Builder form of [`set_write_limit`](Self::set_write_limit), by value.
    pub fn with_write_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.set_write_limit(bytes_per_second);
        self
    }

    /// Builder form of [`set_burst`](Self::set_burst), by value.
    pub fn with_burst(mut self, burst: Duration) -> Self {
        self.set_burst(burst);
        self
    }

    /// Builder form of [`set_interval`](Self::set_interval), by value.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.set_interval(interval);
        self
    }

    /// The read limit in bytes per second.
    pub fn read_limit(&self) -> Option<u64> {
        self.read_limit
    }

    /// The write limit in bytes per second.
    pub fn write_limit(&self) -> Option<u64> {
        self.write_limit
    }

    /// The wrapped factory.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F> ThrottlingFactory<F> {
    fn wrap(&self, inner: Box<dyn Protocol>) -> Box<dyn Protocol> {
        Box::new(Throttled {
            inner,
            shared: self.shared.clone(),
            pending: Vec::new(),
            pending_start: 0,
            read_held: false,
            inner_read_paused: false,
            write_held: false,
            reactor_paused: false,
            timer: None,
            eof_deferred: false,
        })
    }
}

impl<F: Factory> Factory for ThrottlingFactory<F> {
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        let inner = self.inner.build_protocol(peer)?;
        Some(self.wrap(inner))
    }
    fn handshake_failed(&mut self, peer: Address, reason: &torsion_reactor::DisconnectReason) {
        self.inner.handshake_failed(peer, reason);
    }
}

/// Outgoing connections share the same buckets.
impl<F: ClientFactory> ClientFactory for ThrottlingFactory<F> {
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        let inner = self.inner.build_protocol(peer);
        self.wrap(inner)
    }

    fn client_connection_failed(&mut self, cx: &mut LoopCtx<'_>, reason: torsion_reactor::Error) {
        self.inner.client_connection_failed(cx, reason);
    }
}

/// One throttled connection.
struct Throttled {
    inner: Box<dyn Protocol>,
    shared: Rc<RefCell<Shared>>,
    /// Bytes read but not yet covered by read tokens; `pending[pending_start..]` is left.
    pending: Vec<u8>,
    pending_start: usize,
    /// We keep reading paused (read bucket empty or bytes held back).
    read_held: bool,
    /// Whether the wrapped protocol itself wants reading paused.
    inner_read_paused: bool,
    /// The write bucket is in debt: the wrapped protocol is paused as a producer.
    write_held: bool,
    /// The reactor paused the wrapped protocol (write buffer above its high mark).
    reactor_paused: bool,
    /// Our refill timer.
    timer: Option<TimerId>,
    /// The peer's FIN arrived while bytes were held back; pass it on after them.
    eof_deferred: bool,
}

impl Throttled {
    fn pending_len(&self) -> usize {
        self.pending.len() - self.pending_start
    }

    /// Calls the wrapped protocol. While we hold reading paused, the wrapped protocol still
    /// sees (and sets) its own pause state; bytes it writes are charged to the write bucket.
    fn forward<R>(&mut self, cx: &mut Ctx<'_>, f: impl FnOnce(&mut dyn Protocol, &mut Ctx<'_>) -> R) -> R {
        let metering = self.shared.borrow().write.is_some();
        let before = if metering { cx.transport().bytes_written() } else { 0 };
        if self.read_held && !self.inner_read_paused {
            cx.transport().resume_reading();
        }
        let result = f(&mut *self.inner, cx);
        self.inner_read_paused = cx.transport().is_reading_paused();
        if self.read_held {
            cx.transport().pause_reading();
        }
        if metering {
            let wrote = cx.transport().bytes_written().saturating_sub(before);
            if wrote > 0 {
                self.charge_write(cx, usize::try_from(wrote).unwrap_or(usize::MAX));
            }
        }
        result
    }

    fn charge_write(&mut self, cx: &mut Ctx<'_>, bytes: usize) {
        let in_debt = {
            let mut shared = self.shared.borrow_mut();
            let Some(bucket) = shared.write.as_mut() else { return };
            bucket.refill(cx.now());
            bucket.take(bytes);
            bucket.tokens < 0
        };
        if in_debt && !self.write_held {
            self.write_held = true;
            tracing::trace!("write limit reached: pausing the producer");
            if !self.reactor_paused {
                self.forward(cx, |p, cx| p.pause_producing(cx));
            }
            self.ensure_timer(cx);
        }
    }

    fn hold_reading(&mut self, cx: &mut Ctx<'_>) {
        if !self.read_held {
            tracing::trace!("read limit reached: pausing reading");
            self.read_held = true;
            self.shared.borrow_mut().read_waiting += 1;
            cx.transport().pause_reading();
        }
        self.ensure_timer(cx);
    }

    fn release_reading(&mut self, cx: &mut Ctx<'_>) {
        if self.read_held {
            self.read_held = false;
            let mut shared = self.shared.borrow_mut();
            shared.read_waiting = shared.read_waiting.saturating_sub(1);
        }
        if !self.inner_read_paused {
            cx.transport().resume_reading();
        }
    }

    fn ensure_timer(&mut self, cx: &mut Ctx<'_>) {
        if self.timer.is_some() {
            return;
        }
        let delay = {
            let mut shared = self.shared.borrow_mut();
            let interval = shared.interval;
            let now = cx.now();
            let mut delay: Option<Duration> = None;
            if self.read_held {
                delay = Some(interval);
            }
            if self.write_held {
                let repaid = shared.write.as_mut().and_then(|b| {
                    b.refill(now);
                    b.wait_for(0)
                });
                let d = repaid.map_or(interval, |d| d.max(interval));
                delay = Some(delay.map_or(d, |r| r.min(d)));
            }
            delay
        };
        if let Some(delay) = delay {
            self.timer = Some(cx.set_timer(delay));
        }
    }

    /// Our timer: hand on held-back bytes, release reading and the producer when the buckets
    /// allow.
    fn tick(&mut self, cx: &mut Ctx<'_>) {
        self.timer = None;
        if self.read_held {
            self.tick_read(cx);
        }
        if self.write_held {
            let repaid = {
                let mut shared = self.shared.borrow_mut();
                match shared.write.as_mut() {
                    None => true,
                    Some(bucket) => {
                        bucket.refill(cx.now());
                        bucket.tokens >= 0
                    }
                }
            };
            if repaid {
                self.write_held = false;
                tracing::trace!("write debt repaid: resuming the producer");
                if !self.reactor_paused {
                    self.forward(cx, |p, cx| p.resume_producing(cx));
                }
            }
        }
        if self.read_held || self.write_held {
            self.ensure_timer(cx);
        }
    }

    /// Hands the first `n` held-back bytes to the wrapped protocol.
    fn deliver_pending(&mut self, cx: &mut Ctx<'_>, n: usize) {
        if n == 0 {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let start = self.pending_start;
        self.forward(cx, |p, cx| p.data_received(cx, &pending[start..start + n]));
        self.pending = pending;
        self.pending_start += n;
        if self.pending_start == self.pending.len() {
            self.pending.clear();
            self.pending_start = 0;
        } else if self.pending_start >= self.pending.len() / 2 {
            // Drop the delivered front so the buffer cannot creep.
            self.pending.drain(..self.pending_start);
            self.pending_start = 0;
        }
    }

    fn tick_read(&mut self, cx: &mut Ctx<'_>) {
        let (allowed, left) = {
            let mut shared = self.shared.borrow_mut();
            let n = shared.read_share(cx.now(), self.pending_len());
            (n, shared.read.as_ref().map_or(usize::MAX, Bucket::available))
        };
        self.deliver_pending(cx, allowed);
        if self.pending_len() > 0 || left == 0 {
            return;
        }
        self.release_reading(cx);
        if self.eof_deferred {
            self.eof_deferred = false;
            if !self.forward(cx, |p, cx| p.eof_received(cx)) {
                cx.transport().lose_connection();
            }
        }
    }
}

impl Drop for Throttled {
    fn drop(&mut self) {
        if self.read_held {
            let mut shared = self.shared.borrow_mut();
            shared.read_waiting = shared.read_waiting.saturating_sub(1);
        }
    }
}

/// Every callback goes through [`Wrapper`]; each one is overridden here because each either
/// runs inside `forward` (which keeps reading held and charges writes to the write bucket) or
/// holds input, EOF or the producer back.
impl Wrapper for Throttled {
    type Inner = dyn Protocol;

    fn inner(&mut self) -> &mut dyn Protocol {
        &mut *self.inner
    }

    fn on_connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.forward(cx, |p, cx| p.connection_made(cx));
    }

    fn on_data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if self.pending_len() > 0 {
            // Only if something resumed reading behind our back (a proxy's other side,
            // through `transport_for`): keep the order, and keep memory bounded by handing
            // on the oldest bytes on credit; the debt delays everything after them.
            self.pending.extend_from_slice(data);
            let excess = self.pending_len().saturating_sub(MAX_HELD);
            if excess > 0 {
                if let Some(bucket) = self.shared.borrow_mut().read.as_mut() {
                    bucket.refill(cx.now());
                    bucket.take(excess);
                }
                self.deliver_pending(cx, excess);
            }
            self.hold_reading(cx);
            return;
        }
        let (allowed, left) = {
            let mut shared = self.shared.borrow_mut();
            match shared.read.as_mut() {
                None => (data.len(), usize::MAX),
                Some(bucket) => {
                    bucket.refill(cx.now());
                    let n = bucket.available().min(data.len());
                    bucket.take(n);
                    (n, bucket.available())
                }
            }
        };
        if allowed > 0 {
            self.forward(cx, |p, cx| p.data_received(cx, &data[..allowed]));
        }
        if allowed < data.len() {
            self.pending.extend_from_slice(&data[allowed..]);
        }
        if allowed < data.len() || left == 0 {
            self.hold_reading(cx);
        }
    }

    fn on_eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        if self.pending_len() > 0 {
            self.eof_deferred = true;
            return true;
        }
        self.forward(cx, |p, cx| p.eof_received(cx))
    }

    fn on_connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.pending = Vec::new();
        self.timer = None;
        self.inner.connection_lost(cx, reason);
    }

    fn on_timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        if self.timer == Some(timer) {
            self.tick(cx);
        } else {
            self.forward(cx, |p, cx| p.timer_fired(cx, timer));
        }
    }

    fn on_pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.reactor_paused = true;
        if !self.write_held {
            self.forward(cx, |p, cx| p.pause_producing(cx));
        }
    }

    fn on_resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.reactor_paused = false;
        if !self.write_held {
            self.forward(cx, |p, cx| p.resume_producing(cx));
        }
    }
}
