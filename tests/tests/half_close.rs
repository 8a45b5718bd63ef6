//! Half-close, over TCP and Unix stream sockets: the peer's FIN with data in flight (every byte
//! echoed, then EOF), our own half-close (`write_eof`) while the peer keeps sending, both orders
//! ending in exactly one `connection_lost`, and a half-closed peer that stops reading (no spin,
//! a write timeout ends it). Catalogue tests 8, 9 and 10.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::rc::Rc;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use torsion_protocols::Echo;
use torsion_reactor::{Ctx, DisconnectReason, Protocol, Reactor, TimerId};
use torsion_tests::{
    connect, connect_small_window, cpu_share, listen, over_kinds, pattern, recv, run_until, serial,
    write_and_read_to_end, Kind, Server,
};

/// Sends a greeting and half-closes at once; keeps reading; logs callbacks.
struct WriteEofFirst {
    log: Rc<RefCell<Vec<Seen>>>,
    keep_open: bool,
}

/// A callback [`WriteEofFirst`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Data(Vec<u8>),
    Eof,
    Lost(DisconnectReason),
}

impl Protocol for WriteEofFirst {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write(b"bye");
        cx.transport().write_eof();
        cx.transport().write_eof();
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
        self.log.borrow_mut().push(Seen::Data(data.to_vec()));
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.log.borrow_mut().push(Seen::Eof);
        self.keep_open
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.log.borrow_mut().push(Seen::Lost(reason));
    }
}

/// Regression: our FIN first, the peer's second must still end the connection (it once hung),
/// whatever `eof_received` answers.
fn write_eof_then_peer_fin_delivers_connection_lost_once(kind: Kind) {
    for keep_open in [false, true] {
        let mut reactor = Reactor::new().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let listener = listen(&mut reactor, kind, move |_| Some(WriteEofFirst { log: l.clone(), keep_open }));
        let mut peer = connect(kind, &listener.addr);
        // Our side's FIN arrives after "bye"; the read side stays open for us.
        let reader = std::thread::spawn({
            let mut peer = peer.try_clone().unwrap();
            move || {
                let mut got = Vec::new();
                peer.read_to_end(&mut got).map(|_| got)
            }
        });
        run_until(&mut reactor, "greeting read to EOF", |_| reader.is_finished());
        assert_eq!(reader.join().unwrap().unwrap(), b"bye");
        peer.write_all(b"still reading").unwrap();
        peer.shutdown_write().unwrap();
        run_until(&mut reactor, "connection lost", |r| r.connection_count() == 0);
        let log = log.borrow();
        assert_eq!(log.last(), Some(&Seen::Lost(DisconnectReason::Clean)), "keep_open={keep_open}: {log:?}");
        assert_eq!(log.iter().filter(|e| matches!(e, Seen::Lost(_))).count(), 1);
        assert!(log.contains(&Seen::Eof), "{log:?}");
        let data: Vec<u8> = log
            .iter()
            .filter_map(|e| match e {
                Seen::Data(d) => Some(d.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(data, b"still reading");
    }
}
over_kinds!(write_eof_then_peer_fin_delivers_connection_lost_once);

/// Keeps writing after the peer's FIN (from a timer), then closes.
struct KeepWriting {
    lost: Rc<RefCell<Vec<DisconnectReason>>>,
}

impl Protocol for KeepWriting {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        cx.set_timer(Duration::from_millis(1));
        true
    }

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
        cx.transport().write(b"after your FIN");
        cx.transport().lose_connection();
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.lost.borrow_mut().push(reason);
    }
}

/// `eof_received` answering `true` keeps the write side open: a later write reaches the
/// half-closed peer, then our FIN.
fn eof_received_true_keeps_the_write_side_open(kind: Kind) {
    let mut reactor = Reactor::new().unwrap();
    let lost = Rc::new(RefCell::new(Vec::new()));
    let l = lost.clone();
    let listener = listen(&mut reactor, kind, move |_| Some(KeepWriting { lost: l.clone() }));
    let mut peer = connect(kind, &listener.addr);
    peer.shutdown_write().unwrap();
    run_until(&mut reactor, "connection lost", |_| !lost.borrow().is_empty());
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"after your FIN");
    assert_eq!(*lost.borrow(), [DisconnectReason::Clean]);
}
over_kinds!(eof_received_true_keeps_the_write_side_open);

