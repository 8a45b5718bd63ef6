//! `LineDecoder` and `LineReceiver`: every split of the input gives the same lines, limits at
//! max and max+1, raw/line switching inside one chunk, pausing with lines buffered, line
//! ending modes, the frame deadline, linear cost on a 1 MiB line fed byte by byte,
//! `write_buffer_above_high`, and the builder forms chained into `Box::new`.
//! All on the in-memory harness: no sockets, no sleeps.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;
use torsion_protocols::framing::{
    FrameError, LineCtx, LineDecoder, LineEndings, LineHandler, LineReceiver, DEFAULT_MAX_LINE_LENGTH,
};
use torsion_reactor::testing::{assert_chunking_invariant, Harness};
use torsion_reactor::{ConnId, DisconnectReason, Protocol, TimerId};

/// What a [`Recorder`] saw. Consecutive raw chunks are merged, so the log does not depend on
/// how the input was split.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Line(Vec<u8>),
    Raw(Vec<u8>),
    TooLong,
    Eof,
    Lost(String),
}

type Log = Rc<RefCell<Vec<Ev>>>;

/// A line handler driven by the lines themselves:
/// - `RAW <n>`: switch to raw mode for the next `n` bytes, then back to line mode, handing
///   back whatever came after them (`COPY <n>`: the same, handing back a copy);
/// - `PAUSE <secs>`: pause, and resume from a timer `secs` seconds later;
/// - `CLEAR`: discard everything buffered;
/// - `MAX <n>`: set the maximum line length;
/// - `FILL <secs>`: write 100 KiB from a timer `secs` seconds later (filling the write buffer
///   while lines are held back);
/// - anything else is echoed with `send_line`.
#[derive(Default)]
struct Recorder {
    log: Log,
    raw_left: usize,
    hand_back_copy: bool,
    resume_timer: Option<TimerId>,
    fill_timer: Option<TimerId>,
    /// Skip too-long lines instead of closing.
    tolerate_long: bool,
    /// Keep the write side open after the peer's FIN (a half-close protocol).
    keep_open_on_eof: bool,
}

impl Recorder {
    fn push(&self, ev: Ev) {
        let mut log = self.log.borrow_mut();
        if let (Ev::Raw(more), Some(Ev::Raw(last))) = (&ev, log.last_mut()) {
            last.extend_from_slice(more);
            return;
        }
        log.push(ev);
    }
}

fn number(line: &[u8], prefix: &str) -> Option<usize> {
    std::str::from_utf8(line.strip_prefix(prefix.as_bytes())?).ok()?.parse().ok()
}

impl LineHandler for Recorder {
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        self.push(Ev::Line(line.to_vec()));
        if let Some(n) = number(line, "RAW ").or(number(line, "COPY ")) {
            self.raw_left = n;
            self.hand_back_copy = line.starts_with(b"COPY");
            lx.set_raw_mode();
        } else if let Some(secs) = number(line, "PAUSE ") {
            lx.pause();
            self.resume_timer = Some(lx.set_timer(Duration::from_secs(secs as u64)));
        } else if line == b"CLEAR" {
            lx.clear_line_buffer();
        } else if let Some(max) = number(line, "MAX ") {
            lx.set_max_length(max);
        } else if let Some(secs) = number(line, "FILL ") {
            self.fill_timer = Some(lx.set_timer(Duration::from_secs(secs as u64)));
        } else {
            lx.send_line(line);
        }
    }

    fn raw_data_received(&mut self, lx: &mut LineCtx<'_, '_>, data: &[u8]) {
        let take = self.raw_left.min(data.len());
        self.push(Ev::Raw(data[..take].to_vec()));
        self.raw_left -= take;
        if self.raw_left == 0 {
            if self.hand_back_copy {
                // Bytes that do not live in `data`: the receiver must copy them.
                let copy = data[take..].to_vec();
                lx.set_line_mode(&copy);
            } else {
                lx.set_line_mode(&data[take..]);
            }
        }
    }

    fn line_length_exceeded(&mut self, lx: &mut LineCtx<'_, '_>) {
        self.push(Ev::TooLong);
        if !self.tolerate_long {
            let max = lx.max_length();
            lx.lose_connection_with(DisconnectReason::LimitExceeded(format!("over {max}")));
        }
    }

    fn eof_received(&mut self, _lx: &mut LineCtx<'_, '_>) -> bool {
        self.push(Ev::Eof);
        self.keep_open_on_eof
    }

    fn connection_lost(&mut self, _lx: &mut LineCtx<'_, '_>, reason: DisconnectReason) {
        let text = format!("{reason:?}");
        let kind = text.split('(').next().unwrap_or_default().to_owned();
        self.push(Ev::Lost(kind));
    }

    fn timer_fired(&mut self, lx: &mut LineCtx<'_, '_>, timer: TimerId) {
        if self.resume_timer == Some(timer) {
            lx.resume();
        }
        if self.fill_timer == Some(timer) {
            lx.transport().write(&vec![b'x'; 100 * 1024]);
        }
    }
}

