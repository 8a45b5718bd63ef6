//! [`IntNDecoder`]: strings preceded by an 8, 16 or 32-bit length. Pure: no sockets, no
//! reactor.

use std::ops::ControlFlow;

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
    core: Core,
    buf: Vec<u8>,
}

/// The parser proper: settings, state and position, over a buffer it is handed (the
/// decoder's own, or the caller's chunk on the copy-free path).
#[derive(Debug, Clone)]
struct Core {
    encoder: IntNEncoder,
    start: usize,
    state: State,
    frames: u64,
}

impl IntNDecoder {
    /// A decoder for `prefix`, big-endian, with the default maximum of 99999 bytes.
    pub fn new(prefix: LengthPrefix) -> IntNDecoder {
        IntNDecoder {
            core: Core {
                encoder: IntNEncoder {
                    prefix,
                    endianness: Endianness::Big,
                    max_length: DEFAULT_MAX_STRING_LENGTH,
                },
                start: 0,
                state: State::Header,
                frames: 0,
            },
            buf: Vec::new(),
        }
    }

    /// Sets the byte order of the prefix.
    pub fn with_endianness(mut self, endianness: Endianness) -> Self {
        self.core.encoder.endianness = endianness;
        self
    }

    /// Sets the longest accepted string.
    pub fn with_max_length(mut self, max: usize) -> Self {
        self.core.encoder.max_length = max;
        self
    }

    /// Sets the byte order of the prefix (for prefixes not yet parsed).
    pub fn set_endianness(&mut self, endianness: Endianness) {
        self.core.encoder.endianness = endianness;
    }

    /// The prefix width.
    pub fn prefix(&self) -> LengthPrefix {
        self.core.encoder.prefix
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

    /// Drops consumed bytes; an emptied buffer larger than a frame is given back.
    fn compact(&mut self) {
        if self.core.start == self.buf.len() {
            self.buf.clear();
            let frame = self.core.encoder.max_length.saturating_add(self.core.encoder.prefix.width());
            if self.buf.capacity() > SHRINK_ABOVE.max(frame) {
                self.buf = Vec::new();
            }
        } else if self.core.start > 0 {
            self.buf.drain(..self.core.start);
        }
        self.core.start = 0;
    }
}

/// Pushes and drains a decoder into owned results.
pub(crate) fn feed<D: StringDecoder>(decoder: &mut D, data: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
    let mut out = Vec::new();
    decoder.feed_with(data, |result| {
        out.push(result.map(<[u8]>::to_vec));
        ControlFlow::Continue(())
    });
    out
}

impl Core {
    fn decode_length(&self, prefix: &[u8]) -> u64 {
        let mut value = 0u64;
        match self.encoder.endianness {
            Endianness::Big => prefix.iter().for_each(|&b| value = value << 8 | u64::from(b)),
            Endianness::Little => prefix.iter().rev().for_each(|&b| value = value << 8 | u64::from(b)),
        }
        value
    }

    /// The next string in `buf` from `start` on.
    fn next<'b>(&mut self, buf: &'b [u8]) -> Option<Result<&'b [u8], FrameError>> {
        loop {
            let avail = buf.len() - self.start;
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
                    let length = self.decode_length(&buf[self.start..self.start + width]);
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
                    return Some(Ok(&buf[body..body + length]));
                }
            }
        }
    }
}

impl StringDecoder for IntNDecoder {
    type Encoder = IntNEncoder;

    fn push(&mut self, data: &[u8]) {
        self.compact();
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
        if self.buffered_len() > 0 {
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
        self.buf.extend_from_slice(&data[self.core.start..]);
        self.core.start = 0;
    }

    fn buffered_len(&self) -> usize {
        self.buf.len() - self.core.start
    }

    fn is_mid_frame(&self) -> bool {
        self.core.start < self.buf.len() || matches!(self.core.state, State::Skip(_))
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

    fn encoder(&self) -> IntNEncoder {
        self.core.encoder
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
    core.state = if drop == left {
        core.frames += 1;
        State::Header
    } else {
        State::Skip(left - drop)
    };
    &data[drop as usize..]
}
