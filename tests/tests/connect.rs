//! Outbound connects: refused, timed out against a full accept queue, and completed, with the
//! timing and the descriptor accounting of catalogue tests 1 and 2. A Unix connect to a path
//! with no listener is in `unix.rs`.
//!
//! Every test takes [`serial`]: the descriptor count is process-wide, and the other tests here
//! open sockets too (under `cargo test`; nextest runs each test in a process of its own).

use std::cell::RefCell;
use std::net::TcpListener;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion_reactor::{Address, ClientFactory, Ctx, Error, LoopCtx, Protocol, Reactor};
use torsion_tests::{fd_count, full_accept_queue, refused_addr, run_until, serial};

/// What a connect attempt came to: the failures (with when they came) and `connection_made`s.
#[derive(Default)]
struct Seen {
    failures: Vec<(Error, Instant)>,
    made: u32,
}

struct Attempt(Rc<RefCell<Seen>>);

struct Quiet(Rc<RefCell<Seen>>);

impl Protocol for Quiet {
    fn connection_made(&mut self, _cx: &mut Ctx<'_>) {
        self.0.borrow_mut().made += 1;
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

impl ClientFactory for Attempt {
    fn build_protocol(&mut self, _peer: Address) -> Box<dyn Protocol> {
        Box::new(Quiet(self.0.clone()))
    }
    fn client_connection_failed(&mut self, _cx: &mut LoopCtx<'_>, reason: Error) {
        self.0.borrow_mut().failures.push((reason, Instant::now()));
    }
}

fn attempt() -> (Attempt, Rc<RefCell<Seen>>) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    (Attempt(seen.clone()), seen)
}

#[test]
fn refused_connect_calls_client_connection_failed() {
    let _serial = serial();
    let (_held, addr) = refused_addr();
    let mut reactor = Reactor::new().unwrap();
    let (factory, seen) = attempt();
    reactor.connect_tcp(addr, factory).unwrap();
    run_until(&mut reactor, "connect failure", |_| !seen.borrow().failures.is_empty());
    match &seen.borrow().failures[0].0 {
        Error::ConnectFailed { addr: a, source } => {
            assert_eq!(*a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(seen.borrow().made, 0, "connection_made never runs for a failed connect");
    assert_eq!(reactor.connection_count(), 0);
    assert_eq!(reactor.timer_count(), 0, "the connect timeout was cancelled");
}

#[test]
fn connect_times_out_against_a_full_accept_queue() {
    let _serial = serial();
    // listen(1), never accepted, queue full: the kernel drops further SYNs.
    let (_listener, _fillers, addr) = full_accept_queue();

    let mut reactor = Reactor::new().unwrap();
    let (factory, seen) = attempt();
    let timeout = Duration::from_millis(300);
    reactor.connect_with_timeout(addr, factory, timeout).unwrap();
    run_until(&mut reactor, "connect timeout", |_| !seen.borrow().failures.is_empty());
    match &seen.borrow().failures[0].0 {
        Error::ConnectTimeout { addr: a, timeout: t } => assert_eq!((a, *t), (&Address::from(addr), timeout)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(seen.borrow().made, 0);
    assert_eq!(reactor.connection_count(), 0);
}

#[test]
fn connection_made_runs_only_after_the_connect_completes() {
    let _serial = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut reactor = Reactor::new().unwrap();
    let (factory, seen) = attempt();
    reactor.connect_tcp(addr, factory).unwrap();
    assert_eq!(seen.borrow().made, 0, "connect_tcp never calls user code synchronously");
    run_until(&mut reactor, "connection made", |_| seen.borrow().made == 1);
    assert!(seen.borrow().failures.is_empty());
    assert_eq!(reactor.timer_count(), 0, "the connect timeout was cancelled");
    let (_server_side, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), addr.ip());
}

/// Catalogue 1 (connect_refused): `client_connection_failed(Refused)` exactly once within 1 s,
/// no `connection_made`, descriptors back to their baseline, no source or timer left.
#[test]
fn connect_refused_fails_within_1s_without_connection_made_and_frees_the_socket() {
    let _serial = serial();
    let (_held, addr) = refused_addr();
    let mut reactor = Reactor::new().unwrap();
    let baseline = fd_count();
    let (factory, seen) = attempt();
    let started = Instant::now();
    reactor.connect_tcp(addr, factory).unwrap();
    assert_eq!(fd_count(), baseline + 1, "the connecting socket is the only new descriptor");
    run_until(&mut reactor, "the refusal", |_| !seen.borrow().failures.is_empty());
    // Let anything queued behind the failure run: nothing more may come.
    reactor.run_until(Duration::from_millis(20), |_| false).unwrap();

    let seen = seen.borrow();
    assert_eq!(seen.failures.len(), 1, "client_connection_failed exactly once");
    let (reason, at) = &seen.failures[0];
    let took = at.duration_since(started);
    match reason {
        Error::ConnectFailed { addr: a, source } => {
            assert_eq!(*a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused, "{source}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(took < Duration::from_secs(1), "the refusal took {took:?}");
    assert_eq!(seen.made, 0, "connection_made never runs for a refused connect");
    assert_eq!(fd_count(), baseline, "the refused socket was closed");
    assert_eq!((reactor.source_count(), reactor.timer_count()), (0, 0), "no source or timer left");
    eprintln!("connect_refused: failed after {took:?}; fds back to {baseline}");
}

/// Catalogue 2 (connect_timeout): a `listen(1)` socket that never accepts, its queue filled;
/// a 300 ms connect timeout fails exactly once within [300, 800] ms and the pending socket is
/// closed.
#[test]
fn connect_timeout_against_a_full_accept_queue_fails_in_300_to_800_ms_and_closes_the_socket() {
    let _serial = serial();
    // listen(1), never accepted, queue full: the kernel drops further SYNs.
    let (_listener, _fillers, addr) = full_accept_queue();

    let mut reactor = Reactor::new().unwrap();
    let baseline = fd_count();
    let (factory, seen) = attempt();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    reactor.connect_with_timeout(addr, factory, timeout).unwrap();
    run_until(&mut reactor, "the connect timeout", |_| !seen.borrow().failures.is_empty());
    reactor.run_until(Duration::from_millis(20), |_| false).unwrap();

    let seen = seen.borrow();
    assert_eq!(seen.failures.len(), 1, "client_connection_failed exactly once");
    let (reason, at) = &seen.failures[0];
    let took = at.duration_since(started);
    match reason {
        Error::ConnectTimeout { addr: a, timeout: t } => assert_eq!((a, *t), (&Address::from(addr), timeout)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        (Duration::from_millis(300)..=Duration::from_millis(800)).contains(&took),
        "the timeout fired after {took:?}, outside [300, 800] ms"
    );
    assert_eq!(seen.made, 0);
    assert_eq!(fd_count(), baseline, "the pending socket was closed");
    assert_eq!((reactor.source_count(), reactor.timer_count()), (0, 0), "no source or timer left");
    eprintln!("connect_timeout: failed after {took:?} (timeout 300 ms); fds back to {baseline}");
}
