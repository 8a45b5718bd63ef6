//! [`StringReceiver`]: a [`Protocol`] that hands complete length-prefixed strings or netstrings
//! to a [`StringHandler`].

use std::ops::{ControlFlow, Deref, DerefMut};
use std::time::Duration;

use torsion_reactor::{Ctx, DisconnectReason, Protocol, TimerId};

use super::gate::{Eof, Gate, Input};
use super::{
    Endianness, FrameError, IntNDecoder, IntNEncoder, LengthPrefix, NetstringDecoder, StringDecoder,
    StringEncoder,
};

/// What a string protocol does with strings (Twisted's `IntNStringReceiver` and
/// `NetstringReceiver` subclass methods). Every callback gets a [`StringCtx`]: the reactor's
/// [`Ctx`] (through `Deref`) plus `send_string`, pause/resume and limits.
pub trait StringHandler: 'static {
    /// The connection is established.
    fn connection_made(&mut self, sx: &mut StringCtx<'_, '_>) {
        let _ = sx;
    }

    /// A complete string arrived. `data` is valid only during the call.
    fn string_received(&mut self, sx: &mut StringCtx<'_, '_>, data: &[u8]);

    /// The peer announced a string of `length` bytes, more than
    /// [`max_length`](StringCtx::max_length). Nothing of it was buffered; if the connection
    /// stays open, its body is skipped and decoding goes on after it.
    ///
    /// The default closes the connection with [`DisconnectReason::LimitExceeded`].
    fn length_limit_exceeded(&mut self, sx: &mut StringCtx<'_, '_>, length: u64) {
        let max = sx.max_length();
        sx.lose_connection_with(DisconnectReason::LimitExceeded(format!(
            "frame length {length} exceeds the maximum of {max} bytes"
        )));
    }

    /// The peer half-closed, after every string that came before the FIN was delivered (an
    /// incomplete last string is dropped). Return `true` to keep the write side open; see
    /// [`Protocol::eof_received`].
    fn eof_received(&mut self, sx: &mut StringCtx<'_, '_>) -> bool {
        let _ = sx;
        false
    }

    /// The connection is over. Called exactly once, last.
    fn connection_lost(&mut self, sx: &mut StringCtx<'_, '_>, reason: DisconnectReason) {
        let _ = (sx, reason);
    }

    /// A timer made with `sx.set_timer` fired.
    fn timer_fired(&mut self, sx: &mut StringCtx<'_, '_>, timer: TimerId) {
        let _ = (sx, timer);
    }
}

/// Builds a [`StringCtx`] from a receiver's fields, leaving `handler` and `decoder` free.
macro_rules! sx {
    ($self:ident, $cx:expr, $max:expr) => {
        StringCtx { cx: $cx, ctl: &mut $self.ctl, encoder: &$self.encoder, max_length: $max }
    };
    ($self:ident, $cx:expr) => {{
        let max_length = $self.decoder.max_length();
        sx!($self, $cx, max_length)
    }};
}

/// The receiver's state that handlers may change through [`StringCtx`].
#[derive(Debug)]
struct Control {
    /// Pause, close, held-back EOF and the string deadline.
    gate: Gate,
    new_max_length: Option<usize>,
}

/// The context a [`StringHandler`] gets: the reactor's [`Ctx`] (through `Deref`, so
/// `sx.transport()`, `sx.set_timer(..)` work) and the string receiver's controls.
pub struct StringCtx<'a, 'b> {
    cx: &'a mut Ctx<'b>,
    ctl: &'a mut Control,
    encoder: &'a dyn StringEncoder,
    max_length: usize,
}

impl std::fmt::Debug for StringCtx<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StringCtx").field("cx", &self.cx).field("control", &self.ctl).finish_non_exhaustive()
    }
}

impl<'b> Deref for StringCtx<'_, 'b> {
    type Target = Ctx<'b>;

    fn deref(&self) -> &Ctx<'b> {
        self.cx
    }
}

impl<'b> DerefMut for StringCtx<'_, 'b> {
    fn deref_mut(&mut self) -> &mut Ctx<'b> {
        self.cx
    }
}

