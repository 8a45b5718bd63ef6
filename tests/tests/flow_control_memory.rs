//! The producer/consumer contract on the in-memory harness (the real transport state machine,
//! a simulated peer, a manual clock): exact, deterministic checks of every rule, including
//! the edge cases that are hard to provoke over real sockets.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::testing::{Call, Harness};
use torsion_reactor::{ConnId, Ctx, Error, Producer, Protocol, TimerId};
use torsion_tests::pattern;

const HIGH: usize = 64 * 1024;
const LOW: usize = 16 * 1024;

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Log::default()
}

fn entries(log: &Log, name: &str) -> usize {
    log.borrow().iter().filter(|e| e.as_str() == name).count()
}

/// A producer object that records its calls and, on each `resume_producing`, writes
/// `per_resume` bytes (when it still has some) to its consumer, checking the buffer.
struct Recording {
    log: Log,
    per_resume: usize,
    left: usize,
    /// Unregister once everything is written (what a pull producer does when done).
    unregister_when_done: bool,
}

impl Recording {
    fn new(log: &Log, per_resume: usize, total: usize) -> Recording {
        Recording { log: log.clone(), per_resume, left: total, unregister_when_done: false }
    }
}

impl Producer for Recording {
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.log.borrow_mut().push("resume".into());
        if self.left > 0 {
            let n = self.per_resume.min(self.left);
            self.left -= n;
            cx.transport().write(&vec![b'p'; n]);
            let len = cx.transport().write_buffer_len();
            self.log.borrow_mut().push(format!("buffer {len}"));
        }
        if self.left == 0 && self.unregister_when_done {
            self.log.borrow_mut().push("unregister".into());
            cx.transport().unregister_producer();
        }
    }
    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.log.borrow_mut().push("pause".into());
    }
    fn stop_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.log.borrow_mut().push("stop".into());
    }
}

type OnData = Box<dyn FnMut(&mut Ctx<'_>, &[u8])>;

/// A protocol that runs `on_made` in `connection_made` and `on_data` in `data_received`.
struct Scripted {
    on_made: Box<dyn FnMut(&mut Ctx<'_>)>,
    on_data: OnData,
}

impl Protocol for Scripted {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        (self.on_made)(cx);
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        (self.on_data)(cx, data);
    }
}

fn accept(h: &mut Harness, protocol: Scripted) -> ConnId {
    let mut slot = Some(protocol);
    h.accept(&mut move |_| slot.take().map(|p| Box::new(p) as Box<dyn Protocol>)).unwrap()
}

fn on_made(f: impl FnMut(&mut Ctx<'_>) + 'static) -> Scripted {
    Scripted { on_made: Box::new(f), on_data: Box::new(|_, _| {}) }
}

/// Runs `f` when the peer sends anything, so the test can narrow the peer's window first.
fn on_data(mut f: impl FnMut(&mut Ctx<'_>) + 'static) -> Scripted {
    Scripted { on_made: Box::new(|_| {}), on_data: Box::new(move |cx, _| f(cx)) }
}

/// Accepts a connection whose protocol runs `f` on the peer's first bytes, sent while the
/// peer reads nothing (window 0): whatever `f` writes stays in the write buffer.
fn start_stalled(h: &mut Harness, f: impl FnMut(&mut Ctx<'_>) + 'static) -> ConnId {
    let id = accept(h, on_data(f));
    h.set_peer_window(id, Some(0));
    h.feed(id, b"go");
    id
}

/// Takes everything the peer can read until the connection has nothing more to send.
fn drain(h: &mut Harness, id: ConnId) -> Vec<u8> {
    let mut got = Vec::new();
    for _ in 0..100_000 {
        let piece = h.take_written(id);
        if piece.is_empty() {
            break;
        }
        got.extend(piece);
    }
    got
}

/// The fast writer of `flow_control.rs`, in memory: writes 16 KiB pieces while `write` says
/// the buffer is at or below the high mark; pauses and resumes when told.
struct Blaster {
    data: Rc<Vec<u8>>,
    sent: usize,
    paused: bool,
    max_buffer: Rc<RefCell<usize>>,
}

impl Blaster {
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        while !self.paused && self.sent < self.data.len() {
            let end = (self.sent + 16 * 1024).min(self.data.len());
            let above = cx.transport().write(&self.data[self.sent..end]);
            self.sent = end;
            let len = cx.transport().write_buffer_len();
            let mut max = self.max_buffer.borrow_mut();
            *max = (*max).max(len);
            if above {
                break;
            }
        }
    }
}

impl Protocol for Blaster {
    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        self.pump(cx);
    }
    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.paused = true;
    }
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.paused = false;
        self.pump(cx);
    }
}

