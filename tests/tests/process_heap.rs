//! Flow control on a child's pipes, with heap figures from a counting allocator: a child
//! writing 64 MiB to a slow consumer (stdout is read only as fast as the protocol takes it),
//! and a producer writing 64 MiB to a child that stops reading its stdin for a while (the
//! write buffer stays at the high mark, the producer is paused, nothing queues up).
//!
//! Every test takes [`serial`] so nothing else allocates meanwhile under `cargo test` (nextest
//! runs each test in a process of its own).

use std::alloc::System;
use std::cell::RefCell;
use std::process::{Command, ExitStatus};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use cap::Cap;
use torsion_reactor::{ProcessCtx, ProcessProtocol, Reactor};
use torsion_tests::{run_until, serial, WAIT};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const TOTAL: usize = 64 * 1024 * 1024;
/// The default watermarks, and the producer's chunk.
const HIGH: usize = 64 * 1024;
const CHUNK: usize = 64 * 1024;
/// Heap growth allowed over the start: the loop's read buffer (256 KiB), a write buffer at the
/// high mark plus a chunk, bookkeeping. 64 MiB held anywhere would be far over it.
const HEAP_SLACK: usize = 2 * 1024 * 1024;

#[derive(Debug, Default)]
struct Seen {
    received: usize,
    written: usize,
    /// Bytes delivered by `out_received` while reading was paused (must stay 0).
    received_while_paused: usize,
    max_buffer: usize,
    pid: u32,
    max_heap_over_start: usize,
    pauses: usize,
    resumes: usize,
    exited: Option<ExitStatus>,
    ended: bool,
}

fn heap_over(start: usize) -> usize {
    ALLOCATOR.allocated().saturating_sub(start)
}

/// Takes each read, then stops reading for a millisecond: a consumer far slower than `head`.
struct SlowConsumer {
    seen: Rc<RefCell<Seen>>,
    heap_start: usize,
}

impl ProcessProtocol for SlowConsumer {
    fn connection_made(&mut self, cx: &mut ProcessCtx<'_>) {
        cx.close_stdin();
    }

    fn out_received(&mut self, cx: &mut ProcessCtx<'_>, data: &[u8]) {
        let mut seen = self.seen.borrow_mut();
        seen.received += data.len();
        if cx.transport().is_reading_paused() {
            // Paused by the previous read and not resumed by the timer yet.
            seen.received_while_paused += data.len();
        }
        seen.max_heap_over_start = seen.max_heap_over_start.max(heap_over(self.heap_start));
        cx.pause_reading();
        let id = cx.process_id();
        cx.call_later(Duration::from_millis(1), move |cx| {
            if let Some(mut child) = cx.process(id) {
                child.resume_reading();
            }
        });
    }

    fn process_exited(&mut self, _cx: &mut ProcessCtx<'_>, status: ExitStatus) {
        self.seen.borrow_mut().exited = Some(status);
    }

    fn process_ended(&mut self, _cx: &mut ProcessCtx<'_>, _status: ExitStatus) {
        self.seen.borrow_mut().ended = true;
    }
}

#[test]
fn load_a_child_writing_64_mib_to_a_slow_consumer_keeps_memory_bounded() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut command = Command::new("head");
    command.args(["-c", &TOTAL.to_string(), "/dev/zero"]);
    let heap_start = ALLOCATOR.allocated();
    reactor.spawn_process(command, SlowConsumer { seen: seen.clone(), heap_start }).unwrap();
    let done = seen.clone();
    run_until(&mut reactor, "64 MiB read slowly", move |_| done.borrow().ended);
    let seen = seen.borrow();
    assert_eq!(seen.received, TOTAL);
    assert_eq!(seen.exited.and_then(|s| s.code()), Some(0));
    assert_eq!(seen.received_while_paused, 0, "out_received while reading was paused");
    assert!(
        seen.max_heap_over_start < HEAP_SLACK,
        "heap grew by {} bytes while a child wrote 64 MiB to a slow consumer",
        seen.max_heap_over_start
    );
}

/// A push producer feeding a child's stdin in 64 KiB pieces (zero-copy slices) until 64 MiB
/// are written, then closing stdin.
struct Feeder {
    seen: Rc<RefCell<Seen>>,
    source: Bytes,
    paused: bool,
    heap_start: usize,
}

