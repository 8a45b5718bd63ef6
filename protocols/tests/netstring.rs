//! `NetstringDecoder` and `NetstringReceiver`: every split gives the same strings, Twisted's
//! illegal netstrings each close with a clear reason, limits at max and max+1, length digits
//! beyond the limit rejected before the colon, `send_string`, pausing, and the frame deadline.
//! On the in-memory harness: no sockets, no sleeps.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;
use torsion_protocols::framing::{
    FrameError, NetstringDecoder, NetstringReceiver, StringCtx, StringDecoder, StringEncoder, StringHandler,
};
use torsion_reactor::testing::{assert_chunking_invariant, Harness};
use torsion_reactor::{ConnId, DisconnectReason, Protocol, TimerId};

type Log = Rc<RefCell<Vec<Vec<u8>>>>;

/// Echoes each netstring; `PAUSE` pauses for 5 s; `SEND <n>` sends n bytes and records an
/// error as `error: ...`.
#[derive(Default)]
struct Echo {
    log: Log,
    resume: Option<TimerId>,
}

impl StringHandler for Echo {
    fn string_received(&mut self, sx: &mut StringCtx<'_, '_>, data: &[u8]) {
        self.log.borrow_mut().push(data.to_vec());
        if data == b"PAUSE" {
            sx.pause();
            self.resume = Some(sx.set_timer(Duration::from_secs(5)));
        } else if let Some(n) = data.strip_prefix(b"SEND ") {
            let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
            if let Err(e) = sx.send_string(&vec![b's'; n]) {
                self.log.borrow_mut().push(format!("error: {e}").into_bytes());
            }
        } else {
            sx.send_string(data).expect("an echo always fits");
        }
    }

    fn timer_fired(&mut self, sx: &mut StringCtx<'_, '_>, timer: TimerId) {
        if self.resume == Some(timer) {
            sx.resume();
        }
    }
}

fn start(make: impl Fn(Echo) -> NetstringReceiver<Echo> + 'static) -> (Harness, ConnId, Log) {
    let log = Log::default();
    let shared = log.clone();
    let mut h = Harness::new();
    let id = h
        .accept(&mut move |_| {
            Some(Box::new(make(Echo { log: shared.clone(), resume: None })) as Box<dyn Protocol>)
        })
        .unwrap();
    (h, id, log)
}

fn run(pieces: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>, Option<DisconnectReason>) {
    let (mut h, id, log) = start(NetstringReceiver::netstring);
    for piece in pieces {
        h.feed(id, piece);
    }
    h.advance(Duration::from_secs(60));
    let written = h.take_written(id);
    let seen = log.borrow().clone();
    (seen, written, h.disconnect_reason(id))
}

fn encode(strings: &[&[u8]]) -> Vec<u8> {
    let encoder = NetstringDecoder::new().with_max_length(usize::MAX).encoder();
    let mut out = Vec::new();
    for s in strings {
        encoder.encode(s, &mut out).unwrap();
    }
    out
}

#[test]
fn every_chunking_gives_the_same_strings() {
    let big = vec![b'b'; 1000];
    let strings: [&[u8]; 6] = [b"", b"hello", b"1:a,", &big, b"PAUSE", b"after"];
    let input = encode(&strings);
    assert!(input.starts_with(b"0:,5:hello,4:1:a,,1000:"));
    let (seen, written, reason) = run(&[&input]);
    assert_eq!(seen, strings.iter().map(|s| s.to_vec()).collect::<Vec<_>>());
    assert_eq!(written, encode(&[b"", b"hello", b"1:a,", &big, b"after"]));
    assert_eq!(reason, None);
    assert_chunking_invariant(&input, 16, 64, run);
}

/// A `ProtocolError` with this message (or, for [`same_with_prefix`], the start of it).
fn protocol_error(message: &str) -> DisconnectReason {
    DisconnectReason::ProtocolError(message.into())
}

/// True if `got` equals `expected`, or both are `ProtocolError`s and `got`'s message starts
/// with `expected`'s.
fn same_with_prefix(got: &DisconnectReason, expected: &DisconnectReason) -> bool {
    match (got, expected) {
        (DisconnectReason::ProtocolError(got), DisconnectReason::ProtocolError(prefix)) => {
            got.starts_with(prefix.as_str())
        }
        _ => got == expected,
    }
}

#[test]
fn twisted_illegal_netstrings_each_close_the_connection_with_a_reason() {
    let fifty = b"a".repeat(49);
    let mut too_long = b"51:".to_vec();
    too_long.extend_from_slice(&fifty);
    too_long.extend_from_slice(b"b,");
    let cases: Vec<(&[u8], DisconnectReason)> = vec![
        (b"9999999999999999999999", protocol_error("malformed netstring: the length has more digits")),
        (b"abc", protocol_error("malformed netstring: the length is not a decimal number")),
        (b"4:abcde", protocol_error("malformed netstring: missing comma")),
        (
            &too_long,
            DisconnectReason::LimitExceeded("frame length 51 exceeds the maximum of 50 bytes".into()),
        ),
        (b":aaa,", protocol_error("malformed netstring: the length is empty")),
        (b"3aaa,", protocol_error("malformed netstring: the length is not a decimal number")),
        (b"aaa,", protocol_error("malformed netstring: the length is not a decimal number")),
        (b"2:aaa,", protocol_error("malformed netstring: missing comma")),
        (b"0:a,", protocol_error("malformed netstring: missing comma")),
        (b"01:a,", protocol_error("malformed netstring: the length has a leading zero")),
        (b"-1:a,", protocol_error("malformed netstring: the length is not a decimal number")),
    ];
    for (input, expected) in cases {
        for pieces in torsion_reactor::testing::chunkings(input, 3, 0) {
            let (mut h, id, log) = start(|e| NetstringReceiver::netstring(e).with_max_length(50));
            for piece in pieces {
                h.feed(id, piece);
            }
            let reason = h.disconnect_reason(id);
            assert!(
                reason.as_ref().is_some_and(|r| same_with_prefix(r, &expected)),
                "{:?}: got {reason:?}",
                String::from_utf8_lossy(input)
            );
            assert!(log.borrow().is_empty(), "nothing delivered for {:?}", String::from_utf8_lossy(input));
        }
    }
}

