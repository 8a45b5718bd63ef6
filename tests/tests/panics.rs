//! Panic isolation, over TCP and Unix stream sockets: a protocol that panics in one callback
//! beside ten (or, catalogue 27, a hundred) healthy echo connections loses only its own
//! connection (with `connection_lost(Panicked(msg))`), logged with its id and peer; a panicking
//! factory, thread call or timer callback never stops the loop.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use torsion_protocols::Echo;
use torsion_reactor::{Address, Ctx, DisconnectReason, ManualClock, Producer, Protocol, Reactor, TimerId};
use torsion_tests::{
    capture_logs, connect, expect_closed, listen, over_kinds, pattern, recv, wait_for, AnyStream, Kind,
    Listener, Pinger, ReactorThread, Server, TempPath, WAIT,
};
use tracing_subscriber::filter::LevelFilter;

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
    Lost(DisconnectReason),
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
            cx.set_timer(Duration::from_millis(1));
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
        self.saw(Seen::Lost(reason), PanicIn::ConnectionLost);
    }
}

/// An echo server of `kind` with a second listener whose connections get a [`Faulty`]
/// protocol; its address, and the guard of its socket file.
type FaultyServer = (Server, Address, Option<TempPath>, Receiver<(u32, Seen)>);

fn server_with_faulty_port(kind: Kind, panic_in: PanicIn) -> FaultyServer {
    let (seen_tx, seen) = mpsc::channel();
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = Server::on_with(
        kind,
        move |reactor| {
            let mut conns = 0;
            let factory = move |_| {
                conns += 1;
                Some(Faulty { panic_in, conn: conns, seen: seen_tx.clone() })
            };
            let Listener { addr, path, .. } = listen(reactor, kind, factory);
            addr_tx.send((addr, path)).unwrap();
        },
        || |_| Some(Echo),
    );
    let (faulty, path) = recv(&addr_rx, "the faulty listener's address");
    (server, faulty, path, seen)
}

