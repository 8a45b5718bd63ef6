//! The deterministic byte pattern the load generator sends and checks echoes against.
//!
//! Every connection is treated as an endless byte stream whose byte at position `p` is
//! `(p + base) mod PERIOD`, where `base` differs per connection. Because `PERIOD` is a
//! prime, no power-of-two message or buffer size lines up with it, so a lost, duplicated,
//! reordered or cross-connection chunk of data shows up as a mismatch.

/// Length of the repeating pattern: a prime, so it never aligns with power-of-two sizes.
pub const PERIOD: usize = 251;

/// A buffer holding the pattern long enough that any window of up to
/// [`Pattern::max_window`] bytes, starting at any stream position, is one contiguous
/// slice (so sending and verifying are plain slice operations, without copying).
#[derive(Debug, Clone)]
pub struct Pattern {
    bytes: Vec<u8>,
    max_window: usize,
}

impl Pattern {
    /// Builds a pattern supporting windows of up to `max_window` bytes.
    pub fn new(max_window: usize) -> Self {
        // `i % PERIOD` is below 251, so the cast is lossless.
        let bytes = (0..max_window + PERIOD).map(|i| (i % PERIOD) as u8).collect();
        Self { bytes, max_window }
    }

    /// Largest window [`Pattern::window`] can return.
    pub fn max_window(&self) -> usize {
        self.max_window
    }

    /// The `len` bytes of the pattern stream starting at stream position `pos`.
    ///
    /// # Panics
    ///
    /// Panics if `len` exceeds [`Pattern::max_window`].
    pub fn window(&self, pos: u64, len: usize) -> &[u8] {
        assert!(len <= self.max_window, "pattern window of {len} bytes exceeds {}", self.max_window);
        // The remainder is below PERIOD, so it fits in usize.
        let start = (pos % PERIOD as u64) as usize;
        &self.bytes[start..start + len]
    }

    /// Checks that `data` is exactly the pattern at stream position `pos`. On mismatch
    /// returns the offset within `data` of the first wrong byte.
    pub fn verify(&self, pos: u64, data: &[u8]) -> Result<(), usize> {
        let expected = self.window(pos, data.len());
        if data == expected {
            Ok(())
        } else {
            Err(data.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_contiguous_stream_slices() {
        let p = Pattern::new(1000);
        let whole = p.window(7, 1000).to_vec();
        // Any sub-window equals the same range of a bigger window.
        assert_eq!(p.window(7 + 300, 200), &whole[300..500]);
        assert_eq!(p.window(7 + 251, 10), p.window(7, 10));
        assert_ne!(p.window(8, 10), p.window(7, 10));
    }

    #[test]
    fn verify_reports_first_mismatch() {
        let p = Pattern::new(64);
        let mut data = p.window(1234, 64).to_vec();
        assert_eq!(p.verify(1234, &data), Ok(()));
        data[40] ^= 1;
        assert_eq!(p.verify(1234, &data), Err(40));
        // A chunk from the wrong position is rejected.
        assert!(p.verify(1235, p.window(1234, 64)).is_err());
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn oversized_window_panics() {
        let _ = Pattern::new(16).window(0, 17);
    }
}
