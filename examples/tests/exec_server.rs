//! The real `exec-server` binary as a process: `-- cat` is a byte-exact echo server with
//! half-close (the client's FIN closes cat's stdin, cat's exit closes the connection after
//! its output), `-- sh -c 'exit 3'` closes connections cleanly, `--max-children` refuses
//! the surplus, SIGINT exits 0.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;

use common::{connect, pattern, send_all_then_read_to_end, start_listening, Listening};

const SERVER: &str = env!("CARGO_BIN_EXE_exec-server");

fn start(args: &[&str]) -> Listening {
    let mut all = vec!["--listen", "127.0.0.1:0", "--"];
    all.extend_from_slice(args);
    start_listening(SERVER, &all)
}

#[test]
fn exec_cat_is_a_byte_exact_echo_with_half_close() {
    let mut server = start(&["cat"]);
    // 8 MiB through socket → cat's stdin → cat's stdout → socket, with flow control both
    // ways (far more than the pipes, socket buffers and watermarks hold together), then a
    // half-close: cat sees its end of input, exits, and the connection closes after the rest.
    let data = pattern(8 * 1024 * 1024, 5);
    let got = send_all_then_read_to_end(connect(server.addr), &data);
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");

    // Two connections at once, each with its own cat.
    let a = connect(server.addr);
    let b = connect(server.addr);
    let (da, db) = (pattern(100_000, 1), pattern(70_000, 2));
    let db2 = db.clone();
    let other = std::thread::spawn(move || send_all_then_read_to_end(b, &db2));
    assert!(send_all_then_read_to_end(a, &da) == da);
    assert!(other.join().unwrap() == db);

    server.process.interrupt();
    let status = server.process.wait_exit("exec-server after SIGINT");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn exec_exit_3_closes_the_connection_cleanly() {
    let mut server = start(&["sh", "-c", "echo bye; exit 3"]);
    for _ in 0..3 {
        let mut stream = connect(server.addr);
        let mut got = Vec::new();
        // A clean close: the output, then EOF (a reset would be an error here).
        stream.read_to_end(&mut got).expect("output, then a clean EOF");
        assert_eq!(got, b"bye\n");
    }
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("exec-server after SIGINT").code(), Some(0));
}

#[test]
fn exec_max_children_refuses_the_surplus() {
    let mut server =
        start_listening(SERVER, &["--listen", "127.0.0.1:0", "--max-children", "1", "--", "cat"]);
    let mut first = connect(server.addr);
    // The first connection's cat answers, so it is running.
    first.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping\n");
    // The second is closed at once, with nothing sent.
    let mut second = connect(server.addr);
    let mut got = Vec::new();
    let _ = second.read_to_end(&mut got);
    assert!(got.is_empty());
    // The first still works; its half-close ends it.
    first.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("exec-server after SIGINT").code(), Some(0));
}

/// A client whose connection is lost (here reset: SO_LINGER 0) closes the child's stdin; a
/// child that ignores it gets SIGTERM after the grace period and is reaped (its /proc entry
/// goes away). A plain close is a FIN, which the server cannot tell from a half-close: that
/// only closes stdin (see the other tests).
#[test]
fn exec_client_disconnect_sigterms_the_child_after_grace() {
    let mut server = start(&["sh", "-c", "echo $$; exec sleep 30"]);
    let mut stream = connect(server.addr);
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        stream.read_exact(&mut byte).expect("the child's pid line");
        line.push(byte[0]);
    }
    let pid: u32 = String::from_utf8(line).unwrap().trim().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(stream);
    // Bounded poll: SIGTERM after the 2 s grace, then reaped by the server.
    wait_until("the child to be terminated and reaped", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("exec-server after SIGINT").code(), Some(0));
}

/// Polls `done` (every 5 ms, a bounded poll of process state) until it holds, failing with
/// `what` after [`common::WAIT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + common::WAIT;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
