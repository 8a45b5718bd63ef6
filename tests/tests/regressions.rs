//! One named test per bug fixed so far, each starting from the case a user tries first (a fast
//! reader) as well as the slow one.
//!
//! - `pull_producer_*` / `push_producer_*`: a producer whose `write` of 16 KiB or more went
//!   straight to the socket stalled after that chunk (the flush returned early with nothing
//!   buffered and never queued the next `resume_producing`). Swept over every write path
//!   (`write`, `write_bytes`, `write_sequence`, `transport_for(..).write`) × chunk sizes around
//!   the direct-write threshold × a fast and a slow reader × with and without a
//!   `lose_connection` waiting on the producer, in the harness, over loopback, and over TLS
//!   (where the producer's chunks become records and the watermarks count ciphertext too).
//! - `a_push_producer_registered_below_high_starts_*`: a push producer object registered on a
//!   buffer below the high mark was never called, so it never wrote a byte.
//! - `a_client_whose_connect_fails_*`: a client whose only connection failed hung in `run()`
//!   forever, printing nothing without a tracing subscriber.
//! - `tls_data_with_the_clients_finished_waits_while_connection_made_pauses_reading`: the
//!   plaintext that arrived in the same read as the client's Finished was delivered right after
//!   `connection_made` even though it had paused reading (the proxy forwarded it to a backend
//!   not yet connected, and lost it). A FIN that came with a partial TLS record was missed until
//!   the handshake deadline: `tls_bad_input.rs`'s truncated ClientHello case.

use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion_reactor::testing::Harness;
use torsion_reactor::{
    client_factory, Bytes, ConnId, Ctx, DisconnectReason, Error, Producer, Protocol, Reactor,
};
use torsion_tests::{pattern, refused_addr, Server, WAIT};

const HIGH: usize = 64 * 1024;

/// How a producer hands its chunks to the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Write,
    WriteBytes,
    WriteSequence,
    TransportFor,
}

const PATHS: [Path; 4] = [Path::Write, Path::WriteBytes, Path::WriteSequence, Path::TransportFor];

/// Chunk sizes around the direct-write threshold (16 KiB) and the high mark.
const CHUNKS: [usize; 5] = [1, 16 * 1024 - 1, 16 * 1024, 64 * 1024, 1024 * 1024];

/// Bytes a producer sends for a chunk size: enough chunks to go past the first several drains,
/// bounded so the 1-byte case stays quick.
fn total_for(chunk: usize) -> usize {
    (chunk * 16).clamp(64 * 1024, 3 * 1024 * 1024)
}

/// Writes `data` through `path`; returns what the write reported (above the high mark).
fn write_via(cx: &mut Ctx<'_>, path: Path, data: &[u8]) -> bool {
    match path {
        Path::Write => cx.transport().write(data),
        Path::WriteBytes => cx.transport().write_bytes(Bytes::copy_from_slice(data)),
        Path::WriteSequence => {
            let (a, b) = data.split_at(data.len() / 2);
            cx.transport().write_sequence([a, b])
        }
        Path::TransportFor => {
            let id = cx.transport().conn_id();
            cx.transport_for(id).expect("the consumer is live").write(data)
        }
    }
}

/// A pull or push producer sending `data` in `chunk`-byte pieces through `path`, then
/// unregistering, and closing cleanly when `close_after` is set. Records the largest write
/// buffer it saw after a write.
struct Streamer {
    data: Rc<Vec<u8>>,
    sent: usize,
    chunk: usize,
    path: Path,
    push: bool,
    paused: bool,
    close_after: bool,
    max_buffer: Rc<RefCell<usize>>,
}

impl Streamer {
    /// Writes the next chunk; returns whether the buffer went above the high mark.
    fn write_chunk(&mut self, cx: &mut Ctx<'_>) -> bool {
        let end = (self.sent + self.chunk).min(self.data.len());
        let above = write_via(cx, self.path, &self.data[self.sent..end]);
        self.sent = end;
        let len = cx.transport().write_buffer_len();
        let mut max = self.max_buffer.borrow_mut();
        *max = (*max).max(len);
        above
    }

    fn finish_if_done(&mut self, cx: &mut Ctx<'_>) {
        if self.sent == self.data.len() {
            cx.transport().unregister_producer();
            if self.close_after {
                cx.transport().lose_connection();
            }
        }
    }
}

