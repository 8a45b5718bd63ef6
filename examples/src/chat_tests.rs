//! The chat room in memory (the test harness).

use super::*;
use torsion_reactor::testing::Harness;

fn lines(h: &mut Harness, id: ConnId) -> Vec<String> {
    let written = h.take_written(id);
    let text = String::from_utf8(written).expect("the server sends UTF-8");
    assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
    text.split_terminator("\r\n").map(str::to_owned).collect()
}

#[test]
fn names_are_checked() {
    assert!(is_valid_name("a"));
    assert!(is_valid_name("Zoë_2-x"));
    assert!(is_valid_name(&"x".repeat(32)));
    assert!(!is_valid_name(&"x".repeat(33)));
    assert!(!is_valid_name(""));
    assert!(!is_valid_name("a b"));
    assert!(!is_valid_name("a!"));
}

#[test]
fn a_short_session_in_memory() {
    let mut server = ChatServer::new(ChatConfig::default());
    let room = server.room();
    let mut h = Harness::new();
    let a = h.accept(&mut server).unwrap();
    let b = h.accept(&mut server).unwrap();
    assert_eq!(lines(&mut h, a), [WELCOME]);
    assert_eq!(lines(&mut h, b), [WELCOME]);
    h.feed(a, b"alice\n");
    assert_eq!(lines(&mut h, a), ["Welcome, alice! Online: alice"]);
    h.feed(b, b"alice\r\nbad name\r\nbob\r\n");
    assert_eq!(lines(&mut h, b), [NAME_TAKEN, INVALID_NAME, "Welcome, bob! Online: alice, bob"]);
    assert_eq!(lines(&mut h, a), ["* bob has joined"]);
    h.feed(a, b"hi\n\n\xff\n");
    assert_eq!(lines(&mut h, b), ["<alice> hi"]);
    assert_eq!(lines(&mut h, a), [INVALID_UTF8]);
    assert_eq!(room.names(), ["alice", "bob"]);
    h.feed_eof(a);
    assert_eq!(lines(&mut h, b), ["* alice has left"]);
    assert_eq!(room.names(), ["bob"]);
}

/// Logs `name` in on a fresh connection and discards its greeting and the others' join
/// notices.
fn join(h: &mut Harness, server: &mut ChatServer, name: &str) -> ConnId {
    let id = h.accept(server).unwrap();
    h.feed(id, format!("{name}\n").as_bytes());
    lines(h, id);
    id
}

#[test]
fn a_congested_member_holds_talkers_back_until_it_drains() {
    let mut server = ChatServer::new(ChatConfig::default());
    let room = server.room();
    let mut h = Harness::new();
    let talker = join(&mut h, &mut server, "talker");
    let reader = join(&mut h, &mut server, "reader");
    lines(&mut h, talker);
    h.set_peer_window(reader, Some(0)); // reads nothing for now
    let line = format!("{}\n", "x".repeat(1000));
    for _ in 0..100 {
        h.feed(talker, line.as_bytes());
    }
    assert_eq!(room.held_back(), 1, "the talker is held back");
    // The reader catches up: the talker is released, and nothing was lost.
    h.set_peer_window(reader, None);
    let got = lines(&mut h, reader);
    assert_eq!(room.held_back(), 0);
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|l| *l == format!("<talker> {}", "x".repeat(1000))));
    assert!(h.is_open(reader));
}

#[test]
fn a_member_that_never_reads_is_cut_off_at_the_cap_after_the_stall_limit() {
    let mut server = ChatServer::new(ChatConfig::default());
    let room = server.room();
    let mut h = Harness::new();
    let talker = join(&mut h, &mut server, "talker");
    let deaf = join(&mut h, &mut server, "deaf");
    let other = join(&mut h, &mut server, "other");
    h.set_peer_window(deaf, Some(0));
    lines(&mut h, talker);
    lines(&mut h, deaf);
    let line = format!("{}\n", "y".repeat(1000));
    h.feed(talker, line.repeat(100).as_bytes());
    assert_eq!(room.held_back(), 1);
    h.advance(DEFAULT_MAX_STALL);
    assert_eq!(room.held_back(), 0, "the room stops waiting for the deaf member");
    // Now it fills to its cap and is cut off; the other member gets every line.
    let mut received = lines(&mut h, other).len();
    for _ in 0..20 {
        h.feed(talker, line.repeat(100).as_bytes());
        received += lines(&mut h, other).iter().filter(|l| l.starts_with("<talker> ")).count();
    }
    assert_eq!(h.disconnect_reason(deaf), Some(DisconnectReason::BufferOverflow));
    assert_eq!(received, 2100);
    assert_eq!(room.names(), ["other", "talker"]);
    assert_eq!(lines(&mut h, talker), ["* deaf has left"]);
}

#[test]
fn control_characters_are_replaced_and_an_empty_me_is_an_error() {
    let mut server = ChatServer::new(ChatConfig::default());
    let mut h = Harness::new();
    let a = join(&mut h, &mut server, "alice");
    let b = join(&mut h, &mut server, "bob");
    lines(&mut h, a);
    // ANSI escapes, a bell, DEL and a C1 control (U+009B, CSI) never reach another terminal;
    // tabs do.
    h.feed(a, "hello \x1b[2J\x1b[31m\x07\x7f\u{9b}31m\tend\n".as_bytes());
    assert_eq!(lines(&mut h, b), ["<alice> hello \u{FFFD}[2J\u{FFFD}[31m\u{FFFD}\u{FFFD}\u{FFFD}31m\tend"]);
    h.feed(a, b"/me \x1b[5m blinks\n");
    assert_eq!(lines(&mut h, b), ["* alice \u{FFFD}[5m blinks"]);
    // `/me` with nothing (or only spaces) after it: an error line, nothing broadcast.
    h.feed(a, b"/me\n/me   \n");
    assert_eq!(lines(&mut h, a), [ME_USAGE, ME_USAGE]);
    assert!(lines(&mut h, b).is_empty());
    assert_eq!(sanitize("plain"), "plain");
}
