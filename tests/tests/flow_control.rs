//! Flow control: write buffers and push/pull producers.
//!
//! Over TCP and Unix stream sockets: a fast writer against a slow reader stays bounded and
//! alternates pause/resume exactly at the watermarks; a pull producer streams 64 MiB
//! byte-exact; thousands of small writes leave in few system calls; data and FIN that arrive
//! while reading is paused are delivered on resume.
//!
//! In memory (`in_memory`, the real transport state machine beside a simulated peer and a
//! manual clock): exact, deterministic checks of every rule, including catalogue 15
//! (`producer_edge_cases`), clause by clause. Catalogue 14 (1 GiB to a slow reader, with heap
//! and RSS figures) is in `flow_control_heap.rs`.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::thread::JoinHandle;

use torsion_protocols::FileSender;
use torsion_reactor::{Address, ConnId, Ctx, DisconnectReason, Producer, Protocol, Reactor};
use torsion_tests::{connect, listen, over_kinds, pattern, run_until, Kind};

const HIGH: usize = 64 * 1024;

/// What a writer saw: flow-control calls in order, times `write` said "above high", the
/// largest buffer after any write, and how it ended.
#[derive(Debug, Default)]
struct Flow {
    calls: Vec<&'static str>,
    above_reports: usize,
    max_buffer: usize,
    sent: usize,
    lost: Option<DisconnectReason>,
}

type Shared = Rc<RefCell<Flow>>;

/// A push producer (its own transport's, the default) that writes `chunk`-byte pieces of
/// `data` until `write` reports the buffer above the high mark, and goes on when resumed.
struct Blaster {
    data: Rc<Vec<u8>>,
    chunk: usize,
    paused: bool,
    flow: Shared,
}

impl Blaster {
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        let mut flow = self.flow.borrow_mut();
        while !self.paused && flow.sent < self.data.len() {
            let end = (flow.sent + self.chunk).min(self.data.len());
            let above = cx.transport().write(&self.data[flow.sent..end]);
            flow.sent = end;
            flow.max_buffer = flow.max_buffer.max(cx.transport().write_buffer_len());
            if above {
                // The synchronous signal: stop now; `pause_producing` follows after this call.
                flow.above_reports += 1;
                break;
            }
        }
    }
}

impl Protocol for Blaster {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.pump(cx);
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.flow.borrow_mut().calls.push("pause");
        self.paused = true;
    }
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.flow.borrow_mut().calls.push("resume");
        self.paused = false;
        self.pump(cx);
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.flow.borrow_mut().lost = Some(reason);
    }
}

/// Reads `len` bytes in `piece`-byte reads on a thread, then closes; returns what it read.
/// `pause_every` reads, it yields the CPU for a moment so that the writer outruns it (this
/// only makes the reader slow; nothing waits on it to synchronise).
fn slow_reader(kind: Kind, addr: &Address, len: usize, piece: usize) -> JoinHandle<io::Result<Vec<u8>>> {
    let addr = addr.clone();
    std::thread::spawn(move || {
        let mut stream = connect(kind, &addr);
        let mut got = Vec::with_capacity(len);
        let mut buf = vec![0; piece];
        let mut reads = 0u64;
        while got.len() < len {
            let n = stream.read(&mut buf[..piece.min(len - got.len())])?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            reads += 1;
            if reads.is_multiple_of(8) {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        Ok(got)
    })
}

fn join<T>(thread: JoinHandle<io::Result<T>>) -> T {
    thread.join().expect("client thread panicked").expect("client i/o failed")
}

/// Checks the push-producer rules on a finished run: calls alternate strictly starting with
/// a pause, one pause per "above high" report, every pause resumed, and the buffer never
/// above high + one chunk.
fn assert_push_rules(flow: &Flow, chunk: usize) {
    assert!(!flow.calls.is_empty(), "the slow reader must have paused the writer: {flow:?}");
    for (i, call) in flow.calls.iter().enumerate() {
        let expected = if i % 2 == 0 { "pause" } else { "resume" };
        assert_eq!(*call, expected, "calls alternate strictly: {:?}", flow.calls);
    }
    let pauses = flow.calls.iter().filter(|c| **c == "pause").count();
    let resumes = flow.calls.len() - pauses;
    assert_eq!(pauses, flow.above_reports, "one pause per crossing of the high mark");
    assert_eq!(resumes, pauses, "every pause is resumed once the buffer drains");
    assert!(
        flow.max_buffer <= HIGH + chunk,
        "buffer peaked at {} > high {HIGH} + one chunk {chunk}",
        flow.max_buffer
    );
}

/// A fast push producer against a slow reader: the buffer stays within high + one chunk,
/// pause and resume alternate, one pause per crossing of the high mark, every byte arrives.
fn slow_reader_fast_writer_over_loopback_stays_bounded_and_alternates(kind: Kind) {
    const LEN: usize = 8 << 20;
    const CHUNK: usize = 16 * 1024;
    let data = Rc::new(pattern(21, LEN));
    let flow = Shared::default();
    let mut reactor = Reactor::new().unwrap();
    let (d, f) = (data.clone(), flow.clone());
    let listener = listen(&mut reactor, kind, move |_| {
        Some(Blaster { data: d.clone(), chunk: CHUNK, paused: false, flow: f.clone() })
    });
    let client = slow_reader(kind, &listener.addr, LEN, 4096);
    run_until(&mut reactor, "the client read everything and closed", |_| flow.borrow().lost.is_some());
    let got = join(client);
    assert_eq!(got.len(), LEN);
    assert!(got == *data, "all bytes arrive in order");
    assert_push_rules(&flow.borrow(), CHUNK);
}
over_kinds!(slow_reader_fast_writer_over_loopback_stays_bounded_and_alternates);

/// A pull producer that wraps a [`FileSender`] and records the buffer after each chunk, and
/// that it was never paused.
struct Sampled<P> {
    inner: P,
    flow: Shared,
}

impl<P: Producer> Producer for Sampled<P> {
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.flow.borrow_mut().calls.push("resume");
        self.inner.resume_producing(cx);
        let mut flow = self.flow.borrow_mut();
        flow.max_buffer = flow.max_buffer.max(cx.transport().write_buffer_len());
    }
    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.flow.borrow_mut().calls.push("pause");
        self.inner.pause_producing(cx);
    }
    fn stop_producing(&mut self, cx: &mut Ctx<'_>) {
        self.flow.borrow_mut().calls.push("stop");
        self.inner.stop_producing(cx);
    }
}

