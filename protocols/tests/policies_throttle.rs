//! Throttling on the manual clock: over 10 simulated seconds the bytes delivered and written
//! stay within a tight bound of rate × time, shared by all of a factory's connections, with
//! held-back input bounded and pause/resume strictly alternating.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use torsion_protocols::policies::{ThrottlingFactory, DEFAULT_BURST, DEFAULT_THROTTLE_INTERVAL};
use torsion_protocols::wire::{chargen_pattern, Chargen};
use torsion_reactor::testing::{Call, Harness};
use torsion_reactor::{Address, ConnId, Ctx, DisconnectReason, Protocol, TimerId};

const STEP: Duration = Duration::from_millis(10);

/// What a [`Sink`] saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Data(usize),
    Eof,
    Pause,
    Resume,
    Lost(String),
}

/// Counts the bytes it is handed and records its callbacks; echoes if asked.
struct Sink {
    log: Rc<RefCell<Vec<Seen>>>,
    bytes: Rc<Cell<usize>>,
    echo: bool,
}

impl Protocol for Sink {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.bytes.set(self.bytes.get() + data.len());
        self.log.borrow_mut().push(Seen::Data(data.len()));
        if self.echo {
            cx.transport().write(data);
        }
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.log.borrow_mut().push(Seen::Eof);
        false
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.log.borrow_mut().push(Seen::Lost(format!("{reason:?}")));
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.log.borrow_mut().push(Seen::Pause);
        cx.transport().pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.log.borrow_mut().push(Seen::Resume);
        cx.transport().resume_reading();
    }
}

#[derive(Clone, Default)]
struct Probe {
    log: Rc<RefCell<Vec<Seen>>>,
    bytes: Rc<Cell<usize>>,
}

fn sink_factory(probe: &Probe, echo: bool) -> ThrottlingFactory<impl FnMut(Address) -> Option<Sink>> {
    let probe = probe.clone();
    ThrottlingFactory::new(move |_| Some(Sink { log: probe.log.clone(), bytes: probe.bytes.clone(), echo }))
}

/// Bytes the reactor read from the socket (the harness records the outer protocol's reads).
fn bytes_read(h: &Harness, id: ConnId) -> usize {
    h.calls(id).iter().map(|c| if let Call::Data(n) = c { *n } else { 0 }).sum()
}

#[test]
fn defaults() {
    assert_eq!(DEFAULT_THROTTLE_INTERVAL, Duration::from_millis(20));
    assert_eq!(DEFAULT_BURST, Duration::from_millis(100));
    let probe = Probe::default();
    let factory = sink_factory(&probe, false);
    assert_eq!((factory.read_limit(), factory.write_limit()), (None, None));
}

#[test]
fn unlimited_by_default_delivers_at_once() {
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, false);
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    h.feed(id, &vec![1; 1 << 20]);
    assert_eq!(probe.bytes.get(), 1 << 20);
    assert_eq!(h.reactor().timer_count(), 0);
}

#[test]
fn read_rate_over_ten_seconds_is_within_a_tight_bound() {
    const RATE: usize = 10_000;
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, false);
    factory.set_read_limit(Some(RATE as u64));
    let burst = RATE / 10; // 100 ms worth
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    h.feed(id, &vec![b'r'; 1 << 20]);
    assert_eq!(probe.bytes.get(), burst, "only the burst goes through at once");
    for step in 1..=1000usize {
        h.advance(STEP);
        let elapsed_ms = step * 10;
        let got = probe.bytes.get();
        let most = burst + RATE * elapsed_ms / 1000;
        // The refill timer runs every 20 ms: at most 20 ms worth behind.
        let least = (RATE * elapsed_ms / 1000).saturating_sub(RATE * 20 / 1000);
        assert!(got <= most, "at {elapsed_ms} ms: {got} bytes delivered, more than {most}");
        assert!(got >= least, "at {elapsed_ms} ms: {got} bytes delivered, fewer than {least}");
        // Held back in the wrapper: at most one read of the reactor's buffer.
        assert!(bytes_read(&h, id) - got <= 256 * 1024);
    }
    let got = probe.bytes.get();
    assert!((RATE * 10..=RATE * 10 + burst).contains(&got), "10 s at {RATE} B/s delivered {got}");
}