#[test]
fn slow_reader_fast_writer_in_memory_stays_bounded_and_alternates() {
    let data = Rc::new(pattern(5, 4 << 20));
    let max = Rc::new(RefCell::new(0));
    let mut h = Harness::new();
    let (d, m) = (data.clone(), max.clone());
    let mut factory = move |_| {
        Some(Box::new(Blaster { data: d.clone(), sent: 0, paused: false, max_buffer: m.clone() })
            as Box<dyn Protocol>)
    };
    // The peer reads 4 KiB each time the test takes what was written; the writer starts when
    // the peer first sends something, so that the window is narrow from the start.
    let id = h.accept(&mut factory).unwrap();
    h.set_peer_window(id, Some(4096));
    h.feed(id, b"go");
    let got = drain(&mut h, id);
    assert_eq!(got.len(), data.len());
    assert!(got == *data, "all bytes in order");
    assert!(*max.borrow() <= HIGH + 16 * 1024, "buffer peaked at {}", max.borrow());
    let flow: Vec<Call> = h
        .calls(id)
        .into_iter()
        .filter(|c| matches!(c, Call::PauseProducing | Call::ResumeProducing))
        .collect();
    // Each pause/resume cycle lets at most high + one 16 KiB piece of new data through.
    let cycles = data.len() / (HIGH + 16 * 1024);
    assert!(flow.len() >= 2 * cycles, "{} calls, expected at least {cycles} cycles", flow.len());
    for pair in flow.chunks(2) {
        assert_eq!(pair, [Call::PauseProducing, Call::ResumeProducing], "strict alternation");
    }
}

#[test]
fn a_second_registration_is_an_error_and_the_first_stays() {
    let log = log();
    let results = Rc::new(RefCell::new(Vec::new()));
    let mut h = Harness::new();
    let (l, r) = (log.clone(), results.clone());
    let id = accept(
        &mut h,
        on_made(move |cx| {
            let first = cx.transport().register_producer(Recording::new(&l, 0, 0), true);
            let second = cx.transport().register_producer(Recording::new(&l, 0, 0), true);
            r.borrow_mut().push(first.map_err(|e| e.to_string()));
            r.borrow_mut().push(second.map_err(|e| e.to_string()));
            assert!(matches!(
                cx.transport().register_producer(Recording::new(&l, 0, 0), false),
                Err(Error::ProducerAlreadyRegistered)
            ));
        }),
    );
    let results = results.borrow();
    assert_eq!(results[0], Ok(()));
    assert!(results[1].is_err(), "{results:?}");
    // The rejected producers were dropped unused; the first is still registered.
    h.reset_peer(id);
    assert_eq!(entries(&log, "stop"), 1, "only the registered producer is stopped: {:?}", log.borrow());
}

#[test]
fn a_push_producer_that_writes_in_resume_producing_is_paused_again_and_stays_bounded() {
    let log = log();
    let mut h = Harness::new();
    let l = log.clone();
    let id = start_stalled(&mut h, move |cx| {
        // 100 KiB now takes the buffer over the high mark (the peer takes nothing yet);
        // every resume adds 80 KiB more.
        cx.transport().write(&[b'x'; 100 * 1024]);
        cx.transport().register_producer(Recording::new(&l, 80 * 1024, 400 * 1024), true).unwrap();
    });
    h.set_peer_window(id, Some(8 * 1024));
    let got = drain(&mut h, id);
    assert_eq!(got.len(), 500 * 1024, "everything written arrives");
    let flow: Vec<String> =
        log.borrow().iter().filter(|e| *e == "pause" || *e == "resume").cloned().collect();
    for (i, call) in flow.iter().enumerate() {
        assert_eq!(call, if i % 2 == 0 { "pause" } else { "resume" }, "{flow:?}");
    }
    // Each resume writes 80 KiB onto at most 16 KiB: paused again each time, 5 resumes.
    assert_eq!(entries(&log, "resume"), 6, "{:?}", log.borrow());
    assert_eq!(entries(&log, "pause"), 6, "{:?}", log.borrow());
    for entry in log.borrow().iter() {
        if let Some(len) = entry.strip_prefix("buffer ") {
            let len: usize = len.parse().unwrap();
            assert!(len <= LOW + 80 * 1024, "a resume came before the buffer drained to low: {len}");
        }
    }
}

