//! Stopping a pool of reactors (issue 16): clients sitting in accept queues when the stop comes
//! are served and closed cleanly, never reset; the stop comes from another thread, a
//! callback on any reactor, or a signal.

use std::io::{Read, Write};
use std::sync::mpsc;

use torsion_protocols::Echo;
use torsion_reactor::pool::{Balance, Pick, PoolHandle, ReactorPool};
use torsion_reactor::ListenOptions;
use torsion_tests::{connect, expect_eof, localhost, pattern, recv, wait_for, AnyStream, Kind, WAIT};

const THREADS: usize = 2;
const CLIENTS: usize = 40;

/// Where the stop comes from.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    OtherThread,
    Callback,
    Signal,
}

/// Holds every reactor inside a callback (so nothing is accepted) until the returned senders
/// are dropped or sent to.
fn block_every_reactor(pool: &PoolHandle) -> Vec<mpsc::Sender<()>> {
    let mut releases = Vec::new();
    for i in 0..pool.threads() {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        pool.call_reactor(i, move |_cx| {
            started_tx.send(()).unwrap();
            // Bounded: a test that forgets to release fails instead of hanging.
            let _ = release_rx.recv_timeout(WAIT);
        })
        .expect("queue a blocking call");
        recv(&started_rx, "the reactor is held");
        releases.push(release_tx);
    }
    releases
}

/// Clients connect and send while every reactor is held, so they sit in an accept queue (the
/// kernel's, or the hand-off queue); then the pool is stopped by `trigger` and the reactors
/// released. Every client must read its echo and then a clean EOF: none is reset by a listener
/// closing over it.
fn queued_clients_are_served_then_closed_cleanly(balance: Balance, trigger: Trigger) {
    let mut pool = ReactorPool::new(THREADS).expect("pool");
    if matches!(trigger, Trigger::Signal) {
        pool.install_signal_handlers().expect("signal handlers");
    }
    let port = pool
        .listen_tcp_with(localhost(), balance, &ListenOptions::default(), |_| |_peer| Some(Echo))
        .expect("listen");
    let handle = pool.handle();
    let releases = block_every_reactor(&handle);
    let mut clients: Vec<(AnyStream, Vec<u8>)> = (0..CLIENTS)
        .map(|i| {
            let mut stream = connect(Kind::Tcp, port.local_addr());
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let data = pattern(i as u64, 2000);
            stream.write_all(&data).unwrap();
            (stream, data)
        })
        .collect();
    assert_eq!(handle.all_stats().iter().map(|s| s.accepted).sum::<u64>(), 0, "nothing accepted yet");
    match trigger {
        Trigger::OtherThread => {
            let h = handle.clone();
            std::thread::spawn(move || h.stop()).join().unwrap();
        }
        // Queued behind the held callback: runs on reactor 0 once it is released.
        Trigger::Callback => handle.call_reactor(0, |cx| cx.stop_reactor()).expect("queue the stop"),
        Trigger::Signal => {
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("raise SIGTERM");
            wait_for("the signal stops the pool", || handle.is_stopping());
        }
    }
    drop(releases);
    for (i, (stream, data)) in clients.iter_mut().enumerate() {
        let got = expect_eof(stream, &format!("client {i}"));
        assert!(got == *data, "client {i}: got {} of {} bytes back", got.len(), data.len());
    }
    // Close our ends, so the server's lingering sockets see our FIN and need not wait for
    // their deadline.
    drop(clients);
    pool.join().expect("the pool stops cleanly");
    assert!(connect_refused(port.local_addr()), "nothing listens after the stop");
}

fn connect_refused(addr: &torsion_reactor::Address) -> bool {
    let torsion_reactor::Address::Inet(inet) = addr else { return false };
    std::net::TcpStream::connect(inet).is_err()
}

#[test]
fn reuseport_stop_from_another_thread_serves_queued_clients() {
    queued_clients_are_served_then_closed_cleanly(Balance::ReusePort, Trigger::OtherThread);
}

#[test]
fn reuseport_stop_from_a_callback_serves_queued_clients() {
    queued_clients_are_served_then_closed_cleanly(Balance::ReusePort, Trigger::Callback);
}

#[test]
fn reuseport_stop_from_a_signal_serves_queued_clients() {
    queued_clients_are_served_then_closed_cleanly(Balance::ReusePort, Trigger::Signal);
}

#[test]
fn handoff_stop_from_another_thread_serves_queued_clients() {
    queued_clients_are_served_then_closed_cleanly(Balance::HandOff(Pick::RoundRobin), Trigger::OtherThread);
}