/// A harness connection running a `LineReceiver<Recorder>` built by `make`.
fn start(make: impl Fn(Recorder) -> LineReceiver<Recorder> + 'static) -> (Harness, ConnId, Log) {
    let log = Log::default();
    let mut h = Harness::new();
    let shared = log.clone();
    let id = h
        .accept(&mut move |_| {
            let recorder = Recorder { log: shared.clone(), ..Recorder::default() };
            Some(Box::new(make(recorder)) as Box<dyn Protocol>)
        })
        .unwrap();
    (h, id, log)
}

fn events(log: &Log) -> Vec<Ev> {
    log.borrow().clone()
}

/// Feeds `pieces` to a fresh receiver; returns the events and what was written back.
fn run(pieces: &[&[u8]], make: impl Fn(Recorder) -> LineReceiver<Recorder> + 'static) -> (Vec<Ev>, Vec<u8>) {
    let (mut h, id, log) = start(make);
    for piece in pieces {
        h.feed(id, piece);
    }
    // Let any pause timers run out.
    h.advance(Duration::from_secs(60));
    let written = h.take_written(id);
    (events(&log), written)
}

fn line(text: &[u8]) -> Ev {
    Ev::Line(text.to_vec())
}

fn reason(h: &Harness, id: ConnId) -> Option<DisconnectReason> {
    h.disconnect_reason(id)
}

#[test]
fn every_chunking_gives_the_same_lines() {
    let mut input = Vec::new();
    input.extend_from_slice(b"one\r\n\r\ntwo\rstill two\nstill\r\r\n");
    input.extend_from_slice(&[b'm'; 40]);
    input.extend_from_slice(b"\r\nlast\r\npartial");
    assert_chunking_invariant(&input, 16, 64, |pieces| {
        run(pieces, |r| LineReceiver::new(r).with_max_length(40))
    });
    let (events, written) = run(&[&input], |r| LineReceiver::new(r).with_max_length(40));
    let forty = vec![b'm'; 40];
    assert_eq!(
        events,
        vec![
            line(b"one"),
            line(b""),
            line(b"two\rstill two\nstill\r"),
            Ev::Line(forty.clone()),
            line(b"last")
        ]
    );
    let mut expected = b"one\r\n\r\ntwo\rstill two\nstill\r\r\n".to_vec();
    expected.extend_from_slice(&forty);
    expected.extend_from_slice(b"\r\nlast\r\n");
    assert_eq!(written, expected);
}

