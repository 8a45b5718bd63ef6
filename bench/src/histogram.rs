//! A small fixed-memory latency histogram with < 1 % relative error.
//!
//! Values (nanoseconds) are bucketed log-linearly, in the style of HdrHistogram: below
//! 128 every value has its own bucket; above, each power-of-two range is split into 128
//! equal sub-buckets. That bounds the relative error of a reported quantile by 1/128
//! while using a fixed ~60 KiB however many samples are recorded, so a long benchmark
//! run never grows memory or spends time sorting.

use std::time::Duration;

/// log2 of the number of sub-buckets per power of two.
const SUB_BITS: u32 = 7;
/// Number of sub-buckets per power of two.
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Enough buckets for every `u64`: the linear range plus 57 log ranges of 128.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB_COUNT;

/// Latency histogram over nanosecond values.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }

    /// Bucket index of value `v`.
    fn index(v: u64) -> usize {
        if v < SUB_COUNT as u64 {
            v as usize
        } else {
            let msb = 63 - v.leading_zeros(); // >= SUB_BITS
            let shift = msb - SUB_BITS;
            let sub = (v >> shift) as usize & (SUB_COUNT - 1);
            ((shift as usize + 1) << SUB_BITS) + sub
        }
    }

    /// Representative value (midpoint) of bucket `index`.
    fn value_of(index: usize) -> u64 {
        if index < SUB_COUNT {
            index as u64
        } else {
            let shift = (index >> SUB_BITS) - 1;
            let sub = (index & (SUB_COUNT - 1)) as u64;
            let low = (SUB_COUNT as u64 + sub) << shift;
            low + ((1u64 << shift) >> 1)
        }
    }

    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    /// Forgets all samples.
    pub fn reset(&mut self) {
        self.counts.fill(0);
        self.total = 0;
        self.max = 0;
    }

    /// Number of recorded samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded sample (exact), or zero if empty.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }

    /// The value at quantile `q` (0.0..=1.0): the smallest bucket value such that at least
    /// `q` of all samples are at or below it. Returns `None` if no sample was recorded.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        // Rank of the wanted sample, 1-based; the float-to-int cast saturates.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                // Never report more than the exact maximum.
                return Some(Duration::from_nanos(Self::value_of(index).min(self.max)));
            }
        }
        Some(Duration::from_nanos(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_value_round_trip_within_one_percent() {
        for v in [0u64, 1, 127, 128, 129, 255, 256, 1000, 12_345, 1 << 40, u64::MAX / 3, u64::MAX] {
            let back = Histogram::value_of(Histogram::index(v));
            let err = back.abs_diff(v) as f64 / (v.max(1)) as f64;
            assert!(err <= 1.0 / 128.0, "{v} -> {back}");
            assert!(Histogram::index(v) < BUCKETS);
        }
    }

    #[test]
    fn indices_are_monotonic() {
        let mut last = 0;
        for v in (0..100_000u64).chain((20..64).map(|s| 1u64 << s)) {
            let i = Histogram::index(v);
            assert!(i >= last);
            last = i;
        }
    }

    #[test]
    fn quantiles_of_uniform_samples() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1e6;
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1e6;
        assert!((p50 - 500.0).abs() / 500.0 < 0.01, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.01, "p99 {p99}");
        assert_eq!(h.max(), Duration::from_micros(1000));
        assert!(h.quantile(1.0).unwrap() <= h.max());
        h.reset();
        assert_eq!(h.count(), 0);
        assert_eq!(h.quantile(0.99), None);
    }
}
