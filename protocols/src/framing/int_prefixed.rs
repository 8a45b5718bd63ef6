//! [`IntNDecoder`]: strings preceded by an 8, 16 or 32-bit length. Pure: no sockets, no
//! reactor.

use super::{FrameError, FrameHeader, StringDecoder, StringEncoder};

/// Twisted's `IntNStringReceiver.MAX_LENGTH`: the default longest string, in bytes.
pub const DEFAULT_MAX_STRING_LENGTH: usize = 99999;

/// Capacity above which an emptied buffer is given back to the allocator.
const SHRINK_ABOVE: usize = 256 * 1024;

/// The width of the length prefix (Twisted's `Int8StringReceiver`, `Int16StringReceiver`,
/// `Int32StringReceiver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LengthPrefix {
    /// One byte: strings of at most 255 bytes.
    Int8,
    /// Two bytes: strings of at most 65535 bytes.
    Int16,
    /// Four bytes: strings of at most 4294967295 bytes (and the decoder's maximum).
    Int32,
}

impl LengthPrefix {
    /// The prefix's size in bytes.
    pub fn width(self) -> usize {
        match self {
            LengthPrefix::Int8 => 1,
            LengthPrefix::Int16 => 2,
            LengthPrefix::Int32 => 4,
        }
    }

    /// The largest length the prefix can express.
    pub fn limit(self) -> u64 {
        match self {
            LengthPrefix::Int8 => u8::MAX.into(),
            LengthPrefix::Int16 => u16::MAX.into(),
            LengthPrefix::Int32 => u32::MAX.into(),
        }
    }
}

/// Byte order of the length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Endianness {
    /// Most significant byte first, network order (Twisted's `"!H"`, `"!I"`). The default.
    #[default]
    Big,
    /// Least significant byte first.
    Little,
}

/// The encoding half of an [`IntNDecoder`]: prefix width, byte order and maximum length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntNEncoder {
    prefix: LengthPrefix,
    endianness: Endianness,
    max_length: usize,
}

impl IntNEncoder {
    /// The prefix width.
    pub fn prefix(&self) -> LengthPrefix {
        self.prefix
    }

    /// The byte order.
    pub fn endianness(&self) -> Endianness {
        self.endianness
    }
}

impl StringEncoder for IntNEncoder {
    fn header(&self, length: usize) -> Result<FrameHeader, FrameError> {
        let limit = self.prefix.limit();
        if length as u64 > limit {
            return Err(FrameError::TooLongForPrefix { length, limit });
        }
        if length > self.max_length {
            return Err(FrameError::LengthLimitExceeded { length: length as u64, max: self.max_length });
        }
        let value = length as u32;
        let bytes = match self.endianness {
            Endianness::Big => value.to_be_bytes(),
            Endianness::Little => value.to_le_bytes(),
        };
        let width = self.prefix.width();
        let prefix = match self.endianness {
            Endianness::Big => &bytes[4 - width..],
            Endianness::Little => &bytes[..width],
        };
        Ok(FrameHeader::new(prefix))
    }

    fn trailer(&self) -> &'static [u8] {
        b""
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the length prefix.
    Header,
    /// Dropping the body of a string that was too long: this many bytes left.
    Skip(u64),
}

/// Decodes length-prefixed strings (Twisted's `IntNStringReceiver`): a big-endian (by
/// default) unsigned length of 1, 2 or 4 bytes, then that many bytes.
///
/// A string of exactly [`max_length`](IntNDecoder::max_length) bytes (default 99999) is
/// accepted; a longer length is [`FrameError::LengthLimitExceeded`] as soon as its prefix is
/// complete, before any of its body is buffered, so a prefix of `0xFFFF_FFFF` costs nothing.
/// The decoder then skips that many bytes without keeping them and goes on with the next
/// prefix (the [`StringReceiver`](super::StringReceiver) closes the connection by default).
///
/// ```
/// use torsion_protocols::framing::{FrameError, IntNDecoder, LengthPrefix};
///
/// let mut strings = IntNDecoder::new(LengthPrefix::Int16).with_max_length(3);
/// assert_eq!(strings.feed(b"\x00\x03abc\x00"), vec![Ok(b"abc".to_vec())]);
/// assert_eq!(strings.feed(b"\x00"), vec![Ok(Vec::new())]);
/// assert_eq!(
///     strings.feed(b"\x00\x04abcd\x00\x01z"),
///     vec![Err(FrameError::LengthLimitExceeded { length: 4, max: 3 }), Ok(b"z".to_vec())]
/// );
/// ```
#[derive(Debug, Clone)]
pub struct IntNDecoder {
    encoder: IntNEncoder,
    buf: Vec<u8>,
    start: usize,
    state: State,
    frames: u64,
}

