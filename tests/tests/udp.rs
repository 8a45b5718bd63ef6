//! UDP over loopback: `listen_udp` and the `DatagramProtocol` contract (started / stopped
//! once, oversized datagrams dropped and counted, ICMP errors reported without closing, panics
//! isolated with the port still serving, timers, multicast).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use torsion_reactor::{
    DatagramCtx, DatagramPort, DatagramProtocol, Reactor, SendOutcome, TimerId, UdpOptions,
};
use torsion_tests::{run_until, wait_for, ReactorThread, WAIT};
use tracing_subscriber::filter::LevelFilter;

/// Echoes every datagram; panics on `boom`; counts `stopped` calls.
struct Echo {
    stopped: Arc<AtomicUsize>,
}

impl DatagramProtocol for Echo {
    fn datagram_received(&mut self, cx: &mut DatagramCtx<'_>, data: &[u8], from: SocketAddr) {
        assert_ne!(data, b"boom", "boom");
        cx.send_to(data, from);
    }

    fn stopped(&mut self, _cx: &mut DatagramCtx<'_>) {
        self.stopped.fetch_add(1, Ordering::SeqCst);
    }
}

fn echo_server(options: UdpOptions) -> (ReactorThread, DatagramPort, Arc<AtomicUsize>) {
    let stopped = Arc::new(AtomicUsize::new(0));
    let count = stopped.clone();
    let (thread, port) = ReactorThread::start(move |reactor| {
        reactor
            .listen_udp_with("127.0.0.1:0".parse().unwrap(), &options, Echo { stopped: count })
            .expect("listen_udp")
    });
    (thread, port, stopped)
}

/// A blocking client socket on 127.0.0.1 whose reads give up after `timeout`.
fn client(timeout: Duration) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(timeout)).unwrap();
    socket
}

fn recv_one(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0; 70_000];
    let (n, _) = socket.recv_from(&mut buf).expect("a datagram within the timeout");
    buf.truncate(n);
    buf
}

