//! The real `echo-client`, reading stdin, stops gracefully on SIGINT and exits 0, like every
//! example binary.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{command, line_reader, start_listening, ChildGuard, WAIT};

const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

#[test]
fn echo_client_exits_0_on_sigint() {
    let server = start_listening(SERVER, &["--listen", "127.0.0.1:0"]);
    let addr = server.addr.to_string();
    let child = command(CLIENT, &["--connect", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn echo-client");
    let mut client = ChildGuard { child };
    let replies = line_reader(client.child.stdout.take().unwrap());
    let mut stdin = client.child.stdin.take().unwrap();
    stdin.write_all(b"ping\n").unwrap();
    // The reply proves the client is connected and running its loop.
    let reply = replies.recv_timeout(WAIT).expect("the echoed line within the deadline");
    assert_eq!(reply, "ping");
    client.interrupt();
    let status = client.wait_exit("echo-client after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");
    drop(stdin);
}