/// A reader of `left` deterministic bytes (`block` repeated), generated as it is read.
struct Generated {
    block: Rc<Vec<u8>>,
    left: usize,
    offset: usize,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left);
        for byte in &mut buf[..n] {
            *byte = self.block[self.offset];
            self.offset = (self.offset + 1) % self.block.len();
        }
        self.left -= n;
        Ok(n)
    }
}

/// A pull producer ([`FileSender`]) streams 64 MiB byte-exact, one chunk per drain, never
/// paused, with a bounded buffer.
fn a_pull_producer_streams_64_mib_byte_exact_with_a_bounded_buffer(kind: Kind) {
    const LEN: usize = 64 << 20;
    // A block length that is not a multiple of the 16 KiB chunk, so misordered chunks show.
    let block = Rc::new(pattern(64, 1_000_003));
    let flow = Shared::default();
    let done = Rc::new(RefCell::new(None::<u64>));
    let mut reactor = Reactor::new().unwrap();
    let (b, f, dn) = (block.clone(), flow.clone(), done.clone());
    let listener = listen(&mut reactor, kind, move |_| {
        struct Serve {
            block: Rc<Vec<u8>>,
            flow: Shared,
            done: Rc<RefCell<Option<u64>>>,
        }
        impl Protocol for Serve {
            fn connection_made(&mut self, cx: &mut Ctx<'_>) {
                let done = self.done.clone();
                let reader = Generated { block: self.block.clone(), left: LEN, offset: 0 };
                let sender = FileSender::new(reader).on_done(move |cx, result| {
                    *done.borrow_mut() = Some(result.expect("generated reads never fail"));
                    cx.transport().lose_connection();
                });
                let sampled = Sampled { inner: sender, flow: self.flow.clone() };
                cx.transport().register_producer(sampled, false).unwrap();
            }
            fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
        }
        Some(Serve { block: b.clone(), flow: f.clone(), done: dn.clone() })
    });
    // The reader reads 64 KiB at a time and checks each piece against the generator.
    let addr = listener.addr.clone();
    let expected = (*block).clone();
    let client = std::thread::spawn(move || -> io::Result<usize> {
        let mut stream = connect(kind, &addr);
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0usize;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            for (i, byte) in buf[..n].iter().enumerate() {
                let at = total + i;
                if *byte != expected[at % expected.len()] {
                    return Err(io::Error::other(format!("byte {at} differs")));
                }
            }
            total += n;
        }
    });
    run_until(&mut reactor, "the transfer finished and the connection closed", |r| {
        done.borrow().is_some() && r.connection_count() == 0
    });
    let total = client.join().expect("client thread panicked").expect("client i/o failed");
    assert_eq!(total, LEN, "every byte, then EOF");
    assert_eq!(*done.borrow(), Some(LEN as u64));
    let flow = flow.borrow();
    assert!(!flow.calls.contains(&"pause"), "a pull producer is never paused");
    assert!(!flow.calls.contains(&"stop"), "a finished transfer is not stopped");
    // One resume per 16 KiB chunk, and a last one that finds the end of the reader.
    assert_eq!(flow.calls.len(), LEN / (16 * 1024) + 1, "one resume per chunk");
    assert!(flow.max_buffer <= HIGH + 16 * 1024, "buffer peaked at {}", flow.max_buffer);
}
over_kinds!(a_pull_producer_streams_64_mib_byte_exact_with_a_bounded_buffer);

