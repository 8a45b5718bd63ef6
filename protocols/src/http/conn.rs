//! The per-connection engine: reading requests (heads, bodies, pipelining ahead within a
//! bound), the queue of responses written strictly in request order, timers, and the
//! [`HttpProtocol`] that plugs it into the reactor.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use torsion_reactor::{ConnId, Ctx, DisconnectReason, Protocol, TimerId};

use super::body::{BodyDecoder, Decoded};
use super::config::HttpConfig;
use super::handler::{Handler, HttpCtx, RequestId, Responder};
use super::head::{find_head_end, parse_head, BodyFraming, Head, HeadError};
use super::response::{self, Response};

/// Reads up to this long are copied whole at their first complete head, so the heads
/// pipelined after it share the copy; a longer read copies each head alone.
const SHARED_COPY_MAX: usize = 4 * 1024;

/// The interim response to `Expect: 100-continue`.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The part of a connection's state reachable from outside its callbacks (responders, body
/// producers, the graceful-stop trigger). Borrowed only briefly, never across user code.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub conn: Option<ConnId>,
    pub outbox: Vec<(RequestId, Response)>,
    /// Zero-delay timers set to wake the connection (responders, finished body producers).
    pub wakes: Vec<TimerId>,
    pub body_done: bool,
    /// A request is being read or a response is not complete.
    pub in_flight: bool,
    pub producing: bool,
    pub stopping: bool,
    /// A [`Hold`](super::producer::Hold) is registered.
    pub held: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Resp {
    Pending,
    /// A `Body::Stream` in progress: bytes still owed under a length, or chunked.
    Streaming {
        chunked: bool,
        remaining: Option<u64>,
        discard: bool,
    },
    Done,
}

pub(super) struct Slot {
    pub(super) id: u64,
    /// The method and target for the access log (only when it is on: the slot stays small,
    /// and it is moved on every request).
    pub(super) log: Option<Box<(Method, String)>>,
    pub(super) version: Version,
    pub(super) head_request: bool,
    pub(super) started: Instant,
    pub(super) state: Resp,
    /// Output waiting for the slots before this one.
    pub(super) out: Vec<Bytes>,
    pub(super) reader: Option<Box<BodyProducerParts>>,
    pub(super) close_after: bool,
    /// `Expect: 100-continue` not answered yet.
    pub(super) expect_continue: bool,
    /// The handler answered with a complete response before a 100-continue body: not read.
    pub(super) refused_body: bool,
    pub(super) upgrade: bool,
    pub(super) status: u16,
    pub(super) bytes: u64,
}

pub(super) struct BodyProducerParts {
    pub(super) reader: Box<dyn Read>,
    pub(super) chunked: bool,
    pub(super) remaining: Option<u64>,
}

pub(super) enum ReadState {
    Head,
    Body {
        id: u64,
        decoder: BodyDecoder,
        received: u64,
        buffered: Option<Vec<u8>>,
    },
    /// No more requests on this connection (an error, `Connection: close`, a refused body).
    Stopped,
    /// After a 101: raw bytes to the handler.
    Upgraded,
}

/// The connection state a [`HttpCtx`] works on (everything but the handler).
pub(crate) struct St {
    pub(super) config: Rc<HttpConfig>,
    pub(super) shared: Rc<RefCell<Shared>>,
    pub(super) slots: VecDeque<Slot>,
    pub(super) next_id: u64,
    pub(super) read: ReadState,
    pub(super) inbuf: Vec<u8>,
    pub(super) scanned: usize,
    pub(super) body_paused: bool,
    pub(super) write_blocked: bool,
    pub(super) reading: bool,
    pub(super) closing: bool,
    /// The request being read is the last (`Connection: close`, HTTP/1.0, an upgrade).
    pub(super) last_request: bool,
    pub(super) peer_eof: bool,
    /// The request being read is one with which the client asked to close.
    pub(super) client_close: bool,
    /// That request was read to its end: the client sends nothing more (RFC 9112 §9.6), so
    /// the close need not linger if nothing is left unread.
    pub(super) input_done: bool,
    pub(super) timer: Option<(TimerId, Instant)>,
    pub(super) idle_since: Instant,
    /// The last response was retired: `idle_since` is to be set to now if still idle.
    pub(super) idle_stale: bool,
    pub(super) head_started: Option<Instant>,
    /// Reused for serializing response heads.
    pub(super) scratch: Vec<u8>,
    /// A handler was told the buffer is full while its response waited behind another.
    pub(super) writable_owed: bool,
    /// A response's header map, cleared, kept to hold the next request's headers (one map
    /// allocation per request instead of two).
    pub(super) spare_headers: Option<http::HeaderMap>,
}

