//! Timers on the injectable clock: deadline and scheduling order, no early firing, cancel,
//! reset, `is_active`, timers added by timers, looping calls (no bursts after a stall),
//! protocol timers over a real loopback connection, and panic isolation.
//!
//! Every reactor here reads a [`ManualClock`]: time moves only when the test advances it, and
//! `turn()` then never sleeps more than 10 ms of real time, so no test waits for a deadline.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use torsion_reactor::{Ctx, DisconnectReason, ManualClock, Protocol, Reactor, TimerId};
use torsion_tests::{localhost, run_until, WAIT};

const MS: Duration = Duration::from_millis(1);
const NS: Duration = Duration::from_nanos(1);

/// A reactor on a manual clock, and a clone of that clock to move time with.
fn manual() -> (Reactor, ManualClock) {
    let clock = ManualClock::new();
    let reactor = Reactor::with_clock(clock.clone()).expect("reactor");
    (reactor, clock)
}

fn turn(reactor: &mut Reactor) {
    reactor.turn().expect("reactor turn failed");
}

/// A shared list of what fired, in order.
type Fired<T> = Rc<RefCell<Vec<T>>>;

/// Schedules a timer that appends `tag` to `fired`.
fn record<T: 'static>(reactor: &mut Reactor, delay: Duration, fired: &Fired<T>, tag: T) -> TimerId {
    let fired = fired.clone();
    reactor.call_later(delay, move |_| fired.borrow_mut().push(tag))
}

#[test]
fn timers_fire_in_deadline_order() {
    let (mut reactor, clock) = manual();
    let fired: Fired<u32> = Fired::default();
    for delay in [30, 10, 40, 20, 50] {
        record(&mut reactor, delay * MS, &fired, delay);
    }
    assert_eq!(reactor.timer_count(), 5);

    clock.advance(10 * MS);
    turn(&mut reactor);
    assert_eq!(*fired.borrow(), [10]);

    // Several deadlines passed at once: all run in the same turn, earliest first.
    clock.advance(30 * MS);
    turn(&mut reactor);
    assert_eq!(*fired.borrow(), [10, 20, 30, 40]);

    clock.advance(10 * MS);
    turn(&mut reactor);
    assert_eq!(*fired.borrow(), [10, 20, 30, 40, 50]);
    assert_eq!(reactor.timer_count(), 0);
}

#[test]
fn equal_deadlines_fire_in_scheduling_order() {
    let (mut reactor, clock) = manual();
    let fired: Fired<usize> = Fired::default();
    // Ten timers on one deadline, with earlier and later ones scheduled in between.
    for i in 0..10 {
        record(&mut reactor, 5 * MS, &fired, i);
        record(&mut reactor, (if i % 2 == 0 { 7 } else { 3 }) * MS, &fired, 100 + i);
    }
    clock.advance(7 * MS);
    turn(&mut reactor);
    let fired = fired.borrow();
    assert_eq!(fired.len(), 20);
    assert_eq!(fired[..5], [101, 103, 105, 107, 109], "3 ms timers first, in scheduling order");
    assert_eq!(fired[5..15], (0..10).collect::<Vec<_>>(), "5 ms timers in scheduling order");
    assert_eq!(fired[15..], [100, 102, 104, 106, 108], "7 ms timers last, in scheduling order");
}

#[test]
fn a_timer_does_not_fire_before_its_deadline() {
    let (mut reactor, clock) = manual();
    let fired: Fired<()> = Fired::default();
    let id = record(&mut reactor, 100 * MS, &fired, ());

    clock.advance(100 * MS - NS);
    for _ in 0..3 {
        turn(&mut reactor);
    }
    assert!(fired.borrow().is_empty(), "fired 1 ns before its deadline");
    assert!(reactor.is_active(id));

    clock.advance(NS);
    turn(&mut reactor);
    assert_eq!(fired.borrow().len(), 1, "did not fire at its deadline");
}

#[test]
fn cancel_returns_true_once_and_the_timer_never_fires() {
    let (mut reactor, clock) = manual();
    let fired: Fired<&str> = Fired::default();
    let cancelled = record(&mut reactor, 10 * MS, &fired, "cancelled");
    let kept = record(&mut reactor, 10 * MS, &fired, "kept");

    assert!(reactor.cancel(cancelled), "the first cancel succeeds");
    assert!(!reactor.cancel(cancelled), "a second cancel is a no-op");
    assert!(!reactor.is_active(cancelled));
    assert_eq!(reactor.timer_count(), 1);

    clock.advance(Duration::from_secs(3600));
    for _ in 0..3 {
        turn(&mut reactor);
    }
    assert_eq!(*fired.borrow(), ["kept"]);
    assert!(!reactor.cancel(kept), "cancelling a timer that fired returns false");
    assert_eq!(reactor.timer_count(), 0);
}

