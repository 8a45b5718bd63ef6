//! `IntNDecoder` and `IntNStringReceiver` (8, 16, 32-bit prefixes, both byte orders): every
//! split gives the same strings, limits at max and max+1, a 0xFFFFFFFF prefix rejected before
//! anything is buffered, `send_string` errors, pausing with strings buffered, the frame
//! deadline, and `write_buffer_above_high`. On the in-memory harness: no sockets, no sleeps.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;
use torsion_protocols::framing::{
    Endianness, FrameError, IntNDecoder, IntNStringReceiver, LengthPrefix, StringCtx, StringDecoder,
    StringEncoder, StringHandler, DEFAULT_MAX_STRING_LENGTH,
};
use torsion_reactor::testing::{assert_chunking_invariant, Harness};
use torsion_reactor::{ConnId, DisconnectReason, Protocol, TimerId};

const PREFIXES: [LengthPrefix; 3] = [LengthPrefix::Int8, LengthPrefix::Int16, LengthPrefix::Int32];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Str(Vec<u8>),
    TooLong(u64),
    SendError(FrameError),
    Lost(String),
}

type Log = Rc<RefCell<Vec<Ev>>>;

/// Echoes each string with `send_string`; `PAUSE` pauses for 5 s (resumed from a timer);
/// `SKIP` makes too-long strings skipped instead of closing; `SEND <n>` sends n bytes;
/// `MAX <n>` sets the maximum length; `FILL` writes 100 KiB from a timer 1 s later.
#[derive(Default)]
struct Recorder {
    log: Log,
    tolerate_long: bool,
    resume: Option<TimerId>,
    fill: Option<TimerId>,
}

impl StringHandler for Recorder {
    fn string_received(&mut self, sx: &mut StringCtx<'_, '_>, data: &[u8]) {
        self.log.borrow_mut().push(Ev::Str(data.to_vec()));
        if data == b"PAUSE" {
            sx.pause();
            self.resume = Some(sx.set_timer(Duration::from_secs(5)));
        } else if data == b"FILL" {
            self.fill = Some(sx.set_timer(Duration::from_secs(1)));
        } else if let Some(n) = data.strip_prefix(b"MAX ") {
            sx.set_max_length(std::str::from_utf8(n).unwrap().parse().unwrap());
        } else if data == b"SKIP" {
            self.tolerate_long = true;
        } else if let Some(n) = data.strip_prefix(b"SEND ") {
            let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
            if let Err(e) = sx.send_string(&vec![b's'; n]) {
                self.log.borrow_mut().push(Ev::SendError(e));
            }
        } else {
            sx.send_string(data).expect("an echo always fits");
        }
    }

    fn length_limit_exceeded(&mut self, sx: &mut StringCtx<'_, '_>, length: u64) {
        self.log.borrow_mut().push(Ev::TooLong(length));
        if !self.tolerate_long {
            sx.lose_connection_with(DisconnectReason::LimitExceeded(format!("{length}")));
        }
    }

    fn connection_lost(&mut self, _sx: &mut StringCtx<'_, '_>, reason: DisconnectReason) {
        let text = format!("{reason:?}");
        self.log.borrow_mut().push(Ev::Lost(text.split('(').next().unwrap_or_default().to_owned()));
    }

    fn timer_fired(&mut self, sx: &mut StringCtx<'_, '_>, timer: TimerId) {
        if self.resume == Some(timer) {
            sx.resume();
        }
        if self.fill == Some(timer) {
            sx.transport().write(&vec![b'f'; 100 * 1024]);
        }
    }
}

type Receiver = IntNStringReceiver<Recorder>;

fn start(make: impl Fn(Recorder) -> Receiver + 'static) -> (Harness, ConnId, Log) {
    let log = Log::default();
    let shared = log.clone();
    let mut h = Harness::new();
    let id = h
        .accept(&mut move |_| {
            Some(Box::new(make(Recorder { log: shared.clone(), ..Recorder::default() })) as Box<dyn Protocol>)
        })
        .unwrap();
    (h, id, log)
}

fn events(log: &Log) -> Vec<Ev> {
    log.borrow().clone()
}

