//! Cross-reactor calls in a pool (issue 16): a call reaches a connection on another thread and
//! runs there; a stale id resolves to nothing; a full queue is an error the caller sees. And
//! failures stay contained: a panicking callback aborts one connection, a reactor thread that
//! dies is reported while the others keep serving.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::ThreadId;
use std::time::Instant;

use torsion_protocols::Echo;
use torsion_reactor::pool::{Balance, Pick, PoolConnId, PoolHandle, PoolListener, ReactorPool};
use torsion_reactor::{Clock, Ctx, DisconnectReason, Error, ListenOptions, Protocol};
use torsion_tests::{connect, expect_closed, localhost, recv, wait_for, AnyStream, Kind, WAIT};

/// Connections known across the pool: their id and the thread that owns them.
type Registry = Arc<Mutex<Vec<(PoolConnId, ThreadId)>>>;

/// Registers itself; relays what it receives to the first registered connection on another
/// reactor, checking there that the call runs on that reactor's thread.
struct Relay {
    id: Option<PoolConnId>,
    reactor: usize,
    pool: PoolHandle,
    registry: Registry,
    wrong_thread: Arc<AtomicUsize>,
}

impl Protocol for Relay {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let id = PoolConnId::new(self.reactor, cx.conn_id());
        self.id = Some(id);
        self.registry.lock().unwrap().push((id, std::thread::current().id()));
        cx.transport().write(&[self.reactor as u8]);
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
        let other =
            self.registry.lock().unwrap().iter().find(|(id, _)| id.reactor() != self.reactor).copied();
        let Some((target, owner)) = other else { return };
        let data = data.to_vec();
        let wrong = self.wrong_thread.clone();
        self.pool
            .call_conn(target, move |transport| {
                if std::thread::current().id() != owner {
                    wrong.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(mut transport) = transport {
                    transport.write(&data);
                }
            })
            .expect("queue the relay");
    }
}

fn relay_pool(call_queue: usize) -> (ReactorPool, PoolListener, Registry, Arc<AtomicUsize>) {
    let mut pool = ReactorPool::builder().threads(2).call_queue(call_queue).start().expect("pool");
    let registry: Registry = Arc::default();
    let wrong = Arc::new(AtomicUsize::new(0));
    let (r, w) = (registry.clone(), wrong.clone());
    // Round-robin hand-off: the first client lands on reactor 0, the second on reactor 1.
    let port = pool
        .listen_tcp_with(
            localhost(),
            Balance::HandOff(Pick::RoundRobin),
            &ListenOptions::default(),
            move |at| {
                let (reactor, pool, registry, wrong) = (at.index(), at.pool_handle(), r.clone(), w.clone());
                move |_peer| {
                    Some(Relay {
                        id: None,
                        reactor,
                        pool: pool.clone(),
                        registry: registry.clone(),
                        wrong_thread: wrong.clone(),
                    })
                }
            },
        )
        .expect("listen");
    (pool, port, registry, wrong)
}

/// Connects and reads the one byte that says which reactor took the connection.
fn client_on(port: &PoolListener) -> (AnyStream, u8) {
    let mut stream = connect(Kind::Tcp, port.local_addr());
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reactor = [0u8; 1];
    stream.read_exact(&mut reactor).unwrap();
    (stream, reactor[0])
}

/// A protocol on reactor 0 writes to a connection on reactor 1 by its `PoolConnId`; the
/// write runs on reactor 1's thread, and the client there reads it.
#[test]
fn a_call_reaches_a_connection_on_another_reactor_and_runs_on_its_thread() {
    let (pool, port, _registry, wrong) = relay_pool(64);
    let (mut first, r0) = client_on(&port);
    let (mut second, r1) = client_on(&port);
    assert_ne!(r0, r1, "round-robin puts them on different reactors");
    first.write_all(b"across cores").unwrap();
    let mut got = [0u8; 12];
    second.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"across cores");
    second.write_all(b"and back").unwrap();
    let mut got = [0u8; 8];
    first.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"and back");
    assert_eq!(wrong.load(Ordering::SeqCst), 0, "a cross-reactor call ran on the wrong thread");
    drop((first, second));
    pool.shutdown().expect("clean stop");
}

