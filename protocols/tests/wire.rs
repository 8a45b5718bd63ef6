//! The wire toys: Discard drops input, Chargen sends the RFC 864 pattern with bounded memory
//! against a peer that does not read, Daytime and QOTD send one reply and close, Echo echoes.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use torsion_protocols::wire::{
    chargen_pattern, format_rfc2822, Chargen, Daytime, Discard, Echo, Qotd, DEFAULT_QUOTE, MAX_QUOTE_LEN,
};
use torsion_reactor::testing::{Call, Harness};
use torsion_reactor::{ConnId, Ctx, DisconnectReason, Protocol, TimerId};

fn accept(h: &mut Harness, protocol: impl Protocol) -> ConnId {
    let mut protocol = Some(Box::new(protocol) as Box<dyn Protocol>);
    h.accept(&mut move |_| protocol.take()).expect("accepted")
}

#[test]
fn discard_reads_everything_and_writes_nothing() {
    let mut h = Harness::new();
    let id = accept(&mut h, Discard);
    for _ in 0..100 {
        h.feed(id, &[b'x'; 10_000]);
    }
    assert!(h.take_written(id).is_empty());
    assert!(h.is_open(id));
    h.feed_eof(id);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
}

#[test]
fn echo_from_the_wire_module_echoes() {
    let mut h = Harness::new();
    let id = accept(&mut h, Echo);
    h.feed(id, b"hello");
    assert_eq!(h.take_written(id), b"hello");
}

#[test]
fn chargen_pattern_is_rfc_864() {
    let p = chargen_pattern(95 * 74 * 2 + 10);
    let lines: Vec<&[u8]> = p.split(|b| *b == b'\n').collect();
    assert_eq!(
        lines[0],
        &b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r"[..]
    );
    assert_eq!(
        lines[1],
        &b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r"[..]
    );
    for (i, line) in lines[..190].iter().enumerate() {
        assert_eq!(line.len(), 73, "line {i}: 72 characters and CR");
        assert_eq!(line[0], b' ' + (i % 95) as u8, "line {i} starts one character further on");
        assert!(line[..72].iter().all(|c| (b' '..=b'~').contains(c)));
    }
    assert_eq!(lines[95], lines[0], "the pattern repeats after 95 lines");
}

/// Starts a Chargen only when the peer first sends something, so the test can close the
/// peer's window before the first write.
struct StartOnData {
    chargen: Chargen,
    started: bool,
    max_buffer: Rc<Cell<usize>>,
}

impl StartOnData {
    fn note(&self, cx: &mut Ctx<'_>) {
        let len = cx.transport().write_buffer_len();
        self.max_buffer.set(self.max_buffer.get().max(len));
    }
}

impl Protocol for StartOnData {
    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        if !self.started {
            self.started = true;
            self.chargen.connection_made(cx);
            self.note(cx);
        }
    }

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        self.chargen.timer_fired(cx, timer);
        self.note(cx);
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.chargen.pause_producing(cx);
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.chargen.resume_producing(cx);
        self.note(cx);
    }
}

#[test]
fn chargen_memory_stays_bounded_when_the_peer_does_not_read() {
    let mut h = Harness::new();
    let max_buffer = Rc::new(Cell::new(0));
    let id = accept(
        &mut h,
        StartOnData { chargen: Chargen::new(), started: false, max_buffer: max_buffer.clone() },
    );
    h.set_peer_window(id, Some(0));
    h.feed(id, b"go");
    // The peer reads nothing for a simulated hour.
    for _ in 0..3600 {
        h.advance(Duration::from_secs(1));
    }
    let bound = 64 * 1024 + 7030;
    assert!(max_buffer.get() > 64 * 1024, "Chargen did not fill the buffer to the high mark");
    assert!(max_buffer.get() <= bound, "buffered {} bytes, more than {bound}", max_buffer.get());
    assert!(h.calls(id).contains(&Call::PauseProducing));
    assert!(h.take_written(id).is_empty());
    // Now the peer reads 10 kB at a time, 200 times: 2 MB, all of it the pattern, and the
    // buffer never grows past the bound.
    h.set_peer_window(id, Some(10_000));
    let mut got = Vec::new();
    for _ in 0..200 {
        got.extend(h.take_written(id));
    }
    assert!(got.len() >= 1_990_000, "only {} bytes", got.len());
    assert!(got == chargen_pattern(got.len()), "the stream is not the RFC 864 pattern");
    assert!(max_buffer.get() <= bound, "buffered {} bytes, more than {bound}", max_buffer.get());
    // Input is discarded while Chargen runs.
    h.feed(id, b"more input");
    assert!(h.is_open(id));
}

