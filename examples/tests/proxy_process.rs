//! The real `proxy` binary in front of the real `echo-server`: the `listening on` line,
//! byte-exact forwarding with half-close, a graceful exit on SIGINT, `--help`, and exit code 2
//! with one line for a bad address.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;

use common::{command, connect, run_bounded, start_listening, text};

const PROXY: &str = env!("CARGO_BIN_EXE_proxy");
const ECHO: &str = env!("CARGO_BIN_EXE_echo-server");

#[test]
fn proxy_forwards_to_echo_server_with_half_close_and_exits_0_on_sigint() {
    let mut echo = start_listening(ECHO, &["--listen", "127.0.0.1:0"]);
    let target = echo.addr.to_string();
    let mut proxy = start_listening(PROXY, &["--listen", "127.0.0.1:0", "--target", &target]);

    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let stream = connect(proxy.addr);
    let mut writer = stream.try_clone().unwrap();
    let out = data.clone();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&out)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut got = Vec::new();
    let mut reader = stream;
    reader.read_to_end(&mut got).expect("the echo through the proxy, then EOF after our FIN");
    sender.join().unwrap().expect("write through the proxy");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes through the proxy differ");

    // An idle client sees EOF when the proxy stops gracefully on SIGINT; the proxy exits 0.
    let mut idle = connect(proxy.addr);
    idle.write_all(b"ping").unwrap();
    let mut pong = [0; 4];
    idle.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"ping");
    proxy.process.interrupt();
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).expect("EOF after SIGINT");
    assert!(rest.is_empty());
    drop(idle); // Our FIN ends the proxy's lingering close at once.
    let status = proxy.process.wait_exit("proxy after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");

    echo.process.interrupt();
    assert_eq!(echo.process.wait_exit("echo-server after SIGINT").code(), Some(0));
}

#[test]
fn proxy_help_exits_0_and_names_both_addresses() {
    let out = run_bounded(command(PROXY, &["--help"]), "proxy --help");
    assert_eq!(out.status.code(), Some(0), "{}", out.status);
    let help = text(&out.stdout);
    assert!(help.contains("--listen") && help.contains("--target"), "{help:?}");
}

#[test]
fn proxy_with_a_bad_target_exits_2_with_one_line() {
    let out = run_bounded(
        command(PROXY, &["--listen", "127.0.0.1:0", "--target", "not an address"]),
        "proxy with a bad target",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status {}; stderr: {stderr:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(stderr.contains("not an address"), "{stderr:?}");
    assert!(out.stdout.is_empty(), "{:?}", text(&out.stdout));
}
