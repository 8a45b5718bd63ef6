//! Framing: turning a byte stream into messages (Twisted's `protocols/basic.py`).
//!
//! TCP delivers bytes split anywhere, down to one byte. The framers here reassemble messages:
//!
//! | framer | wire format | decoder | `Protocol` adapter | handler trait |
//! |---|---|---|---|---|
//! | lines | `hello\r\n` | [`LineDecoder`] | [`LineReceiver`] | [`LineHandler`] |
//! | length prefix | `\x00\x05hello` (1, 2 or 4 bytes) | [`IntNDecoder`] | [`IntNStringReceiver`] | [`StringHandler`] |
//! | netstrings | `5:hello,` | [`NetstringDecoder`] | [`NetstringReceiver`] | [`StringHandler`] |
//!
//! Each framer comes in two layers:
//! - a **pure decoder**: no sockets, no reactor. `push` bytes, take frames with `next_*` until
//!   `None` (frames borrow the decoder's buffer), or `feed` to do both and collect owned
//!   frames. Parsing is linear: no byte is scanned twice.
//! - a **`Protocol` adapter** that owns a decoder and a handler, and calls the handler per frame
//!   with a context ([`LineCtx`], [`StringCtx`]) that derefs to the reactor's
//!   [`Ctx`](torsion_reactor::Ctx) and adds `send_line`/`send_string`, pause/resume and mode
//!   switches. Framing composes; it does not inherit.
//!
//! # Limits
//! Every framer has a finite limit on by default, with a setter: lines 16384 bytes (not
//! counting the delimiter), strings 99999 bytes. A frame of exactly the limit is accepted, one
//! byte more is not. Going over calls a hook (`line_length_exceeded`,
//! `length_limit_exceeded`) whose default closes the connection with
//! [`DisconnectReason::LimitExceeded`](torsion_reactor::DisconnectReason::LimitExceeded);
//! nothing over the limit is ever buffered. Malformed input (a netstring with a bad length or
//! no comma, a bare `\n` in [`LineEndings::Strict`] mode) closes with
//! [`DisconnectReason::ProtocolError`](torsion_reactor::DisconnectReason::ProtocolError).
//!
//! # Frame deadline
//! Every adapter takes an optional per-frame deadline (`with_frame_deadline`): a frame must be
//! complete within that time of its first byte, or the connection closes with
//! [`DisconnectReason::TimedOut`](torsion_reactor::DisconnectReason::TimedOut). An idle timeout
//! cannot stop a peer that sends one byte a second; this does.
//!
//! # Pausing
//! Pausing an adapter (from the handler, or because the write buffer is full) stops delivery
//! of frames already received, not only reading; resuming delivers them without waiting for
//! new input.
//!
//! # Re-entrancy
//! Handler calls that change the receiver (`set_raw_mode`, `set_line_mode`,
//! `clear_line_buffer`, `set_max_length`) are recorded and applied when the callback returns,
//! in order, before the next frame is parsed. No handler method is ever called from inside
//! another.
//!
//! ```
//! use torsion_protocols::framing::{LineDecoder, LineCtx, LineHandler, LineReceiver, NetstringDecoder};
//! use torsion_reactor::testing::Harness;
//!
//! // A pure decoder, fed by hand.
//! let mut netstrings = NetstringDecoder::new();
//! assert_eq!(netstrings.feed(b"3:abc,1:"), vec![Ok(b"abc".to_vec())]);
//!
//! // An adapter: a line protocol that answers each line with its length.
//! struct Count;
//! impl LineHandler for Count {
//!     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
//!         lx.send_line(line.len().to_string().as_bytes());
//!     }
//! }
//! let mut h = Harness::new();
//! let mut factory = |_| {
//!     let decoder = LineDecoder::new().with_max_length(100);
//!     Some(LineReceiver::with_decoder(Count, decoder))
//! };
//! let id = h.accept(&mut factory).unwrap();
//! h.feed(id, b"four\r\nfive5\r");
//! h.feed(id, b"\n");
//! assert_eq!(h.take_written(id), b"4\r\n5\r\n");
//! ```

use std::ops::ControlFlow;

mod error;
mod gate;
mod int_prefixed;
mod line;
mod line_receiver;
mod netstring;
mod string_receiver;

pub use error::FrameError;
pub use int_prefixed::{Endianness, IntNDecoder, IntNEncoder, LengthPrefix, DEFAULT_MAX_STRING_LENGTH};
pub use line::{LineDecoder, LineEndings, DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH};
pub use line_receiver::{LineCtx, LineHandler, LineReceiver};
pub use netstring::{NetstringDecoder, NetstringEncoder};
pub use string_receiver::{IntNStringReceiver, NetstringReceiver, StringCtx, StringHandler, StringReceiver};

/// A decoder of strings (length-prefixed or netstrings), driven by a [`StringReceiver`].
/// Pure: no sockets, no reactor.
pub trait StringDecoder: std::fmt::Debug + 'static {
    /// The matching encoder (framing for `send_string`).
    type Encoder: StringEncoder + Copy + std::fmt::Debug;

    /// Appends received bytes. Nothing is parsed until
    /// [`next_string`](StringDecoder::next_string).
    fn push(&mut self, data: &[u8]);

    /// The next complete string, an error, or `None` when more input is needed.
    fn next_string(&mut self) -> Option<Result<&[u8], FrameError>>;

    /// Parses `data` and calls `on_string` with each result, in order, until it returns
    /// [`ControlFlow::Break`]; whatever is left is kept for later. The same results as
    /// [`push`](StringDecoder::push) then [`next_string`](StringDecoder::next_string); the
    /// decoders here hand strings out straight from `data` when nothing is buffered, copying
    /// only an unfinished frame.
    fn feed_with(
        &mut self,
        data: &[u8],
        mut on_string: impl FnMut(Result<&[u8], FrameError>) -> ControlFlow<()>,
    ) where
        Self: Sized,
    {
        self.push(data);
        while let Some(result) = self.next_string() {
            if on_string(result).is_break() {
                return;
            }
        }
    }

    /// Bytes received and not yet consumed.
    fn buffered_len(&self) -> usize;

    /// True while a frame has begun and not ended.
    fn is_mid_frame(&self) -> bool;

    /// How many frames have ended (strings delivered and too-long strings skipped).
    fn frames(&self) -> u64;

    /// The longest accepted string.
    fn max_length(&self) -> usize;

    /// Sets the longest accepted string (from the next length parsed on).
    fn set_max_length(&mut self, max: usize);

    /// The encoder matching this decoder's settings.
    fn encoder(&self) -> Self::Encoder;
}

/// Frames strings for sending: a header before the data, a trailer after it.
pub trait StringEncoder {
    /// The header for a string of `length` bytes, or why it cannot be sent.
    fn header(&self, length: usize) -> Result<FrameHeader, FrameError>;

    /// The bytes after the data (`,` for netstrings, nothing for length prefixes).
    fn trailer(&self) -> &'static [u8];

    /// Appends `data`, framed, to `out`; on error `out` is unchanged.
    fn encode(&self, data: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let header = self.header(data.len())?;
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(self.trailer());
        Ok(())
    }
}

/// A frame header (a length prefix, or a netstring's `<digits>:`), built without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    bytes: [u8; 24],
    len: u8,
}

impl FrameHeader {
    /// A header holding `bytes` (at most 24).
    fn new(bytes: &[u8]) -> FrameHeader {
        let mut header = FrameHeader { bytes: [0; 24], len: bytes.len() as u8 };
        header.bytes[..bytes.len()].copy_from_slice(bytes);
        header
    }

    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}
