//! The real `chat-server` against bad clients, over loopback: invalid UTF-8, a 1 MiB line, a
//! binary flood, a client that connects and says nothing (idle timeout), and 1,000 clients
//! connecting and leaving at once. After each, the server keeps serving: a fresh client can
//! still chat.

mod chat_util;
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use chat_util::{start_chat, Client};
use common::{connect, WAIT};

/// Two fresh clients can still log in and talk; `others` are the names online besides them.
fn still_serving(addr: SocketAddr, others: &[&str]) {
    let (mut a, _) = Client::join(addr, "fresh_a");
    let (mut b, _) = Client::join(addr, "fresh_b");
    a.expect("* fresh_b has joined");
    b.send("still serving?");
    a.expect("<fresh_b> still serving?");
    let mut names: Vec<&str> = others.iter().copied().chain(["fresh_a", "fresh_b"]).collect();
    names.sort();
    assert_eq!(a.who(), names.join(", "));
}

#[test]
fn invalid_utf8_gets_an_error_line_and_is_not_relayed() {
    let server = start_chat(&[]);
    let (mut sender, _) = Client::join(server.addr, "sender");
    let (mut watcher, _) = Client::join(server.addr, "watcher");
    sender.expect("* watcher has joined");
    for bad in [&b"\xff"[..], b"\xc3", b"ok then \xe2\x82", b"\xed\xa0\x80 surrogate", b"\xc0\xaf overlong"] {
        let mut line = bad.to_vec();
        line.extend_from_slice(b"\r\n");
        sender.send_raw(&line);
        sender.expect("Invalid UTF-8, line ignored.");
    }
    sender.send("after the bad lines");
    watcher.expect("<sender> after the bad lines");
    still_serving(server.addr, &["sender", "watcher"]);
}

#[test]
fn a_one_mib_line_gets_an_error_line_then_a_close() {
    let server = start_chat(&[]);
    let (mut big, _) = Client::join(server.addr, "big");
    let (mut watcher, _) = Client::join(server.addr, "watcher");
    big.expect("* watcher has joined");

    // Written from a thread: the server closes long before the megabyte is through.
    let mut stream = big.stream();
    let writer = thread::spawn(move || {
        let mut line = vec![b'a'; 1024 * 1024];
        line.extend_from_slice(b"\r\n");
        let _ = stream.write_all(&line); // may fail once the server has closed: fine
    });
    big.expect("Line too long (max 4096 bytes), goodbye.");
    let (rest, _) = big.drain_to_close();
    assert_eq!(rest, 0, "nothing after the error line");
    writer.join().unwrap();
    watcher.expect("* big has left");
    still_serving(server.addr, &["watcher"]);
}

/// xorshift64: deterministic noise, no dependency.
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn a_binary_flood_does_not_stop_the_others() {
    let server = start_chat(&[]);
    let (mut watcher, _) = Client::join(server.addr, "watcher");

    // An unnamed client floods 16 MiB of random bytes and never reads. Its replies (mostly
    // "Invalid UTF-8") fill its write buffer, so the server stops reading it; the flood then
    // blocks in write until we shut the socket.
    let flood = connect(server.addr);
    let mut flood_writer = flood.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let data = noise(16 * 1024 * 1024, 0x9e37_79b9_7f4a_7c15);
        let started = Instant::now();
        for chunk in data.chunks(64 * 1024) {
            if flood_writer.write_all(chunk).is_err() {
                break;
            }
        }
        started.elapsed()
    });

    // Meanwhile (and afterwards) the room works. Random lines that happen to be valid names
    // or messages may show up at the watcher; skip them.
    let (mut talker, _) = Client::join(server.addr, "talker");
    talker.send("through the flood");
    loop {
        let line = watcher.line_bytes().expect("watcher: EOF during the flood");
        if line == b"<talker> through the flood" {
            break;
        }
    }
    flood.shutdown(std::net::Shutdown::Both).unwrap();
    let took = writer.join().unwrap();
    assert!(took < WAIT, "the flood writer was stuck for {took:?}");
    drop(flood);
    // Once the flood is gone, the only names online are the watcher's and the talker's (a
    // random line may have named the flood client; it has left by the time /who answers
    // without it).
    let deadline = Instant::now() + WAIT;
    loop {
        if talker.who() == "talker, watcher" {
            break;
        }
        assert!(Instant::now() < deadline, "the flood client is still in the room after {WAIT:?}");
    }
    drop(talker);
    still_serving(server.addr, &["watcher"]);
}

