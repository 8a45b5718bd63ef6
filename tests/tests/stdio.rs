//! Standard I/O as a connection (`Reactor::standard_io_with`, what `standard_io` does with
//! the process's own stdin and stdout): byte-exact echo with end of input as `eof_received`,
//! backpressure through a blocking writer, and the inherited descriptors left blocking.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::thread;

use torsion_reactor::{Ctx, DisconnectReason, Protocol, Reactor};
use torsion_tests::{run_until, WAIT};

/// Echoes; at end of input, closes after the flush. Records `connection_lost`.
struct Echo {
    lost: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        false
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        assert!(reason.is_clean(), "{reason}");
        self.lost.set(true);
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8 ^ (i >> 10) as u8).collect()
}

/// Writes `data` to "stdin" then ends it, runs the reactor until the protocol's
/// `connection_lost`, and returns everything "stdout" got up to its end.
fn feed_and_collect(
    reactor: &mut Reactor,
    mut stdin_test: UnixStream,
    mut stdout_test: UnixStream,
    data: &[u8],
    lost: &std::rc::Rc<std::cell::Cell<bool>>,
) -> Vec<u8> {
    let sent = data.to_vec();
    let writer = thread::spawn(move || {
        stdin_test.write_all(&sent).unwrap();
        stdin_test.shutdown(Shutdown::Write).unwrap();
    });
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        stdout_test.read_to_end(&mut got).map(|_| got)
    });
    let done = lost.clone();
    run_until(reactor, "connection_lost after end of input", move |_| done.get());
    writer.join().unwrap();
    reader.join().unwrap().expect("the echo, then end of output")
}

#[test]
fn standard_io_echoes_byte_exact_and_ends_at_end_of_input() {
    // "stdin" and "stdout": blocking Unix streams standing in for the inherited descriptors.
    let (stdin_child, stdin_test) = UnixStream::pair().unwrap();
    let (stdout_child, stdout_test) = UnixStream::pair().unwrap();
    stdout_test.set_read_timeout(Some(WAIT)).unwrap();
    stdin_test.set_write_timeout(Some(WAIT)).unwrap();

    let mut reactor = Reactor::new().unwrap();
    let lost = std::rc::Rc::new(std::cell::Cell::new(false));
    reactor.standard_io_with(stdin_child, stdout_child, Echo { lost: lost.clone() }).unwrap();

    let data = pattern(1024 * 1024);
    let got = feed_and_collect(&mut reactor, stdin_test, stdout_test, &data, &lost);
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
    assert_eq!(reactor.connection_count(), 0);
}

#[test]
fn standard_io_leaves_the_descriptors_blocking() {
    let (stdin_child, _stdin_test) = UnixStream::pair().unwrap();
    let (stdout_child, _stdout_test) = UnixStream::pair().unwrap();
    let (probe_in, probe_out) = (stdin_child.try_clone().unwrap(), stdout_child.try_clone().unwrap());
    let mut reactor = Reactor::new().unwrap();
    let lost = std::rc::Rc::new(std::cell::Cell::new(false));
    reactor.standard_io_with(stdin_child, stdout_child, Echo { lost }).unwrap();
    let _ = reactor.run_until(std::time::Duration::from_millis(20), |_| false).unwrap();
    // Clones share the open file description, where O_NONBLOCK lives: still blocking.
    for probe in [&probe_in, &probe_out] {
        let flags = fd_flags(probe);
        assert_eq!(flags & libc::O_NONBLOCK, 0, "O_NONBLOCK was set on an inherited descriptor");
    }
}

/// `fcntl(F_GETFL)` through /proc (no unsafe code): the `flags:` line of fdinfo, in octal.
fn fd_flags(stream: &UnixStream) -> i32 {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", stream.as_raw_fd())).unwrap();
    let line = info.lines().find(|l| l.starts_with("flags:")).expect("flags line");
    i32::from_str_radix(line["flags:".len()..].trim(), 8).unwrap()
}

/// Writes `greeting`, then closes at once (stdin still open). Records the order of events.
struct SayAndClose {
    greeting: &'static [u8],
    events: std::rc::Rc<std::cell::RefCell<Vec<&'static str>>>,
}

