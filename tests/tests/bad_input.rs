//! Bad input to the framers: catalogue tests 30–32 (every framer's bad inputs close cleanly
//! with the right reason) and 22 (`byte_at_a_time_peer`, over real sockets).
//!
//! The framers' own suites (`protocols/tests/{line_receiver,int_prefixed,netstring}.rs`) test
//! each rule under every chunking; this file restates the catalogue's pass criteria one by one
//! so each has a named test here (the heap bound on a 0xFFFF_FFFF prefix is in
//! `bad_input_heap.rs`), and sends 2,000 frames per framer one byte per `send`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use torsion_protocols::framing::{
    IntNDecoder, LengthPrefix, LineCtx, LineDecoder, LineHandler, LineReceiver, NetstringDecoder, StringCtx,
    StringDecoder, StringEncoder, StringHandler,
};
use torsion_protocols::{IntNStringReceiver, NetstringReceiver};
use torsion_reactor::testing::Harness;
use torsion_reactor::{ConnId, DisconnectReason, Protocol};
use torsion_tests::{localhost, pattern, ReactorThread, WAIT};

const LINE_MAX: usize = 16384;
const STRING_MAX: usize = 99999;

/// Collects frames; `line_length_exceeded` / `length_limit_exceeded` keep their defaults
/// (close with `LimitExceeded`), except that they are recorded first.
#[derive(Default)]
struct Collect {
    frames: Vec<Vec<u8>>,
    exceeded: Vec<u64>,
    tx: Option<Sender<Vec<u8>>>,
    pause_on: Option<Vec<u8>>,
}

impl LineHandler for Collect {
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        self.frames.push(line.to_vec());
        if let Some(tx) = &self.tx {
            let _ = tx.send(line.to_vec());
        }
        if self.pause_on.as_deref() == Some(line) {
            lx.pause();
        }
    }

    fn line_length_exceeded(&mut self, lx: &mut LineCtx<'_, '_>) {
        self.exceeded.push(lx.max_length() as u64);
        lx.lose_connection_with(torsion_reactor::DisconnectReason::LimitExceeded("line too long".into()));
    }
}

impl StringHandler for Collect {
    fn string_received(&mut self, _sx: &mut StringCtx<'_, '_>, data: &[u8]) {
        self.frames.push(data.to_vec());
        if let Some(tx) = &self.tx {
            let _ = tx.send(data.to_vec());
        }
    }

    fn length_limit_exceeded(&mut self, sx: &mut StringCtx<'_, '_>, length: u64) {
        self.exceeded.push(length);
        sx.lose_connection_with(torsion_reactor::DisconnectReason::LimitExceeded(format!("length {length}")));
    }
}

fn line_conn(h: &mut Harness) -> ConnId {
    h.accept(&mut |_| Some(LineReceiver::new(Collect::default()))).unwrap()
}

// ---- 30. line_receiver_limits (MAX 16384) ----

/// Catalogue 30 (line_receiver_limits): a line of exactly MAX (16384) is accepted.
#[test]
fn t30_a_line_of_exactly_max_is_accepted() {
    let mut h = Harness::new();
    let id = line_conn(&mut h);
    let mut line = vec![b'a'; LINE_MAX];
    line.extend_from_slice(b"\r\n");
    h.feed(id, &line);
    assert!(h.is_open(id));
}

/// Catalogue 30 (line_receiver_limits): MAX+1, with or without a delimiter, calls
/// `line_length_exceeded` and then `lose_connection` (a clean FIN).
#[test]
fn t30_max_plus_one_with_or_without_delimiter_is_exceeded_then_closed() {
    for with_delimiter in [true, false] {
        let mut h = Harness::new();
        let id = line_conn(&mut h);
        let mut line = vec![b'a'; LINE_MAX + 1];
        if with_delimiter {
            line.extend_from_slice(b"\r\n");
        }
        h.feed(id, &line);
        let reason = h.disconnect_reason(id).expect("closed");
        assert!(matches!(reason, DisconnectReason::LimitExceeded(_)), "{reason:?}");
        assert!(h.fin_sent(id), "lose_connection: a clean FIN, not a reset");
    }
}

