//! Listening and connecting by endpoint strings (`listen_endpoint`, `connect_endpoint`): each
//! server kind actually served (`tcp:`, `tcp6:`, `IP:PORT`, `unix:` with its mode and lock
//! file), each client kind actually connected (`tcp:` to a literal with `bindAddress`, to a
//! host name, `unix:`, `HOST:PORT`), and what is refused. Socket activation (`systemd:`) is
//! served by a real launcher in `examples/tests/endpoints_process.rs`.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;

use torsion_reactor::{
    Address, ClientEndpoint, ClientFactory, Connecting, Ctx, Error, LoopCtx, Protocol, Reactor,
    ServerEndpoint,
};
use torsion_tests::{run_until, TempPath, WAIT};

/// Echoes, and records each peer.
struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

/// Serves `endpoint` on a reactor thread; returns the bound address.
fn serve(endpoint: &str) -> (torsion_tests::ReactorThread, Address) {
    let endpoint: ServerEndpoint = endpoint.parse().expect("a valid endpoint");
    torsion_tests::ReactorThread::start(move |reactor| {
        reactor.listen_endpoint(&endpoint, |_peer: Address| Some(Echo)).expect("listen").local_addr().clone()
    })
}

fn echo_over(mut stream: impl Read + Write) {
    stream.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
}

fn tcp(addr: &Address) -> TcpStream {
    let Address::Inet(addr) = addr else { panic!("{addr} is not inet") };
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

#[test]
fn tcp_and_shorthand_server_endpoints_serve() {
    for endpoint in ["tcp:0:interface=127.0.0.1", "tcp:port=0:interface=127.0.0.1:backlog=5", "127.0.0.1:0"] {
        let (server, addr) = serve(endpoint);
        assert!(
            matches!(&addr, Address::Inet(a) if a.ip().is_loopback() && a.port() != 0),
            "{endpoint}: {addr}"
        );
        echo_over(tcp(&addr));
        server.stop();
    }
}

#[test]
fn tcp6_server_endpoints_serve_on_the_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("!!! SKIPPED: no IPv6 loopback (::1) on this machine");
        return;
    }
    for endpoint in [r"tcp6:0:interface=\:\:1", "tcp6:0:interface=[::1]", "[::1]:0"] {
        let (server, addr) = serve(endpoint);
        assert!(
            matches!(&addr, Address::Inet(SocketAddr::V6(a)) if a.ip().is_loopback()),
            "{endpoint}: {addr}"
        );
        echo_over(tcp(&addr));
        server.stop();
    }
}

#[test]
fn a_unix_server_endpoint_applies_its_mode_and_lock_file() {
    let path = TempPath::new(".sock");
    let endpoint = format!("unix:{}:mode=600:lockfile=1", path.path().display());
    let (server, addr) = serve(&endpoint);
    assert_eq!(addr, Address::unix_path(path.path()));
    let mode = std::fs::metadata(path.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let lock = format!("{}.lock", path.path().display());
    assert!(std::path::Path::new(&lock).exists(), "no lock file at {lock}");
    let stream = std::os::unix::net::UnixStream::connect(path.path()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    echo_over(stream);
    server.stop();
    assert!(!path.path().exists() && !std::path::Path::new(&lock).exists(), "files left behind");
}

#[test]
fn a_systemd_endpoint_without_inherited_sockets_is_a_clear_error() {
    let mut reactor = Reactor::new().unwrap();
    let endpoint: ServerEndpoint = "systemd:domain=INET:index=0".parse().unwrap();
    let err = reactor.listen_endpoint(&endpoint, |_peer: Address| Some(Echo)).unwrap_err();
    assert!(err.to_string().contains("inherited socket 0 (descriptor 3)"), "{err}");
}

#[derive(Default)]
struct Outcome {
    peer: Option<Address>,
    local: Option<Address>,
    failed: Option<Error>,
}

/// Records where it connected from and to.
struct Record(Rc<RefCell<Outcome>>);

struct Note(Rc<RefCell<Outcome>>);

impl Protocol for Note {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.0.borrow_mut().local = cx.transport().local_addr();
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

impl ClientFactory for Record {
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        self.0.borrow_mut().peer = Some(peer);
        Box::new(Note(self.0.clone()))
    }

    fn client_connection_failed(&mut self, _cx: &mut LoopCtx<'_>, reason: Error) {
        self.0.borrow_mut().failed = Some(reason);
    }
}

fn connect(endpoint: &str) -> Outcome {
    let endpoint: ClientEndpoint = endpoint.parse().expect("a valid endpoint");
    let mut reactor = Reactor::new().unwrap();
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    reactor.connect_endpoint(&endpoint, Record(outcome.clone())).expect("connect started");
    let done = outcome.clone();
    run_until(&mut reactor, "connected or failed", move |_| {
        let o = done.borrow();
        o.local.is_some() || o.failed.is_some()
    });
    outcome.take()
}

#[test]
fn client_endpoints_connect_to_tcp_host_names_and_unix_sockets() {
    let (server, addr) = serve("tcp:0:interface=127.0.0.1");
    let Address::Inet(inet) = addr else { unreachable!() };
    let port = inet.port();
    // A literal, from a chosen local address (127.0.0.2 is loopback too on Linux).
    let from = connect(&format!("tcp:host=127.0.0.1:port={port}:bindAddress=127.0.0.2:timeout=5"));
    assert!(from.failed.is_none(), "{:?}", from.failed);
    assert!(
        matches!(from.local, Some(Address::Inet(a)) if a.ip().to_string() == "127.0.0.2"),
        "{:?}",
        from.local
    );
    // A host name, resolved on the pool and raced.
    let named = connect(&format!("tcp:localhost:{port}"));
    assert_eq!(named.peer, Some(addr.clone()));
    // The shorthand.
    let short = connect(&format!("127.0.0.1:{port}"));
    assert_eq!(short.peer, Some(addr));
    server.stop();

    let path = TempPath::new(".sock");
    let (server, unix) = serve(&format!("unix:{}:lockfile=0", path.path().display()));
    let outcome = connect(&format!("unix:path={}:timeout=5", path.path().display()));
    assert_eq!(outcome.peer, Some(unix));
    server.stop();
}

#[test]
fn a_refused_client_endpoint_reports_through_the_factory() {
    let (_held, addr) = torsion_tests::refused_addr();
    let outcome = connect(&format!("tcp:host=127.0.0.1:port={}", addr.port()));
    assert!(matches!(outcome.failed, Some(Error::ConnectFailed { .. })), "{:?}", outcome.failed);
    let named = connect(&format!("tcp:host=localhost:port={}", addr.port()));
    assert!(matches!(named.failed, Some(Error::AllAttemptsFailed { .. })), "{:?}", named.failed);
}

#[test]
fn connect_endpoint_says_which_kind_of_connection_it_started() {
    let (server, addr) = serve("127.0.0.1:0");
    let mut reactor = Reactor::new().unwrap();
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    let literal: ClientEndpoint = addr.to_string().parse().unwrap();
    assert!(matches!(reactor.connect_endpoint(&literal, Record(outcome.clone())), Ok(Connecting::Conn(_))));
    let Address::Inet(inet) = addr else { unreachable!() };
    let named: ClientEndpoint = format!("localhost:{}", inet.port()).parse().unwrap();
    assert!(matches!(reactor.connect_endpoint(&named, Record(outcome)), Ok(Connecting::Host(_))));
    drop(reactor);
    server.stop();
}
