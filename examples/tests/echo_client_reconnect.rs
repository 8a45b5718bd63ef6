//! `echo-client --reconnect` against a real `echo-server` that is stopped and started again on
//! the same port: the client carries on, and a line typed while the server was down is
//! delivered once it is back.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{command, line_reader, start_listening, ChildGuard, WAIT};

const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

/// `echo-client --connect ADDR --reconnect` with its stdin and stdout on pipes.
fn start_client(addr: &str) -> (ChildGuard, std::sync::mpsc::Receiver<String>, std::process::ChildStdin) {
    let child = command(CLIENT, &["--connect", addr, "--reconnect"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn echo-client");
    let mut client = ChildGuard { child };
    let replies = line_reader(client.child.stdout.take().unwrap());
    let stdin = client.child.stdin.take().unwrap();
    (client, replies, stdin)
}

#[test]
fn echo_client_reconnect_carries_on_after_the_server_restarts() {
    let mut server = start_listening(SERVER, &["--listen", "127.0.0.1:0"]);
    let addr = server.addr.to_string();
    let (mut client, replies, mut stdin) = start_client(&addr);
    stdin.write_all(b"before\n").unwrap();
    assert_eq!(replies.recv_timeout(WAIT).expect("the first echo"), "before");

    // The server goes away (a clean exit on SIGINT closes the connection).
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("echo-server after SIGINT").code(), Some(0));
    // Typed while the server is down: it waits, unread, until the client is connected again.
    stdin.write_all(b"during\n").unwrap();
    // The same port again (the client knows no other).
    let _restarted = start_listening(SERVER, &["--listen", &addr]);
    assert_eq!(replies.recv_timeout(WAIT).expect("the echo after the restart"), "during");
    stdin.write_all(b"after\n").unwrap();
    assert_eq!(replies.recv_timeout(WAIT).expect("a later echo"), "after");

    // End of input: half-close, the server finishes, the client exits 0.
    drop(stdin);
    let status = client.wait_exit("echo-client after end of input");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn echo_client_reconnect_waits_for_a_server_that_is_not_up_yet() {
    // A port nobody listens on yet: refused, retried, then served.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    drop(held);
    let (mut client, replies, mut stdin) = start_client(&addr);
    stdin.write_all(b"hello\n").unwrap();
    let _server = start_listening(SERVER, &["--listen", &addr]);
    assert_eq!(replies.recv_timeout(WAIT).expect("the echo once the server is up"), "hello");
    drop(stdin);
    assert_eq!(client.wait_exit("echo-client after end of input").code(), Some(0));
}
