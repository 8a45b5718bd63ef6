//! The real `chat-server --web` under load, browsers and `nc` users in one room: 200 WebSocket
//! clients beside 20 line clients, 50 messages each, and every client gets every other
//! client's messages in order, nothing lost or duplicated; and a WebSocket client that never
//! reads is cut off at its 1 MiB cap while 20 line chatters at full speed lose nothing.
//!
//! The WebSocket clients here are blocking, one thread each, built from torsion's own codec
//! ([`FrameDecoder`], [`encode_frame`]); interop with clients nobody here wrote is
//! websocket_interop.rs and chat_browser.rs. Named `load_*` so nextest runs them on their own.

mod chat_util;
mod common;

use std::collections::{HashMap, VecDeque};
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use chat_util::{join_all, parse_message, peak_rss_kib, receive_all, send_burst, start_chat_logged, Client};
use common::WAIT;
use torsion_protocols::websocket::{
    client_request, encode_frame, new_key, parse_response, Event, FrameDecoder, Message, Opcode, Role,
};

/// A blocking WebSocket chat client: one text frame per line.
struct WsClient {
    label: String,
    reader: TcpStream,
    writer: BufWriter<TcpStream>,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    lines: VecDeque<String>,
}

impl WsClient {
    fn from_stream(stream: TcpStream, web: SocketAddr, label: &str) -> WsClient {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let key = new_key();
        let mut reader = stream.try_clone().unwrap();
        let mut writer = BufWriter::with_capacity(16 * 1024, stream);
        writer.write_all(&client_request(&web.to_string(), "/ws", &key, &[])).unwrap();
        writer.flush().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0; 4096];
        let used = loop {
            if let Some((used, _)) = parse_response(&buf, &key).unwrap() {
                break used;
            }
            let n = reader.read(&mut chunk).unwrap_or_else(|e| panic!("{label}: handshake: {e}"));
            assert!(n > 0, "{label}: closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..used);
        let mut client = WsClient {
            label: label.to_owned(),
            reader,
            writer,
            decoder: FrameDecoder::new(Role::Client),
            buf: Vec::new(),
            lines: VecDeque::new(),
        };
        client.decode(&buf);
        client
    }

    fn connect(web: SocketAddr, label: &str) -> WsClient {
        WsClient::from_stream(common::connect(web), web, label)
    }

    /// Connects, logs in as `name`, and returns the client with its greeting.
    fn join(web: SocketAddr, name: &str) -> (WsClient, String) {
        let mut client = WsClient::connect(web, name);
        assert_eq!(client.line(), chat_util::WELCOME);
        client.send(name);
        client.flush();
        let greeting = client.line();
        assert!(greeting.starts_with(&format!("Welcome, {name}! ")), "{name}: {greeting}");
        (client, greeting)
    }

    fn decode(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            let (used, event) = self.decoder.decode(input).unwrap_or_else(|e| panic!("{}: {e}", self.label));
            input = &input[used..];
            match event {
                Some(Event::Message(Message::Text(t))) => self.lines.push_back(t.to_owned()),
                Some(Event::Close(c)) => panic!("{}: the server closed: {c:?}", self.label),
                Some(other) => panic!("{}: unexpected {other:?}", self.label),
                None => {}
            }
        }
    }

    fn line(&mut self) -> String {
        let mut chunk = [0; 64 * 1024];
        while self.lines.is_empty() {
            let n = self.reader.read(&mut chunk).unwrap_or_else(|e| panic!("{}: read: {e}", self.label));
            assert!(n > 0, "{}: EOF while waiting for a line", self.label);
            self.buf.extend_from_slice(&chunk[..n]);
            let buf = std::mem::take(&mut self.buf);
            self.decode(&buf);
        }
        self.lines.pop_front().unwrap()
    }

    fn send(&mut self, line: &str) {
        let mut frame = Vec::with_capacity(line.len() + 14);
        encode_frame(&mut frame, Opcode::Text, true, line.as_bytes(), Some([0x5a, 0x11, 0xc3, 0x7e]));
        self.writer.write_all(&frame).unwrap_or_else(|e| panic!("{}: write: {e}", self.label));
    }

