//! The per-connection write buffer: a queue of [`Bytes`] chunks with high and low watermarks.
//!
//! Small copied writes (`push_slice`) are appended to one growable tail so that thousands of tiny
//! writes made in one callback leave in one `write_vectored` call; owned chunks (`push_bytes`)
//! are queued without copying. Every entry point that adds bytes returns whether the buffer is now
//! strictly above the high watermark, so no write path can skip the check.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};

use crate::TransportError;

/// Default high watermark: above this many buffered bytes the producer is paused.
pub const DEFAULT_HIGH_WATERMARK: usize = 64 * 1024;
/// Default low watermark: at or below this many buffered bytes the producer is resumed.
pub const DEFAULT_LOW_WATERMARK: usize = 16 * 1024;
/// Largest number of bytes handed to one `write_vectored` call (Twisted's `SEND_LIMIT`).
pub const MAX_WRITE_PER_CALL: usize = 128 * 1024;
/// Largest number of bytes one direct write (a large write made while nothing is buffered)
/// hands to the socket per call: 256 KiB, the reactor's default read buffer, so an echo of one
/// full read is one system call. Capping it at [`MAX_WRITE_PER_CALL`] instead split every such
/// echo in two, which over Unix sockets (where each `sendmsg` allocates its buffers) cost half
/// again as much CPU per MB as a hand-written mio loop.
pub const DIRECT_WRITE_MAX: usize = 256 * 1024;
/// Writes at least this large, made while nothing is buffered, go straight to the socket instead
/// of being copied into the buffer first (see `Connection::write`).
pub const DIRECT_WRITE_MIN: usize = 16 * 1024;
/// Largest number of slices handed to one `write_vectored` call.
const MAX_IOVECS: usize = 64;
/// Owned chunks shorter than this are copied into the tail instead of queued on their own.
const COPY_THRESHOLD: usize = 512;
/// A drained tail keeps its allocation only up to this size, so idle connections stay small.
const RETAIN_TAIL: usize = 16 * 1024;

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushStatus {
    /// Everything buffered was written.
    Drained,
    /// The socket would block; wait for writability.
    WouldBlock,
    /// The per-flush call budget ran out with data left; flush again later.
    BudgetExhausted,
}

/// An ordered queue of outgoing bytes with watermarks.
#[derive(Debug)]
pub struct WriteBuffer {
    /// Complete chunks, oldest first; all of them precede `tail`.
    chunks: VecDeque<Bytes>,
    /// Small copied writes, after every chunk in `chunks`.
    tail: Vec<u8>,
    /// Bytes at the front of `tail` already written.
    tail_pos: usize,
    /// Total unsent bytes.
    len: usize,
    high: usize,
    low: usize,
    /// Number of `write_vectored` calls made so far (for tests and statistics).
    write_calls: u64,
    /// Bytes the socket layer below holds for sending (TLS ciphertext not yet on the wire),
    /// counted against the watermarks with the buffer's own.
    below: usize,
}

impl Default for WriteBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteBuffer {
    /// An empty buffer with the default watermarks (64 KiB / 16 KiB).
    pub fn new() -> Self {
        WriteBuffer {
            chunks: VecDeque::new(),
            tail: Vec::new(),
            tail_pos: 0,
            len: 0,
            high: DEFAULT_HIGH_WATERMARK,
            low: DEFAULT_LOW_WATERMARK,
            write_calls: 0,
            below: 0,
        }
    }

    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `(high, low)` watermarks.
    pub fn limits(&self) -> (usize, usize) {
        (self.high, self.low)
    }

    /// Sets the watermarks; `low` must not exceed `high`.
    pub fn set_limits(&mut self, high: usize, low: usize) -> Result<(), TransportError> {
        if low > high {
            return Err(TransportError::InvalidWatermarks { high, low });
        }
        self.high = high;
        self.low = low;
        Ok(())
    }

    /// True when the buffer (with what the socket layer below holds) is strictly more than
    /// the high watermark.
    pub fn above_high(&self) -> bool {
        self.len + self.below > self.high
    }

    /// True when the buffer (with what the socket layer below holds) is at most the low
    /// watermark.
    pub fn at_or_below_low(&self) -> bool {
        self.len + self.below <= self.low
    }

