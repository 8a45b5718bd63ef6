//! Catalogue test 27, `panic_in_callbacks`: 100 healthy echo connections ping-pong throughout
//! while protocols panic, one callback at a time, in `connection_made`, `data_received`, its
//! own `resume_producing`, a registered producer object's `resume_producing`, `eof_received`
//! (Twisted's `readConnectionLost`), `timer_fired`, `connection_lost`, and `build_protocol`;
//! and a plain timer callback panics beside other timers.
//!
//! Pass: the loop survives and the 100 keep echoing; each panicking connection is aborted and
//! gets `connection_lost(Panicked)` exactly once, and the panic is logged with its connection
//! id and peer; a panic in `build_protocol` closes only that socket; a panicking timer is
//! dropped alone; a panic inside `connection_lost` is logged and swallowed.
//!
//! `panics.rs` covers the same beside 10 connections; this adds the producer callbacks, the
//! log contents, and the 100.

mod reliability_cdef_util;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use reliability_cdef_util::{Pinger, ReactorThread};
use torsion_protocols::Echo;
use torsion_reactor::{Ctx, DisconnectReason, Producer, Protocol, TimerId};
use torsion_tests::{localhost, WAIT};
use tracing_subscriber::filter::LevelFilter;

const HEALTHY: usize = 100;

/// Where a [`Faulty`] protocol panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PanicIn {
    ConnectionMade,
    DataReceived,
    OwnResumeProducing,
    ProducerResumeProducing,
    EofReceived,
    TimerFired,
    ConnectionLost,
}

const ALL: [PanicIn; 7] = [
    PanicIn::ConnectionMade,
    PanicIn::DataReceived,
    PanicIn::OwnResumeProducing,
    PanicIn::ProducerResumeProducing,
    PanicIn::EofReceived,
    PanicIn::TimerFired,
    PanicIn::ConnectionLost,
];

fn message(p: PanicIn) -> String {
    format!("deliberate panic in {p:?} 9c1e")
}

/// Reports `(mode, peer, reason)` from `connection_lost`.
type Report = (PanicIn, SocketAddr, String);

struct Faulty {
    mode: PanicIn,
    peer: SocketAddr,
    lost: Sender<Report>,
    /// Told when the connection's own protocol is paused (its buffer went above the high mark).
    paused: Sender<SocketAddr>,
}

impl Faulty {
    fn maybe(&self, now: PanicIn) {
        if self.mode == now {
            panic!("{}", message(now));
        }
    }
}

/// A pull producer whose first `resume_producing` panics.
struct PanickyProducer;

impl Producer for PanickyProducer {
    fn resume_producing(&mut self, _cx: &mut Ctx<'_>) {
        panic!("{}", message(PanicIn::ProducerResumeProducing));
    }
}

impl Protocol for Faulty {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        match self.mode {
            PanicIn::TimerFired => {
                cx.call_later(Duration::from_millis(1));
            }
            PanicIn::OwnResumeProducing => {
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
            PanicIn::ProducerResumeProducing => {
                cx.transport().register_producer(PanickyProducer, false).unwrap();
            }
            _ => {}
        }
        self.maybe(PanicIn::ConnectionMade);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if self.mode == PanicIn::ConnectionLost {
            cx.transport().lose_connection();
            return;
        }
        self.maybe(PanicIn::DataReceived);
        cx.transport().write(data);
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.maybe(PanicIn::EofReceived);
        false
    }

    fn timer_fired(&mut self, _cx: &mut Ctx<'_>, _timer: TimerId) {
        self.maybe(PanicIn::TimerFired);
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().pause_reading();
        let _ = self.paused.send(self.peer);
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.maybe(PanicIn::OwnResumeProducing);
        cx.transport().resume_reading();
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.lost.send((self.mode, self.peer, format!("{reason:?}"))).unwrap();
        self.maybe(PanicIn::ConnectionLost);
    }
}

/// Reads until the server's end is gone (EOF or reset); returns the bytes read.
fn read_until_closed(stream: &mut TcpStream) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("waiting for the server to close: {e}"),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

