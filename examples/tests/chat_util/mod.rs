//! What the chat-server process tests share: a started server, and a line-oriented blocking
//! client whose every read is bounded (the socket's read timeout, [`WAIT`]) and fails with the
//! client's name and what it was waiting for.

#![allow(dead_code)] // Each test file uses a different part.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{command, connect, line_reader, start_listening, ChildGuard, Listening, WAIT};

/// The binary under test.
pub const CHAT: &str = env!("CARGO_BIN_EXE_chat-server");

/// The first line every client gets.
pub const WELCOME: &str = "Welcome! What's your name?";

/// Starts `chat-server --listen 127.0.0.1:0` with `extra` arguments.
pub fn start_chat(extra: &[&str]) -> Listening {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    start_listening(CHAT, &args)
}

/// Parses `<NAME> REST` into the sender's name and the text.
pub fn parse_message(line: &str) -> Option<(&str, &str)> {
    line.strip_prefix('<')?.split_once("> ")
}

/// Sends `count` lines `"{seq} {padding}"` as fast as the socket takes them.
pub fn send_burst(stream: TcpStream, count: usize, padding: &str, label: &str) {
    let mut out = BufWriter::with_capacity(64 * 1024, stream);
    for seq in 0..count {
        write!(out, "{seq} {padding}\r\n").unwrap_or_else(|e| panic!("{label}: write failed: {e}"));
    }
    out.flush().unwrap_or_else(|e| panic!("{label}: write failed: {e}"));
}

/// Joins `count` clients named `{prefix}NN` one after another, so that when the last has its
/// greeting every one of them is in the room.
pub fn join_all(addr: SocketAddr, prefix: &str, count: usize) -> Vec<Client> {
    (0..count).map(|i| Client::join(addr, &format!("{prefix}{i:02}")).0).collect()
}

/// Reads `client`'s lines until every sender in `expected` (name → message count) has
/// delivered all its messages, checking that each sender's sequence numbers arrive in order
/// with none missing or repeated. Lines starting with `* ` (joins and leaves) are returned.
pub fn receive_all(client: &mut Client, expected: &HashMap<String, usize>) -> Vec<String> {
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

/// Starts `chat-server --listen 127.0.0.1:0` with `extra` arguments and its log (stderr, at
/// the default `info` level) going to a fresh file, whose path is returned with it.
pub fn start_chat_logged(extra: &[&str], tag: &str) -> (Listening, PathBuf) {
    let log = std::env::temp_dir().join(format!("torsion-chat-{tag}-{}.log", std::process::id()));
    let file = File::create(&log).expect("create the log file");
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let child = command(CHAT, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {CHAT}: {e}"));
    let mut process = ChildGuard { child };
    let stdout = line_reader(process.child.stdout.take().unwrap());
    let first = stdout.recv_timeout(WAIT).unwrap_or_else(|e| panic!("no first line from chat-server ({e})"));
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("first line must be `listening on <addr>`, got {first:?}"));
    (Listening { process, addr, stdout }, log)
}

/// The server's peak resident set (`VmHWM`) in KiB, from `/proc/<pid>/status`.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM value")
}

/// A blocking chat client. Lines are sent with `\r\n` (or `\n` in nc style) and must arrive
/// ending in `\r\n`.
pub struct Client {
    /// Who this is, for failure messages.
    pub label: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// End lines with a bare `\n`, as `nc` does.
    pub bare_newlines: bool,
}

impl Client {
    /// Connects, without reading anything.
    pub fn connect_raw(addr: SocketAddr, label: &str) -> Client {
        Client::from_stream(connect(addr), label)
    }

    /// Wraps a connected stream (its timeouts are set to [`WAIT`]).
    pub fn from_stream(stream: TcpStream, label: &str) -> Client {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let writer = stream.try_clone().expect("clone the stream");
        Client {
            label: label.to_owned(),
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            bare_newlines: false,
        }
    }

    /// Connects and reads the welcome line.
    pub fn connect(addr: SocketAddr, label: &str) -> Client {
        let mut client = Client::connect_raw(addr, label);
        client.expect(WELCOME);
        client
    }

    /// Connects, logs in as `name` and checks the greeting; returns the `Online: …` list it
    /// was greeted with.
    pub fn join(addr: SocketAddr, name: &str) -> (Client, String) {
        let mut client = Client::connect(addr, name);
        client.send(name);
        let line = client.line();
        let prefix = format!("Welcome, {name}! Online: ");
        let online = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{name}: expected {prefix:?}…, got {line:?}"))
            .to_owned();
        (client, online)
    }

    /// Sends `line` and its line ending.
    pub fn send(&mut self, line: &str) {
        let ending = if self.bare_newlines { "\n" } else { "\r\n" };
        self.send_raw(format!("{line}{ending}").as_bytes());
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap_or_else(|e| panic!("{}: write failed: {e}", self.label));
    }

    /// A second handle on the socket, for writing from another thread or shutting it down.
    pub fn stream(&self) -> TcpStream {
        self.writer.try_clone().expect("clone the stream")
    }

    /// The next line as bytes, without its `\r\n`; `None` at EOF. Fails on a timeout, a reset,
    /// or a line not ending in `\r\n`.
    pub fn line_bytes(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(
                    line.ends_with(b"\r\n"),
                    "{}: a line not ending in \\r\\n: {:?}",
                    self.label,
                    String::from_utf8_lossy(&line)
                );
                line.truncate(line.len() - 2);
                Some(line)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{}: no line from the server within {WAIT:?}", self.label)
            }
            Err(e) => panic!("{}: read failed: {e}", self.label),
        }
    }

    /// The next line (UTF-8); fails at EOF.
    pub fn line(&mut self) -> String {
        let bytes =
            self.line_bytes().unwrap_or_else(|| panic!("{}: EOF while waiting for a line", self.label));
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: a line that is not UTF-8: {e}", self.label))
    }

    /// The next line must be `expected`.
    pub fn expect(&mut self, expected: &str) {
        let got = self.line();
        assert_eq!(got, expected, "{}: unexpected line", self.label);
    }

    /// Sends `/who` and returns the names in the reply, which must be the next line.
    pub fn who(&mut self) -> String {
        self.send("/who");
        let line = self.line();
        line.strip_prefix("Online: ")
            .unwrap_or_else(|| panic!("{}: expected `Online: …`, got {line:?}", self.label))
            .to_owned()
    }

    /// The server closes: nothing more, then EOF.
    pub fn expect_eof(&mut self) {
        if let Some(line) = self.line_bytes() {
            panic!("{}: expected EOF, got {:?}", self.label, String::from_utf8_lossy(&line));
        }
    }

    /// Reads until EOF or a reset, discarding; returns the bytes read and whether it ended in
    /// EOF (true) or a reset (false). Fails on a timeout.
    pub fn drain_to_close(&mut self) -> (u64, bool) {
        let mut total = 0;
        let mut buf = vec![0; 64 * 1024];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return (total, true),
                Ok(n) => total += n as u64,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("{}: not closed by the server within {WAIT:?}", self.label)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return (total, false),
            }
        }
    }

    /// Changes the read timeout (to check that something happens within a shorter bound).
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.writer.set_read_timeout(Some(timeout)).unwrap();
    }

    /// Shuts both directions down (the peer sees EOF; blocked readers and writers wake).
    pub fn shutdown(&self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}