fn encode(prefix: LengthPrefix, endianness: Endianness, strings: &[&[u8]]) -> Vec<u8> {
    let encoder = IntNDecoder::new(prefix).with_endianness(endianness).with_max_length(usize::MAX).encoder();
    let mut out = Vec::new();
    for s in strings {
        encoder.encode(s, &mut out).unwrap();
    }
    out
}

fn run(pieces: &[&[u8]], make: impl Fn(Recorder) -> Receiver + 'static) -> (Vec<Ev>, Vec<u8>) {
    let (mut h, id, log) = start(make);
    for piece in pieces {
        h.feed(id, piece);
    }
    h.advance(Duration::from_secs(60));
    let written = h.take_written(id);
    (events(&log), written)
}

#[test]
fn every_chunking_gives_the_same_strings_for_every_prefix_and_byte_order() {
    let long = vec![b'L'; 255];
    let strings: [&[u8]; 6] = [b"", b"a", b"hello", &long, b"PAUSE", b"after pause"];
    for prefix in PREFIXES {
        for endianness in [Endianness::Big, Endianness::Little] {
            let input = encode(prefix, endianness, &strings);
            let make = move |r| Receiver::new_prefixed(prefix, r).with_endianness(endianness);
            let (seen, written) = run(&[&input], make);
            let expected: Vec<Ev> = strings.iter().map(|s| Ev::Str(s.to_vec())).collect();
            assert_eq!(seen, expected, "{prefix:?} {endianness:?}");
            // Everything but PAUSE is echoed, framed the same way.
            let echoed: Vec<&[u8]> = strings.iter().copied().filter(|s| *s != b"PAUSE").collect();
            assert_eq!(written, encode(prefix, endianness, &echoed), "{prefix:?} {endianness:?}");
            assert_chunking_invariant(&input, 16, 32, |pieces| run(pieces, make));
        }
    }
}

#[test]
fn byte_order_and_width_of_the_prefix() {
    assert_eq!(encode(LengthPrefix::Int8, Endianness::Big, &[b"ab"]), b"\x02ab");
    assert_eq!(encode(LengthPrefix::Int16, Endianness::Big, &[b"ab"]), b"\x00\x02ab");
    assert_eq!(encode(LengthPrefix::Int16, Endianness::Little, &[b"ab"]), b"\x02\x00ab");
    assert_eq!(encode(LengthPrefix::Int32, Endianness::Big, &[b"ab"]), b"\x00\x00\x00\x02ab");
    assert_eq!(encode(LengthPrefix::Int32, Endianness::Little, &[b"ab"]), b"\x02\x00\x00\x00ab");
    let mut d = IntNDecoder::new(LengthPrefix::Int32).with_endianness(Endianness::Little);
    assert_eq!(d.feed(b"\x01\x00\x00\x00z"), vec![Ok(b"z".to_vec())]);
}

#[test]
fn a_string_of_exactly_max_is_accepted_and_max_plus_one_is_not() {
    for prefix in PREFIXES {
        let max = 200;
        let (seen, _) = run(&[&encode(prefix, Endianness::Big, &[&[b'm'; 200]])], move |r| {
            Receiver::new_prefixed(prefix, r).with_max_length(max)
        });
        assert_eq!(seen, vec![Ev::Str(vec![b'm'; 200])], "{prefix:?}");

        // One more: not delivered even though the whole body is in the same chunk.
        let (mut h, id, log) = start(move |r| Receiver::new_prefixed(prefix, r).with_max_length(max));
        h.feed(id, &encode(prefix, Endianness::Big, &[&[b'm'; 201], b"next"]));
        assert_eq!(events(&log), vec![Ev::TooLong(201), Ev::Lost("LimitExceeded".into())], "{prefix:?}");
    }
    // The default limit, with the default hook's reason.
    struct Plain;
    impl StringHandler for Plain {
        fn string_received(&mut self, _sx: &mut StringCtx<'_, '_>, _data: &[u8]) {}
    }
    let mut h = Harness::new();
    let id =
        h.accept(&mut |_| Some(Box::new(IntNStringReceiver::int32(Plain)) as Box<dyn Protocol>)).unwrap();
    h.feed(id, &encode(LengthPrefix::Int32, Endianness::Big, &[&vec![0; DEFAULT_MAX_STRING_LENGTH]]));
    assert!(h.is_open(id));
    h.feed(id, &((DEFAULT_MAX_STRING_LENGTH + 1) as u32).to_be_bytes());
    assert_eq!(
        h.disconnect_reason(id),
        Some(DisconnectReason::LimitExceeded(
            "frame length 100000 exceeds the maximum of 99999 bytes".into()
        ))
    );
}