// ---------------------------------------------------------------------------------------------
// Catalogue 8: peer_half_close_echo

/// Keeps writing after the peer's FIN: replies `after-eof` and then closes.
struct HalfCloser;

impl Protocol for HalfCloser {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        cx.transport().write(b"after-eof");
        cx.transport().lose_connection();
        true
    }
}

/// Catalogue 8 (peer_half_close_echo): an echo server with a plain protocol; the client sends
/// N ∈ {1, 10, 64 KiB, 4 MiB} bytes, half-closes and reads to EOF, 20 runs each: exactly N
/// bytes back, then EOF, every time (Twisted measured 0 of 10 bytes). A half-close protocol
/// hears the FIN and can still write.
fn peer_half_close_echo_returns_every_byte_then_eof_80_of_80(kind: Kind) {
    let server = Server::on(kind, || |_| Some(Echo));
    let mut runs = 0;
    for size in [1usize, 10, 64 * 1024, 4 << 20] {
        for run in 0..20u64 {
            let data = pattern(size as u64 * 31 + run, size);
            let got = write_and_read_to_end(server.connect(), data.clone(), true)
                .unwrap_or_else(|e| panic!("size {size} run {run}: {e}"));
            assert_eq!(got.len(), size, "size {size} run {run}: {} bytes lost", size - got.len().min(size));
            assert!(got == data, "size {size} run {run}: bytes differ");
            runs += 1;
        }
    }
    server.stop();

    // A half-close protocol hears the FIN and can still write.
    let server = Server::on(kind, || |_| Some(HalfCloser));
    let got = write_and_read_to_end(server.connect(), b"ping".to_vec(), true).expect("half-close echo");
    assert_eq!(got, b"pingafter-eof");
    server.stop();
    eprintln!(
        "peer_half_close_echo ({kind}): {runs}/{runs} runs byte-exact (sizes 1, 10, 64 KiB, 4 MiB), 0 bytes lost"
    );
}
over_kinds!(peer_half_close_echo_returns_every_byte_then_eof_80_of_80);

// ---------------------------------------------------------------------------------------------
// Catalogue 9: local_half_close

/// What [`SaysBye`] reports: `eof_received` or `connection_lost`, with the bytes it had
/// received by then, and when.
#[derive(Debug, PartialEq, Eq)]
enum ByeEvent {
    Eof(usize),
    Lost(DisconnectReason, usize),
}

/// Says "bye" and half-closes at once; counts what it still receives.
struct SaysBye {
    events: Sender<(ByeEvent, Instant)>,
    received: usize,
}

impl Protocol for SaysBye {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write(b"bye");
        cx.transport().write_eof();
        cx.transport().write_eof(); // a double half-close is a no-op
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
        self.received += data.len();
    }
    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        let _ = self.events.send((ByeEvent::Eof(self.received), Instant::now()));
        true
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.events.send((ByeEvent::Lost(reason, self.received), Instant::now()));
    }
}

