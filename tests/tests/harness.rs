//! The in-memory harness runs real protocols on the real transport state machine: lifecycle,
//! backpressure, half-close, reset and timers, with no sockets and no sleeping.

use std::time::Duration;

use torsion_protocols::Echo;
use torsion_reactor::testing::{assert_chunking_invariant, chunkings, Call, Harness};
use torsion_reactor::{Ctx, DisconnectReason, Protocol, TimerId};
use torsion_tests::pattern;

fn echo(_: torsion_reactor::Address) -> Option<Box<dyn Protocol>> {
    Some(Box::new(Echo))
}

#[test]
fn echo_lifecycle_over_memory() {
    let mut h = Harness::new();
    let id = h.accept(&mut echo).unwrap();
    h.feed(id, b"abc");
    h.feed(id, b"def");
    assert_eq!(h.take_written(id), b"abcdef");
    h.feed(id, b"last");
    h.feed_eof(id);
    assert_eq!(h.take_written(id), b"last", "bytes that came with the FIN are echoed");
    assert!(h.fin_sent(id));
    assert!(!h.rst_sent(id));
    assert_eq!(
        h.calls(id),
        vec![
            Call::Made,
            Call::Data(3),
            Call::Data(3),
            Call::Data(4),
            Call::Eof,
            Call::Lost(DisconnectReason::Clean)
        ]
    );
    assert_eq!(h.reactor().connection_count(), 0);
}

#[test]
fn slow_peer_pauses_and_resumes_the_echo_exactly_once_per_crossing() {
    let mut h = Harness::new();
    let id = h.accept(&mut echo).unwrap();
    h.set_peer_window(id, Some(0));
    let data = pattern(3, 200 * 1024);
    // 100 KiB in: the echo buffers it all (above the 64 KiB high mark) and pauses reading.
    h.feed(id, &data[..100 * 1024]);
    let paused: Vec<Call> = h.calls(id).into_iter().filter(|c| *c == Call::PauseProducing).collect();
    assert_eq!(paused.len(), 1, "one pause for one crossing: {:?}", h.calls(id));
    // More input stays in the "kernel": no data_received while paused.
    let before = h.calls(id).len();
    h.feed(id, &data[100 * 1024..]);
    assert_eq!(h.calls(id).len(), before, "reading is paused");
    // The peer reads: the buffer drains below 16 KiB, reading resumes, the rest is echoed.
    h.set_peer_window(id, None);
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(h.take_written(id));
        if got.len() == data.len() {
            break;
        }
    }
    assert!(got == data, "all bytes, in order");
    let flow: Vec<Call> = h
        .calls(id)
        .into_iter()
        .filter(|c| matches!(c, Call::PauseProducing | Call::ResumeProducing))
        .collect();
    assert!(flow.len() >= 2 && flow.len().is_multiple_of(2), "{flow:?}");
    for pair in flow.chunks(2) {
        assert_eq!(pair, [Call::PauseProducing, Call::ResumeProducing], "strictly alternating: {flow:?}");
    }
}

#[test]
fn peer_reset_is_lost_with_the_error() {
    let mut h = Harness::new();
    let id = h.accept(&mut echo).unwrap();
    h.reset_peer(id);
    let reason = h.disconnect_reason(id).expect("connection_lost");
    assert_eq!(reason, DisconnectReason::lost(std::io::ErrorKind::ConnectionReset));
}

/// Closes after 30 s of silence, re-armed by every byte.
struct Idle {
    timer: Option<TimerId>,
}

impl Protocol for Idle {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.timer = Some(cx.set_timer(Duration::from_secs(30)));
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        if let Some(t) = self.timer {
            cx.reset_timer(t, Duration::from_secs(30));
        }
    }
    fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
        cx.transport().write(b"bye\r\n");
        cx.transport().lose_connection();
    }
}

#[test]
fn timers_run_on_the_manual_clock_exact_to_the_tick() {
    let mut h = Harness::new();
    let id = h.accept(&mut |_| Some(Box::new(Idle { timer: None }) as Box<dyn Protocol>)).unwrap();
    h.advance(Duration::from_secs(29));
    h.feed(id, b"x");
    h.advance(Duration::from_secs(29));
    assert!(h.is_open(id), "data re-armed the timer");
    h.advance(Duration::from_secs(1) - Duration::from_nanos(1));
    assert!(h.is_open(id));
    h.advance(Duration::from_nanos(1));
    assert_eq!(h.take_written(id), b"bye\r\n");
    assert!(h.fin_sent(id));
    // Lingering: the protocol is done once the peer closes too.
    h.feed_eof(id);
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
}

#[test]
fn chunkings_cover_every_size_and_random_splits() {
    let input = pattern(9, 100);
    let splits = chunkings(&input, 16, 8);
    assert_eq!(splits.len(), 24);
    for split in &splits {
        assert_eq!(split.concat(), input);
    }
    assert!(splits[0].iter().all(|p| p.len() == 1));
    // Echo over memory is chunking-invariant.
    assert_chunking_invariant(&input, 16, 8, |pieces| {
        let mut h = Harness::new();
        let id = h.accept(&mut echo).unwrap();
        for p in pieces {
            h.feed(id, p);
        }
        h.take_written(id)
    });
}

/// Closes with a distinct reason when a line is too long.
struct Strict;

impl Protocol for Strict {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if data.len() > 4 {
            cx.transport().write(b"too long\r\n");
            cx.transport()
                .lose_connection_with(torsion_reactor::DisconnectReason::LimitExceeded("line".into()));
            cx.transport()
                .lose_connection_with(torsion_reactor::DisconnectReason::ProtocolError("ignored".into()));
        }
    }
}

#[test]
fn lose_connection_with_reports_the_given_reason_after_a_clean_close() {
    let mut h = Harness::new();
    let id = h.accept(&mut |_| Some(Box::new(Strict) as Box<dyn Protocol>)).unwrap();
    h.feed(id, b"12345");
    assert_eq!(h.take_written(id), b"too long\r\n", "flushed before closing");
    assert!(h.fin_sent(id) && !h.rst_sent(id), "a clean close, not a reset");
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::LimitExceeded("line".into())));
}
