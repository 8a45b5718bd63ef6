//! Write buffers and push/pull producers over real loopback sockets: a fast writer against a
//! slow reader stays bounded and alternates pause/resume exactly at the watermarks; a pull
//! producer streams 64 MiB byte-exact; thousands of small writes leave in few system calls.
//!
//! The same rules are checked without sockets in `flow_control_memory.rs`.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::TcpStream;
use std::rc::Rc;
use std::thread::JoinHandle;

use torsion_protocols::FileSender;
use torsion_reactor::{ConnId, Ctx, DisconnectReason, Producer, Protocol, Reactor};
use torsion_tests::{localhost, pattern, run_until, WAIT};

const HIGH: usize = 64 * 1024;

/// What a writer saw: flow-control calls in order, times `write` said "above high", the
/// largest buffer after any write, and how it ended.
#[derive(Debug, Default)]
struct Flow {
    calls: Vec<&'static str>,
    above_reports: usize,
    max_buffer: usize,
    sent: usize,
    lost: Option<String>,
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
        self.flow.borrow_mut().lost = Some(format!("{reason:?}"));
    }
}

/// Reads `len` bytes in `piece`-byte reads on a thread, then closes; returns what it read.
/// `pause_every` reads, it yields the CPU for a moment so that the writer outruns it (this
/// only makes the reader slow; nothing waits on it to synchronise).
fn slow_reader(addr: std::net::SocketAddr, len: usize, piece: usize) -> JoinHandle<io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(WAIT))?;
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

#[test]
fn slow_reader_fast_writer_over_loopback_stays_bounded_and_alternates() {
    const LEN: usize = 8 << 20;
    const CHUNK: usize = 16 * 1024;
    let data = Rc::new(pattern(21, LEN));
    let flow = Shared::default();
    let mut reactor = Reactor::new().unwrap();
    let (d, f) = (data.clone(), flow.clone());
    let port = reactor
        .listen_tcp(localhost(), move |_| {
            Some(Box::new(Blaster { data: d.clone(), chunk: CHUNK, paused: false, flow: f.clone() })
                as Box<dyn Protocol>)
        })
        .unwrap();
    let client = slow_reader(port.local_addr(), LEN, 4096);
    run_until(&mut reactor, "the client read everything and closed", |_| flow.borrow().lost.is_some());
    let got = join(client);
    assert_eq!(got.len(), LEN);
    assert!(got == *data, "all bytes arrive in order");
    assert_push_rules(&flow.borrow(), CHUNK);
}

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

#[test]
fn a_pull_producer_streams_64_mib_byte_exact_with_a_bounded_buffer() {
    const LEN: usize = 64 << 20;
    // A block length that is not a multiple of the 16 KiB chunk, so misordered chunks show.
    let block = Rc::new(pattern(64, 1_000_003));
    let flow = Shared::default();
    let done = Rc::new(RefCell::new(None::<u64>));
    let mut reactor = Reactor::new().unwrap();
    let (b, f, dn) = (block.clone(), flow.clone(), done.clone());
    let port = reactor
        .listen_tcp(localhost(), move |_| {
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
            Some(Box::new(Serve { block: b.clone(), flow: f.clone(), done: dn.clone() }) as Box<dyn Protocol>)
        })
        .unwrap();
    // The reader reads 64 KiB at a time and checks each piece against the generator.
    let addr = port.local_addr();
    let expected = (*block).clone();
    let client = std::thread::spawn(move || -> io::Result<usize> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(WAIT))?;
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

#[test]
fn ten_thousand_small_writes_in_one_callback_leave_in_a_few_system_calls() {
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
    let port = reactor
        .listen_tcp(localhost(), move |_| Some(Box::new(Many { calls: c.clone() }) as Box<dyn Protocol>))
        .unwrap();
    let addr = port.local_addr();
    let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(WAIT))?;
        let mut got = vec![0; WRITES];
        stream.read_exact(&mut got)?;
        io::Write::write_all(&mut stream, b"k")?;
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

/// Pauses reading in `connection_made`; records what it is given.
struct PausedAtStart {
    log: Rc<RefCell<Vec<String>>>,
    id: Rc<RefCell<Option<ConnId>>>,
}

impl Protocol for PausedAtStart {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().pause_reading();
        self.log.borrow_mut().push("made".into());
        *self.id.borrow_mut() = Some(cx.conn_id());
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
        self.log.borrow_mut().push(format!("data {}", data.len()));
    }
    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.log.borrow_mut().push("eof".into());
        false
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.log.borrow_mut().push(format!("lost {reason:?}"));
    }
}

#[test]
fn resume_reading_delivers_data_and_fin_that_arrived_while_paused_over_loopback() {
    const LEN: usize = 32 * 1024;
    let log = Rc::new(RefCell::new(Vec::<String>::new()));
    let id = Rc::new(RefCell::new(None));
    let mut reactor = Reactor::new().unwrap();
    let (l, i) = (log.clone(), id.clone());
    let port = reactor
        .listen_tcp(localhost(), move |_| {
            Some(Box::new(PausedAtStart { log: l.clone(), id: i.clone() }) as Box<dyn Protocol>)
        })
        .unwrap();
    let addr = port.local_addr();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(WAIT))?;
        io::Write::write_all(&mut stream, &pattern(9, LEN))?;
        stream.shutdown(std::net::Shutdown::Write)?;
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
        log.borrow().last().is_some_and(|e| e.starts_with("lost"))
    });
    let log = log.borrow();
    let data: usize =
        log.iter().filter_map(|e| e.strip_prefix("data ")).map(|n| n.parse::<usize>().unwrap()).sum();
    assert_eq!(data, LEN, "{log:?}");
    let n = log.len();
    assert_eq!(log[n - 2], "eof", "the EOF after all the data: {log:?}");
    assert_eq!(log[n - 1], "lost Clean");
    assert_eq!(join(client), Vec::<u8>::new());
}