#[test]
fn handoff_stop_from_a_callback_serves_queued_clients() {
    queued_clients_are_served_then_closed_cleanly(Balance::HandOff(Pick::RoundRobin), Trigger::Callback);
}

#[test]
fn handoff_stop_from_a_signal_serves_queued_clients() {
    queued_clients_are_served_then_closed_cleanly(Balance::HandOff(Pick::LeastLoaded), Trigger::Signal);
}

/// Without the drain a single reactor would reset them too: the same holds for one reactor
/// stopped with clients in its accept queue (the drain is the reactor's, not the pool's).
#[test]
fn a_single_reactor_stop_serves_clients_queued_on_its_listener() {
    let mut pool = ReactorPool::new(1).expect("pool");
    let port = pool.listen_tcp(localhost(), |_| |_peer| Some(Echo)).expect("listen");
    let handle = pool.handle();
    let releases = block_every_reactor(&handle);
    let mut stream = connect(Kind::Tcp, port.local_addr());
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"queued").unwrap();
    handle.stop();
    drop(releases);
    assert_eq!(expect_eof(&mut stream, "queued client"), b"queued");
    drop(stream);
    pool.join().expect("clean stop");
}

/// The control experiment: with the drain turned off (`set_shutdown_drain_max(0)`), closing
/// the listener resets the clients queued on it. This is what the drain prevents.
#[test]
fn without_the_drain_queued_clients_are_reset() {
    let mut pool = ReactorPool::builder()
        .threads(1)
        .configure(|reactor, _| reactor.set_shutdown_drain_max(0))
        .start()
        .expect("pool");
    let port = pool.listen_tcp(localhost(), |_| |_peer| Some(Echo)).expect("listen");
    let handle = pool.handle();
    let releases = block_every_reactor(&handle);
    let mut stream = connect(Kind::Tcp, port.local_addr());
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"queued").unwrap();
    handle.stop();
    drop(releases);
    let mut buf = [0u8; 16];
    let read = stream.read(&mut buf);
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "expected a reset, got {read:?}"
    );
    pool.join().expect("clean stop");
}

/// A stop with nothing open ends every thread; `join` returns; dropping a pool stops it too.
#[test]
fn an_idle_pool_stops_and_a_dropped_pool_stops_its_threads() {
    let pool = ReactorPool::new(3).expect("pool");
    let handle = pool.handle();
    assert_eq!(handle.threads(), 3);
    pool.shutdown().expect("clean stop");
    assert!(handle.all_stats().iter().all(|s| !s.alive));

    let pool = ReactorPool::new(2).expect("pool");
    let handle = pool.handle();
    drop(pool);
    assert!(handle.all_stats().iter().all(|s| !s.alive), "dropping the pool joined its threads");
}

/// Reading after the stop: a client connected after every listener closed is refused, not
/// left hanging.
#[test]
fn after_the_stop_new_clients_are_refused() {
    let mut pool = ReactorPool::new(2).expect("pool");
    let port = pool.listen_tcp(localhost(), |_| |_peer| Some(Echo)).expect("listen");
    let mut stream = connect(Kind::Tcp, port.local_addr());
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    stream.read_exact(&mut one).unwrap();
    let handle = pool.handle();
    handle.stop();
    assert_eq!(expect_eof(&mut stream, "open client"), b"");
    drop(stream);
    pool.join().expect("clean stop");
    assert!(connect_refused(port.local_addr()));
}

/// The same over a Unix socket (always the hand-off acceptor): clients queued when the stop
/// comes are served and closed cleanly, and the socket file is removed.
#[test]
fn unix_stop_serves_queued_clients_and_removes_the_file() {
    let path = torsion_tests::TempPath::new(".sock");
    let mut pool = ReactorPool::new(THREADS).expect("pool");
    let port = pool.listen_unix(path.path(), |_| |_peer| Some(Echo)).expect("listen");
    let handle = pool.handle();
    let releases = block_every_reactor(&handle);
    let mut clients: Vec<(AnyStream, Vec<u8>)> = (0..CLIENTS)
        .map(|i| {
            let mut stream = connect(Kind::Unix, port.local_addr());
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let data = pattern(i as u64, 1500);
            stream.write_all(&data).unwrap();
            (stream, data)
        })
        .collect();
    handle.stop();
    drop(releases);
    for (i, (stream, data)) in clients.iter_mut().enumerate() {
        let got = expect_eof(stream, &format!("unix client {i}"));
        assert!(got == *data, "unix client {i}: got {} of {} bytes back", got.len(), data.len());
    }
    drop(clients);
    pool.join().expect("the pool stops cleanly");
    assert!(!path.path().exists(), "the socket file is removed");
}
