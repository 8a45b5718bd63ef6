//! One WebSocket connection once the handshake is done: the [`WsHandler`] trait, the
//! [`WsCtx`] lent to it, and the state both hosts (server upgrade, client) share.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use torsion_reactor::{Ctx, DisconnectReason, TimerId};

use super::frame::{
    close_code, close_payload, encode_frame, encode_header, Event, FrameDecoder, Message, Opcode, Role,
    DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE,
};
use super::handshake::HandshakeError;

/// Default time the close handshake may take before the connection is aborted: 5 s.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a client waits for the server's `101`: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default hard cap on a WebSocket's write buffer: 16 MiB (over it the connection is aborted
/// with [`DisconnectReason::BufferOverflow`]; watch [`WsCtx::send_text`]'s result to stay far
/// below it).
pub const DEFAULT_MAX_WRITE_BUFFER: usize = 16 << 20;

/// An origin check: given the request's `Origin` (if any), true to accept.
pub type OriginCheck = Rc<dyn Fn(Option<&str>) -> bool>;

/// Limits and options shared by the connections of a server or client. Every limit has a
/// default and a setter.
#[derive(Clone)]
pub struct WsConfig {
    pub(crate) max_message: usize,
    pub(crate) max_frame: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_write_buffer: Option<usize>,
    pub(crate) protocols: Vec<String>,
    pub(crate) origin: Option<OriginCheck>,
}

impl fmt::Debug for WsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConfig")
            .field("max_message", &self.max_message)
            .field("max_frame", &self.max_frame)
            .field("close_timeout", &self.close_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_write_buffer", &self.max_write_buffer)
            .field("protocols", &self.protocols)
            .field("origin_check", &self.origin.is_some())
            .finish()
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message: DEFAULT_MAX_MESSAGE,
            max_frame: DEFAULT_MAX_FRAME,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_write_buffer: Some(DEFAULT_MAX_WRITE_BUFFER),
            protocols: Vec::new(),
            origin: None,
        }
    }
}

impl WsConfig {
    /// Largest message accepted, all fragments together (default 1 MiB); over it: close 1009.
    pub fn max_message(mut self, max: usize) -> Self {
        self.max_message = max;
        self
    }

    /// Largest frame payload accepted (default 1 MiB); over it: close 1009.
    pub fn max_frame(mut self, max: usize) -> Self {
        self.max_frame = max;
        self
    }

    /// How long the close handshake may take before the connection is aborted (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How long a client waits for the server's handshake answer (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Hard cap on the write buffer (default 16 MiB, `None` for none).
    pub fn max_write_buffer(mut self, cap: Option<usize>) -> Self {
        self.max_write_buffer = cap;
        self
    }

    /// Subprotocols: a server picks the first the client offers that is in this list; a client
    /// offers them all.
    pub fn protocols(mut self, protocols: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Server side: refuse (403) upgrade requests whose `Origin` `check` returns false for.
    pub fn origin_check(mut self, check: impl Fn(Option<&str>) -> bool + 'static) -> Self {
        self.origin = Some(Rc::new(check));
        self
    }
}

/// How a WebSocket ended, given to [`WsHandler::connection_lost`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CloseInfo {
    /// The close code: the peer's if it sent a close frame (1005 if that had none), else the
    /// one this side failed the connection with, else 1006 (no close frame at all).
    pub code: u16,
    /// The reason that came with the code.
    pub reason: String,
    /// True when both close frames were exchanged (the close handshake completed).
    pub clean: bool,
    /// The transport-level reason.
    pub disconnect: DisconnectReason,
    /// Client side: the opening handshake failed (the handler's `open` never ran).
    pub handshake: Option<HandshakeError>,
}

/// A WebSocket connection's application: one per connection, called with complete messages.
/// Every method but `message_received` has a default that does nothing.
pub trait WsHandler: 'static {
    /// The handshake is done: messages may be sent.
    fn open(&mut self, wx: &mut WsCtx<'_, '_>) {
        let _ = wx;
    }

    /// A complete message arrived (fragments reassembled, text validated as UTF-8).
    fn message_received(&mut self, wx: &mut WsCtx<'_, '_>, message: Message<'_>);

    /// A pong arrived (pings are answered automatically).
    fn pong_received(&mut self, wx: &mut WsCtx<'_, '_>, data: &[u8]) {
        let _ = (wx, data);
    }

    /// The write buffer drained to its low mark after a send reported it above the high mark.
    fn writable(&mut self, wx: &mut WsCtx<'_, '_>) {
        let _ = wx;
    }

    /// A timer set with [`WsCtx::set_timer`] fired.
    fn timer_fired(&mut self, wx: &mut WsCtx<'_, '_>, timer: TimerId) {
        let _ = (wx, timer);
    }

    /// The connection is over (called once, last); sends are ignored here.
    fn connection_lost(&mut self, wx: &mut WsCtx<'_, '_>, close: CloseInfo) {
        let _ = (wx, close);
    }
}