    fn flush(&mut self) {
        self.writer.flush().unwrap_or_else(|e| panic!("{}: write: {e}", self.label));
    }
}

/// Like `chat_util::receive_all`, for a WebSocket client.
fn ws_receive_all(client: &mut WsClient, expected: &HashMap<String, usize>) -> Vec<String> {
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
            parse_message(&line).unwrap_or_else(|| panic!("{}: unexpected {line:?}", client.label));
        let seq: usize = text.split(' ').next().and_then(|s| s.parse().ok()).expect("a sequence number");
        let want =
            next.get_mut(sender).unwrap_or_else(|| panic!("{}: unexpected sender in {line:?}", client.label));
        assert_eq!(seq, *want, "{}: from {sender}: out of order, lost or duplicated", client.label);
        *want += 1;
        remaining -= 1;
    }
    notices
}

fn start_web_chat_with(tag: &str, extra: &[&str]) -> (common::Listening, SocketAddr, std::path::PathBuf) {
    let (server, log) = start_chat_logged(&[&["--web", "127.0.0.1:0"], extra].concat(), tag);
    let second = server.stdout.recv_timeout(WAIT).expect("the `web on` line");
    let web = second
        .strip_prefix("web on http://")
        .and_then(|a| a.strip_suffix('/'))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("second line must be `web on http://<addr>/`, got {second:?}"));
    (server, web, log)
}

fn start_web_chat(tag: &str) -> (common::Listening, SocketAddr, std::path::PathBuf) {
    start_web_chat_with(tag, &[])
}

#[test]
fn load_chat_200_websocket_and_20_line_clients_50_messages_each() {
    const WEB: usize = 200;
    const LINE: usize = 20;
    const MESSAGES: usize = 50;
    let (server, web, log) = start_web_chat("ws-load");
    let started = Instant::now();
    let line_clients = join_all(server.addr, "l", LINE);
    let web_clients: Vec<WsClient> = (0..WEB).map(|i| WsClient::join(web, &format!("w{i:03}")).0).collect();
    let names: Vec<String> =
        (0..LINE).map(|i| format!("l{i:02}")).chain((0..WEB).map(|i| format!("w{i:03}"))).collect();
    let everyone = Arc::new(Barrier::new(LINE + WEB));
    let expected = |me: usize| -> HashMap<String, usize> {
        names.iter().enumerate().filter(|&(j, _)| j != me).map(|(_, n)| (n.clone(), MESSAGES)).collect()
    };
    // The joins each client sees: those after it.
    let later =
        |me: usize| -> Vec<String> { names[me + 1..].iter().map(|n| format!("* {n} has joined")).collect() };

    let mut threads = Vec::new();
    for (i, mut client) in line_clients.into_iter().enumerate() {
        let (others, joins, everyone) = (expected(i), later(i), everyone.clone());
        threads.push(thread::spawn(move || {
            send_burst(client.stream(), MESSAGES, "m", &client.label);
            let notices = receive_all(&mut client, &others);
            assert_eq!(notices, joins, "{}", client.label);
            everyone.wait();
        }));
    }
    for (k, mut client) in web_clients.into_iter().enumerate() {
        let i = LINE + k;
        let (others, joins, everyone) = (expected(i), later(i), everyone.clone());
        threads.push(thread::spawn(move || {
            for seq in 0..MESSAGES {
                client.send(&format!("{seq} m"));
            }
            client.flush();
            let notices = ws_receive_all(&mut client, &others);
            assert_eq!(notices, joins, "{}", client.label);
            everyone.wait();
        }));
    }
    for t in threads {
        t.join().expect("a client failed (see its panic above)");
    }
    let _ = std::fs::remove_file(&log);
    let per_client = (LINE + WEB - 1) * MESSAGES;
    println!(
        "{WEB} WebSocket + {LINE} line clients x {MESSAGES} messages: each got {per_client} in order, in {:?}",
        started.elapsed()
    );
    drop(server);
}

