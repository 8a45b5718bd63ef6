//! 10,000 concurrent idle connections (catalogue 18), over TCP and Unix stream sockets (a Unix
//! socket needs no ephemeral ports). Alone in its binary because of its counting global
//! allocator; each test also takes [`serial`].
//!
//! The server runs in this test process (on its own thread) so a counting global allocator
//! (`cap`) sees its live heap; the client is a separate process (a small python3 program,
//! below) that opens the connections in batches of 1,000, pings each on request and closes
//! them all on request. Pass:
//! - all 10,000 accepted within 10 s;
//! - live heap ≤ 1 KiB per connection for a bare protocol, ≤ 2 KiB with `LineReceiver`;
//! - RSS ≤ +16 MiB, and ≤ 50 ms of the server thread's CPU over 5 s idle (1% of a core);
//! - a ping on every connection answered within 5 s;
//! - after close, descriptors back to their baseline and the heap back to its baseline
//!   ±64 KiB, less what the reactor keeps to reuse: its slot tables do not shrink (measured
//!   and printed as "retained"; a second round must not grow it, so it is capacity, not a leak).
//!
//! The fd limit of this machine is 20,000 soft and hard, and cannot be raised. The server
//! needs about 10,100 descriptors: if the soft limit is lower, it is raised to the hard limit
//! with `prlimit --pid` (no unsafe code); the client runs under `prlimit --nofile=HARD:HARD`.
//! If the hard limit is too low, or python3/prlimit is missing, the test says SKIPPED.

use std::alloc::System;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cap::Cap;
use torsion_protocols::{LineCtx, LineHandler, LineReceiver};
use torsion_reactor::{Address, Ctx, Protocol};
use torsion_tests::{
    fd_count, nofile_limits, over_kinds, rss_bytes, serial, thread_cpu, wait_for, Kind, Server, WAIT,
};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const CONNECTIONS: usize = 10_000;

/// Live protocol objects.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The client: opens `n` connections to `target` (`HOST:PORT` for `tcp`, a socket path for
/// `unix`) in batches of 1,000, then obeys stdin:
/// `ping` sends "p\r\n" on every connection and waits for the echo, `close` closes them all.
/// Reports each step on stdout.
const CLIENT: &str = r#"
import socket, sys, time
kind, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def connect():
    if kind == "unix":
        # Blocking: a Unix connect waits for room in the backlog (with a timeout it would fail
        # with EAGAIN instead).
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(target)
        s.settimeout(30)
        return s
    host, port = target.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)
conns = []
t0 = time.monotonic()
try:
    while len(conns) < n:
        for _ in range(min(1000, n - len(conns))):
            conns.append(connect())
except OSError as e:
    print("error connecting after %d: %s" % (len(conns), e), flush=True)
    sys.exit(1)