#[test]
fn the_read_limit_is_shared_by_every_connection_of_the_factory() {
    const RATE: usize = 30_000;
    let counters: Rc<RefCell<Vec<Rc<Cell<usize>>>>> = Rc::default();
    let for_factory = counters.clone();
    let mut factory = ThrottlingFactory::new(move |_| {
        let bytes = Rc::new(Cell::new(0));
        for_factory.borrow_mut().push(bytes.clone());
        Some(Sink { log: Rc::default(), bytes, echo: false })
    });
    factory.set_read_limit(Some(RATE as u64));
    let mut h = Harness::new();
    let ids: Vec<ConnId> = (0..3).map(|_| h.accept(&mut factory).unwrap()).collect();
    for id in &ids {
        h.feed(*id, &vec![b's'; 200_000]);
    }
    for _ in 0..1000 {
        h.advance(STEP);
    }
    let each: Vec<usize> = counters.borrow().iter().map(|c| c.get()).collect();
    let got: usize = each.iter().sum();
    let burst = RATE / 10;
    assert!(
        (RATE * 10 - RATE / 50..=RATE * 10 + burst).contains(&got),
        "three connections together got {got} bytes in 10 s at {RATE} B/s"
    );
    for (i, n) in each.iter().enumerate() {
        assert!(*n >= got / 6, "connection {i} starved: {each:?}");
    }
}

#[test]
fn traffic_below_the_rate_is_not_delayed() {
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, false);
    factory.set_read_limit(Some(10_000));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    // 50 bytes every 10 ms: 5,000 B/s, half the limit. Each arrives at once.
    for i in 1..=500 {
        h.feed(id, &[b'd'; 50]);
        assert_eq!(probe.bytes.get(), 50 * i, "delayed below the rate");
        h.advance(STEP);
    }
}

#[test]
fn fin_after_held_back_bytes_arrives_after_them() {
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, false);
    factory.set_read_limit(Some(1000));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    h.feed(id, &[b'f'; 5000]);
    h.feed_eof(id);
    // 4,900 bytes after the 100-byte burst at 1000 B/s: about 4.9 s before the FIN.
    for _ in 0..480 {
        h.advance(STEP);
    }
    assert!(h.is_open(id), "the FIN overtook held-back bytes");
    assert!(!probe.log.borrow().contains(&Seen::Eof));
    for _ in 0..120 {
        h.advance(STEP);
    }
    let log = probe.log.borrow();
    assert_eq!(probe.bytes.get(), 5000);
    let eof = log.iter().position(|s| *s == Seen::Eof).expect("EOF passed on");
    assert!(log[..eof].iter().all(|s| matches!(s, Seen::Data(_))));
    assert_eq!(log.last(), Some(&Seen::Lost("Clean".into())));
    drop(log);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
}

#[test]
fn lifting_the_limit_releases_held_back_bytes() {
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, false);
    factory.set_read_limit(Some(1000));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    h.feed(id, &[b'l'; 50_000]);
    assert_eq!(probe.bytes.get(), 100);
    factory.set_read_limit(None);
    h.advance(DEFAULT_THROTTLE_INTERVAL);
    assert_eq!(probe.bytes.get(), 50_000);
    h.feed(id, &[b'l'; 50_000]);
    assert_eq!(probe.bytes.get(), 100_000, "reading resumed");
}

/// A Chargen with a probe on its pause/resume calls.
struct Watched {
    chargen: Chargen,
    log: Rc<RefCell<Vec<Seen>>>,
}

impl Protocol for Watched {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.chargen.connection_made(cx);
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        self.chargen.timer_fired(cx, timer);
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.log.borrow_mut().push(Seen::Pause);
        self.chargen.pause_producing(cx);
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.log.borrow_mut().push(Seen::Resume);
        self.chargen.resume_producing(cx);
    }
}

