//! Every shipped wrapper forwards every `Protocol` callback: a recording protocol wrapped in
//! each of them (alone and nested) receives all seven callbacks, in order, over the
//! in-memory harness.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion_protocols::policies::{
    LimitConnectionsFactory, ThrottlingFactory, TimeoutFactory, TimeoutProtocol,
};
use torsion_reactor::testing::Harness;
use torsion_reactor::{Address, ConnId, Ctx, DisconnectReason, Factory, Protocol, TimerId};

/// A callback the recording protocol received.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Made,
    Data(Vec<u8>),
    Eof,
    /// `timer_fired`; true if it was the timer the protocol set itself.
    Timer(bool),
    Pause,
    Resume,
    Lost(DisconnectReason),
}

type Log = Rc<RefCell<Vec<Seen>>>;

/// How long the recorder's own timer runs.
const TIMER: Duration = Duration::from_secs(1);

/// The timeout wrappers' idle period: far beyond anything the test waits for.
const IDLE: Option<Duration> = Some(Duration::from_secs(3600));

/// What the recorder writes on `big`: four times the default 64 KiB high watermark.
const BIG: usize = 256 * 1024;

/// Records every callback; sets a timer on connect, writes [`BIG`] bytes on `big`, and lets
/// the peer's EOF close the connection.
struct Recorder {
    log: Log,
    timer: Option<TimerId>,
}

impl Recorder {
    fn new(log: &Log) -> Self {
        Recorder { log: log.clone(), timer: None }
    }

    fn push(&self, seen: Seen) {
        self.log.borrow_mut().push(seen);
    }
}

impl Protocol for Recorder {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.push(Seen::Made);
        self.timer = Some(cx.set_timer(TIMER));
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.push(Seen::Data(data.to_vec()));
        if data == b"big" {
            cx.transport().write(&vec![b'x'; BIG]);
        }
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.push(Seen::Eof);
        false
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.push(Seen::Lost(reason));
    }

    fn timer_fired(&mut self, _cx: &mut Ctx<'_>, timer: TimerId) {
        self.push(Seen::Timer(Some(timer) == self.timer));
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.push(Seen::Pause);
        cx.transport().pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.push(Seen::Resume);
        cx.transport().resume_reading();
    }
}

/// A factory of recorders logging to the given log, with no wrapper.
fn recorders(log: &Log) -> impl FnMut(Address) -> Option<Recorder> {
    let log = log.clone();
    move |_| Some(Recorder::new(&log))
}

/// A throttle with limits far above what the test moves, so its metering runs but never holds.
fn throttled<F>(inner: F) -> ThrottlingFactory<F> {
    ThrottlingFactory::new(inner).with_read_limit(Some(1 << 30)).with_write_limit(Some(1 << 30))
}

/// Builds the factory under test around recorders logging to the given log.
type Case = (&'static str, fn(&Log) -> Box<dyn Factory>);

/// Plays the peer through every callback; returns the connection.
fn drive(h: &mut Harness, factory: &mut dyn Factory, name: &str) -> ConnId {
    let id = h.accept(factory).unwrap_or_else(|| panic!("{name}: the factory refused"));
    // A peer that reads nothing: the big write stays buffered above the high mark.
    h.set_peer_window(id, Some(0));
    h.feed(id, b"big");
    // The peer reads again: the buffer drains below the low mark.
    h.set_peer_window(id, None);
    let mut written = 0;
    for _ in 0..100 {
        let n = h.take_written(id).len();
        if n == 0 {
            break;
        }
        written += n;
    }
    assert_eq!(written, BIG, "{name}: everything written reached the peer");
    h.advance(TIMER);
    h.feed_eof(id);
    id
}

#[test]
fn every_shipped_wrapper_forwards_all_seven_callbacks() {
    let cases: Vec<Case> = vec![
        ("TimeoutProtocol<Recorder>", |log| {
            let log = log.clone();
            Box::new(move |_: Address| Some(TimeoutProtocol::new(Recorder::new(&log), IDLE)))
        }),
        ("TimeoutProtocol<dyn Protocol>", |log| {
            let log = log.clone();
            Box::new(move |_: Address| {
                let inner: Box<dyn Protocol> = Box::new(Recorder::new(&log));
                Some(TimeoutProtocol::from_box(inner, IDLE))
            })
        }),
        ("TimeoutFactory", |log| Box::new(TimeoutFactory::new(recorders(log)).with_timeout(IDLE))),
        ("ThrottlingFactory", |log| Box::new(throttled(recorders(log)))),
        ("LimitConnectionsFactory", |log| Box::new(LimitConnectionsFactory::new(recorders(log)))),
        ("Box<dyn Protocol>", |log| {
            let log = log.clone();
            Box::new(move |_: Address| Some(Box::new(Recorder::new(&log)) as Box<dyn Protocol>))
        }),
        ("TimeoutProtocol<TimeoutProtocol<Box<dyn Protocol>>>", |log| {
            let log = log.clone();
            Box::new(move |_: Address| {
                let inner: Box<dyn Protocol> = Box::new(Recorder::new(&log));
                Some(TimeoutProtocol::new(TimeoutProtocol::new(inner, IDLE), IDLE))
            })
        }),
        ("Limit(Throttle(Timeout))", |log| {
            let timeout = TimeoutFactory::new(recorders(log)).with_timeout(IDLE);
            Box::new(LimitConnectionsFactory::new(throttled(timeout)))
        }),
        ("Timeout(Throttle(Limit))", |log| {
            let limit = LimitConnectionsFactory::new(recorders(log));
            Box::new(TimeoutFactory::new(throttled(limit)).with_timeout(IDLE))
        }),
        ("Throttle(Limit(TimeoutProtocol))", |log| {
            let log = log.clone();
            let inner = move |_: Address| Some(TimeoutProtocol::new(Recorder::new(&log), IDLE));
            Box::new(throttled(LimitConnectionsFactory::new(inner)))
        }),
    ];
    let expected = vec![
        Seen::Made,
        Seen::Data(b"big".to_vec()),
        Seen::Pause,
        Seen::Resume,
        Seen::Timer(true),
        Seen::Eof,
        Seen::Lost(DisconnectReason::Clean),
    ];
    for (name, build) in cases {
        let log = Log::default();
        let mut factory = build(&log);
        let mut h = Harness::new();
        let id = drive(&mut h, &mut *factory, name);
        assert_eq!(*log.borrow(), expected, "{name}: the callbacks the inner protocol received");
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean), "{name}");
    }
}