/// The HTTP/1.1 server protocol for one connection, serving with handler `H`. Usually built by
/// [`HttpServer`](super::HttpServer); [`HttpProtocol::new`] builds one by hand (tests, a custom
/// factory).
pub struct HttpProtocol<H> {
    handler: H,
    st: St,
}

impl<H> fmt::Debug for HttpProtocol<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProtocol").field("pipeline", &self.st.slots.len()).finish_non_exhaustive()
    }
}

impl<H: Handler> HttpProtocol<H> {
    /// A connection served by `handler` under `config`.
    pub fn new(handler: H, config: Rc<HttpConfig>) -> Self {
        Self::with_shared(handler, config, Rc::default())
    }

    pub(crate) fn with_shared(handler: H, config: Rc<HttpConfig>, shared: Rc<RefCell<Shared>>) -> Self {
        let st = St {
            config,
            shared,
            slots: VecDeque::new(),
            next_id: 0,
            read: ReadState::Head,
            inbuf: Vec::new(),
            scanned: 0,
            body_paused: false,
            write_blocked: false,
            reading: true,
            closing: false,
            last_request: false,
            peer_eof: false,
            client_close: false,
            input_done: false,
            timer: None,
            idle_since: Instant::now(),
            idle_stale: false,
            head_started: None,
            scratch: Vec::with_capacity(256),
            writable_owed: false,
            spare_headers: None,
        };
        HttpProtocol { handler, st }
    }

