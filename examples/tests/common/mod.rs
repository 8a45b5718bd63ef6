//! What the process tests share: a child that is always reaped, bounded waits on it, the
//! `listening on <addr>` handshake, and bounded runs of a command to completion.

#![allow(dead_code)] // Each test file uses a different part.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
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

/// Starts `program` with `args` (which should listen on 127.0.0.1 port 0) and reads the real
/// address from its first stdout line, checking that line's form.
pub fn start_listening(program: &str, args: &[&str]) -> Listening {
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
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line must be `listening on <addr>`, got {first:?}"));
    let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("bad address in {first:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "{first:?}");
    assert_ne!(addr.port(), 0, "the real port is announced, not 0: {first:?}");
    Listening { process, addr, stdout }
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
