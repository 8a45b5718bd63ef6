//! [`LineDecoder`]: splits a byte stream into lines. Pure: no sockets, no reactor.

use std::ops::ControlFlow;

use super::FrameError;

/// Twisted's `LineReceiver.MAX_LENGTH`: the default longest line, in bytes, not counting the
/// delimiter.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 16384;

/// The default line delimiter, `\r\n`.
pub const DEFAULT_DELIMITER: &[u8] = b"\r\n";

/// Capacity above which an emptied buffer is given back to the allocator.
const SHRINK_ABOVE: usize = 64 * 1024;

/// Which byte sequences end a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEndings {
    /// Only the configured delimiter ends a line; every other byte, a bare `\n` or `\r`
    /// included, is part of the line. This is Twisted's `LineReceiver`. The default.
    #[default]
    Exact,
    /// The delimiter ends a line, and so does a bare `\n`; a `\r` right before that `\n` is
    /// stripped from the line. For people typing into netcat or telnet.
    Lenient,
    /// Only the delimiter ends a line, and a `\n` that is not part of a delimiter is an error
    /// ([`FrameError::BareLineFeed`]): the line containing it is dropped, and the
    /// [`LineReceiver`](super::LineReceiver) closes the connection with a protocol error. This
    /// closes the door on parser differentials between CRLF and LF peers (SMTP smuggling).
    Strict,
}

/// Splits a byte stream into lines, with a limit on line length. A pure decoder: [`push`]
/// bytes as they arrive, then take lines with [`next_line`] until it returns `None`; or call
/// [`feed`] to do both and collect owned lines.
///
/// # Line length
/// The length of a line is counted *without* its delimiter. A line of exactly
/// [`max_length`](LineDecoder::max_length) bytes is accepted; one byte more is
/// [`FrameError::LineTooLong`] (Twisted's rule, with twisted#6556 fixed). An unfinished line is
/// rejected as soon as it cannot end within the limit: once more than `max_length` bytes are
/// buffered that are not a possible start of the delimiter. So the retained buffer never
/// exceeds `max_length + delimiter length − 1` bytes, and a line of exactly `max_length` whose
/// delimiter is split across reads is not rejected.
///
/// After a too-long line the decoder discards input up to the next line ending and goes on
/// with the line after it; the error is reported once.
///
/// # Cost
/// Each byte is scanned once: the decoder remembers how far it has searched, so a 1 MiB line
/// arriving one byte at a time costs 1 Mi steps, not 1 Mi². [`scanned_bytes`] counts the work
/// for tests.
///
/// ```
/// use torsion_protocols::framing::{FrameError, LineDecoder};
///
/// let mut lines = LineDecoder::new().with_max_length(5);
/// assert_eq!(lines.feed(b"hello\r\nwor"), vec![Ok(b"hello".to_vec())]);
/// assert_eq!(lines.feed(b"ld\r"), vec![]);
/// assert_eq!(lines.feed(b"\n"), vec![Ok(b"world".to_vec())]);
/// assert_eq!(
///     lines.feed(b"toolong\r\nok\r\n"),
///     vec![Err(FrameError::LineTooLong { max: 5 }), Ok(b"ok".to_vec())]
/// );
/// ```
///
/// [`push`]: LineDecoder::push
/// [`next_line`]: LineDecoder::next_line
/// [`feed`]: LineDecoder::feed
/// [`scanned_bytes`]: LineDecoder::scanned_bytes
#[derive(Debug, Clone)]
pub struct LineDecoder {
    sc: Scanner,
    buf: Vec<u8>,
}

