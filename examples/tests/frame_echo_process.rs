//! The real `frame-echo` binary as a process, for every `--framing`: frames written in small
//! pieces come back byte-exact in the same framing, a frame of exactly `--max-length` is
//! echoed and one byte more closes the connection (after echoing what came before), malformed
//! netstrings close it, each `--line-endings` mode treats `nc`'s bare `\n` as documented,
//! SIGINT exits 0, and startup errors (including a `--max-length` the prefix cannot express)
//! exit 2 with one line. The framing is encoded here by hand, independently of the library
//! under test.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::{command, connect, run_bounded, start_listening, text, Listening};

const FRAME_ECHO: &str = env!("CARGO_BIN_EXE_frame-echo");

fn start(framing: &str, max_length: Option<usize>) -> Listening {
    let max = max_length.map(|m| m.to_string());
    let mut args = vec!["--framing", framing];
    if let Some(max) = &max {
        args.extend(["--max-length", max.as_str()]);
    }
    start_with(&args)
}

/// Starts frame-echo on 127.0.0.1 port 0 with `args` added.
fn start_with(args: &[&str]) -> Listening {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    start_listening(FRAME_ECHO, &all)
}

/// Stops `server` with SIGINT and checks it exits 0.
fn stop(mut server: Listening, what: &str) {
    server.process.interrupt();
    let status = server.process.wait_exit(what);
    assert_eq!(status.code(), Some(0), "{what}: exit status {status}");
}

/// Frames `data` by hand for `framing`.
fn frame(framing: &str, data: &[u8]) -> Vec<u8> {
    let len = data.len();
    let mut out = match framing {
        "line" => Vec::new(),
        "int8" => vec![u8::try_from(len).expect("int8 frame")],
        "int16" => u16::try_from(len).expect("int16 frame").to_be_bytes().to_vec(),
        "int32" => u32::try_from(len).expect("int32 frame").to_be_bytes().to_vec(),
        "netstring" => format!("{len}:").into_bytes(),
        other => panic!("unknown framing {other}"),
    };
    out.extend_from_slice(data);
    match framing {
        "line" => out.extend_from_slice(b"\r\n"),
        "netstring" => out.push(b','),
        _ => {}
    }
    out
}

/// Deterministic payload bytes; for lines, never `\r` or `\n`.
fn payload(len: usize, seed: u8, framing: &str) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let b = (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8;
            if framing == "line" && (b == b'\r' || b == b'\n') {
                b'.'
            } else {
                b
            }
        })
        .collect()
}

/// Writes `data` in pieces of `piece` bytes (flushing each) on a thread, while reading
/// exactly `expect.len()` bytes back on this one.
fn send_and_expect(stream: &TcpStream, data: &[u8], piece: usize, expect: &[u8], what: &str) {
    let mut writer = stream.try_clone().unwrap();
    let out = data.to_vec();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        for chunk in out.chunks(piece.max(1)) {
            writer.write_all(chunk)?;
            writer.flush()?;
        }
        Ok(())
    });
    let mut got = vec![0u8; expect.len()];
    let mut reader = stream;
    reader.read_exact(&mut got).unwrap_or_else(|e| panic!("{what}: reading the echo: {e}"));
    sender.join().unwrap().unwrap_or_else(|e| panic!("{what}: writing: {e}"));
    assert!(got == expect, "{what}: the echo differs from what was sent");
}

/// Reads until EOF (bounded by the stream's read timeout); returns what came first.
fn expect_close(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => rest,
        // A reset also ends the connection; it is not what frame-echo does, but report it.
        Err(e) => panic!("{what}: expected the server to close the connection cleanly, got {e}"),
    }
}

