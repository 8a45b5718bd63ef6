//! Unix stream sockets through the reactor's API, what only they have: socket files (a stale
//! one replaced, a live server's left alone, a non-socket refused, too long a path refused,
//! the mode applied, the file removed when the listener stops or the reactor shuts down, but
//! only if it is still ours), abstract addresses, peer credentials, unnamed peers, and connect
//! failures. What Unix sockets share with TCP (lifecycle, close and abort, half-close, flow
//! control, panics, shutdown, EMFILE, 10k idle) runs over both kinds in the other files.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc;

use torsion_protocols::Echo;
use torsion_reactor::{
    client_factory, Address, Ctx, Error, PeerCredentials, Protocol, Reactor, TransportError, UnixAddr,
    UnixListenOptions,
};
use torsion_tests::{connect, listen, recv, run_until, AnyStream, Kind, ReactorThread, Server, TempPath};

/// Echoes `msg` through a fresh client of `addr`, turning `reactor` until it is back.
fn echo_through(reactor: &mut Reactor, addr: &Address, msg: &'static [u8]) {
    let addr = addr.clone();
    let client = std::thread::spawn(move || {
        let mut s = connect(Kind::Unix, &addr);
        s.write_all(msg).unwrap();
        s.shutdown_write().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).map(|_| got)
    });
    run_until(reactor, "the echo", |_| client.is_finished());
    assert_eq!(client.join().unwrap().expect("echo over the Unix socket"), msg);
}

