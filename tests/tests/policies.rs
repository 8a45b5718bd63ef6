//! Policies over loopback (TCP): per-peer limits tell real peer addresses apart (clients bound
//! to 127.0.0.1, 127.0.0.2 and 127.0.0.3; Linux routes all of 127/8 to lo), a freed slot is
//! reused, the idle timeout closes a silent client, a read limit slows a real transfer, and
//! catalogue 24 (`idle_and_drip_timeouts`): an idle timeout beside a frame deadline, on the real
//! clock and exactly on the manual clock.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::{Domain, Socket, Type};
use torsion_protocols::framing::{LineCtx, LineHandler, LineReceiver};
use torsion_protocols::policies::{LimitConnectionsFactory, ThrottlingFactory, TimeoutFactory};
use torsion_protocols::Echo;
use torsion_reactor::testing::Harness;
use torsion_reactor::{Address, DisconnectReason, Factory, Protocol};
use torsion_tests::{pattern, recv, write_and_read_to_end, Server, WAIT};

fn echo(_peer: Address) -> Option<Box<dyn Protocol>> {
    Some(Box::new(Echo))
}

fn source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A blocking client connected to `server` from `from` (any port), with bounded timeouts.
fn connect_from(server: &Server, from: IpAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::new(from, 0).into()).expect("bind the client's source address");
    socket.connect(&server.addr.inet().expect("a TCP server").into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Sends `ping` and reads four bytes: `ping` from a served client, `busy` from a refused one.
fn ping(stream: &mut (impl Read + Write)) -> [u8; 4] {
    let mut reply = [0; 4];
    // A refused client may find the connection already closed: that reads as refused too.
    if stream.write_all(b"ping").is_err() || stream.read_exact(&mut reply).is_err() {
        return *b"gone";
    }
    reply
}

fn limited_server(max_total: Option<usize>, max_per_peer: Option<usize>) -> Server {
    Server::start(move || {
        let mut factory = LimitConnectionsFactory::new(echo);
        factory
            .set_max_connections(max_total)
            .set_max_per_peer(max_per_peer)
            .set_refusal_message(Some(Bytes::from_static(b"busy\r\n")));
        factory
    })
}

#[test]
fn per_peer_limit_tells_peer_addresses_apart_and_frees_slots_on_close() {
    let server = limited_server(None, Some(2));
    let mut a1 = connect_from(&server, source(1));
    let mut a2 = connect_from(&server, source(1));
    assert_eq!(&ping(&mut a1), b"ping");
    assert_eq!(&ping(&mut a2), b"ping");

    // The third from 127.0.0.1 reads the refusal and then a clean EOF.
    let mut a3 = connect_from(&server, source(1));
    let mut refusal = Vec::new();
    a3.read_to_end(&mut refusal).expect("a clean close, not a reset");
    assert_eq!(refusal, b"busy\r\n");

    // Another address has its own count.
    let mut b1 = connect_from(&server, source(2));
    let mut b2 = connect_from(&server, source(2));
    assert_eq!(&ping(&mut b1), b"ping");
    assert_eq!(&ping(&mut b2), b"ping");

    // Closing one of 127.0.0.1's frees its slot (once the server has seen the close).
    drop(a1);
    let deadline = Instant::now() + WAIT;
    let mut a4 = loop {
        let mut client = connect_from(&server, source(1));
        if &ping(&mut client) == b"ping" {
            break client;
        }
        assert!(Instant::now() < deadline, "the closed client's slot was never freed");
    };
    assert_eq!(&ping(&mut a4), b"ping");
    assert_eq!(&ping(&mut a2), b"ping", "served clients are unaffected by refusals");
    drop((a2, a3, a4, b1, b2));
    server.stop();
}

#[test]
fn total_limit_counts_every_address() {
    let server = limited_server(Some(3), None);
    let mut clients: Vec<TcpStream> = [1, 2, 3].iter().map(|i| connect_from(&server, source(*i))).collect();
    for client in &mut clients {
        assert_eq!(&ping(client), b"ping");
    }
    let mut over = connect_from(&server, source(4));
    let mut refusal = Vec::new();
    over.read_to_end(&mut refusal).expect("a clean close");
    assert_eq!(refusal, b"busy\r\n");
    drop((clients, over));
    server.stop();
}

#[test]
fn idle_timeout_closes_a_silent_client_no_earlier_than_the_deadline() {
    let timeout = Duration::from_millis(200);
    let server = Server::start(move || {
        let mut factory = TimeoutFactory::new(echo);
        factory.set_timeout(Some(timeout));
        factory
    });
    let mut client = server.connect();
    assert_eq!(&ping(&mut client), b"ping");
    let quiet_since = Instant::now();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("the server closes cleanly");
    let waited = quiet_since.elapsed();
    assert!(rest.is_empty());
    assert!(waited >= timeout - Duration::from_millis(5), "closed after only {waited:?}");
    assert!(waited < WAIT);
    drop(client);
    server.stop();
}

#[test]
fn read_limit_slows_a_real_transfer_to_the_rate() {
    const RATE: u64 = 200_000;
    let server = Server::start(|| {
        let mut factory = ThrottlingFactory::new(echo);
        factory.set_read_limit(Some(RATE));
        factory
    });
    let data = pattern(7, 200_000);
    let started = Instant::now();
    let got = write_and_read_to_end(server.connect(), data.clone(), true).expect("echo");
    let took = started.elapsed();
    assert!(got == data, "throttled echo lost or changed bytes");
    // 200 kB minus the 20 kB burst at 200 kB/s: at least 0.9 s.
    assert!(took >= Duration::from_millis(880), "200 kB at {RATE} B/s took only {took:?}");
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// Catalogue 24: idle_and_drip_timeouts

const IDLE: Duration = Duration::from_secs(1);
const FRAME: Duration = Duration::from_secs(2);

/// Answers lines; reports how its connection ended.
struct Lines(Option<Sender<DisconnectReason>>);

impl LineHandler for Lines {
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        lx.send_line(line);
    }

    fn connection_lost(&mut self, _lx: &mut LineCtx<'_, '_>, reason: DisconnectReason) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(reason);
        }
    }
}

