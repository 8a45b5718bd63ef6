//! Catalogue tests 19 and 20 (`read_fairness`, `write_fairness`): one connection flooding the
//! server with reads, or one with a huge write queue, beside 50 ping-pong peers. The per-turn
//! read budget (16 reads) and write budget (16 sends of ≤ 128 KiB) must keep the peers' round
//! trips short. Pass: ping p99 ≤ 20 ms and max ≤ 100 ms; the bulk connection still moves
//! ≥ 100 MiB/s.
//!
//! DESIGN.md sets the reactor's read buffer to 256 KiB (catalogue §3.5 says 64 KiB); the
//! budget of 16 reads per turn is the same, so a flooder gets up to 4 MiB per turn. DESIGN wins.
//!
//! The server is a torsion reactor on its own thread; the 50 peers share one mio loop on
//! another (so the client side adds no thread-per-peer scheduling noise); the bulk peer is a
//! blocking thread. Figures are printed (`--nocapture` / nextest shows them on failure).

mod reliability_cdef_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reliability_cdef_util::{Pinger, ReactorThread, Stats};
use torsion_protocols::Echo;
use torsion_reactor::{Ctx, Protocol};
use torsion_tests::{localhost, WAIT};

const PEERS: usize = 50;
const MIB: usize = 1 << 20;
const P99_LIMIT: Duration = Duration::from_millis(20);
const MAX_LIMIT: Duration = Duration::from_millis(100);
const MIN_MIB_PER_S: f64 = 100.0;
/// How long the peers ping beside the bulk connection (the catalogue's 10 s). The bulk side
/// repeats its 512 MiB flood (or 256 MiB queue) until then, so the whole window is under load.
const WINDOW: Duration = Duration::from_secs(10);

/// Reads everything and keeps nothing (Twisted's `wire.Discard`).
struct Discard;

impl Protocol for Discard {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

/// Queues `data` whole on connection, then closes once it is written.
struct Blaster(Bytes);

impl Protocol for Blaster {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let mut t = cx.transport();
        // Far above the high mark: the whole thing sits in the user-space buffer at once.
        t.set_max_write_buffer(None);
        t.write_bytes(self.0.clone());
        t.lose_connection();
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

/// An echo listener for the peers and a second listener for the bulk connection.
fn server(
    bulk: impl FnMut(SocketAddr) -> Option<Box<dyn Protocol>> + Send + 'static,
) -> (ReactorThread, SocketAddr, SocketAddr) {
    let (thread, (echo, bulk), _) = ReactorThread::start(None, move |r| {
        let echo = r.listen_tcp(localhost(), |_| Some(Box::new(Echo) as Box<dyn Protocol>)).unwrap();
        let bulk = r.listen_tcp(localhost(), bulk).unwrap();
        (echo.local_addr(), bulk.local_addr())
    });
    (thread, echo, bulk)
}

fn check(what: &str, stats: Stats, mib: f64, secs: f64) {
    let rate = mib / secs;
    println!("{what}: ping {stats}; bulk {mib:.0} MiB in {secs:.2} s = {rate:.0} MiB/s");
    assert!(stats.n >= PEERS * 10, "{what}: too few round trips measured ({})", stats.n);
    assert!(stats.p99 <= P99_LIMIT, "{what}: ping p99 {:?} > {P99_LIMIT:?} ({stats})", stats.p99);
    assert!(stats.max <= MAX_LIMIT, "{what}: ping max {:?} > {MAX_LIMIT:?} ({stats})", stats.max);
    assert!(rate >= MIN_MIB_PER_S, "{what}: the bulk connection was starved: {rate:.0} MiB/s");
}

/// 19. One client writes 512 MiB as fast as it can into a discard server.
#[test]
fn load_read_fairness_flooder_beside_50_ping_pong_peers() {
    const FLOOD: usize = 512 * MIB;
    let (server, echo, discard) = server(|_| Some(Box::new(Discard) as Box<dyn Protocol>));
    let pinger = Pinger::start(echo, PEERS, 1);
    pinger.wait_started();

    let mut flooder = TcpStream::connect(discard).unwrap();
    flooder.set_write_timeout(Some(WAIT)).unwrap();
    let chunk = vec![0x5a; MIB];
    pinger.measure();
    let start = Instant::now();
    let mut sent = 0;
    while sent < FLOOD || start.elapsed() < WINDOW {
        flooder.write_all(&chunk).expect("flooding the discard server");
        sent += MIB;
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = Stats::of(pinger.finish());
    drop(flooder);
    server.stop();
    check("read_fairness", stats, (sent / MIB) as f64, secs);
}

/// 20. The server queues 256 MiB on one connection whose client reads as fast as it can.
#[test]
fn load_write_fairness_huge_write_queue_beside_50_ping_pong_peers() {
    const QUEUED: usize = 256 * MIB;
    let data = Bytes::from(vec![0xa5u8; QUEUED]);
    let (server, echo, bulk) = server(move |_| Some(Box::new(Blaster(data.clone())) as Box<dyn Protocol>));
    let pinger = Pinger::start(echo, PEERS, 1);
    pinger.wait_started();

    pinger.measure();
    let start = Instant::now();
    let mut buf = vec![0u8; MIB];
    let mut total = 0;
    while total == 0 || start.elapsed() < WINDOW {
        let mut reader = TcpStream::connect(bulk).unwrap();
        reader.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = 0;
        loop {
            match reader.read(&mut buf).expect("reading the bulk connection") {
                0 => break,
                n => got += n,
            }
        }
        assert_eq!(got, QUEUED, "every queued byte arrives before the FIN");
        total += got;
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = Stats::of(pinger.finish());
    server.stop();
    check("write_fairness", stats, (total / MIB) as f64, secs);
}
