//! What the process tests share: a child that is always reaped, bounded waits on it, the
//! `listening on <addr>` handshake (TCP or Unix), unique temporary socket paths, and bounded
//! runs of a command to completion.

#![allow(dead_code)] // Each test file uses a different part.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Kills and reaps its child when dropped, so no process outlives a failed test.
pub struct ChildGuard {
    /// The process.
    pub child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildGuard {
    /// Waits (bounded) for the child to exit; kills it and fails if it does not.
    pub fn wait_exit(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("{what}: the process did not exit within {WAIT:?}");
            }
            // A bounded poll of the process state, not a synchronisation sleep.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGINT through kill(1) (unsafe code is forbidden, so no libc::kill).
    pub fn interrupt(&self) {
        let status =
            Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().expect("run kill(1)");
        assert!(status.success(), "kill -INT failed: {status}");
    }
}

/// A command with a predictable environment: default logging, no stdin.
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove("RUST_LOG").stdin(Stdio::null());
    cmd
}

/// Reads `out` on a thread, handing each line over a channel, so reads can be bounded.
pub fn line_reader(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A running server binary with the address it announced.
pub struct Listening {
    /// The process.
    pub process: ChildGuard,
    /// The address from its `listening on <addr>` line.
    pub addr: SocketAddr,
    /// Lines after the first; kept so the pipe stays open.
    pub stdout: mpsc::Receiver<String>,
}

/// Starts `program` with `args` and returns it with its first stdout line and the reader of
/// the lines after it.
pub fn start_announcing(program: &str, args: &[&str]) -> (ChildGuard, String, mpsc::Receiver<String>) {
    let child = command(program, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let mut process = ChildGuard { child };
    let stdout = line_reader(process.child.stdout.take().unwrap());
    let first = match stdout.recv_timeout(WAIT) {
        Ok(line) => line,
        Err(e) => {
            let status = process.child.try_wait().ok().flatten();
            panic!("no first line from {program} ({e}); exit status so far: {status:?}");
        }
    };
    (process, first, stdout)
}

/// Starts `program` with `args` (which should listen on 127.0.0.1 port 0) and reads the real
/// address from its first stdout line, checking that line's form.
pub fn start_listening(program: &str, args: &[&str]) -> Listening {
    let (process, first, stdout) = start_announcing(program, args);
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line must be `listening on <addr>`, got {first:?}"));
    let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("bad address in {first:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "{first:?}");
    assert_ne!(addr.port(), 0, "the real port is announced, not 0: {first:?}");
    Listening { process, addr, stdout }
}

/// A running server binary listening on a Unix socket.
pub struct UnixListening {
    /// The process.
    pub process: ChildGuard,
    /// Lines after the first; kept so the pipe stays open.
    pub stdout: mpsc::Receiver<String>,
}

/// Starts `program` with `args` (which should include `--listen unix:<path>`) and checks that
/// its first stdout line is `listening on unix:<path>` and that the socket file exists.
pub fn start_listening_unix(program: &str, args: &[&str], path: &Path) -> UnixListening {
    let (process, first, stdout) = start_announcing(program, args);
    assert_eq!(first, format!("listening on unix:{}", path.display()), "the first line names the socket");
    assert!(is_socket(path), "{} is a socket file once the server announced it", path.display());
    UnixListening { process, stdout }
}

/// Whether `path` is a Unix socket file (not following symbolic links).
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false)
}

/// The inode of the file at `path`, to tell one socket file from another at the same path.
pub fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).ino()
}

/// A unique path for a Unix socket under the temp directory (this process's pid and a
/// counter), removed (if still there) when dropped.
pub struct TempSocket {
    /// The path; nothing is created there.
    pub path: PathBuf,
}