/// A call to a connection that has closed gets `None`, on its reactor's thread; it never
/// reaches a newer connection that took the same slot. Out-of-range reactors are errors.
#[test]
fn a_stale_id_resolves_to_nothing() {
    let (pool, port, registry, _wrong) = relay_pool(64);
    let (first, _) = client_on(&port);
    let stale = registry.lock().unwrap()[0].0;
    drop(first);
    let handle = pool.handle();
    wait_for("the first connection is gone", || handle.all_stats().iter().all(|s| s.open == 0));
    // Two newer connections, one per reactor, may reuse the slot.
    let (mut newer_a, _) = client_on(&port);
    let (mut newer_b, _) = client_on(&port);
    let (tx, rx) = mpsc::channel();
    handle
        .call_conn(stale, move |transport| {
            let found = transport.map(|mut t| t.write(b"WRONG"));
            tx.send(found.is_some()).unwrap();
        })
        .expect("queued");
    assert!(!recv(&rx, "the stale call ran"), "a stale id resolved to a connection");
    for newer in [&mut newer_a, &mut newer_b] {
        newer.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        assert!(newer.read(&mut buf).is_err(), "a newer connection received the stale call's write");
    }
    let missing = PoolConnId::new(7, stale.conn());
    assert!(matches!(
        handle.call_conn(missing, |_| {}),
        Err(Error::NoSuchReactor { reactor: 7, threads: 2 })
    ));
    drop((newer_a, newer_b));
    pool.shutdown().expect("clean stop");
}

/// A reactor busy in a long callback: its queue fills to capacity, one more call is refused
/// with `QueueFull` (nothing queued, nothing lost silently); once it drains, calls go through
/// and every accepted call has run.
#[test]
fn a_full_cross_reactor_queue_is_an_error_the_caller_sees() {
    let pool = ReactorPool::builder().threads(2).call_queue(8).start().expect("pool");
    let handle = pool.handle();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    handle
        .call_reactor(1, move |_cx| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(WAIT);
        })
        .expect("queue the blocker");
    recv(&started_rx, "reactor 1 is busy");
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let ran = ran.clone();
        handle
            .call_reactor(1, move |_cx| {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .expect("room in the queue");
    }
    let full = handle.call_reactor(1, |_cx| {});
    assert!(matches!(full, Err(Error::QueueFull { reactor: 1, capacity: 8 })), "got {full:?}");
    // The other reactor's queue is its own.
    let (tx, rx) = mpsc::channel();
    handle.call_reactor(0, move |_cx| tx.send(()).unwrap()).expect("reactor 0 is not full");
    recv(&rx, "reactor 0 ran its call");
    release_tx.send(()).unwrap();
    wait_for("the 8 queued calls ran", || ran.load(Ordering::SeqCst) == 8);
    let (tx, rx) = mpsc::channel();
    handle.call_reactor(1, move |_cx| tx.send(()).unwrap()).expect("room again");
    recv(&rx, "the call after the drain ran");
    pool.shutdown().expect("clean stop");
}

/// Echo, but "boom" panics.
struct Fragile;

impl Protocol for Fragile {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        assert!(data != b"boom", "boom");
        cx.transport().write(data);
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, _reason: DisconnectReason) {}
}

/// A panic in one connection's callback aborts that connection only, as on a single reactor:
/// the other connections on the same reactor and the pool keep working.
#[test]
fn a_panic_on_one_reactor_aborts_one_connection() {
    let mut pool = ReactorPool::new(2).expect("pool");
    let port = pool
        .listen_tcp_with(localhost(), Balance::HandOff(Pick::RoundRobin), &ListenOptions::default(), |_| {
            |_peer| Some(Fragile)
        })
        .expect("listen");
    let clients: Vec<AnyStream> = (0..4)
        .map(|_| {
            let s = connect(Kind::Tcp, port.local_addr());
            s.set_read_timeout(Some(WAIT)).unwrap();
            s
        })
        .collect();
    let mut clients = clients.into_iter();
    let mut victim = clients.next().unwrap();
    victim.write_all(b"boom").unwrap();
    expect_closed(&mut victim, "the panicking connection");
    for (i, mut c) in clients.enumerate() {
        c.write_all(b"still here").unwrap();
        let mut got = [0u8; 10];
        c.read_exact(&mut got).unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(&got, b"still here");
    }
    let handle = pool.handle();
    assert!(handle.all_stats().iter().all(|s| s.alive));
    assert!(handle.deaths().is_empty());
    pool.shutdown().expect("a caught panic is not a death");
}

/// A clock that panics once told to: a panic in the loop itself, outside any callback, which
/// nothing inside the reactor catches: its thread dies.
#[derive(Clone)]
struct DoomedClock(Arc<AtomicBool>);

