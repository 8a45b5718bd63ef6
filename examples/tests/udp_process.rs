//! The real `udp-echo` and `udp-time` binaries as processes: the `listening on` line, echo of
//! datagrams up to 8 KiB, RFC 868 time, the `udp:PORT:interface=ADDR` form, `--help`, exit 2
//! with one line for a bad or busy address, exit 0 on SIGINT, and Twisted's own
//! `DatagramProtocol` as a client of udp-echo (tests/interop/twisted_udp_client.py; skipped
//! loudly when Twisted is not installed, see twisted_interop.rs).

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{command, run_bounded, start_listening, text, twisted_python, Listening, WAIT};

const ECHO: &str = env!("CARGO_BIN_EXE_udp-echo");
const TIME: &str = env!("CARGO_BIN_EXE_udp-time");

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket
}

/// Sends `data` and returns the reply (bounded by [`WAIT`]).
fn ask(socket: &UdpSocket, server: &Listening, data: &[u8]) -> Vec<u8> {
    socket.send_to(data, server.addr).unwrap();
    let mut buf = vec![0; 70_000];
    let (n, from) = socket.recv_from(&mut buf).expect("a reply within the timeout");
    assert_eq!(from, server.addr);
    buf.truncate(n);
    buf
}

fn stop(mut server: Listening, what: &str) {
    server.process.interrupt();
    let status = server.process.wait_exit(what);
    assert_eq!(status.code(), Some(0), "{what}: exit status {status}");
}

#[test]
fn udp_echo_echoes_datagrams_and_exits_0_on_sigint() {
    let server = start_listening(ECHO, &["--listen", "127.0.0.1:0"]);
    let socket = client();
    for len in [0, 1, 100, 1472, 8192] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        assert_eq!(ask(&socket, &server, &data), data, "{len} bytes");
    }
    stop(server, "udp-echo after SIGINT");
}

#[test]
fn udp_echo_takes_twisted_s_udp_endpoint_form() {
    let server = start_listening(ECHO, &["--listen", "udp:0:interface=127.0.0.1"]);
    assert_eq!(ask(&client(), &server, b"hi"), b"hi");
    stop(server, "udp-echo (udp: form) after SIGINT");
}

#[test]
fn udp_time_answers_with_the_rfc_868_time() {
    let server = start_listening(TIME, &["--listen", "127.0.0.1:0"]);
    let reply = ask(&client(), &server, b"");
    assert_eq!(reply.len(), 4, "{reply:?}");
    let got = u32::from_be_bytes(reply.try_into().unwrap()) as i64;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + 2_208_988_800;
    assert!((got - (now as u32) as i64).abs() <= 5, "RFC 868 time {got} vs now {now}");
    stop(server, "udp-time after SIGINT");
}

#[test]
fn udp_servers_on_a_bad_or_busy_address_exit_2_with_one_line() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    for (program, addr, why) in [
        (ECHO, "nonsense", "bad address"),
        (ECHO, "udp:70000", "bad port"),
        (ECHO, busy.as_str(), "in use"),
        (TIME, busy.as_str(), "in use"),
    ] {
        let out = run_bounded(command(program, &["--listen", addr]), "a UDP server on a bad address");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{addr}: exit status {}; stderr: {stderr:?}", out.status);
        assert_eq!(stderr.lines().count(), 1, "{addr}: one line on stderr: {stderr:?}");
        assert!(stderr.contains(addr), "{addr}: the message names the address: {stderr:?}");
        assert!(stderr.to_lowercase().contains(why), "{addr}: the message says why: {stderr:?}");
        assert!(out.stdout.is_empty(), "{addr}: no `listening on` line");
    }
}

#[test]
fn udp_servers_explain_themselves_with_help() {
    for program in [ECHO, TIME] {
        let out = run_bounded(command(program, &["--help"]), "--help");
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        assert!(help.contains("--listen") && help.contains("udp:PORT"), "{help}");
    }
}

/// Twisted's `DatagramProtocol` (connected mode) sends 500 datagrams of seeded random sizes up
/// to 8 KiB to udp-echo and checks each echo byte-exact.
#[test]
fn twisted_datagram_protocol_as_a_client_of_udp_echo() {
    let Some(python) = twisted_python("udp-echo") else { return };
    let server = start_listening(ECHO, &["--listen", "127.0.0.1:0"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/twisted_udp_client.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).args(["--port", &server.addr.port().to_string(), "--count", "500"]);
    let out = run_bounded(cmd, "twisted_udp_client.py");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "client: {}; stdout {stdout:?}; stderr {:?}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(stdout.trim(), "ok 500");
    stop(server, "udp-echo after SIGINT");
}