#[test]
fn a_pull_producer_is_resumed_after_each_drain_and_never_paused() {
    let log = log();
    let mut h = Harness::new();
    let l = log.clone();
    let id = start_stalled(&mut h, move |cx| {
        // Chunks larger than the high mark: a push producer would be paused; a pull one not.
        let mut producer = Recording::new(&l, 100 * 1024, 1024 * 1024);
        producer.unregister_when_done = true;
        cx.transport().register_producer(producer, false).unwrap();
    });
    assert_eq!(entries(&log, "resume"), 1, "resumed right after registering, then not until a drain");
    h.set_peer_window(id, Some(32 * 1024));
    let got = drain(&mut h, id);
    assert_eq!(got.len(), 1024 * 1024);
    assert_eq!(entries(&log, "pause"), 0, "a pull producer is never paused: {:?}", log.borrow());
    // One resume per chunk (11 chunks of 100 KiB, the last 24 KiB) and none after unregistering.
    assert_eq!(entries(&log, "resume"), 11, "{:?}", log.borrow());
    assert_eq!(entries(&log, "unregister"), 1);
    assert!(h.is_open(id), "a finished producer does not close the connection");
}

#[test]
fn lose_connection_waits_for_a_pull_producer_to_unregister() {
    let log = log();
    let mut h = Harness::new();
    let l = log.clone();
    let id = start_stalled(&mut h, move |cx| {
        let mut producer = Recording::new(&l, 16 * 1024, 256 * 1024);
        producer.unregister_when_done = true;
        cx.transport().register_producer(producer, false).unwrap();
        cx.transport().lose_connection();
    });
    assert!(!h.fin_sent(id));
    h.set_peer_window(id, Some(16 * 1024));
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let piece = h.take_written(id);
        if piece.is_empty() {
            break;
        }
        got.extend(piece);
        if entries(&log, "unregister") == 0 {
            assert!(!h.fin_sent(id), "FIN went out before the pull producer finished ({} bytes)", got.len());
        }
    }
    assert_eq!(got.len(), 256 * 1024, "the whole transfer, then FIN: {:?} {:?}", log.borrow(), h.calls(id));
    assert!(h.fin_sent(id));
    assert_eq!(entries(&log, "stop"), 0, "a producer that unregistered is not stopped");
    assert_eq!(h.disconnect_reason(id).as_deref(), Some("Clean"));
}

#[test]
fn lose_connection_with_a_push_producer_stops_it_once_after_the_drain_then_fin() {
    let log = log();
    let mut h = Harness::new();
    let l = log.clone();
    let id = start_stalled(&mut h, move |cx| {
        cx.transport().write(&[b'x'; 200 * 1024]);
        cx.transport().register_producer(Recording::new(&l, 0, 0), true).unwrap();
        cx.transport().lose_connection();
    });
    assert!(!h.fin_sent(id));
    assert_eq!(entries(&log, "stop"), 0, "not before the buffer has drained");
    h.set_peer_window(id, Some(32 * 1024));
    let got = drain(&mut h, id);
    assert_eq!(got.len(), 200 * 1024, "everything before the close is sent");
    assert_eq!(entries(&log, "stop"), 1, "{:?}", log.borrow());
    assert!(h.fin_sent(id));
    assert_eq!(h.disconnect_reason(id).as_deref(), Some("Clean"));
}

