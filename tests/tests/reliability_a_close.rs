//! Reliability catalogue, group A, tests 5, 6, 8 and 9: closing without losing a byte.
//!
//! - 5 `lose_flushes`: 8 MiB written and `lose_connection` in the same callback; the client
//!   reads exactly 8 MiB then a FIN, and `connection_lost(Clean)` only comes after the flush.
//! - 6 `lose_with_unread_input`: the server reads the first bytes of a request with a 100 KB
//!   body, writes 2 MB and closes: the whole response arrives 20 of 20 times (lingering close);
//!   a peer that never sends its FIN is dropped at the lingering time limit, and one that keeps
//!   sending at the lingering byte limit.
//! - 8 `peer_half_close_echo`: N ∈ {1, 10, 64 KiB, 4 MiB} sent then `SHUT_WR`, 20 runs each:
//!   exactly N bytes back, then EOF; a half-close protocol can still write after the FIN.
//! - 9 `local_half_close`: the server writes "bye" and `write_eof`; the client sees "bye" then
//!   EOF and keeps sending for 1 s; the server gets all of it, then `connection_lost` once,
//!   within 1 s of the client's FIN.
//!
//! - The "nothing lost" on shutdown: a graceful stop with a 2 s deadline delivers all
//!   8 MiB queued to each of 10 readers (then FIN), and aborts a peer that never reads at the
//!   deadline; `run()` returns within the deadline + 250 ms.
//!
//! Partly covered before: `lifecycle.rs` (8 MiB then FIN), `echo.rs` (half-close sizes
//! 1/64 KiB/4 MiB), `half_close.rs` (both orders).

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use torsion_protocols::Echo;
use torsion_reactor::{Ctx, DisconnectReason, Protocol, Reactor};
use torsion_tests::{localhost, pattern, run_until, write_and_read_to_end, Server, WAIT};

/// A client whose receive buffer is small and fixed, so the server's data backs up in the
/// server's own write buffer instead of the kernel's.
fn small_window_client(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

fn recv<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// 5. lose_flushes

/// Writes its data and closes in `connection_made`; reports the reason and how much it had
/// buffered when it closed.
struct WriteThenLose {
    data: Bytes,
    events: Sender<String>,
}

impl Protocol for WriteThenLose {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write_bytes(self.data.clone());
        cx.transport().lose_connection();
        let _ = self.events.send(format!("buffered {}", cx.transport().write_buffer_len()));
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.events.send(format!("lost {reason:?}"));
    }
}

#[test]
fn lose_flushes_8_mib_then_fin_and_reports_clean_after_the_flush() {
    let data = Bytes::from(pattern(5, 8 << 20));
    let (tx, events) = mpsc::channel();
    let d = data.clone();
    let server = Server::start(move || {
        move |_| Some(Box::new(WriteThenLose { data: d.clone(), events: tx.clone() }) as Box<dyn Protocol>)
    });
    let mut client = small_window_client(server.addr);
    let buffered = recv(&events, "connection_made");
    // The client has not read: most of the 8 MiB must still be in the server's user buffer.
    let held: usize = buffered.strip_prefix("buffered ").unwrap().parse().unwrap();
    assert!(held > 4 << 20, "expected most of 8 MiB buffered, got {held}");
    // While the client does not read, the close cannot complete (a bounded negative check).
    assert!(
        events.recv_timeout(Duration::from_millis(300)).is_err(),
        "connection_lost came before the buffer was flushed"
    );
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("read to EOF: a FIN, not a reset");
    assert_eq!(got.len(), data.len(), "bytes lost");
    assert!(got == data[..], "bytes differ");
    assert_eq!(recv(&events, "connection_lost"), "lost Clean");
    eprintln!("lose_flushes: {held} B held at close; 8 MiB of 8 MiB delivered, then FIN; lost(Clean)");
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// 6. lose_with_unread_input

const RESPONSE: usize = 2_000_000;

/// Reads the first chunk of a request, answers 2 MB and closes, leaving the rest unread.
struct AnswerThenClose {
    response: Bytes,
    first_read: Rc<RefCell<Vec<usize>>>,
}

impl Protocol for AnswerThenClose {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.first_read.borrow_mut().push(data.len());
        cx.transport().write_bytes(self.response.clone());
        cx.transport().lose_connection();
    }
}

