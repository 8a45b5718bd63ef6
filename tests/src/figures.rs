//! Process-wide figures: descriptors, CPU, RSS, limits, and the `serial` lock.

use std::sync::Mutex;
use std::time::Duration;

/// Number of open file descriptors of this process (entries of `/proc/self/fd`, less the one
/// the listing itself opens). Process-wide: tests comparing it must not run beside other
/// tests that open sockets (see [`serial`]).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count().saturating_sub(1)
}

/// Serialises the tests of one binary that measure process-wide figures (fds, heap, CPU), so
/// `cargo test`'s parallel threads cannot disturb them. A failed test does not poison it.
/// (Under nextest every test is a process of its own.)
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The calling thread's kernel thread id (from the `/proc/thread-self` link, no unsafe code).
pub fn current_tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
    // The link reads "PID/task/TID".
    link.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()).expect("/proc/thread-self form")
}

/// CPU time used so far by thread `tid` of this process, from its `schedstat` (nanoseconds).
pub fn thread_cpu(tid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .unwrap_or_else(|e| panic!("read schedstat of thread {tid}: {e}"));
    let ns: u64 = text.split_whitespace().next().and_then(|f| f.parse().ok()).expect("schedstat form");
    Duration::from_nanos(ns)
}

/// CPU share of one core used by thread `tid` over `window` (a measurement window: the
/// thread's CPU is sampled at both ends; nothing waits on it to synchronise).
pub fn cpu_share(tid: u32, window: Duration) -> (Duration, f64) {
    let before = thread_cpu(tid);
    std::thread::sleep(window);
    let used = thread_cpu(tid) - before;
    (used, used.as_secs_f64() / window.as_secs_f64())
}

/// CPU time (user + system, all threads) used so far by process `pid`, from `/proc/PID/stat`
/// (clock ticks; USER_HZ is 100 on Linux, and reading it would need unsafe `sysconf`).
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Resident set size of this process, in bytes (`/proc/self/statm`, 4 KiB pages).
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).and_then(|f| f.parse().ok()).expect("statm form");
    pages * 4096
}

/// This process's soft and hard `RLIMIT_NOFILE`, from `/proc/self/limits`.
pub fn nofile_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files line");
    let nums: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    (nums[0], nums[1])
}