#[test]
fn a_0xffffffff_prefix_is_rejected_before_anything_is_buffered() {
    let mut d = IntNDecoder::new(LengthPrefix::Int32);
    let mut input = vec![0xFF; 4];
    input.extend_from_slice(&[0xAB; 60_000]);
    assert_eq!(
        d.feed(&input),
        vec![Err(FrameError::LengthLimitExceeded { length: 0xFFFF_FFFF, max: 99999 })]
    );
    assert_eq!(d.buffered_len(), 0, "the body is skipped, not buffered");
    // And more of the announced body is dropped without being kept.
    assert_eq!(d.feed(&[0xAB; 100_000]), vec![]);
    assert_eq!(d.buffered_len(), 0);

    let (mut h, id, log) = start(Receiver::int32);
    h.feed(id, &input);
    assert_eq!(events(&log), vec![Ev::TooLong(0xFFFF_FFFF), Ev::Lost("LimitExceeded".into())]);
}

#[test]
fn a_too_long_string_is_skipped_when_the_hook_keeps_the_connection() {
    for prefix in PREFIXES {
        let make = move |r| Receiver::new_prefixed(prefix, r).with_max_length(10);
        let input = encode(prefix, Endianness::Big, &[b"SKIP", &[b'x'; 11], b"ok", &[b'y'; 50], b"fine"]);
        let expected = vec![
            Ev::Str(b"SKIP".to_vec()),
            Ev::TooLong(11),
            Ev::Str(b"ok".to_vec()),
            Ev::TooLong(50),
            Ev::Str(b"fine".to_vec()),
        ];
        assert_eq!(run(&[&input], make).0, expected, "{prefix:?}");
        assert_chunking_invariant(&input, 16, 16, |pieces| run(pieces, make));
    }
}

#[test]
fn whole_strings_in_big_chunks_leave_no_buffer() {
    let mut d = IntNDecoder::new(LengthPrefix::Int16);
    let chunk = encode(LengthPrefix::Int16, Endianness::Big, &[&[7u8; 1000][..]; 200]);
    for _ in 0..5 {
        assert_eq!(d.feed(&chunk).len(), 200);
        assert_eq!(d.buffer_capacity(), 0);
    }
}

#[test]
fn set_max_length_from_the_handler_applies_to_the_rest_of_the_chunk_and_to_sending() {
    let input = encode(LengthPrefix::Int16, Endianness::Big, &[b"MAX 6", b"SEND 6", b"SEND 7", b"abcdefg"]);
    let (mut h, id, log) = start(Receiver::int16);
    h.feed(id, &input);
    assert_eq!(
        events(&log),
        vec![
            Ev::Str(b"MAX 6".to_vec()),
            Ev::Str(b"SEND 6".to_vec()),
            Ev::Str(b"SEND 7".to_vec()),
            Ev::SendError(FrameError::LengthLimitExceeded { length: 7, max: 6 }),
            Ev::TooLong(7),
            Ev::Lost("LimitExceeded".into()),
        ]
    );
    assert_eq!(h.take_written(id), encode(LengthPrefix::Int16, Endianness::Big, &[b"ssssss"]));
}

#[test]
fn zero_length_strings_and_prefixes_arriving_byte_by_byte() {
    let mut d = IntNDecoder::new(LengthPrefix::Int32);
    let input = b"\x00\x00\x00\x00\x00\x00\x00\x01z\x00\x00\x00\x00";
    let mut out = Vec::new();
    for b in input {
        out.extend(d.feed(&[*b]));
    }
    assert_eq!(out, vec![Ok(vec![]), Ok(b"z".to_vec()), Ok(vec![])]);
    assert!(!d.is_mid_frame());
}