impl<'b> StringCtx<'_, 'b> {
    /// The reactor's context.
    pub fn cx(&mut self) -> &mut Ctx<'b> {
        self.cx
    }

    /// Writes `data` framed (prefix or netstring). Nothing is written and an error is returned
    /// if the prefix cannot express its length ([`FrameError::TooLongForPrefix`]) or it is
    /// longer than [`max_length`](StringCtx::max_length)
    /// ([`FrameError::LengthLimitExceeded`]), which a peer with the same limit would refuse.
    pub fn send_string(&mut self, data: &[u8]) -> Result<(), FrameError> {
        let header = self.encoder.header(data.len())?;
        self.cx.transport().write_sequence([header.as_bytes(), data, self.encoder.trailer()]);
        Ok(())
    }

    /// True while this connection's write buffer is above its high watermark (64 KiB unless
    /// set with `transport().set_write_buffer_limits`): the peer is not reading as fast as
    /// this handler writes. `send_string` queues regardless (as in Twisted); a handler that
    /// writes much from one callback asks this to stop early. After the callback the receiver
    /// pauses by itself until the buffer drains.
    pub fn write_buffer_above_high(&mut self) -> bool {
        self.cx.transport().is_write_buffer_above_high()
    }

    /// Stops delivering strings (also those already buffered) and pauses reading the socket,
    /// until [`resume`](StringCtx::resume).
    ///
    /// `sx.transport().pause_reading()` alone only stops the socket: strings already received
    /// (the rest of the current chunk) are still delivered.
    pub fn pause(&mut self) {
        self.ctl.gate.pause(self.cx);
    }

    /// Undoes [`pause`](StringCtx::pause). Strings already buffered are delivered as soon as
    /// the current callback returns, without waiting for more input.
    pub fn resume(&mut self) {
        self.ctl.gate.resume(self.cx);
    }

    /// True while paused by [`pause`](StringCtx::pause).
    pub fn is_paused(&self) -> bool {
        self.ctl.gate.is_paused()
    }

    /// The longest accepted string.
    pub fn max_length(&self) -> usize {
        self.ctl.new_max_length.unwrap_or(self.max_length)
    }

    /// Changes the longest accepted string, for decoding and `send_string`, from the end of
    /// this callback on.
    pub fn set_max_length(&mut self, max: usize) {
        self.ctl.new_max_length = Some(max);
    }

    /// Closes cleanly (flush, then FIN) and delivers no more strings. Closing straight through
    /// `sx.transport()` works too: the receiver notices it when the callback returns.
    pub fn lose_connection(&mut self) {
        self.ctl.gate.lose_connection(self.cx);
    }

    /// Closes cleanly, reporting `reason` to `connection_lost`, and delivers no more strings.
    pub fn lose_connection_with(&mut self, reason: DisconnectReason) {
        self.ctl.gate.lose_connection_with(self.cx, reason);
    }

    /// Aborts the connection (RST) and delivers no more strings.
    pub fn abort_connection(&mut self) {
        self.ctl.gate.abort_connection(self.cx);
    }
}

/// A [`Protocol`] that decodes strings with a [`StringDecoder`] and hands them to a
/// [`StringHandler`]. Use it through [`IntNStringReceiver`] (8, 16 or 32-bit length prefixes)
/// or [`NetstringReceiver`].
///
/// Defaults, each with a setter: at most 99999 bytes per string (exactly 99999 is
/// accepted), big-endian prefixes, no frame deadline.
///
/// # Pausing, frame deadline
/// As for [`LineReceiver`](super::LineReceiver): [`StringCtx::pause`] or `pause_producing`
/// holds back strings already received; resuming delivers them without new input; a string
/// must be complete within the frame deadline of its first byte, else the connection closes
/// with [`DisconnectReason::TimedOut`].
///
/// # Errors
/// A length over the maximum calls [`StringHandler::length_limit_exceeded`] (default: close
/// with [`DisconnectReason::LimitExceeded`]) before anything of the body is buffered.
/// Malformed netstrings close the connection with [`DisconnectReason::ProtocolError`].
///
/// ```
/// use torsion_protocols::framing::{IntNStringReceiver, StringCtx, StringHandler};
/// use torsion_reactor::testing::Harness;
///
/// struct Reverse;
/// impl StringHandler for Reverse {
///     fn string_received(&mut self, sx: &mut StringCtx<'_, '_>, data: &[u8]) {
///         let reversed: Vec<u8> = data.iter().rev().copied().collect();
///         sx.send_string(&reversed).expect("same length, same prefix");
///     }
/// }
///
/// let mut h = Harness::new();
/// let id = h.accept(&mut |_| Some(IntNStringReceiver::int16(Reverse))).unwrap();
/// h.feed(id, b"\x00\x03ab");
/// h.feed(id, b"c");
/// assert_eq!(h.take_written(id), b"\x00\x03cba");
/// ```
#[derive(Debug)]
pub struct StringReceiver<D: StringDecoder, H> {
    handler: H,
    decoder: D,
    encoder: D::Encoder,
    ctl: Control,
}

