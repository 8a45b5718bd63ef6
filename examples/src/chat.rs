//! A chat room (Twisted's classic `LineReceiver` + factory demo): the protocol behind the
//! `chat-server` binary, public so that tests can run it in-process.
//!
//! # The idea: shared state lives in the factory
//! Every connection gets its own protocol, a [`LineReceiver`] around a [`Chatter`]; the
//! [`Room`] (who is online) lives in the factory, [`ChatServer`], and each protocol holds a
//! clone of it. The room stores [`ConnId`]s, never transports: a broadcast looks each member
//! up with `cx.transport_for(id)` and writes one shared [`Bytes`] to it (no copy per
//! recipient). Sharing the room as `Rc<RefCell<_>>` is safe because of the reactor's
//! no-re-entrancy rule: a write to another connection never runs that connection's callbacks,
//! so the room is never borrowed twice.
//!
//! # The protocol
//! Lines end in `\n` or `\r\n` (so `nc`, `telnet` and `socat` all work); the server sends
//! `\r\n`. Text is UTF-8; a line that is not gets `Invalid UTF-8, line ignored.`. A line over
//! 4096 bytes gets `Line too long (max 4096 bytes), goodbye.` and the connection is closed.
//!
//! ```text
//! server: Welcome! What's your name?
//! client: alice                           1–32 letters, digits, `_`, `-` (surrounding spaces ignored)
//! server: Welcome, alice! Online: alice, bob       others: * alice has joined
//! client: hello                           others: <alice> hello      (empty lines are ignored)
//! client: /who                            server: Online: alice, bob
//! client: /nick al                        server: You are now al     others: * alice is now al
//! client: /me waves                       others: * al waves
//! client: /dance                          server: Unknown command: /dance
//! client: /quit                           server: Bye!  (then a clean close; others: * al has left)
//! ```
//! A taken name gets `Name taken, please choose another.`, an invalid one `Invalid name, please
//! choose another.`, at login and for `/nick` alike. Any disconnect of a named client, of any
//! kind, tells the others `* NAME has left`.
//!
//! # Limits: one client cannot hurt the rest
//! * Each client's write buffer is capped (1 MiB by default): a client that does not read
//!   fills it and is aborted with [`DisconnectReason::BufferOverflow`] when it goes over; the others see it leave and lose nothing. Before that, its buffer
//!   crossing the high watermark pauses reading *its* input, so it cannot talk while not
//!   listening.
//! * An idle timeout (off by default) closes connections that send nothing for that long
//!   ([`TimeoutProtocol`]).
//! * At most 10,000 connections by default ([`LimitConnectionsFactory`]); one more reads
//!   `Server full` and is closed.
//!
//! ```no_run
//! use torsion_examples::chat::{ChatConfig, ChatServer};
//! use torsion_reactor::Reactor;
//!
//! let mut reactor = Reactor::new().unwrap();
//! let server = ChatServer::new(ChatConfig::default());
//! let room = server.room();
//! let port = reactor.listen_tcp("127.0.0.1:8000".parse().unwrap(), server).unwrap();
//! println!("listening on {}", port.local_addr());
//! reactor.run().unwrap();
//! println!("online at the end: {:?}", room.names());
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use torsion_protocols::framing::{LineCtx, LineDecoder, LineEndings, LineHandler, LineReceiver};
use torsion_protocols::policies::{LimitConnectionsFactory, TimeoutProtocol};
use torsion_reactor::{ConnId, Ctx, DisconnectReason, Factory, Protocol};
use tracing::{debug, info};

/// The longest line a client may send, in bytes, not counting the line ending.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 4096;

/// The cap on a client's write buffer: 1 MiB. Over it, the client is disconnected.
pub const DEFAULT_MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// The most connections served at once; one more reads `Server full` and is closed.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// The first line every client gets.
pub const WELCOME: &str = "Welcome! What's your name?";

/// What a refused client reads before the close, when the server is full.
pub const SERVER_FULL: &str = "Server full";

const NAME_TAKEN: &str = "Name taken, please choose another.";
const INVALID_NAME: &str = "Invalid name, please choose another.";
const INVALID_UTF8: &str = "Invalid UTF-8, line ignored.";