impl TempSocket {
    /// A fresh path ending in `-{tag}.sock`; nothing is at it yet.
    pub fn new(tag: &str) -> TempSocket {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("torsion-ex-{}-{n}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempSocket { path }
    }

    /// `unix:<path>`, as the examples take it.
    pub fn endpoint(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}

impl Drop for TempSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A blocking Unix-socket client with read and write timeouts of [`WAIT`].
pub fn connect_unix(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// A blocking client with read and write timeouts of [`WAIT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Runs a command to completion, bounded by [`WAIT`], collecting its output.
pub fn run_bounded(mut cmd: Command, what: &str) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut process = ChildGuard { child };
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = collect(process.child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = collect(process.child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = process.wait_exit(what);
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Lossy UTF-8, for messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A stream that can be cloned and half-closed: [`TcpStream`] and [`UnixStream`].
pub trait Duplex: Read + std::io::Write + Send + Sized + 'static {
    /// A second handle on the same socket.
    fn clone_stream(&self) -> Self;
    /// Sends FIN (shuts the write side down).
    fn close_write(&self) -> std::io::Result<()>;
}

impl Duplex for TcpStream {
    fn clone_stream(&self) -> Self {
        self.try_clone().expect("clone the stream")
    }
    fn close_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Duplex for UnixStream {
    fn clone_stream(&self) -> Self {
        self.try_clone().expect("clone the stream")
    }
    fn close_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// Writes `data` then FIN on a thread while reading on this one until EOF; returns what was
/// read. Reads are bounded by the stream's read timeout.
pub fn send_all_then_read_to_end<S: Duplex>(stream: S, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.clone_stream();
    let out = data.to_vec();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&out)?;
        writer.close_write()
    });
    let mut got = Vec::with_capacity(data.len());
    let mut reader = stream;
    reader.read_to_end(&mut got).expect("the echo, then EOF after our FIN");
    sender.join().unwrap().expect("write, then half-close");
    got
}

/// Deterministic bytes covering every value.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// The Python that has Twisted (from `TORSION_TWISTED_PYTHON`, or target/twisted-venv if it
/// imports Twisted), or `None` after a loud skip line naming `what` is not checked.
pub fn twisted_python(what: &str) -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("TORSION_TWISTED_PYTHON").filter(|p| !p.is_empty()) {
        // Set by .ci/run after a successful install: from here on Twisted is required, and an
        // interpreter that cannot run the script fails the test rather than skipping it.
        let python = PathBuf::from(python);
        assert!(python.exists(), "TORSION_TWISTED_PYTHON={} does not exist", python.display());
        return Some(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/twisted-venv/bin/python");
    let why = if venv.exists() {
        let mut check = Command::new(&venv);
        check.args(["-c", "import twisted.protocols.basic"]).stdin(Stdio::null());
        let out = run_bounded(check, "import twisted");
        if out.status.success() {
            return Some(venv);
        }
        format!("{} cannot import twisted: {}", venv.display(), text(&out.stderr).trim())
    } else {
        format!("TORSION_TWISTED_PYTHON is unset and there is no {}", venv.display())
    };
    // Straight to the process's stderr: the test harness captures eprintln!, and would hide
    // the skip of a passing test.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!! SKIPPED: Twisted not installed ({why}).\n!!! {what} is NOT checked against \
         real Twisted. Run .ci/run, or: python3 -m venv target/twisted-venv && \
         target/twisted-venv/bin/pip install twisted\n"
    );
    None
}

/// The Python that has the `websockets` library (from `TORSION_WS_PYTHON`, or target/ws-venv
/// if it imports it), or `None` after a loud skip line naming `what` is not checked.
pub fn ws_python(what: &str) -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("TORSION_WS_PYTHON").filter(|p| !p.is_empty()) {
        // Set by .ci/run after a successful install: from here on the library is required.
        let python = PathBuf::from(python);
        assert!(python.exists(), "TORSION_WS_PYTHON={} does not exist", python.display());
        return Some(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ws-venv/bin/python");
    let why = if venv.exists() {
        let mut check = Command::new(&venv);
        check.args(["-c", "import websockets.asyncio.client"]).stdin(Stdio::null());
        let out = run_bounded(check, "import websockets");
        if out.status.success() {
            return Some(venv);
        }
        format!("{} cannot import websockets: {}", venv.display(), text(&out.stderr).trim())
    } else {
        format!("TORSION_WS_PYTHON is unset and there is no {}", venv.display())
    };
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!! SKIPPED: Python websockets not installed ({why}).\n!!! {what} is NOT checked against \
         a real WebSocket implementation. Run .ci/run, or: python3 -m venv target/ws-venv && \
         target/ws-venv/bin/pip install websockets\n"
    );
    None
}
