//! # Chapter 4: framing and limits
//!
//! TCP delivers a stream of bytes, not messages: one `data_received` may hold half a message,
//! or three and a bit. A *framer* reassembles whole messages however the stream is split, and
//! enforces a size limit so a peer cannot make you buffer without end. torsion's framers
//! (Twisted's `basic.py`) are protocols around a small *handler* you write: composition, not
//! inheritance.
//!
//! | framer | wire format | handler trait | default limit |
//! |---|---|---|---|
//! | [`LineReceiver`] | text lines ending in `\r\n` | [`LineHandler`] | 16384 bytes per line |
//! | [`IntNStringReceiver`] (`int8`, `int16`, `int32`) | a 1, 2 or 4-byte big-endian length, then the bytes | [`StringHandler`] | 99999 bytes |
//! | [`NetstringReceiver`] | `5:hello,` | [`StringHandler`] | 99999 bytes |
//!
//! ## Lines, and what `nc` and `telnet` send
//! [`LineReceiver`] ends lines at `\r\n` only, as Twisted does ([`LineEndings::Exact`], the
//! default). `telnet` sends `\r\n`, but `nc` sends a bare `\n`, so its lines would never end.
//! For humans typing, pick [`LineEndings::Lenient`] (`\n` or `\r\n` ends a line, a `\r`
//! before the `\n` is dropped); for a strict wire protocol, [`LineEndings::Strict`] closes
//! the connection on a bare `\n`. `send_line` always appends the delimiter (`\r\n`).
//!
//! ```
//! use torsion_protocols::{LineCtx, LineEndings, LineHandler, LineReceiver};
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::DisconnectReason;
//!
//! struct Shout;
//!
//! impl LineHandler for Shout {
//!     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
//!         lx.send_line(&line.to_ascii_uppercase());
//!     }
//! }
//!
//! let mut h = Harness::new();
//!
//! // Exact (the default): a bare `\n` does not end a line.
//! let exact = h.accept(&mut |_| Some(LineReceiver::new(Shout))).unwrap();
//! h.feed(exact, b"from nc\n");
//! assert!(h.take_written(exact).is_empty());
//! h.feed(exact, b"from telnet\r\n");
//! assert_eq!(h.take_written(exact), b"FROM NC\nFROM TELNET\r\n");
//!
//! // Lenient: both work; lines split anywhere are reassembled.
//! let lenient =
//!     h.accept(&mut |_| Some(LineReceiver::new(Shout).with_line_endings(LineEndings::Lenient))).unwrap();
//! h.feed(lenient, b"from n");
//! h.feed(lenient, b"c\nfrom telnet\r");
//! h.feed(lenient, b"\n");
//! assert_eq!(h.take_written(lenient), b"FROM NC\r\nFROM TELNET\r\n");
//!
//! // Strict: a bare `\n` is a protocol error.
//! let strict =
//!     h.accept(&mut |_| Some(LineReceiver::new(Shout).with_line_endings(LineEndings::Strict))).unwrap();
//! h.feed(strict, b"smuggled\nline\r\n");
//! assert!(matches!(h.disconnect_reason(strict), Some(DisconnectReason::ProtocolError(_))));
//! ```
//!
//! ## Limits
//! Every framer has a maximum frame length, on by default. A line over it is reported as soon
//! as it cannot fit, without waiting for its end; the default handling closes the connection
//! with [`DisconnectReason::LimitExceeded`], after the lines before it were handled. Override
//! `line_length_exceeded` to answer instead (the rest of the long line is then skipped).
//!
//! ```
//! use torsion_protocols::{LineCtx, LineEndings, LineHandler, LineReceiver};
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::DisconnectReason;
//!
//! struct Echo;
//! impl LineHandler for Echo {
//!     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
//!         lx.send_line(line);
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let id = h
//!     .accept(&mut |_| {
//!         Some(LineReceiver::new(Echo).with_line_endings(LineEndings::Lenient).with_max_length(8))
//!     })
//!     .unwrap();
//! h.feed(id, b"12345678\n"); // exactly the maximum: accepted
//! h.feed(id, b"123456789"); // one more: closed at once, no newline needed
//! assert_eq!(h.take_written(id), b"12345678\r\n");
//! assert_eq!(
//!     h.disconnect_reason(id),
//!     Some(DisconnectReason::LimitExceeded("line longer than 8 bytes".into()))
//! );
//!
//! /// Tells the peer off and carries on with the next line.
//! struct Patient;
//! impl LineHandler for Patient {
//!     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
//!         lx.send_line(line);
//!     }
//!     fn line_length_exceeded(&mut self, lx: &mut LineCtx<'_, '_>) {
//!         lx.send_line(b"too long, ignored");
//!     }
//! }
//! let id = h.accept(&mut |_| Some(LineReceiver::new(Patient).with_max_length(4))).unwrap();
//! h.feed(id, b"far too long\r\nok\r\n");
//! assert_eq!(h.take_written(id), b"too long, ignored\r\nok\r\n");
//! assert!(h.is_open(id));
//! ```
//!
//! ## Length prefixes and netstrings
//! Binary protocols send a length first. [`IntNStringReceiver`] reads a 1, 2 or 4-byte length
//! (big-endian by default; `with_endianness` changes it), [`NetstringReceiver`] reads
//! `LENGTH:BYTES,`. `send_string` frames a reply the same way and returns an error for a
//! string the prefix cannot express. An announced length over the maximum closes the
//! connection before a byte of the body is buffered.
//!
//! ```
//! use torsion_protocols::{IntNStringReceiver, NetstringReceiver, StringCtx, StringHandler};
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::DisconnectReason;
//!
//! struct Reverse;
//!
//! impl StringHandler for Reverse {
//!     fn string_received(&mut self, sx: &mut StringCtx<'_, '_>, data: &[u8]) {
//!         let reversed: Vec<u8> = data.iter().rev().copied().collect();
//!         sx.send_string(&reversed).expect("as long as what came in");
//!     }
//! }
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut |_| Some(IntNStringReceiver::int16(Reverse))).unwrap();
//! h.feed(id, b"\x00\x03a");
//! h.feed(id, b"bc\x00\x02xy");
//! assert_eq!(h.take_written(id), b"\x00\x03cba\x00\x02yx");
//!
//! let id = h.accept(&mut |_| Some(NetstringReceiver::netstring(Reverse))).unwrap();
//! h.feed(id, b"5:hello,");
//! assert_eq!(h.take_written(id), b"5:olleh,");
//!
//! // A 4 GB string announced to a server that takes 1000 bytes: refused up front.
//! let id = h.accept(&mut |_| Some(IntNStringReceiver::int32(Reverse).with_max_length(1000))).unwrap();
//! h.feed(id, b"\xff\xff\xff\xff");
//! assert!(matches!(h.disconnect_reason(id), Some(DisconnectReason::LimitExceeded(_))));
//! ```
//!
//! ## Frame deadlines: the slow-loris defence
//! A size limit does not stop a peer that sends one byte a minute and never finishes a line.
//! `with_frame_deadline(d)` gives each frame `d` from its first byte to its last; past that the
//! connection closes with [`DisconnectReason::TimedOut`]. (An idle timeout,
//! [chapter 7](super::ch07_policies), would be reset by every byte.)
//!
//! ```
//! use std::time::Duration;
//! use torsion_protocols::{LineCtx, LineHandler, LineReceiver};
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::DisconnectReason;
//!
//! struct Quiet;
//! impl LineHandler for Quiet {
//!     fn line_received(&mut self, _lx: &mut LineCtx<'_, '_>, _line: &[u8]) {}
//! }
//!
//! let mut h = Harness::new();
//! let factory = &mut |_| Some(LineReceiver::new(Quiet).with_frame_deadline(Duration::from_secs(10)));
//! let id = h.accept(factory).unwrap();
//! h.advance(Duration::from_secs(60)); // no frame begun: no deadline running
//! for _ in 0..9 {
//!     h.feed(id, b"x"); // a byte a second...
//!     h.advance(Duration::from_secs(1));
//! }
//! assert!(h.is_open(id));
//! h.advance(Duration::from_secs(1)); // ...is ten seconds into one line
//! assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
//! ```
//!
//! ## Try it
//! The `frame-echo` binary echoes frames in any of these framings:
//!
//! ```sh
//! cargo run -p torsion-examples --bin frame-echo -- --listen 127.0.0.1:8000 --framing netstring
//! printf '5:hello,' | nc -N 127.0.0.1 8000      # prints 5:hello,
//! cargo run -p torsion-examples --bin frame-echo -- --listen 127.0.0.1:8001 --framing line --line-endings lenient
//! ```
//!
//! The decoders underneath ([`LineDecoder`](torsion_protocols::framing::LineDecoder),
//! [`IntNDecoder`](torsion_protocols::framing::IntNDecoder),
//! [`NetstringDecoder`](torsion_protocols::framing::NetstringDecoder)) are pure: bytes in,
//! frames out, usable without a reactor. [Chapter 6](super::ch06_testing) shows how to test
//! one against every split of its input.
//!
//! Next: [chapter 5, flow control](super::ch05_flow_control).
//!
//! [`LineReceiver`]: torsion_protocols::LineReceiver
//! [`LineHandler`]: torsion_protocols::LineHandler
//! [`LineEndings::Exact`]: torsion_protocols::LineEndings::Exact
//! [`LineEndings::Lenient`]: torsion_protocols::LineEndings::Lenient
//! [`LineEndings::Strict`]: torsion_protocols::LineEndings::Strict
//! [`IntNStringReceiver`]: torsion_protocols::IntNStringReceiver
//! [`NetstringReceiver`]: torsion_protocols::NetstringReceiver
//! [`StringHandler`]: torsion_protocols::StringHandler
//! [`DisconnectReason::LimitExceeded`]: torsion_reactor::DisconnectReason::LimitExceeded
//! [`DisconnectReason::TimedOut`]: torsion_reactor::DisconnectReason::TimedOut
