//! Socket activation with the real `echo-server`: a launcher (Python, standing in for
//! systemd) opens the listening socket, passes it as descriptor 3 with `LISTEN_FDS=1` and
//! `LISTEN_PID` set to the server's pid (the launcher execs it, so the pid is the same), and the
//! server started with `--listen systemd:domain=...:index=0` serves on it. Also `tcp:` and
//! `unix:` typed endpoints on the command line.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use common::{connect, start_listening, ChildGuard, TempSocket, WAIT};

const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");

/// Opens a listening socket (TCP on 127.0.0.1 or Unix at a path), prints where on stderr,
/// moves it to descriptor 3 and execs the server with systemd's variables.
const LAUNCHER: &str = r#"
import os, socket, sys
kind, server, endpoint = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "tcp":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    where = "%s:%d" % s.getsockname()
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sys.argv[4])
    where = sys.argv[4]
s.listen(16)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
sys.stderr.write(where + "\n")
sys.stderr.flush()
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(server, [server, "--listen", endpoint])
"#;

/// Starts the server through the launcher; returns it, the address the launcher bound and the
/// server's `listening on` line.
fn launch(kind: &str, endpoint: &str, extra: &[&str]) -> (ChildGuard, String, String) {
    let child = Command::new("python3")
        .args(["-c", LAUNCHER, kind, SERVER, endpoint])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs the launcher");
    let mut guard = ChildGuard { child };
    let mut err = BufReader::new(guard.child.stderr.take().unwrap());
    let mut bound = String::new();
    err.read_line(&mut bound).expect("the launcher's address line");
    let mut out = BufReader::new(guard.child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).expect("the server's first line");
    // Keep the pipes drained so the server never blocks on them.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
        let _ = err.read_to_end(&mut sink);
    });
    (guard, bound.trim().to_owned(), first.trim().to_owned())
}

fn python_available() -> bool {
    let ok = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("!!! SKIPPED: python3 is missing; socket activation is NOT tested");
    }
    ok
}

#[test]
fn echo_server_serves_an_inherited_tcp_socket() {
    if !python_available() {
        return;
    }
    let (mut server, bound, first) = launch("tcp", "systemd:domain=INET:index=0", &[]);
    assert_eq!(first, format!("listening on {bound}"), "the server listens where the launcher bound");
    let mut stream = connect(bound.parse().unwrap());
    stream.write_all(b"activated").unwrap();
    let mut got = [0u8; 9];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"activated");
    drop(stream);
    server.interrupt();
    assert_eq!(server.wait_exit("echo-server after SIGINT").code(), Some(0));
}

#[test]
fn echo_server_serves_an_inherited_unix_socket_and_leaves_its_file() {
    if !python_available() {
        return;
    }
    let socket = TempSocket::new("activated");
    let path = socket.path.to_str().unwrap().to_owned();
    let (mut server, bound, first) = launch("unix", "systemd:domain=UNIX:index=0", &[&path]);
    assert_eq!(bound, path);
    assert_eq!(first, format!("listening on unix:{path}"));
    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"unix").unwrap();
    let mut got = [0u8; 4];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"unix");
    drop(stream);
    server.interrupt();
    assert_eq!(server.wait_exit("echo-server after SIGINT").code(), Some(0));
    // The file belongs to whoever made the socket (systemd): not ours to remove.
    assert!(socket.path.exists(), "an adopted socket's file was removed");
}

#[test]
fn the_wrong_domain_for_the_inherited_socket_is_one_line_and_exit_2() {
    if !python_available() {
        return;
    }
    let (mut server, _bound, _first) = launch("tcp", "systemd:domain=UNIX:index=0", &[]);
    let status = server.wait_exit("echo-server with the wrong socket kind");
    assert_eq!(status.code(), Some(2), "{status}");
}

#[test]
fn typed_tcp_and_unix_endpoints_work_on_the_command_line() {
    let tcp = start_listening(SERVER, &["--listen", "tcp:0:interface=127.0.0.1:backlog=16"]);
    let mut stream = connect(tcp.addr);
    stream.write_all(b"tcp").unwrap();
    let mut got = [0u8; 3];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"tcp");
}
