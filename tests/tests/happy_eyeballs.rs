//! `connect_host`: a host name resolved on the thread pool, then Happy Eyeballs (RFC 8305) on
//! a manual clock with a fixed resolver (listeners on `::1` and `127.0.0.1`, one of them
//! blackholed by a full accept queue), every failure reported together, a name that does not
//! resolve, cancelling, and real `localhost` with the system resolver.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::{
    Address, ClientFactory, Ctx, Error, LoopCtx, ManualClock, Protocol, Reactor, Resolver,
};
use torsion_tests::run_until;

/// Answers every name with a fixed list (ports included: the asked port is ignored).
struct Fixed(Result<Vec<SocketAddr>, io::ErrorKind>);

impl Resolver for Fixed {
    fn resolve(&self, _host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        self.0.clone().map_err(io::Error::from)
    }
}

#[derive(Debug, Default)]
struct Outcome {
    connected: Option<Address>,
    failed: Option<Error>,
}

/// Records which address won, or why everything failed.
struct Record(Rc<RefCell<Outcome>>);

struct Quiet;

impl Protocol for Quiet {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

impl ClientFactory for Record {
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        self.0.borrow_mut().connected = Some(peer);
        Box::new(Quiet)
    }

    fn client_connection_failed(&mut self, _cx: &mut LoopCtx<'_>, reason: Error) {
        self.0.borrow_mut().failed = Some(reason);
    }
}

/// A listener on `ip` whose accept queue is full: connects to it hang (SYNs dropped).
fn blackhole(ip: &str) -> Option<(socket2::Socket, Vec<TcpStream>, SocketAddr)> {
    let addr = SocketAddr::new(ip.parse().unwrap(), 0);
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).ok()?;
    socket.bind(&addr.into()).ok()?;
    socket.listen(1).ok()?;
    let addr = socket.local_addr().ok()?.as_socket()?;
    let fillers: Vec<TcpStream> =
        (0..4).filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()).collect();
    assert!(!fillers.is_empty(), "the accept queue took no connection at all");
    Some((socket, fillers, addr))
}

/// A live listener on `ip` (accepting is checked with `accept` on a non-blocking socket).
fn live(ip: &str) -> Option<TcpListener> {
    let listener = TcpListener::bind(SocketAddr::new(ip.parse().unwrap(), 0)).ok()?;
    listener.set_nonblocking(true).unwrap();
    Some(listener)
}

/// A port nobody listens on (bound, not listening: connects are refused).
fn refused(ip: &str) -> (socket2::Socket, SocketAddr) {
    let addr = SocketAddr::new(ip.parse().unwrap(), 0);
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).unwrap();
    socket.bind(&addr.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

fn has_ipv6() -> bool {
    let ok = TcpListener::bind("[::1]:0").is_ok();
    if !ok {
        eprintln!("!!! SKIPPED: no IPv6 loopback (::1) on this machine");
    }
    ok
}

/// A few turns of real time on a manual clock (I/O happens; the clock does not move).
fn spin(reactor: &mut Reactor) {
    let _ = reactor.run_until(Duration::from_millis(50), |_| false).unwrap();
}

#[test]
fn a_blackholed_ipv6_address_costs_the_attempt_delay_then_ipv4_wins() {
    if !has_ipv6() {
        return;
    }
    let Some((_hole, _fillers, v6)) = blackhole("::1") else { return };
    let v4_listener = live("127.0.0.1").unwrap();
    let v4 = v4_listener.local_addr().unwrap();
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).unwrap();
    // The resolver's order puts IPv4 first: RFC 8305 still tries IPv6 first.
    reactor.set_resolver(Fixed(Ok(vec![v4, v6])));
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    reactor.connect_host("example.test", 0, Record(outcome.clone()));
    spin(&mut reactor);
    clock.advance(Duration::from_millis(249));
    spin(&mut reactor);
    assert!(outcome.borrow().connected.is_none(), "{:?}", outcome.borrow());
    assert_eq!(
        v4_listener.accept().map_err(|e| e.kind()).err(),
        Some(io::ErrorKind::WouldBlock),
        "IPv4 tried before 250 ms"
    );
    clock.advance(Duration::from_millis(1));
    let done = outcome.clone();
    run_until(&mut reactor, "IPv4 connected", move |_| done.borrow().connected.is_some());
    assert_eq!(outcome.borrow().connected, Some(Address::Inet(v4)));
    assert!(outcome.borrow().failed.is_none());
    // The IPv6 attempt was cancelled: one connection left, nothing still connecting.
    spin(&mut reactor);
    assert_eq!(reactor.connection_count(), 1);
    assert_eq!(reactor.source_count(), 1, "the losing attempt is still in the table");
}