/// Length-prefixed strings (Twisted's `Int8StringReceiver`, `Int16StringReceiver`,
/// `Int32StringReceiver`): build one with [`int8`](StringReceiver::int8),
/// [`int16`](StringReceiver::int16), [`int32`](StringReceiver::int32).
pub type IntNStringReceiver<H> = StringReceiver<IntNDecoder, H>;

/// Netstrings (Twisted's `NetstringReceiver`): build one with
/// [`netstring`](StringReceiver::netstring).
pub type NetstringReceiver<H> = StringReceiver<NetstringDecoder, H>;

impl<H: StringHandler> StringReceiver<IntNDecoder, H> {
    /// A receiver of strings with a `prefix`-wide big-endian length.
    pub fn new_prefixed(prefix: LengthPrefix, handler: H) -> Self {
        StringReceiver::with_decoder(handler, IntNDecoder::new(prefix))
    }

    /// A receiver of strings with a 1-byte length.
    pub fn int8(handler: H) -> Self {
        Self::new_prefixed(LengthPrefix::Int8, handler)
    }

    /// A receiver of strings with a 2-byte length.
    pub fn int16(handler: H) -> Self {
        Self::new_prefixed(LengthPrefix::Int16, handler)
    }

    /// A receiver of strings with a 4-byte length.
    pub fn int32(handler: H) -> Self {
        Self::new_prefixed(LengthPrefix::Int32, handler)
    }

    /// Sets the byte order of the length prefix, for decoding and `send_string` (builder form).
    pub fn with_endianness(mut self, endianness: Endianness) -> Self {
        self.set_endianness(endianness);
        self
    }

    /// Sets the byte order of the length prefix, for decoding and `send_string`.
    pub fn set_endianness(&mut self, endianness: Endianness) {
        self.decoder.set_endianness(endianness);
        self.encoder = self.decoder.encoder();
    }

    /// The encoder (prefix, byte order), for framing strings outside a callback.
    pub fn encoder(&self) -> IntNEncoder {
        self.encoder
    }
}

impl<H: StringHandler> StringReceiver<NetstringDecoder, H> {
    /// A receiver of netstrings.
    pub fn netstring(handler: H) -> Self {
        StringReceiver::with_decoder(handler, NetstringDecoder::new())
    }
}

impl<D: StringDecoder, H: StringHandler> StringReceiver<D, H> {
    /// A receiver around a configured decoder.
    pub fn with_decoder(handler: H, decoder: D) -> Self {
        let encoder = decoder.encoder();
        let ctl = Control { gate: Gate::default(), new_max_length: None };
        StringReceiver { handler, decoder, encoder, ctl }
    }

    /// Sets the longest accepted string (builder form).
    pub fn with_max_length(mut self, max: usize) -> Self {
        self.set_max_length(max);
        self
    }

    /// Sets the per-string deadline (builder form).
    pub fn with_frame_deadline(mut self, deadline: Duration) -> Self {
        self.ctl.gate.set_frame_deadline(Some(deadline));
        self
    }

    /// Sets the longest accepted (and sendable) string (default 99999).
    pub fn set_max_length(&mut self, max: usize) {
        self.decoder.set_max_length(max);
        self.encoder = self.decoder.encoder();
    }

    /// The longest accepted string.
    pub fn max_length(&self) -> usize {
        self.decoder.max_length()
    }

    /// Sets (or with `None` removes, the default) the time a string may take from its first
    /// byte to its last.
    pub fn set_frame_deadline(&mut self, deadline: Option<Duration>) {
        self.ctl.gate.set_frame_deadline(deadline);
    }

    /// The per-string deadline, if any.
    pub fn frame_deadline(&self) -> Option<Duration> {
        self.ctl.gate.frame_deadline()
    }

