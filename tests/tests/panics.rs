//! Panic isolation: a protocol that panics in one callback beside ten healthy echo
//! connections loses only its own connection (with `connection_lost(Panicked(msg))`); a panicking
//! factory, thread call or timer callback never stops the loop.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use torsion_protocols::Echo;
use torsion_reactor::{Ctx, DisconnectReason, Protocol, TimerId};
use torsion_tests::{localhost, pattern, Server, WAIT};

/// The callback a [`Faulty`] protocol panics in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PanicIn {
    ConnectionMade,
    DataReceived,
    EofReceived,
    TimerFired,
    ConnectionLost,
}

/// Every callback a [`Faulty`] protocol saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Made,
    Data,
    Eof,
    Timer,
    Lost(String),
}

/// Reports each callback (tagged with its connection's number), then panics in the chosen one.
struct Faulty {
    panic_in: PanicIn,
    conn: u32,
    seen: Sender<(u32, Seen)>,
}

impl Faulty {
    fn saw(&self, event: Seen, now: PanicIn) {
        self.seen.send((self.conn, event)).unwrap();
        if self.panic_in == now {
            panic!("deliberate panic in {now:?}");
        }
    }
}

impl Protocol for Faulty {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        if self.panic_in == PanicIn::TimerFired {
            cx.call_later(Duration::from_millis(1));
        }
        self.saw(Seen::Made, PanicIn::ConnectionMade);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.saw(Seen::Data, PanicIn::DataReceived);
        cx.transport().write(data);
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.saw(Seen::Eof, PanicIn::EofReceived);
        false
    }

    fn timer_fired(&mut self, _cx: &mut Ctx<'_>, _timer: TimerId) {
        self.saw(Seen::Timer, PanicIn::TimerFired);
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let text = match &reason {
            DisconnectReason::Panicked(message) => format!("Panicked: {message}"),
            other => format!("{other:?}"),
        };
        self.saw(Seen::Lost(text), PanicIn::ConnectionLost);
    }
}

/// An echo server with a second listener whose connections get a [`Faulty`] protocol.
fn server_with_faulty_port(panic_in: PanicIn) -> (Server, SocketAddr, Receiver<(u32, Seen)>) {
    let (seen_tx, seen) = mpsc::channel();
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = Server::start_with(
        move |reactor| {
            let mut conns = 0;
            let factory = move |_| {
                conns += 1;
                Some(Box::new(Faulty { panic_in, conn: conns, seen: seen_tx.clone() }) as Box<dyn Protocol>)
            };
            let port = reactor.listen_tcp(localhost(), factory).expect("listen (faulty)");
            addr_tx.send(port.local_addr()).unwrap();
        },
        || |_| Some(Box::new(Echo) as Box<dyn Protocol>),
    );
    let faulty = addr_rx.recv_timeout(WAIT).expect("faulty listener address");
    (server, faulty, seen)
}

fn client(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// One echo round trip per client, each with its own bytes.
fn echo_round(clients: &mut [TcpStream], round: u64) {
    for (i, stream) in clients.iter_mut().enumerate() {
        let data = pattern(round * 100 + i as u64, 4096);
        stream.write_all(&data).expect("write to a healthy connection");
        let mut got = vec![0u8; data.len()];
        stream.read_exact(&mut got).unwrap_or_else(|e| panic!("round {round}, client {i}: echo failed: {e}"));
        assert!(got == data, "round {round}, client {i}: echo differs");
    }
}

/// Reads until the server's end of the connection is gone: EOF or a reset. A timeout fails.
fn expect_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => return,
            Err(e) => panic!("{what}: the connection was not closed: {e}"),
        }
    }
}

/// The next callback of faulty connection `conn`, keeping the others' in `all`.
fn next_seen(seen: &Receiver<(u32, Seen)>, all: &mut Vec<(u32, Seen)>, conn: u32) -> Seen {
    loop {
        let (n, event) = seen.recv_timeout(WAIT).expect("the faulty protocol's next callback");
        all.push((n, event.clone()));
        if n == conn {
            return event;
        }
    }
}

