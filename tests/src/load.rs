//! Logs, latency and load: log capture, `Stats`, `Pinger`, `LoadChild`.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::*;
use torsion_reactor::Address;

/// A `Write` sink shared with a tracing subscriber, to read the log back.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Log lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
}

/// Captures this thread's log at `level` and above until the guard drops.
pub fn capture_logs(level: tracing_subscriber::filter::LevelFilter) -> (Captured, impl Drop) {
    use tracing_subscriber::util::SubscriberInitExt;
    let captured = Captured::default();
    let sink = captured.clone();
    let guard = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(level)
        .finish()
        .set_default();
    (captured, guard)
}

/// p50, p99 and max of a set of durations (from a sorted `Vec<Duration>`).
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Stats {
    /// Sorts `samples` and reads the percentiles off it (nearest rank).
    pub fn of(mut samples: Vec<Duration>) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let rank =
            |p: f64| samples[(((samples.len() as f64) * p).ceil() as usize).clamp(1, samples.len()) - 1];
        Stats { n: samples.len(), p50: rank(0.50), p99: rank(0.99), max: *samples.last().unwrap() }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n={} p50={:?} p99={:?} max={:?}", self.n, self.p50, self.p99, self.max)
    }
}

/// A ping-pong client on its own thread: `conns` connections to `addr` (TCP or Unix), each
/// sending `msg` bytes and waiting for all of them back before sending again, one mio loop for
/// all. Records every round trip until told to stop.
#[derive(Debug)]
pub struct Pinger {
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    measured: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Result<Vec<Duration>, String>>>,
    started: Receiver<()>,
}