    /// Feeds input to the request reader: returns how much was consumed.
    fn consume(&mut self, cx: &mut Ctx<'_>, input: &[u8]) -> usize {
        let mut used = 0;
        // An owned copy of the input from offset `.1` on, made at the first complete head and
        // shared by the heads after it (pipelining): one allocation and one copy per read,
        // not per request.
        let mut owned: Option<(Bytes, usize)> = None;
        loop {
            if self.st.closing {
                return used;
            }
            match &mut self.st.read {
                ReadState::Stopped => return used,
                ReadState::Upgraded => {
                    if used < input.len() {
                        let mut hx = HttpCtx { cx, st: &mut self.st, current: None };
                        self.handler.upgraded(&mut hx, &input[used..]);
                    }
                    return input.len();
                }
                ReadState::Head => {
                    let rest = &input[used..];
                    if rest.is_empty() || self.st.last_request {
                        return used;
                    }
                    // Retire what is answered already: the next response then goes straight
                    // to the transport's buffer (coalesced with this read's other answers)
                    // instead of waiting, copied, behind this one.
                    if self.st.slots.front().is_some_and(|s| s.state == Resp::Done)
                        || self.st.slots.len() >= self.st.config.max_pipeline
                    {
                        self.retire(cx);
                        if self.st.closing || self.st.slots.len() >= self.st.config.max_pipeline {
                            return used;
                        }
                        if !matches!(self.st.read, ReadState::Head) {
                            continue;
                        }
                    }
                    if self.st.shared.borrow().stopping {
                        return used;
                    }
                    let max = self.st.config.max_head;
                    let view = &rest[..rest.len().min(max)];
                    match find_head_end(view, &mut self.st.scanned) {
                        Err(e) => {
                            self.fail(cx, e);
                            return used;
                        }
                        Ok(None) if rest.len() >= max => {
                            let e = HeadError {
                                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                                reason: "request head over the limit",
                            };
                            self.fail(cx, e);
                            return used;
                        }
                        Ok(None) => {
                            if self.st.head_started.is_none() {
                                self.st.head_started = Some(cx.now());
                            }
                            return used;
                        }
                        Ok(Some(end)) => {
                            self.st.scanned = 0;
                            self.st.head_started = None;
                            let shared = match &owned {
                                Some((copy, from)) if used + end <= from + copy.len() => {
                                    copy.slice(used - from..used - from + end)
                                }
                                _ => {
                                    // The rest of a small read (the heads pipelined after this
                                    // one), or just this head: a kept request never holds on
                                    // to more than a few KiB of input.
                                    let take = if rest.len() <= SHARED_COPY_MAX { rest.len() } else { end };
                                    let copy = Bytes::copy_from_slice(&rest[..take]);
                                    let head = copy.slice(..end);
                                    owned = Some((copy, used));
                                    head
                                }
                            };
                            let headers = self.st.spare_headers.take().unwrap_or_default();
                            match parse_head(shared, &self.st.config, headers) {
                                Ok(head) => {
                                    used += end;
                                    self.start_request(cx, head);
                                }
                                Err(e) => {
                                    self.fail(cx, e);
                                    return used;
                                }
                            }
                        }
                    }
                }
                ReadState::Body { id, decoder, received, buffered } => {
                    if self.st.body_paused {
                        return used;
                    }
                    let id = *id;
                    match decoder.decode(&input[used..]) {
                        Err(e) => {
                            let e = HeadError { status: StatusCode::BAD_REQUEST, reason: body_reason(&e) };
                            self.fail(cx, e);
                            return used;
                        }
                        Ok((n, Decoded::NeedMore)) => return used + n,
                        Ok((n, Decoded::Data(data))) => {
                            used += n;
                            *received += data.len() as u64;
                            let over = self.st.config.max_body_size.is_some_and(|max| *received > max);
                            if over {
                                let e = HeadError {
                                    status: StatusCode::PAYLOAD_TOO_LARGE,
                                    reason: "body over the limit",
                                };
                                self.fail(cx, e);
                                return used;
                            }
                            if let Some(buf) = buffered {
                                buf.extend_from_slice(data);
                            } else {
                                let mut hx = HttpCtx { cx, st: &mut self.st, current: Some(RequestId(id)) };
                                self.handler.body(&mut hx, data);
                            }
                        }
                        Ok((n, Decoded::Done)) => {
                            used += n;
                            let buffered = buffered.take();
                            self.st.read =
                                if self.st.last_request { ReadState::Stopped } else { ReadState::Head };
                            self.st.input_done |= self.st.client_close;
                            let mut hx = HttpCtx { cx, st: &mut self.st, current: Some(RequestId(id)) };
                            if let Some(buf) = buffered {
                                self.handler.body(&mut hx, &buf);
                            }
                            self.handler.end(&mut hx);
                        }
                    }
                }
            }
        }
    }

