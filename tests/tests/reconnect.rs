//! `ClientService` on a manual clock: retry delays follow the backoff (1 s, ×1.5, capped at
//! 60 s, within the jitter), the delay starts over after a successful connection, and
//! `stop_trying` stops for good during the delay and during a connect; plus a real server
//! that goes away and comes back on the same port.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion_reactor::{
    client_factory, Backoff, ClientService, Clock, Ctx, DisconnectReason, ManualClock, Protocol, Reactor,
};
use torsion_tests::run_until;

/// A bound socket that is not listening (connects are refused) and can start listening later
/// on the same port.
fn not_listening() -> (socket2::Socket, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

struct Quiet;

impl Protocol for Quiet {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

/// Failure instants, by the manual clock.
type Times = Rc<RefCell<Vec<Instant>>>;

fn service(addr: SocketAddr, backoff: Backoff, failures: &Times) -> ClientService {
    let times = failures.clone();
    ClientService::new(addr, client_factory(|_| Quiet))
        .with_backoff(backoff)
        .on_failure(move |cx, _error| times.borrow_mut().push(cx.now()))
}

/// Turns the loop for a while of real time; the manual clock does not move.
fn spin(reactor: &mut Reactor) {
    let _ = reactor.run_until(Duration::from_millis(30), |_| false).unwrap();
}

/// Moves the clock by `by` and lets the loop react.
fn advance(reactor: &mut Reactor, clock: &ManualClock, by: Duration) {
    clock.advance(by);
    spin(reactor);
}

#[test]
fn retry_delays_grow_by_one_and_a_half_up_to_sixty_seconds() {
    let (_socket, addr) = not_listening();
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).unwrap();
    let failures = Times::default();
    let exact = Backoff { jitter: 0.0, ..Backoff::default() };
    service(addr, exact, &failures).start(&mut reactor);
    let first = failures.clone();
    run_until(&mut reactor, "the first failure", move |_| first.borrow().len() == 1);
    let mut expected = Duration::from_secs(1);
    for n in 1..14 {
        // Just before the delay: no new attempt. At the delay: one.
        advance(&mut reactor, &clock, expected - Duration::from_millis(1));
        assert_eq!(failures.borrow().len(), n, "an attempt before its delay ({expected:?})");
        advance(&mut reactor, &clock, Duration::from_millis(1));
        let done = failures.clone();
        run_until(&mut reactor, "the next attempt", move |_| done.borrow().len() == n + 1);
        let times = failures.borrow();
        assert_eq!(times[n] - times[n - 1], expected, "delay after failure {n}");
        expected = Duration::from_secs_f64((expected.as_secs_f64() * 1.5).min(60.0));
    }
    assert_eq!(expected, Duration::from_secs(60), "the cap was reached");
}

#[test]
fn jittered_delays_stay_within_ten_percent() {
    let (_socket, addr) = not_listening();
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).unwrap();
    let failures = Times::default();
    service(addr, Backoff::default(), &failures).start(&mut reactor);
    let first = failures.clone();
    run_until(&mut reactor, "the first failure", move |_| first.borrow().len() == 1);
    let mut nominal = 1.0f64;
    let mut delays = Vec::new();
    for n in 1..8 {
        // Nothing before 90% of the nominal delay; then step by 1% of it until the retry.
        let start = clock.now();
        let step = Duration::from_secs_f64(nominal / 100.0);
        clock.advance(Duration::from_secs_f64(nominal * 0.9) - step);
        let _ = reactor.run_until(Duration::from_millis(20), |_| false).unwrap();
        assert_eq!(failures.borrow().len(), n, "a retry before 90% of {nominal} s");
        while failures.borrow().len() == n {
            clock.advance(step);
            let _ = reactor.run_until(Duration::from_millis(5), |_| false).unwrap();
            assert!(clock.now() - start <= Duration::from_secs_f64(nominal * 1.1) + step, "no retry by 110%");
        }
        let times = failures.borrow();
        let delay = (times[n] - times[n - 1]).as_secs_f64();
        assert!(
            delay >= nominal * 0.9 - 0.0001 && delay <= nominal * 1.1 + nominal / 100.0,
            "delay {delay} s outside ±10% of {nominal} s"
        );
        delays.push(delay / nominal);
        nominal = (nominal * 1.5).min(60.0);
    }
    assert!(delays.iter().any(|r| (r - 1.0).abs() > 0.001), "no jitter at all: {delays:?}");
}

