//! [`NetstringDecoder`]: D. J. Bernstein's netstrings, `<length>:<data>,`. Pure: no sockets,
//! no reactor.

use std::ops::ControlFlow;

use super::int_prefixed::{feed, DEFAULT_MAX_STRING_LENGTH};
use super::{FrameError, FrameHeader, StringDecoder, StringEncoder};

/// Capacity above which an emptied buffer is given back to the allocator.
const SHRINK_ABOVE: usize = 256 * 1024;

/// The encoding half of a [`NetstringDecoder`]: its maximum length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetstringEncoder {
    max_length: usize,
}

impl StringEncoder for NetstringEncoder {
    fn header(&self, length: usize) -> Result<FrameHeader, FrameError> {
        if length > self.max_length {
            return Err(FrameError::LengthLimitExceeded { length: length as u64, max: self.max_length });
        }
        let mut digits = [0u8; 21];
        let mut at = digits.len() - 1;
        digits[at] = b':';
        let mut n = length;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Ok(FrameHeader::new(&digits[at..]))
    }

    fn trailer(&self) -> &'static [u8] {
        b","
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the decimal length: its value and digit count so far.
    Length { value: u64, digits: u32 },
    /// The string proper: this many bytes, then a comma.
    Body(usize),
    /// Dropping a too-long string's body (this many bytes left), then its comma.
    Skip(u64),
    /// Expecting the comma after a skipped body.
    SkipComma,
    /// Malformed input was seen; nothing more is parsed.
    Failed,
}

/// Decodes netstrings (Twisted's `NetstringReceiver`): `12:hello world!,`.
///
/// The rules, checked as each byte arrives (so a bad stream is rejected early, before its
/// claimed body is read):
/// - the length is ASCII decimal digits followed by `:`; an empty length (`:abc,`), any other
///   byte (`3abc,`, `abc`) or a leading zero (`01:a,`; `0:,` itself is fine) is
///   [`FrameError::MalformedNetstring`];
/// - a length with more digits than [`max_length`](NetstringDecoder::max_length) has (6 or
///   more for the default 99999) is malformed at once, before the `:`;
/// - a length above `max_length` is [`FrameError::LengthLimitExceeded`] (a string of exactly
///   `max_length` bytes is accepted); its body is skipped without being kept and must still
///   end with a comma;
/// - the byte after the data must be `,` (`2:abc,` and `0:a,` are malformed).
///
/// Malformed input cannot be resynchronised: after it the decoder returns nothing more and
/// ignores further input. The [`StringReceiver`](super::StringReceiver) closes the connection
/// with a protocol error.
///
/// ```
/// use torsion_protocols::framing::{FrameError, NetstringDecoder};
///
/// let mut strings = NetstringDecoder::new();
/// assert_eq!(strings.feed(b"5:hello,0:,1:"), vec![Ok(b"hello".to_vec()), Ok(Vec::new())]);
/// assert_eq!(strings.feed(b"x,"), vec![Ok(b"x".to_vec())]);
/// assert_eq!(strings.feed(b"2:abc,"), vec![Err(FrameError::MalformedNetstring("missing comma after the string"))]);
/// ```
#[derive(Debug, Clone)]
pub struct NetstringDecoder {
    core: Core,
    buf: Vec<u8>,
}

/// The parser proper, over a buffer it is handed (the decoder's own, or the caller's chunk on
/// the copy-free path).
#[derive(Debug, Clone)]
struct Core {
    encoder: NetstringEncoder,
    start: usize,
    state: State,
    frames: u64,
}

impl Default for NetstringDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Number of decimal digits of `n`.
fn digit_count(mut n: usize) -> u32 {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

impl NetstringDecoder {
    /// A decoder with the default maximum of 99999 bytes.
    pub fn new() -> NetstringDecoder {
        NetstringDecoder {
            core: Core {
                encoder: NetstringEncoder { max_length: DEFAULT_MAX_STRING_LENGTH },
                start: 0,
                state: State::Length { value: 0, digits: 0 },
                frames: 0,
            },
            buf: Vec::new(),
        }
    }

    /// Sets the longest accepted string.
    pub fn with_max_length(mut self, max: usize) -> Self {
        self.core.encoder.max_length = max;
        self
    }

    /// Bytes of memory the buffer holds (its capacity): zero while idle after whole frames,
    /// never much more than one frame.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Pushes `data` and returns every result it completes, as owned strings.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        feed(self, data)
    }

    /// True once malformed input was seen (nothing more will be decoded).
    pub fn is_failed(&self) -> bool {
        self.core.state == State::Failed
    }

    /// Drops consumed bytes (all of them after a failure); an emptied buffer larger than a
    /// frame is given back.
    fn compact(&mut self) {
        if self.core.start == self.buf.len() || self.is_failed() {
            self.buf.clear();
            if self.buf.capacity() > SHRINK_ABOVE.max(self.core.encoder.max_length.saturating_add(24))
                || self.is_failed()
            {
                self.buf = Vec::new();
            }
        } else if self.core.start > 0 {
            self.buf.drain(..self.core.start);
        }
        self.core.start = 0;
    }
}