/// The whole check for one framing, with `max` as `--max-length`.
fn check_framing(framing: &str, max: usize) {
    let mut server = start(framing, Some(max));
    let what = |s: &str| format!("{framing} (max {max}): {s}");

    // Several frames, including an empty one and one of exactly max, sent in 7-byte pieces.
    let frames: Vec<Vec<u8>> = [0, 1, 100, max, 3].iter().map(|&n| payload(n, n as u8, framing)).collect();
    let wire: Vec<u8> = frames.iter().flat_map(|f| frame(framing, f)).collect();
    let mut stream = connect(server.addr);
    send_and_expect(&stream, &wire, 7, &wire, &what("frames in 7-byte pieces"));
    // The same in one write, on the same connection.
    send_and_expect(&stream, &wire, wire.len(), &wire, &what("frames in one write"));

    // A good frame, then one of max+1: the first is echoed, then the connection closes.
    let good = frame(framing, b"before");
    let mut bad = good.clone();
    bad.extend(frame(framing, &payload(max + 1, 9, framing)));
    bad.extend(frame(framing, b"after"));
    stream.write_all(&bad).unwrap();
    let mut echoed = vec![0u8; good.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, good, "{}", what("the frame before the too-long one"));
    let rest = expect_close(&mut stream, &what("max+1"));
    assert!(rest.is_empty(), "{}: nothing after the too-long frame: {}", what("max+1"), text(&rest));
    // Our FIN ends the server's lingering close (it reads and discards until then).
    drop(stream);

    // Other connections are unaffected.
    let other = connect(server.addr);
    let hello = frame(framing, b"hello");
    send_and_expect(&other, &hello, 1, &hello, &what("a new connection, byte by byte"));
    drop(other);

    server.process.interrupt();
    let status = server.process.wait_exit(&what("after SIGINT"));
    assert_eq!(status.code(), Some(0), "{}: exit status {status}", what("SIGINT"));
}

#[test]
fn line_framing() {
    check_framing("line", 1000);
}

#[test]
fn int8_framing() {
    check_framing("int8", 200);
}

#[test]
fn int16_framing() {
    check_framing("int16", 5000);
}

#[test]
fn int32_framing() {
    check_framing("int32", 70_000);
}

#[test]
fn netstring_framing() {
    check_framing("netstring", 1000);
}

#[test]
fn default_limits_are_twisted_s() {
    let mut server = start("line", None);
    let mut stream = connect(server.addr);
    let at_max = frame("line", &payload(16384, 1, "line"));
    send_and_expect(&stream, &at_max, 4096, &at_max, "line at the default max of 16384");
    stream.write_all(&payload(16385, 2, "line")).unwrap();
    assert!(expect_close(&mut stream, "line over 16384").is_empty());
    drop(stream);
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("line server").code(), Some(0));

    let mut server = start("int32", None);
    let mut stream = connect(server.addr);
    let at_max = frame("int32", &payload(99999, 3, "int32"));
    send_and_expect(&stream, &at_max, 8192, &at_max, "int32 at the default max of 99999");
    // A prefix of 0xFFFFFFFF alone is enough to close.
    stream.write_all(&[0xFF; 4]).unwrap();
    assert!(expect_close(&mut stream, "int32 prefix 0xFFFFFFFF").is_empty());
    drop(stream);
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("int32 server").code(), Some(0));
}

#[test]
fn malformed_netstrings_close_the_connection() {
    let mut server = start("netstring", None);
    for bad in [&b"3:abcX"[..], b"x3:abc,", b":abc,", b"03:abc,", b"2:abc,", b"999999:"] {
        let mut stream = connect(server.addr);
        let mut input = b"2:ok,".to_vec();
        input.extend_from_slice(bad);
        stream.write_all(&input).unwrap();
        let rest = expect_close(&mut stream, &text(bad));
        assert_eq!(rest, b"2:ok,", "{}: the good frame is echoed, then the connection closes", text(bad));
    }
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("netstring server").code(), Some(0));
}

