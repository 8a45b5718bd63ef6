//! CPU time of the current process, for the load generator's self-report.
//!
//! The load generator reports how busy its own core was: if it is near 100 %, the
//! measured throughput is bounded by the client rather than by the server under test.

use std::fs;
use std::time::Duration;

/// CPU time (user + system) consumed so far by the calling process's main thread, read
/// from `/proc/self/schedstat` (nanosecond resolution). The load generator is
/// single-threaded, so this is the whole process. Returns `None` where the file is
/// unavailable (kernels built without scheduler statistics, non-Linux systems).
pub fn self_cpu_time() -> Option<Duration> {
    let text = fs::read_to_string("/proc/self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_monotonic_when_available() {
        let Some(before) = self_cpu_time() else { return };
        // Burn a little CPU so the counter has a chance to advance.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = self_cpu_time().expect("schedstat readable twice");
        assert!(after >= before);
    }
}
