//! Echo over TCP and Unix stream sockets: big transfers byte-exact, and many concurrent
//! clients on one reactor. The peer's half-close with data in flight (every byte that arrived
//! with the FIN is returned) is catalogue 8, in `half_close.rs`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion_protocols::Echo;
use torsion_reactor::{Address, ClientFactory, Ctx, DisconnectReason, Error, LoopCtx, Protocol, Reactor};
use torsion_tests::{over_kinds, pattern, run_until, write_and_read_to_end, Kind, Server};

fn echo_server(kind: Kind) -> Server {
    Server::on(kind, || |_| Some(Echo))
}

/// 8 MiB of random bytes, written while reading, come back byte-exact, then EOF.
fn eight_mib_of_random_bytes_echo_byte_exact(kind: Kind) {
    let server = echo_server(kind);
    let data = pattern(42, 8 << 20);
    let got = write_and_read_to_end(server.connect(), data.clone(), true).expect("echo");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
    server.stop();
}

over_kinds!(eight_mib_of_random_bytes_echo_byte_exact);

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
    fn build_protocol(&mut self, _peer: Address) -> Box<dyn Protocol> {
        Box::new(PingClient {
            message: self.message.clone(),
            received: Vec::new(),
            results: self.results.clone(),
            done: false,
        })
    }

    fn client_connection_failed(&mut self, _cx: &mut LoopCtx<'_>, reason: Error) {
        self.results.borrow_mut().push(Err(format!("connect failed: {reason}")));
    }
}

/// 200 clients connected at once from one reactor all get their own bytes back.
fn two_hundred_concurrent_clients_all_echo(kind: Kind) {
    let server = echo_server(kind);
    let mut reactor = Reactor::new().unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    for i in 0..200u64 {
        let factory = PingFactory { message: pattern(i, 1024 + i as usize * 97), results: results.clone() };
        reactor.connect(server.addr.clone(), factory).expect("connect");
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
over_kinds!(two_hundred_concurrent_clients_all_echo);
