//! Idle timeouts on the manual clock: exact to the nanosecond, reset by reads (and by writes
//! when asked), changed and cancelled at run time, cheap under a steady stream of reads; a
//! framed handler (`LineReceiver`, `NetstringReceiver`) says goodbye in its own framing from
//! the timeout hook; the builder forms.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion_protocols::framing::NetstringReceiver;
use torsion_protocols::policies::{
    TimeoutFactory, TimeoutHandle, TimeoutProtocol, DEFAULT_ABORT_AFTER, DEFAULT_IDLE_TIMEOUT,
};
use torsion_protocols::{Echo, LineCtx, LineHandler, LineReceiver, StringCtx, StringHandler};
use torsion_reactor::testing::{Call, Harness};
use torsion_reactor::{ConnId, Ctx, DisconnectReason, Protocol, TimerId};

const NS: Duration = Duration::from_nanos(1);
const SEC: Duration = Duration::from_secs(1);

fn accept(h: &mut Harness, protocol: impl Protocol) -> ConnId {
    let mut protocol = Some(Box::new(protocol) as Box<dyn Protocol>);
    h.accept(&mut move |_| protocol.take()).expect("accepted")
}

fn echo_with_timeout(h: &mut Harness, timeout: Duration) -> ConnId {
    accept(h, TimeoutProtocol::new(Echo, Some(timeout)))
}

/// Moves time by `total` in steps of at most 100 ms, so timers set while time passes fire
/// when they are due (one big `advance` runs a re-armed timer late).
fn walk(h: &mut Harness, total: Duration) {
    let step = Duration::from_millis(100);
    let mut left = total;
    while left > step {
        h.advance(step);
        left -= step;
    }
    h.advance(left);
}

fn timer_firings(h: &Harness, id: ConnId) -> usize {
    h.calls(id).iter().filter(|c| matches!(c, Call::Timer(_))).count()
}

#[test]
fn fires_exactly_at_the_deadline_not_before() {
    let mut h = Harness::new();
    let id = echo_with_timeout(&mut h, Duration::from_secs(10));
    h.advance(Duration::from_secs(10) - NS);
    assert!(h.is_open(id), "closed before the deadline");
    h.advance(NS);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
    assert!(h.fin_sent(id), "a timeout closes cleanly (FIN), not with a reset");
    assert!(!h.rst_sent(id));
}

#[test]
fn every_read_restarts_the_idle_period() {
    let mut h = Harness::new();
    let id = echo_with_timeout(&mut h, Duration::from_secs(10));
    // A read every 9.9 s for 100 reads: never idle for 10 s.
    for _ in 0..100 {
        h.advance(Duration::from_millis(9_900));
        h.feed(id, b"x");
        assert!(h.is_open(id));
    }
    assert_eq!(h.take_written(id).len(), 100, "data still flows through the wrapper");
    h.advance(Duration::from_secs(10) - NS);
    assert!(h.is_open(id), "closed before 10 s after the last read");
    h.advance(NS);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
}

#[test]
fn reads_cost_no_timer_work() {
    let mut h = Harness::new();
    let id = echo_with_timeout(&mut h, Duration::from_secs(10));
    // 1000 reads, one every 100 ms: 100 s of traffic.
    for _ in 0..1000 {
        h.advance(Duration::from_millis(100));
        h.feed(id, b"x");
    }
    // The single timer fires once per idle period and re-arms for the rest: about 10 firings
    // in 100 s, not one timer operation per read.
    let fired = timer_firings(&h, id);
    assert!(fired <= 11, "the idle timer fired {fired} times for 1000 reads");
    assert!(h.is_open(id));
    assert!(h.reactor().timer_count() <= 1, "one pending timer at most");
}

/// Writes "tick" every 3 s from its own timer, `ticks` times.
struct Ticker {
    ticks: usize,
    timer: Option<TimerId>,
    seen: Rc<RefCell<Vec<TimerId>>>,
}

