//! `--threads N` on the real `echo-server` and `frame-echo` binaries (issue 16): byte-exact
//! echo over many connections on a pool of reactors, TCP and Unix, a graceful exit 0 on SIGINT
//! with open clients closed cleanly, and the one-line error for an address in use.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::{
    command, connect, connect_unix, pattern, run_bounded, send_all_then_read_to_end, start_listening,
    start_listening_unix, text, TempSocket,
};

const ECHO: &str = env!("CARGO_BIN_EXE_echo-server");
const FRAMES: &str = env!("CARGO_BIN_EXE_frame-echo");

#[test]
fn echo_server_with_threads_echoes_every_connection_and_exits_0_on_sigint() {
    let mut server = start_listening(ECHO, &["--listen", "127.0.0.1:0", "--threads", "2"]);
    let open = connect(server.addr);
    for seed in 0..40u8 {
        let data = pattern(20_000 + seed as usize, seed);
        let got = send_all_then_read_to_end(connect(server.addr), &data);
        assert!(got == data, "connection {seed}: echo differs");
    }
    server.process.interrupt();
    let mut open = open;
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).expect("an open client sees EOF after SIGINT");
    assert!(rest.is_empty());
    drop(open);
    let status = server.process.wait_exit("echo-server --threads 2 after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn echo_server_with_one_thread_per_core_on_a_unix_socket() {
    let socket = TempSocket::new("threads");
    let mut server =
        start_listening_unix(ECHO, &["--listen", &socket.endpoint(), "--threads", "0"], &socket.path);
    for seed in 0..10u8 {
        let data = pattern(5000, seed);
        let got = send_all_then_read_to_end(connect_unix(&socket.path), &data);
        assert!(got == data, "connection {seed}: echo differs");
    }
    server.process.interrupt();
    let status = server.process.wait_exit("echo-server --threads 0 after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!socket.path.exists(), "the socket file is removed at exit");
}

#[test]
fn frame_echo_with_threads_echoes_netstrings() {
    let mut server =
        start_listening(FRAMES, &["--listen", "127.0.0.1:0", "--framing", "netstring", "--threads", "2"]);
    for _ in 0..8 {
        let mut stream = connect(server.addr);
        stream.write_all(b"5:hello,3:abc,").unwrap();
        let mut got = [0u8; 14];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"5:hello,3:abc,");
    }
    server.process.interrupt();
    let status = server.process.wait_exit("frame-echo --threads 2 after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn echo_server_with_threads_on_an_address_in_use_exits_2_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_bounded(
        command(ECHO, &["--listen", &addr, "--threads", "2"]),
        "echo-server --threads 2 on a taken address",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status {}; stderr: {stderr:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(stderr.to_lowercase().contains("in use"), "{stderr:?}");
    drop(taken);
}
