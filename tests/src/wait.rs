//! Bounded waits: `WAIT`, `run_until`, `wait_for`, `recv`, `bounded`.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use torsion_reactor::Reactor;

/// The longest any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Turns `reactor` until `done` holds, failing the test with `what` after [`WAIT`]. Each
/// poll waits at most 5 ms, so a condition that another thread makes true (with no event for
/// this reactor) is noticed promptly.
pub fn run_until(reactor: &mut Reactor, what: &str, mut done: impl FnMut(&Reactor) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if reactor.run_until(Duration::from_millis(5), &mut done).expect("reactor turn failed") {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting for: {what}");
    }
}

/// Polls `done` until it holds, failing with `what` after [`WAIT`]. For waiting on another
/// thread or process; each poll sleeps 1 ms (a bounded wait, not a synchronisation sleep).
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Receives from `rx`, failing with `what` after [`WAIT`].
pub fn recv<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// Runs `body` on its own thread and waits for it, bounded by [`WAIT`]: for tests that call
/// `turn()` or `run()` on a reactor with a real clock, which a bug could block forever.
pub fn bounded(what: &str, body: impl FnOnce() + Send + 'static) {
    let thread = std::thread::spawn(body);
    wait_for(what, || thread.is_finished());
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}