impl Clock for DoomedClock {
    fn now(&self) -> Instant {
        assert!(!self.0.load(Ordering::SeqCst), "the clock broke");
        Instant::now()
    }
}

/// A reactor thread that dies entirely is reported (logged, marked dead in its counters,
/// listed in `deaths`, returned by `join`), calls to it are refused, and the other reactor
/// keeps serving the listener's clients.
#[test]
fn a_dead_reactor_thread_is_reported_and_the_others_keep_serving() {
    let doom = Arc::new(AtomicBool::new(false));
    let d = doom.clone();
    let mut pool = ReactorPool::builder()
        .threads(2)
        .clock(move |index| {
            DoomedClock(if index == 1 { d.clone() } else { Arc::new(AtomicBool::new(false)) })
        })
        .start()
        .expect("pool");
    let port = pool
        .listen_tcp_with(localhost(), Balance::HandOff(Pick::RoundRobin), &ListenOptions::default(), |_| {
            |_peer| Some(Echo)
        })
        .expect("listen");
    let handle = pool.handle();
    doom.store(true, Ordering::SeqCst);
    // Wake reactor 1 so that its loop reads the clock.
    handle.reactor(1).unwrap().call_from_thread(|_cx| {});
    wait_for("reactor 1 is reported dead", || !handle.stats(1).unwrap().alive);
    wait_for("its death is listed", || !handle.deaths().is_empty());
    assert!(handle.deaths()[0].contains("reactor 1"), "{:?}", handle.deaths());
    assert!(handle.stats(0).unwrap().alive, "reactor 0 lives on");
    assert!(matches!(handle.call_reactor(1, |_cx| {}), Err(Error::ReactorGone { reactor: 1 })));
    for i in 0..6u8 {
        let mut c = connect(Kind::Tcp, port.local_addr());
        c.set_read_timeout(Some(WAIT)).unwrap();
        c.write_all(&[i; 32]).unwrap();
        let mut got = [0u8; 32];
        c.read_exact(&mut got).unwrap_or_else(|e| panic!("client {i} after the death: {e}"));
        assert_eq!(got, [i; 32]);
    }
    assert_eq!(handle.stats(0).unwrap().accepted, 6, "every client went to the living reactor");
    let result = pool.shutdown();
    assert!(
        matches!(result, Err(Error::ReactorDied { reactor: 1, .. })),
        "join reports the death: {result:?}"
    );
}

/// Many threads calling one reactor at once through a small queue: every call that was
/// accepted runs exactly once, every other one was refused with `QueueFull`, and once the
/// queue has drained its whole capacity is free again (no slot leaked or counted twice).
#[test]
fn concurrent_callers_through_a_small_queue_lose_nothing_and_leak_no_slot() {
    let pool = ReactorPool::builder().threads(2).call_queue(16).start().expect("pool");
    let handle = pool.handle();
    let ran = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (handle, ran) = (handle.clone(), ran.clone());
            std::thread::spawn(move || {
                let (mut accepted, mut refused) = (0usize, 0usize);
                for _ in 0..2000 {
                    let ran = ran.clone();
                    match handle.call_reactor(0, move |_cx| {
                        ran.fetch_add(1, Ordering::SeqCst);
                    }) {
                        Ok(()) => accepted += 1,
                        Err(Error::QueueFull { reactor: 0, capacity: 16 }) => refused += 1,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for caller in callers {
        let (a, r) = caller.join().expect("a caller panicked");
        accepted += a;
        refused += r;
    }
    assert_eq!(accepted + refused, 8000);
    wait_for("every accepted call ran", || ran.load(Ordering::SeqCst) == accepted);
    // The whole capacity is free again: hold the reactor and fill it exactly.
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    handle
        .call_reactor(0, move |_cx| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(WAIT);
        })
        .expect("queue the blocker");
    recv(&started_rx, "reactor 0 is held");
    for i in 0..16 {
        handle.call_reactor(0, |_cx| {}).unwrap_or_else(|e| panic!("slot {i} of 16 was not free: {e}"));
    }
    assert!(matches!(handle.call_reactor(0, |_cx| {}), Err(Error::QueueFull { .. })));
    release_tx.send(()).unwrap();
    pool.shutdown().expect("clean stop");
    assert_eq!(ran.load(Ordering::SeqCst), accepted, "no call ran twice");
}
