//! Twisted's TLS client (`twisted[tls]`: pyOpenSSL) against torsion's echo-server over TLS
//! (issue 11): a 14 KB echo byte-exact, then Twisted's `loseConnection` (close_notify) ends
//! both sides cleanly (`ConnectionDone`, not a truncation). Twisted comes from
//! `TORSION_TWISTED_PYTHON` (.ci/run installs `twisted[tls]` into target/twisted-venv), else
//! the test prints a loud SKIPPED.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{run_bounded, start_listening, text, twisted_python};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

const ECHO_SERVER: &str = env!("CARGO_BIN_EXE_echo-server");

const CLIENT: &str = r#"
import sys
from twisted.internet import reactor, ssl, protocol
port, ca = int(sys.argv[1]), sys.argv[2]
MSG = b"hello twisted\n" * 1000
class C(protocol.Protocol):
    def connectionMade(self):
        self.buf = b""
        self.transport.write(MSG)
    def dataReceived(self, data):
        self.buf += data
        if len(self.buf) >= len(MSG):
            print("echo", "ok" if self.buf == MSG else "differs", flush=True)
            self.transport.loseConnection()
    def connectionLost(self, reason):
        print("lost:", reason.type.__name__, flush=True)
        reactor.stop()
f = protocol.ClientFactory()
f.protocol = C
opts = ssl.optionsForClientTLS("localhost", ssl.Certificate.loadPEM(open(ca).read()))
reactor.connectSSL("127.0.0.1", port, f, opts)
reactor.callLater(15, reactor.stop)
reactor.run()
"#;

#[test]
fn twisted_tls_client_against_torsion_echo_server() {
    let Some(python) = twisted_python("the Twisted TLS client against echo-server --tls-cert") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("torsion-twisted-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: String| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "twisted test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let (ca_pem, cert, key) =
        (write("ca.pem", ca.pem()), write("cert.pem", leaf.pem()), write("key.pem", key.serialize_pem()));
    let mut server = start_listening(
        ECHO_SERVER,
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let mut cmd = Command::new(&python);
    cmd.args(["-c", CLIENT, &server.addr.port().to_string()]).arg(&ca_pem);
    let out = run_bounded(cmd, "the Twisted TLS client");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["echo ok", "lost: ConnectionDone"],
        "{}",
        text(&out.stderr)
    );
    println!("Twisted TLS client: {}", stdout.replace('\n', "; "));
    server.process.interrupt();
    assert_eq!(server.process.wait_exit("echo-server after SIGINT").code(), Some(0));
}
