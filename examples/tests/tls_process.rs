//! The examples over TLS (issue 11), as processes: echo-server with `--tls-cert/--tls-key`
//! answering echo-client `--tls --ca`; a chat over TLS with `openssl s_client -quiet` and
//! `socat OPENSSL:` (as in the README); proxy terminating TLS and re-encrypting to a TLS
//! target (`--target-tls --target-ca`); a missing key file is one line and exit 2. Certificates
//! are minted at run time with rcgen.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{line_reader, run_bounded, start_listening, text, ChildGuard, WAIT};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

const ECHO_SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
const ECHO_CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");
const CHAT: &str = env!("CARGO_BIN_EXE_chat-server");
const PROXY: &str = env!("CARGO_BIN_EXE_proxy");

/// A CA and a `localhost`/`127.0.0.1` certificate it signed, as PEM files in a fresh directory.
struct Certs {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn certs(tag: &str) -> Certs {
    let dir = std::env::temp_dir().join(format!("torsion-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: String| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "examples test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Certs {
        ca: write("ca.pem", ca.pem()),
        cert: write("cert.pem", leaf.pem()),
        key: write("key.pem", key.serialize_pem()),
        dir,
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn find(program: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("!!! SKIPPED: {program} is not installed; .ci/run installs it");
    }
    ok
}

/// echo-server over TLS, echo-client over TLS trusting the CA: the reply comes back.
#[test]
fn echo_client_and_server_over_tls() {
    let c = certs("echo");
    let mut server = start_listening(
        ECHO_SERVER,
        &["--listen", "127.0.0.1:0", "--tls-cert", s(&c.cert), "--tls-key", s(&c.key)],
    );
    let endpoint = format!("localhost:{}", server.addr.port());
    let mut cmd = Command::new(ECHO_CLIENT);
    cmd.args(["--connect", &endpoint, "--tls", "--ca", s(&c.ca), "--message", "over tls", "--count", "2"]);
    let out = run_bounded(cmd, "echo-client --tls");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "over tls\nover tls\n");
    // Without the CA, the public roots do not know our test CA: a clean, one-line failure.
    let mut cmd = Command::new(ECHO_CLIENT);
    cmd.args(["--connect", &endpoint, "--tls", "--message", "x"]);
    let out = run_bounded(cmd, "echo-client --tls without --ca");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("UnknownIssuer") || err.contains("unknown issuer"), "{err}");
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("echo-server after SIGINT").code(), Some(0));
}

/// A missing key or certificate file: one line on stderr, exit code 2.
#[test]
fn a_missing_key_file_is_one_line_and_exit_2() {
    let c = certs("missing");
    for bin in [ECHO_SERVER, CHAT] {
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0", "--tls-cert", s(&c.cert), "--tls-key", "/nonexistent/key.pem"]);
        let out = run_bounded(cmd, "a server with a missing key");
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains("/nonexistent/key.pem"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// The README's chat over TLS: `openssl s_client -quiet` and `socat - OPENSSL:...` talk
/// through the room.
#[test]
fn chat_over_tls_with_openssl_s_client_and_socat() {
    if !find("openssl") || !find("socat") {
        return;
    }
    let c = certs("chat");
    let mut server =
        start_listening(CHAT, &["--listen", "127.0.0.1:0", "--tls-cert", s(&c.cert), "--tls-key", s(&c.key)]);
    let addr = server.addr.to_string();
    let spawn = |program: &str, args: &[String]| {
        let mut child = ChildGuard {
            child: Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        };
        let stdin = child.child.stdin.take().unwrap();
        let lines = line_reader(child.child.stdout.take().unwrap());
        (child, stdin, lines)
    };
    let expect = |lines: &std::sync::mpsc::Receiver<String>, want: &str| {
        let line = lines.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for {want:?}: {e}"));
        assert_eq!(line.trim_end_matches('\r'), want);
    };
    let (_a, mut alice_in, alice) = spawn(
        "openssl",
        &[
            "s_client".into(),
            "-connect".into(),
            addr.clone(),
            "-quiet".into(),
            "-CAfile".into(),
            s(&c.ca).into(),
        ],
    );
    expect(&alice, "Welcome! What's your name?");
    writeln!(alice_in, "alice").unwrap();
    expect(&alice, "Welcome, alice! Online: alice");
    let (_b, mut bob_in, bob) = spawn("socat", &["-".into(), format!("OPENSSL:{addr},cafile={}", s(&c.ca))]);
    expect(&bob, "Welcome! What's your name?");
    writeln!(bob_in, "bob").unwrap();
    expect(&bob, "Welcome, bob! Online: alice, bob");
    expect(&alice, "* bob has joined");
    writeln!(alice_in, "hello over tls").unwrap();
    expect(&bob, "<alice> hello over tls");
    writeln!(bob_in, "/quit").unwrap();
    expect(&bob, "Bye!");
    expect(&alice, "* bob has left");
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("chat-server after SIGINT").code(), Some(0));
}

/// proxy terminates TLS from the client and speaks TLS to a TLS echo server.
#[test]
fn proxy_terminates_and_reencrypts_tls() {
    let c = certs("proxy");
    let mut backend = start_listening(
        ECHO_SERVER,
        &["--listen", "127.0.0.1:0", "--tls-cert", s(&c.cert), "--tls-key", s(&c.key)],
    );
    let target = backend.addr.to_string();
    let mut proxy = start_listening(
        PROXY,
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            s(&c.cert),
            "--tls-key",
            s(&c.key),
            "--target",
            &target,
            "--target-tls",
            "--target-ca",
            s(&c.ca),
        ],
    );
    let mut cmd = Command::new(ECHO_CLIENT);
    cmd.args([
        "--connect",
        &proxy.addr.to_string(),
        "--tls",
        "--ca",
        s(&c.ca),
        "--message",
        "through",
        "--count",
        "3",
    ]);
    let out = run_bounded(cmd, "echo-client through the TLS proxy");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "through\nthrough\nthrough\n");
    proxy.process.interrupt();
    assert_eq!(proxy.process.wait_exit("proxy after SIGINT").code(), Some(0));
    backend.process.interrupt();
    assert_eq!(backend.process.wait_exit("echo-server after SIGINT").code(), Some(0));
}

#[test]
fn tls_endpoints_on_the_command_line_reach_a_tls_server() {
    let c = certs("endpoint");
    let mut backend = start_listening(
        ECHO_SERVER,
        &["--listen", "127.0.0.1:0", "--tls-cert", s(&c.cert), "--tls-key", s(&c.key)],
    );
    let port = backend.addr.port();
    // trustRoots: the directory holding the CA (and the key beside it, which is skipped).
    let target = format!("tls:host=localhost:port={port}:trustRoots={}", c.dir.display());
    // The proxy's --target as a tls: endpoint, instead of --target-tls/--target-ca.
    let mut proxy = start_listening(PROXY, &["--listen", "127.0.0.1:0", "--target", &target]);
    let mut cmd = Command::new(ECHO_CLIENT);
    cmd.args(["--connect", &proxy.addr.to_string(), "--message", "plain-to-tls", "--count", "2"]);
    let out = run_bounded(cmd, "echo-client through a proxy with a tls: target");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "plain-to-tls\nplain-to-tls\n");
    // echo-client --connect as a tls: endpoint, with --reconnect (the ClientService path).
    let mut cmd = Command::new(ECHO_CLIENT);
    cmd.args(["--connect", &target, "--reconnect"]).stdin(Stdio::piped());
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut client = ChildGuard { child };
    let replies = line_reader(client.child.stdout.take().unwrap());
    let mut stdin = client.child.stdin.take().unwrap();
    stdin.write_all(b"over tls\n").unwrap();
    assert_eq!(replies.recv_timeout(WAIT).expect("the echo over TLS"), "over tls");
    drop(stdin);
    assert_eq!(client.wait_exit("echo-client --reconnect after end of input").code(), Some(0));
    proxy.process.interrupt();
    assert_eq!(proxy.process.wait_exit("proxy after SIGINT").code(), Some(0));
    backend.process.interrupt();
    assert_eq!(backend.process.wait_exit("echo-server after SIGINT").code(), Some(0));
}
