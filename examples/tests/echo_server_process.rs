//! The real `echo-server` and `echo-client` binaries as processes: the `listening on` line,
//! byte-exact echo and half-close, a graceful exit on SIGINT, exit codes and messages for an
//! address in use, `--help`, and the client against a live server and a refused port.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;

use common::{command, connect, run_bounded, start_listening, text, Listening};

const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

fn start_server() -> Listening {
    start_listening(SERVER, &["--listen", "127.0.0.1:0"])
}

/// Deterministic bytes covering every value.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// Writes `data` on a thread while reading `data.len()` bytes back on this one.
fn echo_exact(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let out = data.to_vec();
    let sender: JoinHandle<std::io::Result<()>> = std::thread::spawn(move || writer.write_all(&out));
    let mut got = vec![0u8; data.len()];
    let mut reader = stream;
    reader.read_exact(&mut got).expect("read the echo");
    sender.join().unwrap().expect("write");
    got
}

#[test]
fn echo_server_echoes_half_closes_and_exits_0_on_sigint() {
    let mut server = start_server();

    // Byte-exact echo on a connection that stays open.
    let idle = connect(server.addr);
    let data = bytes(256 * 1024, 7);
    assert!(echo_exact(&idle, &data) == data, "echoed bytes differ");

    // Half-close round trip: everything sent before our FIN comes back, then the server's FIN.
    let mut half = connect(server.addr);
    let data = bytes(100_000, 99);
    half.write_all(&data).unwrap();
    half.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    half.read_to_end(&mut got).expect("echo, then EOF after our half-close");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "half-close echo differs");

    // SIGINT: a graceful stop closes the open connection (EOF), then the process exits 0.
    server.process.interrupt();
    let mut rest = Vec::new();
    let mut idle = idle;
    match idle.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes after SIGINT: {rest:?}"),
        Err(e) => panic!("an open client must see EOF after SIGINT, got {e}"),
    }
    drop(idle);
    let status = server.process.wait_exit("echo-server after SIGINT");
    assert_eq!(status.code(), Some(0), "echo-server exit status after SIGINT: {status}");
}

#[test]
fn echo_server_on_an_address_in_use_exits_2_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_bounded(command(SERVER, &["--listen", &addr]), "echo-server on a taken address");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status {}; stderr: {stderr:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(stderr.contains(&addr), "the message names the address: {stderr:?}");
    assert!(stderr.to_lowercase().contains("in use"), "the message says why: {stderr:?}");
    assert!(out.stdout.is_empty(), "no `listening on` line: {:?}", text(&out.stdout));
    drop(taken);
}

#[test]
fn echo_server_help_exits_0_and_mentions_listen() {
    let out = run_bounded(command(SERVER, &["--help"]), "echo-server --help");
    assert_eq!(out.status.code(), Some(0), "exit status {}", out.status);
    assert!(text(&out.stdout).contains("--listen"), "{:?}", text(&out.stdout));
}

#[test]
fn echo_client_prints_each_reply_then_exits_0() {
    let mut server = start_server();
    let addr = server.addr.to_string();
    let out = run_bounded(
        command(CLIENT, &["--connect", &addr, "--message", "hi", "--count", "3"]),
        "echo-client --message hi --count 3",
    );
    assert_eq!(out.status.code(), Some(0), "exit status {}; stderr: {:?}", out.status, text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\nhi\nhi\n");

    server.process.interrupt();
    let status = server.process.wait_exit("echo-server after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn echo_client_against_a_refused_port_exits_1_with_a_message() {
    // Bound but not listening: connects are refused, and nobody else can take the port.
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    held.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let addr = held.local_addr().unwrap().as_socket().unwrap();
    // Nobody listens there now: a plain connect is refused too.
    assert_eq!(TcpStream::connect(addr).map_err(|e| e.kind()).err(), Some(ErrorKind::ConnectionRefused));
    let addr = addr.to_string();
    let out = run_bounded(
        command(CLIENT, &["--connect", &addr, "--message", "hi"]),
        "echo-client against a refused port",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status {}; stderr: {stderr:?}", out.status);
    assert!(
        stderr.contains(&format!("cannot connect to {addr}")) && stderr.to_lowercase().contains("refused"),
        "a clear message on stderr: {stderr:?}"
    );
    assert!(out.stdout.is_empty(), "{:?}", text(&out.stdout));
}
