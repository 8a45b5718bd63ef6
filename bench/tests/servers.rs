//! End-to-end checks of the comparison echo servers built by this crate: each is
//! started as a child process, must announce `listening on <addr>`, must echo
//! correctly under the load generator, and must handle backpressure (a client that
//! stops reading for a while) without losing or reordering data. `raw-mio-echo` is
//! checked over TCP and over a Unix socket. The UDP echoes (`raw-mio-udp-echo`,
//! `asyncio_udp_echo.py`) are checked with the load generator's `udp-pingpong`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use torsion_bench::loadgen::{pingpong, stream, udp};
use torsion_bench::pattern::Pattern;
use torsion_bench::Endpoint;

/// A server child process, killed when dropped (and its Unix socket file removed).
struct Server {
    child: Child,
    addr: Endpoint,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Endpoint::Unix(path) = &self.addr {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Starts `program args.. --listen 127.0.0.1:0` and parses its first line.
fn start(program: &str, args: &[&str]) -> Server {
    start_on(program, args, "127.0.0.1:0")
}

/// A Unix socket path in the temporary directory that no other test uses.
fn socket_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("torsion-bench-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Starts `program args.. --listen LISTEN` and parses its first line.
fn start_on(program: &str, args: &[&str], listen: &str) -> Server {
    let mut child = Command::new(program)
        .args(args)
        .args(["--listen", listen])
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
        addr: server.addr.clone(),
        conns: 20,
        size: 64,
        limit: pingpong::Limit::Messages(200),
        timeout: Duration::from_secs(30),
    };
    let report = pingpong::run(&config).expect("pingpong");
    assert_eq!(report.messages, 20 * 200);

    let config = stream::Config {
        addr: server.addr.clone(),
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
    let timeout = Some(Duration::from_secs(20));
    match &server.addr {
        Endpoint::Tcp(addr) => {
            let reader = TcpStream::connect(addr).expect("connect");
            reader.set_read_timeout(timeout).unwrap();
            let writer = reader.try_clone().unwrap();
            writer.set_write_timeout(timeout).unwrap();
            backpressure(reader, writer);
        }
        Endpoint::Unix(path) => {
            let reader = UnixStream::connect(path).expect("connect");
            reader.set_read_timeout(timeout).unwrap();
            let writer = reader.try_clone().unwrap();
            writer.set_write_timeout(timeout).unwrap();
            backpressure(reader, writer);
        }
        other => panic!("no backpressure check for {other}"),
    }
}

/// The backpressure check on one connection, given as its two halves (with timeouts).
fn backpressure<S: Read + Write + Send + 'static>(mut reader: S, mut writer: S) {
    const TOTAL: usize = 16 << 20;
    const CHUNK: usize = 64 * 1024;
    let pattern = Pattern::new(CHUNK);
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
fn raw_mio_echo_over_a_unix_socket() {
    let path = socket_path("raw-mio");
    let listen = format!("unix:{}", path.display());
    let server = start_on(env!("CARGO_BIN_EXE_raw-mio-echo"), &["--read-size", "1000"], &listen);
    assert_eq!(server.addr, Endpoint::Unix(path), "the first line names the socket");
    check_loadgen(&server);
    check_backpressure(&server);
}

#[test]
fn raw_mio_echo_refuses_an_existing_unix_path() {
    // Binding over a file that exists (here: a regular file) must fail with a message,
    // not announce anything or remove the file.
    let path = socket_path("raw-mio-existing");
    std::fs::write(&path, b"not a socket").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_raw-mio-echo"))
        .args(["--listen", &format!("unix:{}", path.display())])
        .output()
        .expect("run raw-mio-echo");
    let _ = std::fs::remove_file(&path);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "{:?}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen on unix:"));
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

/// The UDP load generator against a UDP echo server: some datagrams are echoed and none is
/// lost on loopback at this light load.
fn check_udp(server: &Server) {
    let Endpoint::Tcp(addr) = server.addr else { panic!("a UDP server announces IP:PORT") };
    let config = udp::Config { addr, conns: 8, size: 64, duration: Duration::from_millis(300) };
    let (report, lost) = udp::run(&config).expect("udp-pingpong");
    assert!(report.messages > 0, "no datagram echoed");
    assert_eq!(lost, 0, "datagrams lost on loopback at light load");
}

#[test]
fn raw_mio_udp_echo() {
    let server = start(env!("CARGO_BIN_EXE_raw-mio-udp-echo"), &[]);
    check_udp(&server);
}

#[test]
fn asyncio_udp_echo() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not found: skipping the asyncio UDP server check");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/asyncio_udp_echo.py");
    let server = start("python3", &[script]);
    check_udp(&server);
}
