//! No leaks after churn, over TCP and Unix stream sockets.
//!
//! Both ends run on one reactor on the test thread, so every socket counted is torsion's. Each
//! server protocol also arms a 30 s idle timer that only the connection's end can cancel.
//! The valgrind half of catalogue test 11 (echo-server under load, "definitely lost: 0") is
//! `scripts/valgrind.sh`, run by `.ci/run`.
//!
//! The descriptor count is process-wide: every test takes [`serial`].

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use torsion_reactor::{Address, ClientFactory, Ctx, Error, LoopCtx, Protocol, Reactor, TimerId};
use torsion_tests::{fd_count, listen, over_kinds, pattern, run_until, serial, Kind};

/// Protocol objects alive now, both ends.
static LIVE: AtomicUsize = AtomicUsize::new(0);

const MESSAGE: usize = 1024;
const CYCLES: usize = 1000;
/// Cycles in flight at once.
const CONCURRENT: usize = 50;

/// Counts itself in [`LIVE`] while it exists.
struct Counted;

impl Counted {
    fn new() -> Counted {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Echoes; closes after echoing a whole message whose first byte is 1 (the server's half).
struct ChurnServer {
    _counted: Counted,
    got: usize,
    closes: bool,
    idle: Option<TimerId>,
}

impl Protocol for ChurnServer {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.idle = Some(cx.set_timer(Duration::from_secs(30)));
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if self.got == 0 {
            self.closes = data[0] == 1;
        }
        self.got += data.len();
        cx.transport().write(data);
        if self.got == MESSAGE && self.closes {
            cx.transport().lose_connection();
        }
    }
    fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
        cx.transport().abort_connection();
    }
}

/// Sends its message, checks the echo, and closes when it is the client's half.
struct ChurnClient {
    _counted: Counted,
    message: Rc<Vec<u8>>,
    got: Vec<u8>,
    done: Rc<Cell<usize>>,
    bad: Rc<Cell<usize>>,
}

impl Protocol for ChurnClient {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write(&self.message);
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
        if self.got.len() == MESSAGE {
            if self.got[..] != self.message[..] {
                self.bad.set(self.bad.get() + 1);
            }
            self.done.set(self.done.get() + 1);
            if self.message[0] == 0 {
                cx.transport().lose_connection();
            }
        }
    }
}

struct Dialer {
    message: Rc<Vec<u8>>,
    done: Rc<Cell<usize>>,
    bad: Rc<Cell<usize>>,
    failed: Rc<Cell<usize>>,
}

impl ClientFactory for Dialer {
    fn build_protocol(&mut self, _peer: Address) -> Box<dyn Protocol> {
        Box::new(ChurnClient {
            _counted: Counted::new(),
            message: self.message.clone(),
            got: Vec::with_capacity(MESSAGE),
            done: self.done.clone(),
            bad: self.bad.clone(),
        })
    }
    fn client_connection_failed(&mut self, _cx: &mut LoopCtx<'_>, _reason: Error) {
        self.failed.set(self.failed.get() + 1);
    }
}

/// Catalogue 11 (no_leaks_after_churn): 1,000 cycles of connect, echo 1 KiB and close, the
/// client closing half of them and the server the other half. After them the descriptors
/// (`/proc/self/fd`), registered sources (`source_count`), pending timers (`timer_count`) and
/// live protocol objects (a static count kept by `Drop`) are back to their baseline. Twisted
/// asserts the same after each test (`runAbortTest`, `test_protocolGarbageAfterLostConnection`,
/// `test_properlyCloseFiles`).
fn load_no_leaks_after_churn_of_1000_echo_cycles_closed_by_either_side(kind: Kind) {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    let listener = listen(&mut reactor, kind, |_| {
        Some(ChurnServer { _counted: Counted::new(), got: 0, closes: false, idle: None })
    });
    let addr = listener.addr.clone();
    let baseline = (fd_count(), reactor.source_count(), reactor.timer_count(), LIVE.load(Ordering::SeqCst));
    assert_eq!(
        (baseline.1, baseline.2, baseline.3),
        (1, 0, 0),
        "only the listener: no connection, timer or protocol"
    );

    let (done, bad, failed) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let started = Instant::now();
    let mut peak = (0, 0);
    for batch in 0..CYCLES / CONCURRENT {
        for i in 0..CONCURRENT {
            let cycle = batch * CONCURRENT + i;
            let mut message = pattern(cycle as u64, MESSAGE);
            message[0] = (cycle % 2) as u8; // 0: the client closes; 1: the server does
            let dialer = Dialer {
                message: Rc::new(message),
                done: done.clone(),
                bad: bad.clone(),
                failed: failed.clone(),
            };
            reactor.connect(addr.clone(), dialer).unwrap();
        }
        let target = (batch + 1) * CONCURRENT;
        run_until(&mut reactor, "a batch of echo cycles", |_| done.get() + failed.get() >= target);
        peak = (peak.0.max(fd_count()), peak.1.max(reactor.source_count()));
        // Let the batch finish closing before the next one, so every cycle is a full one.
        run_until(&mut reactor, "the batch's connections to close", |r| r.source_count() == 1);
    }
    let churn = started.elapsed();
    assert_eq!((failed.get(), bad.get()), (0, 0), "connects failed or echoes differed");
    assert_eq!(done.get(), CYCLES);
    run_until(&mut reactor, "every connection and timer gone", |r| {
        r.source_count() == 1 && r.timer_count() == 0 && r.connection_count() == 0
    });
    let after = (fd_count(), reactor.source_count(), reactor.timer_count(), LIVE.load(Ordering::SeqCst));
    assert_eq!(after, baseline, "(fds, sources, timers, live protocols) after churn vs baseline");
    eprintln!(
        "no_leaks_after_churn ({kind}): {CYCLES} cycles (half closed by each side) in {churn:?}; peak {} fds / {} sources; \
         after: fds {} sources {} timers {} protocols {} = baseline",
        peak.0, peak.1, after.0, after.1, after.2, after.3
    );
}
over_kinds!(load_no_leaks_after_churn_of_1000_echo_cycles_closed_by_either_side);