#[test]
fn raw_and_line_mode_switch_inside_one_chunk_under_every_chunking() {
    let input = b"a\r\nRAW 5\r\nhelloworld\r\nRAW 3\r\nxy\r\nz\r\nPAUSE 1\r\nRAW 2\r\n12b\r\n";
    let expected = vec![
        line(b"a"),
        line(b"RAW 5"),
        Ev::Raw(b"hello".to_vec()),
        line(b"world"),
        line(b"RAW 3"),
        Ev::Raw(b"xy\r".to_vec()),
        line(b"\nz"),
        line(b"PAUSE 1"),
        line(b"RAW 2"),
        Ev::Raw(b"12".to_vec()),
        line(b"b"),
    ];
    assert_eq!(run(&[input], LineReceiver::new).0, expected);
    assert_chunking_invariant(input, 16, 64, |pieces| run(pieces, LineReceiver::new));
}

#[test]
fn set_line_mode_with_bytes_from_elsewhere_parses_them_first() {
    let input = b"COPY 2\r\nabcd\r\nRAW 1\r\nxy\r\n";
    let expected = vec![
        line(b"COPY 2"),
        Ev::Raw(b"ab".to_vec()),
        line(b"cd"),
        line(b"RAW 1"),
        Ev::Raw(b"x".to_vec()),
        line(b"y"),
    ];
    assert_eq!(run(&[input], LineReceiver::new).0, expected);
    assert_chunking_invariant(input, 16, 32, |pieces| run(pieces, LineReceiver::new));
}

#[test]
fn a_line_of_exactly_max_is_accepted_and_max_plus_one_is_not() {
    for max in [1usize, 10, DEFAULT_MAX_LINE_LENGTH] {
        let at_max = vec![b'a'; max];
        let (seen, _) = run(&[&at_max, b"\r\n"], move |r| LineReceiver::new(r).with_max_length(max));
        assert_eq!(seen, vec![Ev::Line(at_max.clone())], "max {max}");

        let (mut h, id, log) = start(move |r| LineReceiver::new(r).with_max_length(max));
        let mut over = vec![b'a'; max + 1];
        over.extend_from_slice(b"\r\nnext\r\n");
        h.feed(id, &over);
        assert_eq!(events(&log), vec![Ev::TooLong, Ev::Lost("LimitExceeded".into())], "max {max}");
        assert!(matches!(reason(&h, id), Some(DisconnectReason::LimitExceeded(_))), "{:?}", reason(&h, id));
    }
}

#[test]
fn the_default_limit_is_16384_and_its_close_reason_is_distinct() {
    let (mut h, id, log) = start_plain(LineReceiver::new);
    h.feed(id, &vec![b'a'; 16384]);
    h.feed(id, b"\r\n");
    assert!(h.is_open(id));
    assert_eq!(events(&log), vec![Ev::Line(vec![b'a'; 16384])]);
    h.feed(id, &vec![b'a'; 16385]);
    assert_eq!(
        h.disconnect_reason(id),
        Some(DisconnectReason::LimitExceeded("line longer than 16384 bytes".into()))
    );
}

/// A `LineHandler` with only `line_received`: the default hooks are the ones under test.
struct Plain(Log);

impl LineHandler for Plain {
    fn line_received(&mut self, _lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        self.0.borrow_mut().push(Ev::Line(line.to_vec()));
    }
}

fn start_plain(receiver: impl Fn(Plain) -> LineReceiver<Plain> + 'static) -> (Harness, ConnId, Log) {
    let log = Log::default();
    let shared = log.clone();
    let mut h = Harness::new();
    let id =
        h.accept(&mut move |_| Some(Box::new(receiver(Plain(shared.clone()))) as Box<dyn Protocol>)).unwrap();
    (h, id, log)
}

#[test]
fn an_unfinished_line_is_rejected_as_soon_as_it_cannot_fit() {
    let (mut h, id, _log) = start_plain(|p| LineReceiver::new(p).with_max_length(10));
    h.feed(id, &[b'a'; 10]);
    // The first byte of the delimiter may follow a full line: not rejected yet.
    h.feed(id, b"\r");
    assert!(h.is_open(id));
    // An 11th byte that is not the delimiter: rejected without waiting for the delimiter.
    let (mut h2, id2, _) = start_plain(|p| LineReceiver::new(p).with_max_length(10));
    h2.feed(id2, &[b'a'; 11]);
    assert_eq!(
        h2.disconnect_reason(id2),
        Some(DisconnectReason::LimitExceeded("line longer than 10 bytes".into()))
    );
    h.feed(id, b"\n");
    assert!(h.is_open(id));
}