impl Producer for Streamer {
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        if self.sent == self.data.len() {
            return;
        }
        if self.push {
            // A push producer writes whenever it likes: here, until `write` says the buffer is
            // above the high mark (then it waits for pause and resume) or it is done.
            self.paused = false;
            while self.sent < self.data.len() && !self.paused {
                if self.write_chunk(cx) {
                    break;
                }
            }
        } else {
            self.write_chunk(cx);
        }
        self.finish_if_done(cx);
    }

    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.paused = true;
    }
}

/// One case of the sweep.
#[derive(Debug, Clone, Copy)]
struct Case {
    path: Path,
    chunk: usize,
    push: bool,
    /// `lose_connection` right after registering, so the close waits for the producer (pull
    /// producers only: a push producer's writes after `lose_connection` are ignored).
    close_early: bool,
}

impl Case {
    fn data(&self) -> Vec<u8> {
        pattern(self.chunk as u64, total_for(self.chunk))
    }

    /// Registers the streamer on this connection (and closes early if asked).
    fn start(&self, cx: &mut Ctx<'_>, data: Rc<Vec<u8>>, close_after: bool, max_buffer: Rc<RefCell<usize>>) {
        let streamer = Streamer {
            data,
            sent: 0,
            chunk: self.chunk,
            path: self.path,
            push: self.push,
            paused: false,
            close_after: close_after && !self.close_early,
            max_buffer,
        };
        cx.transport().register_producer(streamer, self.push).expect("register");
        if self.close_early {
            cx.transport().lose_connection();
        }
    }
}

fn cases(push: bool) -> Vec<Case> {
    let mut out = Vec::new();
    for path in PATHS {
        for chunk in CHUNKS {
            out.push(Case { path, chunk, push, close_early: false });
            if !push {
                out.push(Case { path, chunk, push, close_early: true });
            }
        }
    }
    out
}

/// A case to start, its data, whether to close after it, and where to record the buffer.
type Pending = (Case, Rc<Vec<u8>>, bool, Rc<RefCell<usize>>);

/// A protocol that starts `case` on the first byte it receives.
struct StartOnData {
    case: Option<Pending>,
}

impl Protocol for StartOnData {
    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        if let Some((case, data, close_after, max)) = self.case.take() {
            case.start(cx, data, close_after, max);
        }
    }
}

/// Runs one case in the harness: `window` is the peer's read window (`None`: a fast reader
/// that takes everything at once; `Some(n)`: a slow reader that takes `n` bytes at a time).
fn harness_case(case: Case, window: Option<usize>) {
    let data = Rc::new(case.data());
    let max = Rc::new(RefCell::new(0));
    let close_after = case.close_early;
    let mut h = Harness::new();
    let mut slot = Some(StartOnData { case: Some((case, data.clone(), close_after, max.clone())) });
    let id = h.accept(&mut move |_| slot.take()).unwrap();
    h.set_peer_window(id, window);
    h.feed(id, b"go");
    let mut got = Vec::new();
    for _ in 0..1_000_000 {
        let piece = h.take_written(id);
        if piece.is_empty() {
            break;
        }
        got.extend(piece);
    }
    assert_eq!(got.len(), data.len(), "{case:?} window {window:?}: bytes delivered");
    assert!(got == *data, "{case:?} window {window:?}: every byte, in order");
    if case.close_early {
        assert!(h.fin_sent(id), "{case:?} window {window:?}: FIN after the producer finished");
        assert!(
            h.disconnect_reason(id) == Some(DisconnectReason::Clean),
            "{case:?}: {:?}",
            h.disconnect_reason(id)
        );
    } else {
        assert!(h.is_open(id), "{case:?} window {window:?}: still open");
    }
    if window.is_some() && !case.push {
        // A pull producer writes one chunk per drain to the low mark.
        assert!(*max.borrow() <= 16 * 1024 + case.chunk, "{case:?}: buffer reached {}", max.borrow());
    }
    if window.is_some() && case.push {
        assert!(*max.borrow() <= HIGH + case.chunk, "{case:?}: buffer reached {}", max.borrow());
    }
}

#[test]
fn pull_producer_streams_everything_to_a_fast_reader_in_the_harness() {
    for case in cases(false) {
        harness_case(case, None);
    }
}

#[test]
fn pull_producer_streams_everything_to_a_slow_reader_in_the_harness() {
    for case in cases(false) {
        harness_case(case, Some(16 * 1024));
    }
}

#[test]
fn push_producer_streams_everything_to_a_fast_reader_in_the_harness() {
    for case in cases(true) {
        harness_case(case, None);
    }
}

#[test]
fn push_producer_streams_everything_to_a_slow_reader_in_the_harness() {
    for case in cases(true) {
        harness_case(case, Some(16 * 1024));
    }
}