#[test]
fn a_live_ipv6_address_wins_and_ipv4_is_never_tried() {
    if !has_ipv6() {
        return;
    }
    let v6_listener = live("::1").unwrap();
    let v4_listener = live("127.0.0.1").unwrap();
    let (v6, v4) = (v6_listener.local_addr().unwrap(), v4_listener.local_addr().unwrap());
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).unwrap();
    reactor.set_resolver(Fixed(Ok(vec![v4, v6])));
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    reactor.connect_host("example.test", 0, Record(outcome.clone()));
    let done = outcome.clone();
    run_until(&mut reactor, "connected", move |_| done.borrow().connected.is_some());
    assert_eq!(outcome.borrow().connected, Some(Address::Inet(v6)));
    clock.advance(Duration::from_secs(1));
    spin(&mut reactor);
    assert!(v6_listener.accept().is_ok());
    assert_eq!(
        v4_listener.accept().map_err(|e| e.kind()).err(),
        Some(io::ErrorKind::WouldBlock),
        "IPv4 was tried"
    );
}

#[test]
fn a_refused_address_moves_on_at_once_and_all_failures_are_reported_together() {
    let v6_refused = has_ipv6().then(|| refused("::1"));
    let (_s4, v4) = refused("127.0.0.1");
    let (_s4b, v4b) = refused("127.0.0.1");
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).unwrap();
    let mut addrs = vec![v4, v4b];
    addrs.extend(v6_refused.as_ref().map(|(_, a)| *a));
    reactor.set_resolver(Fixed(Ok(addrs.clone())));
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    reactor.connect_host("example.test", 0, Record(outcome.clone()));
    // The clock never moves: refusals alone carry the race to its end.
    let done = outcome.clone();
    run_until(&mut reactor, "every attempt failed", move |_| done.borrow().failed.is_some());
    let outcome = outcome.borrow();
    let Some(Error::AllAttemptsFailed { host, errors }) = &outcome.failed else {
        panic!("want AllAttemptsFailed, got {:?}", outcome.failed)
    };
    assert_eq!(host, "example.test");
    let tried: Vec<SocketAddr> = errors.iter().map(|(a, _)| *a).collect();
    // IPv6 first, then alternating, each family in the resolver's order.
    let want: Vec<SocketAddr> = match &v6_refused {
        Some((_, v6)) => vec![*v6, v4, v4b],
        None => vec![v4, v4b],
    };
    assert_eq!(tried, want);
    assert!(errors.iter().all(|(_, e)| matches!(e, Error::ConnectFailed { .. })), "{errors:?}");
    assert_eq!(reactor.source_count(), 0);
}

#[test]
fn a_name_that_does_not_resolve_is_a_resolve_error() {
    let mut reactor = Reactor::new().unwrap();
    reactor.set_resolver(Fixed(Err(io::ErrorKind::NotFound)));
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    reactor.connect_host("nowhere.test", 80, Record(outcome.clone()));
    let done = outcome.clone();
    run_until(&mut reactor, "the failure", move |_| done.borrow().failed.is_some());
    assert!(matches!(&outcome.borrow().failed, Some(Error::Resolve { host, .. }) if host == "nowhere.test"));
}

#[test]
fn cancelling_stops_every_attempt_and_the_factory_hears_nothing() {
    let Some((_hole, _fillers, addr)) = blackhole("127.0.0.1") else { return };
    let mut reactor = Reactor::new().unwrap();
    reactor.set_resolver(Fixed(Ok(vec![addr])));
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    let id = reactor.connect_host("example.test", 0, Record(outcome.clone()));
    run_until(&mut reactor, "the attempt in flight", |r| r.source_count() == 1);
    let cancelled = Rc::new(RefCell::new(None));
    let result = cancelled.clone();
    reactor.call_later(Duration::ZERO, move |cx| *result.borrow_mut() = Some(cx.cancel_host_connect(&id)));
    run_until(&mut reactor, "cancelled", |r| r.source_count() == 0);
    spin(&mut reactor);
    assert_eq!(*cancelled.borrow(), Some(true));
    assert!(
        outcome.borrow().connected.is_none() && outcome.borrow().failed.is_none(),
        "{:?}",
        outcome.borrow()
    );
}

#[test]
fn localhost_with_the_system_resolver_connects() {
    // Listen on 127.0.0.1 and, where there is IPv6, on ::1 with the same port: `localhost`
    // resolves to one or both, and either way one attempt wins.
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = v4.local_addr().unwrap().port();
    let _v6 = TcpListener::bind(("::1", port)).ok();
    let mut reactor = Reactor::new().unwrap();
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    reactor.connect_host("localhost", port, Record(outcome.clone()));
    let done = outcome.clone();
    run_until(&mut reactor, "connected to localhost", move |_| {
        let o = done.borrow();
        o.connected.is_some() || o.failed.is_some()
    });
    let outcome = outcome.borrow();
    assert!(outcome.failed.is_none(), "{:?}", outcome.failed);
    let Some(Address::Inet(peer)) = &outcome.connected else { panic!("{:?}", outcome.connected) };
    assert!(peer.ip().is_loopback() && peer.port() == port, "{peer}");
}
