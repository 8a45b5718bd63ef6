//! Graceful shutdown, over TCP and Unix stream sockets: the listener closes first, queued data
//! is delivered (then EOF) before `run()` returns, a peer that never reads is aborted at the
//! deadline, a stop from inside a callback takes effect after it, and what connects and listens
//! do while the reactor is stopping. Catalogue test 29 (`graceful_shutdown`), and the
//! "nothing lost" graceful stop. Stopping from another thread or from a protocol callback (the
//! mechanism) is in `threads.rs`.
//!
//! The catalogue's `connection_lost(Done)` is DESIGN.md's `DisconnectReason::Clean`; DESIGN wins.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use torsion_reactor::{
    Address, ClientFactory, ConnId, Ctx, DisconnectReason, Error, LoopCtx, Protocol, Reactor, ReactorHandle,
};
use torsion_tests::{
    bounded, connect_small_window, expect_aborted, expect_eof, localhost, over_kinds, pattern, recv,
    run_until, wait_for, AnyStream, Kind, Server, WAIT,
};

const MIB: usize = 1 << 20;

/// What a [`Queuer`] (and the stop request) tells the test, in the order it happened.
#[derive(Debug)]
enum Ev {
    Made(ConnId),
    /// Bytes still in each connection's user-space buffer when the stop was requested.
    Stopping {
        at: Instant,
        queued: Vec<usize>,
    },
    Lost {
        id: ConnId,
        reason: DisconnectReason,
        at: Instant,
    },
}

/// Queues its data at once in `connection_made`; reports its id, then how it ended.
struct Queuer {
    data: Bytes,
    events: Sender<Ev>,
}

impl Protocol for Queuer {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write_bytes(self.data.clone());
        let _ = self.events.send(Ev::Made(cx.conn_id()));
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.events.send(Ev::Lost { id: cx.conn_id(), reason, at: Instant::now() });
    }
}

/// A server of `kind` whose connections each get `data` at once; its shutdown deadline set.
fn queuing_server(kind: Kind, data: Bytes, shutdown_timeout: Duration) -> (Server, Receiver<Ev>) {
    let (tx, events) = mpsc::channel();
    let server = Server::on_with(
        kind,
        move |reactor| reactor.set_shutdown_timeout(shutdown_timeout),
        move || move |_| Some(Queuer { data: data.clone(), events: tx.clone() }),
    );
    (server, events)
}

/// The ids of the next `n` connections made.
fn made(events: &Receiver<Ev>, n: usize) -> Vec<ConnId> {
    (0..n)
        .map(|_| match recv(events, "connection_made") {
            Ev::Made(id) => id,
            other => panic!("expected Made, got {other:?}"),
        })
        .collect()
}

/// `(id, reason, when)` of every `connection_lost` reported so far.
fn losses(events: &Receiver<Ev>) -> Vec<(ConnId, DisconnectReason, Instant)> {
    events
        .try_iter()
        .filter_map(|e| match e {
            Ev::Lost { id, reason, at } => Some((id, reason, at)),
            _ => None,
        })
        .collect()
}

/// Reads to EOF on a thread.
fn reader(mut stream: AnyStream) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || expect_eof(&mut stream, "a reader during the shutdown"))
}

/// Stops the reactor from a thread call that first records how much each connection has queued.
fn stop_recording_queues(handle: &ReactorHandle, ids: Vec<ConnId>, events: Sender<Ev>) {
    handle.call_from_thread(move |cx| {
        let queued = ids.iter().map(|id| cx.transport_for(*id).map_or(0, |t| t.write_buffer_len())).collect();
        events.send(Ev::Stopping { at: Instant::now(), queued }).unwrap();
        cx.stop_reactor();
    });
}

// ---------------------------------------------------------------------------------------------
// Catalogue 29: graceful_shutdown

const CONNS: usize = 100;
const DEADLINE: Duration = Duration::from_secs(2);