/// The chat server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatConfig {
    /// The longest line accepted, in bytes ([`DEFAULT_MAX_LINE_LENGTH`]).
    pub max_line_length: usize,
    /// The cap on each client's write buffer, in bytes ([`DEFAULT_MAX_WRITE_BUFFER`]).
    pub max_write_buffer: usize,
    /// Close connections that send nothing for this long (`None`, the default: never).
    pub idle_timeout: Option<Duration>,
    /// The most connections at once ([`DEFAULT_MAX_CLIENTS`]).
    pub max_clients: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_write_buffer: DEFAULT_MAX_WRITE_BUFFER,
            idle_timeout: None,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// Who is online: names (kept sorted) and their connections. Cheap to clone (it is shared);
/// single-threaded like the reactor.
#[derive(Clone, Default)]
pub struct Room {
    members: Rc<RefCell<BTreeMap<String, ConnId>>>,
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room").field("names", &self.names()).finish()
    }
}

impl Room {
    /// The names online, sorted.
    pub fn names(&self) -> Vec<String> {
        self.members.borrow().keys().cloned().collect()
    }

    /// How many clients are online (named; clients still choosing a name are not counted).
    pub fn len(&self) -> usize {
        self.members.borrow().len()
    }

    /// True when nobody is online.
    pub fn is_empty(&self) -> bool {
        self.members.borrow().is_empty()
    }

    /// `Online: a, b, c`.
    fn online_line(&self) -> String {
        format!("Online: {}", self.names().join(", "))
    }

    fn is_taken(&self, name: &str) -> bool {
        self.members.borrow().contains_key(name)
    }

    fn join(&self, name: &str, id: ConnId) {
        self.members.borrow_mut().insert(name.to_owned(), id);
    }

    fn leave(&self, name: &str) {
        self.members.borrow_mut().remove(name);
    }

    /// Sends `line` (plus `\r\n`) to every member but `except`. The line is built once and
    /// shared by every recipient's write buffer. A member whose buffer goes over its cap is
    /// aborted by its transport; its `connection_lost` (run after this callback) takes it out
    /// of the room.
    fn broadcast(&self, cx: &mut Ctx<'_>, except: ConnId, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let bytes = Bytes::from(bytes);
        for &id in self.members.borrow().values() {
            if id == except {
                continue;
            }
            if let Some(mut transport) = cx.transport_for(id) {
                transport.write_bytes(bytes.clone());
            }
        }
    }
}

/// Whether `name` is acceptable: 1 to [`MAX_NAME_CHARS`] characters, each a letter, a digit,
/// `_` or `-`.
pub fn is_valid_name(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&chars) && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// The chat server's [`Factory`]: holds the [`Room`] and builds one protocol per connection
/// (a [`LineReceiver`] around a [`Chatter`], inside a [`TimeoutProtocol`] when an idle timeout
/// is set), behind a [`LimitConnectionsFactory`] that turns away clients over the limit.
pub struct ChatServer {
    limited: LimitConnectionsFactory<Builder>,
    room: Room,
}

impl fmt::Debug for ChatServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatServer").field("room", &self.room).field("limits", &self.limited).finish()
    }
}

impl ChatServer {
    /// A server with an empty room.
    pub fn new(config: ChatConfig) -> ChatServer {
        let room = Room::default();
        let mut limited =
            LimitConnectionsFactory::new(Builder { room: room.clone(), config: config.clone() });
        limited
            .set_max_connections(Some(config.max_clients))
            // Every client may come from one address (a NAT, or a test on 127.0.0.1).
            .set_max_per_peer(None)
            .set_refusal_message(Some(Bytes::from(format!("{SERVER_FULL}\r\n"))));
        ChatServer { limited, room }
    }

    /// A handle on the room, shared with every protocol.
    pub fn room(&self) -> Room {
        self.room.clone()
    }
}

impl Factory for ChatServer {
    fn build_protocol(&mut self, peer: SocketAddr) -> Option<Box<dyn Protocol>> {
        self.limited.build_protocol(peer)
    }
}

/// Builds the protocol of one connection.
#[derive(Debug)]
struct Builder {
    room: Room,
    config: ChatConfig,
}

impl Factory for Builder {
    fn build_protocol(&mut self, peer: SocketAddr) -> Option<Box<dyn Protocol>> {
        debug!(%peer, "client connected");
        let chatter =
            Chatter { room: self.room.clone(), name: None, max_write_buffer: self.config.max_write_buffer };
        // `\n` or `\r\n` ends a line (a `\r` before the `\n` is dropped); `\r\n` is sent.
        let decoder = LineDecoder::new()
            .with_max_length(self.config.max_line_length)
            .with_line_endings(LineEndings::Lenient);
        let receiver = LineReceiver::with_decoder(chatter, decoder);
        Some(match self.config.idle_timeout {
            Some(idle) => Box::new(TimeoutProtocol::new(receiver, Some(idle))),
            None => Box::new(receiver),
        })
    }
}