#[test]
fn send_string_refuses_what_the_prefix_cannot_express_or_the_limit_forbids() {
    let cases = [
        (LengthPrefix::Int8, 255usize, None),
        (LengthPrefix::Int8, 256, Some(FrameError::TooLongForPrefix { length: 256, limit: 255 })),
        (LengthPrefix::Int16, 65535, None),
        (LengthPrefix::Int16, 65536, Some(FrameError::TooLongForPrefix { length: 65536, limit: 65535 })),
        (LengthPrefix::Int32, 99999, None),
        (LengthPrefix::Int32, 100_000, Some(FrameError::LengthLimitExceeded { length: 100_000, max: 99999 })),
    ];
    for (prefix, n, error) in cases {
        let (mut h, id, log) = start(move |r| Receiver::new_prefixed(prefix, r).with_max_length(99999));
        let command = format!("SEND {n}");
        h.feed(id, &encode(prefix, Endianness::Big, &[command.as_bytes()]));
        let written = h.take_written(id);
        match error {
            None => {
                assert_eq!(written.len(), prefix.width() + n, "{prefix:?} {n}");
                assert_eq!(events(&log).len(), 1);
            }
            Some(e) => {
                assert!(written.is_empty(), "{prefix:?} {n}: nothing is written on error");
                assert_eq!(events(&log)[1], Ev::SendError(e), "{prefix:?} {n}");
            }
        }
        assert!(h.is_open(id));
    }
    // The encoder alone.
    let encoder = IntNDecoder::new(LengthPrefix::Int8).encoder();
    let mut out = b"keep".to_vec();
    assert!(encoder.encode(&[0; 300], &mut out).is_err());
    assert_eq!(out, b"keep", "unchanged on error");
}

#[test]
fn pausing_holds_back_buffered_strings_until_resumed() {
    let input = encode(LengthPrefix::Int16, Endianness::Big, &[b"one", b"PAUSE", b"two", b"three"]);
    let (mut h, id, log) = start(Receiver::int16);
    h.feed(id, &input);
    assert_eq!(events(&log), vec![Ev::Str(b"one".to_vec()), Ev::Str(b"PAUSE".to_vec())]);
    h.advance(Duration::from_secs(4));
    assert_eq!(events(&log).len(), 2);
    h.advance(Duration::from_secs(1));
    assert_eq!(events(&log).len(), 4, "delivered on resume, with no new input");
    assert_eq!(h.take_written(id), encode(LengthPrefix::Int16, Endianness::Big, &[b"one", b"two", b"three"]));
}

#[test]
fn a_full_write_buffer_holds_back_buffered_strings_until_it_drains() {
    let (mut h, id, log) = start(Receiver::int16);
    h.set_peer_window(id, Some(0));
    h.feed(id, &encode(LengthPrefix::Int16, Endianness::Big, &[b"FILL", b"PAUSE", b"x"]));
    // t=1: 100 KiB written (pause_producing); t=5: the handler resumes, the buffer is full.
    h.advance(Duration::from_secs(1));
    h.advance(Duration::from_secs(4));
    assert_eq!(events(&log), vec![Ev::Str(b"FILL".to_vec()), Ev::Str(b"PAUSE".to_vec())]);
    h.set_peer_window(id, None);
    assert_eq!(events(&log).last(), Some(&Ev::Str(b"x".to_vec())), "delivered once the buffer drained");
    let written = h.take_written(id);
    assert_eq!(written.len(), 100 * 1024 + 3);
}

