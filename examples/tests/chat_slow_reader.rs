//! The real `chat-server` under load, over loopback: 50 clients × 100 messages each arrive
//! everywhere in order, nothing lost or duplicated; a client that never reads, among 20 that
//! chat at full speed, is cut off at its 1 MiB write-buffer cap while the others get every
//! line and the server's memory stays bounded.
//!
//! The tests are named `load_*` so that nextest runs them one at a time (serial-load group).

mod chat_util;
mod common;

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use chat_util::{peak_rss_kib, start_chat, Client};
use common::WAIT;

/// Parses `<NAME> REST` into the sender's name and the text.
fn parse_message(line: &str) -> Option<(&str, &str)> {
    line.strip_prefix('<')?.split_once("> ")
}

/// Sends `count` lines `"{seq} {padding}"` as fast as the socket takes them.
fn send_burst(stream: TcpStream, count: usize, padding: &str, label: &str) {
    let mut out = BufWriter::with_capacity(64 * 1024, stream);
    for seq in 0..count {
        write!(out, "{seq} {padding}\r\n").unwrap_or_else(|e| panic!("{label}: write failed: {e}"));
    }
    out.flush().unwrap_or_else(|e| panic!("{label}: write failed: {e}"));
}

/// Joins `count` clients named `{prefix}NN` one after another, so that when the last has its
/// greeting every one of them is in the room.
fn join_all(addr: SocketAddr, prefix: &str, count: usize) -> Vec<Client> {
    (0..count).map(|i| Client::join(addr, &format!("{prefix}{i:02}")).0).collect()
}

/// Reads `client`'s lines until every sender in `expected` (name → message count) has
/// delivered all its messages, checking that each sender's sequence numbers arrive in order
/// with none missing or repeated. Lines starting with `* ` (joins and leaves) are returned.
fn receive_all(client: &mut Client, expected: &HashMap<String, usize>) -> Vec<String> {
    let mut next: HashMap<&str, usize> = expected.keys().map(|k| (k.as_str(), 0)).collect();
    let mut remaining: usize = expected.values().sum();
    let mut notices = Vec::new();
    while remaining > 0 {
        let line = client.line();
        if line.starts_with("* ") {
            notices.push(line);
            continue;
        }
        let (sender, text) =
            parse_message(&line).unwrap_or_else(|| panic!("{}: unexpected line {line:?}", client.label));
        let seq: usize = text
            .split(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}: no sequence number in {line:?}", client.label));
        let want = next
            .get_mut(sender)
            .unwrap_or_else(|| panic!("{}: a message from an unexpected sender: {line:?}", client.label));
        assert_eq!(seq, *want, "{}: from {sender}: out of order, lost or duplicated", client.label);
        assert!(seq < expected[sender], "{}: from {sender}: more than sent ({seq})", client.label);
        *want += 1;
        remaining -= 1;
    }
    notices
}

#[test]
fn load_chat_50_clients_100_messages_each() {
    const CLIENTS: usize = 50;
    const MESSAGES: usize = 100;
    let server = start_chat(&[]);
    let started = Instant::now();
    let clients = join_all(server.addr, "c", CLIENTS);

    // Nobody leaves before everyone has checked that nothing else was queued for them.
    let everyone = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let everyone = everyone.clone();
            thread::spawn(move || {
                let others: HashMap<String, usize> =
                    (0..CLIENTS).filter(|&j| j != i).map(|j| (format!("c{j:02}"), MESSAGES)).collect();
                send_burst(client.stream(), MESSAGES, "m", &client.label);
                let notices = receive_all(&mut client, &others);
                // Joins of those who came later, and nothing else.
                let joins: Vec<String> = (i + 1..CLIENTS).map(|j| format!("* c{j:02} has joined")).collect();
                assert_eq!(notices, joins, "{}", client.label);
                // Nothing else was queued: the next line answers our /who.
                let online = client.who();
                assert_eq!(online.split(", ").count(), CLIENTS, "{}: {online}", client.label);
                everyone.wait();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed (see its panic above)");
    }
    println!("50 clients x 100 messages: every client got 4,900 messages in {:?}", started.elapsed());
}

#[test]
fn load_chat_slow_reader_is_cut_off_at_the_cap_and_the_rest_complete() {
    const CHATTERS: usize = 20;
    const MESSAGES: usize = 3000;
    let server = start_chat(&[]);
    let started = Instant::now();

    // The client that never reads, with a small receive buffer so the kernel holds little for
    // it and the server's own buffer has to take the rest.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&server.addr.into(), WAIT).expect("connect the slow reader");
    let mut slow = Client::from_stream(socket.into(), "slow");
    slow.expect(chat_util::WELCOME);
    slow.send("slow");
    let greeting = slow.line();
    assert_eq!(greeting, "Welcome, slow! Online: slow");

    let chatters = join_all(server.addr, "c", CHATTERS);
    // About 1 KiB per line: 60 MB for each reader, far more than the cap plus kernel buffers.
    let padding = "x".repeat(1000);
    let saw_slow_leave = Arc::new(AtomicBool::new(true));
    let threads: Vec<_> = chatters
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let padding = padding.clone();
            let saw_slow_leave = saw_slow_leave.clone();
            thread::spawn(move || {
                let others: HashMap<String, usize> =
                    (0..CHATTERS).filter(|&j| j != i).map(|j| (format!("c{j:02}"), MESSAGES)).collect();
                let stream = client.stream();
                let label = client.label.clone();
                let writer = thread::spawn(move || send_burst(stream, MESSAGES, &padding, &label));
                let notices = receive_all(&mut client, &others);
                writer.join().expect("writer thread");
                if !notices.iter().any(|n| n == "* slow has left") {
                    saw_slow_leave.store(false, Ordering::SeqCst);
                }
                client
            })
        })
        .collect();
    let mut chatters: Vec<Client> =
        threads.into_iter().map(|t| t.join().expect("a chatter failed (see its panic above)")).collect();
    let elapsed = started.elapsed();
    assert!(saw_slow_leave.load(Ordering::SeqCst), "every chatter sees the slow reader leave");

    // The slow reader was cut off: what it can still read ends in a reset (an abort), not in
    // the whole 60 MB.
    let (read, clean) = slow.drain_to_close();
    assert!(read < 8 * 1024 * 1024, "the slow reader could read {read} bytes after the chat");
    let names = chatters[0].who();
    assert!(!names.contains("slow") && names.split(", ").count() == CHATTERS, "{names}");

    let peak = peak_rss_kib(server.process.child.id());
    println!(
        "slow reader cut off ({} after {read} more bytes); {CHATTERS} chatters x {MESSAGES} lines of 1 KiB \
         all delivered in {elapsed:?}; server peak RSS (VmHWM) {peak} KiB",
        if clean { "EOF" } else { "reset" }
    );
    // Without the cap the slow reader alone would hold about 60 MB; the cap holds it to 1 MiB,
    // and the rest is the chatters' buffers, the 256 KiB read buffer and the program itself.
    assert!(peak < 40 * 1024, "server peak RSS {peak} KiB: memory is not bounded");
    chatters.clear();
}
