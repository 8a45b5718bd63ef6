//! A chat room (Twisted's classic `LineReceiver` + factory demo): the protocol behind the
//! `chat-server` binary, public so that tests can run it in-process.
//!
//! # The idea: shared state lives in the factory
//! Every connection gets its own protocol, a [`LineReceiver`] around a [`Chatter`] (in a thin
//! [`Member`] wrapper that tells the room when the connection's write buffer drains); the
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
//! # Fan-out flow control: slow readers lose nothing, non-readers are cut off
//! One line in becomes a line out to every member, so talkers can produce faster than a
//! reader takes. The room applies backpressure, Twisted's producer/consumer across
//! connections:
//! * When a broadcast leaves a member's write buffer above its high watermark (64 KiB), that
//!   member is *congested*, and every talker is held back: the reactor stops reading the
//!   talker's socket (lines it already sent in that read are still relayed), and TCP pushes
//!   back on it. When every congested member has drained to its low watermark (16 KiB), the
//!   talkers are resumed. A client that reads slowly but catches up (drains to its low
//!   watermark within a second) is never cut off and misses nothing.
//! * A client that does not read must not stall the room: once it has been congested for
//!   [`DEFAULT_MAX_STALL`] (1 s) without catching up, the room stops waiting for it, for good. Its buffer then
//!   fills to the cap (1 MiB by default) and the transport aborts it with
//!   [`DisconnectReason::BufferOverflow`]; the others see it leave and lose nothing. Its own
//!   input was paused as soon as its buffer crossed the high watermark, so it cannot talk
//!   while not listening.
//! * Input is read in small slices: [`tune_reactor`] caps each connection's reads at 16 KiB
//!   per turn of the loop, which bounds what a held talker still relays, and what one turn
//!   of fan-out adds to any recipient's buffer. With the reactor's default (up to 16 reads of
//!   256 KiB per turn), a server that fell behind would read megabytes from each talker in
//!   one turn and push every recipient over its cap at once.
//!
//! # Other limits
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
//! torsion_examples::chat::tune_reactor(&mut reactor);
//! let server = ChatServer::new(ChatConfig::default());
//! let room = server.room();
//! let port = reactor.listen_tcp("127.0.0.1:8000".parse().unwrap(), server).unwrap();
//! println!("listening on {}", port.local_addr());
//! reactor.run().unwrap();
//! println!("online at the end: {:?}", room.names());
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use torsion_protocols::framing::{LineCtx, LineDecoder, LineEndings, LineHandler, LineReceiver};
use torsion_protocols::policies::{LimitConnectionsFactory, TimeoutProtocol};
use torsion_protocols::websocket::{encode_frame, Opcode};
use torsion_reactor::{Address, ConnId, Ctx, DisconnectReason, Factory, LoopCtx, Protocol, Reactor, Wrapper};
use tracing::{debug, info, warn};

/// The longest line a client may send, in bytes, not counting the line ending.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 4096;

/// The cap on a client's write buffer: 1 MiB. Over it, the client is disconnected.
pub const DEFAULT_MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// The most connections served at once; one more reads `Server full` and is closed.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// The most bytes read from one connection per turn of the loop (see [`tune_reactor`]).
pub const READ_PER_TURN: usize = 16 * 1024;

/// How long a client whose write buffer is above its high watermark may hold the talkers
/// back before the room stops waiting for it: 1 s.
pub const DEFAULT_MAX_STALL: Duration = Duration::from_secs(1);

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// The first line every client gets.
pub const WELCOME: &str = "Welcome! What's your name?";

/// What a refused client reads before the close, when the server is full.
pub const SERVER_FULL: &str = "Server full";

const NAME_TAKEN: &str = "Name taken, please choose another.";
const INVALID_NAME: &str = "Invalid name, please choose another.";
const INVALID_UTF8: &str = "Invalid UTF-8, line ignored.";
/// What `/me` with no action gets (instead of broadcasting a bare `* NAME`).
pub const ME_USAGE: &str = "Usage: /me ACTION";

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
    /// The longest one congested client may hold the talkers back ([`DEFAULT_MAX_STALL`]);
    /// after that it is left to its write-buffer cap.
    pub max_stall: Duration,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_write_buffer: DEFAULT_MAX_WRITE_BUFFER,
            idle_timeout: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_stall: DEFAULT_MAX_STALL,
        }
    }
}