fn assert_alternates(log: &[Seen]) {
    let flow: Vec<&Seen> = log.iter().filter(|s| matches!(s, Seen::Pause | Seen::Resume)).collect();
    for pair in flow.windows(2) {
        assert_ne!(pair[0], pair[1], "pause/resume did not alternate: {flow:?}");
    }
    if let Some(first) = flow.first() {
        assert_eq!(**first, Seen::Pause);
    }
}

#[test]
fn write_rate_over_ten_seconds_is_within_a_tight_bound() {
    const RATE: usize = 256 * 1024;
    let log = Rc::new(RefCell::new(Vec::new()));
    let for_factory = log.clone();
    let mut factory =
        ThrottlingFactory::new(move |_| Some(Watched { chargen: Chargen::new(), log: for_factory.clone() }));
    factory.set_write_limit(Some(RATE as u64));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    let mut received = h.take_written(id);
    for _ in 0..1000 {
        h.advance(STEP);
        received.extend(h.take_written(id));
    }
    // Bound: the burst, plus what one callback writes (Chargen fills to the 64 KiB high
    // watermark, plus one 7,030-byte cycle).
    let most = RATE * 10 + RATE / 10 + 64 * 1024 + 7030;
    let least = RATE * 10 - 64 * 1024 - 7030;
    assert!(
        (least..=most).contains(&received.len()),
        "10 s at {RATE} B/s wrote {} bytes, outside {least}..={most}",
        received.len()
    );
    assert!(received == chargen_pattern(received.len()), "the pattern came through intact");
    assert_alternates(&log.borrow());
}

#[test]
fn echo_under_a_write_limit_is_slowed_by_pausing_its_reading() {
    const RATE: usize = 20_000;
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, true);
    factory.set_write_limit(Some(RATE as u64));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    let mut echoed = 0;
    for _ in 0..1000 {
        h.feed(id, &[b'e'; 1000]); // the peer offers 100 kB/s
        h.advance(STEP);
        echoed += h.take_written(id).len();
    }
    // One callback writes at most one 1000-byte read, but a read can be up to the reactor's
    // read buffer when input piled up: bound by the reads the echo was handed.
    let most = RATE * 10 + RATE / 10 + 256 * 1024;
    assert!(echoed <= most, "echoed {echoed}");
    assert!(echoed >= RATE * 10 - RATE / 10, "echoed only {echoed}");
    assert_alternates(&probe.log.borrow());
    assert!(probe.log.borrow().contains(&Seen::Pause), "the echo was never paused");
}

#[test]
fn reactor_and_throttle_pauses_merge_into_one_alternating_stream() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let for_factory = log.clone();
    let mut factory =
        ThrottlingFactory::new(move |_| Some(Watched { chargen: Chargen::new(), log: for_factory.clone() }));
    factory.set_write_limit(Some(4_000_000));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    // The peer reads in bursts and stalls in between: reactor watermark pauses and throttle
    // pauses overlap in every order.
    for round in 0..600 {
        if round % 3 == 0 {
            h.set_peer_window(id, Some(0));
        } else {
            h.set_peer_window(id, None);
            h.take_written(id);
        }
        h.advance(Duration::from_millis(7));
    }
    assert_alternates(&log.borrow());
    let flow = log.borrow().len();
    assert!(flow > 100, "only {flow} pause/resume calls");
}

#[test]
fn throttled_connection_closes_cleanly_and_leaves_no_timer() {
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, false);
    factory.set_read_limit(Some(1000)).set_interval(Duration::from_millis(50));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    h.feed(id, &[b'c'; 2000]);
    h.feed_eof(id);
    assert!(h.reactor().timer_count() >= 1, "no refill timer while throttled");
    for _ in 0..300 {
        h.advance(STEP);
    }
    assert_eq!(probe.bytes.get(), 2000);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
    assert_eq!(h.reactor().timer_count(), 0, "the refill timer outlived its connection");
    assert_eq!(probe.log.borrow().last(), Some(&Seen::Lost("Clean".into())));
}