#[test]
fn load_chat_websocket_non_reader_is_cut_off_at_the_cap() {
    const CHATTERS: usize = 20;
    const MESSAGES: usize = 2000;
    let (server, web, log) = start_web_chat("ws-deaf");
    // A browser that never reads, with a small receive buffer so the server's buffer must hold
    // what the kernel will not.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&web.into(), WAIT).expect("connect the deaf client");
    let mut deaf = WsClient::from_stream(socket.into(), web, "deaf");
    assert_eq!(deaf.line(), chat_util::WELCOME);
    deaf.send("deaf");
    deaf.flush();
    assert_eq!(deaf.line(), "Welcome, deaf! Online: deaf");

    let chatters = join_all(server.addr, "c", CHATTERS);
    let started = Instant::now();
    // About 1 KiB per line: 40 MB for each reader, far more than the 1 MiB cap.
    let padding = "x".repeat(1000);
    let threads: Vec<_> = chatters
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let padding = padding.clone();
            thread::spawn(move || {
                let others: HashMap<String, usize> =
                    (0..CHATTERS).filter(|&j| j != i).map(|j| (format!("c{j:02}"), MESSAGES)).collect();
                let stream = client.stream();
                let label = client.label.clone();
                let writer = thread::spawn(move || send_burst(stream, MESSAGES, &padding, &label));
                let notices = receive_all(&mut client, &others);
                writer.join().expect("writer thread");
                (client, notices.iter().any(|n| n == "* deaf has left"))
            })
        })
        .collect();
    let results: Vec<(Client, bool)> =
        threads.into_iter().map(|t| t.join().expect("a chatter failed")).collect();
    let elapsed = started.elapsed();
    assert!(results.iter().all(|(_, saw)| *saw), "every chatter sees the deaf browser leave");
    // Everyone stays connected until the room has been checked.
    let mut clients: Vec<Client> = results.into_iter().map(|(c, _)| c).collect();
    let names = clients[0].who();
    assert!(!names.contains("deaf") && names.split(", ").count() == CHATTERS, "{names}");
    let log_text = std::fs::read_to_string(&log).expect("read the server's log");
    let _ = std::fs::remove_file(&log);
    assert!(
        log_text.lines().any(|l| l.contains("left name=\"deaf\"") && l.contains("hard cap")),
        "the server's log should say the deaf browser left over its write-buffer cap:\n{log_text}"
    );
    assert!(!log_text.lines().any(|l| l.contains("left name=\"c")), "a chatter was cut off:\n{log_text}");
    let peak = peak_rss_kib(server.process.child.id());
    println!(
        "deaf WebSocket client cut off at its cap; {CHATTERS} line chatters x {MESSAGES} lines of 1 KiB all \
         delivered in {elapsed:?}; server peak RSS {peak} KiB"
    );
    assert!(peak < 40 * 1024, "server peak RSS {peak} KiB: memory is not bounded");
    drop(deaf);
    clients.clear();
}

/// The web port has the same cap on connections as the line port (`--max-clients`), counted
/// apart: one over it reads a 503 and is closed; the line port still takes its own.
#[test]
fn the_web_port_is_capped_like_the_line_port() {
    let (server, web, log) = start_web_chat_with("ws-cap", &["--max-clients", "2"]);
    let (_a, _) = WsClient::join(web, "a");
    let (_b, _) = WsClient::join(web, "b");
    let mut third = common::connect(web);
    let mut refusal = String::new();
    third.read_to_string(&mut refusal).expect("a refusal, then EOF");
    assert!(refusal.starts_with("HTTP/1.1 503 "), "{refusal:?}");
    assert!(refusal.ends_with("Server full\n"), "{refusal:?}");
    let (_line, greeting) = Client::join(server.addr, "c");
    assert_eq!(greeting, "a, b, c", "the line port takes its own clients");
    let _ = std::fs::remove_file(&log);
}

/// `--idle-timeout` closes a silent browser as it closes a silent `nc` user.
#[test]
fn a_silent_browser_is_closed_at_the_idle_timeout() {
    let (_server, web, log) = start_web_chat_with("ws-idle", &["--idle-timeout", "1"]);
    let (client, _) = WsClient::join(web, "quiet");
    // Nothing more is sent; the server closes (the read timeout, WAIT, bounds the wait).
    let mut reader = client.reader;
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the idle browser was not closed: {e}"),
    }
    let _ = std::fs::remove_file(&log);
}