#[test]
fn the_buffer_never_exceeds_max_plus_delimiter_and_too_long_lines_are_skipped_when_tolerated() {
    let mut decoder = LineDecoder::new().with_max_length(8);
    let mut results = Vec::new();
    for byte in b"0123456789abcdef\r\nok\r\n12345678\r\n" {
        results.extend(decoder.feed(&[*byte]));
        assert!(decoder.buffered_len() < 8 + 2, "buffered {}", decoder.buffered_len());
    }
    assert_eq!(
        results,
        vec![Err(FrameError::LineTooLong { max: 8 }), Ok(b"ok".to_vec()), Ok(b"12345678".to_vec())]
    );

    // Through the receiver, with a hook that does not close.
    let (mut h, id, log) = start(|mut r| {
        r.tolerate_long = true;
        LineReceiver::new(r).with_max_length(4)
    });
    h.feed(id, b"toolong\r\nfine\r\nlonger than four\r\nok\r\n");
    assert_eq!(events(&log), vec![Ev::TooLong, line(b"fine"), Ev::TooLong, line(b"ok")]);
    assert!(h.is_open(id));
}

#[test]
fn set_max_length_from_the_handler_applies_to_the_rest_of_the_chunk() {
    let (mut h, id, log) = start(|r| LineReceiver::new(r).with_max_length(5));
    h.feed(id, b"MAX 3\r\nabc\r\nabcd\r\n");
    assert_eq!(
        events(&log),
        vec![line(b"MAX 3"), line(b"abc"), Ev::TooLong, Ev::Lost("LimitExceeded".into())]
    );
}

#[test]
fn pausing_holds_back_buffered_lines_and_a_timer_resumes_them_without_new_input() {
    let (mut h, id, log) = start(LineReceiver::new);
    h.feed(id, b"first\r\nPAUSE 5\r\nsecond\r\nthird\r\npart");
    assert_eq!(events(&log), vec![line(b"first"), line(b"PAUSE 5")]);
    // While paused, more input is held too.
    h.feed(id, b"ial\r\n");
    h.advance(Duration::from_secs(4));
    assert_eq!(events(&log).len(), 2, "{:?}", events(&log));
    h.advance(Duration::from_secs(1));
    assert_eq!(
        events(&log),
        vec![line(b"first"), line(b"PAUSE 5"), line(b"second"), line(b"third"), line(b"partial")]
    );
    assert_eq!(h.take_written(id), b"first\r\nsecond\r\nthird\r\npartial\r\n");
}

#[test]
fn a_fin_while_paused_is_reported_after_the_held_back_lines() {
    let (mut h, id, log) = start(LineReceiver::new);
    h.feed(id, b"PAUSE 2\r\nlast words\r\n");
    h.feed_eof(id);
    assert_eq!(events(&log), vec![line(b"PAUSE 2")]);
    assert!(h.is_open(id), "the FIN waits for the held-back line");
    h.advance(Duration::from_secs(2));
    assert_eq!(events(&log), vec![line(b"PAUSE 2"), line(b"last words"), Ev::Eof, Ev::Lost("Clean".into())]);
    assert_eq!(h.take_written(id), b"last words\r\n");
    assert!(h.fin_sent(id));
}

