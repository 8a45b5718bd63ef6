//! A client that never reads, among 20 that chat at full speed with the real `chat-server`:
//! the room waits for it at most 1 s, then it is cut off at its 1 MiB write-buffer cap (the
//! server's log says so), the others get every line in order, and the server's peak memory
//! stays bounded (printed).
//!
//! Named `load_*` so that nextest runs it on its own (serial-load group).

mod chat_util;
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use chat_util::{join_all, peak_rss_kib, receive_all, send_burst, start_chat_logged, Client};
use common::WAIT;

#[test]
fn load_chat_slow_reader_is_cut_off_at_the_cap_and_the_rest_complete() {
    const CHATTERS: usize = 20;
    const MESSAGES: usize = 3000;
    let (server, log) = start_chat_logged(&[], "slow-reader");
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

    // Cut off by the cap, not by anything else.
    let log_text = std::fs::read_to_string(&log).expect("read the server's log");
    let _ = std::fs::remove_file(&log);
    assert!(
        log_text.lines().any(|l| l.contains("left name=\"slow\"") && l.contains("hard cap")),
        "the server's log should say the slow reader left over its write-buffer cap:\n{log_text}"
    );
    assert!(!log_text.lines().any(|l| l.contains("left name=\"c")), "a chatter was cut off:\n{log_text}");

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