/// Catalogue 30 (line_receiver_limits): an unfinished line of MAX + len(delimiter) − 1 is not
/// rejected.
#[test]
fn t30_an_unfinished_line_of_max_plus_delimiter_minus_one_is_not_rejected() {
    // 16384 bytes and the `\r` of the delimiter: the line may still end at MAX.
    let mut decoder = LineDecoder::new();
    let mut data = vec![b'a'; LINE_MAX];
    data.push(b'\r');
    assert!(decoder.feed(&data).is_empty(), "no line and no error yet");
    assert_eq!(decoder.feed(b"\n"), vec![Ok(vec![b'a'; LINE_MAX])]);
    let mut h = Harness::new();
    let id = line_conn(&mut h);
    h.feed(id, &data);
    assert!(h.is_open(id), "not rejected while the delimiter may still come");
    h.feed(id, b"\n");
    assert!(h.is_open(id));
}

/// Catalogue 30 (line_receiver_limits): a delimiter split across chunks works, and the buffer
/// never exceeds MAX + len(delimiter).
#[test]
fn t30_a_delimiter_split_across_chunks_works_and_the_buffer_stays_within_max_plus_delimiter() {
    let mut decoder = LineDecoder::new();
    let mut lines = Vec::new();
    for (i, chunk) in [&b"one\r"[..], b"\ntwo", b"\r", b"\n"].iter().enumerate() {
        lines.extend(decoder.feed(chunk));
        assert!(decoder.buffered_len() <= LINE_MAX + 2, "chunk {i}");
    }
    assert_eq!(lines, vec![Ok(b"one".to_vec()), Ok(b"two".to_vec())]);
    // Junk without delimiters never buffers more than MAX + len(delimiter).
    let mut decoder = LineDecoder::new();
    for chunk in pattern(30, 200_000).chunks(1000) {
        let _ = decoder.feed(chunk);
        assert!(decoder.buffered_len() <= LINE_MAX + 2, "buffered {}", decoder.buffered_len());
    }
}

/// Catalogue 30 (line_receiver_limits): `pause` inside `line_received` holds back the rest of
/// the lines.
#[test]
fn t30_pause_inside_line_received_holds_back_the_rest() {
    let mut h = Harness::new();
    let id = h
        .accept(&mut |_| {
            let c = Collect { pause_on: Some(b"stop".to_vec()), tx: None, ..Collect::default() };
            Some(Box::new(LineReceiver::new(c)) as Box<dyn Protocol>)
        })
        .unwrap();
    h.feed(id, b"a\r\nstop\r\nb\r\nc\r\n");
    let calls = h.calls(id);
    let data_calls = calls.iter().filter(|c| matches!(c, torsion_reactor::testing::Call::Data(_))).count();
    assert_eq!(data_calls, 1);
    assert!(h.is_open(id));
}

/// Catalogue 30 (line_receiver_limits): 100,000 lines in one call cause no recursion.
#[test]
fn t30_a_hundred_thousand_lines_in_one_call_cause_no_recursion() {
    let mut h = Harness::new();
    let id = line_conn(&mut h);
    let input = b"x\r\n".repeat(100_000);
    h.feed(id, &input);
    assert!(h.is_open(id));
}

// ---- 31. length_prefix_limits (u8/u16/u32, MAX 99999) ----

// t31: a 0xFFFF_FFFF prefix rejected before allocating: `bad_input_heap.rs` (alone in its
// binary, so that no other test allocates while the allocator's limit is lowered).

/// Catalogue 31 (length_prefix_limits): an over-long frame is not delivered even when its whole
/// body comes in the same chunk.
#[test]
fn t31_an_over_long_frame_is_not_delivered_even_when_its_body_is_in_the_same_chunk() {
    for prefix in [LengthPrefix::Int8, LengthPrefix::Int16, LengthPrefix::Int32] {
        let mut input = Vec::new();
        IntNDecoder::new(prefix).encoder().encode(&[b'z'; 11], &mut input).unwrap();
        let mut decoder = IntNDecoder::new(prefix).with_max_length(10);
        let out = decoder.feed(&input);
        // The whole body is in this one chunk, and still it is not delivered.
        assert!(matches!(&out[..], [Err(_)]), "{prefix:?}: {out:?}");
    }
}