/// xorshift64: deterministic sizes and bytes without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// 10,000 datagrams of random sizes (0 to 8 KiB) echoed, the client keeping at most 16 in
/// flight; loopback loses none and keeps their order.
#[test]
fn echo_10k_random_sizes_paced_without_loss() {
    let (server, port, _) = echo_server(UdpOptions::default());
    let socket = client(Duration::from_secs(5));
    socket.connect(port.local_addr()).unwrap();
    const TOTAL: usize = 10_000;
    const WINDOW: usize = 16;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut in_flight: VecDeque<Vec<u8>> = VecDeque::new();
    let (mut sent, mut received, mut lost) = (0, 0, 0);
    let mut buf = vec![0; 9000];
    while received + lost < TOTAL {
        while sent < TOTAL && in_flight.len() < WINDOW {
            let len = (next(&mut rng) % 8193) as usize;
            let seed = next(&mut rng);
            let data: Vec<u8> = (0..len).map(|i| (seed as usize + i * 31) as u8).collect();
            socket.send(&data).expect("send");
            in_flight.push_back(data);
            sent += 1;
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                // Replies come in order: anything older than the match was lost.
                let pos =
                    in_flight.iter().position(|d| d[..] == buf[..n]).expect("an echo of something sent");
                lost += pos;
                in_flight.drain(..=pos);
                received += 1;
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                lost += in_flight.len();
                in_flight.clear();
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
    eprintln!("udp echo: sent {sent}, echoed {received}, lost {lost}");
    assert_eq!(lost, 0, "loopback lost datagrams");
    assert_eq!(port.dropped_datagrams(), 0);
    server.stop();
}

/// A datagram above the port's maximum (1,000 bytes) is dropped and counted, never delivered
/// truncated; the next one of exactly the maximum is delivered whole.
#[test]
fn oversized_datagrams_are_dropped_and_counted() {
    let (server, port, _) = echo_server(UdpOptions::default().max_datagram_size(1000));
    let socket = client(WAIT);
    socket.send_to(&[1; 2000], port.local_addr()).unwrap();
    socket.send_to(&[2; 1001], port.local_addr()).unwrap();
    socket.send_to(&[3; 1000], port.local_addr()).unwrap();
    assert_eq!(recv_one(&socket), vec![3; 1000], "only the datagram within the maximum is echoed");
    assert_eq!(port.dropped_datagrams(), 2);
    server.stop();
}

#[derive(Default)]
struct Seen {
    errors: Vec<io::ErrorKind>,
    data: Vec<Vec<u8>>,
    started: usize,
    stopped: usize,
    timers: usize,
    writable: usize,
}

/// Connects to a dead port in `started`, then (on the ICMP error) to a live one.
struct Prober {
    seen: Rc<RefCell<Seen>>,
    dead: SocketAddr,
    live: SocketAddr,
}

impl DatagramProtocol for Prober {
    fn started(&mut self, cx: &mut DatagramCtx<'_>) {
        self.seen.borrow_mut().started += 1;
        cx.connect(self.dead).unwrap();
        assert!(cx.send(b"anyone there?").is_sent());
    }

    fn datagram_received(&mut self, _cx: &mut DatagramCtx<'_>, data: &[u8], _from: SocketAddr) {
        self.seen.borrow_mut().data.push(data.to_vec());
    }

    fn error_received(&mut self, cx: &mut DatagramCtx<'_>, error: io::Error) {
        self.seen.borrow_mut().errors.push(error.kind());
        cx.connect(self.live).unwrap();
        assert!(cx.send(b"after the error").is_sent());
    }

    fn stopped(&mut self, _cx: &mut DatagramCtx<'_>) {
        self.seen.borrow_mut().stopped += 1;
    }
}

/// ICMP port unreachable on a connected socket reaches `error_received` (as
/// `ConnectionRefused`) and the socket keeps working: it sends and receives afterwards.
#[test]
fn port_unreachable_reaches_error_received_and_socket_keeps_working() {
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed at once
    let live = client(WAIT);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut reactor = Reactor::new().unwrap();
    let prober = Prober { seen: seen.clone(), dead, live: live.local_addr().unwrap() };
    let port = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), prober).unwrap();
    run_until(&mut reactor, "the ICMP error", |_| !seen.borrow().errors.is_empty());
    assert_eq!(seen.borrow().errors, [io::ErrorKind::ConnectionRefused]);
    let mut buf = [0; 100];
    let (n, from) = live.recv_from(&mut buf).expect("the send after the error");
    assert_eq!(&buf[..n], b"after the error");
    assert_eq!(from, port.local_addr());
    live.send_to(b"reply", from).unwrap();
    run_until(&mut reactor, "the reply", |_| !seen.borrow().data.is_empty());
    assert_eq!(seen.borrow().data, [b"reply".to_vec()]);
    assert_eq!(seen.borrow().started, 1);
    port.stop_listening();
    run_until(&mut reactor, "stopped", |r| seen.borrow().stopped == 1 && r.source_count() == 0);
}

/// A panic in `datagram_received` is logged and the port keeps serving the next datagram.
#[test]
fn panic_in_datagram_received_is_isolated_and_port_keeps_serving() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let count = stopped.clone();
    let (server, port, log) = ReactorThread::start_logged(LevelFilter::ERROR, move |reactor| {
        reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Echo { stopped: count }).expect("listen_udp")
    });
    let socket = client(WAIT);
    socket.send_to(b"boom", port.local_addr()).unwrap();
    socket.send_to(b"still there?", port.local_addr()).unwrap();
    assert_eq!(recv_one(&socket), b"still there?");
    assert_eq!(log.count("datagram_received panicked; the datagram port keeps serving"), 1, "{}", log.text());
    assert_eq!(stopped.load(Ordering::SeqCst), 0, "the panic did not stop the port");
    server.stop();
    assert_eq!(stopped.load(Ordering::SeqCst), 1);
}

/// Graceful shutdown calls `stopped` exactly once, and `run` returns (the socket is closed).
#[test]
fn graceful_shutdown_calls_stopped_once() {
    let (server, port, stopped) = echo_server(UdpOptions::default());
    let socket = client(WAIT);
    socket.send_to(b"x", port.local_addr()).unwrap();
    assert_eq!(recv_one(&socket), b"x");
    port.stop_listening(); // then a shutdown: still one `stopped`
    wait_for("stopped after stop_listening", || stopped.load(Ordering::SeqCst) == 1);
    server.stop();
    assert_eq!(stopped.load(Ordering::SeqCst), 1);
    // The port is closed: its address can be bound again.
    UdpSocket::bind(port.local_addr()).expect("the port's socket was closed");
}

/// Ticks three times on a protocol timer, then stops itself; a long timer is cancelled by the
/// stop. Also asks for `writable` once.
struct Ticker {
    seen: Rc<RefCell<Seen>>,
    to: SocketAddr,
    long: Option<TimerId>,
}