/// One echo round trip per client, each with its own bytes.
fn echo_round(clients: &mut [AnyStream], round: u64) {
    for (i, stream) in clients.iter_mut().enumerate() {
        let data = pattern(round * 100 + i as u64, 4096);
        stream.write_all(&data).expect("write to a healthy connection");
        let mut got = vec![0u8; data.len()];
        stream.read_exact(&mut got).unwrap_or_else(|e| panic!("round {round}, client {i}: echo failed: {e}"));
        assert!(got == data, "round {round}, client {i}: echo differs");
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
fn panic_beside_healthy_connections(kind: Kind, panic_in: PanicIn) -> Vec<Seen> {
    let (server, faulty_addr, _path, seen) = server_with_faulty_port(kind, panic_in);
    let mut healthy: Vec<AnyStream> = (0..10).map(|_| server.connect()).collect();
    echo_round(&mut healthy, 1);

    let mut all = Vec::new();
    let mut faulty = connect(kind, &faulty_addr);
    let mut last = next_seen(&seen, &mut all, 1);
    match panic_in {
        PanicIn::ConnectionMade | PanicIn::TimerFired => {}
        PanicIn::DataReceived => faulty.write_all(b"boom").unwrap(),
        PanicIn::EofReceived | PanicIn::ConnectionLost => faulty.shutdown_write().unwrap(),
    }
    expect_closed(&mut faulty, "the faulty connection");
    while !matches!(last, Seen::Lost(_)) {
        last = next_seen(&seen, &mut all, 1);
    }

    echo_round(&mut healthy, 2);
    // The faulty listener still accepts: a second faulty connection runs its course.
    let mut again = connect(kind, &faulty_addr);
    assert_eq!(next_seen(&seen, &mut all, 2), Seen::Made, "the faulty listener stopped accepting");
    drop(healthy);
    let _ = again.shutdown_write(); // fails if it was reset already
    expect_closed(&mut again, "the second faulty connection");
    drop((faulty, again));
    server.stop();
    // Everything the first protocol saw, to its end: nothing may follow connection_lost.
    all.extend(seen.try_iter());
    all.into_iter().filter(|(n, _)| *n == 1).map(|(_, event)| event).collect()
}

fn panicked(callback: &str) -> Seen {
    Seen::Lost(DisconnectReason::Panicked(format!("deliberate panic in {callback}")))
}

/// A panic in `data_received` aborts only that connection, with `connection_lost(Panicked)`.
fn a_panic_in_data_received_aborts_only_that_connection(kind: Kind) {
    let seen = panic_beside_healthy_connections(kind, PanicIn::DataReceived);
    assert_eq!(seen, [Seen::Made, Seen::Data, panicked("DataReceived")]);
}
over_kinds!(a_panic_in_data_received_aborts_only_that_connection);

/// A panic in `connection_made` aborts only that connection, with `connection_lost(Panicked)`.
fn a_panic_in_connection_made_aborts_only_that_connection(kind: Kind) {
    let seen = panic_beside_healthy_connections(kind, PanicIn::ConnectionMade);
    assert_eq!(seen, [Seen::Made, panicked("ConnectionMade")]);
}
over_kinds!(a_panic_in_connection_made_aborts_only_that_connection);

/// A panic in `eof_received` aborts only that connection, with `connection_lost(Panicked)`.
fn a_panic_in_eof_received_aborts_only_that_connection(kind: Kind) {
    let seen = panic_beside_healthy_connections(kind, PanicIn::EofReceived);
    assert_eq!(seen, [Seen::Made, Seen::Eof, panicked("EofReceived")]);
}
over_kinds!(a_panic_in_eof_received_aborts_only_that_connection);

/// A panic in `timer_fired` aborts only that connection, with `connection_lost(Panicked)`.
fn a_panic_in_timer_fired_aborts_only_that_connection(kind: Kind) {
    let seen = panic_beside_healthy_connections(kind, PanicIn::TimerFired);
    assert_eq!(seen, [Seen::Made, Seen::Timer, panicked("TimerFired")]);
}
over_kinds!(a_panic_in_timer_fired_aborts_only_that_connection);

/// A panic in `connection_lost` (the last callback) is only logged; the loop keeps running.
fn a_panic_in_connection_lost_leaves_the_loop_running(kind: Kind) {
    let seen = panic_beside_healthy_connections(kind, PanicIn::ConnectionLost);
    assert_eq!(seen, [Seen::Made, Seen::Eof, Seen::Lost(DisconnectReason::Clean)]);
}
over_kinds!(a_panic_in_connection_lost_leaves_the_loop_running);

/// A panicking `build_protocol` closes only that socket; the next one is served.
fn a_panicking_factory_closes_that_socket_and_serves_the_next(kind: Kind) {
    let server = Server::on(kind, || {
        let mut built = 0;
        move |_| {
            built += 1;
            if built == 1 {
                panic!("deliberate panic in build_protocol");
            }
            Some(Echo)
        }
    });
    let mut refused = server.connect();
    expect_closed(&mut refused, "the connection whose protocol was never built");
    let mut served = server.connect();
    echo_round(std::slice::from_mut(&mut served), 1);
    drop((refused, served));
    server.stop();
}
over_kinds!(a_panicking_factory_closes_that_socket_and_serves_the_next);

/// Panicking thread calls and timer callbacks are caught; the loop keeps doing I/O and stops
/// normally.
#[test]
fn panicking_thread_calls_and_timer_callbacks_do_not_stop_the_loop() {
    let server = Server::start(|| |_| Some(Echo));
    let (tx, rx) = mpsc::channel::<&'static str>();
    server.handle.call_from_thread(|_| panic!("deliberate panic in a thread call"));
    let after_call = tx.clone();
    server.handle.call_from_thread(move |_| after_call.send("thread call after the panic").unwrap());
    assert_eq!(rx.recv_timeout(WAIT), Ok("thread call after the panic"));

    let after_timer = tx.clone();
    server.handle.call_from_thread(move |cx| {
        cx.call_later(Duration::ZERO, |_| panic!("deliberate panic in a timer"));
        cx.call_later(Duration::from_millis(1), move |_| after_timer.send("timer after the panic").unwrap());
    });
    assert_eq!(rx.recv_timeout(WAIT), Ok("timer after the panic"));

    // The loop still does I/O, and stops normally (Server::stop fails if its thread died).
    let mut peer = server.connect();
    echo_round(std::slice::from_mut(&mut peer), 1);
    drop(peer);
    server.stop();
}

/// A panicking timer callback (on the manual clock) is logged at ERROR with its message, the
/// timer after it in the same turn still runs, and later turns go on.
#[test]
fn a_panicking_timer_callback_is_logged_and_later_timers_still_fire() {
    let (captured, _log) = capture_logs(LevelFilter::ERROR);
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(clock.clone()).expect("reactor");
    let fired: Rc<RefCell<Vec<&str>>> = Rc::default();
    let record = |reactor: &mut Reactor, delay: Duration, tag: &'static str| {
        let fired = fired.clone();
        reactor.call_later(delay, move |_| fired.borrow_mut().push(tag));
    };
    const MS: Duration = Duration::from_millis(1);
    record(&mut reactor, MS, "before");
    reactor.call_later(MS, |_| panic!("timer boom 7f3a"));
    record(&mut reactor, MS, "same turn");
    record(&mut reactor, 2 * MS, "next turn");

    clock.advance(MS);
    reactor.turn().expect("reactor turn failed");
    assert_eq!(*fired.borrow(), ["before", "same turn"], "the timer after the panicking one ran");
    let log = captured.text();
    assert!(log.contains("ERROR") && log.contains("timer boom 7f3a"), "panic not logged; log: {log:?}");

    clock.advance(MS);
    reactor.turn().expect("reactor turn failed");
    assert_eq!(*fired.borrow(), ["before", "same turn", "next turn"], "the loop kept running");
}

// ---------------------------------------------------------------------------------------------
// Catalogue 27: panic_in_callbacks

const HEALTHY: usize = 100;

/// Where a [`Faulty27`] protocol panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PanicIn27 {
    ConnectionMade,
    DataReceived,
    OwnResumeProducing,
    ProducerResumeProducing,
    EofReceived,
    TimerFired,
    ConnectionLost,
}