    /// Records how many bytes the socket layer below holds for sending (TLS ciphertext not
    /// yet on the wire; always 0 for plain sockets), so the watermarks count them too.
    pub fn set_below(&mut self, bytes: usize) {
        self.below = bytes;
    }

    /// Number of `write_vectored` calls this buffer has made.
    pub fn write_calls(&self) -> u64 {
        self.write_calls
    }

    /// Counts a write system call made around the buffer (a direct write of a large slice).
    pub fn note_write_call(&mut self) {
        self.write_calls += 1;
    }

    /// Appends a copy of `data`; returns whether the buffer is now above the high watermark.
    pub fn push_slice(&mut self, data: &[u8]) -> bool {
        if !data.is_empty() {
            if self.tail_pos > 0 && self.tail.len() + data.len() > self.tail.capacity() {
                // The tail would grow: drop its sent front first, or a tail that never drains
                // completely would keep every byte ever written through it.
                self.tail.drain(..self.tail_pos);
                self.tail_pos = 0;
            }
            self.tail.extend_from_slice(data);
            self.len += data.len();
        }
        self.above_high()
    }

    /// Appends an owned chunk without copying (small chunks are copied into the tail instead);
    /// returns whether the buffer is now above the high watermark.
    pub fn push_bytes(&mut self, data: Bytes) -> bool {
        if data.len() < COPY_THRESHOLD {
            return self.push_slice(&data);
        }
        self.seal_tail();
        self.len += data.len();
        self.chunks.push_back(data);
        self.above_high()
    }

    /// Removes and returns every unsent byte, in order (the watermarks are kept).
    pub fn take_all(&mut self) -> Vec<u8> {
        self.seal_tail();
        let mut out = Vec::with_capacity(self.len);
        for chunk in self.chunks.drain(..) {
            out.extend_from_slice(&chunk);
        }
        self.clear();
        out
    }