impl Protocol for Ticker {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.timer = Some(cx.set_timer(Duration::from_secs(3)));
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        assert_eq!(Some(timer), self.timer, "the wrapper passed on a timer that is not ours");
        self.seen.borrow_mut().push(timer);
        cx.transport().write(b"tick");
        self.ticks -= 1;
        if self.ticks > 0 {
            self.timer = Some(cx.set_timer(Duration::from_secs(3)));
        }
    }
}

fn ticker(ticks: usize, seen: &Rc<RefCell<Vec<TimerId>>>) -> Ticker {
    Ticker { ticks, timer: None, seen: seen.clone() }
}

#[test]
fn writes_do_not_reset_by_default_and_inner_timers_pass_through() {
    let mut h = Harness::new();
    let seen = Rc::default();
    let id = accept(&mut h, TimeoutProtocol::new(ticker(100, &seen), Some(Duration::from_secs(10))));
    walk(&mut h, Duration::from_secs(10) - NS);
    assert!(h.is_open(id));
    assert_eq!(seen.borrow().len(), 3, "the wrapped protocol's own timers fire through the wrapper");
    assert_eq!(h.take_written(id), b"ticktickticktick"[..12].to_vec());
    h.advance(NS);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut), "writes alone keep nothing alive");
}

#[test]
fn write_reset_option_counts_writes_as_activity() {
    let mut h = Harness::new();
    let seen = Rc::default();
    let mut protocol = TimeoutProtocol::new(ticker(20, &seen), Some(Duration::from_secs(10)));
    protocol.set_reset_on_write(true);
    let id = accept(&mut h, protocol);
    // 20 ticks, the last at 60 s; each write restarts the 10 s period.
    walk(&mut h, Duration::from_secs(60));
    assert_eq!(seen.borrow().len(), 20);
    assert!(h.is_open(id));
    h.advance(Duration::from_secs(10) - NS);
    assert!(h.is_open(id), "closed before 10 s after the last write");
    h.advance(NS);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
}

/// Commands change the timeout through the handle: `OFF` cancels it, `S<n>` sets n seconds.
struct Commands {
    timeout: TimeoutHandle,
}

impl Protocol for Commands {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        let text = std::str::from_utf8(data).unwrap_or("");
        if text == "OFF" {
            self.timeout.set_timeout(cx, None);
        } else if let Some(secs) = text.strip_prefix('S').and_then(|s| s.parse().ok()) {
            self.timeout.set_timeout(cx, Some(Duration::from_secs(secs)));
        }
    }
}

fn commands(h: &mut Harness, timeout: Duration) -> (ConnId, Rc<RefCell<Option<TimeoutHandle>>>) {
    let handle = Rc::new(RefCell::new(None));
    let keep = handle.clone();
    let protocol = TimeoutProtocol::build(Some(timeout), move |timeout| {
        *keep.borrow_mut() = Some(timeout.clone());
        Commands { timeout }
    });
    (accept(h, protocol), handle)
}

#[test]
fn the_inner_protocol_cancels_its_timeout() {
    let mut h = Harness::new();
    let (id, handle) = commands(&mut h, Duration::from_secs(10));
    h.advance(Duration::from_secs(5));
    h.feed(id, b"OFF");
    assert_eq!(handle.borrow().as_ref().unwrap().timeout(), None);
    h.advance(Duration::from_secs(3600));
    assert!(h.is_open(id), "a cancelled timeout fired");
    // And turns it on again: restarted from now.
    h.feed(id, b"S2");
    h.advance(Duration::from_secs(2) - NS);
    assert!(h.is_open(id));
    h.advance(NS);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
}

#[test]
fn re_enabling_before_the_old_timer_fires_uses_the_new_deadline() {
    let mut h = Harness::new();
    let (id, _) = commands(&mut h, Duration::from_secs(10));
    h.feed(id, b"OFF");
    h.advance(Duration::from_secs(1));
    h.feed(id, b"S30"); // the old timer (due at 10 s) is still pending: it must not close us
    h.advance(Duration::from_secs(30) - NS);
    assert!(h.is_open(id), "the stale timer closed the connection");
    h.advance(NS);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
}