#[test]
fn a_silent_client_is_closed_by_the_idle_timeout() {
    let server = start_chat(&["--idle-timeout", "1"]);
    // One that never names itself, and one that names itself and then goes quiet.
    let mut silent = Client::connect(server.addr, "silent");
    let connected = Instant::now();
    let (mut sleepy, _) = Client::join(server.addr, "sleepy");
    let (mut watcher, _) = Client::join(server.addr, "watcher");
    sleepy.expect("* watcher has joined");
    // When silent is closed is measured on its own thread while watcher talks.
    let silent_closed = thread::spawn(move || {
        silent.expect_eof();
        connected.elapsed()
    });

    // watcher keeps talking (each /who waits only for its answer, far under a second), so it
    // stays while the other two are closed, and it sees sleepy leave.
    let mut saw_leave = false;
    let deadline = Instant::now() + WAIT;
    while !saw_leave || connected.elapsed() < Duration::from_millis(1500) {
        assert!(Instant::now() < deadline, "watcher did not see sleepy leave within {WAIT:?}");
        watcher.send("/who");
        loop {
            let line = watcher.line();
            if line == "* sleepy has left" {
                saw_leave = true;
            } else if line.starts_with("Online: ") {
                break;
            } else {
                panic!("watcher: unexpected line {line:?}");
            }
        }
    }
    assert_eq!(watcher.who(), "watcher");
    let waited = silent_closed.join().expect("silent sees EOF");
    assert!(waited >= Duration::from_millis(900), "closed after {waited:?}, before the 1 s timeout");
    sleepy.expect_eof();
    // Once watcher goes quiet, it is closed too.
    watcher.expect_eof();
}

#[test]
fn load_chat_1000_clients_connecting_and_leaving_at_once() {
    const CLIENTS: usize = 1000;
    let server = start_chat(&[]);
    let (mut watcher, _) = Client::join(server.addr, "watcher");

    // Half send a name, half send nothing; all are dropped together. A client dropped with
    // unread data (its welcome) resets the connection, so some names may never be read:
    // either way the server must forget every one of them.
    let streams: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| {
            let mut stream = connect(server.addr);
            if i % 2 == 0 {
                stream.write_all(format!("u{i:04}\n").as_bytes()).expect("send a name");
            }
            stream
        })
        .collect();
    drop(streams);

    // Everyone is gone once /who, from a fresh client, lists only those still here.
    let (mut probe, _) = Client::join(server.addr, "probe");
    let deadline = Instant::now() + WAIT;
    loop {
        let names = probe.who();
        if names == "probe, watcher" {
            break;
        }
        assert!(Instant::now() < deadline, "clients still in the room after {WAIT:?}: {names}");
    }
    // Every join the watcher saw is matched by a leave, after it; probe's message marks the
    // end (every leave came before the /who answer above, so before it).
    probe.send("done");
    let mut joined: HashMap<String, bool> = HashMap::new();
    loop {
        let line = watcher.line();
        if line == "<probe> done" {
            break;
        }
        if line == "* probe has joined" {
            continue;
        }
        if let Some(name) = line.strip_prefix("* ").and_then(|l| l.strip_suffix(" has joined")) {
            assert!(joined.insert(name.to_owned(), true).is_none(), "joined twice: {name}");
        } else if let Some(name) = line.strip_prefix("* ").and_then(|l| l.strip_suffix(" has left")) {
            assert_eq!(joined.insert(name.to_owned(), false), Some(true), "left without joining: {name}");
        } else {
            panic!("watcher: unexpected line {line:?}");
        }
    }
    let still_in: Vec<_> = joined.iter().filter(|(_, &here)| here).map(|(n, _)| n).collect();
    assert!(still_in.is_empty(), "joined and never left: {still_in:?}");
    println!("{} of {CLIENTS} clients got as far as joining; all of them left", joined.len());
    drop(probe);
    still_serving(server.addr, &["watcher"]);
}