    fn start_request(&mut self, cx: &mut Ctx<'_>, head: Head) {
        let Head { request, framing, keep_alive, expect_continue } = head;
        let id = self.st.next_id;
        self.st.next_id += 1;
        self.st.slots.push_back(Slot {
            id,
            log: self
                .st
                .config
                .access_log
                .then(|| Box::new((request.method().clone(), request.uri().to_string()))),
            version: request.version(),
            head_request: request.method() == Method::HEAD,
            // The clock is read only when a response deadline needs it.
            started: if self.st.config.response_timeout.is_some() { cx.now() } else { self.st.idle_since },
            state: Resp::Pending,
            out: Vec::new(),
            reader: None,
            close_after: !keep_alive,
            expect_continue: expect_continue && framing != BodyFraming::None,
            refused_body: false,
            upgrade: false,
            status: 0,
            bytes: 0,
        });
        let decoder = match framing {
            BodyFraming::None => None,
            BodyFraming::Length(n) => Some(BodyDecoder::length(n)),
            BodyFraming::Chunked => Some(BodyDecoder::chunked().with_max_line(self.st.config.max_chunk_line)),
        };
        if let Some(decoder) = decoder {
            self.st.read = ReadState::Body { id, decoder, received: 0, buffered: None };
        }
        self.st.last_request |= !keep_alive;
        self.st.client_close = !keep_alive;
        let mut hx = HttpCtx { cx, st: &mut self.st, current: Some(RequestId(id)) };
        self.handler.request(&mut hx, request);
        if matches!(self.st.read, ReadState::Body { id: b, .. } if b == id) {
            if let Some(i) = self.st.slot_index(id) {
                if self.st.slots[i].refused_body {
                    // Answered in full before the body: do not read it; close after.
                    self.st.read = ReadState::Stopped;
                    self.st.slots[i].close_after = true;
                } else if std::mem::take(&mut self.st.slots[i].expect_continue) {
                    self.st.emit(cx, i, Bytes::from_static(CONTINUE));
                }
            }
        } else {
            let mut hx = HttpCtx { cx, st: &mut self.st, current: Some(RequestId(id)) };
            self.handler.end(&mut hx);
            self.st.input_done |= !keep_alive;
            if self.st.last_request && matches!(self.st.read, ReadState::Head) {
                self.st.read = ReadState::Stopped;
            }
        }
    }

    /// Refuses the input: answer `e.status` in order and close, or abort when the response
    /// being read for has already started (its framing cannot be fixed).
    fn fail(&mut self, cx: &mut Ctx<'_>, e: HeadError) {
        tracing::debug!(status = %e.status, reason = e.reason, "refusing a request");
        let body_slot = match self.st.read {
            ReadState::Body { id, .. } => Some(id),
            _ => None,
        };
        self.st.read = ReadState::Stopped;
        let mut response = response::status(e.status);
        if e.status == StatusCode::REQUEST_TIMEOUT {
            response = response::text(e.status, "request head timed out\n");
        }
        match body_slot.and_then(|id| self.st.slot_index(id).map(|i| (id, i))) {
            Some((id, i)) if self.st.slots[i].state == Resp::Pending => {
                self.st.slots[i].close_after = true;
                let _ = self.st.respond(cx, RequestId(id), response);
            }
            Some(_) => cx.transport().abort_connection_with(DisconnectReason::ProtocolError(e.reason.into())),
            None => {
                let id = self.st.next_id;
                self.st.next_id += 1;
                self.st.slots.push_back(Slot {
                    id,
                    log: None,
                    version: Version::HTTP_11,
                    head_request: false,
                    started: cx.now(),
                    state: Resp::Pending,
                    out: Vec::new(),
                    reader: None,
                    close_after: true,
                    expect_continue: false,
                    refused_body: false,
                    upgrade: false,
                    status: 0,
                    bytes: 0,
                });
                let _ = self.st.respond(cx, RequestId(id), response);
            }
        }
    }

    /// Retires the finished responses at the front ([`St::advance`]) and tells a streaming
    /// handler held behind them that it can go on. Returns whether any was retired.
    fn retire(&mut self, cx: &mut Ctx<'_>) -> bool {
        let retired = self.st.advance(cx);
        if retired && self.st.writable_owed {
            // A streaming response held behind the one just retired can go on now.
            self.st.writable_owed = false;
            let mut hx = HttpCtx { cx, st: &mut self.st, current: None };
            self.handler.writable(&mut hx);
        }
        retired
    }