print("connected %d %.3f" % (len(conns), time.monotonic() - t0), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "ping":
        t = time.monotonic()
        for s in conns:
            s.sendall(b"p\r\n")
        bad = 0
        for s in conns:
            got = b""
            while len(got) < 3:
                chunk = s.recv(3 - len(got))
                if not chunk:
                    break
                got += chunk
            if got != b"p\r\n":
                bad += 1
        print("pinged %d bad %d %.3f" % (len(conns), bad, time.monotonic() - t), flush=True)
    elif cmd == "close":
        for s in conns:
            s.close()
        print("closed", flush=True)
        break
"#;

/// Kills and reaps the client however the test ends.
struct ClientProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl ClientProcess {
    fn spawn(addr: &Address, hard: u64) -> Option<ClientProcess> {
        let (kind, target) = match addr {
            Address::Inet(inet) => ("tcp", inet.to_string()),
            Address::Unix(unix) => ("unix", unix.as_path().expect("a socket path").display().to_string()),
        };
        let mut child = Command::new("prlimit")
            .arg(format!("--nofile={hard}:{hard}"))
            .args(["--", "python3", "-c", CLIENT])
            .args([kind.to_string(), target, CONNECTIONS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Some(ClientProcess { child, stdin, lines })
    }

    fn say(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to the client process");
        self.stdin.flush().unwrap();
    }

    fn line(&self, what: &str, within: Duration) -> String {
        self.lines.recv_timeout(within).unwrap_or_else(|e| panic!("client process: no {what} line: {e}"))
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare protocol: echoes, holds nothing.
struct Bare;

impl Protocol for Bare {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A line protocol: echoes each line.
struct LinePing;

impl LineHandler for LinePing {
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        lx.send_line(line);
    }
}

impl Drop for LinePing {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Makes sure this process may hold the server's descriptors; `None` (and a SKIPPED message)
/// when it cannot. Returns the hard limit.
fn enough_descriptors() -> Option<u64> {
    let needed = CONNECTIONS as u64 + 500;
    let (soft, hard) = nofile_limits();
    if hard < needed {
        eprintln!("SKIPPED: the fd hard limit is {hard}, below the {needed} this test needs");
        return None;
    }
    if soft < needed {
        let status = Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string(), &format!("--nofile={hard}:{hard}")])
            .status();
        if !matches!(status, Ok(s) if s.success()) || nofile_limits().0 < needed {
            eprintln!("SKIPPED: cannot raise the fd soft limit {soft} to {hard} with prlimit: {status:?}");
            return None;
        }
    }
    Some(hard)
}

fn parse_secs(field: Option<&str>) -> Duration {
    Duration::from_secs_f64(field.and_then(|f| f.parse().ok()).expect("a time in seconds"))
}

/// Figures of one round.
struct Round {
    accepted_in: Duration,
    per_conn: f64,
    rss_growth: isize,
    idle_cpu: Duration,
    ping: Duration,
    heap_after_close: isize,
}

/// One round: 10,000 connections up, measured, pinged, idle, closed.
fn round(server: &Server, hard: u64, name: &str) -> Round {
    let fds = fd_count();
    let heap0 = ALLOCATOR.allocated();
    let rss0 = rss_bytes();
    let started = Instant::now();
    let Some(mut client) = ClientProcess::spawn(&server.addr, hard) else {
        panic!("cannot spawn the client process (prlimit + python3)");
    };
    let connected = client.line("connected", WAIT * 2);
    assert!(connected.starts_with(&format!("connected {CONNECTIONS} ")), "{name}: {connected}");
    wait_for("all connections accepted", || LIVE.load(Ordering::SeqCst) == CONNECTIONS);
    let accepted_in = started.elapsed();

    let heap1 = ALLOCATOR.allocated();
    let per_conn = (heap1 as f64 - heap0 as f64) / CONNECTIONS as f64;
    let rss_growth = rss_bytes() as isize - rss0 as isize;

    // Idle: the server thread's CPU over 5 s (a measurement window).
    let cpu0 = thread_cpu(server.tid);
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu = thread_cpu(server.tid) - cpu0;

    client.say("ping");
    let pinged = client.line("pinged", WAIT);
    let fields: Vec<&str> = pinged.split_whitespace().collect();
    assert_eq!(&fields[..4], ["pinged", &CONNECTIONS.to_string(), "bad", "0"], "{name}: {pinged}");
    let ping = parse_secs(fields.get(4).copied());

    client.say("close");
    assert_eq!(client.line("closed", WAIT), "closed");
    // Reap the client and let go of its pipes: they are descriptors of ours too.
    drop(client);
    wait_for("every connection closed", || LIVE.load(Ordering::SeqCst) == 0);
    wait_for("descriptors back to the baseline", || fd_count() == fds);
    let heap_after_close = ALLOCATOR.allocated() as isize - heap0 as isize;
    eprintln!(
        "idle_10k {name}: accepted in {accepted_in:?}; heap {per_conn:.0} B/conn; RSS +{:.1} MiB; idle CPU \
         {idle_cpu:?} over 5 s; ping all in {ping:?}; after close heap {heap_after_close:+} B, fds {fds}",
        rss_growth as f64 / (1 << 20) as f64
    );
    Round { accepted_in, per_conn, rss_growth, idle_cpu, ping, heap_after_close }
}

/// The whole test for one protocol: two rounds (the second shows the slot tables' retained
/// capacity is reused, not leaked).
fn idle_10k(kind: Kind, protocol: &str, heap_per_conn: f64, make: fn() -> Box<dyn Protocol>) {
    let name = &format!("{protocol} over {kind}");
    let _serial = serial();
    let Some(hard) = enough_descriptors() else { return };
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed (the client process)");
        return;
    }
    let server = Server::on(kind, move || {
        move |_| {
            LIVE.fetch_add(1, Ordering::SeqCst);
            Some(make())
        }
    });
    let first = round(&server, hard, name);
    let second = round(&server, hard, name);
    for (i, r) in [&first, &second].into_iter().enumerate() {
        assert!(
            r.accepted_in <= Duration::from_secs(10),
            "{name} round {i}: accepted in {:?}",
            r.accepted_in
        );
        assert!(r.per_conn <= heap_per_conn, "{name} round {i}: {:.0} B of heap per connection", r.per_conn);
        assert!(r.rss_growth <= 16 << 20, "{name} round {i}: RSS grew {} B", r.rss_growth);
        assert!(
            r.idle_cpu <= Duration::from_millis(50),
            "{name} round {i}: {:?} CPU over 5 s idle",
            r.idle_cpu
        );
        assert!(r.ping <= Duration::from_secs(5), "{name} round {i}: ping took {:?}", r.ping);
    }
    // What the first round leaves is retained capacity (slot tables); the second reuses it.
    assert!(
        second.heap_after_close <= 64 * 1024,
        "{name}: the second round left {:+} B more heap (first round retained {:+} B)",
        second.heap_after_close,
        first.heap_after_close
    );
    eprintln!(
        "idle_10k {name}: first round retained {:+} B (slot tables), second round {:+} B",
        first.heap_after_close, second.heap_after_close
    );
    server.stop();
}

/// Catalogue 18 (idle_10k), bare protocol: 10,000 idle connections accepted within 10 s, ≤ 1 KiB
/// of heap each, RSS ≤ +16 MiB, ≤ 50 ms of CPU over 5 s idle, every ping answered within
/// 5 s, and after close the heap and descriptors back to their baselines.
fn load_idle_10k_bare_protocol(kind: Kind) {
    idle_10k(kind, "bare", 1024.0, || Box::new(Bare));
}
over_kinds!(load_idle_10k_bare_protocol);

/// Catalogue 18 (idle_10k) with `LineReceiver`: as the bare protocol, ≤ 2 KiB of heap each.
fn load_idle_10k_line_receiver(kind: Kind) {
    idle_10k(kind, "LineReceiver", 2048.0, || Box::new(LineReceiver::new(LinePing)));
}
over_kinds!(load_idle_10k_line_receiver);
