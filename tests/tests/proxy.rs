//! Backpressure through the proxy example, A → P → B (TCP), with heap figures: catalogue 16.
//! Alone in its binary because of its counting global allocator.
//!
//! P's live heap is measured with a counting global allocator (A and B allocate everything up
//! front). One read can land on a buffer just below the high mark, so each direction can hold
//! 64 KiB + one read; DESIGN.md's read buffer is 256 KiB (the catalogue's policy §3.5 says
//! 64 KiB reads; DESIGN.md wins), so the bound is 2 × (64 KiB + 256 KiB) + 64 KiB.
//!
//! A floods P until P is seen (by a 5 ms sampler on P's reactor) with a full buffer towards B
//! and A paused; then A sends its FIN. B reads nothing until that FIN is out, then 64 KiB every
//! 100 ms for 1 s, then at full speed. Both hand-offs are conditions on sampled state, not
//! sleeps, so the kernel's buffer autotuning cannot make the FIN miss the pause.
//!
//! `examples/tests/proxy.rs` covers 256 MiB byte-exact with bounded buffers and the FIN/reset
//! forwarding; this adds the pause invariant, the heap figure and the FIN-while-paused order.

use std::alloc::System;
use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use cap::Cap;
use torsion_examples::proxy::Proxy;
use torsion_reactor::Reactor;
use torsion_tests::{serial, WAIT};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const HIGH: usize = 64 * 1024;
const READ_BUFFER: usize = 256 * 1024;
/// A gives up (and fails the test) if P takes this much without ever pausing it.
const MAX_FLOOD: usize = 256 << 20;

/// Byte `i` of the transfer: position-dependent, so a lost, repeated or reordered chunk shows.
fn byte_at(i: usize) -> u8 {
    (i.wrapping_mul(0x9E37_79B9) >> 13) as u8 ^ (i >> 20) as u8
}

/// One sample of P's state: the buffer towards B, whether A's reading is paused, and whether
/// A had already sent its FIN.
#[derive(Debug, Clone, Copy)]
struct Sample {
    to_b: usize,
    a_paused: bool,
    a_fin_sent: bool,
}