/// Catalogue 9 (local_half_close): the server writes "bye" and `write_eof`; the client sees
/// "bye" then EOF and keeps sending for 1 s; the server gets all of it, then `connection_lost`
/// once, within 1 s of the client's FIN.
fn local_half_close_sends_bye_then_eof_and_keeps_reading_until_the_peer_closes(kind: Kind) {
    let (tx, events) = mpsc::channel();
    let server = Server::on(kind, move || move |_| Some(SaysBye { events: tx.clone(), received: 0 }));
    let mut client = server.connect();
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("bye, then EOF");
    assert_eq!(got, b"bye");
    // Keep sending for 1 s after our read side ended (pacing the sends, not synchronising).
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(1) {
        match client.write(&[7u8; 100]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the server stopped taking data after its half-close: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    client.shutdown_write().unwrap();
    let fin_at = Instant::now();
    let (eof, _) = recv(&events, "eof_received");
    assert_eq!(eof, ByeEvent::Eof(sent), "every byte sent after the half-close arrived");
    let (lost, lost_at) = recv(&events, "connection_lost");
    assert_eq!(lost, ByeEvent::Lost(DisconnectReason::Clean, sent));
    let took = lost_at.duration_since(fin_at);
    assert!(took < Duration::from_secs(1), "the double half-close took {took:?} to end");
    assert!(events.recv_timeout(Duration::from_millis(100)).is_err(), "connection_lost more than once");
    eprintln!(
        "local_half_close ({kind}): {sent} B received after our FIN; both halves closed -> lost after {took:?}"
    );
    server.stop();
}
over_kinds!(local_half_close_sends_bye_then_eof_and_keeps_reading_until_the_peer_closes);

// ---------------------------------------------------------------------------------------------
// Catalogue 10: half_closed_peer_no_spin

/// The write timeout of this test: abort when the buffer has made no progress for this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What [`StalledWriter`] reports.
#[derive(Debug)]
enum Stall {
    Eof(Instant),
    MaxBuffer(usize),
    Progress(Instant),
    Lost(DisconnectReason, Instant),
}

/// Streams 8 MiB as a push producer in 16 KiB chunks, keeps writing after the peer's FIN
/// (a half-close protocol), and aborts when a write makes no progress for [`WRITE_TIMEOUT`]
/// (Netty's WriteTimeoutHandler): the timer is re-armed whenever the buffer drains.
struct StalledWriter {
    left: usize,
    paused: bool,
    max_buffer: usize,
    timer: Option<TimerId>,
    events: Sender<Stall>,
}

impl StalledWriter {
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        let chunk = [0x42u8; 16 * 1024];
        while !self.paused && self.left > 0 {
            let n = self.left.min(chunk.len());
            self.left -= n;
            let above = cx.transport().write(&chunk[..n]);
            self.max_buffer = self.max_buffer.max(cx.transport().write_buffer_len());
            if above {
                break;
            }
        }
        if let Some(timer) = self.timer.take() {
            cx.cancel_timer(timer);
        }
        self.timer = Some(cx.set_timer(WRITE_TIMEOUT));
        let _ = self.events.send(Stall::Progress(Instant::now()));
    }
}

impl Protocol for StalledWriter {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.pump(cx);
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        let _ = self.events.send(Stall::Eof(Instant::now()));
        true
    }
    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.paused = true;
    }
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.paused = false;
        self.pump(cx);
    }
    fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
        self.timer = None;
        let _ = self.events.send(Stall::MaxBuffer(self.max_buffer));
        cx.transport().abort_connection_with(DisconnectReason::TimedOut);
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.events.send(Stall::Lost(reason, Instant::now()));
    }
}