impl Protocol for SayAndClose {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.events.borrow_mut().push("connection_made");
        let mut transport = cx.transport();
        transport.write(self.greeting);
        transport.lose_connection();
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        assert!(reason.is_clean(), "{reason}");
        self.events.borrow_mut().push("connection_lost");
        cx.stop_reactor();
    }
}

#[test]
fn a_clean_close_while_stdin_is_open_does_not_linger_and_delivers_the_output() {
    // stdin stays open (the test never writes or closes it): a TCP-style linger would wait
    // for its end. The socket pair's far end is our own thread, so the close is immediate.
    let (stdin_child, _stdin_test) = UnixStream::pair().unwrap();
    let (stdout_child, mut stdout_test) = UnixStream::pair().unwrap();
    stdout_test.set_read_timeout(Some(WAIT)).unwrap();
    let mut reactor = Reactor::new().unwrap();
    let events = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let protocol = SayAndClose { greeting: b"bye\n", events: events.clone() };
    reactor.standard_io_with(stdin_child, stdout_child, protocol).unwrap();
    let seen = events.clone();
    run_until(&mut reactor, "connection_lost", move |_| seen.borrow().contains(&"connection_lost"));
    assert_eq!(reactor.source_count(), 0, "the standard I/O connection lingers after a clean close");
    let mut got = Vec::new();
    stdout_test.read_to_end(&mut got).expect("the output, then its end");
    assert_eq!(got, b"bye\n");
}

/// Counts the bytes written to it, slowly (a terminal or pipe that is slow to drain).
struct SlowCounter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Write for SlowCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(4096);
        thread::yield_now();
        self.0.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `len` bytes, closes, stops the reactor when lost.
struct Blurt {
    len: usize,
}

impl Protocol for Blurt {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let mut transport = cx.transport();
        transport.write(&pattern(self.len));
        transport.lose_connection();
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, _reason: DisconnectReason) {
        cx.stop_reactor();
    }
}

#[test]
fn run_returns_only_after_standard_output_has_everything_written_before_the_stop() {
    let (stdin_child, _stdin_test) = UnixStream::pair().unwrap();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut reactor = Reactor::new().unwrap();
    let len = 4 * 1024 * 1024;
    reactor.standard_io_with(stdin_child, SlowCounter(written.clone()), Blurt { len }).unwrap();
    reactor.run().unwrap();
    // A program exits right after `run` returns: its output must be out by then.
    assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), len);
}

#[test]
fn standard_io_opened_from_a_callback_starts_after_that_callback_and_echoes() {
    let (stdin_child, stdin_test) = UnixStream::pair().unwrap();
    let (stdout_child, stdout_test) = UnixStream::pair().unwrap();
    stdout_test.set_read_timeout(Some(WAIT)).unwrap();
    let mut reactor = Reactor::new().unwrap();
    let lost = std::rc::Rc::new(std::cell::Cell::new(false));
    let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let (echo_lost, callback_order) = (lost.clone(), order.clone());
    reactor.call_later(std::time::Duration::ZERO, move |cx| {
        let recorder = Recorder { order: callback_order.clone(), inner: Echo { lost: echo_lost } };
        cx.standard_io_with(stdin_child, stdout_child, recorder).expect("standard I/O");
        callback_order.borrow_mut().push("callback returned");
    });
    let data = pattern(256 * 1024);
    let got = feed_and_collect(&mut reactor, stdin_test, stdout_test, &data, &lost);
    assert!(got == data, "echoed bytes differ ({} of {} bytes)", got.len(), data.len());
    // No re-entrancy: connection_made ran after the callback that opened standard I/O.
    assert_eq!(order.borrow()[..2], ["callback returned", "connection_made"]);
}

/// Records `connection_made` and forwards everything to `inner`.
struct Recorder {
    order: std::rc::Rc<std::cell::RefCell<Vec<&'static str>>>,
    inner: Echo,
}

impl Protocol for Recorder {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.order.borrow_mut().push("connection_made");
        self.inner.connection_made(cx);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.inner.data_received(cx, data);
    }

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        self.inner.eof_received(cx)
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.inner.connection_lost(cx, reason);
    }
}
