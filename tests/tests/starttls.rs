//! STARTTLS (issue 11): a line protocol upgraded in place with `start_tls`, against Python's
//! `ssl.SSLContext.wrap_socket` on the same socket. The reply written before `start_tls`
//! arrives first, in plaintext (twisted#10445); a write made right after `start_tls` arrives
//! encrypted; `handshake_completed` follows the handshake; plaintext the client pipelined after
//! its STARTTLS command is never delivered as if it were protected (aiosmtpd#380).

use std::process::Command;
use std::sync::mpsc;

use torsion_reactor::{Address, Ctx, DisconnectReason, Protocol, TlsRole};
use torsion_tests::tls::Pki;
use torsion_tests::{recv, ReactorThread};

/// What the server saw.
#[derive(Debug, PartialEq)]
enum Ev {
    /// A line received before TLS.
    Plain(String),
    /// A line received over TLS.
    Protected(String),
    Handshake,
    Lost(bool),
}

/// Lines; `STARTTLS` answers in plaintext, upgrades, and drops the rest of that read.
struct Smtpish {
    role: TlsRole,
    tls: bool,
    buf: Vec<u8>,
    tx: mpsc::Sender<Ev>,
}

impl Protocol for Smtpish {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            if self.tls {
                let _ = self.tx.send(Ev::Protected(line.clone()));
                cx.transport().write(format!("250 {line}\r\n").as_bytes());
                continue;
            }
            let _ = self.tx.send(Ev::Plain(line.clone()));
            if line == "STARTTLS" {
                cx.transport().write(b"220 go ahead\r\n");
                cx.transport().start_tls(self.role.clone()).expect("start_tls");
                // Written after start_tls: must travel encrypted.
                cx.transport().write(b"230 secret\r\n");
                self.tls = true;
                // Whatever followed the command in this read was sent before TLS: drop it.
                self.buf.clear();
                return;
            }
            cx.transport().write(b"500 say STARTTLS\r\n");
        }
    }

    fn handshake_completed(&mut self, _cx: &mut Ctx<'_>) {
        let _ = self.tx.send(Ev::Handshake);
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.tx.send(Ev::Lost(reason.is_clean()));
    }
}

fn server(pki: &Pki) -> (ReactorThread, Address, mpsc::Receiver<Ev>) {
    server_wrapped(pki, false)
}

/// The server; with `wrapped`, every shipped policy wrapper stands between the reactor and the
/// protocol (limits, throttling, idle timeout), each forwarding through the `Wrapper` trait.
fn server_wrapped(pki: &Pki, wrapped: bool) -> (ReactorThread, Address, mpsc::Receiver<Ev>) {
    use torsion_protocols::policies::{LimitConnectionsFactory, ThrottlingFactory, TimeoutFactory};
    let (tx, rx) = mpsc::channel();
    let role = TlsRole::Server(pki.server_config());
    let (thread, addr) = ReactorThread::start(move |reactor| {
        let factory =
            move |_| Some(Smtpish { role: role.clone(), tls: false, buf: Vec::new(), tx: tx.clone() });
        let local = Address::Inet(torsion_tests::localhost());
        let port = if wrapped {
            let timeout =
                TimeoutFactory::new(factory).with_timeout(Some(std::time::Duration::from_secs(3600)));
            let throttled = ThrottlingFactory::new(timeout)
                .with_read_limit(Some(1 << 30))
                .with_write_limit(Some(1 << 30));
            reactor.listen(&local, LimitConnectionsFactory::new(throttled)).unwrap()
        } else {
            reactor.listen(&local, factory).unwrap()
        };
        port.local_addr().clone()
    });
    (thread, addr, rx)
}

const PY: &str = r#"
import socket, ssl, sys
port, ca, pipelined = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(b"HELLO\r\n")
f = b""
while not f.endswith(b"\n"):
    f += s.recv(1)
print("plain:", f.decode().strip(), flush=True)
s.sendall(b"STARTTLS\r\nEVIL injected\r\n" if pipelined else b"STARTTLS\r\n")
line = b""
while not line.endswith(b"\n"):
    line += s.recv(1)   # one byte at a time: nothing of the TLS stream is consumed here
print("plain:", line.decode().strip(), flush=True)
ctx = ssl.create_default_context(cafile=ca)
try:
    t = ctx.wrap_socket(s, server_hostname="localhost")
    t.sendall(b"MAIL FROM:<a@b>\r\n")
    got = b""
    while got.count(b"\n") < 2:
        chunk = t.recv(4096)
        if not chunk:
            break
        got += chunk
    for l in got.decode().splitlines():
        print("tls:", l, flush=True)
    t.unwrap()
    print("done", flush=True)
except (ssl.SSLError, OSError) as e:
    print("tls failed:", type(e).__name__, flush=True)
"#;