#[test]
fn stop_producing_is_called_exactly_once_when_the_connection_is_lost() {
    let log = log();
    let mut h = Harness::new();
    let l = log.clone();
    let id = accept(
        &mut h,
        on_made(move |cx| {
            cx.transport().register_producer(Recording::new(&l, 0, 0), true).unwrap();
        }),
    );
    h.reset_peer(id);
    h.advance(Duration::from_secs(10));
    assert_eq!(entries(&log, "stop"), 1, "{:?}", log.borrow());
    assert!(h.disconnect_reason(id).is_some_and(|r| r.starts_with("Lost")), "{:?}", h.disconnect_reason(id));
}

#[test]
fn registering_on_a_closed_transport_stops_the_producer_at_once() {
    let log = log();
    let result = Rc::new(RefCell::new(None));
    let mut h = Harness::new();
    let (l, r) = (log.clone(), result.clone());
    let id = accept(
        &mut h,
        Scripted {
            on_made: Box::new(|_| {}),
            on_data: Box::new(move |cx, _| {
                cx.transport().abort_connection();
                let registered = cx.transport().register_producer(Recording::new(&l, 0, 0), true);
                *r.borrow_mut() = Some(registered.is_ok());
                assert_eq!(entries(&l, "stop"), 0, "stop_producing is never called re-entrantly");
            }),
        },
    );
    h.feed(id, b"go");
    assert_eq!(*result.borrow(), Some(true));
    assert_eq!(entries(&log, "stop"), 1, "{:?}", log.borrow());
    assert_eq!(entries(&log, "resume"), 0);
}

/// The connection's own protocol is its default push producer: the default
/// `resume_producing` resumes reading, except once the connection is closing.
struct EchoClosingOnTimer {
    timer: Option<TimerId>,
}

impl Protocol for EchoClosingOnTimer {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.timer = Some(cx.call_later(Duration::from_secs(1)));
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
    fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
        cx.transport().lose_connection();
    }
}

#[test]
fn resume_producing_after_lose_connection_does_not_restart_reading() {
    let mut h = Harness::new();
    let id =
        h.accept(&mut |_| Some(Box::new(EchoClosingOnTimer { timer: None }) as Box<dyn Protocol>)).unwrap();
    h.set_peer_window(id, Some(0));
    h.feed(id, &[b'a'; 100 * 1024]);
    assert!(h.calls(id).contains(&Call::PauseProducing), "the echo is paused above high");
    let data_calls = |h: &Harness| h.calls(id).iter().filter(|c| matches!(c, Call::Data(_))).count();
    let before = data_calls(&h);
    // More input waits in the "kernel"; then the protocol closes while paused.
    h.feed(id, &[b'b'; 10 * 1024]);
    h.advance(Duration::from_secs(1));
    // The peer drains our buffer: the buffer goes below low, which would resume reading.
    h.set_peer_window(id, None);
    let got = drain(&mut h, id);
    assert_eq!(got.len(), 100 * 1024, "what was echoed before the close is delivered");
    assert_eq!(data_calls(&h), before, "no input is delivered after lose_connection");
    assert!(h.fin_sent(id));
    assert_eq!(h.disconnect_reason(id).as_deref(), Some("Clean"));
}

/// Pauses reading in `connection_made` and resumes it when its timer fires.
struct PausedAtStart;

impl Protocol for PausedAtStart {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().pause_reading();
        cx.transport().pause_reading();
        cx.call_later(Duration::from_secs(1));
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        false
    }
    fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
        cx.transport().resume_reading();
        cx.transport().resume_reading();
    }
}

#[test]
fn pause_reading_in_connection_made_holds_data_and_fin_until_resumed() {
    let mut h = Harness::new();
    let id = h.accept(&mut |_| Some(Box::new(PausedAtStart) as Box<dyn Protocol>)).unwrap();
    h.feed(id, b"hello ");
    h.feed(id, b"world");
    h.feed_eof(id);
    assert_eq!(h.calls(id), vec![Call::Made], "nothing delivered while paused, not even the EOF");
    h.advance(Duration::from_secs(1));
    let calls = h.calls(id);
    let data: usize = calls.iter().filter_map(|c| if let Call::Data(n) = c { Some(*n) } else { None }).sum();
    assert_eq!(data, 11, "{calls:?}");
    let eof = calls.iter().position(|c| *c == Call::Eof).expect("the EOF after the data");
    assert!(calls[..eof].iter().all(|c| !matches!(c, Call::Lost(_))));
    assert!(calls[eof + 1..].iter().all(|c| !matches!(c, Call::Data(_))), "{calls:?}");
    assert_eq!(h.disconnect_reason(id).as_deref(), Some("Clean"));
}