impl Pinger {
    /// Connects `conns` clients and starts ping-ponging once all are connected and have
    /// echoed once (so connection setup is not measured).
    pub fn start(addr: &Address, conns: usize, msg: usize) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let measuring = Arc::new(AtomicBool::new(false));
        let measured = Arc::new(AtomicUsize::new(0));
        let (started_tx, started) = mpsc::channel();
        let counters =
            Counters { stop: stop.clone(), measuring: measuring.clone(), measured: measured.clone() };
        let addr = addr.clone();
        let thread = std::thread::spawn(move || ping_loop(&addr, conns, msg, counters, started_tx));
        Pinger { stop, measuring, measured, thread: Some(thread), started }
    }

    /// Round trips measured so far (since [`Pinger::measure`]), for waiting (bounded) until the
    /// peers have done some more.
    pub fn round_trips(&self) -> usize {
        self.measured.load(Ordering::Relaxed)
    }

    /// Starts recording round trips (those before are warm-up).
    pub fn measure(&self) {
        self.measuring.store(true, Ordering::Relaxed);
    }

    /// Waits until every peer has done its first round trip.
    pub fn wait_started(&self) {
        self.started.recv_timeout(WAIT).expect("the pingers did not get going");
    }

    /// Stops and returns every round trip measured since [`Pinger::measure`].
    pub fn finish(mut self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().unwrap();
        wait_for("the pinger thread to end", || thread.is_finished());
        thread.join().expect("pinger panicked").unwrap_or_else(|e| panic!("pinger failed: {e}"))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A non-blocking mio stream of either kind.
enum MioStream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl MioStream {
    /// Connects (blocking, then switches to non-blocking).
    fn connect(addr: &Address) -> std::io::Result<MioStream> {
        match AnyStream::connect(addr)? {
            AnyStream::Tcp(s) => {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                Ok(MioStream::Tcp(mio::net::TcpStream::from_std(s)))
            }
            AnyStream::Unix(s) => {
                s.set_nonblocking(true)?;
                Ok(MioStream::Unix(mio::net::UnixStream::from_std(s)))
            }
        }
    }

    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> std::io::Result<()> {
        match self {
            MioStream::Tcp(s) => registry.register(s, token, mio::Interest::READABLE),
            MioStream::Unix(s) => registry.register(s, token, mio::Interest::READABLE),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            MioStream::Tcp(s) => s.read(buf),
            MioStream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            MioStream::Tcp(s) => s.write(buf),
            MioStream::Unix(s) => s.write(buf),
        }
    }
}

/// What the ping loop shares with its [`Pinger`].
struct Counters {
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    measured: Arc<AtomicUsize>,
}

struct Peer {
    stream: MioStream,
    sent_at: Instant,
    pending: usize,
    warm: bool,
}

fn ping_loop(
    addr: &Address,
    conns: usize,
    msg: usize,
    counters: Counters,
    started: mpsc::Sender<()>,
) -> Result<Vec<Duration>, String> {
    let Counters { stop, measuring, measured } = counters;
    let mut poll = mio::Poll::new().map_err(|e| e.to_string())?;
    let mut peers: HashMap<usize, Peer> = HashMap::new();
    for i in 0..conns {
        let mut stream = MioStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.register(poll.registry(), mio::Token(i)).map_err(|e| e.to_string())?;
        peers.insert(i, Peer { stream, sent_at: Instant::now(), pending: 0, warm: false });
    }
    let payload = vec![b'p'; msg];
    let mut buf = vec![0u8; 64 * 1024];
    let send = |peer: &mut Peer| -> Result<(), String> {
        peer.sent_at = Instant::now();
        peer.pending = payload.len();
        // A small write to a socket whose peer keeps up: the send buffer always has room.
        match peer.stream.write(&payload) {
            Ok(n) if n == payload.len() => Ok(()),
            Ok(n) => Err(format!("short write of {n}")),
            Err(e) => Err(format!("write: {e}")),
        }
    };
    for peer in peers.values_mut() {
        send(peer)?;
    }
    let mut samples = Vec::new();
    let mut warm = 0;
    let mut events = mio::Events::with_capacity(1024);
    let deadline_guard = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() > deadline_guard {
            return Err("ran for over 120 s".into());
        }
        poll.poll(&mut events, Some(Duration::from_millis(10))).map_err(|e| e.to_string())?;
        for event in events.iter() {
            let peer = peers.get_mut(&event.token().0).unwrap();
            loop {
                match peer.stream.read(&mut buf) {
                    Ok(0) => return Err("server closed a ping connection".into()),
                    Ok(n) => {
                        if n > peer.pending {
                            return Err(format!("{n} bytes back, {} expected", peer.pending));
                        }
                        peer.pending -= n;
                        if peer.pending == 0 {
                            let rtt = peer.sent_at.elapsed();
                            if peer.warm {
                                if measuring.load(Ordering::Relaxed) {
                                    samples.push(rtt);
                                    measured.fetch_add(1, Ordering::Relaxed);
                                }
                            } else {
                                peer.warm = true;
                                warm += 1;
                                if warm == conns {
                                    let _ = started.send(());
                                }
                            }
                            send(peer)?;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        }
    }
    Ok(samples)
}

/// The environment variable that turns a test binary into a load generator (see
/// [`LoadChild`]): `ADDR,CONNS,MSG`.
pub const LOAD_CHILD_ENV: &str = "TORSION_RELIABILITY_LOAD_CHILD";

/// A ping-pong load generator in a child process at the lowest CPU priority (`nice -n 19`):
/// the test binary re-run with only its `child_test` (which must call [`load_child_main`]).
/// On 2 cores a full-speed load client in the test's own process takes the server's CPU, and
/// the figures would measure the scheduler, not the reactor; niced, the load gets only what
/// the server leaves.
#[derive(Debug)]
pub struct LoadChild {
    child: Option<std::process::Child>,
}

impl LoadChild {
    /// Starts `conns` connections ping-ponging `msg` bytes to `addr` at full speed; returns once
    /// all are going.
    pub fn start(child_test: &str, addr: &Address, conns: usize, msg: usize) -> LoadChild {
        use std::io::BufRead;
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new("nice")
            .args(["-n", "19"])
            .arg(exe)
            .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
            .env(LOAD_CHILD_ENV, format!("{addr},{conns},{msg}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the load child");
        let stdout = child.stdout.take().unwrap();
        // Read its output on a thread (so the wait below is bounded, and the child never blocks
        // on a full pipe). libtest prints `test NAME ... ` before the test's own output.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.ends_with("load started") {
                    let _ = tx.send(());
                }
            }
        });
        let mut load = LoadChild { child: Some(child) };
        if rx.recv_timeout(WAIT).is_err() {
            drop(load.child.take().map(|mut c| (c.kill(), c.wait())));
            panic!("the load child did not start within {WAIT:?}");
        }
        load
    }
}

impl Drop for LoadChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a load child's test: does nothing unless [`LOAD_CHILD_ENV`] is set; then
/// ping-pongs until its stdin closes or it is killed.
pub fn load_child_main() {
    let Some(spec) = std::env::var_os(LOAD_CHILD_ENV) else { return };
    let spec = spec.into_string().unwrap();
    let parts: Vec<&str> = spec.split(',').collect();
    let addr: Address = parts[0].parse().unwrap();
    let (conns, msg) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
    let pinger = Pinger::start(&addr, conns, msg);
    pinger.wait_started();
    println!("load started");
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    pinger.measure();
    drop(pinger);
}