/// Reads to EOF; a slow reader takes 4 KiB at a time and yields the CPU every 64 KiB, so the
/// server's buffer fills and its producer is paused (or not resumed) along the way.
fn read_all(mut stream: impl Read, slow: bool) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = vec![0; if slow { 4096 } else { 256 * 1024 }];
    loop {
        assert!(Instant::now() < deadline, "the stream did not end within {WAIT:?} ({} bytes)", got.len());
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if slow && got.len() % (64 * 1024) < n {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(e) => panic!("read failed after {} bytes: {e}", got.len()),
        }
    }
}

/// Runs every case of the sweep over loopback against one server: the client's first byte
/// names the case. Every case ends with a clean close, so the client reads to EOF.
fn loopback_sweep(push: bool, slow: bool) {
    let all = cases(push);
    let server_cases = all.clone();
    let server = Server::start(move || {
        let cases = server_cases.clone();
        move |_peer| Some(CaseByIndex { cases: cases.clone(), started: false })
    });
    for (index, case) in all.iter().enumerate() {
        let mut stream = server.connect();
        std::io::Write::write_all(&mut stream, &[index as u8]).unwrap();
        let got = read_all(stream, slow);
        let data = case.data();
        assert_eq!(got.len(), data.len(), "{case:?} slow {slow}: bytes delivered");
        assert!(got == data, "{case:?} slow {slow}: every byte, in order");
    }
    server.stop();
}

/// [`loopback_sweep`] over TLS: a torsion TLS server, rustls' blocking client reading to the
/// server's `close_notify`.
fn tls_sweep(push: bool, slow: bool) {
    use torsion_tests::tls::{blocking_client, tls_server, Pki};
    let pki = Pki::new();
    let all = cases(push);
    let server_cases = all.clone();
    let (_server, addr) = tls_server(
        pki.server_config(),
        |_| {},
        move || move |_peer| Some(CaseByIndex { cases: server_cases.clone(), started: false }),
    );
    for (index, case) in all.iter().enumerate() {
        let mut stream = blocking_client(&addr, pki.client_config()).expect("handshake");
        std::io::Write::write_all(&mut stream, &[index as u8]).unwrap();
        let got = read_all(stream, slow);
        let data = case.data();
        assert_eq!(got.len(), data.len(), "TLS {case:?} slow {slow}: bytes delivered");
        assert!(got == data, "TLS {case:?} slow {slow}: every byte, in order");
    }
}

#[test]
fn pull_producer_streams_everything_to_a_fast_reader_over_tls() {
    tls_sweep(false, false);
}

#[test]
fn pull_producer_streams_everything_to_a_slow_reader_over_tls() {
    tls_sweep(false, true);
}

#[test]
fn push_producer_streams_everything_to_a_fast_reader_over_tls() {
    tls_sweep(true, false);
}

#[test]
fn push_producer_streams_everything_to_a_slow_reader_over_tls() {
    tls_sweep(true, true);
}

/// Starts the case its first input byte names, closing when the producer is done.
struct CaseByIndex {
    cases: Vec<Case>,
    started: bool,
}

impl Protocol for CaseByIndex {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let case = self.cases[data[0] as usize];
        case.start(cx, Rc::new(case.data()), true, Rc::default());
    }
}

#[test]
fn pull_producer_streams_everything_to_a_fast_reader_over_loopback() {
    loopback_sweep(false, false);
}

#[test]
fn pull_producer_streams_everything_to_a_slow_reader_over_loopback() {
    loopback_sweep(false, true);
}

#[test]
fn push_producer_streams_everything_to_a_fast_reader_over_loopback() {
    loopback_sweep(true, false);
}

#[test]
fn push_producer_streams_everything_to_a_slow_reader_over_loopback() {
    loopback_sweep(true, true);
}

/// A hand-written push producer with no tricks: it writes 64 KiB pieces while not paused, and
/// relies on the start `resume_producing` that follows `register_producer`.
struct Pusher {
    left: usize,
    paused: bool,
    max_buffer: usize,
    piece: Vec<u8>,
}

impl Producer for Pusher {
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.paused = false;
        while !self.paused && self.left > 0 {
            let n = self.piece.len().min(self.left);
            self.left -= n;
            let above = cx.transport().write(&self.piece[..n]);
            self.max_buffer = self.max_buffer.max(cx.transport().write_buffer_len());
            if self.left == 0 {
                assert!(self.max_buffer <= HIGH + self.piece.len(), "buffer reached {}", self.max_buffer);
                cx.transport().lose_connection();
            }
            if above {
                // Twisted's contract: pause_producing follows (after this callback).
                break;
            }
        }
    }

    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.paused = true;
    }
}

