//! Unix stream sockets in the transport layer: binding (stale files, live servers, modes, lock
//! files, abstract names), connecting, peer credentials, and a `Connection` over a Unix stream.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use torsion_transports::unix::*;
use torsion_transports::*;

use mio::net::UnixStream;
use mio::{Interest, Token};

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }
}
use std::io::Read;
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique name for this process and test.
fn unique(prefix: &str) -> String {
    format!("torsion-{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A fresh directory under the system temp dir, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique("unix"));
        fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        assert!(path.as_os_str().len() <= UNIX_PATH_MAX, "temp dir too deep for a socket path");
        path
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn file_id(path: &Path) -> FileId {
    FileId::of(&fs::symlink_metadata(path).unwrap())
}

fn is_socket(path: &Path) -> bool {
    fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false)
}

/// Waits (at most [`WAIT`]) for a connection on `listener` and accepts it.
fn accept_within(listener: &mut UnixListenerSocket) -> (UnixStream, UnixAddr) {
    let mut poll = mio::Poll::new().unwrap();
    poll.registry().register(listener, Token(0), Interest::READABLE).unwrap();
    let mut events = mio::Events::with_capacity(4);
    let deadline = Instant::now() + WAIT;
    loop {
        match listener.accept() {
            Ok(accepted) => {
                poll.registry().deregister(listener).unwrap();
                return accepted;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.checked_duration_since(Instant::now()).expect("nothing to accept");
                poll.poll(&mut events, Some(left)).unwrap();
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

/// Accepts on a blocking-or-not std listener, bounded: a connect has already queued the
/// connection, so `WouldBlock` is a failure.
fn std_accept_now(listener: &StdUnixListener) -> StdUnixStream {
    listener.set_nonblocking(true).unwrap();
    let (stream, _) = listener.accept().expect("a queued connection");
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = TempDir::new();
    let path = dir.path("stale.sock");
    drop(StdUnixListener::bind(&path).unwrap());
    assert!(is_socket(&path), "closing a listener leaves its file behind");

    let addr = UnixAddr::Path(path.clone());
    assert!(
        matches!(
            connect_unix(&addr),
            Err(TransportError::ConnectUnix { source, .. })
                if source.kind() == io::ErrorKind::ConnectionRefused
        ),
        "the stale file refuses connects"
    );
    let mut listener = bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap();
    assert_eq!(listener.local_addr(), &addr);
    // (The new file may reuse the stale one's inode number: nothing held it.) A connect
    // succeeding proves it is a live socket now.
    let _client = connect_unix(&addr).expect("the new file answers");
    let (_server, peer) = accept_within(&mut listener);
    assert_eq!(peer, UnixAddr::Unnamed);
}

#[test]
fn a_live_servers_file_is_left_alone_and_a_second_bind_fails() {
    let dir = TempDir::new();
    let path = dir.path("live.sock");
    let live = StdUnixListener::bind(&path).unwrap();
    let before = file_id(&path);

    let addr = UnixAddr::Path(path.clone());
    let err = bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap_err();
    match &err {
        TransportError::AddressInUse { addr: Address::Unix(a) } => assert_eq!(a, &addr),
        other => panic!("expected AddressInUse, got {other:?}"),
    }
    assert!(err.to_string().contains("a live server is listening there"), "{err}");
    assert_eq!(file_id(&path), before, "the live server's file is untouched");

    // The probe shows up on the live server as a connection closed at once; behind it, a
    // real client still gets through.
    let mut probe = std_accept_now(&live);
    assert_eq!(probe.read(&mut [0; 8]).unwrap(), 0, "the probe closed at once");
    let mut client = StdUnixStream::connect(&path).unwrap();
    io::Write::write_all(&mut client, b"x").unwrap();
    let mut server = std_accept_now(&live);
    let mut byte = [0; 1];
    server.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"x");
    assert_eq!(file_id(&path), before);
}

#[test]
fn a_live_server_with_a_full_backlog_is_still_live() {
    let dir = TempDir::new();
    let addr = UnixAddr::Path(dir.path("full.sock"));
    let live = bind_unix_listener(&addr, &UnixListenOptions::default().backlog(0)).unwrap();
    let mut clients = Vec::new();
    // Fill the backlog: Linux queues backlog + 1, then refuses with EAGAIN.
    let full = (0..16).any(|_| match connect_unix(&addr) {
        Ok(c) => {
            clients.push(c);
            false
        }
        Err(TransportError::ConnectUnix { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::WouldBlock, "{source}");
            true
        }
        Err(e) => panic!("{e}"),
    });
    assert!(full, "the backlog never filled");
    assert!(matches!(
        bind_unix_listener(&addr, &UnixListenOptions::default()),
        Err(TransportError::AddressInUse { .. })
    ));
    assert!(live.accept().is_ok(), "still listening");
}

#[test]
fn the_backlog_is_honoured() {
    let dir = TempDir::new();
    let small = UnixAddr::Path(dir.path("small.sock"));
    let _small_listener = bind_unix_listener(&small, &UnixListenOptions::default().backlog(1)).unwrap();
    let mut clients = Vec::new();
    let accepted = (0..16).take_while(|_| connect_unix(&small).map(|c| clients.push(c)).is_ok()).count();
    assert!(accepted <= 2, "backlog 1 queued {accepted} connections");

    let large = UnixAddr::Path(dir.path("large.sock"));
    let _large_listener = bind_unix_listener(&large, &UnixListenOptions::default()).unwrap();
    for _ in 0..16 {
        clients.push(connect_unix(&large).expect("the default backlog holds 16 connections"));
    }
}

#[test]
fn a_path_that_is_not_a_socket_is_refused_and_left_alone() {
    let dir = TempDir::new();
    let path = dir.path("data.txt");
    fs::write(&path, b"precious").unwrap();
    let err = bind_unix_listener(&UnixAddr::Path(path.clone()), &UnixListenOptions::default()).unwrap_err();
    assert!(matches!(&err, TransportError::NotASocket { path: p } if p == &path), "{err:?}");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"precious");

    // A directory, and a symbolic link to a live socket, are refused the same way.
    let sub = dir.path("subdir");
    fs::create_dir(&sub).unwrap();
    assert!(matches!(
        bind_unix_listener(&UnixAddr::Path(sub.clone()), &UnixListenOptions::default()),
        Err(TransportError::NotASocket { .. })
    ));
    assert!(sub.is_dir());
    let live_path = dir.path("live.sock");
    let _live = StdUnixListener::bind(&live_path).unwrap();
    let link = dir.path("link.sock");
    std::os::unix::fs::symlink(&live_path, &link).unwrap();
    assert!(matches!(
        bind_unix_listener(&UnixAddr::Path(link.clone()), &UnixListenOptions::default()),
        Err(TransportError::NotASocket { .. })
    ));
    assert_eq!(fs::read_link(&link).unwrap(), live_path, "the link is left alone");
    assert!(is_socket(&live_path));
}

#[test]
fn a_too_long_path_or_name_is_a_typed_error() {
    let long = PathBuf::from(format!("/tmp/{}", "x".repeat(195)));
    let addr = UnixAddr::Path(long);
    let err = bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap_err();
    assert!(matches!(&err, TransportError::UnixPathTooLong { len: 200, max: UNIX_PATH_MAX, .. }), "{err:?}");
    assert!(err.to_string().contains("the limit is 107 bytes"), "{err}");
    assert!(matches!(connect_unix(&addr), Err(TransportError::UnixPathTooLong { len: 200, .. })));

    // One byte over the limit, as a path and as an abstract name.
    let over = UnixAddr::Path(PathBuf::from("x".repeat(UNIX_PATH_MAX + 1)));
    assert!(matches!(
        bind_unix_listener(&over, &UnixListenOptions::default()),
        Err(TransportError::UnixPathTooLong { len: 108, max: 107, .. })
    ));
    let name = UnixAddr::Abstract(vec![b'n'; UNIX_PATH_MAX + 1]);
    assert!(matches!(
        bind_unix_listener(&name, &UnixListenOptions::default()),
        Err(TransportError::UnixPathTooLong { len: 108, .. })
    ));
    assert!(matches!(connect_unix(&name), Err(TransportError::UnixPathTooLong { len: 108, .. })));
}

#[test]
fn an_unnamed_or_empty_address_is_a_typed_error() {
    let options = UnixListenOptions::default();
    assert!(matches!(
        bind_unix_listener(&UnixAddr::Unnamed, &options),
        Err(TransportError::UnnamedUnixAddress)
    ));
    assert!(matches!(connect_unix(&UnixAddr::Unnamed), Err(TransportError::UnnamedUnixAddress)));
    let empty = UnixAddr::Path(PathBuf::new());
    assert!(matches!(
        bind_unix_listener(&empty, &options),
        Err(TransportError::BindUnix { source, .. }) if source.kind() == io::ErrorKind::InvalidInput
    ));
}

#[test]
fn the_mode_is_applied() {
    let dir = TempDir::new();
    let mode_of = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let private = dir.path("private.sock");
    let _a =
        bind_unix_listener(&UnixAddr::Path(private.clone()), &UnixListenOptions::default().mode(Some(0o600)))
            .unwrap();
    assert_eq!(mode_of(&private), 0o600);

    // The default is Twisted's 0o666, whatever the umask (set_permissions is explicit).
    let shared = dir.path("shared.sock");
    let _b = bind_unix_listener(&UnixAddr::Path(shared.clone()), &UnixListenOptions::default()).unwrap();
    assert_eq!(mode_of(&shared), DEFAULT_UNIX_MODE);
    assert_eq!(DEFAULT_UNIX_MODE, 0o666);
}

#[test]
fn an_abstract_name_binds_connects_and_accepts_without_a_file() {
    let dir = TempDir::new();
    let name = unique("abstract");
    let addr = UnixAddr::Abstract(name.clone().into_bytes());
    let mut listener = bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap();
    assert_eq!(listener.local_addr(), &addr);
    let mut client = connect_unix(&addr).unwrap();
    let (mut server, peer) = accept_within(&mut listener);
    assert_eq!(peer, UnixAddr::Unnamed);
    assert_eq!(
        UnixAddr::from_std(&server.local_addr().unwrap()),
        addr,
        "the accepted socket's name is the abstract name"
    );
    io::Write::write_all(&mut client, b"ping").unwrap();
    let mut buf = [0; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");

    // A second bind of a live name is refused; none of this touched the file system.
    assert!(matches!(
        bind_unix_listener(&addr, &UnixListenOptions::default()),
        Err(TransportError::AddressInUse { .. })
    ));
    assert!(!Path::new(&name).exists());
    assert!(dir.entries().is_empty());
    // Closing frees the name at once.
    listener.close().unwrap();
    drop(bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap());
    assert!(matches!(
        connect_unix(&addr),
        Err(TransportError::ConnectUnix { source, .. })
            if source.kind() == io::ErrorKind::ConnectionRefused
    ));
}

#[test]
fn dropping_or_closing_the_listener_removes_its_file() {
    let dir = TempDir::new();
    let path = dir.path("mine.sock");
    let addr = UnixAddr::Path(path.clone());
    drop(bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap());
    assert!(!path.exists(), "dropped: file removed");
    let listener = bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap();
    assert!(is_socket(&path));
    listener.close().unwrap();
    assert!(!path.exists(), "closed: file removed");
    assert!(dir.entries().is_empty());
}

#[test]
fn the_file_is_removed_on_drop_only_if_it_is_still_ours() {
    let dir = TempDir::new();
    let path = dir.path("shared.sock");
    let ours = bind_unix_listener(&UnixAddr::Path(path.clone()), &UnixListenOptions::default()).unwrap();
    let our_id = file_id(&path);
    fs::remove_file(&path).unwrap();
    let other = StdUnixListener::bind(&path).unwrap();
    let theirs = file_id(&path);
    assert_ne!(theirs, our_id, "our open socket keeps its inode: the number is not reused");
    drop(ours);
    assert!(is_socket(&path), "another server's file survives our drop");
    assert_eq!(file_id(&path), theirs);
    let _client = StdUnixStream::connect(&path).expect("the other server still answers");
    std_accept_now(&other);
}

#[test]
fn a_held_lock_refuses_a_second_listener() {
    let dir = TempDir::new();
    let path = dir.path("locked.sock");
    let lock_path = dir.path("locked.sock.lock");
    let addr = UnixAddr::Path(path.clone());
    let options = UnixListenOptions::default().lockfile(true);
    let first = bind_unix_listener(&addr, &options).unwrap();
    assert_eq!(fs::read_to_string(&lock_path).unwrap(), std::process::id().to_string());
    let socket_id = file_id(&path);

    let err = bind_unix_listener(&addr, &options).unwrap_err();
    match &err {
        TransportError::Locked { lock_path: p, pid } => {
            assert_eq!(p, &lock_path);
            assert_eq!(*pid, std::process::id());
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(file_id(&path), socket_id, "the holder's socket file is untouched");
    assert!(lock_path.exists(), "the holder's lock is untouched");

    drop(first);
    assert_eq!(dir.entries(), Vec::<String>::new(), "socket and lock files removed");
    drop(bind_unix_listener(&addr, &options).expect("free again"));
    assert!(dir.entries().is_empty());
}

#[test]
fn a_lock_file_replaced_by_another_is_left_alone() {
    let dir = TempDir::new();
    let path = dir.path("relocked.sock");
    let lock_path = dir.path("relocked.sock.lock");
    let listener =
        bind_unix_listener(&UnixAddr::Path(path.clone()), &UnixListenOptions::default().lockfile(true))
            .unwrap();
    fs::remove_file(&lock_path).unwrap();
    fs::write(&lock_path, b"1").unwrap();
    drop(listener);
    assert_eq!(fs::read(&lock_path).unwrap(), b"1", "someone else's lock survives our drop");
    assert!(!path.exists(), "our socket file is still removed");
}

#[test]
fn a_stale_lock_is_replaced() {
    let dir = TempDir::new();
    let path = dir.path("stale-lock.sock");
    let lock_path = dir.path("stale-lock.sock.lock");
    let addr = UnixAddr::Path(path.clone());
    let options = UnixListenOptions::default().lockfile(true);
    // pid_max itself is never a live pid (pids are below it).
    let pid_max = fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().to_owned();
    for stale in [pid_max.as_str(), "garbage", "", "0"] {
        fs::write(&lock_path, stale).unwrap();
        let listener = bind_unix_listener(&addr, &options).unwrap_or_else(|e| panic!("lock {stale:?}: {e}"));
        assert_eq!(fs::read_to_string(&lock_path).unwrap(), std::process::id().to_string());
        drop(listener);
        assert!(!lock_path.exists());
    }
}

#[test]
fn a_failed_bind_releases_its_lock_and_removes_nothing_else() {
    let dir = TempDir::new();
    let path = dir.path("occupied");
    fs::write(&path, b"data").unwrap();
    let options = UnixListenOptions::default().lockfile(true);
    assert!(matches!(
        bind_unix_listener(&UnixAddr::Path(path.clone()), &options),
        Err(TransportError::NotASocket { .. })
    ));
    assert_eq!(dir.entries(), vec!["occupied".to_owned()], "no lock file left behind");
    assert_eq!(fs::read(&path).unwrap(), b"data");
}

#[test]
fn peer_credentials_are_our_own() {
    let dir = TempDir::new();
    let addr = UnixAddr::Path(dir.path("cred.sock"));
    let mut listener = bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap();
    let client = connect_unix(&addr).unwrap();
    let (server, _) = accept_within(&mut listener);
    let ours = PeerCredentials {
        pid: Some(std::process::id() as i32),
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    };
    assert_eq!(peer_credentials(&server).unwrap(), ours, "the client, seen from the server");
    assert_eq!(peer_credentials(&client).unwrap(), ours, "the server, seen from the client");
    assert_eq!(StreamSocket::peer_credentials(&server), Some(ours));
}

#[test]
fn a_connect_reaches_connected() {
    let dir = TempDir::new();
    let addr = UnixAddr::Path(dir.path("progress.sock"));
    let mut listener = bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap();
    let mut client = connect_unix(&addr).unwrap();
    let mut poll = mio::Poll::new().unwrap();
    poll.registry().register(&mut client, Token(1), Interest::WRITABLE).unwrap();
    let mut events = mio::Events::with_capacity(4);
    let deadline = Instant::now() + WAIT;
    loop {
        match unix_connect_progress(&client) {
            ConnectProgress::Connected => break,
            ConnectProgress::Pending => {
                let left = deadline.checked_duration_since(Instant::now()).expect("never connected");
                poll.poll(&mut events, Some(left)).unwrap();
            }
            ConnectProgress::Failed(e) => panic!("connect failed: {e}"),
        }
    }
    assert!(matches!(client.connect_progress(), ConnectProgress::Connected));
    assert_eq!(client.local_address(), Some(Address::Unix(UnixAddr::Unnamed)));
    accept_within(&mut listener);
}

#[test]
fn connect_failures_are_typed() {
    let dir = TempDir::new();
    let missing = UnixAddr::Path(dir.path("missing.sock"));
    assert!(matches!(
        connect_unix(&missing),
        Err(TransportError::ConnectUnix { addr, source })
            if addr == missing && source.kind() == io::ErrorKind::NotFound
    ));
    let stale = dir.path("stale.sock");
    drop(StdUnixListener::bind(&stale).unwrap());
    let err = connect_unix(&UnixAddr::Path(stale.clone())).unwrap_err();
    assert!(
        matches!(&err, TransportError::ConnectUnix { source, .. }
            if source.kind() == io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(&format!("cannot connect to unix:{}", stale.display())), "{err}");
}

/// A mio stream for a [`Connection`] and a blocking std peer with a read timeout.
fn connection_pair() -> (Connection<UnixStream>, StdUnixStream) {
    let (ours, peer) = StdUnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    (Connection::new(UnixStream::from_std(ours)), peer)
}

#[test]
fn a_connection_writes_reads_and_half_closes() {
    let (mut conn, mut peer) = connection_pair();
    conn.write(b"hello ");
    conn.write(&[b'u'; 20 * 1024]);
    assert!(conn.write_eof());
    assert_eq!(conn.flush(usize::MAX).unwrap(), FlushStatus::Drained);
    assert!(conn.is_write_closed());
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 6 + 20 * 1024, "everything, then EOF");
    assert!(got.starts_with(b"hello u"));

    // The read half is still open: the peer answers and half-closes in turn.
    io::Write::write_all(&mut peer, b"reply").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let mut buf = [0; 64];
    let mut data = Vec::new();
    // Unix writes are synchronous: the data and the EOF are already queued, so a
    // `WouldBlock` here would be a failure, and the loop is bounded.
    for _ in 0..16 {
        match conn.read(&mut buf) {
            ReadOutcome::Data(n) => data.extend_from_slice(&buf[..n]),
            ReadOutcome::Eof => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(data, b"reply");
    assert!(conn.is_read_closed());
    assert!(conn.is_finished());
}

#[test]
fn an_abort_on_a_unix_socket_is_a_plain_close() {
    let (mut conn, mut peer) = connection_pair();
    conn.write(b"dropped");
    assert!(conn.abort());
    drop(conn.into_socket());
    let mut buf = [0; 16];
    assert_eq!(peer.read(&mut buf).unwrap(), 0, "EOF, not a reset: Unix sockets have no RST");
}

#[test]
fn the_options_builders_set_their_fields() {
    let options = UnixListenOptions::default();
    assert_eq!((options.backlog, options.mode, options.lockfile), (DEFAULT_BACKLOG, Some(0o666), false));
    let options = options.backlog(7).mode(None).lockfile(true);
    assert_eq!(options, UnixListenOptions { backlog: 7, mode: None, lockfile: true });
}
