//! `frame-echo` against the real Twisted: for each framing, Twisted's own `LineReceiver`,
//! `Int8/Int16/Int32StringReceiver` and `NetstringReceiver` (tests/interop/twisted_frames.py)
//! send frames of seeded random sizes from 0 to exactly the limit over loopback and check every
//! echo byte-exact and in order, then check that max+1 and malformed frames close the connection
//! without an echo. frame-echo runs as a process on port 0 and must exit 0 on SIGINT afterwards.
//!
//! The same script also runs against Twisted's own echo server (tests/interop/twisted_echo_server.py),
//! so the checks themselves are known to hold for the reference implementation.
//!
//! Twisted comes from the interpreter in `TORSION_TWISTED_PYTHON` (.ci/run sets it after
//! installing Twisted into target/twisted-venv); when that variable is set, these tests must pass.
//! Unset, target/twisted-venv/bin/python is used if it imports Twisted; otherwise each test
//! prints `SKIPPED: Twisted not installed` to stderr and returns.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use common::{line_reader, run_bounded, text, twisted_python, ChildGuard, WAIT};

/// The client script's own deadline (a reactor.callLater), within [`WAIT`], which bounds its
/// process from outside. A run takes well under a second.
const SCRIPT_DEADLINE_SECS: u64 = 15;

