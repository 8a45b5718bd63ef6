//! [`LineReceiver`]: a [`Protocol`] that hands complete lines to a [`LineHandler`].

use std::ops::{ControlFlow, Deref, DerefMut};
use std::time::Duration;

use torsion_reactor::{Ctx, DisconnectReason, Protocol, TimerId};

use super::gate::{Eof, Gate, Input};
use super::{FrameError, LineDecoder, LineEndings};

/// What a line protocol does with lines (Twisted's `LineReceiver` subclass methods). Every
/// callback gets a [`LineCtx`]: the reactor's [`Ctx`] (through `Deref`) plus the receiver's
/// controls: `send_line`, raw/line mode, pause/resume, limits.
pub trait LineHandler: 'static {
    /// The connection is established.
    fn connection_made(&mut self, lx: &mut LineCtx<'_, '_>) {
        let _ = lx;
    }

    /// A complete line arrived, without its delimiter. `line` is valid only during the call.
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]);

    /// Bytes arrived in raw mode (see [`LineCtx::set_raw_mode`]). The default drops them with
    /// a warning (Twisted raises `NotImplementedError`).
    fn raw_data_received(&mut self, lx: &mut LineCtx<'_, '_>, data: &[u8]) {
        let _ = lx;
        tracing::warn!(bytes = data.len(), "raw data received by a line handler without raw_data_received");
    }

    /// A line longer than [`max_length`](LineCtx::max_length) arrived, or began: it is
    /// reported as soon as it cannot fit, without waiting for its end. The line is not
    /// delivered; if the connection stays open, the receiver skips it up to its line ending
    /// and goes on with the next line.
    ///
    /// The default closes the connection with [`DisconnectReason::LimitExceeded`].
    fn line_length_exceeded(&mut self, lx: &mut LineCtx<'_, '_>) {
        let max = lx.max_length();
        lx.lose_connection_with(DisconnectReason::LimitExceeded(format!("line longer than {max} bytes")));
    }

    /// The peer half-closed, after every line that came before the FIN was delivered (a
    /// partial last line without its delimiter is dropped). Return `true` to keep the write
    /// side open; see [`Protocol::eof_received`].
    fn eof_received(&mut self, lx: &mut LineCtx<'_, '_>) -> bool {
        let _ = lx;
        false
    }

    /// The connection is over. Called exactly once, last.
    fn connection_lost(&mut self, lx: &mut LineCtx<'_, '_>, reason: DisconnectReason) {
        let _ = (lx, reason);
    }

    /// A timer made with `lx.set_timer` fired.
    fn timer_fired(&mut self, lx: &mut LineCtx<'_, '_>, timer: TimerId) {
        let _ = (lx, timer);
    }
}

/// A change requested during a handler callback, applied in order when it returns.
#[derive(Debug)]
enum LineOp {
    Raw,
    Line(Vec<u8>),
    /// Line mode again from this offset of the raw chunk being delivered (`set_line_mode`
    /// with a tail of that chunk: nothing to copy).
    LineAt(usize),
    Clear,
    MaxLength(usize),
}

/// The receiver's state that handlers may change through [`LineCtx`].
#[derive(Debug)]
struct Control {
    delimiter: Box<[u8]>,
    max_length: usize,
    raw: bool,
    /// Pause, close, held-back EOF and the line deadline.
    gate: Gate,
    ops: Vec<LineOp>,
    /// Address and length of the raw chunk being delivered, during `raw_data_received`.
    raw_chunk: Option<(usize, usize)>,
}

/// The context a [`LineHandler`] gets: the reactor's [`Ctx`] (through `Deref`, so
/// `lx.transport()`, `lx.set_timer(..)` work) and the line receiver's controls.
///
/// Mode and buffer changes (`set_raw_mode`, `set_line_mode`, `clear_line_buffer`,
/// `set_max_length`) take effect when the current callback returns, in the order made, and
/// apply to everything not yet delivered, including the rest of the chunk that held the
/// current line.
pub struct LineCtx<'a, 'b> {
    cx: &'a mut Ctx<'b>,
    ctl: &'a mut Control,
}

impl std::fmt::Debug for LineCtx<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineCtx").field("cx", &self.cx).field("control", &self.ctl).finish()
    }
}

impl<'b> Deref for LineCtx<'_, 'b> {
    type Target = Ctx<'b>;

    fn deref(&self) -> &Ctx<'b> {
        self.cx
    }
}

impl<'b> DerefMut for LineCtx<'_, 'b> {
    fn deref_mut(&mut self) -> &mut Ctx<'b> {
        self.cx
    }
}