    /// Drops everything buffered.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.tail = Vec::new();
        self.tail_pos = 0;
        self.len = 0;
    }

    /// Moves the unsent part of the tail into the chunk queue so a chunk can follow it.
    fn seal_tail(&mut self) {
        if self.tail.len() > self.tail_pos {
            let tail = std::mem::take(&mut self.tail);
            let sent = self.tail_pos;
            self.tail_pos = 0;
            let mut bytes = Bytes::from(tail);
            bytes.advance(sent);
            self.chunks.push_back(bytes);
        } else {
            self.tail.clear();
            self.tail_pos = 0;
        }
    }

    /// Writes buffered data to `sink` with `write_vectored`, at most [`MAX_WRITE_PER_CALL`] bytes
    /// per call and at most `max_calls` calls.
    ///
    /// Returns how far it got; an error other than `WouldBlock`/`Interrupted` is returned as is
    /// and leaves the unsent data in place.
    pub fn flush_to<W: Write>(&mut self, sink: &mut W, max_calls: usize) -> io::Result<FlushStatus> {
        let mut calls = 0;
        while self.len > 0 {
            if calls == max_calls {
                return Ok(FlushStatus::BudgetExhausted);
            }
            calls += 1;
            let result = if self.chunks.is_empty() {
                // Only copied bytes (the common small-write case): one plain write, no iovecs.
                let rest = &self.tail[self.tail_pos..];
                self.write_calls += 1;
                sink.write(&rest[..rest.len().min(MAX_WRITE_PER_CALL)])
            } else {
                let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
                let mut n = 0;
                let mut total = 0;
                for chunk in &self.chunks {
                    if n == MAX_IOVECS || total >= MAX_WRITE_PER_CALL {
                        break;
                    }
                    let take = chunk.len().min(MAX_WRITE_PER_CALL - total);
                    slices[n] = IoSlice::new(&chunk[..take]);
                    n += 1;
                    total += take;
                }
                if n < MAX_IOVECS && total < MAX_WRITE_PER_CALL && self.tail.len() > self.tail_pos {
                    let rest = &self.tail[self.tail_pos..];
                    let take = rest.len().min(MAX_WRITE_PER_CALL - total);
                    slices[n] = IoSlice::new(&rest[..take]);
                    n += 1;
                }
                self.write_calls += 1;
                if n == 1 {
                    sink.write(&slices[0])
                } else {
                    sink.write_vectored(&slices[..n])
                }
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.consume(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(FlushStatus::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(FlushStatus::Drained)
    }

    /// Forgets `n` bytes from the front after they were written.
    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(chunk) if chunk.len() <= n => {
                    n -= chunk.len();
                    self.chunks.pop_front();
                }
                Some(chunk) => {
                    chunk.advance(n);
                    n = 0;
                }
                None => {
                    self.tail_pos += n;
                    n = 0;
                }
            }
        }
        if self.tail_pos == self.tail.len() && self.tail_pos > 0 {
            self.tail_pos = 0;
            if self.tail.capacity() > RETAIN_TAIL {
                self.tail = Vec::new();
            } else {
                self.tail.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that accepts at most `cap` bytes per call and records the calls.
    struct Sink {
        out: Vec<u8>,
        cap: usize,
        calls: usize,
        block_after: Option<usize>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.block_after == Some(self.calls) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_order_across_slices_and_chunks() {
        let mut buf = WriteBuffer::new();
        let mut expected = Vec::new();
        for i in 0..50u32 {
            let small = i.to_be_bytes();
            buf.push_slice(&small);
            expected.extend_from_slice(&small);
            let big = Bytes::from(vec![i as u8; 1000 + i as usize]);
            expected.extend_from_slice(&big);
            buf.push_bytes(big);
        }
        assert_eq!(buf.len(), expected.len());
        let mut sink = Sink { out: Vec::new(), cap: 777, calls: 0, block_after: None };
        assert_eq!(buf.flush_to(&mut sink, usize::MAX).unwrap(), FlushStatus::Drained);
        assert_eq!(sink.out, expected);
        assert!(buf.is_empty());
    }

    #[test]
    fn many_small_writes_leave_in_one_call() {
        let mut buf = WriteBuffer::new();
        for _ in 0..10_000 {
            buf.push_slice(b"x");
        }
        let mut sink = Sink { out: Vec::new(), cap: usize::MAX, calls: 0, block_after: None };
        buf.flush_to(&mut sink, usize::MAX).unwrap();
        assert_eq!(sink.calls, 1);
        assert_eq!(buf.write_calls(), 1);
        assert_eq!(sink.out.len(), 10_000);
    }

    #[test]
    fn partial_write_then_would_block_keeps_the_rest() {
        let mut buf = WriteBuffer::new();
        buf.push_slice(&[1; 3000]);
        let mut sink = Sink { out: Vec::new(), cap: 1000, calls: 0, block_after: Some(2) };
        assert_eq!(buf.flush_to(&mut sink, usize::MAX).unwrap(), FlushStatus::WouldBlock);
        assert_eq!(buf.len(), 1000);
        buf.push_bytes(Bytes::from(vec![2; 600]));
        sink.block_after = None;
        assert_eq!(buf.flush_to(&mut sink, 1).unwrap(), FlushStatus::BudgetExhausted);
        assert_eq!(buf.flush_to(&mut sink, usize::MAX).unwrap(), FlushStatus::Drained);
        let mut expected = vec![1; 3000];
        expected.extend(vec![2; 600]);
        assert_eq!(sink.out, expected);
    }

    #[test]
    fn watermarks_are_strict_above_high_and_inclusive_low() {
        let mut buf = WriteBuffer::new();
        buf.set_limits(10, 4).unwrap();
        assert!(!buf.push_slice(&[0; 10]));
        assert!(buf.push_slice(&[0; 1]));
        assert!(buf.set_limits(3, 4).is_err());
        let mut sink = Sink { out: Vec::new(), cap: 7, calls: 0, block_after: None };
        buf.flush_to(&mut sink, 1).unwrap();
        assert!(buf.at_or_below_low());
    }

    #[test]
    fn one_call_never_exceeds_the_send_limit() {
        let mut buf = WriteBuffer::new();
        buf.push_bytes(Bytes::from(vec![0; 300 * 1024]));
        let mut sink = Sink { out: Vec::new(), cap: usize::MAX, calls: 0, block_after: None };
        assert_eq!(buf.flush_to(&mut sink, 1).unwrap(), FlushStatus::BudgetExhausted);
        assert_eq!(sink.out.len(), MAX_WRITE_PER_CALL);
    }
}
