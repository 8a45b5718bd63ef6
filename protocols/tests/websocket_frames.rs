//! The WebSocket frame codec on its own: RFC 6455 vectors, fragmentation with interleaved
//! control frames, every close-code path of the decoder, UTF-8 split at every byte, limits at
//! the limit and one over, and a chunk-split sweep over a frame stream.

use torsion_protocols::websocket::{
    accept_key, close_payload, encode_frame, Event, FrameDecoder, Message, Opcode, Role, WsError,
};
use torsion_reactor::testing::assert_chunking_invariant;

/// An owned copy of what the decoder reported, so results can be compared.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Failed(u16),
}

fn decode_pieces(decoder: &mut FrameDecoder, pieces: &[&[u8]]) -> Vec<Got> {
    let mut out = Vec::new();
    for piece in pieces {
        let mut input = *piece;
        loop {
            match decoder.decode(input) {
                Ok((used, event)) => {
                    input = &input[used..];
                    match event {
                        None => break,
                        Some(Event::Message(Message::Text(t))) => out.push(Got::Text(t.to_owned())),
                        Some(Event::Message(Message::Binary(b))) => out.push(Got::Binary(b.to_vec())),
                        Some(Event::Ping(p)) => out.push(Got::Ping(p.to_vec())),
                        Some(Event::Pong(p)) => out.push(Got::Pong(p.to_vec())),
                        Some(Event::Close(c)) => out.push(Got::Close(c.map(|(c, r)| (c, r.to_owned())))),
                    }
                }
                Err(e) => {
                    out.push(Got::Failed(e.close_code()));
                    return out;
                }
            }
        }
    }
    out
}

fn decode(role: Role, input: &[u8]) -> Vec<Got> {
    decode_pieces(&mut FrameDecoder::new(role), &[input])
}

fn frame(op: Opcode, fin: bool, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, op, fin, payload, masked.then_some([0x37, 0xfa, 0x21, 0x3d]));
    out
}

fn client(op: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(op, fin, payload, true)
}