fn drip_factory(report: Option<Sender<DisconnectReason>>) -> impl Factory {
    let mut factory = TimeoutFactory::new(move |_: Address| {
        Some(LineReceiver::new(Lines(report.clone())).with_frame_deadline(FRAME))
    });
    factory.set_timeout(Some(IDLE));
    factory
}

/// Blocks until the server ends the connection (EOF or reset); returns when.
fn closed_at(stream: &mut impl Read) -> Instant {
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

/// Catalogue 24 (idle_and_drip_timeouts): an idle timeout of 1 s ([`TimeoutFactory`]) around a
/// [`LineReceiver`] with a 2 s frame deadline. One connection stays idle; another sends 1 byte
/// every 500 ms and never ends its line. Pass: the idle one is closed in [1.0, 1.2] s; the drip
/// survives the idle timer (each byte resets it) but is closed at the frame deadline, in
/// [2.0, 2.3] s after its first byte; both with `TimedOut`.
#[test]
fn idle_connection_closes_at_1_s_and_a_drip_at_the_2_s_frame_deadline() {
    let (tx, reasons) = mpsc::channel();
    let server = Server::start(move || drip_factory(Some(tx)));

    let mut idle = server.connect();
    let idle_start = Instant::now();
    let mut drip = server.connect();
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
    let got: Vec<DisconnectReason> = (0..2).map(|_| recv(&reasons, "connection_lost")).collect();
    assert_eq!(got, [DisconnectReason::TimedOut, DisconnectReason::TimedOut]);
    server.stop();
}

/// Catalogue 24 (idle_and_drip_timeouts) on the manual clock: the idle connection closes at
/// exactly 1 s, the drip at exactly 2 s.
#[test]
fn idle_and_drip_timeouts_on_the_manual_clock_are_exact() {
    let mut h = Harness::new();
    let mut f = drip_factory(None);
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
            assert_eq!(h.disconnect_reason(idle), Some(DisconnectReason::TimedOut), "idle at exactly 1 s");
        }
        if i < 4 {
            h.feed(drip, b"x");
            assert!(h.is_open(drip), "each byte resets the idle timer");
        }
    }
    assert_eq!(h.disconnect_reason(drip), Some(DisconnectReason::TimedOut), "the drip at exactly 2 s");
}