impl DatagramProtocol for Ticker {
    fn started(&mut self, cx: &mut DatagramCtx<'_>) {
        self.seen.borrow_mut().started += 1;
        cx.set_timer(Duration::from_millis(1));
        self.long = Some(cx.set_timer(Duration::from_secs(3600)));
        cx.request_writable();
    }

    fn datagram_received(&mut self, _cx: &mut DatagramCtx<'_>, _data: &[u8], _from: SocketAddr) {}

    fn writable(&mut self, _cx: &mut DatagramCtx<'_>) {
        self.seen.borrow_mut().writable += 1;
    }

    fn timer_fired(&mut self, cx: &mut DatagramCtx<'_>, id: TimerId) {
        assert_ne!(Some(id), self.long);
        let ticks = {
            let mut seen = self.seen.borrow_mut();
            seen.timers += 1;
            seen.timers
        };
        assert!(matches!(cx.send_to(format!("tick {ticks}").as_bytes(), self.to), SendOutcome::Sent(6)));
        if ticks == 3 {
            cx.stop_listening();
        } else {
            cx.set_timer(Duration::from_millis(1));
        }
    }

    fn stopped(&mut self, cx: &mut DatagramCtx<'_>) {
        self.seen.borrow_mut().stopped += 1;
        assert!(cx.send_to(b"bye", self.to).is_sent(), "sends still work in stopped");
    }
}

/// Protocol timers fire `timer_fired` on the datagram protocol; stopping the port cancels the
/// rest; `writable` comes once per request.
#[test]
fn timers_fire_and_are_cancelled_when_the_port_stops() {
    let peer = client(WAIT);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut reactor = Reactor::new().unwrap();
    let ticker = Ticker { seen: seen.clone(), to: peer.local_addr().unwrap(), long: None };
    reactor.listen_udp("127.0.0.1:0".parse().unwrap(), ticker).unwrap();
    run_until(&mut reactor, "stopped", |r| seen.borrow().stopped == 1 && r.source_count() == 0);
    for expected in ["tick 1", "tick 2", "tick 3", "bye"] {
        assert_eq!(recv_one(&peer), expected.as_bytes());
    }
    let seen = seen.borrow();
    assert_eq!((seen.started, seen.timers, seen.writable, seen.stopped), (1, 3, 1, 1));
    assert_eq!(reactor.timer_count(), 0, "the hour-long timer was cancelled");
}

/// Joins 239.255.0.77 on the loopback interface and receives a datagram sent to the group.
#[test]
fn multicast_on_loopback() {
    struct Member {
        joined: Rc<RefCell<Option<io::Result<()>>>>,
        got: Rc<RefCell<Vec<Vec<u8>>>>,
    }
    impl DatagramProtocol for Member {
        fn started(&mut self, cx: &mut DatagramCtx<'_>) {
            let r = cx.join_multicast_v4(Ipv4Addr::new(239, 255, 0, 77), Ipv4Addr::LOCALHOST);
            *self.joined.borrow_mut() = Some(r);
        }
        fn datagram_received(&mut self, _cx: &mut DatagramCtx<'_>, data: &[u8], _from: SocketAddr) {
            self.got.borrow_mut().push(data.to_vec());
        }
    }
    let joined = Rc::new(RefCell::new(None));
    let got = Rc::new(RefCell::new(Vec::new()));
    let mut reactor = Reactor::new().unwrap();
    let member = Member { joined: joined.clone(), got: got.clone() };
    let options = UdpOptions::default().reuse_address(true);
    let port = reactor.listen_udp_with("0.0.0.0:0".parse().unwrap(), &options, member).unwrap();
    run_until(&mut reactor, "started", |_| joined.borrow().is_some());
    if let Some(Err(e)) = joined.borrow().as_ref() {
        eprintln!("SKIPPED multicast_on_loopback: joining 239.255.0.77 on 127.0.0.1 refused: {e}");
        return;
    }
    let sender = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    sender.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    sender.set_multicast_loop_v4(true).unwrap();
    let group = SocketAddr::from((Ipv4Addr::new(239, 255, 0, 77), port.local_addr().port()));
    if let Err(e) = sender.send_to(b"hello group", &group.into()) {
        eprintln!("SKIPPED multicast_on_loopback: sending to the group failed: {e}");
        return;
    }
    run_until(&mut reactor, "the group datagram", |_| !got.borrow().is_empty());
    assert_eq!(got.borrow()[0], b"hello group");
}

/// A datagram port is served on IPv6 loopback too (skipped when the machine has no `::1`).
#[test]
fn echo_over_ipv6_loopback() {
    let Ok(socket) = UdpSocket::bind("[::1]:0") else {
        eprintln!("SKIPPED echo_over_ipv6_loopback: no IPv6 loopback");
        return;
    };
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let (server, port) = ReactorThread::start(|reactor| {
        let stopped = Arc::new(AtomicUsize::new(0));
        reactor.listen_udp("[::1]:0".parse().unwrap(), Echo { stopped }).unwrap()
    });
    assert!(port.local_addr().is_ipv6());
    socket.send_to(b"v6", port.local_addr()).unwrap();
    assert_eq!(recv_one(&socket), b"v6");
    server.stop();
}

/// The error message of a bind failure names the address (a UDP port already bound).
#[test]
fn listen_udp_on_a_bound_port_fails_with_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut reactor = Reactor::new().unwrap();
    let stopped = Arc::new(AtomicUsize::new(0));
    let error = reactor.listen_udp(addr, Echo { stopped }).expect_err("the port is taken");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

/// A UDP client opened from a callback (`LoopCtx::listen_udp`): its `started` runs after that
/// callback, it talks to an echo port on the same reactor, and stops itself.
#[test]
fn a_port_opened_from_a_callback_starts_and_talks_to_an_echo_port() {
    struct Pinger {
        to: SocketAddr,
        got: Rc<RefCell<Vec<Vec<u8>>>>,
    }
    impl DatagramProtocol for Pinger {
        fn started(&mut self, cx: &mut DatagramCtx<'_>) {
            assert!(cx.send_to(b"ping", self.to).is_sent());
        }
        fn datagram_received(&mut self, cx: &mut DatagramCtx<'_>, data: &[u8], from: SocketAddr) {
            assert_eq!(from, self.to);
            self.got.borrow_mut().push(data.to_vec());
            cx.stop_listening();
        }
    }
    let mut reactor = Reactor::new().unwrap();
    let stopped = Arc::new(AtomicUsize::new(0));
    let echo = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Echo { stopped }).unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let pinger = Pinger { to: echo.local_addr(), got: got.clone() };
    reactor.call_later(Duration::ZERO, move |cx| {
        let port = cx.listen_udp("127.0.0.1:0".parse().unwrap(), pinger).expect("listen_udp from a callback");
        assert_ne!(port.local_addr().port(), 0);
    });
    run_until(&mut reactor, "the echo, then the client port gone", |r| {
        !got.borrow().is_empty() && r.source_count() == 1
    });
    assert_eq!(got.borrow().as_slice(), [b"ping".to_vec()]);
}

