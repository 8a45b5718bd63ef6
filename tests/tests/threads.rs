//! Other threads and stopping: `call_from_thread` order and wake-ups, writing to a connection
//! from another thread, `ReactorHandle::stop`, `stop_reactor` from a protocol, graceful
//! shutdown (queued data delivered, then EOF; a peer that never reads aborted at the deadline),
//! and what connects and listens do while the reactor is stopping.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use bytes::Bytes;
use torsion_reactor::{
    ClientFactory, ConnId, Ctx, DisconnectReason, Error, Protocol, Reactor, ReactorHandle,
};
use torsion_tests::{localhost, pattern, run_until, wait_for, WAIT};

/// A reactor running `run()` on its own thread.
struct ReactorThread {
    handle: ReactorHandle,
    thread: Option<JoinHandle<Result<(), torsion_reactor::Error>>>,
}

impl ReactorThread {
    /// Builds a reactor on a new thread, lets `setup` configure it (its result comes back to the
    /// caller), then calls `run()`.
    fn spawn<T: Send + 'static>(
        setup: impl FnOnce(&mut Reactor) -> T + Send + 'static,
    ) -> (ReactorThread, T) {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut reactor = Reactor::new()?;
            let out = setup(&mut reactor);
            tx.send((reactor.handle(), out)).expect("send setup result");
            reactor.run()
        });
        let (handle, out) = rx.recv_timeout(WAIT).expect("reactor thread did not start");
        (ReactorThread { handle, thread: Some(thread) }, out)
    }

    /// Waits (bounded by [`WAIT`]) for `run()` to return, and checks it returned `Ok`.
    fn expect_run_returns(mut self, what: &str) {
        let thread = self.thread.take().unwrap();
        wait_for(what, || thread.is_finished());
        match thread.join() {
            Ok(result) => result.expect("run() failed"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for ReactorThread {
    fn drop(&mut self) {
        // A test failed before the reactor stopped: ask it to stop, never block on it.
        if self.thread.is_some() {
            self.handle.stop();
        }
    }
}

fn client(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Reads until EOF; a timeout or error fails the test.
fn read_to_eof(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    if let Err(e) = stream.read_to_end(&mut got) {
        panic!("{what}: expected data then EOF, got {e} after {} bytes", got.len());
    }
    got
}

fn recv<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

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
    let (reactor, ()) = ReactorThread::spawn(|_| ());
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
    reactor.expect_run_returns("run() to return after stop_reactor() from a thread call");
    worker.join().expect("worker panicked");
    assert_eq!(ran.load(Ordering::SeqCst), 100, "every call before the stop ran");
}

/// Reports its id on `connection_made` and its reason on `connection_lost`.
struct Reporter {
    made: Sender<ConnId>,
    lost: Sender<(ConnId, String)>,
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
        self.lost.send((cx.conn_id(), format!("{reason:?}"))).unwrap();
    }
}

type Reports = (Receiver<ConnId>, Receiver<(ConnId, String)>);

/// A reactor thread listening with [`Reporter`]s.
fn reporting_server() -> (ReactorThread, SocketAddr, Reports) {
    let (made_tx, made) = mpsc::channel();
    let (lost_tx, lost) = mpsc::channel();
    let (reactor, addr) = ReactorThread::spawn(move |reactor| {
        let factory = move |_| {
            Some(Box::new(Reporter { made: made_tx.clone(), lost: lost_tx.clone() }) as Box<dyn Protocol>)
        };
        reactor.listen_tcp(localhost(), factory).expect("listen").local_addr()
    });
    (reactor, addr, (made, lost))
}

#[test]
fn a_thread_call_writes_to_a_connection_by_id() {
    let (reactor, addr, (made, lost)) = reporting_server();
    let mut peer = client(addr);
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
    assert_eq!(recv(&lost, "connection_lost"), (id, "Clean".to_string()));
    let (tx, rx) = mpsc::channel();
    reactor.handle.call_from_thread(move |cx| tx.send(cx.transport_for(id).is_none()).unwrap());
    assert!(recv(&rx, "the second thread call"), "a lost connection's id still resolved");
    reactor.handle.stop();
    reactor.expect_run_returns("run() to return");
}

#[test]
fn handle_stop_from_another_thread_closes_connections_and_returns() {
    let (reactor, addr, (made, lost)) = reporting_server();
    let peers: Vec<TcpStream> = (0..3).map(|_| client(addr)).collect();
    for _ in 0..3 {
        recv(&made, "connection_made");
    }
    let handle = reactor.handle.clone();
    std::thread::spawn(move || handle.stop()).join().unwrap();
    for mut peer in peers {
        assert!(read_to_eof(&mut peer, "an idle client after stop()").is_empty());
    }
    reactor.expect_run_returns("run() to return after ReactorHandle::stop()");
    let reasons: Vec<String> = lost.try_iter().map(|(_, reason)| reason).collect();
    assert_eq!(reasons, ["Clean", "Clean", "Clean"], "every connection closed cleanly before run() returned");
}

#[test]
fn stop_reactor_from_a_protocol_callback_stops_run() {
    let (reactor, addr, (made, lost)) = reporting_server();
    let mut bystander = client(addr);
    let mut stopper = client(addr);
    recv(&made, "connection_made");
    recv(&made, "connection_made");
    stopper.write_all(b"please stop").unwrap();
    assert!(read_to_eof(&mut stopper, "the stopping client").is_empty());
    assert!(read_to_eof(&mut bystander, "the other client").is_empty());
    drop((stopper, bystander));
    reactor.expect_run_returns("run() to return after stop_reactor() in data_received");
    let reasons: Vec<String> = lost.try_iter().map(|(_, reason)| reason).collect();
    assert_eq!(reasons, ["Clean", "Clean"]);
}

/// Writes `data` in `connection_made`; reports `connection_lost` with the peer and the time.
struct Blaster {
    data: Bytes,
    peer: SocketAddr,
    events: Sender<Shutdown>,
}

/// What a graceful-shutdown test hears from the reactor thread, in the order it happened.
#[derive(Debug)]
enum Shutdown {
    Made(ConnId),
    /// Bytes still in each connection's user-space buffer when the stop was requested.
    Stopping {
        at: Instant,
        queued: Vec<usize>,
    },
    Lost {
        peer: SocketAddr,
        reason: String,
        at: Instant,
    },
}

impl Protocol for Blaster {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write_bytes(self.data.clone());
        self.events.send(Shutdown::Made(cx.conn_id())).unwrap();
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let (peer, reason) = (self.peer, format!("{reason:?}"));
        self.events.send(Shutdown::Lost { peer, reason, at: cx.now() }).unwrap();
    }
}

/// A reactor thread whose connections each get `data` at once; `shutdown_timeout` set.
fn blasting_server(
    data: Bytes,
    shutdown_timeout: Duration,
) -> (ReactorThread, SocketAddr, Receiver<Shutdown>) {
    let (tx, rx) = mpsc::channel();
    let (reactor, addr) = ReactorThread::spawn(move |reactor| {
        reactor.set_shutdown_timeout(shutdown_timeout);
        let factory = move |peer| {
            Some(Box::new(Blaster { data: data.clone(), peer, events: tx.clone() }) as Box<dyn Protocol>)
        };
        reactor.listen_tcp(localhost(), factory).expect("listen").local_addr()
    });
    (reactor, addr, rx)
}

/// A client with a small, fixed receive buffer, so the server's data backs up in its buffers.
fn slow_client(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Stops the reactor from a thread call that first records how much each connection has queued.
fn stop_recording_queues(handle: &ReactorHandle, ids: Vec<ConnId>, events: Sender<Shutdown>) {
    handle.call_from_thread(move |cx| {
        let queued =
            ids.iter().map(|id| cx.transport_for(*id).map_or(0, |mut t| t.write_buffer_len())).collect();
        events.send(Shutdown::Stopping { at: cx.now(), queued }).unwrap();
        cx.stop_reactor();
    });
}

#[test]
fn graceful_stop_delivers_everything_queued_then_eof_before_run_returns() {
    const CLIENTS: usize = 3;
    let data = Bytes::from(pattern(11, 8 << 20));
    // A deadline far beyond any slowness: this test is about flushing, not aborting.
    let (reactor, addr, events) = blasting_server(data.clone(), WAIT * 2);
    let peers: Vec<TcpStream> = (0..CLIENTS).map(|_| slow_client(addr)).collect();
    let ids: Vec<ConnId> = (0..CLIENTS)
        .map(|_| match recv(&events, "connection_made") {
            Shutdown::Made(id) => id,
            other => panic!("expected Made, got {other:?}"),
        })
        .collect();

    let (stop_tx, stop_rx) = mpsc::channel();
    stop_recording_queues(&reactor.handle, ids, stop_tx);
    let Shutdown::Stopping { queued, .. } = recv(&stop_rx, "the stop request") else { unreachable!() };
    assert!(queued.iter().all(|&q| q > 0), "precondition: data still queued at the stop: {queued:?}");

    // Only now do the clients start reading.
    let readers: Vec<JoinHandle<(SocketAddr, Vec<u8>)>> = peers
        .into_iter()
        .map(|mut peer| {
            std::thread::spawn(move || {
                let local = peer.local_addr().unwrap();
                (local, read_to_eof(&mut peer, "a reading client during shutdown"))
            })
        })
        .collect();
    for reader in readers {
        wait_for("a reader to reach EOF", || reader.is_finished());
        let (local, got) = reader.join().expect("reader panicked");
        assert_eq!(got.len(), data.len(), "client {local}: bytes lost in the shutdown");
        assert!(got == data, "client {local}: bytes differ");
    }
    reactor.expect_run_returns("run() to return after every client got its data");
    let lost: Vec<String> = events
        .try_iter()
        .map(|e| match e {
            Shutdown::Lost { reason, .. } => reason,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(lost, ["Clean"; CLIENTS], "each connection closed cleanly, before run() returned");
}

#[test]
fn graceful_stop_aborts_a_client_that_never_reads_at_the_deadline() {
    let timeout = Duration::from_millis(300);
    let size = 8 << 20;
    let (reactor, addr, events) = blasting_server(Bytes::from(pattern(12, size)), timeout);
    let mut reader = slow_client(addr);
    let mut sleeper = slow_client(addr);
    let mut ids = Vec::new();
    for _ in 0..2 {
        match recv(&events, "connection_made") {
            Shutdown::Made(id) => ids.push(id),
            other => panic!("expected Made, got {other:?}"),
        }
    }
    // The reader takes all its data before the stop, so it can close cleanly at once.
    let mut got = vec![0u8; size];
    reader.read_exact(&mut got).expect("the reader's data");

    let (stop_tx, stop_rx) = mpsc::channel();
    stop_recording_queues(&reactor.handle, ids, stop_tx);
    let Shutdown::Stopping { at: stopped_at, queued } = recv(&stop_rx, "the stop request") else {
        unreachable!()
    };
    assert!(queued.iter().any(|&q| q > 0), "precondition: the sleeper has data queued: {queued:?}");
    assert!(read_to_eof(&mut reader, "the reader after the stop").is_empty());
    let reader_addr = reader.local_addr().unwrap();
    drop(reader);

    reactor.expect_run_returns("run() to return after the shutdown deadline");
    let mut lost: Vec<(SocketAddr, String, Instant)> = events
        .try_iter()
        .map(|e| match e {
            Shutdown::Lost { peer, reason, at } => (peer, reason, at),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    lost.sort_by_key(|l| l.2);
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert_eq!((lost[0].0, lost[0].1.as_str()), (reader_addr, "Clean"));
    assert_eq!((lost[1].0, lost[1].1.as_str()), (sleeper.local_addr().unwrap(), "Aborted"));
    let aborted_after = lost[1].2 - stopped_at;
    assert!(
        aborted_after >= timeout,
        "aborted {aborted_after:?} after the stop, before the {timeout:?} deadline"
    );

    // The sleeper's connection was reset, not closed cleanly.
    let mut rest = Vec::new();
    let err = sleeper.read_to_end(&mut rest).expect_err("the sleeper must see a reset, not EOF");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

/// Counts `connection_made` and records connect failures.
struct Connects {
    made: Rc<RefCell<u32>>,
    failed: Rc<RefCell<Vec<Error>>>,
}

struct Idle;

impl Protocol for Idle {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

impl ClientFactory for Connects {
    fn build_protocol(&mut self, _peer: SocketAddr) -> Box<dyn Protocol> {
        *self.made.borrow_mut() += 1;
        Box::new(Idle)
    }

    fn client_connection_failed(&mut self, _cx: &mut Ctx<'_>, reason: Error) {
        self.failed.borrow_mut().push(reason);
    }
}

/// Runs `body` on its own thread and waits for it, bounded by [`WAIT`]: for tests that call
/// `turn()` or `run()` on a reactor with a real clock, which a bug could block forever.
fn bounded(what: &str, body: impl FnOnce() + Send + 'static) {
    let thread = std::thread::spawn(body);
    wait_for(what, || thread.is_finished());
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn while_stopping_connects_and_listens_are_refused_and_pending_connects_cancelled() {
    bounded("the test body (a turn or run() blocked)", while_stopping_body);
}

fn while_stopping_body() {
    let target = std::net::TcpListener::bind(localhost()).unwrap();
    let addr = target.local_addr().unwrap();
    let mut reactor = Reactor::new().unwrap();
    reactor.set_shutdown_timeout(Duration::from_millis(100));
    let made = Rc::new(RefCell::new(0));
    let failed = Rc::new(RefCell::new(Vec::new()));
    let connects = || Connects { made: made.clone(), failed: failed.clone() };

    // The connect is still pending (the loop has not turned) when the shutdown begins.
    reactor.connect_tcp(addr, connects()).expect("connect before the stop");
    assert_eq!(reactor.connection_count(), 1);
    reactor.stop();
    reactor.turn().unwrap();
    assert_eq!(reactor.connection_count(), 0, "the pending connect is dropped");
    match &failed.borrow()[..] {
        [Error::Cancelled { addr: a }] => assert_eq!(*a, addr),
        other => panic!("expected one Cancelled, got {other:?}"),
    }

    // While stopping: new listeners and connects are refused, from outside and from a callback.
    assert!(matches!(reactor.connect_tcp(addr, connects()), Err(Error::Stopping)));
    assert!(matches!(
        reactor.listen_tcp(localhost(), |_: SocketAddr| -> Option<Box<dyn Protocol>> { None }),
        Err(Error::Stopping)
    ));
    let from_callback = Rc::new(RefCell::new(None));
    let (f, c) = (from_callback.clone(), connects());
    reactor.call_later(Duration::ZERO, move |cx| *f.borrow_mut() = Some(cx.connect_tcp(addr, c)));
    run_until(&mut reactor, "the callback ran", |_| from_callback.borrow().is_some());
    assert!(matches!(*from_callback.borrow(), Some(Err(Error::Stopping))), "{:?}", from_callback.borrow());
    assert_eq!(*made.borrow(), 0);
    assert_eq!(failed.borrow().len(), 1, "a refused connect reports through its Result only");

    reactor.run().unwrap();
    assert_eq!(reactor.connection_count(), 0);
    assert_eq!(reactor.source_count(), 0);
}

/// Regression target: `stop()` before `run()`, with nothing open, must not wait for the
/// shutdown deadline. The reactor begins the shutdown at the top of a turn and then polls with
/// the deadline timer as its timeout before `run()` checks that nothing is left.
#[test]
fn stop_before_run_with_nothing_open_returns_at_once() {
    bounded("run() after stop() with nothing open (it must not wait for the shutdown deadline)", || {
        let mut reactor = Reactor::new().unwrap();
        // Far beyond WAIT, so waiting for the deadline cannot pass as returning at once.
        reactor.set_shutdown_timeout(WAIT * 3);
        reactor.stop();
        reactor.run().expect("run() failed");
    });
}
