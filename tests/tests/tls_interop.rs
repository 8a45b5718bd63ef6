//! TLS interop with peers nobody here wrote (issue 11): `openssl s_client` (TLS 1.2 and 1.3
//! forced) and Python's `ssl` client (echo, then `unwrap()` for `close_notify`) against
//! torsion's server; torsion's client against `openssl s_server` and a Python `ssl` server.
//! Without the `openssl` CLI (`.ci/run` installs it) the openssl tests print a loud SKIPPED.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use torsion_reactor::{client_factory, Address, Ctx, DisconnectReason, Protocol, Reactor};
use torsion_tests::tls::{localhost_name, tls_server, Pki};
use torsion_tests::{recv, run_until};

fn have(program: &str, arg: &str) -> bool {
    let ok = Command::new(program).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !ok {
        eprintln!(
            "!!!!!!!!!! SKIPPED: `{program}` is not installed; this interop test did NOT run !!!!!!!!!!"
        );
    }
    ok
}

/// Kills a child process when dropped.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's stdout, on a channel.
fn lines_of(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// An echo server that reports the negotiated version and how each connection ended.
struct Echo {
    tx: mpsc::Sender<String>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let version = cx.transport().tls().and_then(|t| t.protocol_version());
        let _ = self.tx.send(format!("{version:?}"));
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = self.tx.send(format!("lost: {reason:?}"));
    }
}

fn echo_server(pki: &Pki) -> (torsion_tests::ReactorThread, Address, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let (server, addr) =
        tls_server(pki.server_config(), |_| {}, move || move |_| Some(Echo { tx: tx.clone() }));
    (server, addr, rx)
}

fn s_client(version_flag: &str, expect_version: &str) {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    let (_server, addr, rx) = echo_server(&pki);
    let mut child = Reap(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                "localhost",
                "-quiet",
                "-no_ign_eof",
            ])
            .args(["-verify_return_error", "-CAfile"])
            .arg(&pki.ca_pem)
            .arg(version_flag)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client"),
    );
    let lines = lines_of(child.0.stdout.take().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(b"hello over tls\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(recv(&lines, "the echo"), "hello over tls");
    assert_eq!(recv(&rx, "connection_made"), format!("Some({expect_version})"));
    drop(stdin); // s_client closes (close_notify, FIN)
    let lost = recv(&rx, "connection_lost");
    assert!(lost.starts_with("lost:"), "{lost}");
}

/// `openssl s_client -tls1_2` against torsion's TLS echo server.
#[test]
fn openssl_s_client_tls12_echoes() {
    s_client("-tls1_2", "TLSv1_2");
}

/// `openssl s_client -tls1_3` against torsion's TLS echo server.
#[test]
fn openssl_s_client_tls13_echoes() {
    s_client("-tls1_3", "TLSv1_3");
}

const PY_CLIENT: &str = r#"
import socket, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection((host, port), timeout=20), server_hostname="localhost")
data = bytes(range(256)) * 4000
s.sendall(data)
got = b""
while len(got) < len(data):
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
assert got == data, "echo differs"
s.unwrap()  # our close_notify, then waits for the server's
print("ok", s.version() if hasattr(s, "version") else "")
"#;

/// Python's `ssl` client: a 1 MB echo byte-exact, then `unwrap()`: our `close_notify` is
/// answered with the server's (the server's protocol sees a clean close).
#[test]
fn python_ssl_client_echoes_and_unwraps() {
    let pki = Pki::new();
    let (_server, addr, rx) = echo_server(&pki);
    let Address::Inet(inet) = &addr else { unreachable!() };
    let out = Command::new("python3")
        .args(["-c", PY_CLIENT, &inet.ip().to_string(), &inet.port().to_string()])
        .arg(&pki.ca_pem)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(recv(&rx, "connection_made"), "Some(TLSv1_3)");
    assert_eq!(recv(&rx, "connection_lost"), "lost: Clean");
}

/// Torsion's client: sends `line`, collects until `want` bytes came, closes; returns them.
fn torsion_client(pki: &Pki, addr: Address, line: &'static [u8], want: usize) -> Vec<u8> {
    struct C {
        line: &'static [u8],
        want: usize,
        got: std::rc::Rc<std::cell::RefCell<Option<Vec<u8>>>>,
        buf: Vec<u8>,
    }
    impl Protocol for C {
        fn connection_made(&mut self, cx: &mut Ctx<'_>) {
            cx.transport().write(self.line);
        }
        fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
            self.buf.extend_from_slice(data);
            if self.buf.len() >= self.want {
                *self.got.borrow_mut() = Some(std::mem::take(&mut self.buf));
                cx.transport().lose_connection();
            }
        }
    }
    let got = std::rc::Rc::new(std::cell::RefCell::new(None));
    let g = got.clone();
    let mut reactor = Reactor::new().unwrap();
    let factory = client_factory(move |_| C { line, want, got: g.clone(), buf: Vec::new() })
        .on_failure(|_, e| panic!("connect failed: {e}"));
    reactor.connect_tls(addr, localhost_name(), pki.client_config(), factory).unwrap();
    run_until(&mut reactor, "the reply", |_| got.borrow().is_some());
    run_until(&mut reactor, "the close", |r| r.connection_count() == 0);
    let out = got.borrow_mut().take().unwrap();
    out
}

/// Torsion's client against `openssl s_server -rev` (it answers each line reversed).
#[test]
fn torsion_client_against_openssl_s_server() {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Reap(
        Command::new("openssl")
            .args(["s_server", "-rev", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&pki.server.cert_pem)
            .arg("-key")
            .arg(&pki.server.key_pem)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    let lines = lines_of(child.0.stdout.take().unwrap());
    while !recv(&lines, "s_server's ACCEPT line").starts_with("ACCEPT") {}
    let addr: Address = format!("127.0.0.1:{port}").parse().unwrap();
    let got = torsion_client(&pki, addr, b"hello\n", 6);
    assert_eq!(got, b"olleh\n");
}

const PY_SERVER: &str = r#"
import socket, ssl, sys
cert, key = sys.argv[1], sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
c.settimeout(20)
s = ctx.wrap_socket(c, server_side=True)
while True:
    data = s.recv(65536)
    if not data:
        break
    s.sendall(data.upper())
print("clean eof", flush=True)
s.unwrap()
"#;

/// Torsion's client against a Python `ssl` server: the reply comes back, and our
/// `lose_connection` sends `close_notify` (Python's `recv` returns b"" only for that).
#[test]
fn torsion_client_against_python_ssl_server() {
    let pki = Pki::new();
    let mut child = Reap(
        Command::new("python3")
            .args(["-c", PY_SERVER])
            .arg(&pki.server.cert_pem)
            .arg(&pki.server.key_pem)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let lines = lines_of(child.0.stdout.take().unwrap());
    let port: u16 = recv(&lines, "the Python server's port").trim().parse().unwrap();
    let addr: Address = format!("127.0.0.1:{port}").parse().unwrap();
    let got = torsion_client(&pki, addr, b"shout", 5);
    assert_eq!(got, b"SHOUT");
    assert_eq!(recv(&lines, "Python saw close_notify"), "clean eof");
}
