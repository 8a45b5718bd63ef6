//! The chat server with clients nobody here wrote: `nc`, `socat` and `telnet` as child
//! processes, their stdin and stdout piped, talking to each other through the room.
//!
//! `.ci/run` installs the three tools (Debian packages netcat-openbsd, socat, telnet) when they
//! are missing; elsewhere a missing tool skips this test with a loud message.

mod chat_util;
mod common;

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;

use chat_util::start_chat;
use common::{line_reader, ChildGuard, WAIT};

/// A client program with its stdin and the lines of its stdout.
struct Tool {
    name: &'static str,
    process: ChildGuard,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Tool {
    fn spawn(name: &'static str, program: &str, args: &[String]) -> Tool {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let mut process = ChildGuard { child };
        let stdin = process.child.stdin.take();
        let lines = line_reader(process.child.stdout.take().unwrap());
        Tool { name, process, stdin, lines }
    }

    /// Types a line (the tool adds its own line ending: `\n` for nc and socat, `\r\n` for
    /// telnet).
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
    }

    /// Waits (bounded) for the next line that is not the tool's own chatter (telnet prints
    /// `Trying ...`, `Connected to ...` and `Escape character is ...` first).
    fn expect(&mut self, expected: &str) {
        loop {
            let line = self.lines.recv_timeout(WAIT).unwrap_or_else(|e| {
                panic!("{}: no line within {WAIT:?} while waiting for {expected:?}: {e}", self.name)
            });
            let line = line.trim_end_matches('\r');
            if line.starts_with("Trying ")
                || line.starts_with("Connected to ")
                || line.starts_with("Escape character")
            {
                continue;
            }
            assert_eq!(line, expected, "{} read the wrong line", self.name);
            return;
        }
    }

    /// Waits (bounded) for the tool to exit after the server closed the connection.
    fn expect_exit(&mut self) {
        // Closing our end of stdin lets nc and socat finish once the socket is closed too.
        drop(self.stdin.take());
        let status = self.process.wait_exit(self.name);
        let rest: Vec<String> = self.lines.try_iter().collect();
        let unexpected: Vec<&String> = rest.iter().filter(|l| !l.starts_with("Connection closed")).collect();
        assert!(
            unexpected.is_empty(),
            "{} printed more after the close: {unexpected:?} ({status})",
            self.name
        );
    }
}

fn find(program: &str) -> Option<String> {
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then_some(path)
}

#[test]
fn nc_socat_and_telnet_chat_with_each_other() {
    let tools: Vec<Option<String>> = ["nc", "socat", "telnet"].iter().map(|p| find(p)).collect();
    let [Some(nc), Some(socat), Some(telnet)] = &tools[..] else {
        eprintln!("!!! SKIPPED: nc, socat or telnet is not installed ({tools:?}); .ci/run installs them");
        return;
    };
    let mut server = start_chat(&[]);
    let (host, port) = (server.addr.ip().to_string(), server.addr.port().to_string());

    let mut alice = Tool::spawn("nc", nc, &["-N".into(), host.clone(), port.clone()]);
    alice.expect("Welcome! What's your name?");
    alice.send("alice");
    alice.expect("Welcome, alice! Online: alice");

    let mut bob = Tool::spawn("socat", socat, &["-".into(), format!("TCP:{host}:{port}")]);
    bob.expect("Welcome! What's your name?");
    bob.send("bob");
    bob.expect("Welcome, bob! Online: alice, bob");
    alice.expect("* bob has joined");

    let mut carol = Tool::spawn("telnet", telnet, &[host.clone(), port.clone()]);
    carol.expect("Welcome! What's your name?");
    carol.send("carol");
    carol.expect("Welcome, carol! Online: alice, bob, carol");
    alice.expect("* carol has joined");
    bob.expect("* carol has joined");

    alice.send("hi from nc");
    bob.expect("<alice> hi from nc");
    carol.expect("<alice> hi from nc");
    bob.send("hi from socat");
    alice.expect("<bob> hi from socat");
    carol.expect("<bob> hi from socat");
    carol.send("hi from telnet");
    alice.expect("<carol> hi from telnet");
    bob.expect("<carol> hi from telnet");
    carol.send("/me waves");
    alice.expect("* carol waves");
    bob.expect("* carol waves");

    carol.send("/quit");
    carol.expect("Bye!");
    carol.expect_exit();
    alice.expect("* carol has left");
    bob.expect("* carol has left");
    bob.send("/quit");
    bob.expect("Bye!");
    bob.expect_exit();
    alice.expect("* bob has left");
    alice.send("/quit");
    alice.expect("Bye!");
    alice.expect_exit();

    server.process.interrupt();
    assert_eq!(server.process.wait_exit("chat-server after SIGINT").code(), Some(0));
}