const FRAME_ECHO: &str = env!("CARGO_BIN_EXE_frame-echo");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Drains a pipe on a thread (so the child never blocks on it) and hands back what it read.
fn collect(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

fn interop_dir() -> PathBuf {
    Path::new(MANIFEST_DIR).join("../tests/interop")
}

/// A running echo server on 127.0.0.1 port 0, with the port it announced.
struct Server {
    name: String,
    process: ChildGuard,
    port: u16,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// Lines after the first; kept so the pipe stays open.
    _stdout: mpsc::Receiver<String>,
}

impl Server {
    fn start(name: String, mut cmd: Command) -> Server {
        let child = cmd
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut process = ChildGuard { child };
        let stdout = line_reader(process.child.stdout.take().unwrap());
        let stderr = Some(collect(process.child.stderr.take()));
        let first = match stdout.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => {
                let status = process.child.try_wait().ok().flatten();
                panic!("no first line from {name} ({e}); exit status so far: {status:?}");
            }
        };
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name}: first line must be `listening on <addr>`, got {first:?}"));
        let addr: std::net::SocketAddr =
            addr.parse().unwrap_or_else(|e| panic!("{name}: bad address in {first:?}: {e}"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1", "{name}: {first:?}");
        assert_ne!(addr.port(), 0, "{name}: the real port is announced, not 0: {first:?}");
        Server { name, process, port: addr.port(), stderr, _stdout: stdout }
    }

    /// SIGINT, then the exit status and everything the server wrote to stderr.
    fn stop(mut self) -> (ExitStatus, String) {
        self.process.interrupt();
        let status = self.process.wait_exit(&format!("{} after SIGINT", self.name));
        let stderr = self.stderr.take().map(|h| text(&h.join().unwrap())).unwrap_or_default();
        (status, stderr)
    }
}

/// Framing arguments shared by the servers and the client script.
fn framing_args(framing: &str, max_length: Option<u32>) -> Vec<String> {
    let mut args = vec!["--framing".to_string(), framing.to_string()];
    if let Some(max) = max_length {
        args.extend(["--max-length".to_string(), max.to_string()]);
    }
    args
}

/// Runs twisted_frames.py against `server`, then stops the server with SIGINT; both must exit 0.
fn drive(python: &Path, server: Server, framing: &str, max_length: Option<u32>) {
    let mut client = Command::new(python);
    client.arg(interop_dir().join("twisted_frames.py")).args(framing_args(framing, max_length)).args([
        "--port".to_string(),
        server.port.to_string(),
        "--timeout".to_string(),
        SCRIPT_DEADLINE_SECS.to_string(),
    ]);
    if let Some(seed) = std::env::var_os("TORSION_INTEROP_SEED") {
        client.arg("--seed").arg(seed);
    }
    let name = server.name.clone();
    client.stdin(Stdio::null());
    let out = run_bounded(client, &format!("twisted_frames.py against {name}"));
    let (server_status, server_stderr) = server.stop();
    assert!(
        out.status.success(),
        "Twisted's clients against {name}: exit status {}\n--- client stdout\n{}--- client stderr\n{}\
         --- {name} stderr\n{server_stderr}",
        out.status,
        text(&out.stdout),
        text(&out.stderr),
    );
    let report = text(&out.stdout);
    assert!(report.contains(&format!("PASS ({framing})")), "{report}");
    // One line per run (the script's full report is in the failure message above).
    let count = |tag: &str| report.lines().filter(|l| l.trim_start().starts_with(tag)).count();
    println!(
        "Twisted interop against {name}: {} checks passed, {} not applicable",
        count("ok "),
        count("skip ")
    );
    assert_eq!(
        server_status.code(),
        Some(0),
        "{name} exit status after SIGINT: {server_status}\n--- stderr\n{server_stderr}"
    );
}

/// frame-echo with `framing` (and `--max-length`, if given) against Twisted's clients.
fn frame_echo_with_twisted(framing: &str, max_length: Option<u32>) {
    let Some(python) = twisted_python("frame-echo") else { return };
    let mut cmd = Command::new(FRAME_ECHO);
    cmd.args(["--listen", "127.0.0.1:0"]).args(framing_args(framing, max_length));
    let limit = max_length.map_or("its default max-length".to_string(), |n| format!("--max-length {n}"));
    let server = Server::start(format!("frame-echo --framing {framing} with {limit}"), cmd);
    drive(&python, server, framing, max_length);
}

#[test]
fn line_with_twisted_line_receiver() {
    frame_echo_with_twisted("line", None);
}

#[test]
fn line_with_max_length_1000_with_twisted_line_receiver() {
    frame_echo_with_twisted("line", Some(1000));
}

#[test]
fn int8_with_twisted_int8_string_receiver() {
    // The default 99999 is beyond any int8 prefix: frames go up to 255 and max+1 cannot be sent.
    frame_echo_with_twisted("int8", None);
}

#[test]
fn int8_with_max_length_200_with_twisted_int8_string_receiver() {
    frame_echo_with_twisted("int8", Some(200));
}

#[test]
fn int16_with_twisted_int16_string_receiver() {
    // As for int8: frames go up to 65535, and max+1 needs a smaller limit (next test).
    frame_echo_with_twisted("int16", None);
}

#[test]
fn int16_with_max_length_40000_with_twisted_int16_string_receiver() {
    frame_echo_with_twisted("int16", Some(40000));
}

#[test]
fn int32_with_twisted_int32_string_receiver() {
    frame_echo_with_twisted("int32", None);
}

#[test]
fn int32_with_max_length_5000_with_twisted_int32_string_receiver() {
    frame_echo_with_twisted("int32", Some(5000));
}

#[test]
fn netstring_with_twisted_netstring_receiver() {
    frame_echo_with_twisted("netstring", None);
}

#[test]
fn netstring_with_max_length_5000_with_twisted_netstring_receiver() {
    frame_echo_with_twisted("netstring", Some(5000));
}

/// The yardstick: the same checks hold for Twisted's own echo server, so a failure above is
/// frame-echo's, not the script's.
#[test]
fn the_checks_hold_for_twisted_s_own_echo_server() {
    let Some(python) = twisted_python("frame-echo") else { return };
    let configs: [(&str, Option<u32>); 6] = [
        ("line", None),
        ("int8", Some(200)),
        ("int16", None),
        ("int32", None),
        ("netstring", None),
        ("netstring", Some(5000)),
    ];
    for (framing, max_length) in configs {
        let mut cmd = Command::new(&python);
        cmd.arg(interop_dir().join("twisted_echo_server.py"))
            .args(["--listen", "127.0.0.1:0"])
            .args(framing_args(framing, max_length));
        let server = Server::start(format!("Twisted's own echo server, {framing} {max_length:?}"), cmd);
        drive(&python, server, framing, max_length);
    }
}

/// `frame-echo --threads 2` (a pool of reactors, issue 16) against Twisted's netstring and
/// line clients: the same checks, with the script's concurrent connections spread over two
/// reactor threads.
#[test]
fn netstring_and_line_on_two_reactor_threads_with_twisted_receivers() {
    let Some(python) = twisted_python("frame-echo") else { return };
    for framing in ["netstring", "line"] {
        let mut cmd = Command::new(FRAME_ECHO);
        cmd.args(["--listen", "127.0.0.1:0", "--threads", "2"]).args(framing_args(framing, None));
        let server = Server::start(format!("frame-echo --threads 2 --framing {framing}"), cmd);
        drive(&python, server, framing, None);
    }
}