#[test]
fn a_full_write_buffer_holds_back_buffered_lines_until_it_drains() {
    let (mut h, id, log) = start(LineReceiver::new);
    h.set_peer_window(id, Some(0));
    // t=0: lines x and y are held back by PAUSE; t=1: 100 KiB written, above the 64 KiB high
    // mark (pause_producing); t=2: the handler resumes, but the write buffer is still full.
    h.feed(id, b"FILL 1\r\nPAUSE 2\r\nx\r\ny\r\n");
    h.advance(Duration::from_secs(1));
    h.advance(Duration::from_secs(1));
    assert_eq!(events(&log), vec![line(b"FILL 1"), line(b"PAUSE 2")]);
    let calls = h.calls(id);
    assert!(calls.contains(&torsion_reactor::testing::Call::PauseProducing), "{calls:?}");
    // The peer reads: the buffer drains, resume_producing delivers the held lines.
    h.set_peer_window(id, None);
    assert_eq!(events(&log), vec![line(b"FILL 1"), line(b"PAUSE 2"), line(b"x"), line(b"y")]);
    let written = h.take_written(id);
    assert_eq!(written.len(), 100 * 1024 + 6);
    assert!(written.ends_with(b"x\r\ny\r\n"));
}

#[test]
fn clear_line_buffer_drops_the_rest_of_the_chunk() {
    let (mut h, id, log) = start(LineReceiver::new);
    h.feed(id, b"CLEAR\r\ndropped\r\nalso dropped");
    h.feed(id, b"\r\nkept\r\n");
    // What was left of "also dropped" went; its delimiter arrives next, as an empty line.
    assert_eq!(events(&log), vec![line(b"CLEAR"), line(b""), line(b"kept")]);
}

#[test]
fn line_ending_modes() {
    let input = b"a\nb\r\nc\r\r\nd\r\n";
    let mut exact = LineDecoder::new();
    assert_eq!(exact.feed(input), vec![Ok(b"a\nb".to_vec()), Ok(b"c\r".to_vec()), Ok(b"d".to_vec())]);

    let mut lenient = LineDecoder::new().with_line_endings(LineEndings::Lenient);
    assert_eq!(
        lenient.feed(input),
        vec![Ok(b"a".to_vec()), Ok(b"b".to_vec()), Ok(b"c\r".to_vec()), Ok(b"d".to_vec())]
    );

    let mut strict = LineDecoder::new().with_line_endings(LineEndings::Strict);
    assert_eq!(
        strict.feed(input),
        vec![Err(FrameError::BareLineFeed), Ok(b"b".to_vec()), Ok(b"c\r".to_vec()), Ok(b"d".to_vec())]
    );

    // Lenient: a full-length line whose `\r` arrives before its `\n` is not rejected early.
    let mut lenient = LineDecoder::new().with_line_endings(LineEndings::Lenient).with_max_length(3);
    assert_eq!(lenient.feed(b"abc\r"), vec![]);
    assert_eq!(lenient.feed(b"\nxyz\n"), vec![Ok(b"abc".to_vec()), Ok(b"xyz".to_vec())]);

    // Every chunking gives the same lines in lenient mode.
    assert_chunking_invariant(input, 16, 32, |pieces| {
        let mut d = LineDecoder::new().with_line_endings(LineEndings::Lenient);
        pieces.iter().flat_map(|p| d.feed(p)).collect::<Vec<_>>()
    });

    // The receiver in strict mode closes on a bare LF with a protocol error.
    let (mut h, id, log) = start_plain(|p| LineReceiver::new(p).with_line_endings(LineEndings::Strict));
    h.feed(id, b"fine\r\nsmuggled\nline\r\nnever\r\n");
    assert_eq!(events(&log), vec![line(b"fine")]);
    assert!(
        matches!(reason(&h, id), Some(DisconnectReason::ProtocolError(ref m)) if m.starts_with("bare line feed")),
        "{:?}",
        reason(&h, id)
    );
}

#[test]
fn custom_delimiters() {
    let (mut h, id, log) = start_plain(|p| LineReceiver::new(p).with_delimiter(b"<END>"));
    h.feed(id, b"one<EN");
    h.feed(id, b"D><E<END>two<END>");
    assert_eq!(events(&log), vec![line(b"one"), line(b"<E"), line(b"two")]);
    assert_chunking_invariant(b"one<END><E<END>two<END>x", 16, 16, |pieces| {
        let mut d = LineDecoder::new().with_delimiter(b"<END>");
        pieces.iter().flat_map(|p| d.feed(p)).collect::<Vec<_>>()
    });
}

