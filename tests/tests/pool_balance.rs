//! A pool of reactors (issue 16): connections spread over every reactor, by SO_REUSEPORT or by
//! the hand-off acceptor, echoes byte-exact, and protocol state touched only on its own thread.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use torsion_protocols::Echo;
use torsion_reactor::pool::{Balance, Pick, PoolListener, ReactorPool};
use torsion_reactor::{Address, Ctx, DisconnectReason, ListenOptions, Protocol};
use torsion_tests::{connect, localhost, pattern, Kind, TempPath, WAIT};

const THREADS: usize = 4;
const CONNECTIONS: usize = 1000;

/// Opens `CONNECTIONS` connections from 4 client threads, each sending 1 KiB of its own bytes
/// and reading them back byte-exact before closing.
fn thousand_echoes(addr: &Address) {
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for i in 0..CONNECTIONS / 4 {
                    let seed = (t * CONNECTIONS + i) as u64;
                    let data = pattern(seed, 1024);
                    let mut stream = connect(Kind::of(&addr), &addr);
                    stream.set_read_timeout(Some(WAIT)).unwrap();
                    stream.write_all(&data).unwrap();
                    let mut got = vec![0u8; data.len()];
                    stream.read_exact(&mut got).unwrap();
                    assert!(got == data, "connection {seed}: echo differs");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread failed");
    }
}

/// Every reactor's share of `CONNECTIONS`, once all are counted.
fn shares(pool: &ReactorPool) -> Vec<u64> {
    let handle = pool.handle();
    torsion_tests::wait_for("every connection counted", || {
        handle.all_stats().iter().map(|s| s.accepted).sum::<u64>() == CONNECTIONS as u64
    });
    handle.all_stats().iter().map(|s| s.accepted).collect()
}

/// Asserts each share is within `tolerance` (a fraction) of fair.
fn assert_fair(shares: &[u64], tolerance: f64, what: &str) {
    let fair = CONNECTIONS as f64 / shares.len() as f64;
    for (i, &share) in shares.iter().enumerate() {
        let off = (share as f64 - fair).abs() / fair;
        assert!(
            off <= tolerance,
            "{what}: reactor {i} got {share} of {CONNECTIONS} (fair {fair}): {shares:?}"
        );
    }
}

fn echo_pool() -> ReactorPool {
    ReactorPool::builder().threads(THREADS).start().expect("pool")
}

/// 1,000 connections over SO_REUSEPORT on 4 reactors: every reactor gets its share, every echo
/// is byte-exact.
///
/// The tolerance: Linux picks a reuseport socket by `reciprocal_scale(hash, n)` of a keyed hash
/// of the 4-tuple, so with ephemeral source ports each connection lands on a given reactor with
/// probability 1/4, independently: the count is binomial(1000, 1/4), mean 250, standard deviation
/// sqrt(1000 * 1/4 * 3/4) = 13.7. ±30 % of fair is 75 = 5.5 standard deviations, so a fair
/// kernel fails this about once in 10^7 runs, while a listener that one thread wins (the
/// thundering herd of a shared epoll listener, libuv#747's 3:1) fails it every time.
#[test]
fn load_thousand_connections_over_reuseport_spread_over_every_reactor() {
    let mut pool = echo_pool();
    let port = pool.listen_tcp(localhost(), |_reactor| |_peer| Some(Echo)).expect("listen");
    assert_eq!(port.balance(), Balance::ReusePort);
    thousand_echoes(port.local_addr());
    assert_fair(&shares(&pool), 0.30, "reuseport");
    pool.shutdown().expect("clean stop");
}

/// The same with the hand-off acceptor, round-robin: each reactor gets exactly a quarter
/// (queues are never full at this rate, so no reactor is skipped; ±2 % allows for one).
#[test]
fn load_thousand_connections_handed_off_round_robin_spread_evenly() {
    let mut pool = echo_pool();
    let port = pool
        .listen_tcp_with(localhost(), Balance::HandOff(Pick::RoundRobin), &ListenOptions::default(), |_| {
            |_peer| Some(Echo)
        })
        .expect("listen");
    thousand_echoes(port.local_addr());
    assert_fair(&shares(&pool), 0.02, "hand-off round-robin");
    pool.shutdown().expect("clean stop");
}

/// Least-loaded hand-off: connections are short, so loads stay near zero and ties go round;
/// every reactor still gets a share (a loose bound: this pick follows load, not counts).
#[test]
fn load_thousand_connections_handed_off_least_loaded_reach_every_reactor() {
    let mut pool = echo_pool();
    let port = pool
        .listen_tcp_with(localhost(), Balance::HandOff(Pick::LeastLoaded), &ListenOptions::default(), |_| {
            |_peer| Some(Echo)
        })
        .expect("listen");
    thousand_echoes(port.local_addr());
    assert_fair(&shares(&pool), 0.5, "hand-off least-loaded");
    pool.shutdown().expect("clean stop");
}