/// Resumes another connection's reading whenever it gets data, as a proxy's other side
/// might: the throttle's pause is undone behind its back.
struct Meddler {
    target: Rc<Cell<Option<ConnId>>>,
}

impl Protocol for Meddler {
    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        if let Some(mut t) = self.target.get().and_then(|id| cx.transport_for(id)) {
            t.resume_reading();
        }
    }
}

#[test]
fn held_back_input_stays_bounded_when_reading_is_resumed_behind_the_throttles_back() {
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, false);
    factory.set_read_limit(Some(1000));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    let target = Rc::new(Cell::new(Some(id)));
    let meddler = {
        let target = target.clone();
        let mut p = Some(Box::new(Meddler { target }) as Box<dyn Protocol>);
        h.accept(&mut move |_| p.take()).unwrap()
    };
    h.feed(id, &vec![b'm'; 8 << 20]);
    for _ in 0..40 {
        h.feed(meddler, b"resume it");
        let held = bytes_read(&h, id) - probe.bytes.get();
        assert!(held <= (1 << 20) + 256 * 1024, "{held} bytes held back");
    }
    assert!(bytes_read(&h, id) > 4 << 20, "the meddler did not resume reading");
    assert!(h.is_open(id));
}

/// A client factory for an outgoing connection into a counting sink.
struct SinkClient(Probe);

impl torsion_reactor::ClientFactory for SinkClient {
    fn build_protocol(&mut self, _peer: Address) -> Box<dyn Protocol> {
        Box::new(Sink { log: self.0.log.clone(), bytes: self.0.bytes.clone(), echo: false })
    }
}

#[test]
fn throttling_factory_also_limits_outgoing_connections() {
    let probe = Probe::default();
    let mut factory = ThrottlingFactory::new(SinkClient(probe.clone()));
    factory.set_read_limit(Some(1000));
    let mut h = Harness::new();
    let id = h.connect(&mut factory);
    h.feed(id, &[b'o'; 10_000]);
    for _ in 0..100 {
        h.advance(STEP);
    }
    assert_eq!(probe.bytes.get(), 1100, "the burst and one second at 1000 B/s");
}

#[test]
fn a_long_interval_still_reaches_the_rate() {
    const RATE: usize = 10_000;
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, false);
    // Burst 10 ms, interval 500 ms: the bucket must still hold an interval's worth.
    factory.set_burst(Duration::from_millis(10)).set_interval(Duration::from_millis(500));
    factory.set_read_limit(Some(RATE as u64));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    h.feed(id, &vec![b'i'; 1 << 20]);
    for _ in 0..1000 {
        h.advance(STEP);
    }
    let got = probe.bytes.get();
    // Bucket of two intervals (1 s) plus 10 s at the rate; at most one interval behind.
    assert!((RATE * 10 - RATE / 2..=RATE * 11).contains(&got), "delivered {got} bytes in 10 s");
}

#[test]
fn builder_forms_chain_like_the_setters() {
    const RATE: u64 = 10_000;
    let probe = Probe::default();
    let mut factory = sink_factory(&probe, false)
        .with_read_limit(Some(RATE))
        .with_write_limit(Some(2 * RATE))
        .with_burst(Duration::from_millis(200))
        .with_interval(Duration::from_millis(10));
    assert_eq!((factory.read_limit(), factory.write_limit()), (Some(RATE), Some(2 * RATE)));
    let mut h = Harness::new();
    let id = h.accept(&mut factory).unwrap();
    h.feed(id, &vec![b'r'; 1 << 20]);
    assert_eq!(probe.bytes.get(), 2_000, "the 200 ms burst set with with_burst");
    h.advance(Duration::from_millis(10));
    assert_eq!(probe.bytes.get(), 2_100, "refilled after one 10 ms interval");
}