/// The request: 64 B of headers, then a 100 KB body.
fn request() -> Vec<u8> {
    let mut req = format!("POST /upload HTTP/1.1\r\nContent-Length: {:>21}\r\n\r\n", 100_000).into_bytes();
    assert_eq!(req.len(), 64);
    req.extend(pattern(66, 100_000));
    req
}

fn answering_server(reactor: &mut Reactor) -> (SocketAddr, Bytes, Rc<RefCell<Vec<usize>>>) {
    // One read takes the 64 B of headers and no more: the body stays unread in the kernel.
    reactor.set_read_buffer_size(64);
    let response = Bytes::from(pattern(6, RESPONSE));
    let first_read = Rc::new(RefCell::new(Vec::new()));
    let (r, f) = (response.clone(), first_read.clone());
    let port =
        reactor
            .listen_tcp(localhost(), move |_| {
                Some(Box::new(AnswerThenClose { response: r.clone(), first_read: f.clone() })
                    as Box<dyn Protocol>)
            })
            .unwrap();
    (port.local_addr(), response, first_read)
}

#[test]
fn lose_with_unread_input_delivers_the_whole_response_20_of_20() {
    let mut reactor = Reactor::new().unwrap();
    let (addr, response, first_read) = answering_server(&mut reactor);
    let mut complete = 0;
    for trial in 0..20 {
        let client = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(WAIT))?;
            stream.write_all(&request())?;
            let mut got = Vec::new();
            stream.read_to_end(&mut got)?;
            Ok(got)
        });
        run_until(&mut reactor, "the client read the response", |_| client.is_finished());
        let got = client.join().unwrap().unwrap_or_else(|e| panic!("trial {trial}: {e} (a reset?)"));
        assert_eq!(got.len(), RESPONSE, "trial {trial}: response truncated");
        assert!(got == response[..], "trial {trial}: response differs");
        complete += 1;
        // The client closed after EOF: the lingering socket sees that FIN and goes.
        run_until(&mut reactor, "the lingering socket to go", |r| r.source_count() == 1);
    }
    let reads = first_read.borrow();
    assert_eq!(reads.len(), 20, "one read per connection: the rest of each request stayed unread");
    assert!(reads.iter().all(|&n| n == 64), "each server read 64 B of its request: {reads:?}");
    assert_eq!(reactor.timer_count(), 0, "no lingering timer left");
    eprintln!(
        "lose_with_unread_input: {complete}/20 complete 2 MB responses; 64 B of 100,064 read each time"
    );
}

/// The reactor's lingering limit (reactor.rs `LINGER_TIMEOUT`). The catalogue's policy (§3.1,
/// nginx) is 5 s per gap, 30 s and 1 MiB in total; the reactor keeps 5 s in total and 1 MiB,
/// which is stricter, and DESIGN.md sets no figure, so the reactor's figure is tested.
const LINGER_LIMIT: Duration = Duration::from_secs(5);

#[test]
fn lose_with_unread_input_drops_a_peer_that_never_sends_fin_at_the_lingering_limit() {
    let mut reactor = Reactor::new().unwrap();
    let (addr, _response, _) = answering_server(&mut reactor);
    let (tx, rx) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(&request()).unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        // Hand the socket over so that it stays open, never sending FIN, until the test ends.
        tx.send((got.len(), Instant::now(), stream)).unwrap();
    });
    let mut eof = None;
    run_until(&mut reactor, "the client saw the response and EOF", |_| {
        if let Ok(e) = rx.try_recv() {
            eof = Some(e);
        }
        eof.is_some()
    });
    let (len, eof_at, _held_open) = eof.unwrap();
    assert_eq!(len, RESPONSE);
    assert_eq!(reactor.source_count(), 2, "the server socket lingers, waiting for the peer's FIN");
    run_until(&mut reactor, "the lingering socket to be dropped", |r| r.source_count() == 1);
    let lingered = eof_at.elapsed();
    assert!(
        lingered >= LINGER_LIMIT - Duration::from_millis(100)
            && lingered < LINGER_LIMIT + Duration::from_secs(2),
        "dropped after {lingered:?}, expected about {LINGER_LIMIT:?}"
    );
    assert_eq!(reactor.timer_count(), 0);
    eprintln!("lose_with_unread_input: a peer without FIN was dropped after {lingered:?} of lingering");
    client.join().unwrap();
}