    /// Runs after every callback: answers from the outbox, writes finished responses in
    /// order, reads what was waiting, then sets reading and timers to match.
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        loop {
            let mut progress = false;
            let outbox = {
                let mut shared = self.st.shared.borrow_mut();
                if shared.body_done {
                    shared.body_done = false;
                    shared.producing = false;
                    if let Some(front) = self.st.slots.front_mut() {
                        front.state = Resp::Done;
                    }
                }
                std::mem::take(&mut shared.outbox)
            };
            for (id, response) in outbox {
                if let Err(e) = self.st.respond(cx, id, response) {
                    tracing::debug!(error = %e, "a responder's response was dropped");
                }
            }
            progress |= self.retire(cx);
            // A body that ended while paused still owes its `end`, with no input left.
            let end_owed = !self.st.body_paused
                && matches!(&self.st.read, ReadState::Body { decoder, .. } if decoder.is_done());
            if (!self.st.inbuf.is_empty() || end_owed) && !self.st.closing {
                let mut buf = std::mem::take(&mut self.st.inbuf);
                let n = self.consume(cx, &buf);
                buf.drain(..n);
                if self.st.inbuf.is_empty() {
                    self.st.inbuf = buf;
                } else {
                    buf.extend_from_slice(&self.st.inbuf);
                    self.st.inbuf = buf;
                }
                progress |= n > 0 || end_owed;
            }
            if !progress {
                break;
            }
        }
        self.st.settle(cx);
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>) {
        self.st.timer = None;
        let now = cx.now();
        let config = self.st.config.clone();
        if self.st.is_idle() && now >= self.st.idle_since + config.idle_timeout {
            tracing::debug!("keep-alive connection idle; closing");
            self.st.closing = true;
            cx.transport().lose_connection();
            return;
        }
        if let Some(started) = self.st.head_started {
            if now >= started + config.header_timeout && matches!(self.st.read, ReadState::Head) {
                self.st.inbuf.clear();
                let e = HeadError { status: StatusCode::REQUEST_TIMEOUT, reason: "request head deadline" };
                return self.fail(cx, e);
            }
        }
        if let (Some(limit), Some(front)) = (config.response_timeout, self.st.slots.front()) {
            if now >= front.started + limit {
                let id = front.id;
                if front.state == Resp::Pending && front.out.is_empty() {
                    tracing::debug!("response deadline passed; answering 503");
                    self.st.read = ReadState::Stopped;
                    self.st.slots[0].close_after = true;
                    let _ =
                        self.st.respond(cx, RequestId(id), response::status(StatusCode::SERVICE_UNAVAILABLE));
                } else {
                    cx.transport().abort_connection_with(DisconnectReason::TimedOut);
                }
            }
        }
    }
}

fn body_reason(e: &super::body::BodyError) -> &'static str {
    use super::body::BodyError::*;
    match e {
        ChunkSize => "bad chunk size",
        ChunkExtension => "bad chunk extension",
        TooLong => "chunk line or trailers too long",
        Trailer => "bad trailer field",
        _ => "bad chunk framing",
    }
}

impl<H: Handler> Protocol for HttpProtocol<H> {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.st.shared.borrow_mut().conn = Some(cx.conn_id());
        self.st.idle_since = cx.now();
        self.st.settle(cx);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        response::refresh_date();
        if self.st.inbuf.is_empty() {
            let n = self.consume(cx, data);
            self.st.inbuf.extend_from_slice(&data[n..]);
        } else {
            self.st.inbuf.extend_from_slice(data);
        }
        self.pump(cx);
    }

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        self.st.peer_eof = true;
        match self.st.read {
            ReadState::Upgraded => return false,
            // A body cut short: no `end` will come; close once what is owed is written.
            ReadState::Body { id, .. } => {
                self.st.read = ReadState::Stopped;
                if self.st.slots.back().is_some_and(|s| s.id == id && s.state == Resp::Pending) {
                    self.st.slots.pop_back();
                }
            }
            _ => {}
        }
        self.pump(cx);
        // Keep the write side open for responses still owed.
        !self.st.slots.is_empty()
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.st.closing = true;
        self.st.shared.borrow_mut().in_flight = false;
        let mut hx = HttpCtx { cx, st: &mut self.st, current: None };
        self.handler.connection_lost(&mut hx, reason);
    }

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        response::refresh_date();
        let wake = {
            let mut shared = self.st.shared.borrow_mut();
            let found = shared.wakes.iter().position(|&t| t == timer);
            found.map(|i| shared.wakes.swap_remove(i)).is_some()
        };
        if !wake {
            if self.st.timer.is_some_and(|(t, _)| t == timer) {
                self.on_timer(cx);
            } else {
                let mut hx = HttpCtx { cx, st: &mut self.st, current: None };
                self.handler.timer_fired(&mut hx, timer);
            }
        }
        self.pump(cx);
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.st.write_blocked = true;
        self.st.sync_reading(cx);
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        response::refresh_date();
        self.st.write_blocked = false;
        let mut hx = HttpCtx { cx, st: &mut self.st, current: None };
        self.handler.writable(&mut hx);
        self.pump(cx);
    }
}

