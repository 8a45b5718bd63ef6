//! What every framing decoder must do with any input, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the corpus replay test (`protocols/tests/fuzz_corpus.rs`,
//! which includes this file with `#[path]`), so the fuzzers and CI check the same thing.
//!
//! An input is `[s0, s1, s2, s3, stream...]`: the four leading bytes are chunk sizes (cycled;
//! 0 means 1, so 1-byte splits are common), the rest is the byte stream a peer sends. The
//! checks (reliability.md §7):
//! - no panic, whatever the bytes;
//! - after every chunk the decoder buffers at most its limit plus framing overhead;
//! - the frames and the first error are the same as for a single whole-buffer feed (an error
//!   ends the comparison: the `Protocol` adapters close the connection at the first one).

use torsion_protocols::framing::{
    FrameError, IntNDecoder, LengthPrefix, LineDecoder, NetstringDecoder, StringDecoder,
};

/// Which decoder to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framer {
    /// `LineDecoder` (CRLF, Twisted's default).
    Line,
    /// 8-bit length prefix.
    Int8,
    /// 16-bit length prefix.
    Int16,
    /// 32-bit length prefix.
    Int32,
    /// Netstrings.
    Netstring,
}

/// The limit the fuzzers use: small, so that inputs reach it.
pub const MAX: usize = 64;

/// Framing overhead a decoder may buffer beyond `MAX`: a delimiter, a 4-byte prefix, or a
/// netstring's length digits, colon and comma.
const OVERHEAD: usize = 16;

/// A decoder behind one interface.
enum Decoder {
    Line(LineDecoder),
    Int(IntNDecoder),
    Netstring(NetstringDecoder),
}

impl Decoder {
    fn new(framer: Framer) -> Decoder {
        match framer {
            Framer::Line => Decoder::Line(LineDecoder::new().with_max_length(MAX)),
            Framer::Int8 => Decoder::Int(IntNDecoder::new(LengthPrefix::Int8).with_max_length(MAX)),
            Framer::Int16 => Decoder::Int(IntNDecoder::new(LengthPrefix::Int16).with_max_length(MAX)),
            Framer::Int32 => Decoder::Int(IntNDecoder::new(LengthPrefix::Int32).with_max_length(MAX)),
            Framer::Netstring => Decoder::Netstring(NetstringDecoder::new().with_max_length(MAX)),
        }
    }

    fn feed(&mut self, data: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        match self {
            Decoder::Line(d) => d.feed(data),
            Decoder::Int(d) => d.feed(data),
            Decoder::Netstring(d) => d.feed(data),
        }
    }

    fn buffered_len(&self) -> usize {
        match self {
            Decoder::Line(d) => d.buffered_len(),
            Decoder::Int(d) => d.buffered_len(),
            Decoder::Netstring(d) => d.buffered_len(),
        }
    }
}

/// A decoded item with the error reduced to its kind: a line's reported length, for one,
/// legitimately depends on how much of the line had arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// A frame.
    Frame(Vec<u8>),
    /// An error, by variant.
    Error(String),
}

/// Feeds `chunks` in order; returns the items up to and including the first error. Panics if
/// the decoder ever buffers more than its limit allows.
pub fn decode(framer: Framer, chunks: &[&[u8]]) -> Vec<Item> {
    let mut decoder = Decoder::new(framer);
    let mut items = Vec::new();
    for chunk in chunks {
        for result in decoder.feed(chunk) {
            match result {
                Ok(frame) => items.push(Item::Frame(frame)),
                Err(e) => {
                    let kind = format!("{e:?}");
                    let kind = kind.split(['{', '(', ' ']).next().unwrap_or_default().to_owned();
                    items.push(Item::Error(kind));
                    return items;
                }
            }
        }
        let buffered = decoder.buffered_len();
        assert!(buffered <= MAX + OVERHEAD, "{framer:?} buffers {buffered} bytes, limit {MAX}");
    }
    items
}

/// Splits `stream` by the chunk sizes in `sizes` (cycled; 0 counts as 1).
pub fn split<'a>(stream: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes.get(i % sizes.len().max(1)).map_or(1, |&s| usize::from(s).max(1));
        let (head, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(head);
        rest = tail;
        i += 1;
    }
    chunks
}

/// The whole check for one fuzz input (see the module docs for its layout).
pub fn check(framer: Framer, input: &[u8]) {
    let (sizes, stream) = input.split_at(input.len().min(4));
    let whole = decode(framer, &[stream]);
    let chunked = decode(framer, &split(stream, sizes));
    assert_eq!(chunked, whole, "{framer:?}: chunking changed the result");
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(decode(framer, &bytewise), whole, "{framer:?}: 1-byte chunks changed the result");
}
