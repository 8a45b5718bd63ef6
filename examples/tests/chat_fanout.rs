//! The real `chat-server` under load, over loopback: 50 clients × 100 messages each arrive
//! everywhere in order, nothing lost or duplicated.
//!
//! Named `load_*` so that nextest runs it on its own (serial-load group).

mod chat_util;
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use chat_util::{join_all, receive_all, send_burst, start_chat};

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