/// Catalogue 31 (length_prefix_limits): zero-length frames and prefixes arriving byte by byte
/// work.
#[test]
fn t31_zero_length_frames_and_prefixes_byte_by_byte_work() {
    for prefix in [LengthPrefix::Int8, LengthPrefix::Int16, LengthPrefix::Int32] {
        let mut decoder = IntNDecoder::new(prefix);
        let mut input = Vec::new();
        for s in [&b""[..], b"abc", b"", b"z"] {
            decoder.encoder().encode(s, &mut input).unwrap();
        }
        let mut got = Vec::new();
        for b in &input {
            got.extend(decoder.feed(std::slice::from_ref(b)));
        }
        assert_eq!(got, vec![Ok(vec![]), Ok(b"abc".to_vec()), Ok(vec![]), Ok(b"z".to_vec())], "{prefix:?}");
    }
}

/// Catalogue 31 (length_prefix_limits): `send` of more than 255 B on u8, or more than 65535 B on
/// u16, returns `Err`.
#[test]
fn t31_sending_more_than_the_prefix_expresses_is_an_error() {
    let mut out = Vec::new();
    let int8 = IntNDecoder::new(LengthPrefix::Int8).encoder();
    assert!(int8.encode(&[0; 255], &mut out).is_ok());
    assert!(int8.encode(&[0; 256], &mut out).is_err());
    let int16 = IntNDecoder::new(LengthPrefix::Int16).with_max_length(1 << 20).encoder();
    assert!(int16.encode(&vec![0; 65535], &mut out).is_ok());
    assert!(int16.encode(&vec![0; 65536], &mut out).is_err());
}

// ---- 32. netstring_limits ----

/// Catalogue 32 (netstring_limits): each illegal netstring gives a parse error and a close.
#[test]
fn t32_each_illegal_netstring_gives_a_parse_error_and_a_close() {
    let mut fifty_one = b"51:".to_vec();
    fifty_one.extend_from_slice(&[b'a'; 50]);
    fifty_one.extend_from_slice(b"b,");
    let cases: [&[u8]; 9] = [
        b"9999999999999999999999",
        b"abc",
        b"4:abcde",
        &fifty_one,
        b":aaa,",
        b"3aaa,",
        b"aaa,",
        b"2:aaa,",
        b"0:a,",
    ];
    for input in cases {
        let mut h = Harness::new();
        let (tx, rx) = mpsc::channel();
        let id = h
            .accept(&mut move |_| {
                let c = Collect { tx: Some(tx.clone()), ..Collect::default() };
                Some(Box::new(NetstringReceiver::netstring(c).with_max_length(50)) as Box<dyn Protocol>)
            })
            .unwrap();
        h.feed(id, input);
        let reason = h.disconnect_reason(id);
        assert!(
            matches!(reason, Some(DisconnectReason::ProtocolError(_) | DisconnectReason::LimitExceeded(_))),
            "{}: {reason:?}",
            String::from_utf8_lossy(input)
        );
        assert!(h.fin_sent(id), "closed cleanly (FIN): {}", String::from_utf8_lossy(input));
        assert!(rx.try_recv().is_err(), "nothing delivered for {}", String::from_utf8_lossy(input));
    }
}

/// Catalogue 32 (netstring_limits): length digits beyond the digit count of MAX are rejected
/// before reading on.
#[test]
fn t32_length_digits_beyond_the_digit_count_of_max_are_rejected_before_reading_on() {
    // MAX 99999 has 5 digits: the 6th digit is an error at once, with no colon in sight.
    let mut decoder = NetstringDecoder::new();
    let out = decoder.feed(b"123456");
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].is_err());
}

/// Catalogue 32 (netstring_limits): `0:,` and the nested `4:1:a,,` are accepted.
#[test]
fn t32_empty_and_nested_netstrings_are_accepted() {
    let mut decoder = NetstringDecoder::new();
    assert_eq!(decoder.feed(b"0:,4:1:a,,"), vec![Ok(vec![]), Ok(b"1:a,".to_vec())]);
}

// ---- 22. byte_at_a_time_peer, over loopback with TCP_NODELAY ----

