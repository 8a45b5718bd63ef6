//! The real `echo-server` and `echo-client` binaries over Unix sockets: `--listen unix:PATH`
//! announces `listening on unix:PATH` and echoes byte-exact; SIGINT removes the socket file and
//! exits 0; a second server on a live path exits 2 with one line and leaves the first alone; a
//! stale socket file is replaced; a file that is not a socket is refused; an abstract name
//! works; `echo-client --connect unix:PATH` round-trips and reports a missing path.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use common::{
    command, connect_unix, inode, is_socket, pattern, run_bounded, send_all_then_read_to_end,
    start_announcing, start_listening_unix, text, TempSocket, UnixListening, WAIT,
};

const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

fn start_server(socket: &TempSocket) -> UnixListening {
    start_listening_unix(SERVER, &["--listen", &socket.endpoint()], &socket.path)
}

/// One short round trip on a fresh connection: proves a live server answers at `socket`.
fn ping(socket: &TempSocket) {
    let mut stream = connect_unix(&socket.path);
    stream.write_all(b"ping\n").unwrap();
    let mut got = [0; 5];
    stream.read_exact(&mut got).expect("the echo of ping");
    assert_eq!(&got, b"ping\n");
}

/// SIGINT, then the exit status must be 0.
fn stop(server: &mut UnixListening, what: &str) {
    server.process.interrupt();
    let status = server.process.wait_exit(what);
    assert_eq!(status.code(), Some(0), "{what}: exit status {status}");
}

#[test]
fn echo_server_on_a_unix_path_echoes_and_removes_its_file_on_sigint() {
    let socket = TempSocket::new("echo");
    let mut server = start_server(&socket);

    // Byte-exact echo with half-close: everything sent before our FIN comes back, then EOF.
    let data = pattern(256 * 1024, 3);
    let got = send_all_then_read_to_end(connect_unix(&socket.path), &data);
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");

    // A connection left open sees EOF on SIGINT; the server exits 0 and its file is gone.
    let mut idle = connect_unix(&socket.path);
    idle.write_all(b"x").unwrap();
    let mut one = [0; 1];
    idle.read_exact(&mut one).unwrap();
    server.process.interrupt();
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).expect("EOF after SIGINT");
    assert!(rest.is_empty(), "unexpected bytes after SIGINT: {rest:?}");
    drop(idle);
    let status = server.process.wait_exit("echo-server on a Unix path after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!socket.path.exists(), "the socket file is removed on a clean stop");
}

#[test]
fn a_second_echo_server_on_a_live_unix_path_exits_2_and_leaves_the_first_alone() {
    let socket = TempSocket::new("live");
    let mut first = start_server(&socket);
    let before = inode(&socket.path);

    let out = run_bounded(command(SERVER, &["--listen", &socket.endpoint()]), "a second echo-server");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status {}; stderr: {stderr:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(stderr.contains(&socket.endpoint()), "the message names the address: {stderr:?}");
    // `unix:PATH` takes a lock file by default (Twisted's `lockfile=1`): the live first server
    // holds it. Without one (`:lockfile=0`) the live socket itself is found in use.
    assert!(stderr.contains("held by live process"), "the message says why: {stderr:?}");
    assert!(out.stdout.is_empty(), "no `listening on` line: {:?}", text(&out.stdout));
    let unlocked = run_bounded(
        command(SERVER, &["--listen", &format!("{}:lockfile=0", socket.endpoint())]),
        "a second echo-server without a lock file",
    );
    let stderr = text(&unlocked.stderr);
    assert_eq!(unlocked.status.code(), Some(2), "exit status {}; stderr: {stderr:?}", unlocked.status);
    assert!(stderr.contains("in use"), "the message says why: {stderr:?}");

    // The first server's file is the same file, and it still answers.
    assert!(is_socket(&socket.path));
    assert_eq!(inode(&socket.path), before, "the live server's socket file is untouched");
    ping(&socket);
    stop(&mut first, "the first echo-server");
    assert!(!socket.path.exists());
}

#[test]
fn echo_server_replaces_a_stale_socket_file() {
    let socket = TempSocket::new("stale");
    use std::os::unix::fs::PermissionsExt;
    // A server that died: its socket file stays behind, and nobody accepts on it. Its mode
    // (0o600) tells it from the file the echo server creates (0o666, the default).
    drop(UnixListener::bind(&socket.path).unwrap());
    std::fs::set_permissions(&socket.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(is_socket(&socket.path));
    assert!(UnixStream::connect(&socket.path).is_err(), "the stale file refuses connections");

    let mut server = start_server(&socket);
    let mode = std::fs::symlink_metadata(&socket.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "a fresh socket file replaced the stale one");
    ping(&socket);
    stop(&mut server, "echo-server on a formerly stale path");
    assert!(!socket.path.exists());
}

#[test]
fn echo_server_refuses_a_unix_path_that_is_not_a_socket() {
    let socket = TempSocket::new("plain");
    std::fs::write(&socket.path, b"not a socket").unwrap();

    let out = run_bounded(command(SERVER, &["--listen", &socket.endpoint()]), "echo-server on a plain file");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status {}; stderr: {stderr:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(stderr.contains(&socket.endpoint()) && stderr.contains("not a socket"), "{stderr:?}");
    assert_eq!(std::fs::read(&socket.path).unwrap(), b"not a socket", "the file is left untouched");
}

#[test]
fn echo_server_on_an_abstract_name_echoes() {
    use std::os::linux::net::SocketAddrExt;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("torsion-ex-{}-{n}-abstract", std::process::id());
    let endpoint = format!("unix:@{name}");
    let (mut process, first, _stdout) = start_announcing(SERVER, &["--listen", &endpoint]);
    assert_eq!(first, format!("listening on {endpoint}"));

    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let stream = UnixStream::connect_addr(&addr).expect("connect to the abstract name");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let data = pattern(64 * 1024, 11);
    assert!(send_all_then_read_to_end(stream, &data) == data, "echo over an abstract socket differs");

    process.interrupt();
    assert_eq!(process.wait_exit("echo-server on an abstract name").code(), Some(0));
}

#[test]
fn echo_client_over_unix_prints_each_reply_then_exits_0() {
    let socket = TempSocket::new("client");
    let mut server = start_server(&socket);
    let out = run_bounded(
        command(CLIENT, &["--connect", &socket.endpoint(), "--message", "hi", "--count", "3"]),
        "echo-client --connect unix:...",
    );
    assert_eq!(out.status.code(), Some(0), "exit status {}; stderr: {:?}", out.status, text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\nhi\nhi\n");
    stop(&mut server, "echo-server after the client");
}

#[test]
fn echo_client_to_a_missing_unix_path_exits_1_with_a_message() {
    let socket = TempSocket::new("missing");
    let out = run_bounded(
        command(CLIENT, &["--connect", &socket.endpoint(), "--message", "hi"]),
        "echo-client to a missing Unix path",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status {}; stderr: {stderr:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(stderr.contains(&format!("cannot connect to {}", socket.endpoint())), "{stderr:?}");
    assert!(out.stdout.is_empty(), "{:?}", text(&out.stdout));
}
