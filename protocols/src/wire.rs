//! The toy protocols of Twisted's `wire.py`, handy for testing clients and load generators:
//! [`Echo`] (RFC 862), [`Discard`] (RFC 863), [`Chargen`] (RFC 864), [`Daytime`] (RFC 867)
//! and [`Qotd`] (RFC 865).
//!
//! ```
//! use torsion_protocols::wire::{Discard, Qotd};
//! use torsion_reactor::testing::Harness;
//!
//! let mut h = Harness::new();
//! let quote = h.accept(&mut |_| Some(Qotd::default())).unwrap();
//! assert_eq!(h.take_written(quote), b"An apple a day keeps the doctor away.\r\n");
//! assert!(h.fin_sent(quote));
//!
//! let sink = h.accept(&mut |_| Some(Discard)).unwrap();
//! h.feed(sink, b"into the void");
//! assert!(h.take_written(sink).is_empty());
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use torsion_reactor::{Ctx, Protocol, TimerId};

pub use crate::Echo;

/// Reads and drops everything (Twisted's `wire.Discard`, RFC 863).
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Protocol for Discard {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

/// Characters per Chargen line, before CRLF (RFC 864).
const LINE: usize = 72;
/// The printable ASCII characters Chargen rotates through (space to `~`).
const PRINTABLE: usize = 95;
/// One full cycle of the pattern: 95 lines of 72 characters and CRLF.
const CYCLE_LEN: usize = PRINTABLE * (LINE + 2);

const fn chargen_cycle() -> [u8; CYCLE_LEN] {
    let mut out = [0u8; CYCLE_LEN];
    let mut line = 0;
    while line < PRINTABLE {
        let mut i = 0;
        while i < LINE {
            out[line * (LINE + 2) + i] = b' ' + ((line + i) % PRINTABLE) as u8;
            i += 1;
        }
        out[line * (LINE + 2) + LINE] = b'\r';
        out[line * (LINE + 2) + LINE + 1] = b'\n';
        line += 1;
    }
    out
}

/// The Chargen pattern, one cycle, built at compile time and sent without copying.
static CYCLE: [u8; CYCLE_LEN] = chargen_cycle();

/// The first `len` bytes of the endless Chargen stream (RFC 864: 72-character lines, each
/// starting one character further along the 95 printable ASCII characters), for checking
/// what a [`Chargen`] sent.
pub fn chargen_pattern(len: usize) -> Vec<u8> {
    CYCLE.iter().copied().cycle().take(len).collect()
}

/// Most bytes [`Chargen`] writes in one callback. It normally stops earlier, when the write
/// buffer goes above its high watermark; past this it yields and carries on next turn.
pub const CHARGEN_MAX_PER_CALL: usize = 1 << 20;

/// Sends the RFC 864 character pattern for as long as the peer reads it, ignoring input
/// (Twisted's `wire.Chargen`).
///
/// Chargen is a push producer through the connection's own producer slot: it writes until
/// the transport's buffer goes above its high watermark, then waits for `resume_producing`.
/// A peer that stops reading therefore costs at most the high watermark plus one cycle of
/// the pattern (7,030 bytes) of memory. The pattern is a static buffer; writes do not copy
/// it. When the peer half-closes, Chargen stops and the connection closes after a flush.
///
/// By default the stream is endless, as RFC 864 has it; [`set_max_bytes`](Self::set_max_bytes)
/// makes it send that many bytes and close.
///
/// ```
/// use torsion_protocols::wire::{chargen_pattern, Chargen};
/// use torsion_reactor::testing::Harness;
///
/// let mut h = Harness::new();
/// let id = h
///     .accept(&mut |_| {
///         let mut chargen = Chargen::new();
///         chargen.set_max_bytes(Some(1000));
///         Some(chargen)
///     })
///     .unwrap();
/// assert_eq!(h.take_written(id), chargen_pattern(1000));
/// assert!(h.fin_sent(id));
/// ```
#[derive(Debug, Default)]
pub struct Chargen {
    /// Offset into the cycle of the next byte to send.
    offset: usize,
    paused: bool,
    /// The transport stopped taking writes (closing); produce no more.
    done: bool,
    /// Pending "carry on next turn" timer, after writing [`CHARGEN_MAX_PER_CALL`].
    more: Option<TimerId>,
    /// Bytes left to send before closing; `None`: endless.
    left: Option<u64>,
}

impl Chargen {
    /// A Chargen at the start of the pattern.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends at most `max` bytes, then closes (`None`, the default: endless). Counts from
    /// the start of the connection.
    pub fn set_max_bytes(&mut self, max: Option<u64>) -> &mut Self {
        self.left = max;
        self
    }

    /// Builder form of [`set_max_bytes`](Self::set_max_bytes), by value.
    pub fn with_max_bytes(mut self, max: Option<u64>) -> Self {
        self.set_max_bytes(max);
        self
    }

    fn produce(&mut self, cx: &mut Ctx<'_>) {
        if self.paused || self.done || self.more.is_some() {
            return;
        }
        let mut written = 0;
        while written < CHARGEN_MAX_PER_CALL {
            let mut chunk = &CYCLE[self.offset..];
            if let Some(left) = self.left {
                if left == 0 {
                    self.done = true;
                    cx.transport().lose_connection();
                    return;
                }
                chunk = &chunk[..chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX))];
                self.left = Some(left - chunk.len() as u64);
            }
            let before = cx.transport().bytes_written();
            let above = cx.transport().write_bytes(Bytes::from_static(chunk));
            if cx.transport().bytes_written() == before {
                // Closed or closing: the write was ignored.
                self.done = true;
                return;
            }
            written += chunk.len();
            self.offset = (self.offset + chunk.len()) % CYCLE_LEN;
            if above {
                // `pause_producing` follows after this callback.
                return;
            }
        }
        self.more = Some(cx.set_timer(Duration::ZERO));
    }
}

