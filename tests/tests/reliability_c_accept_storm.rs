//! Catalogue test 21, `accept_storm`: 2,000 connects in about 1 s (backlog 1024) while 10
//! established connections ping. The accept batch limit (128 per turn) keeps the established
//! peers served between batches. Pass: all accepted within 5 s; ping p99 ≤ 50 ms during the
//! storm; no accept errors (the server's log, captured at debug level, has none).

mod reliability_cdef_util;

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reliability_cdef_util::{Pinger, ReactorThread, Stats};
use torsion_protocols::Echo;
use torsion_reactor::{ListenOptions, Protocol};
use torsion_tests::localhost;
use tracing_subscriber::filter::LevelFilter;

const STORM: usize = 2_000;
const PEERS: usize = 10;

#[test]
fn load_accept_storm_of_2000_connects_does_not_stall_established_peers() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let (server, addr, log) = ReactorThread::start(Some(LevelFilter::DEBUG), move |r| {
        let options = ListenOptions::default().backlog(1024);
        let port = r
            .listen_tcp_with(localhost(), &options, move |_| {
                count.fetch_add(1, Ordering::Relaxed);
                Some(Box::new(Echo) as Box<dyn Protocol>)
            })
            .unwrap();
        port.local_addr()
    });
    let log = log.unwrap();
    let pinger = Pinger::start(addr, PEERS, 1);
    pinger.wait_started();
    assert_eq!(accepted.load(Ordering::Relaxed), PEERS);

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
    while accepted.load(Ordering::Relaxed) < STORM + PEERS {
        assert!(
            start.elapsed() < limit,
            "only {} of {STORM} accepted after {limit:?}",
            accepted.load(Ordering::Relaxed) - PEERS
        );
        std::thread::sleep(Duration::from_millis(1)); // bounded poll of a counter
    }
    let all_accepted = start.elapsed();
    let stats = Stats::of(pinger.finish());
    let clients = storm.join().expect("storm thread");
    println!("accept_storm: {STORM} accepted in {all_accepted:?}; ping during the storm {stats}");
    assert!(stats.n > PEERS * 10, "too few pings measured: {stats}");
    assert!(stats.p99 <= Duration::from_millis(50), "ping p99 {:?} > 50 ms ({stats})", stats.p99);
    drop(clients);
    server.stop();
    let text = log.text();
    for needle in ["accept failed", "out of resources", "ERROR", "WARN"] {
        assert_eq!(log.count(needle), 0, "the server logged {needle:?} during the storm");
    }
    assert!(text.contains("DEBUG"), "the log was captured at debug level");
}
