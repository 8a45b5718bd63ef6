//! Listening sockets: IPv4 and IPv6 with port 0, SO_REUSEPORT, `stop_listening`, refusing
//! factories and a connection cap (catalogue 12), and rebinding a port left in TIME_WAIT
//! (catalogue 13). The kind-independent ones run over TCP and Unix stream sockets; Unix-only
//! listening (stale files, modes, abstract names) is in `unix.rs`.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use torsion_protocols::Echo;
use torsion_reactor::{Address, Ctx, ListenOptions, ListeningPort, Protocol, Reactor};
use torsion_tests::{connect, listen, over_kinds, run_until, wait_for, AnyStream, Kind, Server, WAIT};

fn echo_factory(count: Rc<Cell<u32>>) -> impl FnMut(Address) -> Option<Echo> {
    move |_| {
        count.set(count.get() + 1);
        Some(Echo)
    }
}

/// Connects, sends `msg`, half-closes and reads the echo to EOF on another thread.
fn echo_round_trip(kind: Kind, addr: &Address, msg: &'static [u8]) -> std::thread::JoinHandle<Vec<u8>> {
    let addr = addr.clone();
    std::thread::spawn(move || {
        let mut s = connect(kind, &addr);
        s.write_all(msg).unwrap();
        s.shutdown_write().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    })
}

#[test]
fn ipv4_and_ipv6_listeners_with_port_zero_serve() {
    let mut reactor = Reactor::new().unwrap();
    let count = Rc::new(Cell::new(0));
    let v4 = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), echo_factory(count.clone())).unwrap();
    let v4_addr = v4.local_addr().inet().expect("an inet address");
    assert!(v4_addr.is_ipv4());
    assert_ne!(v4_addr.port(), 0, "port 0 resolves to the real port");
    let clients = match reactor.listen_tcp("[::1]:0".parse().unwrap(), echo_factory(count.clone())) {
        Ok(v6) => {
            assert!(v6.local_addr().inet().expect("an inet address").is_ipv6());
            vec![
                echo_round_trip(Kind::Tcp, v4.local_addr(), b"four"),
                echo_round_trip(Kind::Tcp, v6.local_addr(), b"six"),
            ]
        }
        Err(e) => {
            // Some sandboxes have no IPv6 loopback at all; say so loudly rather than pass quietly.
            eprintln!("SKIPPED IPv6 half: cannot listen on [::1]: {e}");
            vec![echo_round_trip(Kind::Tcp, v4.local_addr(), b"four")]
        }
    };
    let expected = clients.len() as u32;
    run_until(&mut reactor, "echo round trips", |_| clients.iter().all(|c| c.is_finished()));
    let replies: Vec<Vec<u8>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(replies[0], b"four");
    if replies.len() > 1 {
        assert_eq!(replies[1], b"six");
    }
    assert_eq!(count.get(), expected);
}