/// The sending half of a connection's state (disjoint from the decoder, so a message borrowed
/// from the decoder can be handed to the handler together with this).
#[derive(Debug)]
pub(crate) struct Tx {
    pub(crate) role: Role,
    pub(crate) config: Rc<WsConfig>,
    pub(crate) protocol: Option<String>,
    close_sent: Option<(u16, String)>,
    close_received: Option<(u16, String)>,
    close_timer: Option<TimerId>,
    scratch: Vec<u8>,
    done: bool,
}

/// What a [`WsHandler`] gets in each callback: the connection's [`Ctx`] and the send API.
pub struct WsCtx<'a, 'b> {
    pub(crate) cx: &'a mut Ctx<'b>,
    pub(crate) tx: &'a mut Tx,
}

impl fmt::Debug for WsCtx<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsCtx").field("role", &self.tx.role).finish_non_exhaustive()
    }
}

impl<'b> WsCtx<'_, 'b> {
    /// The connection's context: transport, timers, other connections, the reactor.
    pub fn ctx(&mut self) -> &mut Ctx<'b> {
        self.cx
    }

    /// Sends a text message. Returns true when the write buffer is above its high mark: stop
    /// and wait for [`WsHandler::writable`]. Ignored (false) once a close frame was sent.
    pub fn send_text(&mut self, text: &str) -> bool {
        self.tx.send(self.cx, Opcode::Text, text.as_bytes())
    }

    /// Sends a binary message; returns as [`send_text`](Self::send_text).
    pub fn send_binary(&mut self, data: &[u8]) -> bool {
        self.tx.send(self.cx, Opcode::Binary, data)
    }

    /// Sends one frame of a fragmented message: `first` picks the opcode (`Text` or `Binary`
    /// for the first frame, continuation after), `fin` ends the message. The caller keeps
    /// fragments of one message together and text fragments whole UTF-8 overall.
    pub fn send_fragment(&mut self, text: bool, first: bool, fin: bool, data: &[u8]) -> bool {
        let op = match (first, text) {
            (false, _) => Opcode::Continuation,
            (true, true) => Opcode::Text,
            (true, false) => Opcode::Binary,
        };
        self.tx.send_frame(self.cx, op, fin, data)
    }

    /// Sends a ping (at most 125 bytes of data; longer is cut).
    pub fn ping(&mut self, data: &[u8]) {
        let data = &data[..data.len().min(125)];
        self.tx.send_frame(self.cx, Opcode::Ping, true, data);
    }

    /// Starts the close handshake with `code` and `reason` (cut to fit a control frame). The
    /// peer's answer ends the connection; without one it is aborted after the close timeout.
    pub fn close(&mut self, code: u16, reason: &str) {
        self.tx.close(self.cx, code, reason);
    }

    /// True once a close frame was sent (further sends are ignored).
    pub fn is_closing(&self) -> bool {
        self.tx.close_sent.is_some()
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.tx.protocol.as_deref()
    }

    /// Fires [`WsHandler::timer_fired`] after `delay`.
    pub fn set_timer(&mut self, delay: Duration) -> TimerId {
        self.cx.set_timer(delay)
    }
}

impl Tx {
    fn send(&mut self, cx: &mut Ctx<'_>, op: Opcode, data: &[u8]) -> bool {
        self.send_frame(cx, op, true, data)
    }

    fn send_frame(&mut self, cx: &mut Ctx<'_>, op: Opcode, fin: bool, data: &[u8]) -> bool {
        if self.close_sent.is_some() || self.done {
            return false;
        }
        self.write_frame(cx, op, fin, data)
    }

    fn write_frame(&mut self, cx: &mut Ctx<'_>, op: Opcode, fin: bool, data: &[u8]) -> bool {
        self.scratch.clear();
        if self.role == Role::Client {
            let mask = random_u64().to_le_bytes();
            encode_frame(&mut self.scratch, op, fin, data, Some([mask[0], mask[1], mask[2], mask[3]]));
            cx.transport().write(&self.scratch)
        } else if data.len() < 4096 {
            encode_frame(&mut self.scratch, op, fin, data, None);
            cx.transport().write(&self.scratch)
        } else {
            encode_header(&mut self.scratch, op, fin, data.len(), None);
            cx.transport().write_sequence([&self.scratch[..], data])
        }
    }