    /// The decoder.
    pub fn decoder(&self) -> &D {
        &self.decoder
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Calls `f` with the handler and a [`StringCtx`], from outside this receiver's own
    /// callbacks: for code that holds the receiver and a [`Ctx`] of its connection, such as a
    /// [`TimeoutProtocol::on_timeout`](crate::policies::TimeoutProtocol::on_timeout) hook that
    /// sends a last string. What `f` asks for (pause, limits, close) is applied when it
    /// returns, as after any handler callback, and strings already buffered are delivered if
    /// delivery can go on. See [`LineReceiver::call_handler`](super::LineReceiver::call_handler)
    /// for an example.
    pub fn call_handler<R>(
        &mut self,
        cx: &mut Ctx<'_>,
        f: impl FnOnce(&mut H, &mut StringCtx<'_, '_>) -> R,
    ) -> R {
        let result = f(&mut self.handler, &mut sx!(self, cx));
        self.pump(cx);
        result
    }

    fn apply(&mut self) {
        if let Some(max) = self.ctl.new_max_length.take() {
            self.set_max_length(max);
        }
    }

    /// A chunk that arrived while delivering: strings go to the handler straight from the
    /// reactor's buffer until something changes; the rest is kept for `pump`.
    fn deliver(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        let max_length = self.decoder.max_length();
        let (handler, ctl, encoder) = (&mut self.handler, &mut self.ctl, &self.encoder);
        self.decoder.feed_with(data, |next| {
            let mut sx = StringCtx { cx: &mut *cx, ctl: &mut *ctl, encoder, max_length };
            match next {
                Ok(data) => handler.string_received(&mut sx, data),
                Err(FrameError::LengthLimitExceeded { length, .. }) => {
                    handler.length_limit_exceeded(&mut sx, length)
                }
                Err(e) => sx.lose_connection_with(DisconnectReason::ProtocolError(e.to_string())),
            }
            if ctl.new_max_length.is_none() && ctl.gate.may_continue(cx) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        });
    }

    /// Delivers whatever can be delivered, then settles EOF and the frame deadline.
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        self.apply();
        while self.ctl.gate.may_deliver(cx) {
            let max_length = self.decoder.max_length();
            let Some(next) = self.decoder.next_string() else { break };
            let mut sx = sx!(self, cx, max_length);
            match next {
                Ok(data) => self.handler.string_received(&mut sx, data),
                Err(FrameError::LengthLimitExceeded { length, .. }) => {
                    self.handler.length_limit_exceeded(&mut sx, length)
                }
                Err(e) => sx.lose_connection_with(DisconnectReason::ProtocolError(e.to_string())),
            }
            self.apply();
        }
        if self.ctl.gate.take_held_eof() {
            let keep = self.handler.eof_received(&mut sx!(self, cx));
            if !keep {
                cx.transport().lose_connection();
            }
            self.apply();
        }
        self.ctl.gate.settle_deadline(cx, self.decoder.is_mid_frame(), self.decoder.frames());
    }
}

impl<D: StringDecoder, H: StringHandler> Protocol for StringReceiver<D, H> {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.handler.connection_made(&mut sx!(self, cx));
        self.pump(cx);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        match self.ctl.gate.on_data(cx) {
            Input::Drop => return,
            // Strings are held back (and reading paused again, should someone else have
            // resumed it): keep the bytes for `pump`.
            Input::Hold => self.decoder.push(data),
            Input::Deliver => self.deliver(cx, data),
        }
        self.pump(cx);
    }

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        match self.ctl.gate.on_eof() {
            Eof::Ignore => false,
            Eof::Deliver => {
                let keep = self.handler.eof_received(&mut sx!(self, cx));
                self.pump(cx);
                keep
            }
            // Strings are held back: the FIN is reported after them, keeping the write side
            // open.
            Eof::Held => true,
        }
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.ctl.gate.on_connection_lost();
        self.handler.connection_lost(&mut sx!(self, cx), reason);
    }

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        if self.ctl.gate.on_timer(cx, timer, "string") {
            return;
        }
        self.handler.timer_fired(&mut sx!(self, cx), timer);
        self.pump(cx);
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.ctl.gate.pause_producing(cx);
        self.pump(cx);
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.ctl.gate.resume_producing(cx);
        self.pump(cx);
    }
}
