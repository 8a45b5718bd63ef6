//! A reactor and other threads: `call_from_thread` order and wake-ups, writing to a connection
//! from another thread, stopping a reactor thread with `ReactorHandle::stop` or with
//! `stop_reactor` from a protocol. Graceful shutdown itself (queued data delivered, the
//! deadline, what connects and listens do while stopping) is in `shutdown.rs`.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};

use torsion_reactor::{Address, ConnId, Ctx, DisconnectReason, Protocol, Reactor};
use torsion_tests::{connect, expect_eof, localhost, recv, run_until, AnyStream, Kind, ReactorThread};

#[test]
fn calls_from_two_threads_all_run_on_the_reactor_thread_in_per_thread_order() {
    const CALLS: usize = 1000;
    let mut reactor = Reactor::new().unwrap();
    let ran: Arc<Mutex<Vec<(usize, usize, ThreadId)>>> = Arc::default();
    let senders: Vec<JoinHandle<()>> = (0..2)
        .map(|sender| {
            let (handle, ran) = (reactor.handle(), ran.clone());
            std::thread::spawn(move || {
                for seq in 0..CALLS {
                    let ran = ran.clone();
                    handle.call_from_thread(move |_| {
                        ran.lock().unwrap().push((sender, seq, std::thread::current().id()));
                    });
                }
            })
        })
        .collect();
    run_until(&mut reactor, "all calls ran", |_| ran.lock().unwrap().len() == 2 * CALLS);
    for sender in senders {
        sender.join().expect("sender thread panicked");
    }
    let me = std::thread::current().id();
    let ran = ran.lock().unwrap();
    assert!(ran.iter().all(|&(_, _, thread)| thread == me), "a callback ran off the reactor thread");
    for sender in 0..2 {
        let order: Vec<usize> = ran.iter().filter(|r| r.0 == sender).map(|r| r.1).collect();
        assert_eq!(order, (0..CALLS).collect::<Vec<_>>(), "thread {sender}: calls out of order");
    }
}

#[test]
fn a_call_from_thread_wakes_a_reactor_blocked_with_no_timers() {
    // Nothing to do and no timers: the loop blocks in the poller with no timeout.
    let (reactor, ()) = ReactorThread::start(|_| ());
    let handle = reactor.handle.clone();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let worker = std::thread::spawn(move || {
        // Let the loop come back to the poller after a first call, then do the work.
        let (tx, rx) = mpsc::channel();
        handle.call_from_thread(move |_| tx.send(()).unwrap());
        recv(&rx, "the first call");
        for _ in 0..100 {
            let r = r.clone();
            handle.call_from_thread(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            });
        }
        handle.call_from_thread(|cx| cx.stop_reactor());
    });
    reactor.join("run() to return after stop_reactor() from a thread call");
    worker.join().expect("worker panicked");
    assert_eq!(ran.load(Ordering::SeqCst), 100, "every call before the stop ran");
}

/// Reports its id on `connection_made` and its reason on `connection_lost`.
struct Reporter {
    made: Sender<ConnId>,
    lost: Sender<(ConnId, DisconnectReason)>,
}

impl Protocol for Reporter {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.made.send(cx.conn_id()).unwrap();
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if data.windows(4).any(|w| w == b"stop") {
            cx.stop_reactor();
        }
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.lost.send((cx.conn_id(), reason)).unwrap();
    }
}

type Reports = (Receiver<ConnId>, Receiver<(ConnId, DisconnectReason)>);

/// A reactor thread listening with [`Reporter`]s.
fn reporting_server() -> (ReactorThread, Address, Reports) {
    let (made_tx, made) = mpsc::channel();
    let (lost_tx, lost) = mpsc::channel();
    let (reactor, addr) = ReactorThread::start(move |reactor| {
        let factory = move |_| Some(Reporter { made: made_tx.clone(), lost: lost_tx.clone() });
        reactor.listen_tcp(localhost(), factory).expect("listen").local_addr().clone()
    });
    (reactor, addr, (made, lost))
}

#[test]
fn a_thread_call_writes_to_a_connection_by_id() {
    let (reactor, addr, (made, lost)) = reporting_server();
    let mut peer = connect(Kind::Tcp, &addr);
    let id = recv(&made, "connection_made");

    let (tx, rx) = mpsc::channel();
    reactor.handle.call_from_thread(move |cx| {
        let written = cx.transport_for(id).map(|mut t| t.write(b"from another thread"));
        tx.send(written.is_some()).unwrap();
    });
    assert!(recv(&rx, "the thread call"), "transport_for found no live connection");
    let mut got = [0u8; 19];
    peer.read_exact(&mut got).expect("the write from the thread call");
    assert_eq!(&got, b"from another thread");

    // Once the connection is gone, its id resolves to nothing.
    drop(peer);
    assert_eq!(recv(&lost, "connection_lost"), (id, DisconnectReason::Clean));
    let (tx, rx) = mpsc::channel();
    reactor.handle.call_from_thread(move |cx| tx.send(cx.transport_for(id).is_none()).unwrap());
    assert!(recv(&rx, "the second thread call"), "a lost connection's id still resolved");
    reactor.handle.stop();
    reactor.join("run() to return");
}

#[test]
fn handle_stop_from_another_thread_closes_connections_and_returns() {
    let (reactor, addr, (made, lost)) = reporting_server();
    let peers: Vec<AnyStream> = (0..3).map(|_| connect(Kind::Tcp, &addr)).collect();
    for _ in 0..3 {
        recv(&made, "connection_made");
    }
    let handle = reactor.handle.clone();
    std::thread::spawn(move || handle.stop()).join().unwrap();
    for mut peer in peers {
        assert!(expect_eof(&mut peer, "an idle client after stop()").is_empty());
    }
    reactor.join("run() to return after ReactorHandle::stop()");
    let reasons: Vec<DisconnectReason> = lost.try_iter().map(|(_, reason)| reason).collect();
    assert_eq!(
        reasons,
        vec![DisconnectReason::Clean; 3],
        "every connection closed cleanly before run() returned"
    );
}

#[test]
fn stop_reactor_from_a_protocol_callback_stops_run() {
    let (reactor, addr, (made, lost)) = reporting_server();
    let mut bystander = connect(Kind::Tcp, &addr);
    let mut stopper = connect(Kind::Tcp, &addr);
    recv(&made, "connection_made");
    recv(&made, "connection_made");
    stopper.write_all(b"please stop").unwrap();
    assert!(expect_eof(&mut stopper, "the stopping client").is_empty());
    assert!(expect_eof(&mut bystander, "the other client").is_empty());
    drop((stopper, bystander));
    reactor.join("run() to return after stop_reactor() in data_received");
    let reasons: Vec<DisconnectReason> = lost.try_iter().map(|(_, reason)| reason).collect();
    assert_eq!(reasons, [DisconnectReason::Clean, DisconnectReason::Clean]);
}
