//! Running out of file descriptors on accept (EMFILE): the server neither spins nor stalls.
//! The echo-server runs as a child under `prlimit --nofile`, so only it is starved.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// Kills and reaps the child however the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's utime + stime, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Sends a byte and waits for the echo; `Ok(true)` if echoed, `Ok(false)` if closed (EOF or
/// reset) without a reply.
fn probe(stream: &mut TcpStream) -> std::io::Result<bool> {
    stream.set_read_timeout(Some(WAIT))?;
    match stream.write_all(b"x") {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => return Ok(false),
        Err(e) => return Err(e),
    }
    let mut buf = [0u8; 1];
    match stream.read(&mut buf) {
        Ok(1) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(false),
        Err(e) => Err(e),
    }
}

#[test]
fn emfile_on_accept_closes_the_queue_backs_off_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let mut child = Command::new("prlimit")
        .args(["--nofile=24:24", "--", env!("CARGO_BIN_EXE_echo-server"), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn echo-server under prlimit");
    let mut stdout = child.stdout.take().unwrap();
    let pid = child.id(); // prlimit execs the server in place: same PID
    let guard = Guard(child);
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        assert_eq!(stdout.read(&mut byte).expect("read server stdout"), 1, "server exited early");
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let addr: SocketAddr = line.trim().strip_prefix("listening on ").expect("first line").parse().unwrap();

    // Open far more connections than the server has descriptors for.
    let mut clients: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).expect("connect")).collect();
    let mut served = Vec::new();
    let mut closed = 0;
    for mut c in clients.drain(..) {
        if probe(&mut c).expect("every client is answered or closed, never left hanging") {
            served.push(c);
        } else {
            closed += 1;
        }
    }
    assert!(!served.is_empty(), "some clients were served");
    assert!(closed > 0, "the limit was hit: some queued clients were closed");

    // While starved with clients still queued, the server must not spin.
    let mut waiting: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).expect("connect")).collect();
    let before = cpu_ticks(pid);
    // A measurement window, not a synchronisation: CPU is sampled across it.
    std::thread::sleep(Duration::from_millis(1500));
    let spent = cpu_ticks(pid) - before;
    assert!(spent <= 15, "server burnt {spent} ticks in 1.5 s while out of descriptors");

    // Free the descriptors: new clients are served within the backoff (1 s) plus margin.
    drop(served);
    drop(waiting.drain(..));
    let freed = Instant::now();
    let deadline = freed + Duration::from_secs(5);
    loop {
        let mut c = TcpStream::connect(addr).expect("connect after recovery");
        if probe(&mut c).expect("probe") {
            // The retry timer is 1 s; allow for a loaded machine.
            assert!(freed.elapsed() < Duration::from_secs(3), "recovery took {:?}", freed.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "server did not recover after descriptors were freed");
        std::thread::park_timeout(Duration::from_millis(50));
    }
    drop(guard);
}
