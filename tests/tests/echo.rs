//! Echo over loopback: big transfers byte-exact, many concurrent clients, and peer half-close
//! with data in flight (every byte that arrived with the FIN is returned).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use torsion_protocols::Echo;
use torsion_reactor::{ClientFactory, Ctx, DisconnectReason, Error, Protocol, Reactor};
use torsion_tests::{pattern, run_until, write_and_read_to_end, Server};

fn echo_server() -> Server {
    Server::start(|| |_| Some(Box::new(Echo) as Box<dyn Protocol>))
}

#[test]
fn eight_mib_of_random_bytes_echo_byte_exact() {
    let server = echo_server();
    let data = pattern(42, 8 << 20);
    let got = write_and_read_to_end(server.connect(), data.clone(), true).expect("echo");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
    server.stop();
}

#[test]
fn peer_half_close_with_data_in_flight_returns_every_byte() {
    let server = echo_server();
    for size in [1usize, 64 * 1024, 4 << 20] {
        for run in 0..20u64 {
            let data = pattern(size as u64 ^ run, size);
            let got = write_and_read_to_end(server.connect(), data.clone(), true).expect("echo");
            assert_eq!(got.len(), data.len(), "size {size} run {run}: bytes lost");
            assert!(got == data, "size {size} run {run}: bytes differ");
        }
    }
    server.stop();
}

/// A client that sends its message, checks the echo, then closes.
struct PingClient {
    message: Vec<u8>,
    received: Vec<u8>,
    results: Rc<RefCell<Vec<Result<(), String>>>>,
    done: bool,
}

impl Protocol for PingClient {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write(&self.message);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.received.extend_from_slice(data);
        if self.received.len() >= self.message.len() {
            let result = if self.received == self.message { Ok(()) } else { Err("echo differs".into()) };
            self.results.borrow_mut().push(result);
            self.done = true;
            cx.transport().lose_connection();
        }
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        if !self.done {
            self.results.borrow_mut().push(Err(format!("lost early: {reason:?}")));
        }
    }
}

struct PingFactory {
    message: Vec<u8>,
    results: Rc<RefCell<Vec<Result<(), String>>>>,
}

impl ClientFactory for PingFactory {
    fn build_protocol(&mut self, _peer: SocketAddr) -> Box<dyn Protocol> {
        Box::new(PingClient {
            message: self.message.clone(),
            received: Vec::new(),
            results: self.results.clone(),
            done: false,
        })
    }

    fn client_connection_failed(&mut self, _cx: &mut Ctx<'_>, reason: Error) {
        self.results.borrow_mut().push(Err(format!("connect failed: {reason}")));
    }
}

#[test]
fn two_hundred_concurrent_clients_all_echo() {
    let server = echo_server();
    let mut reactor = Reactor::new().unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    for i in 0..200u64 {
        let factory = PingFactory { message: pattern(i, 1024 + i as usize * 97), results: results.clone() };
        reactor.connect_tcp(server.addr, factory).expect("connect");
    }
    assert_eq!(reactor.connection_count(), 200);
    run_until(&mut reactor, "200 echoes", |r| results.borrow().len() == 200 && r.connection_count() == 0);
    let failures: Vec<_> = results.borrow().iter().filter_map(|r| r.clone().err()).collect();
    assert!(failures.is_empty(), "{} failures, first: {:?}", failures.len(), failures.first());
    // Lingering sockets drain as the server closes its ends.
    run_until(&mut reactor, "all sockets closed", |r| r.source_count() == 0);
    reactor.stop();
    reactor.run_until(Duration::from_secs(5), |_| false).ok();
    server.stop();
}