#[test]
fn the_delay_starts_over_after_a_successful_connection() {
    let (socket, addr) = not_listening();
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).unwrap();
    let failures = Times::default();
    let connected: Rc<RefCell<usize>> = Rc::default();
    let count = connected.clone();
    let exact = Backoff { jitter: 0.0, ..Backoff::default() };
    let service = service(addr, exact, &failures).on_connected(move |_cx, _id| *count.borrow_mut() += 1);
    service.start(&mut reactor);
    // Three failures: the next delay would be 2.25 s.
    let first = failures.clone();
    run_until(&mut reactor, "the first failure", move |_| first.borrow().len() == 1);
    advance(&mut reactor, &clock, Duration::from_secs(1));
    advance(&mut reactor, &clock, Duration::from_millis(1500));
    assert_eq!(failures.borrow().len(), 3);
    assert_eq!(service.failures(), 3);
    // The server comes up on the same port; the next attempt (2.25 s) connects.
    socket.listen(16).unwrap();
    advance(&mut reactor, &clock, Duration::from_millis(2250));
    let up = connected.clone();
    run_until(&mut reactor, "connected", move |_| *up.borrow() == 1);
    assert_eq!(service.failures(), 0);
    let id = service.connection().expect("the live connection");
    // The server drops it (accept, then close): the service waits 1 s again, not 3.375 s.
    let (peer, _) = socket.accept().unwrap();
    drop(peer);
    run_until(&mut reactor, "the loss", |r| r.connection_count() == 0);
    assert_ne!(service.connection(), Some(id));
    advance(&mut reactor, &clock, Duration::from_millis(999));
    assert_eq!(*connected.borrow(), 1, "reconnected before the initial delay");
    advance(&mut reactor, &clock, Duration::from_millis(1));
    let again = connected.clone();
    run_until(&mut reactor, "reconnected after 1 s", move |_| *again.borrow() == 2);
}

#[test]
fn stop_trying_during_the_delay_stops_for_good() {
    let (_socket, addr) = not_listening();
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).unwrap();
    let failures = Times::default();
    let service = service(addr, Backoff::default(), &failures);
    service.start(&mut reactor);
    let first = failures.clone();
    run_until(&mut reactor, "the first failure", move |_| first.borrow().len() == 1);
    let s = service.clone();
    reactor.call_later(Duration::ZERO, move |cx| s.stop_trying(cx));
    spin(&mut reactor);
    assert!(service.is_stopped());
    advance(&mut reactor, &clock, Duration::from_secs(600));
    assert_eq!(failures.borrow().len(), 1, "an attempt after stop_trying");
    assert_eq!(reactor.timer_count(), 0);
    assert_eq!(reactor.source_count(), 0);
}

#[test]
fn stop_trying_during_a_connect_cancels_it_with_no_extra_retry() {
    // A full accept queue: the connect hangs until cancelled.
    let (_hole, _fillers, addr) = torsion_tests::full_accept_queue();
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).unwrap();
    let failures = Times::default();
    let service = service(addr, Backoff::default(), &failures);
    service.start(&mut reactor);
    run_until(&mut reactor, "the attempt in flight", |r| r.source_count() == 1);
    let s = service.clone();
    reactor.call_later(Duration::ZERO, move |cx| s.stop_trying(cx));
    run_until(&mut reactor, "the attempt cancelled", |r| r.source_count() == 0);
    advance(&mut reactor, &clock, Duration::from_secs(600));
    assert!(failures.borrow().is_empty(), "the cancelled attempt counted as a failure");
    assert_eq!(reactor.source_count(), 0, "an attempt after stop_trying");
}

/// Echo server side for the real-server test: answers each read.
struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

/// Sends `ping` on connect, records replies.
struct Pinger(Rc<RefCell<Vec<u8>>>);

impl Protocol for Pinger {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write(b"ping");
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
        self.0.borrow_mut().extend_from_slice(data);
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, _reason: DisconnectReason) {}
}

#[test]
fn a_server_that_restarts_on_the_same_port_is_reconnected() {
    let (server, local) = torsion_tests::ReactorThread::start(|reactor| {
        let port = reactor
            .listen_tcp("127.0.0.1:0".parse().unwrap(), |_: torsion_reactor::Address| Some(Echo))
            .unwrap();
        port.local_addr().clone()
    });
    let torsion_reactor::Address::Inet(addr) = local else { unreachable!() };
    let mut reactor = Reactor::new().unwrap();
    let replies: Rc<RefCell<Vec<u8>>> = Rc::default();
    let sink = replies.clone();
    let fast =
        Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200), ..Backoff::default() };
    let service = ClientService::new(addr, client_factory(move |_| Pinger(sink.clone()))).with_backoff(fast);
    service.start(&mut reactor);
    let got = replies.clone();
    run_until(&mut reactor, "the first echo", move |_| got.borrow().as_slice() == b"ping");
    // Stop the server while this loop keeps running (its graceful close waits for our FIN).
    server.handle.stop();
    run_until(&mut reactor, "the loss", |r| r.connection_count() == 0);
    server.stop();
    // Same port again (SO_REUSEADDR lets it rebind at once).
    let (server, ()) = torsion_tests::ReactorThread::start(move |reactor| {
        reactor.listen_tcp(addr, |_: torsion_reactor::Address| Some(Echo)).unwrap();
    });
    let got = replies.clone();
    run_until(&mut reactor, "the echo after the restart", move |_| got.borrow().as_slice() == b"pingping");
    assert!(service.connection().is_some());
    let s = service.clone();
    reactor.call_later(Duration::ZERO, move |cx| s.stop_trying(cx));
    server.handle.stop();
    run_until(&mut reactor, "the last loss", |r| r.connection_count() == 0);
    server.stop();
}
