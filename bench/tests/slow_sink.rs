//! End-to-end checks of the proxy benchmark's tools: the `slow-sink` backend (started as
//! a child process) really limits its read rate and closes on end of file, and the
//! `flood` workload writes to it for the requested time and reports a peer that closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use torsion_bench::loadgen::{flood, Mode};

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

/// Starts `slow-sink args.. --listen 127.0.0.1:0` and parses its first line.
fn start_sink(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slow-sink"))
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn slow-sink");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|a| a.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Server { child, addr }
}

#[test]
fn slow_sink_limits_its_read_rate_and_closes_on_eof() {
    // 1000 bytes per 10 ms: 50 000 bytes take at least 49 ticks, about half a second,
    // however fast they are written (the kernel buffers them all at once).
    let sink = start_sink(&["--read-bytes", "1000", "--interval-ms", "10"]);
    let mut stream = TcpStream::connect(sink.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    stream.write_all(&[7u8; 50_000]).expect("write");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    // The sink sends nothing and closes once it has read everything and the FIN.
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).expect("read until the sink closes");
    let elapsed = start.elapsed();
    assert_eq!(n, 0, "the sink must not send anything");
    assert!(elapsed >= Duration::from_millis(450), "read 50 000 bytes in {elapsed:?}: not rate-limited");
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
}

#[test]
fn flood_writes_to_a_slow_sink_for_the_duration() {
    let sink = start_sink(&[]);
    let config = flood::Config {
        addr: sink.addr.into(),
        conns: 5,
        size: 64 * 1024,
        duration: Duration::from_millis(300),
        idle: Duration::from_millis(100),
    };
    let start = Instant::now();
    let report = flood::run(&config).expect("flood");
    assert!(start.elapsed() >= Duration::from_millis(400), "the idle pause was skipped");
    assert_eq!(report.mode, Mode::Flood);
    assert_eq!(report.conns, 5);
    assert!(report.bytes > 0);
    assert_eq!(report.messages, report.bytes / (64 * 1024));
    assert!(report.elapsed >= Duration::from_millis(300), "{:?}", report.elapsed);
    assert!(report.elapsed < Duration::from_secs(10), "{:?}", report.elapsed);
    let line = report.machine_line();
    assert!(line.starts_with("RESULT mode=flood conns=5 size=65536 "), "{line}");
    assert!(report.human_line().contains("MB/s written"), "{}", report.human_line());
}

#[test]
fn flood_fails_when_the_server_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        // Accept both connections and close them at once.
        for _ in 0..2 {
            let Ok((stream, _)) = listener.accept() else { return };
            drop(stream);
        }
    });
    let config = flood::Config {
        addr: addr.into(),
        conns: 2,
        size: 4096,
        duration: Duration::from_secs(5),
        idle: Duration::ZERO,
    };
    let start = Instant::now();
    let err = flood::run(&config).expect_err("a closed connection must fail the flood");
    assert!(start.elapsed() < Duration::from_secs(5), "the failure must end the run early: {err}");
}

#[test]
fn flood_rejects_bad_parameters() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (conns, size) in [(0, 1), (1, 0), (1, flood::MAX_SIZE + 1)] {
        let config = flood::Config {
            addr: addr.into(),
            conns,
            size,
            duration: Duration::from_millis(10),
            idle: Duration::ZERO,
        };
        let err = flood::run(&config).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{conns} {size}: {err}");
    }
}