const ALL: [PanicIn27; 7] = [
    PanicIn27::ConnectionMade,
    PanicIn27::DataReceived,
    PanicIn27::OwnResumeProducing,
    PanicIn27::ProducerResumeProducing,
    PanicIn27::EofReceived,
    PanicIn27::TimerFired,
    PanicIn27::ConnectionLost,
];

fn message(p: PanicIn27) -> String {
    format!("deliberate panic in {p:?} 9c1e")
}

/// Reports `(mode, peer, reason)` from `connection_lost`.
type Report = (PanicIn27, Address, DisconnectReason);

/// Panics in the callback its mode names.
struct Faulty27 {
    mode: PanicIn27,
    peer: Address,
    lost: Sender<Report>,
    /// Told when the connection's own protocol is paused (its buffer went above the high mark).
    paused: Sender<Address>,
}

impl Faulty27 {
    fn maybe(&self, now: PanicIn27) {
        if self.mode == now {
            panic!("{}", message(now));
        }
    }
}

/// A pull producer whose first `resume_producing` panics.
struct PanickyProducer;

impl Producer for PanickyProducer {
    fn resume_producing(&mut self, _cx: &mut Ctx<'_>) {
        panic!("{}", message(PanicIn27::ProducerResumeProducing));
    }
}

impl Protocol for Faulty27 {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        match self.mode {
            PanicIn27::TimerFired => {
                cx.set_timer(Duration::from_millis(1));
            }
            PanicIn27::OwnResumeProducing => {
                // Far above the high mark: pause_producing now, resume_producing once the
                // client has read it down to the low mark.
                // Write until the buffer is above the high mark: the kernel takes what it can
                // first, and the client reads nothing until told of the pause (bounded: a
                // loopback socket never takes 256 MiB).
                let chunk = vec![b'r'; 1 << 20];
                for _ in 0..256 {
                    if cx.transport().write(&chunk) {
                        break;
                    }
                }
            }
            PanicIn27::ProducerResumeProducing => {
                cx.transport().register_producer(PanickyProducer, false).unwrap();
            }
            _ => {}
        }
        self.maybe(PanicIn27::ConnectionMade);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if self.mode == PanicIn27::ConnectionLost {
            cx.transport().lose_connection();
            return;
        }
        self.maybe(PanicIn27::DataReceived);
        cx.transport().write(data);
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.maybe(PanicIn27::EofReceived);
        false
    }

    fn timer_fired(&mut self, _cx: &mut Ctx<'_>, _timer: TimerId) {
        self.maybe(PanicIn27::TimerFired);
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().pause_reading();
        let _ = self.paused.send(self.peer.clone());
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.maybe(PanicIn27::OwnResumeProducing);
        cx.transport().resume_reading();
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.lost.send((self.mode, self.peer.clone(), reason)).unwrap();
        self.maybe(PanicIn27::ConnectionLost);
    }
}