/// 10,000 one-byte writes in one callback are coalesced: they leave in one or two system calls.
fn ten_thousand_small_writes_in_one_callback_leave_in_a_few_system_calls(kind: Kind) {
    const WRITES: usize = 10_000;
    /// Writes 10,000 one-byte pieces at once; when the peer acknowledges (one byte back, sent
    /// after it read them all) records how many write system calls they took, and closes.
    struct Many {
        calls: Rc<RefCell<Option<u64>>>,
    }
    impl Protocol for Many {
        fn connection_made(&mut self, cx: &mut Ctx<'_>) {
            for i in 0..WRITES {
                cx.transport().write(&[(i % 251) as u8]);
            }
        }
        fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
            *self.calls.borrow_mut() = Some(cx.transport().write_calls());
            cx.transport().lose_connection();
        }
    }
    let calls = Rc::new(RefCell::new(None::<u64>));
    let mut reactor = Reactor::new().unwrap();
    let c = calls.clone();
    let listener = listen(&mut reactor, kind, move |_| Some(Many { calls: c.clone() }));
    let addr = listener.addr.clone();
    let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut stream = connect(kind, &addr);
        let mut got = vec![0; WRITES];
        stream.read_exact(&mut got)?;
        stream.write_all(b"k")?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest)?;
        assert!(rest.is_empty(), "nothing after the 10,000 bytes");
        Ok(got)
    });
    run_until(&mut reactor, "the writer counted and closed", |r| {
        calls.borrow().is_some() && r.connection_count() == 0
    });
    let got = join(client);
    let expected: Vec<u8> = (0..WRITES).map(|i| (i % 251) as u8).collect();
    assert!(got == expected, "all {WRITES} bytes in order");
    let calls = calls.borrow().unwrap();
    // 10 KB fits a loopback socket's send buffer: coalesced, it is one write_vectored.
    assert!((1..=2).contains(&calls), "{WRITES} writes made in one callback took {calls} system calls");
}
over_kinds!(ten_thousand_small_writes_in_one_callback_leave_in_a_few_system_calls);

/// What [`PausedAtStart`] is given.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Given {
    Made,
    Data(usize),
    Eof,
    Lost(DisconnectReason),
}

/// Pauses reading in `connection_made`; records what it is given.
struct PausedAtStart {
    log: Rc<RefCell<Vec<Given>>>,
    id: Rc<RefCell<Option<ConnId>>>,
}

impl Protocol for PausedAtStart {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().pause_reading();
        self.log.borrow_mut().push(Given::Made);
        *self.id.borrow_mut() = Some(cx.conn_id());
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
        self.log.borrow_mut().push(Given::Data(data.len()));
    }
    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.log.borrow_mut().push(Given::Eof);
        false
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.log.borrow_mut().push(Given::Lost(reason));
    }
}