/// Catalogue 14 (slow_reader_fast_writer), for push producers: a slow reader, bounded memory.
#[test]
fn load_a_push_producer_registered_below_high_starts_and_streams_100_mib_to_a_slow_reader() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let server = Server::start(|| {
        |_peer| {
            struct Start;
            impl Protocol for Start {
                fn connection_made(&mut self, cx: &mut Ctx<'_>) {
                    let pusher =
                        Pusher { left: TOTAL, paused: false, max_buffer: 0, piece: vec![7; 64 * 1024] };
                    cx.transport().register_producer(pusher, true).unwrap();
                }
                fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
            }
            Some(Start)
        }
    });
    let stream = server.connect();
    // Slow: 4 KiB reads with a pause every 64 KiB, for the first 4 MiB (the buffer fills and the
    // producer is paused many times), then fast for the rest.
    let deadline = Instant::now() + WAIT * 3;
    let mut buf = vec![0; 256 * 1024];
    let mut total = 0;
    let mut stream = stream;
    loop {
        assert!(Instant::now() < deadline, "stalled after {total} bytes");
        let want = if total < 4 * 1024 * 1024 { 4096 } else { buf.len() };
        match stream.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                assert!(buf[..n].iter().all(|&b| b == 7));
                total += n;
                if total < 4 * 1024 * 1024 && total % (64 * 1024) < n {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(e) => panic!("read failed after {total} bytes: {e}"),
        }
    }
    assert_eq!(total, TOTAL, "every byte, then FIN");
    server.stop();
}

/// The start call in the harness: registered in `connection_made` of a fast connection, the
/// producer writes at once, and its calls alternate starting with that resume.
#[test]
fn a_push_producer_registered_below_high_starts_in_the_harness() {
    let mut h = Harness::new();
    let id = h
        .accept(&mut |_| {
            struct Start;
            impl Protocol for Start {
                fn connection_made(&mut self, cx: &mut Ctx<'_>) {
                    let pusher =
                        Pusher { left: 1024 * 1024, paused: false, max_buffer: 0, piece: vec![7; 1000] };
                    cx.transport().register_producer(pusher, true).unwrap();
                }
                fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
            }
            Some(Start)
        })
        .unwrap();
    let mut got = 0;
    for _ in 0..10_000 {
        let n = h.take_written(id).len();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, 1024 * 1024);
    assert!(h.fin_sent(id));
}

/// Catalogue 1 (connect_refused): the default `client_connection_failed` ends `run` with the
/// error when nothing else is left to do.
#[test]
fn a_client_whose_connect_fails_ends_run_with_the_error() {
    let (refuser, addr) = refused_addr();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reactor = Reactor::new().unwrap();
        reactor
            .connect_tcp(addr, |_peer| {
                struct Never;
                impl Protocol for Never {
                    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
                }
                Never
            })
            .unwrap();
        let _ = tx.send(reactor.run());
    });
    let result = rx.recv_timeout(WAIT).expect("run() did not return after a refused connect");
    match result {
        Err(Error::ConnectFailed { addr: a, source }) => {
            assert_eq!(a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    drop(refuser);
}

/// The default failure handling does not stop a reactor that still has work: a listener.
#[test]
fn a_client_whose_connect_fails_beside_a_listener_does_not_stop_the_reactor() {
    let (_refuser, addr) = refused_addr();
    let mut reactor = Reactor::new().unwrap();
    reactor.listen_tcp(torsion_tests::localhost(), |_peer| None::<Box<dyn Protocol>>).unwrap();
    reactor.connect_tcp(addr, |_peer| torsion_protocols::Echo).unwrap();
    assert_eq!(reactor.source_count(), 2);
    let failed = reactor.run_until(WAIT, |r| r.connection_count() == 0).unwrap();
    assert!(failed, "the connect did not fail");
    // A stop request would close the listener at the start of the next turn.
    reactor.call_later(Duration::ZERO, |_| {});
    reactor.turn().unwrap();
    assert_eq!(reactor.source_count(), 1, "the listener is still there: the reactor is not stopping");
}

/// A failure hook from `client_factory(..).on_failure(..)` replaces the default, and
/// `stop_with` carries an exit status out of `run_with_result` without a shared cell.
#[test]
fn a_client_factory_closure_with_a_failure_hook_sets_the_run_result() {
    let (_refuser, addr) = refused_addr();
    let mut reactor = Reactor::new().unwrap();
    let factory = client_factory(|_peer| torsion_protocols::Echo).on_failure(move |cx, error| {
        assert!(matches!(error, Error::ConnectFailed { .. }), "{error:?}");
        cx.stop_with(3u8);
    });
    reactor.connect_tcp(addr, factory).unwrap();
    let status = reactor.run_with_result::<u8>().unwrap();
    assert_eq!(status, Some(3));
}

/// `stop_with_error` ends `run` with the application's own error.
#[test]
fn stop_with_error_ends_run_with_that_error() {
    #[derive(Debug)]
    struct Refused;
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the server said no")
        }
    }
    impl std::error::Error for Refused {}
    let mut reactor = Reactor::new().unwrap();
    reactor.call_later(Duration::ZERO, |cx| cx.stop_with_error(Error::other(Refused)));
    let err = reactor.run().unwrap_err();
    assert_eq!(err.to_string(), "the server said no");
}

