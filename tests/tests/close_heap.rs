//! Closing connections, with heap figures: a reset in the middle of a large write (catalogue 4)
//! and `abort_connection` with 10 MiB queued (catalogue 7). The rest of closing is in
//! `close.rs`.
//!
//! Heap figures come from a counting global allocator (`cap`) for this test binary, and every
//! test here takes [`serial`] so that the figures and CPU samples are not disturbed by the
//! others (under `cargo test`; nextest runs each test in a process of its own). CPU is the
//! server thread's own (`/proc/self/task/TID/schedstat`), not the whole process's.
//!
//! SIGPIPE: Rust programs (this test binary too) start with SIGPIPE ignored, and making it
//! SIG_DFL again needs unsafe code, which is forbidden here. Instead a `signal_hook::flag`
//! handler records any SIGPIPE: a write that would have killed a process with the default
//! disposition (an embedder's, say) sets the flag, and the test fails on it.

use std::alloc::System;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cap::Cap;
use torsion_reactor::{Ctx, DisconnectReason, Protocol};
use torsion_tests::{
    connect_small_window, cpu_share, expect_aborted, over_kinds, pattern, recv, serial, wait_for, Kind,
    Server,
};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Live heap of the whole test process, in bytes.
fn heap() -> usize {
    ALLOCATOR.allocated()
}

// ---------------------------------------------------------------------------------------------
// Catalogue 4: rst_mid_write (TCP: a Unix stream has no reset)

const CHUNK: usize = 64 * 1024;

/// A protocol event: `connection_made` (`None`), or `connection_lost` with its time.
type Ev = Option<(DisconnectReason, Instant)>;

/// A push producer on its own transport: writes `total` bytes in owned 64 KiB chunks (several
/// queued chunks make the flush a `writev`) until the buffer is above the high mark, pauses and
/// resumes when told, then closes.
struct Streamer {
    chunk: Bytes,
    left: usize,
    paused: bool,
    events: Sender<Ev>,
}

impl Streamer {
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        while !self.paused && self.left > 0 {
            let n = self.left.min(CHUNK);
            self.left -= n;
            if cx.transport().write_bytes(self.chunk.slice(..n)) {
                break;
            }
        }
        if self.left == 0 {
            cx.transport().lose_connection();
        }
    }
}

impl Protocol for Streamer {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let _ = self.events.send(None);
        self.pump(cx);
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.paused = true;
    }
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.paused = false;
        self.pump(cx);
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.events.send(Some((reason, Instant::now())));
    }
}

/// Catalogue 4 (rst_mid_write): the server streams 64 MiB, the client reads 1 MiB and resets;
/// the connection is lost once within 1 s, no SIGPIPE is raised, the server thread uses < 5%
/// of a core over the next 2 s, and the heap is back to its baseline ±64 KiB; 3 runs.
#[test]
fn rst_mid_write_is_lost_once_within_1s_without_sigpipe_spin_or_leak() {
    let _serial = serial();
    let sigpipe = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGPIPE, sigpipe.clone()).expect("SIGPIPE handler");
    let (tx, events) = mpsc::channel();
    let chunk = Bytes::from(pattern(4, CHUNK));
    let server = Server::start(move || {
        move |_| Some(Streamer { chunk: chunk.clone(), left: 64 << 20, paused: false, events: tx.clone() })
    });
    let baseline = heap();
    for run in 0..3 {
        let mut client = server.connect();
        assert!(recv(&events, "connection_made").is_none(), "run {run}: connection_made first");
        let mut buf = vec![0u8; 1 << 20];
        client.read_exact(&mut buf).expect("read the first MiB");
        drop(buf);
        let reset_at = Instant::now();
        client.reset();
        let (reason, at) = recv(&events, "connection_lost").expect("connection_lost");
        let took = at.duration_since(reset_at);
        assert!(reason.is_lost(), "run {run}: {reason:?}");
        assert!(took < Duration::from_secs(1), "run {run}: connection_lost after {took:?}");
        let (used, share) = cpu_share(server.tid, Duration::from_secs(2));
        assert!(share < 0.05, "run {run}: the server thread used {used:?} of 2 s after the reset");
        assert!(events.recv_timeout(Duration::ZERO).is_err(), "run {run}: an extra callback came");
        // The protocol and its buffer go right after connection_lost; allow the server thread
        // to get there (bounded).
        wait_for("heap back to baseline ±64 KiB", || heap().abs_diff(baseline) <= 64 * 1024);
        let drift = heap() as i64 - baseline as i64;
        assert!(!sigpipe.load(Ordering::SeqCst), "run {run}: a write raised SIGPIPE");
        eprintln!(
            "rst_mid_write run {run}: {reason:?} after {took:?}; server CPU {used:?} over 2 s ({:.2}%); \
             heap {drift:+} B from baseline; no SIGPIPE",
            share * 100.0
        );
    }
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// Catalogue 7: abort_semantics

