//! Reliability catalogue, group A, tests 12 and 13: the listening side.
//!
//! - 12 `factory_refuses`: a factory capping live connections at 100 (`build_protocol` returns
//!   `None` past it), 150 clients: the refused sockets are closed (the client sees EOF or a
//!   reset), never more than 100 are live, freed slots are reused, and the listener lives on.
//! - 13 `ipv6_and_rebind`: echo on `[::1]:0` with V6 `peer_addr`/`local_addr`; a server-side
//!   close leaves TIME_WAIT on the listening port, the listener stops, and the same port is
//!   bound again at once (SO_REUSEADDR; without it the bind fails with EADDRINUSE).
//!
//! `listen.rs` covers a refusing factory and IPv6 port 0; these add the cap and the rebind.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use torsion_reactor::{Ctx, ListeningPort, Protocol, Reactor};
use torsion_tests::{run_until, wait_for, Server, WAIT};

// ---------------------------------------------------------------------------------------------
// 12. factory_refuses

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
fn probe(stream: &mut TcpStream) -> std::io::Result<bool> {
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

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

#[test]
fn factory_refuses_past_a_cap_of_100_closes_the_rest_and_reuses_freed_slots() {
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let server = Server::start(move || {
        move |_| {
            // Count first: a refused connection is never live.
            if c.live.load(Ordering::SeqCst) >= CAP {
                c.refused.fetch_add(1, Ordering::SeqCst);
                return None;
            }
            let live = c.live.fetch_add(1, Ordering::SeqCst) + 1;
            c.peak.fetch_max(live, Ordering::SeqCst);
            Some(Box::new(Capped { counts: c.clone() }) as Box<dyn Protocol>)
        }
    });
    let mut clients: Vec<TcpStream> = (0..150).map(|_| connect(server.addr)).collect();
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
        let mut client = connect(server.addr);
        assert!(probe(&mut client).unwrap(), "new client {i} into a freed slot");
        served.push(client);
    }
    let mut over = connect(server.addr);
    assert!(!probe(&mut over).unwrap(), "the 101st live connection is refused");
    for (i, client) in served.iter_mut().enumerate() {
        assert!(probe(client).unwrap(), "served client {i} still echoes");
    }
    let peak = counts.peak.load(Ordering::SeqCst);
    assert!(peak <= CAP, "{peak} connections were live at once");
    eprintln!(
        "factory_refuses: 150 clients -> {CAP} served, 50 closed; 50 freed slots reused; peak live {peak}; \
         refused in all {}",
        counts.refused.load(Ordering::SeqCst)
    );
    drop(served);
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// 13. ipv6_and_rebind

/// Records its addresses, echoes one message and closes first (so the server side of the
/// connection ends in TIME_WAIT).
struct EchoOnceV6 {
    addrs: Addrs,
}

impl Protocol for EchoOnceV6 {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let peer = cx.transport().peer_addr().expect("peer");
        let local = cx.transport().local_addr().expect("local");
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
        let mut stream = connect(addr);
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

type Addrs = Rc<Cell<Option<(SocketAddr, SocketAddr)>>>;

fn listen_v6(reactor: &mut Reactor, addr: SocketAddr, addrs: &Addrs) -> ListeningPort {
    let a = addrs.clone();
    reactor
        .listen_tcp(addr, move |_| Some(Box::new(EchoOnceV6 { addrs: a.clone() }) as Box<dyn Protocol>))
        .unwrap_or_else(|e| panic!("listen on {addr}: {e}"))
}

#[test]
fn ipv6_echo_then_server_close_leaves_time_wait_and_the_port_rebinds_at_once() {
    let mut reactor = Reactor::new().unwrap();
    let addrs = Rc::new(Cell::new(None));
    let port = listen_v6(&mut reactor, "[::1]:0".parse().unwrap(), &addrs);
    let addr = port.local_addr();
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

    let rebound = listen_v6(&mut reactor, addr, &addrs).local_addr();
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
