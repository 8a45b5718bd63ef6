//! The real `chat-server` driven over loopback by scripted clients, with exact lines: a
//! three-client session covering every message of the protocol (one client types like `nc`,
//! with bare `\n`), the line limit, `Server full`, and the command-line conventions (`--help`,
//! exit code 2 with one line on stderr, exit 0 on SIGINT).

mod chat_util;
mod common;

use std::net::TcpListener;

use chat_util::{start_chat, Client, CHAT};
use common::{command, run_bounded, text};

const TAKEN: &str = "Name taken, please choose another.";
const INVALID: &str = "Invalid name, please choose another.";

#[test]
fn three_clients_exercise_every_message() {
    let mut server = start_chat(&[]);
    let addr = server.addr;

    // alice logs in first.
    let mut alice = Client::connect(addr, "alice");
    alice.send("alice");
    alice.expect("Welcome, alice! Online: alice");

    // bob tries a taken name and invalid ones (spaces, empty, 33 characters, punctuation).
    let mut bob = Client::connect(addr, "bob");
    for attempt in ["alice", "bob smith", "", &"b".repeat(33), "bob!"] {
        bob.send(attempt);
        let expected = if attempt == "alice" { TAKEN } else { INVALID };
        bob.expect(expected);
    }
    bob.send("bob");
    bob.expect("Welcome, bob! Online: alice, bob");
    alice.expect("* bob has joined");

    // carol types like nc: bare `\n`. Invalid UTF-8 before a name is an error, not a name.
    let mut carol = Client::connect(addr, "carol");
    carol.bare_newlines = true;
    carol.send_raw(b"\xff\xfe\n");
    carol.expect("Invalid UTF-8, line ignored.");
    carol.send("carol");
    carol.expect("Welcome, carol! Online: alice, bob, carol");
    alice.expect("* carol has joined");
    bob.expect("* carol has joined");

    // A message goes to everyone else and is not echoed: the sender's next line is /who's.
    alice.send("hello everyone");
    bob.expect("<alice> hello everyone");
    carol.expect("<alice> hello everyone");
    assert_eq!(alice.who(), "alice, bob, carol");
    // nc-style lines are relayed the same way, and empty lines are ignored.
    carol.send("");
    carol.send("hi from nc");
    alice.expect("<carol> hi from nc");
    bob.expect("<carol> hi from nc");
    // A `\r` before the `\n` is part of the line ending, not of the text.
    alice.send_raw(b"crlf\r\n");
    bob.expect("<alice> crlf");
    carol.expect("<alice> crlf");

    // /me.
    bob.send("/me waves");
    alice.expect("* bob waves");
    carol.expect("* bob waves");
    assert_eq!(bob.who(), "alice, bob, carol");

    // /nick: taken, invalid, then accepted.
    carol.send("/nick bob");
    carol.expect(TAKEN);
    carol.send("/nick c@rol");
    carol.expect(INVALID);
    carol.send("/nick");
    carol.expect(INVALID);
    carol.send("/nick carla");
    carol.expect("You are now carla");
    alice.expect("* carol is now carla");
    bob.expect("* carol is now carla");
    assert_eq!(bob.who(), "alice, bob, carla");

    // Unknown commands name only the command.
    alice.send("/dance");
    alice.expect("Unknown command: /dance");
    alice.send("/dance with me");
    alice.expect("Unknown command: /dance");

    // Invalid UTF-8 from a named client: an error to it, nothing to the others (their next
    // line is the one after).
    bob.send_raw(b"caf\xe9 \xff\r\n");
    bob.expect("Invalid UTF-8, line ignored.");
    bob.send("still here");
    alice.expect("<bob> still here");
    carol.expect("<bob> still here");
    // Valid UTF-8 beyond ASCII is relayed as is.
    bob.send("café ☕");
    alice.expect("<bob> café ☕");
    carol.expect("<bob> café ☕");

    // /quit: Bye!, a clean close, and the others see carla leave.
    carol.send("/quit");
    carol.expect("Bye!");
    carol.expect_eof();
    drop(carol); // Our close ends the server's lingering wait for it.
    alice.expect("* carla has left");
    bob.expect("* carla has left");

    // bob just disconnects: the others see him leave all the same.
    drop(bob);
    alice.expect("* bob has left");

    // dave watches alice: a line of exactly 4096 bytes is relayed; 4097 is an error, then a
    // close, and dave sees alice leave.
    let (mut dave, online) = Client::join(addr, "dave");
    assert_eq!(online, "alice, dave");
    alice.expect("* dave has joined");
    let longest = "x".repeat(4096);
    alice.send(&longest);
    dave.expect(&format!("<alice> {longest}"));
    alice.send(&"y".repeat(4097));
    alice.expect("Line too long (max 4096 bytes), goodbye.");
    alice.expect_eof();
    drop(alice);
    dave.expect("* alice has left");
    assert_eq!(dave.who(), "dave");

    // SIGINT: dave is told the server is going away, then gets EOF; the server exits 0.
    server.process.interrupt();
    dave.expect("* Server shutting down");
    dave.expect_eof();
    drop(dave);
    let status = server.process.wait_exit("chat-server after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn over_max_clients_reads_server_full_then_eof() {
    let server = start_chat(&["--max-clients", "2"]);
    let (mut a, _) = Client::join(server.addr, "a");
    let _b = Client::connect(server.addr, "b");
    let mut c = Client::connect_raw(server.addr, "c");
    c.expect("Server full");
    c.expect_eof();
    // The full server still serves its clients.
    assert_eq!(a.who(), "a");
}

#[test]
fn help_names_every_option() {
    let out = run_bounded(command(CHAT, &["--help"]), "chat-server --help");
    assert_eq!(out.status.code(), Some(0), "{}", out.status);
    let help = text(&out.stdout);
    for option in ["--listen", "--max-clients", "--idle-timeout"] {
        assert!(help.contains(option), "--help should mention {option}: {help}");
    }
}

#[test]
fn startup_errors_are_one_line_and_exit_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    for (args, needle) in [
        (vec!["--listen", "not an address"], "not an address"),
        (vec!["--listen", taken_addr.as_str()], "in use"),
    ] {
        let out = run_bounded(command(CHAT, &args), "chat-server with a bad address");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: exit status {}; stderr: {stderr:?}", out.status);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: exactly one line on stderr: {stderr:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", text(&out.stdout));
    }
}