impl Protocol for Chargen {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.produce(cx);
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.done = true;
        false
    }

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        if self.more == Some(timer) {
            self.more = None;
            self.produce(cx);
        }
    }

    /// The buffer is full: stop writing (reading goes on, and input is discarded).
    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.paused = true;
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.paused = false;
        self.produce(cx);
    }
}

/// Where [`Daytime`] gets the time.
type TimeSource = Box<dyn Fn() -> SystemTime>;

/// Sends the current date and time, then closes (Twisted's `wire.Daytime`, RFC 867). The
/// format is RFC 2822's, in UTC: `Sun, 29 Nov 2026 14:47:44 +0000` and CRLF (RFC 867 leaves
/// the syntax open; see [`format_rfc2822`]).
pub struct Daytime {
    now: TimeSource,
}

impl std::fmt::Debug for Daytime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daytime").finish_non_exhaustive()
    }
}

impl Default for Daytime {
    fn default() -> Self {
        Self::new()
    }
}

impl Daytime {
    /// Daytime from the system clock.
    pub fn new() -> Self {
        Daytime { now: Box::new(SystemTime::now) }
    }

    /// Daytime from another time source (a fixed time in tests).
    pub fn with_time_source(now: impl Fn() -> SystemTime + 'static) -> Self {
        Daytime { now: Box::new(now) }
    }
}

impl Protocol for Daytime {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let mut text = format_rfc2822((self.now)());
        text.push_str("\r\n");
        cx.transport().write(text.as_bytes());
        cx.transport().lose_connection();
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Formats `time` in UTC as RFC 2822 (section 3.3) does: `Thu, 01 Jan 1970 00:00:00 +0000`.
/// Times before 1970 work too; fractions of a second are dropped.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use torsion_protocols::wire::format_rfc2822;
///
/// assert_eq!(format_rfc2822(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
/// let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day 2000
/// assert_eq!(format_rfc2822(t), "Tue, 29 Feb 2000 00:00:00 +0000");
/// ```
pub fn format_rfc2822(time: SystemTime) -> String {
    let secs: i64 = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            // Before the epoch: round down to the whole second.
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    format!(
        "{weekday}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month (1–12) and day (1–31) of a day count from 1970-01-01, in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The quote a default [`Qotd`] sends (Twisted's).
pub const DEFAULT_QUOTE: &str = "An apple a day keeps the doctor away.\r\n";

/// Longest quote RFC 865 allows: 512 characters.
pub const MAX_QUOTE_LEN: usize = 512;

/// Sends a quote, then closes (Twisted's `wire.QOTD`, RFC 865).
#[derive(Debug, Clone)]
pub struct Qotd {
    quote: Bytes,
}

impl Default for Qotd {
    fn default() -> Self {
        Qotd { quote: Bytes::from_static(DEFAULT_QUOTE.as_bytes()) }
    }
}

impl Qotd {
    /// Sends `quote`, cut to [`MAX_QUOTE_LEN`] bytes as RFC 865 asks. Include the line end
    /// you want (CRLF, say).
    pub fn new(quote: impl Into<Bytes>) -> Self {
        let mut quote = quote.into();
        quote.truncate(MAX_QUOTE_LEN);
        Qotd { quote }
    }
}

impl Protocol for Qotd {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write_bytes(self.quote.clone());
        cx.transport().lose_connection();
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}