impl<'b> LineCtx<'_, 'b> {
    /// The reactor's context.
    pub fn cx(&mut self) -> &mut Ctx<'b> {
        self.cx
    }

    /// Writes `line` followed by the delimiter (Twisted's `sendLine`). The line is not checked
    /// against `max_length` or for delimiters inside it.
    ///
    /// Like Twisted's, it returns nothing: the line is always queued, and flow control
    /// happens on its own (the receiver stops delivering lines while the write buffer is above
    /// its high watermark; see [`LineReceiver`]'s Pausing section). A handler that writes a
    /// lot from one callback can ask [`write_buffer_above_high`](LineCtx::write_buffer_above_high)
    /// to stop early.
    pub fn send_line(&mut self, line: &[u8]) {
        let delimiter: &[u8] = &self.ctl.delimiter;
        self.cx.transport().write_sequence([line, delimiter]);
    }

    /// True while this connection's write buffer is above its high watermark (64 KiB unless
    /// set with `transport().set_write_buffer_limits`): the peer is not reading as fast as
    /// this handler writes. The signal `send_line` used to return, for a handler that writes
    /// much from one callback (a file, a long listing) and wants to stop early; after the
    /// callback the receiver pauses by itself until the buffer drains.
    ///
    /// ```
    /// use torsion_protocols::{LineCtx, LineHandler};
    ///
    /// /// Answers `LIST` with up to a million lines, stopping once the peer falls behind.
    /// struct Lister;
    ///
    /// impl LineHandler for Lister {
    ///     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
    ///         if line == b"LIST" {
    ///             for n in 0..1_000_000 {
    ///                 lx.send_line(format!("item {n}").as_bytes());
    ///                 if lx.write_buffer_above_high() {
    ///                     break;
    ///                 }
    ///             }
    ///         }
    ///     }
    /// }
    /// ```
    pub fn write_buffer_above_high(&mut self) -> bool {
        self.cx.transport().is_write_buffer_above_high()
    }

    /// Switches to raw mode: from the end of this callback on, bytes not yet delivered (the
    /// rest of this chunk first) go to [`LineHandler::raw_data_received`] as they come.
    pub fn set_raw_mode(&mut self) {
        self.ctl.raw = true;
        self.ctl.ops.push(LineOp::Raw);
    }

    /// Switches to line mode; `extra` is parsed as lines first, before anything else not yet
    /// delivered (a raw-mode handler hands back what it read too far this way).
    ///
    /// When `extra` is a tail of the `data` given to this `raw_data_received` call (the usual
    /// `lx.set_line_mode(&data[used..])`) nothing is copied, so many switches within one
    /// chunk cost time linear in its size.
    pub fn set_line_mode(&mut self, extra: &[u8]) {
        self.ctl.raw = false;
        let (at, end) = (extra.as_ptr() as usize, extra.as_ptr() as usize + extra.len());
        match self.ctl.raw_chunk {
            Some((start, len)) if self.ctl.ops.is_empty() && at >= start && end == start + len => {
                self.ctl.ops.push(LineOp::LineAt(at - start));
            }
            _ => self.ctl.ops.push(LineOp::Line(extra.to_vec())),
        }
    }

    /// True in raw mode (as requested so far in this callback).
    pub fn is_raw_mode(&self) -> bool {
        self.ctl.raw
    }

    /// Discards everything received and not yet delivered: buffered lines, the partial line,
    /// raw bytes (Twisted's `clearLineBuffer`, without returning them).
    pub fn clear_line_buffer(&mut self) {
        self.ctl.ops.push(LineOp::Clear);
    }

    /// Stops delivering lines (also those already buffered, the rest of this chunk included)
    /// and pauses reading the socket, until [`resume`](LineCtx::resume).
    ///
    /// `lx.transport().pause_reading()` alone only stops the socket: lines already received
    /// (the rest of the current chunk) are still delivered.
    pub fn pause(&mut self) {
        self.ctl.gate.pause(self.cx);
    }

    /// Undoes [`pause`](LineCtx::pause). Lines already buffered are delivered as soon as the
    /// current callback returns, without waiting for more input; then reading resumes (unless
    /// the write buffer is still full).
    pub fn resume(&mut self) {
        self.ctl.gate.resume(self.cx);
    }

    /// True while paused by [`pause`](LineCtx::pause).
    pub fn is_paused(&self) -> bool {
        self.ctl.gate.is_paused()
    }

    /// The longest accepted line, not counting the delimiter.
    pub fn max_length(&self) -> usize {
        self.ctl.max_length
    }

    /// Changes the longest accepted line (from the end of this callback on).
    pub fn set_max_length(&mut self, max: usize) {
        self.ctl.max_length = max;
        self.ctl.ops.push(LineOp::MaxLength(max));
    }

    /// The delimiter `send_line` appends.
    pub fn delimiter(&self) -> &[u8] {
        &self.ctl.delimiter
    }

    /// Closes cleanly (flush, then FIN) and delivers no more lines. Closing straight through
    /// `lx.transport()` works too: the receiver notices it when the callback returns.
    pub fn lose_connection(&mut self) {
        self.ctl.gate.lose_connection(self.cx);
    }

    /// Closes cleanly, reporting `reason` to `connection_lost`, and delivers no more lines.
    pub fn lose_connection_with(&mut self, reason: DisconnectReason) {
        self.ctl.gate.lose_connection_with(self.cx, reason);
    }

    /// Aborts the connection (RST) and delivers no more lines.
    pub fn abort_connection(&mut self) {
        self.ctl.gate.abort_connection(self.cx);
    }
}

