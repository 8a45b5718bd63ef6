//! SIGINT stops the real `chat-server` gracefully with 100 clients connected: each reads
//! everything that was queued for it before the signal, then the `* Server shutting down` goodbye, then EOF, and the server exits 0.
//!
//! Named `load_*` so that nextest runs it on its own (serial-load group).

mod chat_util;
mod common;

use chat_util::{start_chat, Client};

#[test]
fn load_chat_sigint_with_100_clients_delivers_everything_then_eof() {
    const CLIENTS: usize = 100;
    const MESSAGES: usize = 200;
    let mut server = start_chat(&[]);
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("c{i:03}")).collect();
    // Each waits for its greeting, so all are in the room before anyone talks.
    let mut clients: Vec<Client> = names.iter().map(|name| Client::join(server.addr, name).0).collect();

    // c000 talks; nobody else reads yet, so the lines wait in the server's and the kernel's
    // buffers. Its /who answer, after the last line, proves every line has been queued for
    // every client before the signal.
    let talker = &mut clients[0];
    let mut burst = String::new();
    for seq in 0..MESSAGES {
        burst.push_str(&format!("line {seq}\r\n"));
    }
    burst.push_str("/who\r\n");
    talker.send_raw(burst.as_bytes());
    for name in &names[1..] {
        talker.expect(&format!("* {name} has joined"));
    }
    assert_eq!(talker.line(), format!("Online: {}", names.join(", ")));
    server.process.interrupt();

    for (i, client) in clients.iter_mut().enumerate() {
        // Joins of those who came later, then (except for the talker) the talker's lines,
        // then the goodbye and EOF.
        let mut expected: Vec<String> =
            names[i + 1..].iter().map(|name| format!("* {name} has joined")).collect();
        if i == 0 {
            expected.clear(); // read above, before /who's answer
        } else {
            expected.extend((0..MESSAGES).map(|seq| format!("<c000> line {seq}")));
        }
        for line in &expected {
            client.expect(line);
        }
        // The goodbye of the before-shutdown trigger comes after everything relayed, then EOF.
        client.expect("* Server shutting down");
        client.expect_eof();
    }
    drop(clients);
    let status = server.process.wait_exit("chat-server after SIGINT with 100 clients");
    assert_eq!(status.code(), Some(0), "{status}");
}