#[test]
fn the_frame_deadline_closes_a_drip_feeding_peer() {
    let (mut h, id, log) = start(|r| LineReceiver::new(r).with_frame_deadline(Duration::from_secs(5)));
    // Idle with nothing buffered: no deadline.
    h.advance(Duration::from_secs(60));
    assert!(h.is_open(id));
    // A line started at t, completed at t+4: fine. The next starts at t+4 in the same chunk.
    h.feed(id, b"ab");
    h.advance(Duration::from_secs(4));
    h.feed(id, b"c\r\nd");
    h.advance(Duration::from_secs(4));
    h.feed(id, b"e");
    assert!(h.is_open(id));
    h.advance(Duration::from_millis(999));
    assert!(h.is_open(id), "4.999 s after the line's first byte");
    h.advance(Duration::from_millis(1));
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
    assert_eq!(events(&log), vec![line(b"abc"), Ev::Lost("TimedOut".into())]);
}

#[test]
fn after_the_peer_s_fin_an_unfinished_line_is_dropped_and_not_timed() {
    let (mut h, id, log) = start(|mut r| {
        r.keep_open_on_eof = true;
        LineReceiver::new(r).with_frame_deadline(Duration::from_secs(5))
    });
    h.feed(id, b"done\r\nunfinished");
    h.feed_eof(id);
    h.advance(Duration::from_secs(60));
    assert!(h.is_open(id), "a half-open connection is not timed out for a line that cannot end");
    assert_eq!(events(&log), vec![line(b"done"), Ev::Eof]);
}

#[test]
fn the_frame_deadline_does_not_run_while_paused() {
    let (mut h, id, _log) = start(|r| LineReceiver::new(r).with_frame_deadline(Duration::from_secs(5)));
    h.feed(id, b"PAUSE 30\r\nheld\r\npart");
    h.advance(Duration::from_secs(29));
    assert!(h.is_open(id));
    // Resumed at t=30: the partial line gets a fresh 5 s.
    h.advance(Duration::from_secs(1));
    h.advance(Duration::from_secs(4));
    assert!(h.is_open(id));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
}

#[test]
fn a_one_mib_line_fed_one_byte_at_a_time_is_scanned_once() {
    const MIB: usize = 1 << 20;
    let mut decoder = LineDecoder::new().with_max_length(MIB);
    for i in 0..MIB {
        assert!(decoder.feed(&[b'a' + (i % 26) as u8]).is_empty());
    }
    let lines = decoder.feed(b"\r\n");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].as_ref().map(Vec::len), Ok(MIB));
    // Each byte examined once (a quadratic decoder would scan about 2^39 bytes).
    assert!(decoder.scanned_bytes() <= MIB as u64 + 2, "scanned {}", decoder.scanned_bytes());
}

#[test]
fn a_one_mib_line_fed_one_byte_at_a_time_through_the_receiver() {
    const LEN: usize = 1 << 20;
    let (mut h, id, log) = start(|r| LineReceiver::new(r).with_max_length(LEN));
    for _ in 0..LEN {
        h.feed(id, b"z");
    }
    h.feed(id, b"\r\n");
    assert_eq!(events(&log), vec![Ev::Line(vec![b'z'; LEN])]);
}

#[test]
fn whole_lines_in_big_chunks_are_not_copied_and_leave_no_buffer() {
    let mut decoder = LineDecoder::new();
    let chunk = b"some line of text\r\n".repeat(10_000);
    for _ in 0..10 {
        assert_eq!(decoder.feed(&chunk).len(), 10_000);
        assert_eq!(decoder.buffer_capacity(), 0, "nothing was buffered");
    }
    // An unfinished line costs about its own size.
    decoder.feed(&chunk[..chunk.len() - 5]);
    assert_eq!(decoder.buffered(), b"some line of t");
    assert!(decoder.buffer_capacity() < 1024, "{}", decoder.buffer_capacity());
}