impl Core {
    fn fail<'b>(&mut self, what: &'static str) -> Option<Result<&'b [u8], FrameError>> {
        self.state = State::Failed;
        Some(Err(FrameError::MalformedNetstring(what)))
    }

    /// The next netstring in `buf` from `start` on.
    fn next<'b>(&mut self, buf: &'b [u8]) -> Option<Result<&'b [u8], FrameError>> {
        loop {
            let avail = buf.len() - self.start;
            match self.state {
                State::Failed => return None,
                State::Length { mut value, mut digits } => {
                    let max_digits = digit_count(self.encoder.max_length);
                    loop {
                        let Some(&byte) = buf.get(self.start) else {
                            self.state = State::Length { value, digits };
                            return None;
                        };
                        self.start += 1;
                        match byte {
                            b'0'..=b'9' => {
                                if digits > 0 && value == 0 {
                                    return self.fail("the length has a leading zero");
                                }
                                digits += 1;
                                let next =
                                    value.checked_mul(10).and_then(|v| v.checked_add(u64::from(byte - b'0')));
                                match next {
                                    Some(next) if digits <= max_digits => value = next,
                                    _ => {
                                        return self
                                            .fail("the length has more digits than the maximum allows")
                                    }
                                }
                            }
                            b':' if digits == 0 => return self.fail("the length is empty"),
                            b':' => break,
                            _ => return self.fail("the length is not a decimal number followed by ':'"),
                        }
                    }
                    if value > self.encoder.max_length as u64 {
                        self.state = State::Skip(value);
                        return Some(Err(FrameError::LengthLimitExceeded {
                            length: value,
                            max: self.encoder.max_length,
                        }));
                    }
                    // value <= max_length, so it fits in usize.
                    self.state = State::Body(value as usize);
                }
                State::Body(length) => {
                    if avail <= length {
                        return None;
                    }
                    if buf[self.start + length] != b',' {
                        return self.fail("missing comma after the string");
                    }
                    let body = self.start;
                    self.start += length + 1;
                    self.state = State::Length { value: 0, digits: 0 };
                    self.frames += 1;
                    return Some(Ok(&buf[body..body + length]));
                }
                State::Skip(left) => {
                    let drop = left.min(avail as u64);
                    self.start += drop as usize;
                    if drop < left {
                        self.state = State::Skip(left - drop);
                        return None;
                    }
                    self.state = State::SkipComma;
                }
                State::SkipComma => {
                    if avail == 0 {
                        return None;
                    }
                    if buf[self.start] != b',' {
                        return self.fail("missing comma after the string");
                    }
                    self.start += 1;
                    self.frames += 1;
                    self.state = State::Length { value: 0, digits: 0 };
                }
            }
        }
    }
}

/// Skipping a too-long body with nothing buffered: drops its bytes from the front of `data`
/// without copying them; returns the rest.
fn skip_directly<'d>(core: &mut Core, nothing_buffered: bool, data: &'d [u8]) -> &'d [u8] {
    let State::Skip(left) = core.state else { return data };
    if !nothing_buffered {
        return data;
    }
    let drop = left.min(data.len() as u64);
    core.state = if drop == left { State::SkipComma } else { State::Skip(left - drop) };
    &data[drop as usize..]
}

impl StringDecoder for NetstringDecoder {
    type Encoder = NetstringEncoder;

    fn push(&mut self, data: &[u8]) {
        self.compact();
        if self.is_failed() {
            return;
        }
        let data = skip_directly(&mut self.core, self.buf.is_empty(), data);
        self.buf.extend_from_slice(data);
    }

    fn next_string(&mut self) -> Option<Result<&[u8], FrameError>> {
        self.core.next(&self.buf)
    }

    fn feed_with(
        &mut self,
        data: &[u8],
        mut on_string: impl FnMut(Result<&[u8], FrameError>) -> ControlFlow<()>,
    ) {
        if self.buffered_len() > 0 || self.is_failed() {
            self.push(data);
            while let Some(result) = self.core.next(&self.buf) {
                if on_string(result).is_break() {
                    return;
                }
            }
            return;
        }
        self.compact();
        let data = skip_directly(&mut self.core, true, data);
        while let Some(result) = self.core.next(data) {
            if on_string(result).is_break() {
                break;
            }
        }
        if !self.is_failed() {
            self.buf.extend_from_slice(&data[self.core.start..]);
        }
        self.core.start = 0;
    }

    fn buffered_len(&self) -> usize {
        if self.is_failed() {
            return 0;
        }
        self.buf.len() - self.core.start
    }

    fn is_mid_frame(&self) -> bool {
        match self.core.state {
            State::Failed => false,
            State::Length { digits, .. } => digits > 0 || self.core.start < self.buf.len(),
            _ => true,
        }
    }

    fn frames(&self) -> u64 {
        self.core.frames
    }

    fn max_length(&self) -> usize {
        self.core.encoder.max_length
    }

    fn set_max_length(&mut self, max: usize) {
        self.core.encoder.max_length = max;
    }

    fn encoder(&self) -> NetstringEncoder {
        self.core.encoder
    }
}
