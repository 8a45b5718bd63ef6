//! The chat room in a real browser: `chat-server --web` is opened in headless Chromium, driven
//! over the DevTools protocol (by torsion's own WebSocket client), beside an `nc`-style line
//! client in the same room. A name and a message typed in the page reach the line client as
//! `<name> message`; a line from the line client shows in the page's transcript (read back
//! from the DOM); hostile text (HTML, ANSI escapes) shows literally and runs nothing. A
//! screenshot is saved as target/chat-browser.png for a person to look at. Then the server
//! restarts on the same port and the page reconnects by itself and logs back in.
//!
//! Chromium is fenced in as /work/shared/reference/headless-chromium.md says: a dead proxy,
//! host resolution limited to 127.0.0.1, background services off, a throwaway profile.
//! Without Chromium (.ci/run installs Debian's `chromium`) the test prints a loud SKIPPED.

mod common;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{start_announcing, ChildGuard, WAIT};
use serde_json::{json, Value};
use torsion_protocols::websocket::{connect_ws, CloseInfo, Message, WsConfig, WsCtx, WsHandler};
use torsion_reactor::{ConnId, Reactor, TimerId};

const CHAT_SERVER: &str = env!("CARGO_BIN_EXE_chat-server");

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TORSION_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return Some(PathBuf::from(candidate));
        }
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!! SKIPPED: Chromium not installed (no /usr/bin/chromium, TORSION_CHROMIUM unset).\n!!! \
         The chat page is NOT checked in a real browser. Run .ci/run, or: apt-get install chromium\n"
    );
    None
}

/// What the DevTools connection shares with the test: commands to send, what came back.
#[derive(Default)]
struct CdpState {
    outbox: Vec<String>,
    inbox: Vec<Value>,
    open: bool,
    closed: Option<CloseInfo>,
}

struct CdpHandler(Rc<RefCell<CdpState>>);

impl CdpHandler {
    fn flush(&self, wx: &mut WsCtx<'_, '_>) {
        for message in std::mem::take(&mut self.0.borrow_mut().outbox) {
            wx.send_text(&message);
        }
    }
}

impl WsHandler for CdpHandler {
    fn open(&mut self, wx: &mut WsCtx<'_, '_>) {
        self.0.borrow_mut().open = true;
        self.flush(wx);
    }
    fn message_received(&mut self, _wx: &mut WsCtx<'_, '_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(text).expect("DevTools sends JSON");
            self.0.borrow_mut().inbox.push(value);
        }
    }
    fn timer_fired(&mut self, wx: &mut WsCtx<'_, '_>, _timer: TimerId) {
        self.flush(wx);
    }
    fn connection_lost(&mut self, _wx: &mut WsCtx<'_, '_>, close: CloseInfo) {
        self.0.borrow_mut().closed = Some(close);
    }
}

/// A blocking DevTools client over torsion's WebSocket client: each call runs the reactor
/// until its answer is in, bounded by [`WAIT`].
struct Cdp {
    reactor: Reactor,
    conn: ConnId,
    state: Rc<RefCell<CdpState>>,
    next_id: u64,
}

impl Cdp {
    fn connect(addr: SocketAddr, path: &str) -> Cdp {
        let mut reactor = Reactor::new().unwrap();
        let state = Rc::new(RefCell::new(CdpState::default()));
        // Screenshots come back as one large message.
        let config = Rc::new(WsConfig::default().max_message(64 << 20).max_frame(64 << 20));
        let conn = connect_ws(&mut reactor, addr, path, CdpHandler(state.clone()), config).unwrap();
        let s = state.clone();
        let open = reactor.run_until(WAIT, move |_| s.borrow().open || s.borrow().closed.is_some()).unwrap();
        assert!(open && state.borrow().open, "DevTools WebSocket did not open: {:?}", state.borrow().closed);
        Cdp { reactor, conn, state, next_id: 1 }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.state.borrow_mut().outbox.push(message);
        // Wake the connection's handler, which sends the outbox from `timer_fired`.
        let conn = self.conn;
        self.reactor.call_later(Duration::ZERO, move |lx| {
            lx.set_timer_for(conn, Duration::ZERO);
        });
        let s = self.state.clone();
        let answered = self
            .reactor
            .run_until(WAIT, move |_| {
                let s = s.borrow();
                s.closed.is_some() || s.inbox.iter().any(|m| m["id"] == id)
            })
            .unwrap();
        let mut state = self.state.borrow_mut();
        assert!(answered, "no answer to {method} within {WAIT:?}");
        let i = state.inbox.iter().position(|m| m["id"] == id).unwrap_or_else(|| {
            panic!("DevTools closed during {method}: {:?}", state.closed);
        });
        let answer = state.inbox.remove(i);
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is true, within [`WAIT`]; between tries the reactor
    /// runs (bounded) so events keep flowing.
    fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.eval(expression) == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let text = self.eval("document.body.innerText");
                panic!("{what}: `{expression}` not true within {WAIT:?}; the page shows:\n{text}");
            }
            let _ = self.reactor.run_until(Duration::from_millis(50), |_| false);
        }
    }

    fn type_line(&mut self, text: &str) {
        self.eval("document.getElementById('input').focus(); true");
        self.call("Input.insertText", json!({ "text": text }));
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({ "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                        "nativeVirtualKeyCode": 13, "text": if kind == "keyDown" { "\r" } else { "" } }),
            );
        }
    }

    fn dialogs_opened(&self) -> usize {
        self.state.borrow().inbox.iter().filter(|m| m["method"] == "Page.javascriptDialogOpening").count()
    }
}