#[test]
fn reset_moves_a_timer_later_and_earlier() {
    let (mut reactor, clock) = manual();
    let fired: Fired<&str> = Fired::default();
    let later = record(&mut reactor, 10 * MS, &fired, "later");
    let earlier = record(&mut reactor, 100 * MS, &fired, "earlier");

    // At t = 5 ms: `later` moves to t = 25 ms, `earlier` to t = 6 ms.
    clock.advance(5 * MS);
    assert!(reactor.reset(later, 20 * MS));
    assert!(reactor.reset(earlier, MS));
    assert_eq!(reactor.timer_count(), 2, "reset moves a timer, it does not add one");

    clock.advance(MS);
    turn(&mut reactor);
    assert_eq!(*fired.borrow(), ["earlier"], "moved earlier: fires at its new deadline");

    // The old deadline of `later` (t = 10 ms) passes without it firing.
    clock.advance(25 * MS - 6 * MS - NS);
    turn(&mut reactor);
    assert_eq!(*fired.borrow(), ["earlier"], "moved later: did not fire at its old deadline");

    clock.advance(NS);
    turn(&mut reactor);
    assert_eq!(*fired.borrow(), ["earlier", "later"]);

    assert!(!reactor.reset(later, MS), "a timer that fired cannot be reset");
    let gone = record(&mut reactor, MS, &fired, "gone");
    assert!(reactor.cancel(gone));
    assert!(!reactor.reset(gone, MS), "a cancelled timer cannot be reset");
    clock.advance(10 * MS);
    turn(&mut reactor);
    assert_eq!(*fired.borrow(), ["earlier", "later"]);
}

#[test]
fn is_active_until_the_timer_fires() {
    let (mut reactor, clock) = manual();
    let active_inside = Rc::new(Cell::new(None));
    let slot: Rc<Cell<Option<TimerId>>> = Rc::default();
    let (a, s) = (active_inside.clone(), slot.clone());
    let id = reactor.call_later(10 * MS, move |cx| a.set(Some(cx.is_active(s.get().unwrap()))));
    slot.set(Some(id));

    assert!(reactor.is_active(id));
    clock.advance(9 * MS);
    turn(&mut reactor);
    assert!(reactor.is_active(id), "still pending before its deadline");

    clock.advance(MS);
    turn(&mut reactor);
    // As in Twisted, a one-shot timer is no longer active once it has been called.
    assert_eq!(active_inside.get(), Some(false), "inside its own callback");
    assert!(!reactor.is_active(id), "after firing");
}

#[test]
fn a_timer_scheduled_by_a_timer_fires_next_turn_not_in_the_same_one() {
    let (mut reactor, clock) = manual();
    let fired: Fired<usize> = Fired::default();

    /// Records `n`, then schedules `n + 1` with zero delay, up to 5.
    fn chain(cx: &mut Ctx<'_>, fired: Fired<usize>, n: usize) {
        fired.borrow_mut().push(n);
        if n < 5 {
            cx.call_later_fn(Duration::ZERO, move |cx| chain(cx, fired, n + 1));
        }
    }

    let f = fired.clone();
    reactor.call_later(MS, move |cx| chain(cx, f, 1));
    clock.advance(MS);
    // Time no longer moves: each turn runs exactly one link of the chain.
    for turns in 1..=5 {
        turn(&mut reactor);
        assert_eq!(*fired.borrow(), (1..=turns).collect::<Vec<_>>(), "after {turns} turns");
    }
    turn(&mut reactor);
    assert_eq!(fired.borrow().len(), 5);
    assert_eq!(reactor.timer_count(), 0);
}

#[test]
fn looping_call_runs_at_once_then_once_per_interval() {
    let (mut reactor, clock) = manual();
    let interval = 100 * MS;
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    let id = reactor.looping_call(interval, move |_| c.set(c.get() + 1));
    assert_eq!(calls.get(), 0, "nothing runs before the loop turns");

    turn(&mut reactor);
    assert_eq!(calls.get(), 1, "the first call is on the first turn");
    turn(&mut reactor);
    assert_eq!(calls.get(), 1, "no second call without time passing");

    for n in 2..=5 {
        clock.advance(interval - NS);
        turn(&mut reactor);
        assert_eq!(calls.get(), n - 1, "call {n} came before its interval");
        clock.advance(NS);
        turn(&mut reactor);
        assert_eq!(calls.get(), n, "call {n} did not come at its interval");
    }
    assert!(reactor.is_active(id));
    assert_eq!(reactor.timer_count(), 1, "a looping call is one timer");
}