#[test]
fn a_panic_in_any_callback_is_isolated_beside_100_healthy_echo_connections() {
    let (lost_tx, lost): (Sender<Report>, Receiver<Report>) = mpsc::channel();
    let (paused_tx, paused) = mpsc::channel::<SocketAddr>();
    let (server, (echo, ports, factory_port), log) =
        ReactorThread::start(Some(LevelFilter::ERROR), move |r| {
            let echo = r.listen_tcp(localhost(), |_| Some(Box::new(Echo) as Box<dyn Protocol>)).unwrap();
            let mut ports = HashMap::new();
            for mode in ALL {
                let lost = lost_tx.clone();
                let paused = paused_tx.clone();
                let port = r
                    .listen_tcp(localhost(), move |peer| {
                        Some(Box::new(Faulty { mode, peer, lost: lost.clone(), paused: paused.clone() })
                            as Box<dyn Protocol>)
                    })
                    .unwrap();
                ports.insert(mode, port.local_addr());
            }
            // Every other build_protocol panics.
            let mut n = 0u32;
            let factory = r
                .listen_tcp(localhost(), move |_| {
                    n += 1;
                    if n % 2 == 1 {
                        panic!("deliberate panic in build_protocol 9c1e");
                    }
                    Some(Box::new(Echo) as Box<dyn Protocol>)
                })
                .unwrap();
            (echo.local_addr(), ports, factory.local_addr())
        });
    let log = log.unwrap();
    let pinger = Pinger::start(echo, HEALTHY, 1);
    pinger.wait_started();
    pinger.measure();

    let mut peers = HashMap::new();
    for mode in ALL {
        let mut c = connect(ports[&mode]);
        peers.insert(mode, c.local_addr().unwrap());
        match mode {
            PanicIn::ConnectionMade | PanicIn::TimerFired | PanicIn::ProducerResumeProducing => {}
            PanicIn::DataReceived | PanicIn::ConnectionLost => c.write_all(b"x").unwrap(),
            PanicIn::EofReceived => c.shutdown(Shutdown::Write).unwrap(),
            PanicIn::OwnResumeProducing => {
                let who = paused.recv_timeout(WAIT).expect("the writer was paused above the high mark");
                assert_eq!(who, peers[&mode]);
            }
        }
        let read = read_until_closed(&mut c);
        if mode == PanicIn::OwnResumeProducing {
            assert!(read > 64 * 1024, "the writer was resumed only after its buffer drained ({read} read)");
        }
        let (got_mode, peer, reason) =
            lost.recv_timeout(WAIT).expect("connection_lost of the faulty connection");
        assert_eq!((got_mode, peer), (mode, peers[&mode]));
        let expected = match mode {
            // connection_lost is the callback that panicked: it was called once, with the
            // reason of the close it belongs to.
            PanicIn::ConnectionLost => "Clean".to_owned(),
            _ => format!("Panicked({:?})", message(mode)),
        };
        assert_eq!(reason, expected, "{mode:?}");
    }

    // build_protocol: the panicking build closes only its own socket; the next is served.
    let mut refused = connect(factory_port);
    assert_eq!(read_until_closed(&mut refused), 0, "the socket whose build_protocol panicked is closed");
    let mut next = connect(factory_port);
    next.write_all(b"ok").unwrap();
    let mut buf = [0u8; 2];
    next.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ok");

    // A plain timer callback panics; the one after it still fires.
    let (fired_tx, fired) = mpsc::channel();
    server.handle.call_from_thread(move |cx| {
        cx.call_later_fn(Duration::from_millis(1), |_| panic!("deliberate panic in a timer callback 9c1e"));
        cx.call_later_fn(Duration::from_millis(2), move |_| fired_tx.send(()).unwrap());
    });
    fired.recv_timeout(WAIT).expect("the timer after the panicking one fired");

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
    println!("panic_in_callbacks: {} healthy round trips meanwhile; log:\n{text}", rtts.len());
}