/// Ten healthy echo clients, then a faulty connection driven into its panic, then the healthy
/// clients again. Returns every callback the faulty protocol saw.
fn panic_beside_healthy_connections(panic_in: PanicIn) -> Vec<Seen> {
    let (server, faulty_addr, seen) = server_with_faulty_port(panic_in);
    let mut healthy: Vec<TcpStream> = (0..10).map(|_| server.connect()).collect();
    echo_round(&mut healthy, 1);

    let mut all = Vec::new();
    let mut faulty = client(faulty_addr);
    let mut last = next_seen(&seen, &mut all, 1);
    match panic_in {
        PanicIn::ConnectionMade | PanicIn::TimerFired => {}
        PanicIn::DataReceived => faulty.write_all(b"boom").unwrap(),
        PanicIn::EofReceived | PanicIn::ConnectionLost => faulty.shutdown(Shutdown::Write).unwrap(),
    }
    expect_closed(&mut faulty, "the faulty connection");
    while !matches!(last, Seen::Lost(_)) {
        last = next_seen(&seen, &mut all, 1);
    }

    echo_round(&mut healthy, 2);
    // The faulty listener still accepts: a second faulty connection runs its course.
    let mut again = client(faulty_addr);
    assert_eq!(next_seen(&seen, &mut all, 2), Seen::Made, "the faulty listener stopped accepting");
    drop(healthy);
    let _ = again.shutdown(Shutdown::Write); // fails if it was reset already
    expect_closed(&mut again, "the second faulty connection");
    drop((faulty, again));
    server.stop();
    // Everything the first protocol saw, to its end: nothing may follow connection_lost.
    all.extend(seen.try_iter());
    all.into_iter().filter(|(n, _)| *n == 1).map(|(_, event)| event).collect()
}

fn panicked(callback: &str) -> Seen {
    Seen::Lost(format!("Panicked: deliberate panic in {callback}"))
}

#[test]
fn a_panic_in_data_received_aborts_only_that_connection() {
    let seen = panic_beside_healthy_connections(PanicIn::DataReceived);
    assert_eq!(seen, [Seen::Made, Seen::Data, panicked("DataReceived")]);
}

#[test]
fn a_panic_in_connection_made_aborts_only_that_connection() {
    let seen = panic_beside_healthy_connections(PanicIn::ConnectionMade);
    assert_eq!(seen, [Seen::Made, panicked("ConnectionMade")]);
}

#[test]
fn a_panic_in_eof_received_aborts_only_that_connection() {
    let seen = panic_beside_healthy_connections(PanicIn::EofReceived);
    assert_eq!(seen, [Seen::Made, Seen::Eof, panicked("EofReceived")]);
}

#[test]
fn a_panic_in_timer_fired_aborts_only_that_connection() {
    let seen = panic_beside_healthy_connections(PanicIn::TimerFired);
    assert_eq!(seen, [Seen::Made, Seen::Timer, panicked("TimerFired")]);
}

#[test]
fn a_panic_in_connection_lost_leaves_the_loop_running() {
    // connection_lost is the last callback: its own panic is only logged.
    let seen = panic_beside_healthy_connections(PanicIn::ConnectionLost);
    assert_eq!(seen, [Seen::Made, Seen::Eof, Seen::Lost("Clean".into())]);
}

#[test]
fn a_panicking_factory_closes_that_socket_and_serves_the_next() {
    let server = Server::start(|| {
        let mut built = 0;
        move |_| {
            built += 1;
            if built == 1 {
                panic!("deliberate panic in build_protocol");
            }
            Some(Box::new(Echo) as Box<dyn Protocol>)
        }
    });
    let mut refused = server.connect();
    expect_closed(&mut refused, "the connection whose protocol was never built");
    let mut served = server.connect();
    echo_round(std::slice::from_mut(&mut served), 1);
    drop((refused, served));
    server.stop();
}

#[test]
fn panicking_thread_calls_and_timer_callbacks_do_not_stop_the_loop() {
    let server = Server::start(|| |_| Some(Box::new(Echo) as Box<dyn Protocol>));
    let (tx, rx) = mpsc::channel::<&'static str>();
    server.handle.call_from_thread(|_| panic!("deliberate panic in a thread call"));
    let after_call = tx.clone();
    server.handle.call_from_thread(move |_| after_call.send("thread call after the panic").unwrap());
    assert_eq!(rx.recv_timeout(WAIT), Ok("thread call after the panic"));

    let after_timer = tx.clone();
    server.handle.call_from_thread(move |cx| {
        cx.call_later_fn(Duration::ZERO, |_| panic!("deliberate panic in a timer"));
        cx.call_later_fn(Duration::from_millis(1), move |_| {
            after_timer.send("timer after the panic").unwrap()
        });
    });
    assert_eq!(rx.recv_timeout(WAIT), Ok("timer after the panic"));

    // The loop still does I/O, and stops normally (Server::stop fails if its thread died).
    let mut peer = server.connect();
    echo_round(std::slice::from_mut(&mut peer), 1);
    drop(peer);
    server.stop();
}