#[test]
fn a_late_looping_call_runs_once_and_resumes_on_the_next_interval_boundary() {
    let (mut reactor, clock) = manual();
    let interval = 100 * MS;
    let start = reactor.now();
    let calls: Fired<Duration> = Fired::default();
    let c = calls.clone();
    reactor.looping_call(interval, move |cx| c.borrow_mut().push(cx.now() - start));
    turn(&mut reactor);
    clock.advance(interval);
    turn(&mut reactor);
    assert_eq!(*calls.borrow(), [Duration::ZERO, interval]);

    // A stall of 3.5 intervals (t = 100 ms -> 450 ms): one call, no burst of the missed ones.
    clock.advance(interval * 7 / 2);
    for _ in 0..3 {
        turn(&mut reactor);
    }
    assert_eq!(*calls.borrow(), [Duration::ZERO, interval, 450 * MS], "missed intervals must be skipped");

    // The next call is at the next boundary of the original schedule, t = 500 ms.
    clock.advance(50 * MS - NS);
    turn(&mut reactor);
    assert_eq!(calls.borrow().len(), 3, "called before the next interval boundary");
    clock.advance(NS);
    turn(&mut reactor);
    assert_eq!(calls.borrow().last(), Some(&(500 * MS)));
    assert_eq!(calls.borrow().len(), 4);
}

#[test]
fn cancelling_a_looping_call_from_outside_stops_it() {
    let (mut reactor, clock) = manual();
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    let id = reactor.looping_call(10 * MS, move |_| c.set(c.get() + 1));
    turn(&mut reactor);
    clock.advance(10 * MS);
    turn(&mut reactor);
    assert_eq!(calls.get(), 2);

    assert!(reactor.cancel(id));
    assert!(!reactor.cancel(id));
    assert!(!reactor.is_active(id));
    for _ in 0..5 {
        clock.advance(10 * MS);
        turn(&mut reactor);
    }
    assert_eq!(calls.get(), 2, "a cancelled looping call ran again");
    assert_eq!(reactor.timer_count(), 0);
}

#[test]
fn a_looping_call_can_cancel_itself_from_its_callback() {
    let (mut reactor, clock) = manual();
    let calls = Rc::new(Cell::new(0u32));
    let cancel_result = Rc::new(Cell::new(None));
    let me: Rc<Cell<Option<TimerId>>> = Rc::default();
    let (c, r, m) = (calls.clone(), cancel_result.clone(), me.clone());
    let id = reactor.looping_call(10 * MS, move |cx| {
        c.set(c.get() + 1);
        if c.get() == 3 {
            let id = m.get().expect("id stored before the first turn");
            assert!(cx.is_active(id), "a looping call is active while it runs");
            r.set(Some(cx.cancel(id)));
        }
    });
    me.set(Some(id));
    turn(&mut reactor);
    for _ in 0..6 {
        clock.advance(10 * MS);
        turn(&mut reactor);
    }
    assert_eq!(cancel_result.get(), Some(true), "cancel from inside its own callback succeeds");
    assert_eq!(calls.get(), 3, "the looping call ran after cancelling itself");
    assert!(!reactor.is_active(id));
    assert_eq!(reactor.timer_count(), 0);
}

/// What a [`Ticker`] saw.
#[derive(Debug, Default)]
struct TickLog {
    scheduled: Vec<TimerId>,
    fired: Vec<TimerId>,
    lost: Vec<String>,
}

/// Schedules protocol timers at 1 s, 1.5 s and 2 s; cancels the 1.5 s one when the first fires;
/// writes `tick N` on each firing.
struct Ticker {
    log: Rc<RefCell<TickLog>>,
}

impl Protocol for Ticker {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let ids = [cx.call_later(Duration::from_secs(1)), cx.call_later(Duration::from_millis(1500))];
        let last = cx.call_later(Duration::from_secs(2));
        self.log.borrow_mut().scheduled.extend([ids[0], ids[1], last]);
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        let mut log = self.log.borrow_mut();
        log.fired.push(timer);
        if log.fired.len() == 1 {
            let middle = log.scheduled[1];
            assert!(cx.cancel(middle), "a protocol timer cancels like any other");
        }
        let tick = format!("tick {}", log.fired.len());
        cx.transport().write(tick.as_bytes());
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.log.borrow_mut().lost.push(format!("{reason:?}"));
    }
}

