//! RFC 6455 framing: a pure push decoder ([`FrameDecoder`]) and the encoder
//! ([`encode_frame`]). No I/O, no reactor: bytes in, events out.

use std::fmt;

/// Close codes (RFC 6455 §7.4.1) this crate sends or reports.
pub mod close_code {
    /// 1000: normal closure.
    pub const NORMAL: u16 = 1000;
    /// 1001: going away (server shutting down, page closed).
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: protocol error (bad framing, unmasked client frame, reserved bits, bad opcode).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// 1005: no status code was present (reported only, never sent).
    pub const NO_STATUS: u16 = 1005;
    /// 1006: the connection ended without a close frame (reported only, never sent).
    pub const ABNORMAL: u16 = 1006;
    /// 1007: a text message was not valid UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// 1008: policy violation.
    pub const POLICY: u16 = 1008;
    /// 1009: a frame or message over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Default limit on a whole message (all fragments together): 1 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;
/// Default limit on one frame's payload: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Opcode {
    /// 0x0: continuation of a fragmented message.
    Continuation,
    /// 0x1: text (UTF-8).
    Text,
    /// 0x2: binary.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    fn from_bits(b: u8) -> Option<Opcode> {
        Some(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit opcode.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A complete message, borrowed from the decoder until the next call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (validated UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Text(t) => write!(f, "Text({} bytes)", t.len()),
            Message::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

/// What the decoder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message (fragments reassembled).
    Message(Message<'a>),
    /// A ping with its application data.
    Ping(&'a [u8]),
    /// A pong with its application data.
    Pong(&'a [u8]),
    /// A close frame: its code and reason, `None` when it had no body (report 1005).
    Close(Option<(u16, &'a str)>),
}

/// Why the peer's bytes are not a valid WebSocket stream; [`WsError::close_code`] is the code
/// to close with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// A reserved bit was set (no extension negotiated): 1002.
    #[error("a reserved bit is set")]
    ReservedBits,
    /// An opcode RFC 6455 does not define: 1002.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A client frame without a mask (servers must reject it), or a masked server frame: 1002.
    #[error("frame masking is wrong for this side")]
    BadMask,
    /// A control frame fragmented or over 125 bytes: 1002.
    #[error("bad control frame")]
    BadControl,
    /// A continuation with no message started, or a new message inside a fragmented one: 1002.
    #[error("bad fragmentation")]
    BadFragmentation,
    /// A 64-bit length with the top bit set, or a length not in its shortest form... only the
    /// former is checked (RFC 6455 §5.2): 1002.
    #[error("bad payload length")]
    BadLength,
    /// A close frame with a 1-byte body, an invalid code or a reason that is not UTF-8: 1002
    /// (1007 for the reason).
    #[error("bad close frame")]
    BadClose,
    /// Text that is not UTF-8 (checked as it arrives, across fragments): 1007.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// A frame over the frame limit: 1009.
    #[error("frame of {0} bytes is over the limit")]
    FrameTooBig(u64),
    /// A message over the message limit: 1009.
    #[error("message over {0} bytes")]
    MessageTooBig(usize),
}

impl WsError {
    /// The close code RFC 6455 says to fail the connection with.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::InvalidUtf8 => close_code::INVALID_DATA,
            WsError::FrameTooBig(_) | WsError::MessageTooBig(_) => close_code::TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// Which end of the connection this decoder is: a server requires masked frames, a client
/// refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// Decoding frames a client sent (must be masked).
    Server,
    /// Decoding frames a server sent (must not be masked).
    Client,
}

#[derive(Debug, Clone, Copy)]
struct FrameHead {
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    remaining: u64,
    /// Bytes of this frame's payload unmasked so far (the mask's phase).
    done: u64,
}

/// A push decoder: feed it bytes in any pieces with [`decode`](FrameDecoder::decode); it
/// keeps at most one frame header (14 bytes), the message being reassembled (at most the
/// message limit) and one control payload (125 bytes).
#[derive(Debug)]
pub struct FrameDecoder {
    role: Role,
    max_frame: usize,
    max_message: usize,
    head: [u8; 14],
    head_len: usize,
    frame: Option<FrameHead>,
    /// The data message in progress: its opcode (Text or Binary), or `None`.
    msg_kind: Option<Opcode>,
    msg: Vec<u8>,
    /// For text: how much of `msg` is known to be valid UTF-8.
    utf8_ok: usize,
    control: Vec<u8>,
    failed: Option<WsError>,
    /// The last event borrowed from `msg` or `control`: clear it on the next call.
    clear_msg: bool,
}

impl FrameDecoder {
    /// A decoder for `role` with the default limits.
    pub fn new(role: Role) -> FrameDecoder {
        FrameDecoder {
            role,
            max_frame: DEFAULT_MAX_FRAME,
            max_message: DEFAULT_MAX_MESSAGE,
            head: [0; 14],
            head_len: 0,
            frame: None,
            msg_kind: None,
            msg: Vec::new(),
            utf8_ok: 0,
            control: Vec::with_capacity(125),
            failed: None,
            clear_msg: false,
        }
    }

    /// Sets the frame payload limit (default [`DEFAULT_MAX_FRAME`]).
    pub fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max;
    }

    /// Sets the message limit (default [`DEFAULT_MAX_MESSAGE`]).
    pub fn set_max_message(&mut self, max: usize) {
        self.max_message = max;
    }

    /// Decodes from `input`: returns how many bytes were used and at most one event (call
    /// again with the rest). The event borrows the decoder. After an error, every further call
    /// returns the same error: the connection should close.
    pub fn decode<'s>(&'s mut self, input: &[u8]) -> Result<(usize, Option<Event<'s>>), WsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.clear_msg {
            self.clear_msg = false;
            self.msg.clear();
            self.utf8_ok = 0;
            self.msg_kind = None;
        }
        match self.step(input) {
            Ok((used, Some(ev))) => Ok((used, Some(self.event(ev)))),
            Ok((used, None)) => Ok((used, None)),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn step(&mut self, input: &[u8]) -> Result<(usize, Option<Opcode>), WsError> {
        let mut used = 0;
        loop {
            let Some(frame) = self.frame.as_mut() else {
                // Gather the header (its length is known once its first two bytes are).
                let need = header_len(&self.head[..self.head_len]);
                if self.head_len < need {
                    if used == input.len() {
                        return Ok((used, None));
                    }
                    let take = (need - self.head_len).min(input.len() - used);
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&input[used..used + take]);
                    self.head_len += take;
                    used += take;
                    continue;
                }
                let head = self.parse_head()?;
                self.head_len = 0;
                self.frame = Some(head);
                if head.remaining == 0 {
                    if let Some(done) = self.finish_frame()? {
                        return Ok((used, Some(done)));
                    }
                }
                continue;
            };
            if used == input.len() {
                return Ok((used, None));
            }
            let take = (frame.remaining.min((input.len() - used) as u64)) as usize;
            let piece = &input[used..used + take];
            let target = if frame.opcode.is_control() { &mut self.control } else { &mut self.msg };
            let start = target.len();
            target.extend_from_slice(piece);
            if let Some(mask) = frame.mask {
                apply_mask(&mut target[start..], mask, (frame.done % 4) as usize);
            }
            frame.done += take as u64;
            frame.remaining -= take as u64;
            used += take;
            if !frame.opcode.is_control() && self.msg_kind == Some(Opcode::Text) {
                self.check_utf8(false)?;
            }
            if self.frame.is_some_and(|f| f.remaining == 0) {
                if let Some(done) = self.finish_frame()? {
                    return Ok((used, Some(done)));
                }
            }
        }
    }

    fn parse_head(&mut self) -> Result<FrameHead, WsError> {
        let h = &self.head;
        if h[0] & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let opcode = Opcode::from_bits(h[0] & 0x0F).ok_or(WsError::UnknownOpcode(h[0] & 0x0F))?;
        let fin = h[0] & 0x80 != 0;
        let masked = h[1] & 0x80 != 0;
        if masked != (self.role == Role::Server) {
            return Err(WsError::BadMask);
        }
        let (len, at) = match h[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let len = u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]);
                if len >> 63 != 0 {
                    return Err(WsError::BadLength);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = masked.then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        if opcode.is_control() {
            if !fin || len > 125 {
                return Err(WsError::BadControl);
            }
            self.control.clear();
        } else {
            if len > self.max_frame as u64 {
                return Err(WsError::FrameTooBig(len));
            }
            match (opcode, self.msg_kind) {
                (Opcode::Continuation, None) => return Err(WsError::BadFragmentation),
                (Opcode::Continuation, Some(_)) => {}
                (_, Some(_)) => return Err(WsError::BadFragmentation),
                (kind, None) => {
                    self.msg_kind = Some(kind);
                    self.msg.clear();
                    self.utf8_ok = 0;
                }
            }
            if self.msg.len() as u64 + len > self.max_message as u64 {
                return Err(WsError::MessageTooBig(self.max_message));
            }
            // Reserve for what is claimed only up to 64 KiB: the rest grows as it arrives, so
            // headers alone cannot make the decoder hold memory.
            self.msg.reserve(len.min(64 * 1024) as usize);
        }
        Ok(FrameHead { fin, opcode, mask, remaining: len, done: 0 })
    }

    /// The current frame is complete: returns the event kind it completes, if any.
    fn finish_frame(&mut self) -> Result<Option<Opcode>, WsError> {
        let frame = self.frame.take().expect("a frame is in progress");
        match frame.opcode {
            Opcode::Close => {
                if self.control.len() == 1 {
                    return Err(WsError::BadClose);
                }
                if self.control.len() >= 2 {
                    let code = u16::from_be_bytes([self.control[0], self.control[1]]);
                    if !valid_close_code(code) {
                        return Err(WsError::BadClose);
                    }
                    if std::str::from_utf8(&self.control[2..]).is_err() {
                        return Err(WsError::InvalidUtf8);
                    }
                }
                Ok(Some(Opcode::Close))
            }
            Opcode::Ping | Opcode::Pong => Ok(Some(frame.opcode)),
            _ if frame.fin => {
                if self.msg_kind == Some(Opcode::Text) {
                    self.check_utf8(true)?;
                }
                Ok(self.msg_kind)
            }
            _ => Ok(None),
        }
    }

    /// Validates the text received so far; a sequence cut at the end is fine unless `whole`.
    fn check_utf8(&mut self, whole: bool) -> Result<(), WsError> {
        match std::str::from_utf8(&self.msg[self.utf8_ok..]) {
            Ok(_) => {
                self.utf8_ok = self.msg.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !whole => {
                self.utf8_ok += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(WsError::InvalidUtf8),
        }
    }

    fn event(&mut self, kind: Opcode) -> Event<'_> {
        match kind {
            Opcode::Ping => Event::Ping(&self.control),
            Opcode::Pong => Event::Pong(&self.control),
            Opcode::Close => {
                if self.control.len() < 2 {
                    Event::Close(None)
                } else {
                    let code = u16::from_be_bytes([self.control[0], self.control[1]]);
                    let reason = std::str::from_utf8(&self.control[2..]).unwrap_or("");
                    Event::Close(Some((code, reason)))
                }
            }
            Opcode::Text => {
                self.clear_msg = true;
                Event::Message(Message::Text(std::str::from_utf8(&self.msg).unwrap_or("")))
            }
            _ => {
                self.clear_msg = true;
                Event::Message(Message::Binary(&self.msg))
            }
        }
    }
}

/// How long the header starting with `head` is (2 until the length byte is known).
fn header_len(head: &[u8]) -> usize {
    if head.len() < 2 {
        return 2;
    }
    let mask = if head[1] & 0x80 != 0 { 4 } else { 0 };
    2 + mask
        + match head[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        }
}

/// Codes a peer may send in a close frame (RFC 6455 §7.4).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Appends one frame to `out`: header, then `payload` (masked with `mask` when given, as a
/// client must). Control frames must be 125 bytes or less; the caller checks.
pub fn encode_frame(out: &mut Vec<u8>, opcode: Opcode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_header(out, opcode, fin, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask, 0);
    }
}

/// XORs `buf` with `mask`, starting at byte `phase` of the mask (RFC 6455 §5.3). Eight bytes
/// at a time (the compiler vectorises it): a per-byte loop was most of the CPU a server spent
/// on a 64 KiB message.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    let m = [mask[phase % 4], mask[(phase + 1) % 4], mask[(phase + 2) % 4], mask[(phase + 3) % 4]];
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Whole 8-byte chunks keep the phase: the rest starts at `m[0]`.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// Appends only a frame header for a payload of `len` bytes (the payload follows, masked by
/// the caller if `mask` is given).
pub fn encode_header(out: &mut Vec<u8>, opcode: Opcode, fin: bool, len: usize, mask: Option<[u8; 4]>) {
    out.push(if fin { 0x80 } else { 0 } | opcode.bits());
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xFFFF {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// A close frame body: the code, then the reason cut to fit in 125 bytes (at a char boundary).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(&reason.as_bytes()[..cut]);
    body
}