#[test]
fn reuse_port_lets_two_listeners_share_a_port() {
    let mut reactor = Reactor::new().unwrap();
    let count = Rc::new(Cell::new(0));
    let options = ListenOptions::default().reuse_port(true).backlog(16);
    let first = reactor
        .listen_tcp_with("127.0.0.1:0".parse().unwrap(), &options, echo_factory(count.clone()))
        .unwrap();
    let addr = first.local_addr().inet().expect("an inet address");
    let second = reactor.listen_tcp_with(addr, &options, echo_factory(count.clone())).unwrap();
    assert_eq!(first.local_addr(), second.local_addr());
    // Without SO_REUSEPORT the same bind fails with a typed error naming the address.
    let err = reactor
        .listen_tcp(addr, echo_factory(count.clone()))
        .expect_err("binding a taken port without SO_REUSEPORT fails");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

/// `stop_listening` refuses new connections (TCP: refused; Unix: the socket file is gone) and
/// keeps the established ones.
fn stop_listening_refuses_new_connections_and_keeps_old_ones(kind: Kind) {
    let mut reactor = Reactor::new().unwrap();
    let count = Rc::new(Cell::new(0));
    let listener = listen(&mut reactor, kind, echo_factory(count.clone()));
    let mut old = connect(kind, &listener.addr);
    run_until(&mut reactor, "first connection accepted", |_| count.get() == 1);
    listener.port.stop_listening();
    run_until(&mut reactor, "listener removed", |r| r.source_count() == 1);
    let refused = AnyStream::connect(&listener.addr).expect_err("no one listens any more");
    assert!(kind.is_refusal(&refused), "{refused}");
    old.write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    let reader = std::thread::spawn(move || old.read_exact(&mut buf).map(|_| buf));
    run_until(&mut reactor, "old connection echoes", |_| reader.is_finished());
    assert_eq!(&reader.join().unwrap().unwrap(), b"still here");
}
over_kinds!(stop_listening_refuses_new_connections_and_keeps_old_ones);

/// A factory returning `None` closes that socket only (the client sees EOF or a reset, no
/// reply); the next connection is served.
fn a_factory_returning_none_closes_that_socket_only(kind: Kind) {
    let mut reactor = Reactor::new().unwrap();
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    let listener = listen(&mut reactor, kind, move |_| {
        c.set(c.get() + 1);
        // Refuse the first connection, serve the rest.
        (c.get() > 1).then_some(Echo)
    });
    let addr = listener.addr.clone();
    let refused = std::thread::spawn(move || {
        let mut s = connect(kind, &addr);
        let mut buf = [0u8; 16];
        s.read(&mut buf)
    });
    run_until(&mut reactor, "refused client done", |_| refused.is_finished());
    match refused.join().unwrap() {
        Ok(n) => assert_eq!(n, 0, "a refused connection is closed without a reply"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
    }
    let served = echo_round_trip(kind, &listener.addr, b"served");
    run_until(&mut reactor, "served client done", |_| served.is_finished());
    assert_eq!(served.join().unwrap(), b"served");
    assert_eq!(calls.get(), 2);
    assert_eq!(reactor.connection_count(), 0);
}
over_kinds!(a_factory_returning_none_closes_that_socket_only);

// ---------------------------------------------------------------------------------------------
// Catalogue 12: factory_refuses

const CAP: usize = 100;

/// Live and peak connection counts, shared with the test thread.
#[derive(Default)]
struct Counts {
    live: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicUsize,
}

/// Echoes; leaves the count when dropped.
struct Capped {
    counts: Arc<Counts>,
}

impl Protocol for Capped {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

impl Drop for Capped {
    fn drop(&mut self) {
        self.counts.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends a byte: `Ok(true)` if it was echoed, `Ok(false)` if the server closed the socket
/// (EOF or reset) instead.
fn probe(stream: &mut AnyStream) -> std::io::Result<bool> {
    match stream.write_all(b"x") {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => return Ok(false),
        Err(e) => return Err(e),
    }
    let mut buf = [0u8; 1];
    match stream.read(&mut buf) {
        Ok(1) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(false),
        Err(e) => Err(e),
    }
}

/// Catalogue 12 (factory_refuses): a factory capping live connections at 100
/// (`build_protocol` returns `None` past it), 150 clients: the refused sockets are closed (the
/// client sees EOF or a reset), never more than 100 are live, freed slots are reused, and the
/// listener lives on.
fn factory_refuses_past_a_cap_of_100_closes_the_rest_and_reuses_freed_slots(kind: Kind) {
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let server = Server::on(kind, move || {
        move |_| {
            // Count first: a refused connection is never live.
            if c.live.load(Ordering::SeqCst) >= CAP {
                c.refused.fetch_add(1, Ordering::SeqCst);
                return None;
            }
            let live = c.live.fetch_add(1, Ordering::SeqCst) + 1;
            c.peak.fetch_max(live, Ordering::SeqCst);
            Some(Capped { counts: c.clone() })
        }
    });
    let mut clients: Vec<AnyStream> = (0..150).map(|_| server.connect()).collect();
    let mut served = Vec::new();
    let mut closed = 0;
    for mut client in clients.drain(..) {
        if probe(&mut client).expect("every client is served or closed, never left hanging") {
            served.push(client);
        } else {
            closed += 1;
        }
    }
    assert_eq!((served.len(), closed), (CAP, 50), "(served, closed) of 150 clients");
    assert_eq!(counts.refused.load(Ordering::SeqCst), 50);

    // Free half of the slots; they are reused by new clients, and the cap holds again.
    served.truncate(CAP / 2);
    wait_for("the server to see 50 clients go", || counts.live.load(Ordering::SeqCst) == CAP / 2);
    for i in 0..CAP / 2 {
        let mut client = server.connect();
        assert!(probe(&mut client).unwrap(), "new client {i} into a freed slot");
        served.push(client);
    }
    let mut over = server.connect();
    assert!(!probe(&mut over).unwrap(), "the 101st live connection is refused");
    for (i, client) in served.iter_mut().enumerate() {
        assert!(probe(client).unwrap(), "served client {i} still echoes");
    }
    let peak = counts.peak.load(Ordering::SeqCst);
    assert!(peak <= CAP, "{peak} connections were live at once");
    eprintln!(
        "factory_refuses ({kind}): 150 clients -> {CAP} served, 50 closed; 50 freed slots reused; peak live \
         {peak}; refused in all {}",
        counts.refused.load(Ordering::SeqCst)
    );
    drop(served);
    server.stop();
}
over_kinds!(factory_refuses_past_a_cap_of_100_closes_the_rest_and_reuses_freed_slots);

// ---------------------------------------------------------------------------------------------
// Catalogue 13: ipv6_and_rebind (TCP)

type Addrs = Rc<Cell<Option<(SocketAddr, SocketAddr)>>>;

/// Records its addresses, echoes one message and closes first (so the server side of the
/// connection ends in TIME_WAIT).
struct EchoOnceV6 {
    addrs: Addrs,
}

impl Protocol for EchoOnceV6 {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let peer = cx.transport().peer_addr().and_then(|a| a.inet()).expect("an inet peer");
        let local = cx.transport().local_addr().and_then(|a| a.inet()).expect("an inet local address");
        self.addrs.set(Some((peer, local)));
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
        cx.transport().lose_connection();
    }
}

/// Connects to `addr` on a thread, sends `msg` and reads to EOF (the server closes first).
fn echo_once(addr: SocketAddr, msg: &'static [u8]) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(WAIT))?;
        stream.set_write_timeout(Some(WAIT))?;
        stream.write_all(msg)?;
        let mut got = Vec::new();
        stream.read_to_end(&mut got)?;
        Ok(got)
    })
}

/// Server-side TIME_WAIT entries on local `port` in `/proc/net/tcp6` (state 06).
fn time_wait_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let local_port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&local_port) && fields[3] == "06"
        })
        .count()
}

