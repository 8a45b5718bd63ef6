//! End-to-end checks of the comparison echo servers built by this crate: each is
//! started as a child process, must announce `listening on <addr>`, must echo
//! correctly under the load generator, and must handle backpressure (a client that
//! stops reading for a while) without losing or reordering data.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use torsion_bench::loadgen::{pingpong, stream};
use torsion_bench::pattern::Pattern;

/// A server child process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program args.. --listen 127.0.0.1:0` and parses its first line.
fn start(program: &str, args: &[&str]) -> Server {
    let mut child = Command::new(program)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|a| a.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Server { child, addr }
}

fn check_loadgen(server: &Server) {
    let config = pingpong::Config {
        addr: server.addr,
        conns: 20,
        size: 64,
        limit: pingpong::Limit::Messages(200),
        timeout: Duration::from_secs(30),
    };
    let report = pingpong::run(&config).expect("pingpong");
    assert_eq!(report.messages, 20 * 200);

    let config = stream::Config {
        addr: server.addr,
        conns: 4,
        size: 64 * 1024,
        depth: 4,
        duration: Duration::from_millis(300),
    };
    let report = stream::run(&config).expect("stream");
    assert!(report.bytes > 0);
}

/// Sends 16 MiB while not reading the echo for a while, so the server's writes block
/// and it must buffer, stop reading, and later resume; then checks every byte.
fn check_backpressure(server: &Server) {
    const TOTAL: usize = 16 << 20;
    const CHUNK: usize = 64 * 1024;
    let pattern = Pattern::new(CHUNK);
    let mut reader = TcpStream::connect(server.addr).expect("connect");
    reader.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = reader.try_clone().unwrap();
    writer.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let sender = {
        let pattern = pattern.clone();
        thread::spawn(move || {
            let mut pos = 0;
            while pos < TOTAL {
                writer.write_all(pattern.window(pos as u64, CHUNK)).expect("write");
                pos += CHUNK;
            }
        })
    };
    // Let the socket buffers in both directions fill up.
    thread::sleep(Duration::from_millis(300));
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < TOTAL as u64 {
        let n = reader.read(&mut buf).expect("read");
        assert!(n > 0, "server closed after {pos} bytes");
        assert_eq!(pattern.verify(pos, &buf[..n]), Ok(()), "mismatch near offset {pos}");
        pos += n as u64;
    }
    sender.join().unwrap();
}

#[test]
fn raw_mio_echo() {
    let server = start(env!("CARGO_BIN_EXE_raw-mio-echo"), &[]);
    check_loadgen(&server);
    check_backpressure(&server);
}

#[test]
fn raw_mio_echo_with_small_reads() {
    // Reads that fill the (limited) buffer exercise the read-until-short loop.
    let server = start(env!("CARGO_BIN_EXE_raw-mio-echo"), &["--read-size", "1000"]);
    check_loadgen(&server);
    check_backpressure(&server);
}

#[test]
fn tokio_echo() {
    let server = start(env!("CARGO_BIN_EXE_tokio-echo"), &[]);
    check_loadgen(&server);
    check_backpressure(&server);
}

#[test]
fn asyncio_echo() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not found: skipping the asyncio server check");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/asyncio_echo.py");
    let server = start("python3", &[script]);
    check_loadgen(&server);
    check_backpressure(&server);
}
