//! Fairness under load (TCP): one connection flooding the server with reads, or one with a
//! huge write queue, beside 50 ping-pong peers (catalogue 19 and 20), and an accept storm
//! beside established peers (catalogue 21). The per-turn read budget (16 reads), write budget
//! (16 sends of ≤ 128 KiB) and accept batch (128 per turn) must keep the peers' round trips
//! short.
//!
//! DESIGN.md sets the reactor's read buffer to 256 KiB (catalogue §3.5 says 64 KiB); the
//! budget of 16 reads per turn is the same, so a flooder gets up to 4 MiB per turn. DESIGN wins.
//!
//! The server is a torsion reactor on its own thread; the 50 peers share one mio loop on
//! another (so the client side adds no thread-per-peer scheduling noise); the bulk peer is a
//! blocking thread. Figures are printed (`--nocapture` / nextest shows them on failure).
//!
//! All are load tests (`load_`, run one at a time by nextest); each takes [`serial`] so that
//! `cargo test` does not run them side by side either: they measure latency.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use torsion_protocols::Echo;
use torsion_reactor::{Address, Ctx, ListenOptions, Protocol};
use torsion_tests::{localhost, serial, Pinger, ReactorThread, Stats, WAIT};
use tracing_subscriber::filter::LevelFilter;

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
    bulk: impl FnMut(Address) -> Option<Box<dyn Protocol>> + Send + 'static,
) -> (ReactorThread, Address, Address) {
    let (thread, (echo, bulk)) = ReactorThread::start(move |r| {
        let echo = r.listen_tcp(localhost(), |_| Some(Echo)).unwrap();
        let bulk = r.listen_tcp(localhost(), bulk).unwrap();
        (echo.local_addr().clone(), bulk.local_addr().clone())
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

/// Catalogue 19 (read_fairness): one client writes 512 MiB (and on, for 10 s) as fast as it
/// can into a discard server beside 50 ping-pong peers: ping p99 ≤ 20 ms and max ≤ 100 ms; the
/// flooder still moves ≥ 100 MiB/s.
#[test]
fn load_read_fairness_flooder_beside_50_ping_pong_peers() {
    let _serial = serial();
    const FLOOD: usize = 512 * MIB;
    let (server, echo, discard) = server(|_| Some(Box::new(Discard) as Box<dyn Protocol>));
    let pinger = Pinger::start(&echo, PEERS, 1);
    pinger.wait_started();

    let mut flooder = TcpStream::connect(&discard).unwrap();
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

/// Catalogue 20 (write_fairness): the server queues 256 MiB (again and again, for 10 s) on one
/// connection whose client reads as fast as it can, beside 50 ping-pong peers: ping p99
/// ≤ 20 ms and max ≤ 100 ms; the bulk connection still moves ≥ 100 MiB/s.
#[test]
fn load_write_fairness_huge_write_queue_beside_50_ping_pong_peers() {
    let _serial = serial();
    const QUEUED: usize = 256 * MIB;
    let data = Bytes::from(vec![0xa5u8; QUEUED]);
    let (server, echo, bulk) = server(move |_| Some(Box::new(Blaster(data.clone())) as Box<dyn Protocol>));
    let pinger = Pinger::start(&echo, PEERS, 1);
    pinger.wait_started();

    pinger.measure();
    let start = Instant::now();
    let mut buf = vec![0u8; MIB];
    let mut total = 0;
    while total == 0 || start.elapsed() < WINDOW {
        let mut reader = TcpStream::connect(&bulk).unwrap();
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

// ---------------------------------------------------------------------------------------------
// Catalogue 21: accept_storm

const STORM: usize = 2_000;
/// Established peers pinging through the accept storm.
const STORM_PEERS: usize = 10;

/// Catalogue 21 (accept_storm): 2,000 connects in about 1 s (backlog 1024) while 10
/// established connections ping. The accept batch limit (128 per turn) keeps the established
/// peers served between batches. Pass: all accepted within 5 s; ping p99 ≤ 50 ms during the
/// storm; no accept errors (the server's log, captured at debug level, has none).
#[test]
fn load_accept_storm_of_2000_connects_does_not_stall_established_peers() {
    let _serial = serial();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let (server, addr, log) = ReactorThread::start_logged(LevelFilter::DEBUG, move |r| {
        let options = ListenOptions::default().backlog(1024);
        let port = r
            .listen_tcp_with(localhost(), &options, move |_| {
                count.fetch_add(1, Ordering::Relaxed);
                Some(Echo)
            })
            .unwrap();
        port.local_addr().inet().unwrap()
    });
    let pinger = Pinger::start(&addr.into(), STORM_PEERS, 1);
    pinger.wait_started();
    assert_eq!(accepted.load(Ordering::Relaxed), STORM_PEERS);

    pinger.measure();
    let start = Instant::now();
    // 2,000 connects paced over about 1 s (two per millisecond); the sockets stay open.
    let storm = std::thread::spawn(move || {
        let mut clients = Vec::with_capacity(STORM);
        for i in 0..STORM {
            clients.push(TcpStream::connect(addr).expect("connect during the storm"));
            let due = start + Duration::from_micros(500 * i as u64);
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead); // pacing the load, not synchronising
            }
        }
        clients
    });
    let limit = Duration::from_secs(5);
    while accepted.load(Ordering::Relaxed) < STORM + STORM_PEERS {
        assert!(
            start.elapsed() < limit,
            "only {} of {STORM} accepted after {limit:?}",
            accepted.load(Ordering::Relaxed) - STORM_PEERS
        );
        std::thread::sleep(Duration::from_millis(1)); // bounded poll of a counter
    }
    let all_accepted = start.elapsed();
    let stats = Stats::of(pinger.finish());
    let clients = storm.join().expect("storm thread");
    println!("accept_storm: {STORM} accepted in {all_accepted:?}; ping during the storm {stats}");
    assert!(stats.n > STORM_PEERS * 10, "too few pings measured: {stats}");
    assert!(stats.p99 <= Duration::from_millis(50), "ping p99 {:?} > 50 ms ({stats})", stats.p99);
    drop(clients);
    server.stop();
    let text = log.text();
    for needle in ["accept failed", "out of resources", "ERROR", "WARN"] {
        assert_eq!(log.count(needle), 0, "the server logged {needle:?} during the storm");
    }
    assert!(text.contains("DEBUG"), "the log was captured at debug level");
}