fn client(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

#[test]
fn protocol_timers_call_timer_fired_with_their_id_over_loopback() {
    let (mut reactor, clock) = manual();
    let log = Rc::new(RefCell::new(TickLog::default()));
    let l = log.clone();
    let port = reactor
        .listen_tcp(localhost(), move |_| Some(Box::new(Ticker { log: l.clone() }) as Box<dyn Protocol>))
        .unwrap();
    let mut peer = client(port.local_addr());
    run_until(&mut reactor, "connection_made", |_| !log.borrow().scheduled.is_empty());
    let [first, middle, last] = log.borrow().scheduled[..] else { panic!("three timers scheduled") };
    assert!(first != middle && middle != last && first != last, "timer ids are distinct");
    assert_eq!(reactor.timer_count(), 3);

    clock.advance(Duration::from_secs(1));
    run_until(&mut reactor, "first protocol timer", |_| !log.borrow().fired.is_empty());
    let mut tick = [0u8; 6];
    peer.read_exact(&mut tick).expect("first tick");
    assert_eq!(&tick, b"tick 1");

    clock.advance(Duration::from_secs(1));
    run_until(&mut reactor, "last protocol timer", |_| log.borrow().fired.len() == 2);
    peer.read_exact(&mut tick).expect("second tick");
    assert_eq!(&tick, b"tick 2");
    assert_eq!(log.borrow().fired, [first, last], "timer_fired gets each timer's own id, in order");
    assert_eq!(reactor.timer_count(), 0);
    assert!(log.borrow().lost.is_empty(), "{:?}", log.borrow().lost);
}

/// Schedules three far-off protocol timers; aborts itself when it receives `abort`.
struct Sleeper {
    fired: Rc<Cell<u32>>,
    lost: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Sleeper {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        for hours in 1..=3 {
            cx.call_later(Duration::from_secs(3600 * hours));
        }
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if data == b"abort" {
            cx.transport().abort_connection();
        }
    }

    fn timer_fired(&mut self, _cx: &mut Ctx<'_>, _timer: TimerId) {
        self.fired.set(self.fired.get() + 1);
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.lost.borrow_mut().push(format!("{reason:?}"));
    }
}

#[test]
fn protocol_timers_are_cancelled_when_the_connection_is_lost() {
    let (mut reactor, clock) = manual();
    let fired = Rc::new(Cell::new(0));
    let lost = Rc::new(RefCell::new(Vec::new()));
    let (f, l) = (fired.clone(), lost.clone());
    let port = reactor
        .listen_tcp(localhost(), move |_| {
            Some(Box::new(Sleeper { fired: f.clone(), lost: l.clone() }) as Box<dyn Protocol>)
        })
        .unwrap();
    let closer = client(port.local_addr());
    let mut aborted = client(port.local_addr());
    run_until(&mut reactor, "both connections made", |r| r.timer_count() == 6);
    assert_eq!(reactor.connection_count(), 2);

    // One ends by the peer's FIN, the other by our abort.
    drop(closer);
    run_until(&mut reactor, "first connection lost", |_| lost.borrow().len() == 1);
    assert_eq!(reactor.timer_count(), 3, "the closed connection's timers are cancelled");
    aborted.write_all(b"abort").unwrap();
    run_until(&mut reactor, "second connection lost", |_| lost.borrow().len() == 2);
    assert_eq!(*lost.borrow(), ["Clean", "Aborted"]);
    assert_eq!(reactor.connection_count(), 0);
    assert_eq!(reactor.timer_count(), 0, "the aborted connection's timers are cancelled");

    clock.advance(Duration::from_secs(4 * 3600));
    for _ in 0..3 {
        turn(&mut reactor);
    }
    assert_eq!(fired.get(), 0, "a timer of a lost connection fired");
}

/// A `Write` sink shared with a tracing subscriber, to read the log back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn a_panicking_timer_callback_is_logged_and_later_timers_still_fire() {
    use tracing_subscriber::util::SubscriberInitExt;

    let captured = Captured::default();
    let sink = captured.clone();
    let _log = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::ERROR)
        .finish()
        .set_default();

    let (mut reactor, clock) = manual();
    let fired: Fired<&str> = Fired::default();
    record(&mut reactor, MS, &fired, "before");
    reactor.call_later(MS, |_| panic!("timer boom 7f3a"));
    record(&mut reactor, MS, &fired, "same turn");
    record(&mut reactor, 2 * MS, &fired, "next turn");

    clock.advance(MS);
    turn(&mut reactor);
    assert_eq!(*fired.borrow(), ["before", "same turn"], "the timer after the panicking one ran");
    let log = captured.text();
    assert!(log.contains("ERROR") && log.contains("timer boom 7f3a"), "panic not logged; log: {log:?}");

    clock.advance(MS);
    turn(&mut reactor);
    assert_eq!(*fired.borrow(), ["before", "same turn", "next turn"], "the loop kept running");
}