/// The room's shared state.
#[derive(Debug, Default)]
struct RoomState {
    /// Who is online, by name (so names come out sorted).
    members: BTreeMap<String, ConnId>,
    /// Members on a WebSocket (the browser page): they get each line as a text frame.
    web: HashSet<ConnId>,
    /// Members whose write buffer is above its high watermark and who hold the talkers back,
    /// each with the epoch it became congested in (so a stale stall timer is recognised).
    congested: Vec<(ConnId, u64)>,
    /// Members that stayed congested for longer than the stall limit: they never hold the room
    /// back again and are left to their write-buffer cap.
    exempt: HashSet<ConnId>,
    /// Connections whose reading is paused because the room is congested.
    held: Vec<ConnId>,
    /// Counter for `congested` epochs.
    epoch: u64,
    /// How long one member may hold the room back.
    max_stall: Duration,
}

/// Who is online: names (kept sorted) and their connections, plus the fan-out flow control
/// (see the module docs). Cheap to clone (it is shared); single-threaded like the reactor.
#[derive(Clone, Default)]
pub struct Room {
    state: Rc<RefCell<RoomState>>,
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("Room")
            .field("names", &state.members.keys().collect::<Vec<_>>())
            .field("congested", &state.congested.len())
            .field("held", &state.held.len())
            .finish()
    }
}

impl Room {
    fn new(max_stall: Duration) -> Room {
        Room { state: Rc::new(RefCell::new(RoomState { max_stall, ..RoomState::default() })) }
    }

    /// The names online, sorted.
    pub fn names(&self) -> Vec<String> {
        self.state.borrow().members.keys().cloned().collect()
    }

    /// How many clients are online (named; clients still choosing a name are not counted).
    pub fn len(&self) -> usize {
        self.state.borrow().members.len()
    }

    /// True when nobody is online.
    pub fn is_empty(&self) -> bool {
        self.state.borrow().members.is_empty()
    }

    /// How many connections are paused now, waiting for a congested member to catch up.
    pub fn held_back(&self) -> usize {
        self.state.borrow().held.len()
    }

    /// `Online: a, b, c`.
    fn online_line(&self) -> String {
        format!("Online: {}", self.names().join(", "))
    }

    fn is_taken(&self, name: &str) -> bool {
        self.state.borrow().members.contains_key(name)
    }

    fn join(&self, name: &str, id: ConnId, web: bool) {
        let mut state = self.state.borrow_mut();
        state.members.insert(name.to_owned(), id);
        if web {
            state.web.insert(id);
        }
    }

    /// Takes `name` out of the room. Does not touch flow control (a rename calls it too).
    fn leave(&self, name: &str) {
        self.state.borrow_mut().members.remove(name);
    }

    /// Sends `line` (plus `\r\n`) to every member but `except`, then holds `except` back if a
    /// member is congested. The line is built once and shared by every recipient's write
    /// buffer. A member whose buffer goes over its cap is aborted by its transport; its
    /// `connection_lost` (run after this callback) takes it out of the room.
    fn broadcast(&self, cx: &mut Ctx<'_>, except: ConnId, line: &str) {
        let wire = Wire::new(line);
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        for &id in state.members.values() {
            if id == except {
                continue;
            }
            let Some(mut transport) = cx.transport_for(id) else { continue };
            let above_high = transport.write_bytes(wire.for_member(state.web.contains(&id)));
            if above_high && !state.exempt.contains(&id) && !state.congested.iter().any(|(c, _)| *c == id) {
                // Newly congested: it holds the talkers back for at most `max_stall`.
                state.epoch += 1;
                let epoch = state.epoch;
                state.congested.push((id, epoch));
                let room = self.clone();
                cx.call_later(state.max_stall, move |cx| room.stall_expired(cx, id, epoch));
            }
        }
        if !state.congested.is_empty() {
            // Stop reading the talker until every congested member has caught up. Lines it
            // already sent in this read are still delivered; nothing more is read. (Paused
            // again even if already held: its own protocol may have resumed reading.)
            if let Some(mut transport) = cx.transport_for(except) {
                transport.pause_reading();
                if !state.held.contains(&except) {
                    state.held.push(except);
                }
            }
        }
    }

