//! The real `chat-server` on a Unix socket (`--listen unix:PATH`): two clients join, talk both
//! ways, see each other leave; SIGINT says goodbye to whoever is left, exits 0 and removes the
//! socket file.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use common::{connect_unix, start_listening_unix, TempSocket};

const CHAT: &str = env!("CARGO_BIN_EXE_chat-server");

/// A blocking line client on a Unix socket; every read is bounded by the socket's timeout.
struct Client {
    name: &'static str,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(socket: &TempSocket, name: &'static str) -> Client {
        let stream = connect_unix(&socket.path);
        let writer = stream.try_clone().unwrap();
        let mut client = Client { name, reader: BufReader::new(stream), writer };
        client.expect("Welcome! What's your name?");
        client
    }

    fn send(&mut self, line: &str) {
        writeln!(self.writer, "{line}").unwrap_or_else(|e| panic!("{}: write failed: {e}", self.name));
    }

    /// The next line without its `\r\n`; `None` at EOF.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n =
            self.reader.read_line(&mut line).unwrap_or_else(|e| panic!("{}: read failed: {e}", self.name));
        if n == 0 {
            return None;
        }
        assert!(line.ends_with("\r\n"), "{}: a line not ending in \\r\\n: {line:?}", self.name);
        line.truncate(line.len() - 2);
        Some(line)
    }

    fn expect(&mut self, expected: &str) {
        let got = self.line().unwrap_or_else(|| panic!("{}: EOF while waiting for {expected:?}", self.name));
        assert_eq!(got, expected, "{}: unexpected line", self.name);
    }

    fn expect_eof(&mut self) {
        if let Some(line) = self.line() {
            panic!("{}: expected EOF, got {line:?}", self.name);
        }
    }
}

#[test]
fn chat_over_a_unix_socket_with_two_clients() {
    let socket = TempSocket::new("chat");
    let mut server = start_listening_unix(CHAT, &["--listen", &socket.endpoint()], &socket.path);

    let mut alice = Client::connect(&socket, "alice");
    alice.send("alice");
    alice.expect("Welcome, alice! Online: alice");
    let mut bob = Client::connect(&socket, "bob");
    bob.send("bob");
    bob.expect("Welcome, bob! Online: alice, bob");
    alice.expect("* bob has joined");

    alice.send("hi bob");
    bob.expect("<alice> hi bob");
    bob.send("hello alice");
    alice.expect("<bob> hello alice");
    bob.send("/me waves");
    alice.expect("* bob waves");
    bob.send("/quit");
    bob.expect("Bye!");
    bob.expect_eof();
    drop(bob); // Our close ends the server's lingering close of bob's connection at once.
    alice.expect("* bob has left");
    alice.send("/who");
    alice.expect("Online: alice");

    // SIGINT: whoever is left hears why, then EOF; the server exits 0 and removes its file.
    server.process.interrupt();
    alice.expect("* Server shutting down");
    alice.expect_eof();
    drop(alice);
    let status = server.process.wait_exit("chat-server on a Unix socket after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!socket.path.exists(), "the socket file is removed on a clean stop");
}
