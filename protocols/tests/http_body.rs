//! The HTTP body decoder (`Content-Length` and `chunked`) as a pure push decoder: the same body
//! at every split of its input, and each malformed chunk line refused with its error.

use torsion_protocols::http::{BodyDecoder, BodyError, Decoded};
use torsion_reactor::testing::assert_chunking_invariant;

/// Feeds `pieces` to `decoder`: the body, what follows it, or the first error.
fn run(mut decoder: BodyDecoder, pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
    let mut body = Vec::new();
    let mut after = Vec::new();
    for piece in pieces {
        let mut rest: &[u8] = piece;
        if decoder.is_done() {
            after.extend_from_slice(rest);
            continue;
        }
        loop {
            let (n, got) = decoder.decode(rest)?;
            match got {
                Decoded::Data(d) => body.extend_from_slice(d),
                Decoded::Done => {
                    after.extend_from_slice(&rest[n..]);
                    break;
                }
                Decoded::NeedMore => {
                    assert_eq!(n, rest.len(), "NeedMore consumes everything");
                    break;
                }
            }
            rest = &rest[n..];
        }
    }
    Ok((body, after))
}

#[test]
fn chunked_body_is_the_same_at_every_split() {
    let input: &[u8] = b"4\r\nWiki\r\n5;a=b ; c=\"q\\\"x\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: yes\r\n\r\nNEXT";
    assert_chunking_invariant(input, 64, 32, |pieces| run(BodyDecoder::chunked(), pieces));
    let (body, after) = run(BodyDecoder::chunked(), &[input]).unwrap();
    assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
    assert_eq!(after, b"NEXT");
}

#[test]
fn length_body_is_the_same_at_every_split() {
    let input: &[u8] = b"0123456789abcdefGET / HTTP/1.1\r\n";
    assert_chunking_invariant(input, 40, 16, |pieces| run(BodyDecoder::length(16), pieces));
    assert_eq!(run(BodyDecoder::length(16), &[input]).unwrap().0, b"0123456789abcdef");
}

#[test]
fn malformed_chunked_bodies_are_refused() {
    let cases: &[(&[u8], BodyError)] = &[
        (b"x\r\n", BodyError::ChunkSize),
        (b"\r\n", BodyError::ChunkSize),
        (b"-1\r\n", BodyError::ChunkSize),
        (b"0x5\r\n", BodyError::ChunkSize),
        (b"11111111111111111\r\nabc", BodyError::ChunkSize),
        (b"5;\r\nhello\r\n", BodyError::ChunkExtension),
        (b"5;=x\r\nhello\r\n", BodyError::ChunkExtension),
        (b"5;a=\r\nhello\r\n", BodyError::ChunkExtension),
        (b"5;a=\"open\r\nhello\r\n", BodyError::ChunkExtension),
        (b"5 x\r\nhello\r\n", BodyError::ChunkExtension),
        (b"5\nhello\r\n", BodyError::Framing),
        (b"5\r\nhelloXY", BodyError::Framing),
        (b"5\r\nhello\n0\r\n\r\n", BodyError::Framing),
        (b"5\rhello", BodyError::Framing),
        (b"0\r\nbad trailer\r\n\r\n", BodyError::Trailer),
        (b"0\r\n: v\r\n\r\n", BodyError::Trailer),
    ];
    for (input, want) in cases {
        let got = run(BodyDecoder::chunked(), &[input]);
        assert_eq!(got.as_ref().err(), Some(want), "{:?}", String::from_utf8_lossy(input));
        // At every split too.
        for size in 1..input.len() {
            let pieces: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(run(BodyDecoder::chunked(), &pieces).err().as_ref(), Some(want), "split {size}");
        }
    }
    let long = format!("1;{}=1\r\n", "n".repeat(5000));
    assert_eq!(run(BodyDecoder::chunked(), &[long.as_bytes()]).err(), Some(BodyError::TooLong));
}

#[test]
fn chunk_line_limit_at_and_over() {
    // A chunk-size line of exactly the limit (without its CRLF) passes; one more byte fails.
    let line_of = |len: usize| format!("1;{}=1", "n".repeat(len - 4));
    let at = format!("{}\r\nx\r\n0\r\n\r\n", line_of(64));
    assert_eq!(run(BodyDecoder::chunked().with_max_line(64), &[at.as_bytes()]).unwrap().0, b"x");
    let over = format!("{}\r\nx\r\n0\r\n\r\n", line_of(65));
    assert_eq!(
        run(BodyDecoder::chunked().with_max_line(64), &[over.as_bytes()]).err(),
        Some(BodyError::TooLong)
    );
}