#[test]
fn the_frame_deadline_closes_a_slow_string() {
    let (mut h, id, log) = start(|r| Receiver::int16(r).with_frame_deadline(Duration::from_secs(3)));
    h.advance(Duration::from_secs(10));
    assert!(h.is_open(id), "no frame in progress, no deadline");
    h.feed(id, b"\x00");
    h.advance(Duration::from_secs(2));
    h.feed(id, b"\x02a");
    h.advance(Duration::from_millis(999));
    assert!(h.is_open(id));
    h.advance(Duration::from_millis(1));
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
    assert_eq!(events(&log), vec![Ev::Lost("TimedOut".into())]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_splits_give_the_same_strings_as_one_feed(
        strings in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
        prefix in prop_oneof![Just(LengthPrefix::Int8), Just(LengthPrefix::Int16), Just(LengthPrefix::Int32)],
        little in any::<bool>(),
    ) {
        let endianness = if little { Endianness::Little } else { Endianness::Big };
        let mut input = Vec::new();
        for s in &strings {
            // Too long for Int8 or over the max of 200: encoded by hand, so limits get exercised.
            let len = s.len().min(prefix.limit() as usize);
            let header = (len as u32).to_be_bytes();
            let mut header = header[4 - prefix.width()..].to_vec();
            if little { header.reverse(); }
            input.extend_from_slice(&header);
            input.extend_from_slice(&s[..len]);
        }
        let decode = |pieces: &[&[u8]]| {
            let mut d = IntNDecoder::new(prefix).with_endianness(endianness).with_max_length(200);
            let mut out = Vec::new();
            for p in pieces {
                out.extend(d.feed(p));
                prop_assert!(d.buffered_len() <= 200 + 4);
            }
            Ok(out)
        };
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([input.len()]) {
            pieces.push(&input[last..p]);
            last = p;
        }
        let whole = decode(&[&input])?;
        prop_assert_eq!(&decode(&pieces)?, &whole);
        // The buffered path (push, then next_string) agrees with the copy-free one.
        let mut d = IntNDecoder::new(prefix).with_endianness(endianness).with_max_length(200);
        let mut pulled = Vec::new();
        for p in &pieces {
            d.push(p);
            while let Some(r) = d.next_string() {
                pulled.push(r.map(<[u8]>::to_vec));
            }
        }
        prop_assert_eq!(pulled, whole);
    }

    #[test]
    fn junk_never_panics_and_stays_bounded(junk in proptest::collection::vec(any::<u8>(), 0..2000)) {
        for prefix in PREFIXES {
            let mut d = IntNDecoder::new(prefix).with_max_length(100);
            for chunk in junk.chunks(7) {
                let _ = d.feed(chunk);
                prop_assert!(d.buffered_len() <= 100 + 4);
            }
        }
    }
}

/// Answers each string with 8-byte strings until the write buffer is above its high
/// watermark, recording what `write_buffer_above_high` said after each.
struct StringFlood {
    answers: Rc<RefCell<Vec<bool>>>,
}

impl StringHandler for StringFlood {
    fn connection_made(&mut self, sx: &mut StringCtx<'_, '_>) {
        sx.transport().set_write_buffer_limits(50, 10).unwrap();
    }

    fn string_received(&mut self, sx: &mut StringCtx<'_, '_>, _data: &[u8]) {
        self.answers.borrow_mut().push(sx.write_buffer_above_high());
        for _ in 0..1000 {
            sx.send_string(&[b's'; 8]).expect("fits");
            let above = sx.write_buffer_above_high();
            self.answers.borrow_mut().push(above);
            if above {
                break;
            }
        }
    }
}

#[test]
fn write_buffer_above_high_tells_a_string_handler_when_to_stop() {
    let answers = Rc::new(RefCell::new(Vec::new()));
    let mut h = Harness::new();
    let shared = answers.clone();
    let mut factory = move |_| {
        Some(Box::new(IntNStringReceiver::int16(StringFlood { answers: shared.clone() })) as Box<dyn Protocol>)
    };
    let id = h.accept(&mut factory).unwrap();
    h.set_peer_window(id, Some(0)); // nothing drains
    h.feed(id, b"\x00\x01a");
    // 10 bytes a string (2-byte prefix) against a high mark of 50: the 6th crosses it.
    assert_eq!(*answers.borrow(), [false, false, false, false, false, false, true]);
    answers.borrow_mut().clear();
    h.set_peer_window(id, None);
    assert_eq!(h.take_written(id).len(), 6 * 10);
    h.feed(id, b"\x00\x01b");
    assert_eq!(answers.borrow().first(), Some(&false), "drained: below the mark again");
}