    /// Sends `line` (plus `\r\n`) to every member, for announcements from the server itself
    /// (the chat server's `* Server shutting down` before a graceful stop).
    pub fn announce(&self, cx: &mut LoopCtx<'_>, line: &str) {
        let wire = Wire::new(line);
        let state = self.state.borrow();
        for &id in state.members.values() {
            if let Some(mut transport) = cx.transport_for(id) {
                transport.write_bytes(wire.for_member(state.web.contains(&id)));
            }
        }
    }

    /// `id`'s write buffer drained to its low watermark: it no longer holds anyone back.
    pub(crate) fn drained(&self, cx: &mut LoopCtx<'_>, id: ConnId) {
        self.state.borrow_mut().congested.retain(|(c, _)| *c != id);
        self.release_if_clear(cx);
    }

    /// `id`'s connection is over: forget it in the flow control.
    pub(crate) fn gone(&self, cx: &mut LoopCtx<'_>, id: ConnId) {
        {
            let mut state = self.state.borrow_mut();
            state.congested.retain(|(c, _)| *c != id);
            state.held.retain(|h| *h != id);
            state.exempt.remove(&id);
            state.web.remove(&id);
        }
        self.release_if_clear(cx);
    }

    /// A member stayed congested for `max_stall`: it is not reading, or not fast enough. It
    /// stops holding the room back and is left to its write-buffer cap.
    fn stall_expired(&self, cx: &mut LoopCtx<'_>, id: ConnId, epoch: u64) {
        {
            let mut state = self.state.borrow_mut();
            let before = state.congested.len();
            state.congested.retain(|entry| *entry != (id, epoch));
            if state.congested.len() == before {
                return; // It caught up (or left) in time.
            }
            state.exempt.insert(id);
            let name = state.members.iter().find(|(_, c)| **c == id).map(|(n, _)| n.clone());
            warn!(?name, stall = ?state.max_stall, "a client is not keeping up; no longer waiting for it");
        }
        self.release_if_clear(cx);
    }

    /// Resumes reading every held connection once no member is congested.
    fn release_if_clear(&self, cx: &mut LoopCtx<'_>) {
        let held = {
            let mut state = self.state.borrow_mut();
            if !state.congested.is_empty() {
                return;
            }
            std::mem::take(&mut state.held)
        };
        for id in held {
            if let Some(mut transport) = cx.transport_for(id) {
                transport.resume_reading();
            }
        }
    }
}

/// One line as each kind of member gets it, each built once and shared by every recipient's
/// write buffer: `line\r\n` for line clients, one unmasked WebSocket text frame for browsers.
/// (The room writes frames straight to a browser's transport: a WebSocket that is closing has
/// called `lose_connection`, after which writes are ignored, and a browser that quits leaves
/// the room before its close frame goes out, so no frame follows a close.)
struct Wire {
    line: Bytes,
    frame: Bytes,
}

impl Wire {
    fn new(line: &str) -> Wire {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let mut frame = Vec::with_capacity(line.len() + 10);
        encode_frame(&mut frame, Opcode::Text, true, line.as_bytes(), None);
        Wire { line: Bytes::from(bytes), frame: Bytes::from(frame) }
    }

    fn for_member(&self, web: bool) -> Bytes {
        if web {
            self.frame.clone()
        } else {
            self.line.clone()
        }
    }
}

/// Replaces control characters (C0 but tab, DEL, C1) with U+FFFD, so a line cannot move
/// anyone's cursor, clear their screen or change their terminal's colours: `hello \x1b[2J`
/// reaches the others as `hello \u{FFFD}[2J`. Applied to every line a client sends, before
/// anything else reads it.
pub fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| (c < ' ' && c != '\t') || c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c);
    if text.chars().any(bad) {
        text.chars().map(|c| if bad(c) { '\u{FFFD}' } else { c }).collect::<String>().into()
    } else {
        text.into()
    }
}