#[test]
fn a_hundred_thousand_lines_in_one_chunk_need_no_recursion() {
    let input = b"x\r\n".repeat(100_000);
    let (mut h, id, log) = start_plain(LineReceiver::new);
    h.feed(id, &input);
    assert_eq!(log.borrow().len(), 100_000);
    assert!(h.is_open(id));
    // And as many raw/line switches.
    let mut input = Vec::new();
    for _ in 0..100_000 {
        input.extend_from_slice(b"RAW 1\r\n!");
    }
    let (mut h, id, log) = start(LineReceiver::new);
    h.feed(id, &input);
    assert_eq!(log.borrow().len(), 200_000);
    assert!(h.is_open(id));
}

fn arbitrary_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    // Bytes that make delimiter edge cases likely.
    let byte = prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()];
    proptest::collection::vec(proptest::collection::vec(byte, 0..40), 0..20)
}

/// Cuts `input` at the given points (taken modulo its length).
fn split_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points.into_iter().chain([input.len()]) {
        pieces.push(&input[last..p]);
        last = p;
    }
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_splits_give_the_same_lines_as_one_feed(
        lines in arbitrary_lines(),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
        endings in prop_oneof![Just(LineEndings::Exact), Just(LineEndings::Lenient), Just(LineEndings::Strict)],
    ) {
        let mut input = Vec::new();
        for l in &lines {
            input.extend_from_slice(l);
            input.extend_from_slice(b"\r\n");
        }
        let decode = |pieces: &[&[u8]]| {
            let mut d = LineDecoder::new().with_max_length(30).with_line_endings(endings);
            let mut out = Vec::new();
            for p in pieces {
                out.extend(d.feed(p));
                prop_assert!(d.buffered_len() <= 31);
            }
            Ok(out)
        };
        let whole = decode(&[&input])?;
        let pieces = split_at(&input, &cuts);
        let split = decode(&pieces)?;
        prop_assert_eq!(&split, &whole);
        // The buffered path (push, then next_line) agrees with the copy-free one.
        let mut d = LineDecoder::new().with_max_length(30).with_line_endings(endings);
        let mut pulled = Vec::new();
        for p in &pieces {
            d.push(p);
            while let Some(r) = d.next_line() {
                pulled.push(r.map(<[u8]>::to_vec));
            }
        }
        prop_assert_eq!(pulled, whole);
    }

    #[test]
    fn random_splits_through_the_receiver(
        lines in proptest::collection::vec("[a-z \\r]{0,20}", 0..10),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut input = Vec::new();
        for l in &lines {
            input.extend_from_slice(l.as_bytes());
            input.extend_from_slice(b"\r\n");
        }
        let whole = run(&[&input], LineReceiver::new);
        let split = run(&split_at(&input, &cuts), LineReceiver::new);
        prop_assert_eq!(split, whole);
    }
}

/// Closes straight through the transport (not through [`LineCtx`]) on the line `QUIT`.
struct QuitThroughTransport {
    lines: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl LineHandler for QuitThroughTransport {
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        self.lines.borrow_mut().push(line.to_vec());
        if line == b"QUIT" {
            lx.transport().lose_connection();
        }
    }
}

#[test]
fn closing_through_the_transport_stops_delivery_of_the_rest_of_the_chunk() {
    // Whole chunk, and split so that lines after QUIT sit in the decoder's buffer.
    for split in [usize::MAX, 3, 7] {
        let lines = Rc::new(RefCell::new(Vec::new()));
        let mut h = Harness::new();
        let l = lines.clone();
        let mut factory = move |_| {
            Some(Box::new(LineReceiver::new(QuitThroughTransport { lines: l.clone() })) as Box<dyn Protocol>)
        };
        let id = h.accept(&mut factory).unwrap();
        let input = b"a\r\nQUIT\r\nb\r\nc\r\n";
        for piece in input.chunks(split.min(input.len())) {
            h.feed(id, piece);
        }
        assert_eq!(*lines.borrow(), [b"a".to_vec(), b"QUIT".to_vec()], "split {split}");
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
    }
}