/// Tries to connect until refused (TCP), or until the socket file is gone or refuses (Unix);
/// returns how long after `since` that was.
fn refused_after(kind: Kind, addr: &Address, since: Instant) -> Duration {
    loop {
        match AnyStream::connect(addr) {
            Err(e) if kind.is_refusal(&e) => return since.elapsed(),
            Err(e) => panic!("connect during shutdown: {e}"),
            Ok(_) => {
                assert!(since.elapsed() < WAIT, "the listener was never closed");
                std::thread::sleep(Duration::from_millis(1)); // bounded retry
            }
        }
    }
}

/// Catalogue 29 (graceful_shutdown): 100 connections, each with 1 MiB queued, and a shutdown
/// deadline of 2 s. Pass: the listener closes first (new connects are refused within 50 ms of
/// the stop); all 100 MiB arrive, each connection gets a FIN and `connection_lost(Clean)`
/// exactly once, and the shutdown takes ≤ 1 s.
fn load_graceful_shutdown_of_100_connections_delivers_100_mib_then_fin(kind: Kind) {
    let data = Bytes::from(pattern(29, MIB));
    let (server, events) = queuing_server(kind, data.clone(), DEADLINE);
    let clients: Vec<AnyStream> = (0..CONNS).map(|_| server.connect()).collect();
    let ids = made(&events, CONNS);
    let stopped = Instant::now();
    server.handle.stop();
    let refused = refused_after(kind, &server.addr, stopped);
    let readers: Vec<_> = clients.into_iter().map(reader).collect();
    let addr = server.addr.clone();
    server.join("run() to return after the graceful shutdown");
    let took = stopped.elapsed();
    let mut delivered = 0;
    for r in readers {
        let got = r.join().unwrap();
        assert!(got == data, "a reader got {} of {} bytes", got.len(), data.len());
        delivered += got.len();
    }
    let lost = losses(&events);
    println!(
        "graceful_shutdown ({kind}): new connects to {addr} refused {refused:?} after the stop; {} MiB \
         delivered; run() returned after {took:?}",
        delivered / MIB
    );
    // Probe connects of `refused_after` may have been accepted before the stop was picked up
    // (more than one on a loaded machine); they close at once, so their ends are not checked.
    // Each of the 100 clients ends exactly once, cleanly.
    for id in &ids {
        let ends: Vec<&DisconnectReason> = lost.iter().filter(|l| l.0 == *id).map(|l| &l.1).collect();
        assert_eq!(
            ends,
            [&DisconnectReason::Clean],
            "connection_lost(Clean) once for {id:?} (all: {lost:?})"
        );
    }
    assert!(refused <= Duration::from_millis(50), "the listener closed {refused:?} after the stop");
    assert!(took <= Duration::from_secs(1), "the shutdown took {took:?}");
}
over_kinds!(load_graceful_shutdown_of_100_connections_delivers_100_mib_then_fin);

/// Catalogue 29 (graceful_shutdown), variant: a peer that never reads is aborted at the
/// deadline, and `run()` returns within deadline + 250 ms.
fn load_graceful_shutdown_aborts_a_peer_that_never_reads_at_the_deadline(kind: Kind) {
    let (server, events) = queuing_server(kind, Bytes::from(pattern(30, 16 * MIB)), DEADLINE);
    // A small receive window (TCP), so most of the 16 MiB stays in the server's buffer.
    let sleeper = connect_small_window(&server.addr);
    made(&events, 1);
    let stopped = Instant::now();
    server.handle.stop();
    server.join("run() to return at the shutdown deadline");
    let took = stopped.elapsed();
    println!("graceful_shutdown (non-reader, {kind}): run() returned after {took:?} (deadline {DEADLINE:?})");
    assert!(
        matches!(recv(&events, "connection_lost"), Ev::Lost { reason: DisconnectReason::Aborted, .. }),
        "the non-reader was aborted"
    );
    assert!(took >= DEADLINE, "aborted before the deadline: {took:?}");
    assert!(took <= DEADLINE + Duration::from_millis(250), "run() returned {took:?} after the stop");
    drop(sleeper);
}
over_kinds!(load_graceful_shutdown_aborts_a_peer_that_never_reads_at_the_deadline);

/// Stops the reactor from `data_received`, then writes a reply in the same callback.
struct StopOnData;