impl Feeder {
    fn pump(&mut self, cx: &mut ProcessCtx<'_>) {
        let mut seen = self.seen.borrow_mut();
        while !self.paused && seen.written < TOTAL {
            let above = cx.write_bytes(self.source.slice(..CHUNK));
            seen.written += CHUNK;
            let buffered = cx.transport().write_buffer_len();
            seen.max_buffer = seen.max_buffer.max(buffered);
            seen.max_heap_over_start = seen.max_heap_over_start.max(heap_over(self.heap_start));
            if above {
                // pause_producing is queued (no re-entrancy); stop writing now, as asked.
                break;
            }
        }
        if seen.written >= TOTAL {
            cx.close_stdin();
        }
    }
}

impl ProcessProtocol for Feeder {
    fn connection_made(&mut self, cx: &mut ProcessCtx<'_>) {
        self.seen.borrow_mut().pid = cx.pid();
        self.pump(cx);
    }

    fn pause_producing(&mut self, _cx: &mut ProcessCtx<'_>) {
        self.paused = true;
        self.seen.borrow_mut().pauses += 1;
    }

    fn resume_producing(&mut self, cx: &mut ProcessCtx<'_>) {
        self.paused = false;
        self.seen.borrow_mut().resumes += 1;
        self.pump(cx);
    }

    fn process_exited(&mut self, _cx: &mut ProcessCtx<'_>, status: ExitStatus) {
        self.seen.borrow_mut().exited = Some(status);
    }

    fn process_ended(&mut self, _cx: &mut ProcessCtx<'_>, _status: ExitStatus) {
        self.seen.borrow_mut().ended = true;
    }
}

/// The state letter of process `pid` from /proc (`T` when stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

#[test]
fn load_a_child_that_stops_reading_stdin_pauses_the_producer_and_bounds_the_buffer() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Seen::default()));
    // Stops itself before reading anything; once continued, reads everything.
    let mut command = Command::new("sh");
    command.args(["-c", "kill -STOP $$; exec cat > /dev/null"]);
    let heap_start = ALLOCATOR.allocated();
    let source = Bytes::from(vec![b'x'; CHUNK]);
    let feeder = Feeder { seen: seen.clone(), source, paused: false, heap_start };
    reactor.spawn_process(command, feeder).unwrap();

    // Phase 1: the child reads nothing. The producer fills the pipe and the buffer, is paused,
    // and stays paused: nothing beyond the high mark (plus one piece) is ever held.
    let stalled = seen.clone();
    run_until(&mut reactor, "the producer paused by a child that does not read", move |_| {
        stalled.borrow().pauses == 1
    });
    let pid = seen.borrow().pid;
    let mut stopped = false;
    let _ = reactor.run_until(WAIT, |_| {
        stopped = process_state(pid) == Some('T');
        stopped
    });
    assert!(stopped, "the child did not stop itself within {WAIT:?}");
    {
        let seen = seen.borrow();
        assert_eq!(seen.resumes, 0, "resumed while the child read nothing");
        assert!(
            seen.written < 4 * HIGH + CHUNK,
            "{} bytes accepted from a producer while the child read nothing",
            seen.written
        );
    }

    // Phase 2: the child reads again; the producer is resumed as the buffer drains, 64 MiB
    // go through, and the buffer never held more than the high mark plus one piece.
    Command::new("kill").args(["-CONT", &pid.to_string()]).status().expect("kill -CONT");
    let done = seen.clone();
    run_until(&mut reactor, "64 MiB written to the child", move |_| done.borrow().ended);
    let seen = seen.borrow();
    assert_eq!(seen.written, TOTAL);
    assert_eq!(seen.exited.and_then(|s| s.code()), Some(0));
    assert!(seen.resumes > 0);
    assert!(seen.max_buffer <= HIGH + CHUNK, "write buffer reached {} bytes", seen.max_buffer);
    assert!(
        seen.max_heap_over_start < HEAP_SLACK,
        "heap grew by {} bytes while 64 MiB went to a child",
        seen.max_heap_over_start
    );
}