/// What [`Aborter`] saw, sent when its connection is lost.
#[derive(Debug, Default)]
struct AbortReport {
    heap_before_writes: usize,
    buffered_at_abort: usize,
    heap_after_abort: usize,
    buffer_after: usize,
    write_after_abort: bool,
    lost: Vec<DisconnectReason>,
    nested: bool,
}

/// Queues 10 MiB in `connection_made`; on the peer's first byte, aborts twice, loses and
/// writes.
struct Aborter {
    report: AbortReport,
    in_callback: bool,
    out: Sender<AbortReport>,
}

impl Protocol for Aborter {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.report.lost.reserve(4); // nothing of ours allocates between the two heap samples
        self.report.heap_before_writes = heap();
        let piece = vec![0x5a; 4096];
        for _ in 0..(10 << 20) / piece.len() {
            cx.transport().write(&piece);
        }
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        if self.report.buffered_at_abort > 0 {
            return;
        }
        self.in_callback = true;
        self.report.buffered_at_abort = cx.transport().write_buffer_len();
        cx.transport().abort_connection();
        cx.transport().abort_connection();
        cx.transport().lose_connection();
        self.report.write_after_abort = cx.transport().write(b"after abort");
        self.report.buffer_after = cx.transport().write_buffer_len();
        self.report.heap_after_abort = heap();
        self.in_callback = false;
    }
    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        // Keep reading (the default pauses it): the peer's byte must reach data_received.
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.report.nested |= self.in_callback;
        self.report.lost.push(reason);
        let _ = self.out.send(std::mem::take(&mut self.report));
    }
}

/// Catalogue 7 (abort_semantics): 10 MiB queued to a peer that does not read; `abort` twice,
/// `lose`, `write` from `data_received`: the peer reads ECONNRESET (a Unix peer, which gets no
/// reset, EOF or a reset), `connection_lost(Aborted)` comes once and not nested, the later
/// calls are no-ops, and the buffer's memory is freed (±4 KiB).
fn abort_semantics_reset_lost_once_not_nested_later_calls_no_ops_buffer_freed(kind: Kind) {
    let _serial = serial();
    let (tx, reports) = mpsc::channel();
    let server = Server::on(kind, move || {
        move |_| Some(Aborter { report: AbortReport::default(), in_callback: false, out: tx.clone() })
    });
    let mut client = connect_small_window(&server.addr);
    client.write_all(b"go").unwrap();
    let report = recv(&reports, "connection_lost");
    // Whatever data the kernel already holds may come first; then the reset.
    let read = expect_aborted(&mut client, "the aborted peer");
    assert!(
        report.buffered_at_abort >= 4 << 20,
        "most of 10 MiB was still queued: {}",
        report.buffered_at_abort
    );
    assert_eq!(report.lost, [DisconnectReason::Aborted], "connection_lost(Aborted) exactly once");
    assert!(!report.nested, "connection_lost ran inside data_received");
    assert!(!report.write_after_abort && report.buffer_after == 0, "the write after abort was not ignored");
    let freed = report.heap_after_abort as i64 - report.heap_before_writes as i64;
    assert!(freed.abs() <= 4096, "heap after abort is {freed:+} B from before the 10 MiB was queued");
    assert!(reports.recv_timeout(Duration::from_millis(50)).is_err(), "a second report");
    eprintln!(
        "abort_semantics ({kind}): {} B queued, peer read {read} B then the abort; lost [Aborted] once, not \
         nested; heap {freed:+} B from before the writes",
        report.buffered_at_abort
    );
    server.stop();
}
over_kinds!(abort_semantics_reset_lost_once_not_nested_later_calls_no_ops_buffer_freed);