    pub(crate) fn close(&mut self, cx: &mut Ctx<'_>, code: u16, reason: &str) {
        if self.close_sent.is_some() || self.done {
            return;
        }
        let body = if code == close_code::NO_STATUS { Vec::new() } else { close_payload(code, reason) };
        self.write_frame(cx, Opcode::Close, true, &body);
        self.close_sent = Some((code, reason.to_owned()));
        if self.close_received.is_some() {
            cx.transport().lose_connection();
        } else {
            self.close_timer = Some(cx.set_timer(self.config.close_timeout));
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): a close frame with `code`, then close.
    fn fail(&mut self, cx: &mut Ctx<'_>, code: u16, reason: &str) {
        if self.close_sent.is_none() && !self.done {
            let body = close_payload(code, reason);
            self.write_frame(cx, Opcode::Close, true, &body);
            self.close_sent = Some((code, reason.to_owned()));
        }
        self.done = true;
        cx.transport().pause_reading();
        cx.transport().lose_connection();
    }
}

/// The state a host (server upgrade or client) keeps for an open WebSocket.
#[derive(Debug)]
pub(crate) struct WsState {
    decoder: FrameDecoder,
    pub(crate) tx: Tx,
}

impl WsState {
    pub(crate) fn new(role: Role, config: Rc<WsConfig>, protocol: Option<String>) -> WsState {
        let mut decoder = FrameDecoder::new(role);
        decoder.set_max_frame(config.max_frame);
        decoder.set_max_message(config.max_message);
        WsState {
            decoder,
            tx: Tx {
                role,
                config,
                protocol,
                close_sent: None,
                close_received: None,
                close_timer: None,
                scratch: Vec::with_capacity(256),
                done: false,
            },
        }
    }

    pub(crate) fn open<H: WsHandler>(&mut self, cx: &mut Ctx<'_>, handler: &mut H) {
        cx.transport().set_max_write_buffer(self.tx.config.max_write_buffer);
        handler.open(&mut WsCtx { cx, tx: &mut self.tx });
    }

    /// Bytes from the peer.
    pub(crate) fn data<H: WsHandler>(&mut self, cx: &mut Ctx<'_>, handler: &mut H, mut input: &[u8]) {
        while !self.tx.done {
            let (used, event) = match self.decoder.decode(input) {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket: failing the connection");
                    self.tx.fail(cx, e.close_code(), &e.to_string());
                    return;
                }
            };
            input = &input[used..];
            let Some(event) = event else { return };
            match event {
                Event::Message(m) => {
                    if self.tx.close_sent.is_none() {
                        handler.message_received(&mut WsCtx { cx, tx: &mut self.tx }, m);
                    }
                }
                Event::Ping(data) => {
                    if self.tx.close_sent.is_none() {
                        self.tx.write_frame(cx, Opcode::Pong, true, data);
                    }
                }
                Event::Pong(data) => handler.pong_received(&mut WsCtx { cx, tx: &mut self.tx }, data),
                Event::Close(code) => {
                    let (code, reason) = code.map_or((close_code::NO_STATUS, ""), |(c, r)| (c, r));
                    self.tx.close_received = Some((code, reason.to_owned()));
                    if self.tx.close_sent.is_none() {
                        // Echo the peer's code (RFC 6455 §5.5.1); `close` then closes at once.
                        self.tx.close(cx, code, reason);
                    } else {
                        cx.transport().lose_connection();
                    }
                    self.tx.done = true;
                    cx.transport().pause_reading();
                    return;
                }
            }
        }
    }

    /// A timer fired: true if it was the close deadline (handled here).
    pub(crate) fn timer<H: WsHandler>(&mut self, cx: &mut Ctx<'_>, handler: &mut H, timer: TimerId) {
        if self.tx.close_timer == Some(timer) {
            self.tx.close_timer = None;
            tracing::debug!("websocket: close handshake timed out; aborting");
            cx.transport().abort_connection_with(DisconnectReason::TimedOut);
        } else {
            handler.timer_fired(&mut WsCtx { cx, tx: &mut self.tx }, timer);
        }
    }

    pub(crate) fn writable<H: WsHandler>(&mut self, cx: &mut Ctx<'_>, handler: &mut H) {
        if !self.tx.done {
            handler.writable(&mut WsCtx { cx, tx: &mut self.tx });
        }
    }

    pub(crate) fn lost<H: WsHandler>(&mut self, cx: &mut Ctx<'_>, handler: &mut H, reason: DisconnectReason) {
        let tx = &mut self.tx;
        let clean = tx.close_sent.is_some() && tx.close_received.is_some();
        let (code, text) = tx
            .close_received
            .clone()
            .or_else(|| tx.close_sent.clone().filter(|_| tx.done))
            .unwrap_or((close_code::ABNORMAL, String::new()));
        tx.done = true;
        let info = CloseInfo { code, reason: text, clean, disconnect: reason, handshake: None };
        handler.connection_lost(&mut WsCtx { cx, tx }, info);
    }
}

/// 64 random bits for mask keys and handshake keys: std's per-process random hash keys
/// (seeded from the OS) over a counter. Masking only has to be unpredictable to the page
/// script that could otherwise steer a proxy's cache (RFC 6455 §10.3).
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! { static STATE: RandomState = RandomState::new(); }
    STATE.with(|s| {
        let mut h = s.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.finish()
    })
}
