//! The real `frame-echo` binary as a process, for every `--framing`: frames written in small
//! pieces come back byte-exact in the same framing, a frame of exactly `--max-length` is
//! echoed and one byte more closes the connection (after echoing what came before), malformed
//! netstrings close it, SIGINT exits 0, and startup errors exit 2 with one line. The framing is
//! encoded here by hand, independently of the library under test.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::{command, connect, run_bounded, start_listening, text, Listening};

const FRAME_ECHO: &str = env!("CARGO_BIN_EXE_frame-echo");

fn start(framing: &str, max_length: Option<usize>) -> Listening {
    let max = max_length.map(|m| m.to_string());
    let mut args = vec!["--listen", "127.0.0.1:0", "--framing", framing];
    if let Some(max) = &max {
        args.extend(["--max-length", max.as_str()]);
    }
    start_listening(FRAME_ECHO, &args)
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
    for word in ["--listen", "--framing", "--max-length", "line", "int8", "int16", "int32", "netstring"] {
        assert!(help.contains(word), "--help mentions {word}: {help}");
    }
}