impl IntNDecoder {
    /// A decoder for `prefix`, big-endian, with the default maximum of 99999 bytes.
    pub fn new(prefix: LengthPrefix) -> IntNDecoder {
        IntNDecoder {
            encoder: IntNEncoder {
                prefix,
                endianness: Endianness::Big,
                max_length: DEFAULT_MAX_STRING_LENGTH,
            },
            buf: Vec::new(),
            start: 0,
            state: State::Header,
            frames: 0,
        }
    }

    /// Sets the byte order of the prefix.
    pub fn with_endianness(mut self, endianness: Endianness) -> Self {
        self.encoder.endianness = endianness;
        self
    }

    /// Sets the longest accepted string.
    pub fn with_max_length(mut self, max: usize) -> Self {
        self.encoder.max_length = max;
        self
    }

    /// Sets the byte order of the prefix (for prefixes not yet parsed).
    pub fn set_endianness(&mut self, endianness: Endianness) {
        self.encoder.endianness = endianness;
    }

    /// The prefix width.
    pub fn prefix(&self) -> LengthPrefix {
        self.encoder.prefix
    }

    /// Pushes `data` and returns every result it completes, as owned strings.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        feed(self, data)
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

    fn decode_length(&self, prefix: &[u8]) -> u64 {
        let mut value = 0u64;
        match self.encoder.endianness {
            Endianness::Big => prefix.iter().for_each(|&b| value = value << 8 | u64::from(b)),
            Endianness::Little => prefix.iter().rev().for_each(|&b| value = value << 8 | u64::from(b)),
        }
        value
    }
}

/// Pushes and drains a decoder into owned results.
pub(crate) fn feed<D: StringDecoder + ?Sized>(
    decoder: &mut D,
    data: &[u8],
) -> Vec<Result<Vec<u8>, FrameError>> {
    decoder.push(data);
    let mut out = Vec::new();
    while let Some(result) = decoder.next_string() {
        out.push(result.map(<[u8]>::to_vec));
    }
    out
}

impl StringDecoder for IntNDecoder {
    type Encoder = IntNEncoder;

    fn push(&mut self, mut data: &[u8]) {
        self.compact();
        // Skipping a too-long body with nothing buffered: drop it without copying.
        if let State::Skip(left) = self.state {
            if self.buf.is_empty() {
                let drop = left.min(data.len() as u64);
                data = &data[drop as usize..];
                self.state = if drop == left {
                    self.frames += 1;
                    State::Header
                } else {
                    State::Skip(left - drop)
                };
            }
        }
        self.buf.extend_from_slice(data);
    }

    fn next_string(&mut self) -> Option<Result<&[u8], FrameError>> {
        loop {
            let avail = self.buf.len() - self.start;
            match self.state {
                State::Skip(left) => {
                    let drop = left.min(avail as u64);
                    self.start += drop as usize;
                    if drop < left {
                        self.state = State::Skip(left - drop);
                        return None;
                    }
                    self.state = State::Header;
                    self.frames += 1;
                }
                State::Header => {
                    let width = self.encoder.prefix.width();
                    if avail < width {
                        return None;
                    }
                    let length = self.decode_length(&self.buf[self.start..self.start + width]);
                    if length > self.encoder.max_length as u64 {
                        self.start += width;
                        self.state = State::Skip(length);
                        return Some(Err(FrameError::LengthLimitExceeded {
                            length,
                            max: self.encoder.max_length,
                        }));
                    }
                    // length <= max_length, so it fits in usize.
                    let length = length as usize;
                    if avail - width < length {
                        return None;
                    }
                    let body = self.start + width;
                    self.start = body + length;
                    self.frames += 1;
                    return Some(Ok(&self.buf[body..body + length]));
                }
            }
        }
    }

    fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn is_mid_frame(&self) -> bool {
        self.start < self.buf.len() || matches!(self.state, State::Skip(_))
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

    fn encoder(&self) -> IntNEncoder {
        self.encoder
    }
}