/// A [`Protocol`] that splits its input into lines and hands them to a [`LineHandler`]
/// (Twisted's `LineReceiver`, composed instead of inherited). By default only `\r\n` ends a
/// line ([`LineEndings::Exact`], Twisted's delimiter, for wire compatibility). `telnet` sends
/// `\r\n`, so that works; `nc` (netcat) and most Unix tools send a bare `\n`, which `Exact`
/// keeps as part of the line, so an `nc` user sees nothing until a `\r\n` arrives. For people
/// typing into `nc` or `telnet`, pick [`LineEndings::Lenient`] (`\n` or `\r\n` ends a line;
/// the `\r` is stripped); to refuse bare `\n` outright, [`LineEndings::Strict`]:
/// `LineReceiver::new(handler).with_line_endings(LineEndings::Lenient)`.
///
/// Defaults, each with a setter: delimiter `\r\n`, at most 16384 bytes per line (not counting
/// the delimiter; exactly 16384 is accepted), [`LineEndings::Exact`], no frame deadline.
///
/// # Pausing
/// [`LineCtx::pause`] (or the write buffer going above its high watermark, which calls
/// `pause_producing`) stops line delivery at once, even for lines already received, and
/// pauses reading. Resuming delivers the held-back lines without waiting for new input. A FIN
/// that arrives while lines are held back is reported to the handler after them.
///
/// # Frame deadline
/// With [`set_frame_deadline`](LineReceiver::set_frame_deadline), a line must be complete
/// within the given time of its first byte arriving, or the connection is closed with
/// [`DisconnectReason::TimedOut`]. This stops a peer that drip-feeds one byte at a time,
/// which an idle timeout cannot. The clock does not run while delivery is paused or in raw
/// mode.
///
/// # Errors
/// A too-long line calls [`LineHandler::line_length_exceeded`] (default: close with
/// [`DisconnectReason::LimitExceeded`]). In [`LineEndings::Strict`] mode a bare `\n` closes the
/// connection with [`DisconnectReason::ProtocolError`].
///
/// ```
/// use torsion_protocols::framing::{LineCtx, LineHandler, LineReceiver};
/// use torsion_reactor::testing::Harness;
///
/// struct Shout;
/// impl LineHandler for Shout {
///     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
///         lx.send_line(&line.to_ascii_uppercase());
///     }
/// }
///
/// let mut h = Harness::new();
/// let id = h.accept(&mut |_| Some(LineReceiver::new(Shout))).unwrap();
/// h.feed(id, b"hello\r\nwor");
/// h.feed(id, b"ld\r\n");
/// assert_eq!(h.take_written(id), b"HELLO\r\nWORLD\r\n");
/// ```
#[derive(Debug)]
pub struct LineReceiver<H> {
    handler: H,
    decoder: LineDecoder,
    ctl: Control,
}

impl<H: LineHandler> LineReceiver<H> {
    /// A receiver with the defaults, handing lines to `handler`.
    pub fn new(handler: H) -> LineReceiver<H> {
        LineReceiver::with_decoder(handler, LineDecoder::new())
    }

    /// A receiver around a configured decoder (delimiter, limit, line endings).
    pub fn with_decoder(handler: H, decoder: LineDecoder) -> LineReceiver<H> {
        let ctl = Control {
            delimiter: decoder.delimiter().into(),
            max_length: decoder.max_length(),
            raw: false,
            gate: Gate::default(),
            ops: Vec::new(),
            raw_chunk: None,
        };
        LineReceiver { handler, decoder, ctl }
    }