/// The before-shutdown trigger runs before connections are closed, and what it writes reaches
/// every client before their FIN.
#[test]
fn before_shutdown_writes_reach_every_connection_before_the_close() {
    let mut h = Harness::new();
    let ids: Rc<RefCell<Vec<ConnId>>> = Rc::default();
    let a = h.accept(&mut |_| Some(torsion_protocols::Echo)).unwrap();
    let b = h.accept(&mut |_| Some(torsion_protocols::Echo)).unwrap();
    ids.borrow_mut().extend([a, b]);
    let seen = ids.clone();
    h.reactor().before_shutdown(move |cx, deadline| {
        assert!(deadline > cx.now(), "the deadline is in the future");
        for id in seen.borrow().iter() {
            cx.transport_for(*id)
                .expect("still open when the trigger runs")
                .write(b"* Server shutting down\n");
        }
    });
    h.reactor().stop();
    h.run();
    for id in [a, b] {
        assert_eq!(h.take_written(id), b"* Server shutting down\n");
        assert!(h.fin_sent(id), "closed after the goodbye");
    }
}

/// The client's Finished and its first data in one TCP write, to a server whose
/// `connection_made` pauses reading and resumes it from a timer: the data is delivered after the
/// resume, not lost and not early.
#[test]
fn tls_data_with_the_clients_finished_waits_while_connection_made_pauses_reading() {
    use std::io::Write;
    use std::sync::mpsc;
    use torsion_reactor::rustls::ClientConnection;
    use torsion_tests::tls::{localhost_name, tls_server, Pki};

    struct PausedAtFirst {
        tx: mpsc::Sender<String>,
    }
    impl Protocol for PausedAtFirst {
        fn connection_made(&mut self, cx: &mut Ctx<'_>) {
            cx.transport().pause_reading();
            cx.set_timer(Duration::from_millis(50));
            let _ = self.tx.send("made, paused".into());
        }
        fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: torsion_reactor::TimerId) {
            let _ = self.tx.send("resumed".into());
            cx.transport().resume_reading();
        }
        fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
            let _ = self.tx.send(format!("data {}", String::from_utf8_lossy(data)));
            cx.transport().write(data);
        }
    }
    let pki = Pki::new();
    let (tx, rx) = mpsc::channel();
    let (_server, addr) =
        tls_server(pki.server_config(), |_| {}, move || move |_| Some(PausedAtFirst { tx: tx.clone() }));
    let torsion_reactor::Address::Inet(inet) = addr else { unreachable!() };
    let mut tcp = std::net::TcpStream::connect(inet).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut conn = ClientConnection::new(pki.client_config(), localhost_name()).unwrap();
    // Handshake by hand, holding back our last flight (Finished) ...
    while conn.is_handshaking() {
        while conn.wants_write() {
            conn.write_tls(&mut tcp).unwrap();
        }
        if !conn.is_handshaking() {
            break;
        }
        conn.read_tls(&mut tcp).unwrap();
        conn.process_new_packets().unwrap();
        if !conn.is_handshaking() {
            break;
        }
    }
    // ... so that it leaves in one write with the first data.
    conn.writer().write_all(b"early").unwrap();
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).unwrap();
    }
    tcp.write_all(&flight).unwrap();
    let events: Vec<String> = (0..3).map(|_| torsion_tests::recv(&rx, "the server's events")).collect();
    assert_eq!(events, ["made, paused", "resumed", "data early"]);
    let mut echoed = Vec::new();
    let mut plain = [0u8; 5];
    while echoed.len() < 5 {
        conn.read_tls(&mut tcp).unwrap();
        conn.process_new_packets().unwrap();
        if let Ok(n) = std::io::Read::read(&mut conn.reader(), &mut plain) {
            echoed.extend_from_slice(&plain[..n]);
        }
    }
    assert_eq!(echoed, b"early");
}