impl Protocol for StopOnData {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.stop_reactor();
        cx.transport().write(b"after stop: ");
        cx.transport().write(data);
    }
}

/// Catalogue 29 (graceful_shutdown), variant: a stop from inside `data_received` takes effect
/// after the current callback (its own writes still go out, then the FIN).
fn a_stop_from_data_received_takes_effect_after_the_callback(kind: Kind) {
    let server = Server::on_with(kind, |r| r.set_shutdown_timeout(DEADLINE), || |_| Some(StopOnData));
    let mut c = server.connect();
    c.write_all(b"bye").unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"after stop: bye", "the callback's writes went out, then the FIN");
    drop(c);
    server.join("run() to return after a stop from data_received");
}
over_kinds!(a_stop_from_data_received_takes_effect_after_the_callback);

// ---------------------------------------------------------------------------------------------
// Nothing lost

/// "Nothing lost": a graceful stop with a 2 s deadline delivers all 8 MiB queued to each of 10
/// readers (then FIN, `connection_lost(Clean)`), and aborts a peer that never reads at the
/// deadline (it sees a reset; a Unix peer, EOF or a reset); `run()` returns within the
/// deadline + 250 ms.
fn graceful_shutdown_delivers_every_queued_byte_to_readers_and_aborts_a_non_reader_at_the_deadline(
    kind: Kind,
) {
    const READERS: usize = 10;
    let deadline = Duration::from_secs(2);
    // More than the kernel's send buffer can take (tcp_wmem max 4 MiB), so the non-reader's
    // data stays in the user buffer until the deadline.
    let data = Bytes::from(pattern(29, 8 << 20));
    let (server, events) = queuing_server(kind, data.clone(), deadline);
    let mut peers: Vec<AnyStream> = (0..=READERS).map(|_| connect_small_window(&server.addr)).collect();
    made(&events, READERS + 1);
    let stopped_at = Instant::now();
    server.handle.stop();
    // Only now do the readers start reading; the last peer never reads.
    let mut sleeper = peers.pop().unwrap();
    let readers: Vec<_> = peers.into_iter().map(reader).collect();
    let mut delivered = 0;
    for reader in readers {
        let got = reader.join().unwrap();
        assert!(got == data[..], "a reader got {} B of {}", got.len(), data.len());
        delivered += got.len();
    }
    server.join("run() to return after the deadline");
    let returned_after = stopped_at.elapsed();
    let lost = losses(&events);
    let clean = lost.iter().filter(|l| l.1 == DisconnectReason::Clean).count();
    let aborted: Vec<Duration> = lost
        .iter()
        .filter(|l| l.1 == DisconnectReason::Aborted)
        .map(|l| l.2.duration_since(stopped_at))
        .collect();
    assert_eq!((clean, aborted.len()), (READERS, 1), "{lost:?}");
    assert!(aborted[0] >= deadline, "the non-reader was aborted {:?} after the stop", aborted[0]);
    assert!(
        returned_after <= deadline + Duration::from_millis(250),
        "run() returned {returned_after:?} after the stop (deadline {deadline:?})"
    );
    expect_aborted(&mut sleeper, "the non-reader");
    eprintln!(
        "graceful_shutdown ({kind}): {delivered} of {} queued bytes delivered to {READERS} readers, \
         lost(Clean) x{clean}; the non-reader aborted after {:?}; run() returned after {returned_after:?}",
        READERS * data.len(),
        aborted[0]
    );
}
over_kinds!(graceful_shutdown_delivers_every_queued_byte_to_readers_and_aborts_a_non_reader_at_the_deadline);