/// Data and a FIN that arrive while reading is paused (from `connection_made`) are not
/// delivered however many turns pass; `resume_reading` from a loop-level task delivers all of
/// it, then `eof_received`, then `connection_lost(Clean)` (edge-triggered readiness will not
/// fire again: the resume must look at what the kernel already holds).
fn resume_reading_delivers_data_and_fin_that_arrived_while_paused_over_loopback(kind: Kind) {
    const LEN: usize = 32 * 1024;
    let log = Rc::new(RefCell::new(Vec::<Given>::new()));
    let id = Rc::new(RefCell::new(None));
    let mut reactor = Reactor::new().unwrap();
    let (l, i) = (log.clone(), id.clone());
    let listener = listen(&mut reactor, kind, move |_| Some(PausedAtStart { log: l.clone(), id: i.clone() }));
    let addr = listener.addr.clone();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut stream = connect(kind, &addr);
        stream.write_all(&pattern(9, LEN))?;
        stream.shutdown_write()?;
        sent_tx.send(()).expect("test thread gone");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest)?;
        Ok(rest)
    });
    // The data and the FIN sit in the kernel (the client's writes returned); none of it is
    // delivered while paused, however many turns pass.
    let mut sent = false;
    run_until(&mut reactor, "the client sent everything and its FIN", |_| {
        sent = sent || sent_rx.try_recv().is_ok();
        sent
    });
    for _ in 0..20 {
        reactor.run_until(std::time::Duration::from_millis(1), |_| false).unwrap();
    }
    assert_eq!(log.borrow().len(), 1, "only connection_made while paused: {:?}", log.borrow());
    let id = id.borrow().expect("connection_made recorded its id");
    // Resume from outside any callback of that connection: a reactor-level task.
    reactor.call_later(std::time::Duration::ZERO, move |cx| {
        cx.transport_for(id).expect("still open").resume_reading();
    });
    run_until(&mut reactor, "the connection to end", |_| {
        log.borrow().last().is_some_and(|e| matches!(e, Given::Lost(_)))
    });
    let log = log.borrow();
    let data: usize = log
        .iter()
        .map(|e| match e {
            Given::Data(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(data, LEN, "{log:?}");
    let n = log.len();
    assert_eq!(log[n - 2], Given::Eof, "the EOF after all the data: {log:?}");
    assert_eq!(log[n - 1], Given::Lost(DisconnectReason::Clean));
    assert_eq!(join(client), Vec::<u8>::new());
}
over_kinds!(resume_reading_delivers_data_and_fin_that_arrived_while_paused_over_loopback);

/// The producer/consumer contract on the in-memory harness (the real transport state machine,
/// a simulated peer, a manual clock): exact, deterministic checks of every rule, including
/// the edge cases that are hard to provoke over real sockets.
mod in_memory {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use torsion_reactor::testing::{Call, Harness};
    use torsion_reactor::{ConnId, Ctx, DisconnectReason, Error, Producer, Protocol, TimerId};
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

    /// The fast writer of the loopback tests above, in memory: writes 16 KiB pieces while `write` says
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

    /// Catalogue 15 (producer_edge_cases), clause (a): a second producer is refused with `Err`,
    /// and the first stays registered.
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

    /// Catalogue 15 (producer_edge_cases), clause (b): a producer that writes inside
    /// `resume_producing` is paused and resumed on every drain, and the buffer stays bounded.
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

    /// Catalogue 15 (producer_edge_cases), clause (c): a pull producer is never paused and is
    /// resumed after each drain.
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

    /// Catalogue 15 (producer_edge_cases), clause (d): `lose_connection` waits for the producer
    /// to unregister.
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
                assert!(
                    !h.fin_sent(id),
                    "FIN went out before the pull producer finished ({} bytes)",
                    got.len()
                );
            }
        }
        assert_eq!(
            got.len(),
            256 * 1024,
            "the whole transfer, then FIN: {:?} {:?}",
            log.borrow(),
            h.calls(id)
        );
        assert!(h.fin_sent(id));
        assert_eq!(entries(&log, "stop"), 0, "a producer that unregistered is not stopped");
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
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
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
    }

    /// Catalogue 15 (producer_edge_cases), clause (f): `stop_producing` is called once when the
    /// connection is lost.
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
        assert!(h.disconnect_reason(id).is_some_and(|r| r.is_lost()), "{:?}", h.disconnect_reason(id));
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
            self.timer = Some(cx.set_timer(Duration::from_secs(1)));
        }
        fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
            cx.transport().write(data);
        }
        fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
            cx.transport().lose_connection();
        }
    }

    /// Catalogue 15 (producer_edge_cases), clause (e): a resume after `lose_connection` does not
    /// restart reads.
    #[test]
    fn resume_producing_after_lose_connection_does_not_restart_reading() {
        let mut h = Harness::new();
        let id = h
            .accept(&mut |_| Some(Box::new(EchoClosingOnTimer { timer: None }) as Box<dyn Protocol>))
            .unwrap();
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
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
    }

    /// Pauses reading in `connection_made` and resumes it when its timer fires.
    struct PausedAtStart;

    impl Protocol for PausedAtStart {
        fn connection_made(&mut self, cx: &mut Ctx<'_>) {
            cx.transport().pause_reading();
            cx.transport().pause_reading();
            cx.set_timer(Duration::from_secs(1));
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
        let data: usize =
            calls.iter().filter_map(|c| if let Call::Data(n) = c { Some(*n) } else { None }).sum();
        assert_eq!(data, 11, "{calls:?}");
        let eof = calls.iter().position(|c| *c == Call::Eof).expect("the EOF after the data");
        assert!(calls[..eof].iter().all(|c| !matches!(c, Call::Lost(_))));
        assert!(calls[eof + 1..].iter().all(|c| !matches!(c, Call::Data(_))), "{calls:?}");
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
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
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::BufferOverflow));
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
        assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::Clean));
    }
}
