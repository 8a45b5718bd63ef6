//! Catalogue test 24, `idle_and_drip_timeouts`: an idle timeout of 1 s
//! ([`TimeoutFactory`]) around a [`LineReceiver`] with a 2 s frame deadline. One connection
//! stays idle; another sends 1 byte every 500 ms and never ends its line. Pass: the idle one is
//! closed in [1.0, 1.2] s; the drip survives the idle timer (each byte resets it) but is
//! closed at the frame deadline, in [2.0, 2.3] s after its first byte, with `TimedOut`.
//! The same on the manual clock, exactly.

mod reliability_cdef_util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use reliability_cdef_util::ReactorThread;
use torsion_protocols::framing::{LineCtx, LineHandler, LineReceiver};
use torsion_protocols::policies::TimeoutFactory;
use torsion_reactor::testing::Harness;
use torsion_reactor::{DisconnectReason, Factory, Protocol};
use torsion_tests::{localhost, WAIT};

const IDLE: Duration = Duration::from_secs(1);
const FRAME: Duration = Duration::from_secs(2);

/// Answers lines; reports how its connection ended.
struct Lines(Option<Sender<String>>);

impl LineHandler for Lines {
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        lx.send_line(line);
    }

    fn connection_lost(&mut self, _lx: &mut LineCtx<'_, '_>, reason: DisconnectReason) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(format!("{reason:?}"));
        }
    }
}

fn factory(report: Option<Sender<String>>) -> impl Factory {
    let mut factory = TimeoutFactory::new(move |_: SocketAddr| {
        let receiver = LineReceiver::new(Lines(report.clone())).with_frame_deadline(FRAME);
        Some(Box::new(receiver) as Box<dyn Protocol>)
    });
    factory.set_timeout(Some(IDLE));
    factory
}

/// Blocks until the server ends the connection (EOF or reset); returns when.
fn closed_at(stream: &mut TcpStream) -> Instant {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => Instant::now(),
        Ok(_) => panic!("no line was ever completed, nothing should come back"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Instant::now(),
        Err(e) => panic!("waiting for the server to close: {e}"),
    }
}

fn within(what: &str, took: Duration, low: Duration, high: Duration) {
    assert!(low <= took && took <= high, "{what} closed after {took:?}, outside [{low:?}, {high:?}]");
}

#[test]
fn idle_connection_closes_at_1_s_and_a_drip_at_the_2_s_frame_deadline() {
    let (tx, reasons) = mpsc::channel();
    let (server, addr, _) = ReactorThread::start(None, move |r| {
        r.listen_tcp(localhost(), factory(Some(tx))).unwrap().local_addr()
    });

    let mut idle = TcpStream::connect(addr).unwrap();
    let idle_start = Instant::now();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let mut drip = TcpStream::connect(addr).unwrap();
    drip.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = drip.try_clone().unwrap();
    let drip_start = Instant::now();
    // One byte every 500 ms (pacing the peer, not synchronising), until the server closes.
    let dripper = std::thread::spawn(move || {
        for i in 0u32.. {
            let due = drip_start + Duration::from_millis(500) * i;
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
            if writer.write_all(b"x").is_err() || i > 20 {
                return i;
            }
        }
        unreachable!()
    });

    let idle_took = closed_at(&mut idle) - idle_start;
    let drip_took = closed_at(&mut drip) - drip_start;
    let bytes = dripper.join().unwrap();
    println!("idle_and_drip: idle closed after {idle_took:?}; drip closed after {drip_took:?} ({bytes} bytes sent)");
    within("the idle connection", idle_took, IDLE, IDLE + Duration::from_millis(200));
    within("the drip", drip_took, FRAME, FRAME + Duration::from_millis(300));
    let mut got: Vec<String> = (0..2).map(|_| reasons.recv_timeout(WAIT).expect("connection_lost")).collect();
    got.sort();
    assert_eq!(got, ["TimedOut", "TimedOut"]);
    server.stop();
}

#[test]
fn idle_and_drip_timeouts_on_the_manual_clock_are_exact() {
    let mut h = Harness::new();
    let mut f = factory(None);
    let idle = h.accept(&mut f).unwrap();
    let drip = h.accept(&mut f).unwrap();
    let step = Duration::from_millis(500);
    h.feed(drip, b"x");
    for i in 1..=4 {
        h.advance(step - Duration::from_nanos(1));
        assert!(h.is_open(drip), "the drip was closed before {i} × 500 ms");
        if i == 2 {
            assert!(h.is_open(idle), "the idle connection closed early");
        }
        h.advance(Duration::from_nanos(1));
        if i == 2 {
            assert_eq!(h.disconnect_reason(idle).as_deref(), Some("TimedOut"), "idle at exactly 1 s");
        }
        if i < 4 {
            h.feed(drip, b"x");
            assert!(h.is_open(drip), "each byte resets the idle timer");
        }
    }
    assert_eq!(h.disconnect_reason(drip).as_deref(), Some("TimedOut"), "the drip at exactly 2 s");
}