/// Sets the reactor up for fan-out: one read of at most [`READ_PER_TURN`] bytes per connection
/// per turn. What one turn reads is broadcast and then flushed at the end of the turn, so this
/// bounds how much a turn can add to any recipient's write buffer (16 KiB per talking client),
/// and how much a talker still relays after the room has held it back.
pub fn tune_reactor(reactor: &mut Reactor) {
    reactor.set_read_buffer_size(READ_PER_TURN);
    reactor.set_reads_per_turn(1);
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
        let room = Room::new(config.max_stall);
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
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        self.limited.build_protocol(peer)
    }
    fn handshake_failed(&mut self, peer: Address, reason: &torsion_reactor::DisconnectReason) {
        self.limited.handshake_failed(peer, reason);
    }
}

/// Builds the protocol of one connection.
#[derive(Debug)]
struct Builder {
    room: Room,
    config: ChatConfig,
}

impl Factory for Builder {
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        debug!(%peer, "client connected");
        let chatter = Chatter {
            room: self.room.clone(),
            name: None,
            max_write_buffer: self.config.max_write_buffer,
            web: false,
        };
        // `\n` or `\r\n` ends a line (a `\r` before the `\n` is dropped); `\r\n` is sent.
        let decoder = LineDecoder::new()
            .with_max_length(self.config.max_line_length)
            .with_line_endings(LineEndings::Lenient);
        let member = Member::new(LineReceiver::with_decoder(chatter, decoder), self.room.clone());
        Some(match self.config.idle_timeout {
            Some(idle) => Box::new(TimeoutProtocol::new(member, Some(idle))),
            None => Box::new(member),
        })
    }
}

/// A client's protocol: its [`LineReceiver`] (by default; any protocol can be wrapped), plus
/// telling the room when this client's write buffer has drained (the receiver's own
/// `resume_producing` resumes its reading; the room also resumes the talkers this client was
/// holding back) and when the connection is over.
///
/// It is a [`Wrapper`]: every callback is forwarded to the inner protocol by the trait's
/// defaults, and only the two that also concern the room are written out here, so none can be
/// dropped by forgetting it.
#[derive(Debug)]
pub struct Member<P = LineReceiver<Chatter>> {
    inner: P,
    room: Room,
}

impl<P: Protocol> Member<P> {
    /// Wraps `inner`, a member of `room` (the chat server builds one per connection with a
    /// [`LineReceiver`] around a [`Chatter`]).
    pub fn new(inner: P, room: Room) -> Member<P> {
        Member { inner, room }
    }
}

impl<P: Protocol + 'static> Wrapper for Member<P> {
    type Inner = P;

    fn inner(&mut self) -> &mut P {
        &mut self.inner
    }

    fn on_connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.inner.connection_lost(cx, reason);
        let id = cx.conn_id();
        self.room.gone(cx, id);
    }

    fn on_resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.inner.resume_producing(cx);
        let id = cx.conn_id();
        self.room.drained(cx, id);
    }
}

/// How the room logic reaches one client, whatever it connected with: its connection's
/// context, and how to send it a line (`line\r\n` on a line connection, one text frame on a
/// WebSocket). [`Chatter`] is written against this, so `nc` users and browser users follow
/// exactly the same rules.
pub trait Peer<'b> {
    /// The connection's context.
    fn ctx(&mut self) -> &mut Ctx<'b>;
    /// Sends one line to this client.
    fn send(&mut self, line: &str);
    /// Ends the session after `Bye!` (a clean close).
    fn quit(&mut self);
}

impl<'b> Peer<'b> for LineCtx<'_, 'b> {
    fn ctx(&mut self) -> &mut Ctx<'b> {
        self.cx()
    }

    fn send(&mut self, line: &str) {
        self.send_line(line.as_bytes());
    }

    fn quit(&mut self) {
        self.lose_connection();
    }
}

/// One client's side of the chat: asks for a name, then relays lines and runs commands. On a
/// line connection its [`LineReceiver`] does the framing; on a WebSocket each text message is
/// a line. The [`Room`] is shared with every other `Chatter`.
#[derive(Debug)]
pub struct Chatter {
    room: Room,
    /// `None` until a name is accepted.
    name: Option<String>,
    max_write_buffer: usize,
    /// On a WebSocket (the browser page)?
    web: bool,
}