#[test]
fn an_address_in_use_exits_2_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out =
        run_bounded(command(FRAME_ECHO, &["--listen", &addr, "--framing", "line"]), "frame-echo in use");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status {}; stderr: {stderr:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(stderr.contains(&addr) && stderr.to_lowercase().contains("in use"), "{stderr:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_arguments_exit_2_and_help_names_every_framing() {
    let out = run_bounded(command(FRAME_ECHO, &["--listen", "127.0.0.1:0"]), "frame-echo without --framing");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = run_bounded(
        command(FRAME_ECHO, &["--listen", "127.0.0.1:0", "--framing", "int64"]),
        "frame-echo --framing int64",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = run_bounded(command(FRAME_ECHO, &["--help"]), "frame-echo --help");
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for word in [
        "--listen",
        "--framing",
        "--max-length",
        "line",
        "int8",
        "int16",
        "int32",
        "netstring",
        "--line-endings",
        "exact",
        "lenient",
        "strict",
    ] {
        assert!(help.contains(word), "--help mentions {word}: {help}");
    }
}

/// What `printf 'a\nb\n' | nc` sends: lines ending in a bare `\n`.
const NC_LINES: &[u8] = b"a\nb\n";

#[test]
fn lenient_line_endings_echo_nc_s_bare_newline_lines() {
    let server = start_with(&["--framing", "line", "--line-endings", "lenient"]);
    let stream = connect(server.addr);
    // Each line comes back as a line, with the receiver's `\r\n`; CRLF lines work too.
    send_and_expect(&stream, NC_LINES, NC_LINES.len(), b"a\r\nb\r\n", "lenient, bare \\n");
    send_and_expect(&stream, b"c\r\nd\n", 1, b"c\r\nd\r\n", "lenient, mixed, byte by byte");
    drop(stream);
    stop(server, "lenient server");
}

#[test]
fn exact_line_endings_are_the_default_and_keep_a_bare_newline_in_the_line() {
    for args in [&["--framing", "line"][..], &["--framing", "line", "--line-endings", "exact"]] {
        let server = start_with(args);
        let stream = connect(server.addr);
        // `a\nb\n` is not a line yet: it is echoed only as part of the line `\r\n` ends.
        let mut input = NC_LINES.to_vec();
        input.extend_from_slice(b"\r\n");
        send_and_expect(&stream, &input, NC_LINES.len(), &input, &format!("{args:?}"));
        drop(stream);
        stop(server, "exact server");
    }
}

#[test]
fn strict_line_endings_close_on_a_bare_newline() {
    let server = start_with(&["--framing", "line", "--line-endings", "strict"]);
    let mut stream = connect(server.addr);
    let mut input = b"ok\r\n".to_vec();
    input.extend_from_slice(NC_LINES);
    stream.write_all(&input).unwrap();
    let rest = expect_close(&mut stream, "strict, bare \\n");
    assert_eq!(rest, b"ok\r\n", "the CRLF line is echoed, then the bare \\n closes: {}", text(&rest));
    drop(stream);
    stop(server, "strict server");
}

/// Runs frame-echo with `args` (after `--listen 127.0.0.1:0`), expecting it to refuse them:
/// exit code 2, nothing on stdout, one line on stderr, which it returns.
fn refused_at_startup(args: &[&str]) -> String {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let out = run_bounded(command(FRAME_ECHO, &all), &format!("frame-echo {args:?}"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: exit status {}; stderr: {stderr:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "{args:?}: exactly one line on stderr: {stderr:?}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout (no listening line): {}", text(&out.stdout));
    stderr
}

#[test]
fn a_max_length_the_prefix_cannot_express_exits_2_with_one_line() {
    for (framing, max, limit) in [
        ("int8", "1000", "255"),
        ("int8", "256", "255"),
        ("int16", "65536", "65535"),
        ("int32", "4294967296", "4294967295"),
    ] {
        let stderr = refused_at_startup(&["--framing", framing, "--max-length", max]);
        for word in ["--max-length", max, framing, limit] {
            assert!(stderr.contains(word), "{framing} {max}: the message names {word}: {stderr:?}");
        }
    }
    // The largest expressible lengths are accepted (and still enforced: checked above).
    for (framing, max) in [("int8", "255"), ("int16", "65535")] {
        let server = start_with(&["--framing", framing, "--max-length", max]);
        let stream = connect(server.addr);
        let at_max = frame(framing, &payload(max.parse().unwrap(), 5, framing));
        send_and_expect(&stream, &at_max, 1000, &at_max, &format!("{framing} at {max}"));
        drop(stream);
        stop(server, framing);
    }
}

#[test]
fn line_endings_with_another_framing_exit_2_with_one_line() {
    let stderr = refused_at_startup(&["--framing", "netstring", "--line-endings", "lenient"]);
    assert!(stderr.contains("--line-endings") && stderr.contains("netstring"), "{stderr:?}");
}
