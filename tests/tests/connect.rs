//! Outbound connects: refused, timed out against a full accept queue, and completed.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::{ClientFactory, Ctx, Error, Protocol, Reactor};
use torsion_tests::{full_accept_queue, refused_addr, run_until};

/// Records the failure, or that the connection was made.
struct Outcome {
    failures: Rc<RefCell<Vec<Error>>>,
    made: Rc<RefCell<u32>>,
}

struct Quiet {
    made: Rc<RefCell<u32>>,
}

impl Protocol for Quiet {
    fn connection_made(&mut self, _cx: &mut Ctx<'_>) {
        *self.made.borrow_mut() += 1;
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

impl ClientFactory for Outcome {
    fn build_protocol(&mut self, _peer: SocketAddr) -> Box<dyn Protocol> {
        Box::new(Quiet { made: self.made.clone() })
    }
    fn client_connection_failed(&mut self, _cx: &mut Ctx<'_>, reason: Error) {
        self.failures.borrow_mut().push(reason);
    }
}

type Failures = Rc<RefCell<Vec<Error>>>;

fn outcome() -> (Outcome, Failures, Rc<RefCell<u32>>) {
    let failures = Rc::new(RefCell::new(Vec::new()));
    let made = Rc::new(RefCell::new(0));
    (Outcome { failures: failures.clone(), made: made.clone() }, failures, made)
}

#[test]
fn refused_connect_calls_client_connection_failed() {
    let (_held, addr) = refused_addr();
    let mut reactor = Reactor::new().unwrap();
    let (factory, failures, made) = outcome();
    reactor.connect_tcp(addr, factory).unwrap();
    run_until(&mut reactor, "connect failure", |_| !failures.borrow().is_empty());
    match &failures.borrow()[0] {
        Error::ConnectFailed { addr: a, source } => {
            assert_eq!(*a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(*made.borrow(), 0, "connection_made never runs for a failed connect");
    assert_eq!(reactor.connection_count(), 0);
    assert_eq!(reactor.timer_count(), 0, "the connect timeout was cancelled");
}

#[test]
fn connect_times_out_against_a_full_accept_queue() {
    // listen(1), never accepted, queue full: the kernel drops further SYNs.
    let (_listener, _fillers, addr) = full_accept_queue();

    let mut reactor = Reactor::new().unwrap();
    let (factory, failures, made) = outcome();
    let timeout = Duration::from_millis(300);
    reactor.connect_tcp_with_timeout(addr, factory, timeout).unwrap();
    run_until(&mut reactor, "connect timeout", |_| !failures.borrow().is_empty());
    match &failures.borrow()[0] {
        Error::ConnectTimeout { addr: a, timeout: t } => assert_eq!((*a, *t), (addr, timeout)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(*made.borrow(), 0);
    assert_eq!(reactor.connection_count(), 0);
}

#[test]
fn connection_made_runs_only_after_the_connect_completes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut reactor = Reactor::new().unwrap();
    let (factory, failures, made) = outcome();
    reactor.connect_tcp(addr, factory).unwrap();
    assert_eq!(*made.borrow(), 0, "connect_tcp never calls user code synchronously");
    run_until(&mut reactor, "connection made", |_| *made.borrow() == 1);
    assert!(failures.borrow().is_empty());
    assert_eq!(reactor.timer_count(), 0, "the connect timeout was cancelled");
    let (_server_side, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), addr.ip());
}