/// A Unix socket listener goes through the hand-off acceptor and reaches every reactor.
#[test]
fn a_unix_listener_is_handed_off_to_every_reactor() {
    let path = TempPath::new(".sock");
    let mut pool = ReactorPool::new(2).expect("pool");
    let port = pool.listen_unix(path.path(), |_| |_peer| Some(Echo)).expect("listen");
    assert_eq!(port.balance(), Balance::HandOff(Pick::RoundRobin));
    for i in 0..8 {
        let mut stream = connect(Kind::Unix, port.local_addr());
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let data = pattern(i, 300);
        stream.write_all(&data).unwrap();
        let mut got = vec![0u8; data.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, data);
    }
    let handle = pool.handle();
    torsion_tests::wait_for("8 counted", || handle.all_stats().iter().map(|s| s.accepted).sum::<u64>() == 8);
    assert_eq!(handle.all_stats().iter().map(|s| s.accepted).collect::<Vec<_>>(), vec![4, 4]);
    pool.shutdown().expect("clean stop");
    assert!(!path.path().exists(), "the socket file is removed at the stop");
}

/// Records, in every callback, whether it runs on the thread its factory was built on.
struct ThreadBound {
    home: ThreadId,
    wrong: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl ThreadBound {
    fn check(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if std::thread::current().id() != self.home {
            self.wrong.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Protocol for ThreadBound {
    fn connection_made(&mut self, _cx: &mut Ctx<'_>) {
        self.check();
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.check();
        cx.transport().write(data);
    }
    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.check();
        false
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, _reason: DisconnectReason) {
        self.check();
    }
}

/// The listener, the factories' home threads, callbacks on a wrong thread, all callbacks.
type Bound = (PoolListener, Arc<Mutex<Vec<ThreadId>>>, Arc<AtomicUsize>, Arc<AtomicUsize>);

fn thread_bound(pool: &mut ReactorPool, balance: Balance) -> Bound {
    let homes = Arc::new(Mutex::new(Vec::new()));
    let wrong = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (h, w, c) = (homes.clone(), wrong.clone(), calls.clone());
    let port = pool
        .listen_tcp_with(localhost(), balance, &ListenOptions::default(), move |_reactor| {
            // Built on the reactor's own thread: every protocol of this factory stays there.
            let home = std::thread::current().id();
            h.lock().unwrap().push(home);
            let (wrong, calls) = (w.clone(), c.clone());
            move |_peer| Some(ThreadBound { home, wrong: wrong.clone(), calls: calls.clone() })
        })
        .expect("listen");
    (port, homes, wrong, calls)
}

/// Every callback of every protocol runs on the one thread that built its factory; the
/// factories were built on as many distinct threads as there are reactors, none of them the
/// caller's. Over both balances.
#[test]
fn protocol_state_is_touched_only_on_its_own_thread() {
    for balance in [Balance::ReusePort, Balance::HandOff(Pick::RoundRobin)] {
        let mut pool = ReactorPool::new(3).expect("pool");
        let (port, homes, wrong, calls) = thread_bound(&mut pool, balance);
        let homes: HashSet<ThreadId> = homes.lock().unwrap().iter().copied().collect();
        assert_eq!(homes.len(), 3, "{balance:?}: one factory per reactor thread");
        assert!(!homes.contains(&std::thread::current().id()));
        for i in 0..60 {
            let mut stream = connect(Kind::Tcp, port.local_addr());
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.write_all(&pattern(i, 100)).unwrap();
            let mut got = [0u8; 100];
            stream.read_exact(&mut got).unwrap();
            stream.shutdown_write().unwrap();
        }
        let handle = pool.handle();
        torsion_tests::wait_for("every connection lost", || {
            let stats = handle.all_stats();
            stats.iter().map(|s| s.accepted).sum::<u64>() == 60 && stats.iter().all(|s| s.open == 0)
        });
        pool.shutdown().expect("clean stop");
        assert!(calls.load(Ordering::SeqCst) >= 60 * 4, "{balance:?}: every callback ran");
        assert_eq!(wrong.load(Ordering::SeqCst), 0, "{balance:?}: a callback ran on another thread");
    }
}

/// The counters add up: bytes received and sent per reactor match what the clients sent.
#[test]
fn counters_count_connections_and_bytes_per_reactor() {
    let mut pool = ReactorPool::new(2).expect("pool");
    let port = pool.listen_tcp(localhost(), |_| |_peer| Some(Echo)).expect("listen");
    for i in 0..20 {
        let mut stream = connect(Kind::Tcp, port.local_addr());
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(&pattern(i, 5000)).unwrap();
        let mut got = vec![0u8; 5000];
        stream.read_exact(&mut got).unwrap();
    }
    let handle = pool.handle();
    torsion_tests::wait_for("all closed and counted", || {
        let stats = handle.all_stats();
        stats.iter().map(|s| s.accepted).sum::<u64>() == 20 && stats.iter().all(|s| s.open == 0)
    });
    let stats = handle.all_stats();
    assert_eq!(stats.iter().map(|s| s.bytes_received).sum::<u64>(), 20 * 5000);
    assert_eq!(stats.iter().map(|s| s.bytes_sent).sum::<u64>(), 20 * 5000);
    assert!(stats.iter().all(|s| s.alive));
    pool.shutdown().expect("clean stop");
    assert!(handle.all_stats().iter().all(|s| !s.alive), "stopped reactors read as not alive");
}

/// A second pool on a port the first one holds fails with "address in use" instead of
/// silently joining the first one's SO_REUSEPORT group (same user, so the kernel would allow
/// it).
#[test]
fn a_second_pool_on_the_same_port_is_refused_not_merged() {
    let mut first = ReactorPool::new(2).expect("pool");
    let port = first.listen_tcp(localhost(), |_| |_peer| Some(Echo)).expect("listen");
    let Address::Inet(addr) = port.local_addr().clone() else { unreachable!() };
    let mut second = ReactorPool::new(2).expect("pool");
    let taken = second.listen_tcp(addr, |_| |_peer| Some(Echo));
    assert!(
        matches!(&taken, Err(torsion_reactor::Error::Transport(torsion_reactor::TransportError::Bind { source, .. }))
            if source.kind() == std::io::ErrorKind::AddrInUse),
        "got {taken:?}"
    );
    second.shutdown().expect("clean stop");
    first.shutdown().expect("clean stop");
}

/// Writes its reactor's index, then echoes.
struct SaysWhere(u8);

impl Protocol for SaysWhere {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write(&[self.0]);
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

/// The least-loaded hand-off follows open connections, where round-robin would alternate:
/// with reactor 1 holding two open connections and reactor 0 none, the next two both go to
/// reactor 0.
#[test]
fn least_loaded_hand_off_sends_new_connections_to_the_emptier_reactor() {
    let mut pool = ReactorPool::new(2).expect("pool");
    let port = pool
        .listen_tcp_with(localhost(), Balance::HandOff(Pick::LeastLoaded), &ListenOptions::default(), |at| {
            let index = at.index() as u8;
            move |_peer| Some(SaysWhere(index))
        })
        .expect("listen");
    let handle = pool.handle();
    let open = |n: u64| {
        torsion_tests::wait_for("the open count settles", || {
            handle.all_stats().iter().map(|s| s.open).sum::<u64>() == n
        })
    };
    let on = |port: &PoolListener| {
        let mut stream = connect(Kind::Tcp, port.local_addr());
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut at = [0u8; 1];
        stream.read_exact(&mut at).unwrap();
        (stream, at[0])
    };
    let mut first: Vec<_> = (1..=4)
        .map(|n| {
            let client = on(&port);
            open(n);
            client
        })
        .collect();
    let on_zero = first.iter().filter(|(_, at)| *at == 0).count();
    assert_eq!(on_zero, 2, "ties alternate: two each");
    first.retain(|(_, at)| *at == 1);
    open(2);
    let next: Vec<u8> = (3..=4)
        .map(|n| {
            let (stream, at) = on(&port);
            open(n);
            first.push((stream, at));
            at
        })
        .collect();
    assert_eq!(next, vec![0, 0], "both go to the reactor with no open connection");
    drop(first);
    pool.shutdown().expect("clean stop");
}

/// 1,000 connections open at once over SO_REUSEPORT on 4 reactors, ping-ponging: each
/// reactor holds its share of the open connections while they all get echoes (same
/// binomial tolerance as above: ±30 % of 250 is 5.5 standard deviations).
#[test]
fn load_thousand_open_connections_over_reuseport_each_reactor_holds_a_share() {
    let mut pool = echo_pool();
    let port = pool.listen_tcp(localhost(), |_| |_peer| Some(Echo)).expect("listen");
    let pinger = torsion_tests::Pinger::start(port.local_addr(), CONNECTIONS, 64);
    pinger.wait_started();
    let handle = pool.handle();
    let open: Vec<u64> = handle.all_stats().iter().map(|s| s.open).collect();
    assert_eq!(open.iter().sum::<u64>(), CONNECTIONS as u64, "all open at once: {open:?}");
    assert_fair(&open, 0.30, "open connections over reuseport");
    pinger.measure();
    torsion_tests::wait_for("round trips on the open connections", || {
        pinger.round_trips() >= 5 * CONNECTIONS
    });
    pinger.finish();
    pool.shutdown().expect("clean stop");
}
