//! Accept errors, injected: catalogue test 26 (`accept_error_injection`), a listener whose
//! `accept` returns EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED, EPERM and EINTR, then real
//! sockets, on a manual clock (Twisted's `test_tcp_internals.py`). The errors come from
//! [`testing::inject_accept_faults`], the one seam in the reactor: the listener is real, only
//! the result of chosen `accept` calls is replaced. Real descriptor exhaustion is `emfile.rs`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use torsion_protocols::Echo;
use torsion_reactor::{testing, Clock, ManualClock, Reactor};
use torsion_tests::{capture_logs, expect_closed, localhost, run_until, WAIT};
use tracing_subscriber::filter::LevelFilter;

/// The log line a resource error gives (see `accept_exhausted` in the reactor).
const EXHAUSTED: &str = "accept: out of resources";

struct Rig {
    reactor: Reactor,
    clock: ManualClock,
    addr: std::net::SocketAddr,
    /// Results the next accept calls return; empty: the real accept runs.
    faults: Rc<RefCell<VecDeque<io::Error>>>,
    /// Accept attempts (each consults the injector once).
    calls: Rc<Cell<usize>>,
    accepted: Rc<Cell<usize>>,
}

fn rig() -> Rig {
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).unwrap();
    let accepted = Rc::new(Cell::new(0));
    let count = accepted.clone();
    let port = reactor
        .listen_tcp(localhost(), move |_| {
            count.set(count.get() + 1);
            Some(Echo)
        })
        .unwrap();
    let faults: Rc<RefCell<VecDeque<io::Error>>> = Rc::default();
    let calls = Rc::new(Cell::new(0));
    let (f, c) = (faults.clone(), calls.clone());
    assert!(testing::inject_accept_faults(&mut reactor, port.id(), move || {
        c.set(c.get() + 1);
        f.borrow_mut().pop_front()
    }));
    Rig { reactor, clock, addr: port.local_addr().inet().unwrap(), faults, calls, accepted }
}

fn client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// The server closed this queued client without a byte: EOF or a reset.
fn expect_queued_closed(mut s: TcpStream) {
    assert_eq!(expect_closed(&mut s, "the queued client"), 0, "the queued client got data");
}

/// Turns a few times without moving the clock (each turn waits at most 10 ms of real time).
fn idle_turns(r: &mut Reactor, n: usize) {
    for _ in 0..n {
        r.turn().unwrap();
    }
}

/// Catalogue 26 (accept_error_injection): per-connection errors (ECONNABORTED, EPERM, EINTR,
/// ECONNRESET) are retried at once: same turn, no time passing.
#[test]
fn per_connection_accept_errors_are_retried_at_once() {
    let (_log, _guard) = capture_logs(LevelFilter::DEBUG);
    let mut r = rig();
    for errno in [libc::ECONNABORTED, libc::EPERM, libc::EINTR, libc::ECONNRESET] {
        r.faults.borrow_mut().push_back(io::Error::from_raw_os_error(errno));
    }
    let _c = client(r.addr);
    let before = r.clock.now();
    let accepted = r.accepted.clone();
    run_until(&mut r.reactor, "the client accepted after four per-connection errors", |_| {
        accepted.get() == 1
    });
    assert_eq!(r.clock.now(), before, "no time had to pass");
    assert!(r.faults.borrow().is_empty());
    // four errors, the real accept, and the accept that found the queue empty (WouldBlock)
    assert_eq!(r.calls.get(), 6, "all retried within one accept batch");
    assert_eq!(r.reactor.connection_count(), 1);
}

/// Catalogue 26 (accept_error_injection): each resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM)
/// gives one log line, closes the queued clients with the reserved descriptor, then 1 s with no
/// accept calls; the listener stays registered.
#[test]
fn each_resource_error_logs_once_closes_the_queue_and_backs_off_one_second() {
    let (log, _guard) = capture_logs(LevelFilter::DEBUG);
    let mut r = rig();
    let backoff = Duration::from_secs(1);
    for (round, errno) in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM].into_iter().enumerate() {
        r.faults.borrow_mut().push_back(io::Error::from_raw_os_error(errno));
        let queued = client(r.addr);
        let calls = r.calls.clone();
        let before = calls.get();
        run_until(&mut r.reactor, "the injected error", |_| calls.get() > before);
        assert_eq!(log.count(EXHAUSTED), round + 1, "one log line per exhaustion episode: {}", log.text());
        // The reserved descriptor accepted and closed the queued client: it is not left hanging.
        expect_queued_closed(queued);

        // During the backoff a new client queues but no accept is attempted, whatever the readiness.
        let waiting = client(r.addr);
        let calls_at_error = r.calls.get();
        idle_turns(&mut r.reactor, 5);
        r.clock.advance(backoff - Duration::from_millis(1));
        idle_turns(&mut r.reactor, 5);
        assert_eq!(r.calls.get(), calls_at_error, "accept called during the backoff ({errno})");
        let accepted = r.accepted.get();
        assert_eq!(
            r.reactor.source_count(),
            1 + r.reactor.connection_count(),
            "the listener stays registered"
        );

        // At 1 s the retry accepts the waiting client.
        r.clock.advance(Duration::from_millis(1));
        let count = r.accepted.clone();
        run_until(&mut r.reactor, "the retry after the backoff", |_| count.get() == accepted + 1);
        drop(waiting);
    }
    // A successful accept ended each episode; still exactly one line per error.
    assert_eq!(log.count(EXHAUSTED), 4);
}

/// Catalogue 26 (accept_error_injection): a resource error again at the retry backs off again
/// without logging again; readiness still drives the listener afterwards.
#[test]
fn a_resource_error_again_at_the_retry_backs_off_again_without_logging_again() {
    let (log, _guard) = capture_logs(LevelFilter::DEBUG);
    let mut r = rig();
    r.faults.borrow_mut().extend([libc::EMFILE, libc::EMFILE].map(io::Error::from_raw_os_error));
    let first = client(r.addr);
    let calls = r.calls.clone();
    run_until(&mut r.reactor, "the first EMFILE", |_| calls.get() == 1);
    expect_queued_closed(first);
    let _waiting = client(r.addr);
    r.clock.advance(Duration::from_secs(1));
    run_until(&mut r.reactor, "the retry meets the second EMFILE", |_| calls.get() == 2);
    assert_eq!(log.count(EXHAUSTED), 1, "EMFILE logged at most once per episode: {}", log.text());
    assert_eq!(r.accepted.get(), 0);
    // Another full second with no accept calls, then recovery with a real socket.
    let fresh = client(r.addr);
    r.clock.advance(Duration::from_millis(999));
    idle_turns(&mut r.reactor, 5);
    assert_eq!(r.calls.get(), 2, "accept called during the second backoff");
    r.clock.advance(Duration::from_millis(1));
    let accepted = r.accepted.clone();
    run_until(&mut r.reactor, "recovery after the second backoff", |_| accepted.get() >= 1);
    drop(fresh);
    // Readiness still drives the listener: it was never deregistered.
    let _late = client(r.addr);
    let before = r.accepted.get();
    run_until(&mut r.reactor, "a client accepted on readiness alone", |_| accepted.get() == before + 1);
}