#[test]
fn shortening_the_timeout_moves_the_pending_timer_earlier() {
    let mut h = Harness::new();
    let (id, handle) = commands(&mut h, Duration::from_secs(600));
    h.advance(Duration::from_secs(1));
    h.feed(id, b"S5");
    let handle = handle.borrow().clone().unwrap();
    assert_eq!(handle.timeout(), Some(Duration::from_secs(5)));
    h.advance(Duration::from_secs(5) - NS);
    assert!(h.is_open(id));
    h.advance(NS);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
    assert!(handle.timed_out());
}

#[test]
fn a_fired_timeout_is_not_revived_by_later_reads() {
    let mut h = Harness::new();
    let mut protocol = TimeoutProtocol::new(Echo, Some(Duration::from_secs(1)));
    // A hook that keeps the connection: the timeout is then off until set again.
    let fired = Rc::new(RefCell::new(0));
    let count = fired.clone();
    protocol.on_timeout(move |_echo, _cx| *count.borrow_mut() += 1);
    let handle = protocol.handle();
    let id = accept(&mut h, protocol);
    h.advance(SEC);
    assert_eq!(*fired.borrow(), 1);
    assert!(handle.timed_out());
    h.feed(id, b"late");
    h.advance(Duration::from_secs(100));
    assert_eq!(*fired.borrow(), 1, "reads re-armed a fired timeout");
    assert!(h.is_open(id), "the hook replaced the default close");
}

/// Says goodbye on timeout, through the hook.
struct Polite;

impl Protocol for Polite {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

#[test]
fn on_timeout_hook_replaces_the_default_action() {
    let mut h = Harness::new();
    let mut protocol = TimeoutProtocol::new(Polite, Some(Duration::from_secs(2)));
    protocol.on_timeout(|_polite: &mut Polite, cx| {
        cx.transport().write(b"idle too long, bye\r\n");
        cx.transport().lose_connection();
    });
    let id = accept(&mut h, protocol);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.take_written(id), b"idle too long, bye\r\n");
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
}

#[test]
fn timed_out_connection_still_flushing_is_aborted_after_the_grace_period() {
    let mut h = Harness::new();
    let id = echo_with_timeout(&mut h, Duration::from_secs(10));
    h.set_peer_window(id, Some(0)); // the peer stops reading
    h.feed(id, &[b'a'; 1000]); // echoed into a buffer that cannot drain
    h.advance(Duration::from_secs(10));
    assert!(h.is_open(id), "a clean close waits for the flush");
    assert!(!h.fin_sent(id));
    h.advance(DEFAULT_ABORT_AFTER - NS);
    assert!(h.is_open(id));
    h.advance(NS);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
    assert!(h.rst_sent(id), "aborted with a reset after the grace period");
}

#[test]
fn timeout_factory_wraps_every_protocol_with_the_default_timeout() {
    let mut h = Harness::new();
    let mut factory = TimeoutFactory::new(|_| Some(Echo));
    assert_eq!(factory.timeout(), Some(DEFAULT_IDLE_TIMEOUT));
    assert_eq!(DEFAULT_IDLE_TIMEOUT, Duration::from_secs(1800), "Twisted's TimeoutFactory default");
    let a = h.accept(&mut factory).unwrap();
    factory.set_timeout(Some(Duration::from_secs(5))).set_reset_on_write(true);
    let b = h.accept(&mut factory).unwrap();
    h.feed(a, b"ping");
    assert_eq!(h.take_written(a), b"ping");
    h.advance(Duration::from_secs(5));
    assert_eq!(h.disconnect_reason(b), Some(DisconnectReason::TimedOut));
    h.advance(DEFAULT_IDLE_TIMEOUT - Duration::from_secs(5) - NS);
    assert!(h.is_open(a));
    h.advance(NS);
    assert_eq!(h.disconnect_reason(a), Some(DisconnectReason::TimedOut));
}

#[test]
fn factory_without_timeout_never_closes_and_refusals_pass_through() {
    let mut h = Harness::new();
    let mut factory = TimeoutFactory::new(|_| Some(Echo));
    factory.set_timeout(None);
    let id = h.accept(&mut factory).unwrap();
    h.advance(Duration::from_secs(100_000));
    assert!(h.is_open(id));
    let mut refusing = TimeoutFactory::new(|_| None::<Box<dyn Protocol>>);
    assert!(h.accept(&mut refusing).is_none());
}