fn listen_v6(reactor: &mut Reactor, addr: SocketAddr, addrs: &Addrs) -> ListeningPort {
    let a = addrs.clone();
    reactor
        .listen_tcp(addr, move |_| Some(EchoOnceV6 { addrs: a.clone() }))
        .unwrap_or_else(|e| panic!("listen on {addr}: {e}"))
}

/// Catalogue 13 (ipv6_and_rebind): echo on `[::1]:0` with V6 `peer_addr`/`local_addr`; a
/// server-side close leaves TIME_WAIT on the listening port, the listener stops, and the same
/// port is bound again at once (SO_REUSEADDR; without it the bind fails with EADDRINUSE).
#[test]
fn ipv6_echo_then_server_close_leaves_time_wait_and_the_port_rebinds_at_once() {
    let mut reactor = Reactor::new().unwrap();
    let addrs = Rc::new(Cell::new(None));
    let port = listen_v6(&mut reactor, "[::1]:0".parse().unwrap(), &addrs);
    let addr = port.local_addr().inet().unwrap();
    assert!(addr.is_ipv6() && addr.port() != 0);

    let client = echo_once(addr, b"hello v6");
    run_until(&mut reactor, "the v6 echo", |r| client.is_finished() && r.source_count() == 1);
    assert_eq!(client.join().unwrap().expect("echo over ::1"), b"hello v6");
    let (peer, local) = addrs.get().expect("connection_made ran");
    assert!(peer.is_ipv6() && local.is_ipv6(), "peer {peer}, local {local}");
    assert_eq!(local, addr, "host() is the listening address");
    let time_wait = time_wait_on(addr.port());
    assert!(time_wait >= 1, "the server closed first: its side should be in TIME_WAIT");

    // Stop listening: on the reactor's own thread the listener goes at once.
    reactor.stop_listening(port.id());
    assert_eq!(reactor.source_count(), 0);

    // What SO_REUSEADDR buys: a plain bind of the port fails while TIME_WAIT holds it.
    let plain = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
    let plain_bind = plain.bind(&addr.into());
    drop(plain);

    let rebound = listen_v6(&mut reactor, addr, &addrs).local_addr().clone();
    assert_eq!(rebound, addr, "the same port, bound again at once");
    let client = echo_once(addr, b"again");
    run_until(&mut reactor, "the echo after rebinding", |_| client.is_finished());
    assert_eq!(client.join().unwrap().expect("echo after rebinding"), b"again");
    match &plain_bind {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE), "{e}"),
        Ok(()) => panic!("a bind without SO_REUSEADDR succeeded: no TIME_WAIT to test against"),
    }
    eprintln!(
        "ipv6_and_rebind: echo on {addr} (peer {peer}); {time_wait} TIME_WAIT entry; plain rebind: EADDRINUSE; \
         torsion rebind: ok"
    );
}