fn python(addr: &Address, pki: &Pki, pipelined: bool) -> Vec<String> {
    let Address::Inet(inet) = addr else { unreachable!() };
    let out = Command::new("python3")
        .args(["-c", PY, &inet.port().to_string()])
        .arg(&pki.ca_pem)
        .arg(if pipelined { "1" } else { "0" })
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// The upgrade: plaintext reply first, then TLS on the same socket; the write made right after
/// `start_tls` is encrypted; `handshake_completed` runs; close_notify both ways.
#[test]
fn starttls_with_python_wrap_socket() {
    let pki = Pki::new();
    let (_server, addr, rx) = server(&pki);
    let lines = python(&addr, &pki, false);
    assert_eq!(
        lines,
        [
            "plain: 500 say STARTTLS",
            "plain: 220 go ahead",
            "tls: 230 secret",
            "tls: 250 MAIL FROM:<a@b>",
            "done"
        ],
        "the reply before start_tls is plaintext, the write after it is not"
    );
    assert_eq!(recv(&rx, "HELLO"), Ev::Plain("HELLO".into()));
    assert_eq!(recv(&rx, "STARTTLS"), Ev::Plain("STARTTLS".into()));
    assert_eq!(recv(&rx, "handshake"), Ev::Handshake);
    assert_eq!(recv(&rx, "MAIL"), Ev::Protected("MAIL FROM:<a@b>".into()));
    assert_eq!(recv(&rx, "lost"), Ev::Lost(true));
}

/// Plaintext pipelined after STARTTLS ("EVIL injected") is never delivered as protected: if it
/// came in the same read as the command the protocol drops it; if it came later it is handshake
/// input and fails the handshake. Either way, it never shows up as a `Protected` line.
#[test]
fn plaintext_pipelined_after_starttls_is_never_treated_as_protected() {
    let pki = Pki::new();
    let (_server, addr, rx) = server(&pki);
    let lines = python(&addr, &pki, true);
    assert_eq!(&lines[..2], ["plain: 500 say STARTTLS", "plain: 220 go ahead"]);
    let mut events = Vec::new();
    loop {
        let ev = recv(&rx, "the server's events");
        let end = matches!(ev, Ev::Lost(_));
        events.push(ev);
        if end {
            break;
        }
    }
    assert!(
        !events.iter().any(|e| matches!(e, Ev::Protected(l) | Ev::Plain(l) if l.contains("EVIL"))),
        "{events:?} / {lines:?}"
    );
    println!("pipelined plaintext after STARTTLS: server saw {events:?}; client saw {lines:?}");
}

/// `handshake_completed` goes through every shipped wrapper (limits, throttling, timeout).
#[test]
fn shipped_wrappers_forward_handshake_completed() {
    let pki = Pki::new();
    let (_server, addr, rx) = server_wrapped(&pki, true);
    let lines = python(&addr, &pki, false);
    assert_eq!(lines.last().map(String::as_str), Some("done"), "{lines:?}");
    let events: Vec<Ev> = (0..4).map(|_| recv(&rx, "the server's events")).collect();
    assert!(events.contains(&Ev::Handshake), "{events:?}");
}

const PY_SERVER: &str = r#"
import socket, ssl, sys
cert, key = sys.argv[1], sys.argv[2]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
c.settimeout(20)
line = b""
while not line.endswith(b"\n"):
    line += c.recv(1)
print("plain:", line.decode().strip(), flush=True)
c.sendall(b"220 go ahead\r\n")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
t = ctx.wrap_socket(c, server_side=True)
got = b""
while not got.endswith(b"\n"):
    got += t.recv(4096)
print("tls:", got.decode().strip(), flush=True)
t.sendall(b"250 " + got)
while t.recv(4096):
    pass
print("clean close_notify", flush=True)
t.unwrap()
"#;

/// Client-side STARTTLS: torsion's client upgrades after the server's go-ahead; its write made
/// right after `start_tls` travels encrypted; `handshake_completed` runs; Python's server sees
/// a clean `close_notify` at the end.
#[test]
fn client_side_starttls_against_a_python_server() {
    use std::cell::RefCell;
    use std::rc::Rc;
    use torsion_reactor::{client_factory, Reactor};
    use torsion_tests::run_until;

    struct Client {
        role: TlsRole,
        buf: Vec<u8>,
        log: Rc<RefCell<Vec<String>>>,
    }
    impl Protocol for Client {
        fn connection_made(&mut self, cx: &mut Ctx<'_>) {
            cx.transport().write(b"STARTTLS\r\n");
        }
        fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
            self.buf.extend_from_slice(data);
            while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                self.log.borrow_mut().push(line.clone());
                if line == "220 go ahead" {
                    cx.transport().start_tls(self.role.clone()).expect("start_tls");
                    cx.transport().write(b"hello\r\n");
                } else {
                    cx.transport().lose_connection();
                }
            }
        }
        fn handshake_completed(&mut self, _cx: &mut Ctx<'_>) {
            self.log.borrow_mut().push("handshake".into());
        }
        fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
            self.log.borrow_mut().push(format!("lost: {reason}"));
        }
    }

    let pki = Pki::new();
    let mut child = Command::new("python3")
        .args(["-c", PY_SERVER])
        .arg(&pki.server.cert_pem)
        .arg(&pki.server.key_pem)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut port = String::new();
    std::io::BufRead::read_line(&mut out, &mut port).unwrap();
    let addr: Address = format!("127.0.0.1:{}", port.trim()).parse().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let role = TlsRole::Client(pki.client_config(), torsion_tests::tls::localhost_name());
    let factory = client_factory(move |_| Client { role: role.clone(), buf: Vec::new(), log: l.clone() })
        .on_failure(|_, e| panic!("connect failed: {e}"));
    let mut reactor = Reactor::new().unwrap();
    reactor.connect(addr, factory).unwrap();
    run_until(&mut reactor, "the end of the conversation", |_| {
        log.borrow().last().is_some_and(|l| l.starts_with("lost"))
    });
    assert_eq!(
        *log.borrow(),
        ["220 go ahead", "handshake", "250 hello", "lost: connection closed cleanly"],
        "what the client saw"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let _ = child.wait();
    assert_eq!(rest.lines().collect::<Vec<_>>(), ["plain: STARTTLS", "tls: hello", "clean close_notify"]);
}
