//! The real `echo-client` reading stdin through `LoopCtx::standard_io`, driven through pipes by
//! this test process: byte-exact replies for a megabyte of lines, a last line without a newline
//! finished with one, and the pipe's open file description (shared with this process) left
//! blocking afterwards: torsion never sets `O_NONBLOCK` on inherited descriptors.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Stdio;

use common::{command, run_bounded, start_listening, text};

const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");
/// `O_NONBLOCK` on Linux (octal 04000).
const O_NONBLOCK: i32 = 0o4000;

/// `fcntl(F_GETFL)` of one of our descriptors, through /proc (no unsafe code).
fn status_flags(fd: &impl AsRawFd) -> i32 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let line = info.lines().find(|l| l.starts_with("flags:")).expect("a flags line");
    i32::from_str_radix(line["flags:".len()..].trim(), 8).unwrap()
}

/// Runs echo-client against `addr` with `input` on a pipe as its stdin; returns its output
/// and the status flags of that pipe's read end as this process sees them afterwards.
fn run_client(addr: &str, input: Vec<u8>) -> (std::process::Output, i32) {
    let (reader, mut writer) = std::io::pipe().expect("a pipe");
    // Same open file description as the child's stdin: where O_NONBLOCK would show.
    let probe = reader.try_clone().unwrap();
    let before = status_flags(&probe);
    assert_eq!(before & O_NONBLOCK, 0);
    let mut cmd = command(CLIENT, &["--connect", addr]);
    cmd.stdin(Stdio::from(reader));
    let feeder = std::thread::spawn(move || {
        // The child may fail before reading it all; the test then fails on its output.
        let _ = writer.write_all(&input);
    });
    let out = run_bounded(cmd, "echo-client with stdin on a pipe");
    feeder.join().unwrap();
    (out, status_flags(&probe))
}

#[test]
fn echo_client_echoes_a_megabyte_of_stdin_lines_and_leaves_the_pipe_blocking() {
    let server = start_listening(SERVER, &["--listen", "127.0.0.1:0"]);
    let input: Vec<u8> =
        (0..24 * 1024).flat_map(|i| format!("line {i:05} {}\n", "x".repeat(i % 97)).into_bytes()).collect();
    assert!(input.len() > 1024 * 1024);
    let (out, flags) = run_client(&server.addr.to_string(), input.clone());
    assert_eq!(out.status.code(), Some(0), "exit status {}; stderr: {:?}", out.status, text(&out.stderr));
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "the replies differ from the input");
    assert_eq!(flags & O_NONBLOCK, 0, "echo-client set O_NONBLOCK on the stdin it shares with us");
}

#[test]
fn echo_client_finishes_a_last_line_without_a_newline() {
    let server = start_listening(SERVER, &["--listen", "127.0.0.1:0"]);
    let (out, _) = run_client(&server.addr.to_string(), b"first\nlast".to_vec());
    assert_eq!(out.status.code(), Some(0), "exit status {}; stderr: {:?}", out.status, text(&out.stderr));
    assert_eq!(text(&out.stdout), "first\nlast\n");
}