/// The parser proper: settings and positions, over a buffer it is handed (the decoder's own,
/// or the caller's chunk on the copy-free path).
#[derive(Debug, Clone)]
struct Scanner {
    delimiter: Box<[u8]>,
    endings: LineEndings,
    max_length: usize,
    /// First byte not yet consumed.
    start: usize,
    /// Bytes in `buf[start..scan]` hold no line ending (the search resumes at `scan`).
    scan: usize,
    /// Discarding the rest of an over-long line (its error was already reported).
    discarding: bool,
    /// Line endings consumed so far (lines, too-long lines, rejected lines).
    frames: u64,
    scanned: u64,
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl LineDecoder {
    /// A decoder for `\r\n`-delimited lines of at most [`DEFAULT_MAX_LINE_LENGTH`] bytes, in
    /// [`LineEndings::Exact`] mode. It allocates nothing until data arrives.
    pub fn new() -> LineDecoder {
        LineDecoder {
            sc: Scanner {
                delimiter: DEFAULT_DELIMITER.into(),
                endings: LineEndings::Exact,
                max_length: DEFAULT_MAX_LINE_LENGTH,
                start: 0,
                scan: 0,
                discarding: false,
                frames: 0,
                scanned: 0,
            },
            buf: Vec::new(),
        }
    }

    /// Sets the delimiter (builder form of [`set_delimiter`](LineDecoder::set_delimiter)).
    ///
    /// # Panics
    /// If `delimiter` is empty (a programming error, not bad input).
    pub fn with_delimiter(mut self, delimiter: &[u8]) -> Self {
        self.set_delimiter(delimiter);
        self
    }

    /// Sets the longest accepted line, in bytes, not counting the delimiter.
    pub fn with_max_length(mut self, max: usize) -> Self {
        self.sc.max_length = max;
        self
    }

    /// Sets which byte sequences end a line.
    pub fn with_line_endings(mut self, endings: LineEndings) -> Self {
        self.set_line_endings(endings);
        self
    }

    /// Sets the delimiter; buffered input is searched again for it.
    ///
    /// # Panics
    /// If `delimiter` is empty (a programming error, not bad input).
    pub fn set_delimiter(&mut self, delimiter: &[u8]) {
        assert!(!delimiter.is_empty(), "a line delimiter cannot be empty");
        self.sc.delimiter = delimiter.into();
        self.sc.scan = self.sc.start;
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        &self.sc.delimiter
    }

    /// Sets the longest accepted line; it applies to the line in progress too.
    pub fn set_max_length(&mut self, max: usize) {
        self.sc.max_length = max;
    }

    /// The longest accepted line, not counting the delimiter (default 16384).
    pub fn max_length(&self) -> usize {
        self.sc.max_length
    }

    /// Sets which byte sequences end a line; buffered input is searched again.
    pub fn set_line_endings(&mut self, endings: LineEndings) {
        self.sc.endings = endings;
        self.sc.scan = self.sc.start;
    }

    /// Which byte sequences end a line.
    pub fn line_endings(&self) -> LineEndings {
        self.sc.endings
    }

    /// Appends received bytes. Nothing is parsed until [`next_line`](LineDecoder::next_line).
    pub fn push(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// Puts `data` back in front of the input not yet parsed, to be parsed first (how
    /// `set_line_mode(extra)` hands back bytes that a raw-mode handler did not use).
    pub fn prepend(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut buf = Vec::with_capacity(data.len() + self.buffered_len());
        buf.extend_from_slice(data);
        buf.extend_from_slice(&self.buf[self.sc.start..]);
        self.buf = buf;
        self.sc.start = 0;
        self.sc.scan = 0;
    }

    /// The next line, without its delimiter; `Some(Err(_))` for a line that is too long or (in
    /// strict mode) holds a bare `\n`; `None` when more input is needed.
    pub fn next_line(&mut self) -> Option<Result<&[u8], FrameError>> {
        self.sc.next(&self.buf)
    }

    /// Parses `data` and calls `on_line` with each result, in order, until it returns
    /// [`ControlFlow::Break`]; whatever is left (an unfinished line, or everything after the
    /// break) is kept for later. The same results as [`push`](LineDecoder::push) then
    /// [`next_line`](LineDecoder::next_line), but when nothing is buffered, lines are handed
    /// out straight from `data` and only the unparsed rest is copied, so a steady stream of
    /// whole lines costs no copy and no allocation.
    pub fn feed_with(
        &mut self,
        data: &[u8],
        mut on_line: impl FnMut(Result<&[u8], FrameError>) -> ControlFlow<()>,
    ) {
        if self.buffered_len() > 0 {
            self.push(data);
            while let Some(result) = self.sc.next(&self.buf) {
                if on_line(result).is_break() {
                    return;
                }
            }
            return;
        }
        self.compact();
        // Positions now index `data`; the rest of it becomes the buffer at the end.
        while let Some(result) = self.sc.next(data) {
            if on_line(result).is_break() {
                break;
            }
        }
        self.buf.extend_from_slice(&data[self.sc.start..]);
        self.sc.scan -= self.sc.start;
        self.sc.start = 0;
    }

    /// Pushes `data` and returns every result it completes, as owned lines.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        self.feed_with(data, |result| {
            out.push(result.map(<[u8]>::to_vec));
            ControlFlow::Continue(())
        });
        out
    }

    /// Bytes received and not yet consumed as lines (complete lines not yet taken, then the
    /// unfinished line).
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.sc.start..]
    }

    /// Bytes of memory the buffer holds (its capacity): zero while idle after whole frames,
    /// never much more than one frame.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Number of bytes [`buffered`](LineDecoder::buffered).
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.sc.start
    }

    /// Consumes the first `n` buffered bytes without parsing them as lines (how raw-mode data
    /// is delivered in place); parsing resumes after them.
    pub fn consume(&mut self, n: usize) {
        self.sc.start += n.min(self.buffered_len());
        self.sc.scan = self.sc.start;
        self.sc.discarding = false;
    }

    /// Removes and returns every byte not yet consumed (Twisted's `clearLineBuffer`), and
    /// forgets a too-long line being discarded.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = if self.sc.start == 0 {
            std::mem::take(&mut self.buf)
        } else {
            let rest = self.buf[self.sc.start..].to_vec();
            self.buf.clear();
            rest
        };
        self.sc.start = 0;
        self.sc.scan = 0;
        self.sc.discarding = false;
        rest
    }

    /// True while a line has begun and not ended (bytes buffered, or a too-long line being
    /// discarded). Complete lines not yet taken count too.
    pub fn is_mid_frame(&self) -> bool {
        self.sc.discarding || self.sc.start < self.buf.len()
    }

    /// How many line endings have been consumed (lines, too-long and rejected lines).
    pub fn frames(&self) -> u64 {
        self.sc.frames
    }

    /// How many bytes the delimiter search has examined in total: at most about one per byte
    /// received (the proof that parsing is linear).
    pub fn scanned_bytes(&self) -> u64 {
        self.sc.scanned
    }

    /// Drops consumed bytes from the front of the buffer; an emptied buffer larger than the
    /// longest line it may have to hold is given back.
    fn compact(&mut self) {
        if self.sc.start == 0 && !self.buf.is_empty() {
            return;
        }
        if self.sc.start == self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > SHRINK_ABOVE.max(self.sc.max_length + self.sc.delimiter.len()) {
                self.buf = Vec::new();
            }
        } else {
            self.buf.drain(..self.sc.start);
        }
        self.sc.scan -= self.sc.start.min(self.sc.scan);
        self.sc.start = 0;
    }
}