/// Catalogue 10 (half_closed_peer_no_spin): the peer half-closes and stops reading while 8 MiB
/// is queued for it; the server thread uses < 5% of a core over 3 s, its user buffer stays
/// ≤ 64 KiB + one chunk, and a 2 s write timeout aborts the connection (`TimedOut`).
fn half_closed_peer_that_stops_reading_costs_no_cpu_and_is_aborted_by_the_write_timeout(kind: Kind) {
    let _serial = serial();
    let (tx, events) = mpsc::channel();
    let server = Server::on(kind, move || {
        move |_| {
            Some(StalledWriter {
                left: 8 << 20,
                paused: false,
                max_buffer: 0,
                timer: None,
                events: tx.clone(),
            })
        }
    });
    let client = connect_small_window(&server.addr);
    client.shutdown_write().unwrap();
    // The client never reads. The window: 3 s from its FIN, within which the timeout fires.
    let (used, share) = cpu_share(server.tid, Duration::from_secs(3));
    let mut eof = None;
    let mut last_progress = None;
    let mut max_buffer = None;
    let (reason, lost_at) = loop {
        match recv(&events, "the write timeout") {
            Stall::Eof(at) => eof = Some(at),
            Stall::Progress(at) => last_progress = Some(at),
            Stall::MaxBuffer(max) => max_buffer = Some(max),
            Stall::Lost(reason, at) => break (reason, at),
        }
    };
    assert!(eof.is_some(), "the server saw the FIN");
    let stalled = lost_at.duration_since(last_progress.expect("some progress"));
    let max_buffer = max_buffer.expect("the timer fired");
    assert!(share < 0.05, "the server thread used {used:?} of 3 s ({:.1}%)", share * 100.0);
    // DESIGN.md's high watermark (64 KiB), plus the one 16 KiB chunk that crossed it.
    assert!(max_buffer <= 64 * 1024 + 16 * 1024, "user buffer reached {max_buffer} B");
    assert_eq!(reason, DisconnectReason::TimedOut);
    assert!(
        stalled >= WRITE_TIMEOUT && stalled < WRITE_TIMEOUT + Duration::from_millis(500),
        "aborted {stalled:?} after the last progress"
    );
    eprintln!(
        "half_closed_peer_no_spin ({kind}): server CPU {used:?} over 3 s ({:.2}%); max user buffer \
         {max_buffer} B; aborted (TimedOut) {stalled:?} after the last progress",
        share * 100.0
    );
    drop(client);
    server.stop();
}
over_kinds!(half_closed_peer_that_stops_reading_costs_no_cpu_and_is_aborted_by_the_write_timeout);

/// Echoes; reports when and why its connection ended.
struct ReportLost(Sender<(DisconnectReason, Instant)>);

impl Protocol for ReportLost {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.0.send((reason, Instant::now()));
    }
}

/// Catalogue 10 (half_closed_peer_no_spin) with stock parts: an echo (pausing its reads above
/// the high mark, the default) behind the protocols crate's idle timeout of 2 s, and a peer
/// that sends 8 MiB (more than the kernel buffers between them hold), half-closes if it gets
/// that far, and never reads. The server stops reading (backpressure), nothing spins, and the
/// idle timeout closes, then aborts, the connection.
fn half_closed_non_reader_of_a_stock_echo_costs_no_cpu_and_the_idle_timeout_ends_it(kind: Kind) {
    use torsion_protocols::policies::TimeoutProtocol;
    let _serial = serial();
    let (tx, events) = mpsc::channel();
    let server = Server::on(kind, move || {
        move |_| {
            let mut p = TimeoutProtocol::new(ReportLost(tx.clone()), Some(WRITE_TIMEOUT));
            p.set_abort_after(Some(Duration::from_millis(500)));
            Some(p)
        }
    });
    let client = connect_small_window(&server.addr);
    let started = Instant::now();
    let mut writer = client.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // Blocks once the server stops reading; ends with the server's reset.
        let _ = writer.write_all(&pattern(10, 8 << 20));
        let _ = writer.shutdown_write();
    });
    let (used, share) = cpu_share(server.tid, Duration::from_secs(3));
    let (reason, at) = recv(&events, "connection_lost");
    let ended_after = at.duration_since(started);
    assert!(share < 0.05, "the server thread used {used:?} of 3 s ({:.1}%)", share * 100.0);
    assert!(matches!(reason, DisconnectReason::TimedOut | DisconnectReason::Aborted), "{reason:?}");
    assert!(
        ended_after >= WRITE_TIMEOUT && ended_after < WRITE_TIMEOUT + Duration::from_secs(2),
        "the connection ended {ended_after:?} after the peer started"
    );
    sender.join().unwrap();
    eprintln!(
        "half_closed_peer_no_spin ({kind}, stock echo + idle timeout): server CPU {used:?} over 3 s \
         ({:.2}%); {reason:?} after {ended_after:?}",
        share * 100.0
    );
    drop(client);
    server.stop();
}
over_kinds!(half_closed_non_reader_of_a_stock_echo_costs_no_cpu_and_the_idle_timeout_ends_it);