/// The inode of the file at `path`, if any.
fn inode(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// A socket file nobody accepts on (its server is gone): bind a std listener, drop it.
fn stale_socket_file(path: &Path) {
    drop(UnixListener::bind(path).expect("bind a std listener"));
    assert!(is_socket(path), "the dead listener left its socket file");
}

#[test]
fn a_stale_socket_file_is_replaced_by_listen_unix() {
    let path = TempPath::new(".sock");
    stale_socket_file(path.path());
    let err = UnixStream::connect(path.path()).expect_err("nobody accepts on the stale file");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let mut reactor = Reactor::new().unwrap();
    let port = reactor.listen_unix(path.path(), |_| Some(Echo)).expect("a stale socket file is replaced");
    assert_eq!(port.local_addr(), &Address::unix_path(path.path()));
    assert!(is_socket(path.path()));
    // The file at the path is ours now: a client reaches the reactor through it.
    echo_through(&mut reactor, port.local_addr(), b"over the replaced file");
}

#[test]
fn a_live_servers_file_is_left_alone_and_a_second_listen_unix_fails_with_address_in_use() {
    let path = TempPath::new(".sock");
    let mut reactor = Reactor::new().unwrap();
    let port = reactor.listen_unix(path.path(), |_| Some(Echo)).unwrap();
    let live = inode(path.path());
    match reactor.listen_unix(path.path(), |_| Some(Echo)) {
        Err(Error::Transport(TransportError::AddressInUse { addr })) => {
            assert_eq!(addr, Address::unix_path(path.path()))
        }
        other => panic!("expected AddressInUse, got {other:?}"),
    }
    // The same from another process's point of view: a std listener's live file.
    let other = TempPath::new(".sock");
    let _live_std = UnixListener::bind(other.path()).unwrap();
    let other_inode = inode(other.path());
    assert!(matches!(
        reactor.listen_unix(other.path(), |_| Some(Echo)),
        Err(Error::Transport(TransportError::AddressInUse { .. }))
    ));
    assert_eq!(inode(other.path()), other_inode, "the live server's file is untouched");
    assert_eq!(inode(path.path()), live, "our own live file is untouched");
    assert_eq!(reactor.source_count(), 1, "the failed listens registered nothing");
    echo_through(&mut reactor, port.local_addr(), b"the first server still serves");
}

#[test]
fn a_path_that_is_not_a_socket_is_refused_with_not_a_socket() {
    let path = TempPath::new(".txt");
    std::fs::write(path.path(), b"not a socket").unwrap();
    let mut reactor = Reactor::new().unwrap();
    match reactor.listen_unix(path.path(), |_| Some(Echo)) {
        Err(Error::Transport(TransportError::NotASocket { path: p })) => assert_eq!(p, path.path()),
        other => panic!("expected NotASocket, got {other:?}"),
    }
    assert_eq!(std::fs::read(path.path()).unwrap(), b"not a socket", "the file is left untouched");
    assert_eq!(reactor.source_count(), 0);
}

#[test]
fn a_path_too_long_for_sun_path_is_a_typed_error() {
    let long = std::env::temp_dir().join("x".repeat(200));
    let mut reactor = Reactor::new().unwrap();
    match reactor.listen_unix(&long, |_| Some(Echo)) {
        Err(Error::Transport(TransportError::UnixPathTooLong { addr, len, max })) => {
            assert_eq!(addr, UnixAddr::Path(long.clone()));
            assert_eq!(len, long.as_os_str().len());
            assert_eq!(max, 107, "sun_path holds 107 bytes and a NUL");
        }
        other => panic!("expected UnixPathTooLong, got {other:?}"),
    }
    assert!(!long.exists(), "nothing was created");
    // Connecting to it is refused the same way, at once.
    let err = reactor.connect_unix(&long, |_| Echo).expect_err("too long a path to connect to");
    assert!(matches!(err, Error::Transport(TransportError::UnixPathTooLong { .. })), "{err:?}");
    assert_eq!(reactor.source_count(), 0);
}

#[test]
fn the_mode_is_0o666_by_default_and_0o600_through_unix_listen_options() {
    let mut reactor = Reactor::new().unwrap();
    let default = TempPath::new(".sock");
    reactor.listen_unix(default.path(), |_| Some(Echo)).unwrap();
    let mode = std::fs::metadata(default.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "default mode {mode:o}");

    let private = TempPath::new(".sock");
    let options = UnixListenOptions::default().mode(Some(0o600));
    let port = reactor
        .listen_unix_with(&UnixAddr::Path(private.path().to_owned()), &options, |_| Some(Echo))
        .unwrap();
    let mode = std::fs::metadata(private.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    echo_through(&mut reactor, port.local_addr(), b"the owner can still connect");
}

/// Counts `connection_made` of a client.
struct Made(Rc<RefCell<u32>>);

impl Protocol for Made {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        *self.0.borrow_mut() += 1;
        cx.transport().write(b"hi");
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        cx.transport().lose_connection();
    }
}

#[test]
fn an_abstract_address_listens_and_connects_without_a_file() {
    let name = format!("torsion-test-{}-abstract", std::process::id()).into_bytes();
    let addr = Address::Unix(UnixAddr::Abstract(name.clone()));
    let mut reactor = Reactor::new().unwrap();
    let port = reactor.listen(&addr, |_| Some(Echo)).unwrap();
    assert_eq!(port.local_addr(), &addr);
    assert_eq!(port.local_addr().to_string(), format!("unix:@{}", String::from_utf8_lossy(&name)));
    // A std client, and a client of the reactor itself.
    echo_through(&mut reactor, &addr, b"abstract");
    let made = Rc::new(RefCell::new(0));
    let m = made.clone();
    reactor.connect(addr.clone(), move |_| Made(m.clone())).unwrap();
    run_until(&mut reactor, "the reactor's own client connected and echoed", |r| {
        *made.borrow() == 1 && r.connection_count() == 0
    });
    // The name is taken while we listen.
    assert!(matches!(
        reactor.listen(&addr, |_| Some(Echo)),
        Err(Error::Transport(TransportError::AddressInUse { .. }))
    ));
}

#[test]
fn the_socket_file_is_removed_on_stop_listening() {
    let mut reactor = Reactor::new().unwrap();
    let listener = listen(&mut reactor, Kind::Unix, |_| Some(Echo));
    let path = listener.path.as_ref().unwrap().path().to_owned();
    assert!(is_socket(&path));
    listener.port.stop_listening();
    run_until(&mut reactor, "the listener to stop", |r| r.source_count() == 0);
    assert!(!path.exists(), "the socket file was removed");
    let err = AnyStream::connect(&listener.addr).expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn the_socket_file_is_removed_on_graceful_shutdown() {
    let path = TempPath::new(".sock");
    let p = path.path().to_owned();
    let (reactor, ()) = ReactorThread::start(move |r| {
        r.listen_unix(&p, |_| Some(Echo)).unwrap();
    });
    assert!(is_socket(path.path()));
    reactor.stop();
    assert!(!path.path().exists(), "the socket file was removed when the reactor shut down");
}

/// Replaces the socket file at `path` with another server's (a std listener's): the reactor's
/// listener is still open, but its file is no longer the one at `path`.
fn replace_socket_file(path: &Path) -> UnixListener {
    std::fs::remove_file(path).unwrap();
    UnixListener::bind(path).expect("bind another server at the path")
}

#[test]
fn a_replaced_socket_file_is_left_alone_on_stop_listening() {
    let mut reactor = Reactor::new().unwrap();
    let listener = listen(&mut reactor, Kind::Unix, |_| Some(Echo));
    let path = listener.path.as_ref().unwrap().path().to_owned();
    let other = replace_socket_file(&path);
    let theirs = inode(&path);
    reactor.stop_listening(listener.port.id());
    assert_eq!(reactor.source_count(), 0);
    assert_eq!(inode(&path), theirs, "the other server's file stays");
    // And it still works for the other server.
    let _client = UnixStream::connect(&path).expect("connect to the other server");
    other.accept().expect("the other server accepts");
}

#[test]
fn a_replaced_socket_file_is_left_alone_on_graceful_shutdown() {
    let path = TempPath::new(".sock");
    let p = path.path().to_owned();
    let (reactor, ()) = ReactorThread::start(move |r| {
        r.listen_unix(&p, |_| Some(Echo)).unwrap();
    });
    let other = replace_socket_file(path.path());
    let theirs = inode(path.path());
    reactor.stop();
    assert_eq!(inode(path.path()), theirs, "the other server's file stays");
    let _client = UnixStream::connect(path.path()).expect("connect to the other server");
    other.accept().expect("the other server accepts");
}

/// Reports the peer's credentials and addresses, as the accepted connection sees them.
struct Who(mpsc::Sender<(Option<PeerCredentials>, Option<Address>, Option<Address>)>);

impl Protocol for Who {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let t = cx.transport();
        let _ = self.0.send((t.peer_credentials(), t.peer_addr(), t.local_addr()));
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

#[test]
fn peer_credentials_are_this_processs_pid_uid_and_gid() {
    let (tx, rx) = mpsc::channel();
    let mut reactor = Reactor::new().unwrap();
    let t = tx.clone();
    let unix = listen(&mut reactor, Kind::Unix, move |_| Some(Who(t.clone())));
    let tcp = listen(&mut reactor, Kind::Tcp, move |_| Some(Who(tx.clone())));
    // The client is this process: the kernel recorded our pid and effective uid and gid (those
    // of our /proc/self, read without unsafe code).
    let me = std::fs::metadata("/proc/self").unwrap();
    let expected = PeerCredentials { pid: Some(std::process::id() as i32), uid: me.uid(), gid: me.gid() };
    let _client = connect(Kind::Unix, &unix.addr);
    let mut seen = None;
    run_until(&mut reactor, "connection_made over Unix", |_| {
        seen = seen.take().or(rx.try_recv().ok());
        seen.is_some()
    });
    assert_eq!(seen.unwrap().0, Some(expected), "peer_credentials over a Unix socket");
    let _tcp_client = connect(Kind::Tcp, &tcp.addr);
    let mut seen = None;
    run_until(&mut reactor, "connection_made over TCP", |_| {
        seen = seen.take().or(rx.try_recv().ok());
        seen.is_some()
    });
    assert_eq!(seen.unwrap().0, None, "a TCP connection has no peer credentials");
}

#[test]
fn peer_addr_of_an_accepted_unix_connection_is_unnamed_or_the_clients_path() {
    let (tx, rx) = mpsc::channel();
    let server = Server::on(Kind::Unix, move || move |_| Some(Who(tx.clone())));

    // A client that did not bind: unnamed.
    let unnamed = server.connect();
    let (_, peer, local) = recv(&rx, "connection_made of the unnamed client");
    let peer = peer.expect("a peer address");
    assert_eq!(peer, Address::Unix(UnixAddr::Unnamed));
    assert_eq!(peer.to_string(), "unix:(unnamed)");
    assert_eq!(local.as_ref(), Some(&server.addr), "local_addr is the listening path");

    // A client bound to a path of its own: that path.
    let client_path = TempPath::new(".client.sock");
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    socket.bind(&socket2::SockAddr::unix(client_path.path()).unwrap()).unwrap();
    let server_path = server.addr.unix().and_then(UnixAddr::as_path).expect("a socket path").to_owned();
    socket.connect(&socket2::SockAddr::unix(&server_path).unwrap()).unwrap();
    let (_, peer, _) = recv(&rx, "connection_made of the bound client");
    let peer = peer.expect("a peer address");
    assert_eq!(peer, Address::unix_path(client_path.path()));
    assert_eq!(peer.to_string(), format!("unix:{}", client_path.path().display()));
    drop((socket, unnamed));
    server.stop();
}

/// Records `client_connection_failed`'s error, or that the connection was made.
fn connect_and_fail(reactor: &mut Reactor, path: &Path) -> Error {
    let failed: Rc<RefCell<Option<Error>>> = Rc::default();
    let made = Rc::new(RefCell::new(0));
    let (f, m) = (failed.clone(), made.clone());
    let factory =
        client_factory(move |_| Made(m.clone())).on_failure(move |_cx, e| *f.borrow_mut() = Some(e));
    reactor.connect_unix(path, factory).expect("a connect that fails at once reports through the factory");
    run_until(reactor, "client_connection_failed", |_| failed.borrow().is_some());
    assert_eq!(*made.borrow(), 0, "connection_made never runs for a failed connect");
    assert_eq!(reactor.connection_count(), 0);
    let error = failed.borrow_mut().take().expect("the failure");
    error
}

#[test]
fn connect_unix_to_a_path_with_no_listener_fails_through_client_connection_failed() {
    let mut reactor = Reactor::new().unwrap();
    // No file at all.
    let missing = TempPath::new(".sock");
    match connect_and_fail(&mut reactor, missing.path()) {
        Error::ConnectFailed { addr, source } => {
            assert_eq!(addr, Address::unix_path(missing.path()));
            assert_eq!(source.kind(), ErrorKind::NotFound, "{source}");
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    // A stale socket file: refused.
    let stale = TempPath::new(".sock");
    stale_socket_file(stale.path());
    match connect_and_fail(&mut reactor, stale.path()) {
        Error::ConnectFailed { addr, source } => {
            assert_eq!(addr, Address::unix_path(stale.path()));
            assert_eq!(source.kind(), ErrorKind::ConnectionRefused, "{source}");
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    assert_eq!((reactor.source_count(), reactor.timer_count()), (0, 0), "nothing left behind");
}