/// Catalogue 16 (proxy_backpressure): the proxy example, A → P → B, where B reads slowly
/// (64 KiB every 100 ms) and then at full speed. Pass:
/// - P stops reading A while its buffer towards B is above the high mark (sampled every 5 ms
///   on P's own reactor: never a sample with that buffer above 64 KiB and A being read);
/// - P's live heap stays within two buffers per pair plus a constant;
/// - A's FIN, sent while P has A paused, reaches B after resume, after every byte before it.
#[test]
fn proxy_backpressure_pauses_a_while_b_is_full_bounds_heap_and_delivers_a_fin_after_resume() {
    let _serial = serial();
    // B: reads nothing until told (once A's FIN is out, sent while P was paused), then slowly for
    // 1 s (64 KiB every 100 ms), then fast; checks every byte; after A's FIN it replies with
    // its count.
    // B's receive buffer is small and fixed (accepted sockets inherit it), so a slow B backs
    // data up into P's user buffer rather than the kernel's.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.listen(16).unwrap();
    let backend: TcpListener = socket.into();
    let b_addr = backend.local_addr().unwrap();
    let (go, b_go) = mpsc::channel::<()>();
    let b = std::thread::spawn(move || -> std::io::Result<(usize, Duration)> {
        let mut buf = vec![0u8; 64 * 1024];
        let (mut stream, _) = backend.accept()?;
        stream.set_read_timeout(Some(WAIT))?;
        b_go.recv_timeout(WAIT).map_err(|e| std::io::Error::other(format!("no go: {e}")))?;
        let started = Instant::now();
        let mut next = started;
        let mut total = 0;
        loop {
            let slow = started.elapsed() < Duration::from_secs(1);
            let n = if slow {
                // Pacing the reader, not synchronising.
                next += Duration::from_millis(100);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                stream.read(&mut buf)?
            } else {
                stream.read(&mut buf)?
            };
            if n == 0 {
                break;
            }
            if let Some(k) = (0..n).find(|&k| buf[k] != byte_at(total + k)) {
                return Err(std::io::Error::other(format!("byte {} differs", total + k)));
            }
            total += n;
        }
        let eof_after = started.elapsed();
        stream.write_all(format!("got {total}").as_bytes())?;
        Ok((total, eof_after))
    });

    let mut reactor = Reactor::new().unwrap();
    let proxy = Proxy::new(b_addr);
    let stats = proxy.stats();
    let p_addr =
        reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), proxy).unwrap().local_addr().inet().unwrap();

    // A: floods P until told to stop (once P is seen paused with a full buffer towards B),
    // then sends its FIN, which so arrives while P has A paused; then reads B's reply.
    let fin_sent = Arc::new(AtomicBool::new(false));
    let (stop_a, a_stop) = mpsc::channel::<()>();
    let mut piece = vec![0u8; 64 * 1024];
    let f = fin_sent.clone();
    let a = std::thread::spawn(move || -> std::io::Result<(usize, String)> {
        let mut stream = TcpStream::connect(p_addr)?;
        stream.set_nonblocking(true)?;
        let mut sent = 0;
        loop {
            if a_stop.try_recv().is_ok() {
                break;
            }
            if sent > MAX_FLOOD {
                return Err(std::io::Error::other(format!("P never paused: {sent} B taken")));
            }
            for (k, b) in piece.iter_mut().enumerate() {
                *b = byte_at(sent + k);
            }
            match stream.write(&piece) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Everything is full: wait for the word (bounded), then try again.
                    if a_stop.recv_timeout(Duration::from_millis(1)).is_ok() {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        stream.shutdown(Shutdown::Write)?;
        f.store(true, Ordering::SeqCst);
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(WAIT))?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok((sent, reply))
    });

    // Sample P every 5 ms, on its own reactor.
    let heap_start = ALLOCATOR.allocated();
    let samples = Rc::new(RefCell::new(Vec::<Sample>::with_capacity(10_000)));
    let max_heap = Rc::new(RefCell::new(0isize));
    let (s, m, f, st) = (samples.clone(), max_heap.clone(), fin_sent.clone(), stats.clone());
    let sampler = reactor.looping_call(Duration::from_millis(5), move |cx| {
        let mut m = m.borrow_mut();
        *m = (*m).max(ALLOCATOR.allocated() as isize - heap_start as isize);
        let mut to_b = None;
        let mut a_paused = None;
        for id in st.live_connections() {
            let Some(t) = cx.transport_for(id) else { continue };
            if t.peer_addr() == Some(b_addr.into()) {
                to_b = Some(t.write_buffer_len());
            } else {
                a_paused = Some(t.is_reading_paused());
            }
        }
        if let (Some(to_b), Some(a_paused)) = (to_b, a_paused) {
            let a_fin_sent = f.load(Ordering::SeqCst);
            if s.borrow().len() < s.borrow().capacity() {
                s.borrow_mut().push(Sample { to_b, a_paused, a_fin_sent });
            }
        }
    });
    let started = Instant::now();
    let deadline = started + WAIT;
    let (mut stop_a, mut go) = (Some(stop_a), Some(go));
    let mut paused_full_after = None;
    while !(a.is_finished() && b.is_finished()) {
        assert!(Instant::now() < deadline, "the transfer did not finish within {WAIT:?}");
        reactor.run_until(Duration::from_millis(5), |_| false).unwrap();
        // Conditions on P's sampled state, not sleeps: A sends its FIN once P is full and has
        // A paused; B starts reading once that FIN is out.
        if stop_a.is_some() && samples.borrow().iter().any(|s| s.a_paused && s.to_b > HIGH) {
            paused_full_after = Some(started.elapsed());
            let _ = stop_a.take().unwrap().send(());
        }
        if go.is_some() && fin_sent.load(Ordering::SeqCst) {
            let _ = go.take().unwrap().send(());
        }
    }
    reactor.cancel_timer(sampler);
    let (a_sent, reply) = a.join().unwrap().expect("A");
    let (b_total, b_eof_after) = b.join().unwrap().expect("B");
    assert_eq!(b_total, a_sent, "B got every byte A sent before its FIN");
    assert_eq!(reply, format!("got {a_sent}"), "B's reply after the forwarded FIN reached A");

    let samples = samples.borrow();
    let over: Vec<&Sample> = samples.iter().filter(|s| s.to_b > HIGH).collect();
    assert!(
        !over.is_empty(),
        "precondition: B was slow enough to fill P's buffer ({} samples)",
        samples.len()
    );
    let reading_while_full: Vec<&&Sample> = over.iter().filter(|s| !s.a_paused).collect();
    assert!(reading_while_full.is_empty(), "P read A while B's buffer was full: {reading_while_full:?}");
    assert!(
        samples.iter().any(|s| s.a_fin_sent && s.a_paused),
        "precondition: A's FIN was sent while P had A paused"
    );
    let max_heap = *max_heap.borrow();
    let bound = (2 * (HIGH + READ_BUFFER) + 64 * 1024) as isize;
    assert!(max_heap <= bound, "P's heap grew {max_heap} B (bound {bound})");
    eprintln!(
        "proxy_backpressure: {} samples, {} with B's buffer > 64 KiB, all with A paused; P full after \
         {paused_full_after:?}; A's FIN sent while paused reached B after all {a_sent} B, {b_eof_after:?} after \
         B started; P heap +{max_heap} B (bound {bound}); peak buffer to B {} B",
        samples.len(),
        over.len(),
        stats.max_to_backend()
    );
}