impl St {
    pub(super) fn slot_index(&self, id: u64) -> Option<usize> {
        let front = self.slots.front()?.id;
        let i = usize::try_from(id.checked_sub(front)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    pub(super) fn is_idle(&self) -> bool {
        self.slots.is_empty() && matches!(self.read, ReadState::Head) && self.inbuf.is_empty()
    }

    pub(crate) fn buffer_body(&mut self) {
        if let ReadState::Body { buffered, .. } = &mut self.read {
            buffered.get_or_insert_with(Vec::new);
        }
    }

    pub(crate) fn responder(&self, conn: ConnId, id: RequestId) -> Responder {
        Responder { conn, id, shared: Rc::downgrade(&self.shared) }
    }

    /// Reading on or off, the graceful stop, and the one lazily re-armed timer.
    fn settle(&mut self, cx: &mut Ctx<'_>) {
        if std::mem::take(&mut self.idle_stale) && self.slots.is_empty() {
            self.idle_since = cx.now();
        }
        let in_flight = !self.slots.is_empty() || matches!(self.read, ReadState::Body { .. });
        let (stopping, held) = {
            let mut shared = self.shared.borrow_mut();
            shared.in_flight = in_flight;
            (shared.stopping, shared.held)
        };
        if held && self.slots.is_empty() {
            // The last response is out: let the reactor's close go ahead.
            self.shared.borrow_mut().held = false;
            cx.transport().unregister_producer();
        }
        if !self.closing && self.slots.is_empty() && (stopping || self.peer_eof) {
            self.closing = true;
            cx.transport().lose_connection();
            return;
        }
        self.sync_reading(cx);
        let config = &self.config;
        let mut due: Option<Instant> = None;
        if !self.closing {
            if self.is_idle() {
                due = Some(self.idle_since + config.idle_timeout);
            }
            if let Some(started) = self.head_started {
                due = Some(
                    due.map_or(started + config.header_timeout, |d| d.min(started + config.header_timeout)),
                );
            }
            if let (Some(limit), Some(front)) = (config.response_timeout, self.slots.front()) {
                due = Some(due.map_or(front.started + limit, |d| d.min(front.started + limit)));
            }
        }
        let Some(due) = due else { return };
        if self.timer.is_some_and(|(_, at)| at <= due) {
            return;
        }
        if let Some((old, _)) = self.timer.take() {
            cx.cancel_timer(old);
        }
        let delay = due.saturating_duration_since(cx.now());
        self.timer = Some((cx.set_timer(delay), due));
    }

    /// Reads the socket only when the input can be used now.
    pub(crate) fn sync_reading(&mut self, cx: &mut Ctx<'_>) {
        let want = !self.closing
            && !self.write_blocked
            && match self.read {
                ReadState::Head => {
                    self.slots.len() < self.config.max_pipeline && self.inbuf.len() < self.config.max_head
                }
                ReadState::Body { .. } => !self.body_paused,
                ReadState::Stopped => false,
                ReadState::Upgraded => true,
            };
        if want != self.reading {
            self.reading = want;
            if want {
                cx.transport().resume_reading();
            } else {
                cx.transport().pause_reading();
            }
        }
    }
}