#[test]
fn timer_is_gone_once_the_connection_closes() {
    let mut h = Harness::new();
    let id = echo_with_timeout(&mut h, Duration::from_secs(10));
    h.feed_eof(id);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
    assert_eq!(h.reactor().timer_count(), 0, "the idle timer outlived its connection");
}

/// Sets another connection's timeout through that connection's handle.
struct Remote {
    other: Rc<RefCell<Option<TimeoutHandle>>>,
}

impl Protocol for Remote {
    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        if let Some(handle) = self.other.borrow().as_ref() {
            handle.set_timeout(cx, Some(Duration::from_secs(2)));
        }
    }
}

#[test]
fn a_change_made_from_another_connection_applies_at_the_next_callback() {
    let mut h = Harness::new();
    let (b, handle) = commands(&mut h, Duration::from_secs(1000));
    let a = accept(&mut h, Remote { other: handle.clone() });
    h.feed(a, b"set b to 2 s");
    assert_eq!(handle.borrow().as_ref().unwrap().timeout(), Some(Duration::from_secs(2)));
    // Recorded, but B's timer is still the old one until B's next callback.
    h.advance(Duration::from_secs(10));
    assert!(h.is_open(b));
    h.feed(b, b"hello");
    h.advance(Duration::from_secs(2) - NS);
    assert!(h.is_open(b));
    h.advance(NS);
    assert_eq!(h.disconnect_reason(b), Some(DisconnectReason::TimedOut));
    assert!(h.is_open(a));
}

/// A client factory for an outgoing echo connection.
struct EchoClient;

impl torsion_reactor::ClientFactory for EchoClient {
    fn build_protocol(&mut self, _peer: torsion_reactor::Address) -> Box<dyn Protocol> {
        Box::new(Echo)
    }
}

#[test]
fn timeout_factory_also_wraps_outgoing_connections() {
    let mut h = Harness::new();
    let mut factory = TimeoutFactory::new(EchoClient);
    factory.set_timeout(Some(Duration::from_secs(3)));
    let id = h.connect(&mut factory);
    h.advance(Duration::from_secs(3) - NS);
    assert!(h.is_open(id));
    h.advance(NS);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
}

/// A line protocol that says goodbye through its own `send_line` when the idle timeout fires.
#[derive(Default)]
struct Greeter {
    goodbyes: usize,
}

impl Greeter {
    /// The goodbye, as a handler method: it needs a `LineCtx`, which only the receiver makes.
    fn time_out(&mut self, lx: &mut LineCtx<'_, '_>) {
        self.goodbyes += 1;
        lx.send_line(b"idle too long, goodbye");
        lx.lose_connection_with(DisconnectReason::TimedOut);
    }
}

impl LineHandler for Greeter {
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        lx.send_line(line);
    }
}

#[test]
fn a_line_receiver_handler_sends_a_goodbye_line_before_the_timeout_close() {
    let mut h = Harness::new();
    let protocol = TimeoutProtocol::new(LineReceiver::new(Greeter::default()), Some(Duration::from_secs(5)))
        .with_on_timeout(|receiver: &mut LineReceiver<Greeter>, cx| {
            receiver.call_handler(cx, |greeter, lx| greeter.time_out(lx));
            assert_eq!(receiver.handler().goodbyes, 1);
        });
    let id = accept(&mut h, protocol);
    h.feed(id, b"hello\r\n");
    assert_eq!(h.take_written(id), b"hello\r\n");
    // Half a line, then silence: the line is never delivered; the goodbye comes after the echo.
    h.feed(id, b"unfini");
    h.advance(Duration::from_secs(5) - NS);
    assert!(h.is_open(id));
    assert!(h.take_written(id).is_empty());
    h.advance(NS);
    assert_eq!(h.take_written(id), b"idle too long, goodbye\r\n");
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
    assert!(h.fin_sent(id), "the goodbye is flushed, then a clean FIN");
    assert!(!h.rst_sent(id));
}