/// With a read budget of 2 datagrams per turn, 100 datagrams already queued in the kernel are
/// all delivered: a port with budget spent is carried over to the next turn (no new edge comes
/// for them), and each turn reads at most the budget.
#[test]
fn datagrams_beyond_the_read_budget_are_carried_over_to_later_turns() {
    struct Count(Rc<RefCell<Vec<u8>>>);
    impl DatagramProtocol for Count {
        fn datagram_received(&mut self, _cx: &mut DatagramCtx<'_>, data: &[u8], _from: SocketAddr) {
            self.0.borrow_mut().push(data[0]);
        }
    }
    let got = Rc::new(RefCell::new(Vec::new()));
    let mut reactor = Reactor::new().unwrap();
    reactor.set_reads_per_turn(2);
    let port = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Count(got.clone())).unwrap();
    let socket = client(WAIT);
    for i in 0..100u8 {
        socket.send_to(&[i], port.local_addr()).unwrap();
    }
    // The first turn runs `started` and reads at most the budget.
    let mut turns = 0;
    let deadline = std::time::Instant::now() + WAIT;
    while got.borrow().len() < 100 {
        assert!(std::time::Instant::now() < deadline, "only {} of 100 delivered", got.borrow().len());
        let before = got.borrow().len();
        // One turn, its poll bounded by WAIT (a broken carry-over would otherwise block).
        let mut turned = false;
        reactor.run_until(WAIT, |_| std::mem::replace(&mut turned, true)).unwrap();
        assert!(got.borrow().len() - before <= 2, "a turn read more than the budget");
        turns += 1;
    }
    assert!(turns >= 50, "100 datagrams at 2 per turn take at least 50 turns, took {turns}");
    assert_eq!(*got.borrow(), (0..100).collect::<Vec<u8>>(), "in order, none lost");
}