/// `send_line` as the tail of a function returning `()`: this compiles only because it returns
/// nothing, like Twisted's `sendLine`.
fn send(lx: &mut LineCtx<'_, '_>, line: &[u8]) {
    lx.send_line(line)
}

/// Answers `FLOOD` with 18-byte lines until the write buffer is above its high watermark,
/// recording what `write_buffer_above_high` said after each; any other line records the
/// answer before writing anything.
struct Flood {
    answers: Rc<RefCell<Vec<bool>>>,
}

impl LineHandler for Flood {
    fn connection_made(&mut self, lx: &mut LineCtx<'_, '_>) {
        lx.transport().set_write_buffer_limits(100, 10).unwrap();
    }

    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        if line != b"FLOOD" {
            self.answers.borrow_mut().push(lx.write_buffer_above_high());
            return;
        }
        for _ in 0..1000 {
            send(lx, &[b'x'; 18]);
            let above = lx.write_buffer_above_high();
            self.answers.borrow_mut().push(above);
            if above {
                break;
            }
        }
    }
}

#[test]
fn send_line_returns_nothing_and_write_buffer_above_high_tells_when_to_stop() {
    let answers = Rc::new(RefCell::new(Vec::new()));
    let mut h = Harness::new();
    let shared = answers.clone();
    let mut factory =
        move |_| Some(Box::new(LineReceiver::new(Flood { answers: shared.clone() })) as Box<dyn Protocol>);
    let id = h.accept(&mut factory).unwrap();
    h.set_peer_window(id, Some(0)); // nothing drains
    h.feed(id, b"FLOOD\r\n");
    // 20 bytes a line against a high mark of 100 (strictly above): the 6th line crosses it.
    assert_eq!(*answers.borrow(), [false, false, false, false, false, true]);
    answers.borrow_mut().clear();
    // The buffer drains below the low mark: the next callback sees it below the high mark.
    h.set_peer_window(id, None);
    assert_eq!(h.take_written(id).len(), 6 * 20);
    h.feed(id, b"ask\r\n");
    assert_eq!(*answers.borrow(), [false]);
}

#[test]
fn builder_methods_chain_into_box() {
    let log = Log::default();
    let recorder = Recorder { log: log.clone(), ..Recorder::default() };
    let protocol: Box<dyn Protocol> = Box::new(
        LineReceiver::new(recorder)
            .with_max_length(100)
            .with_line_endings(LineEndings::Lenient)
            .with_frame_deadline(Duration::from_secs(5)),
    );
    let mut protocol = Some(protocol);
    let mut h = Harness::new();
    let id = h.accept(&mut move |_| protocol.take()).unwrap();
    let mut input = vec![b'a'; 100];
    input.extend_from_slice(b"\nbare\r\n");
    h.feed(id, &input);
    assert_eq!(events(&log), vec![Ev::Line(vec![b'a'; 100]), line(b"bare")], "lenient, 100 accepted");
    h.feed(id, b"unfinished");
    h.advance(Duration::from_secs(5));
    assert_eq!(reason(&h, id), Some(DisconnectReason::TimedOut), "the frame deadline");

    let log = Log::default();
    let recorder = Recorder { log: log.clone(), ..Recorder::default() };
    let mut protocol = Some(Box::new(LineReceiver::new(recorder).with_max_length(100)) as Box<dyn Protocol>);
    let id = h.accept(&mut move |_| protocol.take()).unwrap();
    h.feed(id, &[b'b'; 101]);
    assert_eq!(events(&log), vec![Ev::TooLong, Ev::Lost("LimitExceeded".into())], "101 refused");
}