impl Scanner {
    /// The next line in `buf` from `start` on (see [`LineDecoder::next_line`]).
    fn next<'b>(&mut self, buf: &'b [u8]) -> Option<Result<&'b [u8], FrameError>> {
        let dlen = self.delimiter.len();
        let last = self.delimiter[dlen - 1];
        let watch_lf = self.endings != LineEndings::Exact && last != b'\n';
        loop {
            let from = self.scan.max(self.start);
            let hay = &buf[from..];
            let found = if watch_lf { memchr::memchr2(last, b'\n', hay) } else { memchr::memchr(last, hay) };
            let Some(offset) = found else {
                self.scanned += hay.len() as u64;
                self.scan = buf.len();
                return self.check_partial(buf);
            };
            self.scanned += offset as u64 + 1;
            let pos = from + offset;
            self.scan = pos + 1;
            // Where the line ends (exclusive), if the byte at `pos` ends one.
            let is_delimiter = buf[pos] == last
                && pos + 1 >= self.start + dlen
                && buf[pos + 1 - dlen..=pos] == *self.delimiter;
            let end = if is_delimiter {
                pos + 1 - dlen
            } else if buf[pos] == b'\n' && self.endings != LineEndings::Exact {
                if self.endings == LineEndings::Strict {
                    let discarded = std::mem::replace(&mut self.discarding, false);
                    self.consume_to(pos + 1);
                    if discarded {
                        continue;
                    }
                    return Some(Err(FrameError::BareLineFeed));
                }
                if pos > self.start && buf[pos - 1] == b'\r' {
                    pos - 1
                } else {
                    pos
                }
            } else {
                continue;
            };
            let line_start = self.start;
            self.consume_to(pos + 1);
            if std::mem::replace(&mut self.discarding, false) {
                continue;
            }
            if end - line_start > self.max_length {
                return Some(Err(FrameError::LineTooLong { max: self.max_length }));
            }
            return Some(Ok(&buf[line_start..end]));
        }
    }

    /// Consumes input up to `next` (a line ending's end).
    fn consume_to(&mut self, next: usize) {
        self.start = next;
        self.scan = next;
        self.frames += 1;
    }

    /// No line ending in `buf`: reject (or keep discarding) an unfinished line that can no
    /// longer end within the limit.
    fn check_partial<'b>(&mut self, buf: &'b [u8]) -> Option<Result<&'b [u8], FrameError>> {
        let partial = buf.len() - self.start;
        let keep = self.possible_delimiter_start(&buf[self.start..]);
        if self.discarding {
            // Drop everything but what may be the start of the line ending.
            self.start = buf.len() - keep;
            return None;
        }
        if partial - keep > self.max_length {
            self.discarding = true;
            self.start = buf.len() - keep;
            return Some(Err(FrameError::LineTooLong { max: self.max_length }));
        }
        None
    }

    /// How many bytes at the end of `pending` may be the beginning of a line ending.
    fn possible_delimiter_start(&self, pending: &[u8]) -> usize {
        let mut keep = 0;
        for k in (1..self.delimiter.len()).rev() {
            if pending.ends_with(&self.delimiter[..k]) {
                keep = k;
                break;
            }
        }
        if self.endings == LineEndings::Lenient && pending.ends_with(b"\r") {
            keep = keep.max(1);
        }
        keep
    }
}