#[test]
fn accept_key_matches_rfc_6455_vectors() {
    // RFC 6455 §1.3 and §4.2.2's worked example.
    assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    // RFC 6455 §4.1's example key (the same nonce family): the accept is SHA-1 + base64.
    assert_eq!(accept_key("x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

#[test]
fn rfc_6455_section_5_7_examples_decode() {
    // A single-frame unmasked text message (client role reads server frames).
    assert_eq!(decode(Role::Client, b"\x81\x05\x48\x65\x6c\x6c\x6f"), [Got::Text("Hello".into())]);
    // A single-frame masked text message.
    let masked = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    assert_eq!(decode(Role::Server, masked), [Got::Text("Hello".into())]);
    assert_eq!(client(Opcode::Text, true, b"Hello"), masked);
    // A fragmented unmasked text message.
    assert_eq!(decode(Role::Client, b"\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f"), [Got::Text("Hello".into())]);
    // Unmasked ping, masked pong.
    assert_eq!(decode(Role::Client, b"\x89\x05Hello"), [Got::Ping(b"Hello".to_vec())]);
    assert_eq!(
        decode(Role::Server, b"\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
        [Got::Pong(b"Hello".to_vec())]
    );
    // 256 bytes and 64 KiB binary messages in one unmasked frame (16- and 64-bit lengths).
    let mut f = b"\x82\x7e\x01\x00".to_vec();
    f.extend_from_slice(&[7; 256]);
    assert_eq!(decode(Role::Client, &f), [Got::Binary(vec![7; 256])]);
    assert_eq!(frame(Opcode::Binary, true, &[7; 256], false), f);
    let mut f = b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00".to_vec();
    f.extend_from_slice(&[9; 65536]);
    assert_eq!(decode(Role::Client, &f), [Got::Binary(vec![9; 65536])]);
    assert_eq!(frame(Opcode::Binary, true, &[9; 65536], false), f);
}

#[test]
fn fragments_reassemble_with_control_frames_between() {
    let mut s = client(Opcode::Text, false, b"one ");
    s.extend(client(Opcode::Ping, true, b"p1"));
    s.extend(client(Opcode::Continuation, false, b"two "));
    s.extend(client(Opcode::Pong, true, b""));
    s.extend(client(Opcode::Continuation, false, b""));
    s.extend(client(Opcode::Continuation, true, b"three"));
    s.extend(client(Opcode::Binary, false, &[1, 2]));
    s.extend(client(Opcode::Continuation, true, &[3]));
    assert_eq!(
        decode(Role::Server, &s),
        [
            Got::Ping(b"p1".to_vec()),
            Got::Pong(vec![]),
            Got::Text("one two three".into()),
            Got::Binary(vec![1, 2, 3])
        ]
    );
}

#[test]
fn every_decoder_failure_has_its_close_code() {
    let cases: Vec<(&str, Role, Vec<u8>, u16)> = vec![
        ("unmasked client frame", Role::Server, frame(Opcode::Text, true, b"hi", false), 1002),
        ("masked server frame", Role::Client, frame(Opcode::Text, true, b"hi", true), 1002),
        (
            "reserved bit 1",
            Role::Server,
            {
                let mut f = client(Opcode::Text, true, b"x");
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        (
            "reserved bit 3",
            Role::Server,
            {
                let mut f = client(Opcode::Text, true, b"x");
                f[0] |= 0x10;
                f
            },
            1002,
        ),
        ("unknown data opcode 3", Role::Server, vec![0x83, 0x80, 0, 0, 0, 0], 1002),
        ("unknown control opcode 0xB", Role::Server, vec![0x8B, 0x80, 0, 0, 0, 0], 1002),
        ("ping over 125 bytes", Role::Server, client(Opcode::Ping, true, &[0; 126]), 1002),
        ("fragmented ping", Role::Server, client(Opcode::Ping, false, b"x"), 1002),
        ("continuation with nothing started", Role::Server, client(Opcode::Continuation, true, b"x"), 1002),
        (
            "new message inside a fragmented one",
            Role::Server,
            [client(Opcode::Text, false, b"a"), client(Opcode::Text, true, b"b")].concat(),
            1002,
        ),
        ("close with a 1-byte body", Role::Server, client(Opcode::Close, true, &[3]), 1002),
        ("close with code 1005", Role::Server, client(Opcode::Close, true, &close_payload(1005, "")), 1002),
        ("close with code 999", Role::Server, client(Opcode::Close, true, &close_payload(999, "")), 1002),
        ("close with code 2999", Role::Server, client(Opcode::Close, true, &close_payload(2999, "")), 1002),
        ("close reason not UTF-8", Role::Server, client(Opcode::Close, true, b"\x03\xe8\xff"), 1007),
        ("text not UTF-8", Role::Server, client(Opcode::Text, true, b"ab\xff"), 1007),
        ("text ending inside a sequence", Role::Server, client(Opcode::Text, true, b"\xe2\x82"), 1007),
        ("64-bit length with the top bit set", Role::Client, b"\x82\x7f\x80\0\0\0\0\0\0\x01".to_vec(), 1002),
        ("frame over the limit", Role::Server, client(Opcode::Binary, true, &vec![0; (1 << 20) + 1]), 1009),
    ];
    for (what, role, input, code) in cases {
        let got = decode(role, &input);
        assert_eq!(got.last(), Some(&Got::Failed(code)), "{what}: {got:?}");
    }
    // Codes a peer may send are accepted, with their reason.
    for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999] {
        let got = decode(Role::Server, &client(Opcode::Close, true, &close_payload(code, "bye")));
        assert_eq!(got, [Got::Close(Some((code, "bye".into())))]);
    }
    assert_eq!(decode(Role::Server, &client(Opcode::Close, true, b"")), [Got::Close(None)]);
}

#[test]
fn invalid_utf8_fails_before_the_message_ends() {
    // 1007 as soon as the bad byte arrives, in a non-final fragment: the decoder does not
    // wait for the rest of the message.
    let s = client(Opcode::Text, false, b"fine \xc0\xaf");
    assert_eq!(decode(Role::Server, &s), [Got::Failed(1007)]);
}

#[test]
fn utf8_split_across_fragments_at_every_byte() {
    let text = "héllo € 𝄞 wörld ✓";
    let bytes = text.as_bytes();
    for cut in 0..=bytes.len() {
        let mut s = client(Opcode::Text, false, &bytes[..cut]);
        s.extend(client(Opcode::Continuation, true, &bytes[cut..]));
        assert_eq!(decode(Role::Server, &s), [Got::Text(text.into())], "cut at {cut}");
        // Three fragments: every pair of cuts.
        for cut2 in cut..=bytes.len() {
            let mut s = client(Opcode::Text, false, &bytes[..cut]);
            s.extend(client(Opcode::Continuation, false, &bytes[cut..cut2]));
            s.extend(client(Opcode::Continuation, true, &bytes[cut2..]));
            assert_eq!(decode(Role::Server, &s), [Got::Text(text.into())], "cuts at {cut}, {cut2}");
        }
    }
    // And a text that is invalid only in its last fragment fails at every cut.
    let bad = [bytes, b"\xed\xa0\x80"].concat(); // a UTF-16 surrogate, encoded: not UTF-8
    for cut in 0..=bad.len() {
        let mut s = client(Opcode::Text, false, &bad[..cut]);
        s.extend(client(Opcode::Continuation, true, &bad[cut..]));
        assert_eq!(decode(Role::Server, &s), [Got::Failed(1007)], "cut at {cut}");
    }
}

#[test]
fn limits_at_the_limit_and_one_over() {
    for (limit, fits) in [(1000usize, true), (999, false)] {
        // Message limit: two fragments of 500 bytes.
        let mut d = FrameDecoder::new(Role::Server);
        d.set_max_message(limit);
        let s = [client(Opcode::Binary, false, &[1; 500]), client(Opcode::Continuation, true, &[2; 500])]
            .concat();
        let got = decode_pieces(&mut d, &[&s]);
        if fits {
            assert_eq!(got.len(), 1);
            assert!(matches!(&got[0], Got::Binary(b) if b.len() == 1000));
        } else {
            assert_eq!(got, [Got::Failed(1009)]);
        }
        // Frame limit: one frame of 1000.
        let mut d = FrameDecoder::new(Role::Server);
        d.set_max_frame(limit);
        let got = decode_pieces(&mut d, &[&client(Opcode::Text, true, &[b'a'; 1000])]);
        if fits {
            assert_eq!(got, [Got::Text("a".repeat(1000))]);
        } else {
            assert_eq!(got, [Got::Failed(1009)]);
        }
    }
    // The defaults: 1 MiB exactly fits, one more byte is 1009.
    let got = decode(Role::Server, &client(Opcode::Binary, true, &vec![0; 1 << 20]));
    assert!(matches!(&got[..], [Got::Binary(b)] if b.len() == 1 << 20));
    let mut d = FrameDecoder::new(Role::Server);
    let s = [
        client(Opcode::Binary, false, &vec![0; 1 << 19]),
        client(Opcode::Continuation, true, &vec![0; (1 << 19) + 1]),
    ]
    .concat();
    assert_eq!(decode_pieces(&mut d, &[&s]), [Got::Failed(1009)]);
}

#[test]
fn errors_are_sticky() {
    let mut d = FrameDecoder::new(Role::Server);
    assert!(matches!(d.decode(&frame(Opcode::Text, true, b"x", false)), Err(WsError::BadMask)));
    assert!(matches!(d.decode(&client(Opcode::Text, true, b"x")), Err(WsError::BadMask)));
}

#[test]
fn chunk_split_sweep_over_a_frame_stream() {
    let mut s = Vec::new();
    s.extend(client(Opcode::Text, true, "héllo €".as_bytes()));
    s.extend(client(Opcode::Binary, false, &[0xff; 130]));
    s.extend(client(Opcode::Ping, true, b"ping!"));
    s.extend(client(Opcode::Continuation, true, &[0x01; 70_000]));
    s.extend(client(Opcode::Text, false, "𝄞".as_bytes().get(..2).unwrap()));
    s.extend(client(Opcode::Continuation, true, "𝄞".as_bytes().get(2..).unwrap()));
    s.extend(client(Opcode::Pong, true, b""));
    s.extend(client(Opcode::Text, true, b""));
    s.extend(client(Opcode::Close, true, &close_payload(1000, "done")));
    let whole = decode(Role::Server, &s);
    assert_eq!(whole.len(), 7, "{whole:?}");
    // Every split of the stream's head (the frame headers and small frames), then random
    // splits over all of it.
    let head = &s[..300];
    assert_chunking_invariant(head, 64, 0, |pieces| {
        decode_pieces(&mut FrameDecoder::new(Role::Server), pieces)
    });
    assert_chunking_invariant(&s, 8, 40, |pieces| {
        decode_pieces(&mut FrameDecoder::new(Role::Server), pieces)
    });
}

#[test]
fn wide_masking_matches_the_byte_by_byte_definition() {
    let mask = [0xa1, 0x07, 0x5c, 0xf0];
    for len in 0..40 {
        for phase in 0..4 {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let mut fast = data.clone();
            torsion_protocols::websocket::apply_mask(&mut fast, mask, phase);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ mask[(phase + i) % 4]).collect();
            assert_eq!(fast, slow, "len {len} phase {phase}");
        }
    }
}

mod random_input {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes, in any pieces, on either side: events or a typed error, never a panic,
        /// and the same outcome whole or split.
        #[test]
        fn never_panics_and_splitting_changes_nothing(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(1usize..50, 0..20),
            server in any::<bool>(),
        ) {
            let role = if server { Role::Server } else { Role::Client };
            let mut small = FrameDecoder::new(role);
            small.set_max_message(300);
            small.set_max_frame(200);
            let whole = decode_pieces(&mut small, &[&data]);
            let mut pieces = Vec::new();
            let mut rest = &data[..];
            for cut in cuts {
                let (a, b) = rest.split_at(cut.min(rest.len()));
                pieces.push(a);
                rest = b;
            }
            pieces.push(rest);
            let mut small = FrameDecoder::new(role);
            small.set_max_message(300);
            small.set_max_frame(200);
            prop_assert_eq!(decode_pieces(&mut small, &pieces), whole);
        }
    }
}