#[test]
fn length_digits_beyond_the_limit_are_rejected_before_the_colon() {
    let mut d = NetstringDecoder::new();
    assert_eq!(d.feed(b"99999"), vec![]);
    assert_eq!(
        d.feed(b"9"),
        vec![Err(FrameError::MalformedNetstring("the length has more digits than the maximum allows"))]
    );
    assert!(d.is_failed());
    assert_eq!(d.feed(b":ok,"), vec![], "nothing is parsed after malformed input");
    assert_eq!(d.buffered_len(), 0);
}

#[test]
fn empty_and_nested_netstrings_are_accepted() {
    let mut d = NetstringDecoder::new();
    assert_eq!(d.feed(b"0:,4:1:a,,"), vec![Ok(vec![]), Ok(b"1:a,".to_vec())]);
}

#[test]
fn a_string_of_exactly_max_is_accepted_and_max_plus_one_is_not() {
    let mut d = NetstringDecoder::new().with_max_length(10);
    assert_eq!(d.feed(b"10:0123456789,"), vec![Ok(b"0123456789".to_vec())]);
    assert_eq!(d.feed(b"11:"), vec![Err(FrameError::LengthLimitExceeded { length: 11, max: 10 })]);
    // The body is skipped (not kept), then the comma is still checked.
    assert_eq!(d.feed(b"0123456789a,2:ok,"), vec![Ok(b"ok".to_vec())]);
    assert_eq!(d.buffered_len(), 0);
    // The default is 99999, with the default hook's reason.
    let (mut h, id, log) = start(NetstringReceiver::netstring);
    let mut max = b"99999:".to_vec();
    max.extend_from_slice(&[b'x'; 99999]);
    max.push(b',');
    h.feed(id, &max);
    assert_eq!(log.borrow().len(), 1);
    // 100000 has more digits than 99999: rejected at the sixth digit.
    h.feed(id, b"100000:");
    assert_eq!(
        h.disconnect_reason(id),
        Some(protocol_error("malformed netstring: the length has more digits than the maximum allows"))
    );
}

#[test]
fn send_string_frames_and_refuses_over_the_limit() {
    let (mut h, id, log) = start(|e| NetstringReceiver::netstring(e).with_max_length(20));
    h.feed(id, b"7:SEND 20,7:SEND 21,");
    assert_eq!(h.take_written(id), [b"20:".as_slice(), &[b's'; 20], b","].concat());
    assert_eq!(
        log.borrow()[2],
        b"error: frame length 21 exceeds the maximum of 20 bytes".to_vec(),
        "{:?}",
        log.borrow()
    );
    assert!(h.is_open(id));
}

#[test]
fn pausing_holds_back_buffered_netstrings() {
    let (mut h, id, log) = start(NetstringReceiver::netstring);
    h.feed(id, b"5:PAUSE,1:a,1:b,");
    assert_eq!(log.borrow().len(), 1);
    h.advance(Duration::from_secs(5));
    assert_eq!(log.borrow().clone(), vec![b"PAUSE".to_vec(), b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(h.take_written(id), b"1:a,1:b,");
}

#[test]
fn the_frame_deadline_closes_a_slow_netstring() {
    let (mut h, id, _log) =
        start(|e| NetstringReceiver::netstring(e).with_frame_deadline(Duration::from_secs(2)));
    h.feed(id, b"3:ab");
    h.advance(Duration::from_secs(1));
    h.feed(id, b"c,1");
    h.advance(Duration::from_secs(1));
    assert!(h.is_open(id), "the second netstring began 1 s ago");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
}

/// A handler with no hooks: the defaults close on bad input.
struct Quiet;
impl StringHandler for Quiet {
    fn string_received(&mut self, _sx: &mut StringCtx<'_, '_>, _data: &[u8]) {}
}

#[test]
fn the_default_too_long_hook_closes_with_limit_exceeded() {
    let mut h = Harness::new();
    let id = h
        .accept(&mut |_| {
            Some(Box::new(NetstringReceiver::netstring(Quiet).with_max_length(5)) as Box<dyn Protocol>)
        })
        .unwrap();
    h.feed(id, b"6:");
    assert_eq!(
        h.disconnect_reason(id),
        Some(DisconnectReason::LimitExceeded("frame length 6 exceeds the maximum of 5 bytes".into()))
    );
    let _ = DisconnectReason::Clean;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_splits_give_the_same_strings_as_one_feed(
        strings in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let refs: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
        let input = encode(&refs);
        let decode = |pieces: &[&[u8]]| {
            let mut d = NetstringDecoder::new().with_max_length(150);
            pieces.iter().flat_map(|p| d.feed(p)).collect::<Vec<_>>()
        };
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([input.len()]) {
            pieces.push(&input[last..p]);
            last = p;
        }
        let whole = decode(&[&input]);
        prop_assert_eq!(&decode(&pieces), &whole);
        // The buffered path (push, then next_string) agrees with the copy-free one.
        let mut d = NetstringDecoder::new().with_max_length(150);
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
        let mut d = NetstringDecoder::new().with_max_length(100);
        for chunk in junk.chunks(5) {
            let _ = d.feed(chunk);
            prop_assert!(d.buffered_len() <= 100 + 1 + 5);
        }
    }
}