/// A graceful stop delivers everything still queued (8 MiB each to 3 clients that only start
/// reading after the stop), then EOF, and every connection ends `Clean` before `run()`
/// returns.
fn graceful_stop_delivers_everything_queued_then_eof_before_run_returns(kind: Kind) {
    const CLIENTS: usize = 3;
    let data = Bytes::from(pattern(11, 8 << 20));
    // A deadline far beyond any slowness: this test is about flushing, not aborting.
    let (server, events) = queuing_server(kind, data.clone(), WAIT * 2);
    let peers: Vec<AnyStream> = (0..CLIENTS).map(|_| connect_small_window(&server.addr)).collect();
    let ids = made(&events, CLIENTS);

    let (stop_tx, stop_rx) = mpsc::channel();
    stop_recording_queues(&server.handle, ids, stop_tx);
    let Ev::Stopping { queued, .. } = recv(&stop_rx, "the stop request") else { unreachable!() };
    assert!(queued.iter().all(|&q| q > 0), "precondition: data still queued at the stop: {queued:?}");

    // Only now do the clients start reading.
    let readers: Vec<JoinHandle<Vec<u8>>> = peers.into_iter().map(reader).collect();
    for (i, reader) in readers.into_iter().enumerate() {
        wait_for("a reader to reach EOF", || reader.is_finished());
        let got = reader.join().expect("reader panicked");
        assert_eq!(got.len(), data.len(), "client {i}: bytes lost in the shutdown");
        assert!(got == data, "client {i}: bytes differ");
    }
    server.join("run() to return after every client got its data");
    let lost: Vec<DisconnectReason> = losses(&events).into_iter().map(|l| l.1).collect();
    assert_eq!(
        lost,
        vec![DisconnectReason::Clean; CLIENTS],
        "each connection closed cleanly, before run() returned"
    );
}
over_kinds!(graceful_stop_delivers_everything_queued_then_eof_before_run_returns);

/// A graceful stop with a 300 ms deadline: a client that took all its data ends `Clean` at
/// once; one that never reads is aborted at the deadline, and sees a reset (a Unix peer, EOF
/// or a reset).
fn graceful_stop_aborts_a_client_that_never_reads_at_the_deadline(kind: Kind) {
    let timeout = Duration::from_millis(300);
    let size = 8 << 20;
    let (server, events) = queuing_server(kind, Bytes::from(pattern(12, size)), timeout);
    let mut reader = connect_small_window(&server.addr);
    let reader_id = made(&events, 1)[0];
    let mut sleeper = connect_small_window(&server.addr);
    let sleeper_id = made(&events, 1)[0];
    // The reader takes all its data before the stop, so it can close cleanly at once.
    let mut got = vec![0u8; size];
    reader.read_exact(&mut got).expect("the reader's data");

    let (stop_tx, stop_rx) = mpsc::channel();
    stop_recording_queues(&server.handle, vec![reader_id, sleeper_id], stop_tx);
    let Ev::Stopping { at: stopped_at, queued } = recv(&stop_rx, "the stop request") else { unreachable!() };
    assert!(queued.iter().any(|&q| q > 0), "precondition: the sleeper has data queued: {queued:?}");
    assert!(expect_eof(&mut reader, "the reader after the stop").is_empty());
    drop(reader);

    server.join("run() to return after the shutdown deadline");
    let mut lost = losses(&events);
    lost.sort_by_key(|l| l.2);
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert_eq!((lost[0].0, &lost[0].1), (reader_id, &DisconnectReason::Clean));
    assert_eq!((lost[1].0, &lost[1].1), (sleeper_id, &DisconnectReason::Aborted));
    let aborted_after = lost[1].2 - stopped_at;
    assert!(
        aborted_after >= timeout,
        "aborted {aborted_after:?} after the stop, before the {timeout:?} deadline"
    );

    // The sleeper's connection was aborted, not closed cleanly.
    expect_aborted(&mut sleeper, "the sleeper");
}
over_kinds!(graceful_stop_aborts_a_client_that_never_reads_at_the_deadline);

// ---------------------------------------------------------------------------------------------
// While stopping

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
    fn build_protocol(&mut self, _peer: Address) -> Box<dyn Protocol> {
        *self.made.borrow_mut() += 1;
        Box::new(Idle)
    }

    fn client_connection_failed(&mut self, _cx: &mut LoopCtx<'_>, reason: Error) {
        self.failed.borrow_mut().push(reason);
    }
}

/// While stopping, a pending connect is cancelled (`Error::Cancelled`), and new listeners and
/// connects are refused (`Error::Stopping`), from outside and from a callback.
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
    assert!(matches!(reactor.listen_tcp(localhost(), |_| None::<Box<dyn Protocol>>), Err(Error::Stopping)));
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
