//! [`NetstringDecoder`]: D. J. Bernstein's netstrings, `<length>:<data>,`. Pure: no sockets,
//! no reactor.

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
    encoder: NetstringEncoder,
    buf: Vec<u8>,
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
            encoder: NetstringEncoder { max_length: DEFAULT_MAX_STRING_LENGTH },
            buf: Vec::new(),
            start: 0,
            state: State::Length { value: 0, digits: 0 },
            frames: 0,
        }
    }

    /// Sets the longest accepted string.
    pub fn with_max_length(mut self, max: usize) -> Self {
        self.encoder.max_length = max;
        self
    }

    /// Pushes `data` and returns every result it completes, as owned strings.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        feed(self, data)
    }

    /// True once malformed input was seen (nothing more will be decoded).
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    fn fail(&mut self, what: &'static str) -> Option<Result<&[u8], FrameError>> {
        self.state = State::Failed;
        self.buf = Vec::new();
        self.start = 0;
        Some(Err(FrameError::MalformedNetstring(what)))
    }

    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > SHRINK_ABOVE {
                self.buf = Vec::new();
            }
        } else {
            self.buf.drain(..self.start);
        }
        self.start = 0;
    }
}

impl StringDecoder for NetstringDecoder {
    type Encoder = NetstringEncoder;

    fn push(&mut self, mut data: &[u8]) {
        if self.state == State::Failed {
            return;
        }
        self.compact();
        if let State::Skip(left) = self.state {
            if self.buf.is_empty() {
                let drop = left.min(data.len() as u64);
                data = &data[drop as usize..];
                self.state = if drop == left { State::SkipComma } else { State::Skip(left - drop) };
            }
        }
        self.buf.extend_from_slice(data);
    }

    fn next_string(&mut self) -> Option<Result<&[u8], FrameError>> {
        loop {
            let avail = self.buf.len() - self.start;
            match self.state {
                State::Failed => return None,
                State::Length { mut value, mut digits } => {
                    let max_digits = digit_count(self.encoder.max_length);
                    loop {
                        let Some(&byte) = self.buf.get(self.start) else {
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
                                if digits > max_digits {
                                    return self.fail("the length has more digits than the maximum allows");
                                }
                                let Some(next) =
                                    value.checked_mul(10).and_then(|v| v.checked_add(u64::from(byte - b'0')))
                                else {
                                    return self.fail("the length has more digits than the maximum allows");
                                };
                                value = next;
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
                    if self.buf[self.start + length] != b',' {
                        return self.fail("missing comma after the string");
                    }
                    let body = self.start;
                    self.start += length + 1;
                    self.state = State::Length { value: 0, digits: 0 };
                    self.frames += 1;
                    return Some(Ok(&self.buf[body..body + length]));
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
                    if self.buf[self.start] != b',' {
                        return self.fail("missing comma after the string");
                    }
                    self.start += 1;
                    self.frames += 1;
                    self.state = State::Length { value: 0, digits: 0 };
                }
            }
        }
    }

    fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn is_mid_frame(&self) -> bool {
        match self.state {
            State::Failed => false,
            State::Length { digits, .. } => digits > 0 || self.start < self.buf.len(),
            _ => true,
        }
    }

    fn frames(&self) -> u64 {
        self.frames
    }

    fn max_length(&self) -> usize {
        self.encoder.max_length
    }

    fn set_max_length(&mut self, max: usize) {
        self.encoder.max_length = max;
    }

    fn encoder(&self) -> NetstringEncoder {
        self.encoder
    }
}
