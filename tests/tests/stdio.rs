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

#[test]
fn standard_io_echoes_byte_exact_and_ends_at_end_of_input() {
    // "stdin" and "stdout": blocking Unix streams standing in for the inherited descriptors.
    let (stdin_child, mut stdin_test) = UnixStream::pair().unwrap();
    let (stdout_child, mut stdout_test) = UnixStream::pair().unwrap();
    stdout_test.set_read_timeout(Some(WAIT)).unwrap();
    stdin_test.set_write_timeout(Some(WAIT)).unwrap();

    let mut reactor = Reactor::new().unwrap();
    let lost = std::rc::Rc::new(std::cell::Cell::new(false));
    reactor.standard_io_with(stdin_child, stdout_child, Echo { lost: lost.clone() }).unwrap();

    let data = pattern(1024 * 1024);
    let sent = data.clone();
    let writer = thread::spawn(move || {
        stdin_test.write_all(&sent).unwrap();
        stdin_test.shutdown(Shutdown::Write).unwrap();
    });
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        stdout_test.read_to_end(&mut got).map(|_| got)
    });
    let done = lost.clone();
    run_until(&mut reactor, "connection_lost after end of input", move |_| done.get());
    writer.join().unwrap();
    let got = reader.join().unwrap().expect("the echo, then end of output");
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