/// A line client, as `nc` would be.
struct LineClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl LineClient {
    fn connect(addr: SocketAddr) -> LineClient {
        let stream = common::connect(addr);
        LineClient { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
    }
    fn send(&mut self, line: &[u8]) {
        self.writer.write_all(line).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }
    /// Reads lines until one equals `want` (the read timeout bounds each read).
    fn expect(&mut self, want: &str) {
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("waiting for {want:?}: {e}; saw {seen:?}"));
            assert!(n > 0, "EOF while waiting for {want:?}; saw {seen:?}");
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            if line == want {
                return;
            }
            seen.push(line);
        }
    }
}

/// Holds a port bound but not listening: Chromium's proxy, so that anything not on loopback
/// fails at once.
fn dead_port() -> (socket2::Socket, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    (socket, port)
}

/// A GET answered with a `Content-Length` body (Chromium's DevTools endpoint keeps the
/// connection open whatever the request says, so the body is read by its length).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = common::connect(addr);
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// Chromium's throwaway profile, removed however the test ends (declared before the browser,
/// so the browser is killed first).
struct Profile(PathBuf);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

#[test]
fn browser_and_line_client_talk_in_one_room() {
    let Some(chromium) = chromium() else { return };
    let (mut server, first, stdout) =
        start_announcing(CHAT_SERVER, &["--listen", "127.0.0.1:0", "--web", "127.0.0.1:0"]);
    let line_addr: SocketAddr = first.strip_prefix("listening on ").expect("first line").parse().unwrap();
    let second = stdout.recv_timeout(WAIT).expect("a second line");
    let url = second.strip_prefix("web on ").expect("second line: `web on http://<addr>/`").to_owned();
    let web_addr: SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();

    // The page must reference no other host before a browser opens it.
    let page = http_get(web_addr, "/");
    assert!(page.contains("<title>torsion chat</title>"));
    for outside in ["http://", "https://", "src=\"//", "url("] {
        assert!(!page.contains(outside), "the page references another host: {outside}");
    }

    // The line user joins first.
    let mut liner = LineClient::connect(line_addr);
    liner.expect("Welcome! What's your name?");
    liner.send(b"liner");
    liner.expect("Welcome, liner! Online: liner");

    // Chromium, fenced in.
    let (_proxy, proxy_port) = dead_port();
    let profile = Profile(target_dir().join(format!("chat-browser-profile-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&profile.0);
    std::fs::create_dir_all(&profile.0).unwrap();
    let profile = &profile.0;
    let child = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            &format!("--proxy-server=http://127.0.0.1:{proxy_port}"),
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-pings",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-breakpad",
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate",
            &format!("--user-data-dir={}", profile.display()),
            "--remote-debugging-port=0",
            "--window-size=1000,700",
            "about:blank",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut browser = ChildGuard { child };

    // The DevTools port, from the profile (a bounded poll of a file Chromium writes).
    let deadline = Instant::now() + WAIT;
    let devtools_port: u16 = loop {
        if let Ok(text) = std::fs::read_to_string(profile.join("DevToolsActivePort")) {
            if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                break port;
            }
        }
        assert!(Instant::now() < deadline, "Chromium wrote no DevToolsActivePort");
        assert!(browser.child.try_wait().unwrap().is_none(), "Chromium exited");
        std::thread::sleep(Duration::from_millis(20));
    };
    let devtools = SocketAddr::from(([127, 0, 0, 1], devtools_port));
    let deadline = Instant::now() + WAIT;
    let page_ws = loop {
        let targets: Value = serde_json::from_str(&http_get(devtools, "/json/list")).unwrap_or(Value::Null);
        let found = targets.as_array().into_iter().flatten().find(|t| t["type"] == "page");
        if let Some(url) = found.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
            break url.to_owned();
        }
        assert!(Instant::now() < deadline, "no page target in DevTools");
        std::thread::sleep(Duration::from_millis(20));
    };
    let path = page_ws.split_once(&format!("127.0.0.1:{devtools_port}")).expect("a loopback DevTools URL").1;
    let mut cdp = Cdp::connect(devtools, path);
    cdp.call("Page.enable", json!({}));
    cdp.call("Page.navigate", json!({ "url": url }));
    cdp.wait_for("document.getElementById('state')?.textContent === 'connected'", "the page connects");
    cdp.wait_for(
        "document.getElementById('transcript').innerText.includes(\"What's your name?\")",
        "the prompt",
    );

    // A hostile name is refused (names are letters, digits, _ and -), shown literally.
    cdp.type_line("<img src=x onerror=alert(1)>");
    cdp.wait_for("document.getElementById('transcript').innerText.includes('Invalid name')", "name refused");
    // A name and a message typed in the page reach the line client.
    cdp.type_line("alice");
    cdp.wait_for(
        "document.getElementById('transcript').innerText.includes('Welcome, alice! Online: alice, liner')",
        "login",
    );
    liner.expect("* alice has joined");
    cdp.type_line("hello from the browser");
    liner.expect("<alice> hello from the browser");
    // Hostile text typed in the page: ANSI escapes reach the terminal user defused.
    cdp.type_line("red \u{1b}[31m and <b>bold</b>");
    liner.expect("<alice> red \u{FFFD}[31m and <b>bold</b>");

    // A line from the line client shows in the page, as text.
    liner.send(b"hi browser \x1b[2J <img src=x onerror=\"window.pwned=1;alert(1)\">");
    let shown = "<liner> hi browser \u{FFFD}[2J <img src=x onerror=\"window.pwned=1;alert(1)\">";
    cdp.wait_for(
        &format!(
            "[...document.querySelectorAll('#transcript .line')].some(l => l.textContent === {})",
            serde_json::to_string(shown).unwrap()
        ),
        "the line client's message in the transcript",
    );
    assert_eq!(cdp.eval("document.querySelectorAll('#transcript img, #transcript b').length"), json!(0));
    assert_eq!(cdp.eval("typeof window.pwned"), json!("undefined"));
    assert_eq!(cdp.dialogs_opened(), 0, "an alert() ran");
    // Who is online, in the side list.
    cdp.wait_for(
        "[...document.querySelectorAll('#online li')].map(l => l.textContent).join('|') === 'alice (you)|liner'",
        "the online list",
    );
    // /me without text is an error line, not a bare `* alice`.
    cdp.type_line("/me");
    cdp.wait_for(
        "document.getElementById('transcript').innerText.includes('Usage: /me ACTION')",
        "/me usage",
    );

    // A screenshot for people.
    let shot = cdp.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let file = target_dir().join("chat-browser.png");
    std::fs::write(&file, png).unwrap();
    println!("screenshot: {}", file.canonicalize().unwrap().display());

    // The server restarts on the same port: the page sees the drop, reconnects with
    // backoff, and logs back in under the same name.
    server.interrupt();
    liner.expect("* Server shutting down");
    assert!(server.wait_exit("chat-server").success());
    cdp.wait_for(
        "document.getElementById('state').textContent.startsWith('disconnected')",
        "the page sees the drop",
    );
    let (mut server, first, _stdout2) =
        start_announcing(CHAT_SERVER, &["--listen", "127.0.0.1:0", "--web", &web_addr.to_string()]);
    let line_addr: SocketAddr = first.strip_prefix("listening on ").expect("first line").parse().unwrap();
    cdp.wait_for("document.getElementById('state').textContent === 'connected'", "the page reconnects");
    cdp.wait_for(
        "[...document.querySelectorAll('#transcript .line')].filter(l => l.textContent.startsWith('Welcome, alice!')).length === 2",
        "logged back in as alice",
    );
    let mut liner = LineClient::connect(line_addr);
    liner.expect("Welcome! What's your name?");
    liner.send(b"liner2");
    liner.expect("Welcome, liner2! Online: alice, liner2");
    cdp.type_line("back again");
    liner.expect("<alice> back again");

    // Leaving: the line client sees the browser user go.
    cdp.type_line("/quit");
    liner.expect("* alice has left");
    cdp.wait_for(
        "document.getElementById('state').textContent === 'left the room'",
        "the page shows it left",
    );

    drop(cdp);
    drop(browser);
    server.interrupt();
    assert!(server.wait_exit("chat-server").success());
}