/// Catalogue 27 (panic_in_callbacks): 100 healthy echo connections ping-pong throughout while
/// protocols panic, one callback at a time, in `connection_made`, `data_received`, its own
/// `resume_producing`, a registered producer object's `resume_producing`, `eof_received`
/// (Twisted's `readConnectionLost`), `timer_fired`, `connection_lost`, and `build_protocol`;
/// and a plain timer callback panics beside other timers. Pass: the loop survives and the 100
/// keep echoing; each panicking connection is aborted and gets `connection_lost(Panicked)`
/// exactly once, and the panic is logged with its connection id and peer; a panic in
/// `build_protocol` closes only that socket; a panicking timer is dropped alone; a panic inside
/// `connection_lost` is logged and swallowed.
fn a_panic_in_any_callback_is_isolated_beside_100_healthy_echo_connections(kind: Kind) {
    let (lost_tx, lost): (Sender<Report>, Receiver<Report>) = mpsc::channel();
    let (paused_tx, paused) = mpsc::channel::<Address>();
    let (server, (echo, ports, factory_port), log) =
        ReactorThread::start_logged(LevelFilter::ERROR, move |r| {
            let echo = listen(r, kind, |_| Some(Echo));
            let mut ports = HashMap::new();
            for mode in ALL {
                let lost = lost_tx.clone();
                let paused = paused_tx.clone();
                let port = listen(r, kind, move |peer: Address| {
                    Some(Faulty27 { mode, peer, lost: lost.clone(), paused: paused.clone() })
                });
                ports.insert(mode, port);
            }
            // Every other build_protocol panics.
            let mut n = 0u32;
            let factory = listen(r, kind, move |_| {
                n += 1;
                if n % 2 == 1 {
                    panic!("deliberate panic in build_protocol 9c1e");
                }
                Some(Echo)
            });
            (echo, ports, factory)
        });
    let pinger = Pinger::start(&echo.addr, HEALTHY, 1);
    pinger.wait_started();
    pinger.measure();

    let mut peers = HashMap::new();
    for mode in ALL {
        let mut c = connect(kind, &ports[&mode].addr);
        peers.insert(mode, c.local_addr());
        match mode {
            PanicIn27::ConnectionMade | PanicIn27::TimerFired | PanicIn27::ProducerResumeProducing => {}
            PanicIn27::DataReceived | PanicIn27::ConnectionLost => c.write_all(b"x").unwrap(),
            PanicIn27::EofReceived => c.shutdown_write().unwrap(),
            PanicIn27::OwnResumeProducing => {
                let who = recv(&paused, "the writer was paused above the high mark");
                assert_eq!(who, peers[&mode]);
            }
        }
        let read = expect_closed(&mut c, "the faulty connection");
        if mode == PanicIn27::OwnResumeProducing {
            assert!(read > 64 * 1024, "the writer was resumed only after its buffer drained ({read} read)");
        }
        let (got_mode, peer, reason) =
            lost.recv_timeout(WAIT).expect("connection_lost of the faulty connection");
        assert_eq!((got_mode, &peer), (mode, &peers[&mode]));
        let expected = match mode {
            // connection_lost is the callback that panicked: it was called once, with the
            // reason of the close it belongs to.
            PanicIn27::ConnectionLost => DisconnectReason::Clean,
            _ => DisconnectReason::Panicked(message(mode)),
        };
        assert_eq!(reason, expected, "{mode:?}");
    }

    // build_protocol: the panicking build closes only its own socket; the next is served.
    let mut refused = connect(kind, &factory_port.addr);
    assert_eq!(
        expect_closed(&mut refused, "the refused socket"),
        0,
        "the socket whose build_protocol panicked is closed"
    );
    let mut next = connect(kind, &factory_port.addr);
    next.write_all(b"ok").unwrap();
    let mut buf = [0u8; 2];
    next.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ok");

    // A plain timer callback panics; the one after it still fires.
    let (fired_tx, fired) = mpsc::channel();
    server.handle.call_from_thread(move |cx| {
        cx.call_later(Duration::from_millis(1), |_| panic!("deliberate panic in a timer callback 9c1e"));
        cx.call_later(Duration::from_millis(2), move |_| fired_tx.send(()).unwrap());
    });
    recv(&fired, "the timer after the panicking one fired");

    // The healthy connections keep echoing after all of that: 10 more round trips each.
    let before = pinger.round_trips();
    wait_for("the healthy connections to keep echoing after the panics", || {
        pinger.round_trips() >= before + HEALTHY * 10
    });
    let rtts = pinger.finish();
    drop((refused, next));
    server.stop();
    // Exactly once: nothing more was reported after each case's one report.
    assert!(lost.try_recv().is_err(), "a second connection_lost");
    assert!(rtts.len() > HEALTHY * 10, "the healthy connections kept echoing: {} round trips", rtts.len());

    let text = log.text();
    for mode in ALL {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(&message(mode))).collect();
        assert_eq!(lines.len(), 1, "{mode:?} logged once: {lines:?}");
        let peer = peers[&mode].to_string();
        assert!(
            lines[0].contains("ERROR") && lines[0].contains(&peer),
            "{mode:?} logged with its peer {peer}: {}",
            lines[0]
        );
        assert!(lines[0].contains("id="), "{mode:?} logged with its connection id: {}", lines[0]);
    }
    assert_eq!(log.count("deliberate panic in build_protocol 9c1e"), 1);
    assert_eq!(log.count("deliberate panic in a timer callback 9c1e"), 1);
    println!("panic_in_callbacks ({kind}): {} healthy round trips meanwhile; log:\n{text}", rtts.len());
}
over_kinds!(a_panic_in_any_callback_is_isolated_beside_100_healthy_echo_connections);