/// The frames a framer should deliver, and their encoding.
fn frames_for(framer: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let max = match framer {
        "line" => LINE_MAX,
        "int8" => 255,
        "int16" => 65535,
        _ => STRING_MAX,
    };
    let mut frames = Vec::new();
    for i in 0..2000usize {
        let len = if i % 1000 == 999 { max } else { i % 23 };
        let mut f = pattern(i as u64, len);
        if framer == "line" {
            f.iter_mut().for_each(|b| *b = b'a' + *b % 26);
        }
        frames.push(f);
    }
    let mut wire = Vec::new();
    for f in &frames {
        match framer {
            "line" => {
                wire.extend_from_slice(f);
                wire.extend_from_slice(b"\r\n");
            }
            "int8" => IntNDecoder::new(LengthPrefix::Int8).encoder().encode(f, &mut wire).unwrap(),
            "int16" => IntNDecoder::new(LengthPrefix::Int16).encoder().encode(f, &mut wire).unwrap(),
            "int32" => IntNDecoder::new(LengthPrefix::Int32).encoder().encode(f, &mut wire).unwrap(),
            _ => NetstringDecoder::new().encoder().encode(f, &mut wire).unwrap(),
        }
    }
    (frames, wire)
}

fn receiver(framer: &str, tx: Sender<Vec<u8>>) -> Box<dyn Protocol> {
    let c = Collect { tx: Some(tx), ..Collect::default() };
    match framer {
        "line" => Box::new(LineReceiver::new(c)),
        "int8" => Box::new(IntNStringReceiver::int8(c)),
        "int16" => Box::new(IntNStringReceiver::int16(c)),
        "int32" => Box::new(IntNStringReceiver::int32(c)),
        _ => Box::new(NetstringReceiver::netstring(c)),
    }
}

fn collect(rx: &Receiver<Vec<u8>>, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|_| rx.recv_timeout(WAIT).expect("a frame")).collect()
}

/// Catalogue 22 (byte_at_a_time_peer): for each framer, 2,000 frames (some at maximum size)
/// sent 1 byte per `send` with TCP_NODELAY give the frames of a bulk send.
#[test]
fn t22_two_thousand_frames_one_byte_per_send_equal_a_bulk_send_for_every_framer() {
    const FRAMERS: [&str; 5] = ["line", "int8", "int16", "int32", "netstring"];
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in FRAMERS {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        senders.push(tx);
        receivers.push(rx);
    }
    let (server, addrs) = ReactorThread::start(move |r| {
        FRAMERS
            .iter()
            .zip(senders)
            .map(|(framer, tx)| {
                let port = r.listen_tcp(localhost(), move |_| Some(receiver(framer, tx.clone()))).unwrap();
                port.local_addr().inet().unwrap()
            })
            .collect::<Vec<SocketAddr>>()
    });
    for ((framer, addr), rx) in FRAMERS.iter().zip(addrs).zip(receivers) {
        let (frames, wire) = frames_for(framer);
        send(addr, &wire, false);
        let bulk = collect(&rx, frames.len());
        let start = Instant::now();
        send(addr, &wire, true);
        let dripped = collect(&rx, frames.len());
        println!("byte_at_a_time: {framer}: {} bytes one per send in {:?}", wire.len(), start.elapsed());
        assert!(bulk == frames, "{framer}: a bulk send delivered different frames");
        assert!(dripped == bulk, "{framer}: one byte per send delivered different frames than a bulk send");
        assert!(rx.try_recv().is_err(), "{framer}: extra frames");
    }
    server.stop();
}

/// Sends `wire` to `addr` one byte per `send` (TCP_NODELAY), or all at once.
fn send(addr: SocketAddr, wire: &[u8], byte_at_a_time: bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    if byte_at_a_time {
        for b in wire {
            s.write_all(std::slice::from_ref(b)).unwrap();
        }
    } else {
        s.write_all(wire).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.read_to_end(&mut rest);
}

/// Catalogue 22 (byte_at_a_time_peer): a 1 MiB line (MAX raised) fed 1 byte at a time takes
/// < 1 s in a release build (no O(n²) rescans).
#[test]
fn t22_a_one_mib_line_fed_one_byte_at_a_time_is_linear() {
    let mut decoder = LineDecoder::new().with_max_length(2 << 20);
    let mut line = vec![b'q'; 1 << 20];
    line.extend_from_slice(b"\r\n");
    let start = Instant::now();
    let mut got = Vec::new();
    for b in &line {
        got.extend(decoder.feed(std::slice::from_ref(b)));
    }
    let took = start.elapsed();
    assert_eq!(got.len(), 1);
    // < 1 s in a release build (the catalogue's bound); debug code is about 10× slower.
    let bound = if cfg!(debug_assertions) { Duration::from_secs(10) } else { Duration::from_secs(1) };
    println!("byte_at_a_time: a 1 MiB line fed 1 byte at a time took {took:?}");
    assert!(took < bound, "{took:?}: quadratic rescanning?");
}