#[test]
fn chargen_with_a_byte_limit_sends_exactly_that_and_closes() {
    for limit in [0u64, 1, 71, 72, 74, 7030, 7031, 100_000, 1 << 20] {
        let mut h = Harness::new();
        // The builder form; it goes through `set_max_bytes`.
        let id = accept(&mut h, Chargen::new().with_max_bytes(Some(limit)));
        let mut got = h.take_written(id);
        for _ in 0..200 {
            if !h.is_open(id) {
                break;
            }
            got.extend(h.take_written(id));
        }
        assert_eq!(got.len() as u64, limit);
        assert!(got == chargen_pattern(got.len()));
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean), "limit {limit}");
    }
}

#[test]
fn chargen_stops_when_the_peer_half_closes() {
    let mut h = Harness::new();
    let max_buffer = Rc::new(Cell::new(0));
    let id = accept(&mut h, StartOnData { chargen: Chargen::new(), started: false, max_buffer });
    h.set_peer_window(id, Some(0));
    h.feed(id, b"go");
    h.feed_eof(id);
    h.set_peer_window(id, None);
    let mut total = h.take_written(id).len();
    for _ in 0..10 {
        total += h.take_written(id).len();
    }
    assert!(total <= 64 * 1024 + 7030, "Chargen kept producing after the FIN: {total} bytes");
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
}

/// 2026-11-29 14:47:44 UTC.
const A_SUNDAY: u64 = 1_795_963_664;

#[test]
fn daytime_writes_the_date_then_closes() {
    let mut h = Harness::new();
    let id = accept(&mut h, Daytime::with_time_source(|| UNIX_EPOCH + Duration::from_secs(A_SUNDAY)));
    assert_eq!(h.take_written(id), b"Sun, 29 Nov 2026 14:47:44 +0000\r\n");
    assert!(h.fin_sent(id));
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
}

#[test]
fn daytime_from_the_system_clock_has_the_right_shape() {
    let mut h = Harness::new();
    let id = accept(&mut h, Daytime::new());
    let text = String::from_utf8(h.take_written(id)).unwrap();
    assert_eq!(text.len(), "Sun, 29 Nov 2026 14:47:44 +0000\r\n".len(), "{text:?}");
    assert!(text.ends_with(" +0000\r\n"));
}

#[test]
fn rfc2822_formatting_across_the_calendar() {
    let at = |secs: i64| {
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    };
    assert_eq!(format_rfc2822(at(0)), "Thu, 01 Jan 1970 00:00:00 +0000");
    assert_eq!(format_rfc2822(at(-1)), "Wed, 31 Dec 1969 23:59:59 +0000");
    assert_eq!(format_rfc2822(UNIX_EPOCH - Duration::from_millis(1)), "Wed, 31 Dec 1969 23:59:59 +0000");
    assert_eq!(format_rfc2822(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 +0000");
    assert_eq!(format_rfc2822(at(1_709_208_000)), "Thu, 29 Feb 2024 12:00:00 +0000");
    assert_eq!(format_rfc2822(at(4_107_542_400)), "Mon, 01 Mar 2100 00:00:00 +0000");
    assert_eq!(format_rfc2822(at(-2_208_988_800)), "Mon, 01 Jan 1900 00:00:00 +0000");
    assert_eq!(format_rfc2822(at(-2_203_891_200)), "Thu, 01 Mar 1900 00:00:00 +0000");
    assert_eq!(format_rfc2822(at(253_402_300_799)), "Fri, 31 Dec 9999 23:59:59 +0000");
    assert_eq!(
        format_rfc2822(at(A_SUNDAY as i64) + Duration::from_millis(999)),
        "Sun, 29 Nov 2026 14:47:44 +0000"
    );
}

#[test]
fn qotd_sends_its_quote_then_closes() {
    let mut h = Harness::new();
    let id = accept(&mut h, Qotd::default());
    assert_eq!(h.take_written(id), DEFAULT_QUOTE.as_bytes());
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));

    let id = accept(&mut h, Qotd::new("Simple is better than complex.\r\n"));
    h.feed(id, b"input is ignored");
    assert_eq!(h.take_written(id), b"Simple is better than complex.\r\n");
    assert!(h.fin_sent(id));
}

#[test]
fn qotd_cuts_quotes_to_the_rfc_865_limit() {
    let mut h = Harness::new();
    let id = accept(&mut h, Qotd::new(Bytes::from(vec![b'q'; 2000])));
    assert_eq!(h.take_written(id).len(), MAX_QUOTE_LEN);
}