/// The reactor's lingering byte limit (reactor.rs `LINGER_MAX_BYTES`, the catalogue's 1 MiB).
const LINGER_BYTES: usize = 1 << 20;

#[test]
fn lose_with_unread_input_drops_a_peer_that_keeps_sending_past_the_lingering_byte_limit() {
    let mut reactor = Reactor::new().unwrap();
    let (addr, _response, _) = answering_server(&mut reactor);
    let (tx, rx) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.write_all(&request()).unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        tx.send(Instant::now()).unwrap();
        // Keep sending, never FIN: the server drains up to its limit, then drops the socket,
        // and the kernel answers the rest with a reset.
        let chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        let err = loop {
            match stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => break e,
            }
            assert!(sent < 64 * LINGER_BYTES, "the server drained {sent} B without dropping the socket");
        };
        (got.len(), sent, err.kind())
    });
    let mut eof_at = None;
    run_until(&mut reactor, "the client saw the response", |_| {
        eof_at = eof_at.or(rx.try_recv().ok());
        eof_at.is_some()
    });
    run_until(&mut reactor, "the lingering socket to be dropped", |r| r.source_count() == 1);
    let dropped_after = eof_at.unwrap().elapsed();
    assert!(
        dropped_after < LINGER_LIMIT / 2,
        "dropped after {dropped_after:?}: by the time limit, not bytes"
    );
    let (len, sent, err) = client.join().unwrap();
    assert_eq!(len, RESPONSE);
    assert!(sent >= LINGER_BYTES, "the server drained {sent} B, less than its 1 MiB limit");
    assert!(matches!(err, ErrorKind::ConnectionReset | ErrorKind::BrokenPipe), "{err:?}");
    assert_eq!(reactor.timer_count(), 0, "the linger timer was cancelled");
    eprintln!(
        "lose_with_unread_input: a peer sending after the close was dropped {dropped_after:?} after EOF, \
         having sent {sent} B (limit {LINGER_BYTES} B), then saw {err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. peer_half_close_echo

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

#[test]
fn peer_half_close_echo_returns_every_byte_then_eof_80_of_80() {
    let server = Server::start(|| |_| Some(Box::new(Echo) as Box<dyn Protocol>));
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
    let server = Server::start(|| |_| Some(Box::new(HalfCloser) as Box<dyn Protocol>));
    let got = write_and_read_to_end(server.connect(), b"ping".to_vec(), true).expect("half-close echo");
    assert_eq!(got, b"pingafter-eof");
    server.stop();
    eprintln!(
        "peer_half_close_echo: {runs}/{runs} runs byte-exact (sizes 1, 10, 64 KiB, 4 MiB), 0 bytes lost"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. local_half_close

/// Says "bye" and half-closes at once; counts what it still receives.
struct SaysBye {
    events: Sender<(String, Instant)>,
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
        let _ = self.events.send((format!("eof after {}", self.received), Instant::now()));
        true
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.events.send((format!("lost {reason:?} after {}", self.received), Instant::now()));
    }
}

#[test]
fn local_half_close_sends_bye_then_eof_and_keeps_reading_until_the_peer_closes() {
    let (tx, events) = mpsc::channel();
    let server = Server::start(move || {
        move |_| Some(Box::new(SaysBye { events: tx.clone(), received: 0 }) as Box<dyn Protocol>)
    });
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
    client.shutdown(Shutdown::Write).unwrap();
    let fin_at = Instant::now();
    let (eof, _) = recv(&events, "eof_received");
    assert_eq!(eof, format!("eof after {sent}"), "every byte sent after the half-close arrived");
    let (lost, lost_at) = recv(&events, "connection_lost");
    assert_eq!(lost, format!("lost Clean after {sent}"));
    let took = lost_at.duration_since(fin_at);
    assert!(took < Duration::from_secs(1), "the double half-close took {took:?} to end");
    assert!(events.recv_timeout(Duration::from_millis(100)).is_err(), "connection_lost more than once");
    eprintln!("local_half_close: {sent} B received after our FIN; both halves closed -> lost after {took:?}");
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// The "nothing lost" on shutdown (catalogue test 29, group E, has the 100-connection
// version; `threads.rs` has the two halves): a graceful stop delivers every queued byte to
// readers, and aborts a peer that never reads at the deadline.

/// Queues its data in `connection_made`; reports `connection_lost` with its time.
struct Queued {
    data: Bytes,
    events: Sender<(String, Instant)>,
}

impl Protocol for Queued {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write_bytes(self.data.clone());
        let _ = self.events.send(("made".into(), Instant::now()));
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.events.send((format!("{reason:?}"), Instant::now()));
    }
}

#[test]
fn graceful_shutdown_delivers_every_queued_byte_to_readers_and_aborts_a_non_reader_at_the_deadline() {
    const READERS: usize = 10;
    let deadline = Duration::from_secs(2);
    // More than the kernel's send buffer can take (tcp_wmem max 4 MiB), so the non-reader's
    // data stays in the user buffer until the deadline.
    let data = Bytes::from(pattern(29, 8 << 20));
    let (tx, events) = mpsc::channel();
    let d = data.clone();
    let server = Server::start_with(
        move |reactor| reactor.set_shutdown_timeout(deadline),
        move || move |_| Some(Box::new(Queued { data: d.clone(), events: tx.clone() }) as Box<dyn Protocol>),
    );
    let peers: Vec<TcpStream> = (0..=READERS).map(|_| small_window_client(server.addr)).collect();
    for _ in 0..=READERS {
        assert_eq!(recv(&events, "connection_made").0, "made");
    }
    let stopped_at = Instant::now();
    server.handle.stop();
    // Only now do the readers start reading; the last peer never reads.
    let mut peers = peers;
    let mut sleeper = peers.pop().unwrap();
    let readers: Vec<_> = peers
        .into_iter()
        .map(|mut peer| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                peer.read_to_end(&mut got).map(|_| got)
            })
        })
        .collect();
    let mut delivered = 0;
    for reader in readers {
        let got = reader.join().unwrap().expect("a reader reads to EOF, not a reset");
        assert!(got == data[..], "a reader got {} B of {}", got.len(), data.len());
        delivered += got.len();
    }
    server.stop(); // waits (bounded) for run() to return
    let returned_after = stopped_at.elapsed();
    let lost: Vec<(String, Instant)> = events.try_iter().collect();
    let clean = lost.iter().filter(|(r, _)| r == "Clean").count();
    let aborted: Vec<Duration> =
        lost.iter().filter(|(r, _)| r == "Aborted").map(|(_, at)| at.duration_since(stopped_at)).collect();
    assert_eq!((clean, aborted.len()), (READERS, 1), "{lost:?}");
    assert!(aborted[0] >= deadline, "the non-reader was aborted {:?} after the stop", aborted[0]);
    assert!(
        returned_after <= deadline + Duration::from_millis(250),
        "run() returned {returned_after:?} after the stop (deadline {deadline:?})"
    );
    let mut rest = Vec::new();
    let err = sleeper.read_to_end(&mut rest).expect_err("the non-reader sees a reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    eprintln!(
        "graceful_shutdown: {delivered} of {} queued bytes delivered to {READERS} readers, lost(Clean) x{clean}; \
         the non-reader aborted after {:?}; run() returned after {returned_after:?}",
        READERS * data.len(),
        aborted[0]
    );
}