#[test]
fn write_buffer_limits_reject_low_above_high_and_apply_to_every_write_path() {
    let log = log();
    let mut h = Harness::new();
    let l = log.clone();
    let id = accept(
        &mut h,
        on_made(move |cx| {
            let bad = cx.transport().set_write_buffer_limits(10, 20);
            l.borrow_mut().push(format!("bad {}", bad.is_err()));
            cx.transport().set_write_buffer_limits(1000, 100).unwrap();
            let a = cx.transport().write(&[0; 600]);
            let b = cx.transport().write_bytes(bytes::Bytes::from_static(&[0; 300]));
            let c = cx.transport().write_sequence([&[0u8; 50][..], &[0u8; 51][..]]);
            l.borrow_mut().push(format!("{a} {b} {c}"));
        }),
    );
    assert_eq!(*log.borrow(), ["bad true", "false false true"], "600, 900 at or below; 1001 above");
    assert!(h.calls(id).contains(&Call::PauseProducing));
}

#[test]
fn writes_to_another_connection_run_the_same_watermark_check() {
    let target = Rc::new(RefCell::new(None::<ConnId>));
    let mut h = Harness::new();
    let quiet = h.accept(&mut |_| Some(Box::new(PausedAtStart) as Box<dyn Protocol>)).unwrap();
    h.set_peer_window(quiet, Some(0));
    *target.borrow_mut() = Some(quiet);
    let t = target.clone();
    let writer = accept(
        &mut h,
        Scripted {
            on_made: Box::new(|_| {}),
            on_data: Box::new(move |cx, data| {
                let id = t.borrow().unwrap();
                cx.transport_for(id).unwrap().write(data);
            }),
        },
    );
    h.feed(writer, &[0; 70 * 1024]);
    assert!(h.calls(quiet).contains(&Call::PauseProducing), "{:?}", h.calls(quiet));
}

#[test]
fn a_hard_cap_aborts_the_connection_with_buffer_overflow() {
    let mut h = Harness::new();
    let id = accept(
        &mut h,
        Scripted {
            on_made: Box::new(|cx| cx.transport().set_max_write_buffer(Some(128 * 1024))),
            on_data: Box::new(|cx, data| {
                cx.transport().write(data);
            }),
        },
    );
    h.set_peer_window(id, Some(0));
    // Reading is paused at 64 KiB of buffer; write more than the cap in one callback.
    h.feed(id, &[1; 200 * 1024]);
    assert_eq!(h.disconnect_reason(id).as_deref(), Some("BufferOverflow"));
    assert!(h.rst_sent(id), "an overflow aborts (RST)");
}

#[test]
fn is_closing_reports_a_requested_close_and_a_boxed_protocol_is_a_protocol() {
    let seen = log();
    let mut h = Harness::new();
    let s = seen.clone();
    let scripted = Scripted {
        on_made: Box::new(|_| {}),
        on_data: Box::new(move |cx, _| {
            let before = cx.transport().is_closing();
            cx.transport().lose_connection();
            s.borrow_mut().push(format!("{before} {}", cx.transport().is_closing()));
        }),
    };
    // Box<Scripted> is itself a Protocol; boxing it again gives the factory's Box<dyn Protocol>.
    let boxed: Box<Scripted> = Box::new(scripted);
    let mut slot = Some(boxed);
    let id = h.accept(&mut move |_| slot.take().map(|p| Box::new(p) as Box<dyn Protocol>)).unwrap();
    h.feed(id, b"x");
    assert_eq!(*seen.borrow(), ["false true"]);
    assert_eq!(h.disconnect_reason(id).as_deref(), Some("Clean"));
}