impl Chatter {
    /// A client of `room` (`web`: on a WebSocket) not yet named.
    pub fn new(room: Room, web: bool) -> Chatter {
        Chatter { room, name: None, max_write_buffer: DEFAULT_MAX_WRITE_BUFFER, web }
    }

    /// The room this client is in.
    pub(crate) fn room(&self) -> &Room {
        &self.room
    }

    /// One line of text from this client, already checked to be UTF-8: control characters
    /// are replaced ([`sanitize`]), then it is a name (until one is accepted) or chat.
    pub fn line(&mut self, p: &mut dyn Peer<'_>, text: &str) {
        let text = sanitize(text);
        match self.name.clone() {
            None => self.login(p, &text),
            Some(name) => self.chat(p, &name, &text),
        }
    }

    /// The first lines: a name, asked again until one is free and valid.
    fn login(&mut self, p: &mut dyn Peer<'_>, name: &str) {
        let name = name.trim();
        if let Err(error) = self.check_name(name) {
            p.send(error);
            return;
        }
        let id = p.ctx().conn_id();
        self.room.join(name, id, self.web);
        self.name = Some(name.to_owned());
        info!(name, web = self.web, "joined");
        let welcome = format!("Welcome, {name}! {}", self.room.online_line());
        p.send(&welcome);
        self.room.broadcast(p.ctx(), id, &format!("* {name} has joined"));
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
    fn chat(&mut self, p: &mut dyn Peer<'_>, name: &str, text: &str) {
        let id = p.ctx().conn_id();
        if !text.starts_with('/') {
            if !text.is_empty() {
                self.room.broadcast(p.ctx(), id, &format!("<{name}> {text}"));
            }
            return;
        }
        let (command, argument) = text.split_once(' ').unwrap_or((text, ""));
        match command {
            "/who" => p.send(&self.room.online_line()),
            "/nick" => self.rename(p, name, argument.trim()),
            "/me" if argument.trim().is_empty() => p.send(ME_USAGE),
            "/me" => self.room.broadcast(p.ctx(), id, &format!("* {name} {argument}")),
            "/quit" => {
                p.send("Bye!");
                // Out of the room before the close starts: nothing is written after it.
                self.left(p.ctx(), &"quit");
                p.quit();
            }
            _ => p.send(&format!("Unknown command: {command}")),
        }
    }

    /// `/nick NEW`.
    fn rename(&mut self, p: &mut dyn Peer<'_>, old: &str, new: &str) {
        if new == old {
            p.send(&format!("You are now {new}"));
            return;
        }
        if let Err(error) = self.check_name(new) {
            p.send(error);
            return;
        }
        let id = p.ctx().conn_id();
        self.room.leave(old);
        self.room.join(new, id, self.web);
        self.name = Some(new.to_owned());
        info!(old, new, "renamed");
        p.send(&format!("You are now {new}"));
        self.room.broadcast(p.ctx(), id, &format!("* {old} is now {new}"));
    }

    /// The client is leaving (quit, or its connection is over): out of the room, and the
    /// others are told. Does nothing for a client that never chose a name, or left already.
    pub fn left(&mut self, cx: &mut Ctx<'_>, reason: &dyn fmt::Display) {
        let Some(name) = self.name.take() else {
            debug!(%reason, "client left before choosing a name (or had left already)");
            return;
        };
        info!(name, %reason, "left");
        self.room.leave(&name);
        let id = cx.conn_id();
        self.room.broadcast(cx, id, &format!("* {name} has left"));
    }
}

impl LineHandler for Chatter {
    fn connection_made(&mut self, lx: &mut LineCtx<'_, '_>) {
        lx.transport().set_max_write_buffer(Some(self.max_write_buffer));
        lx.send(WELCOME);
    }

    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            lx.send(INVALID_UTF8);
            return;
        };
        self.line(lx, text);
    }

    fn line_length_exceeded(&mut self, lx: &mut LineCtx<'_, '_>) {
        let max = lx.max_length();
        lx.send(&format!("Line too long (max {max} bytes), goodbye."));
        lx.lose_connection_with(DisconnectReason::LimitExceeded(format!("line longer than {max} bytes")));
    }

    fn connection_lost(&mut self, lx: &mut LineCtx<'_, '_>, reason: DisconnectReason) {
        self.left(lx.cx(), &reason);
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
