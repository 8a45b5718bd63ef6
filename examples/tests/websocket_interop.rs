//! WebSocket interop with an implementation nobody here wrote, Python's `websockets`:
//! its client against torsion's `ws-echo` (text and binary echo up to 1 MiB, fragmented
//! sends, ping, close codes echoed, 1009 over the limit, and raw unmasked / non-UTF-8 frames
//! closed with 1002 / 1007), the same script against `websockets`' own echo server as a
//! control, and torsion's client ([`connect_ws`]) against that server.
//!
//! The library comes from `TORSION_WS_PYTHON` (.ci/run installs it into target/ws-venv); when
//! that variable is set these tests must pass, else they print a loud SKIPPED.

mod common;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;

use common::{line_reader, run_bounded, text, ws_python, ChildGuard, WAIT};
use torsion_protocols::websocket::{connect_ws, CloseInfo, Message, WsConfig, WsCtx, WsHandler};
use torsion_reactor::Reactor;

const WS_ECHO: &str = env!("CARGO_BIN_EXE_ws-echo");

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop").join(name)
}

fn run_client(python: &Path, addr: SocketAddr, against: &str) {
    let mut cmd = Command::new(python);
    cmd.arg(script("ws_client.py"))
        .arg(addr.to_string())
        .env("WS_CLIENT_DEADLINE", "18")
        .stdin(Stdio::null());
    let out = run_bounded(cmd, "ws_client.py");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "websockets client against {against}: {}\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("OK ")).count(), 5, "{stdout}");
    println!("websockets {against}:\n{stdout}");
}

fn python_server(python: &Path) -> (ChildGuard, SocketAddr) {
    let child = Command::new(python)
        .arg(script("ws_echo_server.py"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ws_echo_server.py");
    let mut guard = ChildGuard { child };
    let lines = line_reader(guard.child.stdout.take().unwrap());
    let first = lines.recv_timeout(WAIT).expect("the server's `listening on` line");
    let addr = first.strip_prefix("listening on ").expect("listening on <addr>").parse().unwrap();
    (guard, addr)
}

#[test]
fn websockets_client_against_ws_echo() {
    let Some(python) = ws_python("ws-echo") else { return };
    let mut server = common::start_listening(WS_ECHO, &["--listen", "127.0.0.1:0"]);
    run_client(&python, server.addr, "against torsion's ws-echo");
    server.process.interrupt();
    assert!(server.process.wait_exit("ws-echo").success());
}

#[test]
fn websockets_client_against_its_own_server_control() {
    let Some(python) = ws_python("the interop script's control run") else { return };
    let (_server, addr) = python_server(&python);
    run_client(&python, addr, "against its own server (control)");
}

/// Runs a fixed conversation, one step per echo: text, 1 MiB binary, a fragmented text, a
/// ping, then close 1000.
struct Script {
    step: usize,
    big: Vec<u8>,
    log: Rc<RefCell<Vec<String>>>,
}

impl WsHandler for Script {
    fn open(&mut self, wx: &mut WsCtx<'_, '_>) {
        wx.send_text("hello, wörld 𝄞");
    }

    fn message_received(&mut self, wx: &mut WsCtx<'_, '_>, message: Message<'_>) {
        self.step += 1;
        match (self.step, message) {
            (1, Message::Text(t)) => {
                self.log.borrow_mut().push(format!("text {t}"));
                wx.send_binary(&self.big);
            }
            (2, Message::Binary(b)) => {
                self.log.borrow_mut().push(format!("binary {} equal={}", b.len(), b == self.big));
                let whole = "fragmented é€".as_bytes();
                wx.send_fragment(true, true, false, &whole[..11]);
                wx.send_fragment(true, false, false, &whole[11..12]); // inside the `é`
                wx.send_fragment(true, false, true, &whole[12..]);
            }
            (3, Message::Text(t)) => {
                self.log.borrow_mut().push(format!("text {t}"));
                wx.ping(b"ping?");
            }
            (_, m) => panic!("unexpected message at step {}: {m:?}", self.step),
        }
    }

    fn pong_received(&mut self, wx: &mut WsCtx<'_, '_>, data: &[u8]) {
        self.log.borrow_mut().push(format!("pong {}", String::from_utf8_lossy(data)));
        wx.close(1000, "done");
    }

    fn connection_lost(&mut self, wx: &mut WsCtx<'_, '_>, close: CloseInfo) {
        self.log.borrow_mut().push(format!("closed {} clean={}", close.code, close.clean));
        wx.ctx().stop_reactor();
    }
}

#[test]
fn torsion_client_against_websockets_server() {
    let Some(python) = ws_python("torsion's WebSocket client") else { return };
    let (_server, addr) = python_server(&python);
    let mut reactor = Reactor::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let handler = Script { step: 0, big, log: log.clone() };
    connect_ws(&mut reactor, addr, "/", handler, Rc::new(WsConfig::default())).unwrap();
    // A bound on the whole conversation: a hang fails the test instead of blocking it.
    reactor.call_later(WAIT, |lx| lx.stop_reactor());
    reactor.run().unwrap();
    assert_eq!(
        *log.borrow(),
        [
            "text hello, wörld 𝄞",
            "binary 1048576 equal=true",
            "text fragmented é€",
            "pong ping?",
            "closed 1000 clean=true"
        ]
    );
}

#[test]
fn ws_echo_follows_the_command_line_conventions() {
    let out = run_bounded(common::command(WS_ECHO, &["--help"]), "ws-echo --help");
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("--listen"), "{}", text(&out.stdout));
    let out = run_bounded(common::command(WS_ECHO, &["--listen", "not an address"]), "ws-echo bad address");
    assert_eq!(out.status.code(), Some(2), "a usage error exits 2");
    assert_eq!(text(&out.stderr).trim().lines().count(), 1, "one line: {}", text(&out.stderr));
}