/// One client's side of the chat: asks for a name, then relays lines and runs commands. Its
/// [`LineReceiver`] does the framing; the [`Room`] is shared with every other `Chatter`.
#[derive(Debug)]
pub struct Chatter {
    room: Room,
    /// `None` until a name is accepted.
    name: Option<String>,
    max_write_buffer: usize,
}

impl Chatter {
    /// The first lines: a name, asked again until one is free and valid.
    fn login(&mut self, lx: &mut LineCtx<'_, '_>, name: &str) {
        let name = name.trim();
        if let Err(error) = self.check_name(name) {
            send(lx, error);
            return;
        }
        let id = lx.conn_id();
        self.room.join(name, id);
        self.name = Some(name.to_owned());
        info!(name, "joined");
        let welcome = format!("Welcome, {name}! {}", self.room.online_line());
        send(lx, &welcome);
        self.room.broadcast(lx, id, &format!("* {name} has joined"));
    }

    /// The error line for an unacceptable name.
    fn check_name(&self, name: &str) -> Result<(), &'static str> {
        if !is_valid_name(name) {
            Err(INVALID_NAME)
        } else if self.room.is_taken(name) {
            Err(NAME_TAKEN)
        } else {
            Ok(())
        }
    }

    /// A line from a named client.
    fn chat(&mut self, lx: &mut LineCtx<'_, '_>, name: &str, text: &str) {
        let id = lx.conn_id();
        if !text.starts_with('/') {
            if !text.is_empty() {
                self.room.broadcast(lx, id, &format!("<{name}> {text}"));
            }
            return;
        }
        let (command, argument) = text.split_once(' ').unwrap_or((text, ""));
        match command {
            "/who" => send(lx, &self.room.online_line()),
            "/nick" => self.rename(lx, name, argument.trim()),
            "/me" if argument.is_empty() => self.room.broadcast(lx, id, &format!("* {name}")),
            "/me" => self.room.broadcast(lx, id, &format!("* {name} {argument}")),
            "/quit" => {
                send(lx, "Bye!");
                lx.lose_connection();
            }
            _ => send(lx, &format!("Unknown command: {command}")),
        }
    }

    /// `/nick NEW`.
    fn rename(&mut self, lx: &mut LineCtx<'_, '_>, old: &str, new: &str) {
        if new == old {
            send(lx, &format!("You are now {new}"));
            return;
        }
        if let Err(error) = self.check_name(new) {
            send(lx, error);
            return;
        }
        let id = lx.conn_id();
        self.room.leave(old);
        self.room.join(new, id);
        self.name = Some(new.to_owned());
        info!(old, new, "renamed");
        send(lx, &format!("You are now {new}"));
        self.room.broadcast(lx, id, &format!("* {old} is now {new}"));
    }
}

/// Sends one line to this client.
fn send(lx: &mut LineCtx<'_, '_>, line: &str) {
    lx.send_line(line.as_bytes());
}

impl LineHandler for Chatter {
    fn connection_made(&mut self, lx: &mut LineCtx<'_, '_>) {
        lx.transport().set_max_write_buffer(Some(self.max_write_buffer));
        send(lx, WELCOME);
    }

    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            send(lx, INVALID_UTF8);
            return;
        };
        match self.name.clone() {
            None => self.login(lx, text),
            Some(name) => self.chat(lx, &name, text),
        }
    }

    fn line_length_exceeded(&mut self, lx: &mut LineCtx<'_, '_>) {
        let max = lx.max_length();
        send(lx, &format!("Line too long (max {max} bytes), goodbye."));
        lx.lose_connection_with(DisconnectReason::LimitExceeded(format!("line longer than {max} bytes")));
    }

    fn connection_lost(&mut self, lx: &mut LineCtx<'_, '_>, reason: DisconnectReason) {
        let Some(name) = self.name.take() else {
            debug!(%reason, "client left before choosing a name");
            return;
        };
        info!(name, %reason, "left");
        self.room.leave(&name);
        let id = lx.conn_id();
        self.room.broadcast(lx, id, &format!("* {name} has left"));
    }
}

#[cfg(test)]
mod tests {
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
}