#[test]
fn a_line_receiver_goodbye_uses_the_receiver_s_delimiter() {
    let mut h = Harness::new();
    let receiver = LineReceiver::new(Greeter::default()).with_delimiter(b"\n");
    let protocol = TimeoutProtocol::new(receiver, Some(Duration::from_secs(3))).with_on_timeout(
        |receiver: &mut LineReceiver<Greeter>, cx| {
            receiver.call_handler(cx, |greeter, lx| greeter.time_out(lx))
        },
    );
    let id = accept(&mut h, protocol);
    h.advance(Duration::from_secs(3));
    assert_eq!(h.take_written(id), b"idle too long, goodbye\n");
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
}

/// A netstring protocol whose timeout hook sends one last string.
struct Farewell;

impl StringHandler for Farewell {
    fn string_received(&mut self, sx: &mut StringCtx<'_, '_>, data: &[u8]) {
        sx.send_string(data).expect("an echo fits");
    }
}

#[test]
fn a_string_receiver_handler_sends_a_last_string_before_the_timeout_close() {
    let mut h = Harness::new();
    let protocol = TimeoutProtocol::new(NetstringReceiver::netstring(Farewell), Some(Duration::from_secs(2)))
        .with_on_timeout(|receiver: &mut NetstringReceiver<Farewell>, cx| {
            receiver.call_handler(cx, |_farewell, sx| {
                sx.send_string(b"bye").expect("fits");
                sx.lose_connection_with(DisconnectReason::TimedOut);
            })
        });
    let id = accept(&mut h, protocol);
    h.feed(id, b"2:hi,");
    assert_eq!(h.take_written(id), b"2:hi,");
    h.advance(Duration::from_secs(2));
    assert_eq!(h.take_written(id), b"3:bye,");
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
}

#[test]
fn builder_forms_chain_into_box_and_match_the_setters() {
    let mut h = Harness::new();
    let seen = Rc::default();
    // with_reset_on_write(true): the ticks count as activity; with_abort_after(None): a
    // timed-out connection still flushing is never aborted.
    let wrapped = TimeoutProtocol::new(ticker(5, &seen), Some(Duration::from_secs(10)))
        .with_reset_on_write(true)
        .with_abort_after(None);
    let handle = wrapped.handle();
    let mut protocol = Some(Box::new(wrapped) as Box<dyn Protocol>);
    let id = h.accept(&mut move |_| protocol.take()).unwrap();
    h.set_peer_window(id, Some(0)); // the peer stops reading: the ticks stay buffered
    walk(&mut h, Duration::from_secs(15)); // ticks at 3, 6, 9, 12 and 15 s
    assert_eq!(seen.borrow().len(), 5);
    walk(&mut h, Duration::from_secs(10) - NS);
    assert!(!handle.timed_out(), "each write restarted the 10 s period");
    h.advance(NS);
    assert!(handle.timed_out(), "10 s after the last write");
    assert!(h.is_open(id), "timed out, but a clean close waits for the flush");
    walk(&mut h, DEFAULT_ABORT_AFTER * 2);
    assert!(h.is_open(id) && !h.rst_sent(id), "no grace abort with with_abort_after(None)");
    h.set_peer_window(id, None);
    h.run();
    assert_eq!(h.take_written(id), b"tick".repeat(5));
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));

    let mut factory = TimeoutFactory::new(|_| Some(Echo))
        .with_timeout(Some(Duration::from_secs(4)))
        .with_reset_on_write(false)
        .with_abort_after(Some(SEC));
    assert_eq!(factory.timeout(), Some(Duration::from_secs(4)));
    let id = h.accept(&mut factory).unwrap();
    h.set_peer_window(id, Some(0));
    h.feed(id, b"stuck");
    h.advance(Duration::from_secs(4));
    assert!(h.is_open(id), "flushing after the timeout");
    h.advance(SEC);
    assert!(h.rst_sent(id), "aborted after the 1 s grace set with with_abort_after");
}