    /// Sets the delimiter (builder form).
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn with_delimiter(mut self, delimiter: &[u8]) -> Self {
        self.set_delimiter(delimiter);
        self
    }

    /// Sets the longest accepted line (builder form).
    pub fn with_max_length(mut self, max: usize) -> Self {
        self.set_max_length(max);
        self
    }

    /// Sets which byte sequences end a line (builder form).
    pub fn with_line_endings(mut self, endings: LineEndings) -> Self {
        self.decoder.set_line_endings(endings);
        self
    }

    /// Sets the per-line deadline (builder form).
    pub fn with_frame_deadline(mut self, deadline: Duration) -> Self {
        self.ctl.gate.set_frame_deadline(Some(deadline));
        self
    }

    /// Sets the delimiter, for parsing and for `send_line`.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn set_delimiter(&mut self, delimiter: &[u8]) {
        self.decoder.set_delimiter(delimiter);
        self.ctl.delimiter = delimiter.into();
    }

    /// Sets the longest accepted line, not counting the delimiter (default 16384).
    pub fn set_max_length(&mut self, max: usize) {
        self.decoder.set_max_length(max);
        self.ctl.max_length = max;
    }

    /// Sets which byte sequences end a line (default [`LineEndings::Exact`]).
    pub fn set_line_endings(&mut self, endings: LineEndings) {
        self.decoder.set_line_endings(endings);
    }

    /// Sets (or with `None` removes, the default) the time a line may take from its first byte
    /// to its delimiter.
    pub fn set_frame_deadline(&mut self, deadline: Option<Duration>) {
        self.ctl.gate.set_frame_deadline(deadline);
    }

    /// The per-line deadline, if any.
    pub fn frame_deadline(&self) -> Option<Duration> {
        self.ctl.gate.frame_deadline()
    }

    /// The decoder (limits, buffered bytes, counters).
    pub fn decoder(&self) -> &LineDecoder {
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

    /// Calls `f` with the handler and a [`LineCtx`], from outside this receiver's own
    /// callbacks: for code that holds the receiver and a [`Ctx`] of its connection, such as a
    /// [`TimeoutProtocol::on_timeout`](crate::policies::TimeoutProtocol::on_timeout) hook that
    /// sends a goodbye line. What `f` asks for (mode switches, pause, close) is applied when it
    /// returns, as after any handler callback, and lines already buffered are delivered if
    /// delivery can go on.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_protocols::policies::TimeoutProtocol;
    /// use torsion_protocols::{LineCtx, LineHandler, LineReceiver};
    /// use torsion_reactor::testing::Harness;
    /// use torsion_reactor::DisconnectReason;
    ///
    /// struct Quiet;
    /// impl LineHandler for Quiet {
    ///     fn line_received(&mut self, _lx: &mut LineCtx<'_, '_>, _line: &[u8]) {}
    /// }
    ///
    /// let protocol = TimeoutProtocol::new(LineReceiver::new(Quiet), Some(Duration::from_secs(5)))
    ///     .with_on_timeout(|receiver, cx| {
    ///         receiver.call_handler(cx, |_quiet, lx| {
    ///             lx.send_line(b"idle for 5 s, goodbye");
    ///             lx.lose_connection_with(DisconnectReason::TimedOut);
    ///         });
    ///     });
    /// let mut protocol = Some(protocol);
    /// let mut h = Harness::new();
    /// let id = h.accept(&mut move |_| protocol.take()).unwrap();
    /// h.advance(Duration::from_secs(5));
    /// assert_eq!(h.take_written(id), b"idle for 5 s, goodbye\r\n");
    /// assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
    /// ```
    pub fn call_handler<R>(
        &mut self,
        cx: &mut Ctx<'_>,
        f: impl FnOnce(&mut H, &mut LineCtx<'_, '_>) -> R,
    ) -> R {
        let result = f(&mut self.handler, &mut LineCtx { cx, ctl: &mut self.ctl });
        self.pump(cx);
        result
    }

    /// Applies the changes a handler callback requested, in order.
    fn apply(&mut self) {
        for op in std::mem::take(&mut self.ctl.ops) {
            match op {
                // Raw: the flag is already set. LineAt: handled where the raw chunk was
                // delivered (it is always the first op).
                LineOp::Raw | LineOp::LineAt(_) => {}
                LineOp::Line(extra) => self.decoder.prepend(&extra),
                LineOp::Clear => drop(self.decoder.take_buffered()),
                LineOp::MaxLength(max) => self.decoder.set_max_length(max),
            }
        }
    }

    /// A chunk that arrived while delivering: raw bytes or lines go to the handler straight
    /// from the reactor's buffer while nothing changes the parse; the rest is kept for `pump`.
    fn deliver(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if self.ctl.raw && self.decoder.buffered_len() == 0 {
            // Raw mode with nothing held back: hand the reactor's slice over without copying.
            self.ctl.raw_chunk = Some((data.as_ptr() as usize, data.len()));
            self.handler.raw_data_received(&mut LineCtx { cx, ctl: &mut self.ctl }, data);
            self.ctl.raw_chunk = None;
            if let Some(LineOp::LineAt(at)) = self.ctl.ops.first() {
                self.decoder.push(&data[*at..]);
            }
        } else if !self.ctl.raw {
            // Lines straight from the reactor's buffer while nothing changes the parse; the
            // rest (after a pause or a mode switch) is kept and handled by `pump`.
            let (handler, ctl) = (&mut self.handler, &mut self.ctl);
            self.decoder.feed_with(data, |next| {
                let mut lx = LineCtx { cx: &mut *cx, ctl: &mut *ctl };
                match next {
                    Ok(line) => handler.line_received(&mut lx, line),
                    Err(FrameError::LineTooLong { .. }) => handler.line_length_exceeded(&mut lx),
                    Err(e) => lx.lose_connection_with(DisconnectReason::ProtocolError(e.to_string())),
                }
                if ctl.ops.is_empty() && !ctl.raw && ctl.gate.may_continue(cx) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            });
        } else {
            self.decoder.push(data);
        }
    }

    /// Delivers whatever can be delivered, then settles EOF and the frame deadline.
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        self.apply();
        while self.ctl.gate.may_deliver(cx) {
            if self.ctl.raw {
                if self.decoder.buffered_len() == 0 {
                    break;
                }
                // Deliver the buffered bytes in place; they count as consumed unless the
                // handler hands a tail back with `set_line_mode`.
                let raw = self.decoder.buffered();
                self.ctl.raw_chunk = Some((raw.as_ptr() as usize, raw.len()));
                let mut lx = LineCtx { cx, ctl: &mut self.ctl };
                self.handler.raw_data_received(&mut lx, raw);
                self.ctl.raw_chunk = None;
                let len = raw.len();
                let used = match self.ctl.ops.first() {
                    Some(LineOp::LineAt(at)) => *at,
                    _ => len,
                };
                self.decoder.consume(used);
                self.apply();
                continue;
            }
            let Some(next) = self.decoder.next_line() else { break };
            let mut lx = LineCtx { cx, ctl: &mut self.ctl };
            match next {
                Ok(line) => self.handler.line_received(&mut lx, line),
                Err(FrameError::LineTooLong { .. }) => self.handler.line_length_exceeded(&mut lx),
                Err(e) => lx.lose_connection_with(DisconnectReason::ProtocolError(e.to_string())),
            }
            self.apply();
        }
        if self.ctl.gate.take_held_eof() {
            let keep = self.handler.eof_received(&mut LineCtx { cx, ctl: &mut self.ctl });
            if !keep {
                cx.transport().lose_connection();
            }
            self.apply();
        }
        let mid_line = !self.ctl.raw && self.decoder.is_mid_frame();
        self.ctl.gate.settle_deadline(cx, mid_line, self.decoder.frames());
    }
}

impl<H: LineHandler> Protocol for LineReceiver<H> {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.handler.connection_made(&mut LineCtx { cx, ctl: &mut self.ctl });
        self.pump(cx);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        match self.ctl.gate.on_data(cx) {
            Input::Drop => return,
            // Lines are held back (and reading paused again, should someone else have resumed
            // it): keep the bytes for `pump`.
            Input::Hold => self.decoder.push(data),
            Input::Deliver => self.deliver(cx, data),
        }
        self.pump(cx);
    }

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        match self.ctl.gate.on_eof() {
            Eof::Ignore => false,
            Eof::Deliver => {
                let keep = self.handler.eof_received(&mut LineCtx { cx, ctl: &mut self.ctl });
                self.pump(cx);
                keep
            }
            // Lines are held back: the FIN is reported after them, keeping the write side open.
            Eof::Held => true,
        }
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.ctl.gate.on_connection_lost();
        self.handler.connection_lost(&mut LineCtx { cx, ctl: &mut self.ctl }, reason);
    }

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        if self.ctl.gate.on_timer(cx, timer, "line") {
            return;
        }
        self.handler.timer_fired(&mut LineCtx { cx, ctl: &mut self.ctl }, timer);
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
