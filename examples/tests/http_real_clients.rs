//! `http-server` with clients nobody here wrote: curl (keep-alive reuse, chunked upload,
//! `Expect: 100-continue`, a range), Python's `http.client`, and `wrk` and `h2load --h1` as
//! short smoke loads.
//!
//! `.ci/run` installs curl, wrk and nghttp2-client (h2load) from Debian when missing;
//! elsewhere a missing tool skips its part with a loud message.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{run_bounded, start_listening, text, Listening};

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!!! SKIPPED: `{tool}` is not installed; http-server is NOT checked against it");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    }
    found
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn serve(tag: &str) -> (Listening, TempDir) {
    let dir = TempDir(std::env::temp_dir().join(format!("torsion-http-{tag}-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("index.html"), "<h1>torsion</h1>\n").unwrap();
    std::fs::write(dir.0.join("digits.txt"), "0123456789").unwrap();
    let server = start_listening(
        env!("CARGO_BIN_EXE_http-server"),
        &["--listen", "127.0.0.1:0", "--root", dir.0.to_str().unwrap()],
    );
    (server, dir)
}

fn curl(args: &[&str]) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20"]).args(args);
    let out = run_bounded(cmd, "curl");
    assert!(out.status.success(), "curl {args:?}: {}", text(&out.stderr));
    (text(&out.stdout), text(&out.stderr))
}

#[test]
fn curl_keep_alive_chunked_upload_continue_and_range() {
    if !have("curl") {
        return;
    }
    let (server, _dir) = serve("curl");
    let base = format!("http://{}", server.addr);
    // Two requests on one command line: curl reuses the connection.
    let (out, err) = curl(&["-v", &format!("{base}/hello"), &format!("{base}/hello")]);
    assert_eq!(out, "Hello, World!Hello, World!");
    assert!(err.contains("Re-using existing connection"), "no keep-alive reuse: {err}");

    // A chunked upload (curl sends Transfer-Encoding: chunked for stdin-less -T with the header).
    let body = "x".repeat(100_000);
    let (out, err) =
        curl(&["-v", "-H", "Transfer-Encoding: chunked", "--data-binary", &body, &format!("{base}/echo")]);
    assert_eq!(out.len(), body.len(), "{err}");
    assert!(err.contains("> Transfer-Encoding: chunked"), "{err}");

    // Expect: 100-continue, which curl waits for before sending the body.
    let (out, err) =
        curl(&["-v", "-H", "Expect: 100-continue", "--data-binary", &body, &format!("{base}/echo")]);
    assert_eq!(out.len(), body.len());
    assert!(err.contains("< HTTP/1.1 100 Continue"), "{err}");

    // A single range, and If-Modified-Since from the Last-Modified it got.
    let (out, err) = curl(&["-v", "-r", "2-5", &format!("{base}/digits.txt")]);
    assert_eq!(out, "2345");
    assert!(
        err.contains("< HTTP/1.1 206 Partial Content") && err.contains("content-range: bytes 2-5/10"),
        "{err}"
    );
    let (out, _) = curl(&["-I", &format!("{base}/digits.txt")]);
    let modified =
        out.lines().find_map(|l| l.strip_prefix("last-modified: ")).expect("Last-Modified").trim().to_owned();
    let (out, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("If-Modified-Since: {modified}"),
        &format!("{base}/digits.txt"),
    ]);
    assert_eq!(out, "304");
    let (out, _) =
        curl(&["-o", "/dev/null", "-w", "%{http_code}", "--path-as-is", &format!("{base}/../../etc/passwd")]);
    assert_eq!(out, "403", "traversal refused");
    let (out, _) = curl(&[&format!("{base}/")]);
    assert_eq!(out, "<h1>torsion</h1>\n");
}

#[test]
fn python_http_client() {
    if !have("python3") {
        return;
    }
    let (server, _dir) = serve("python");
    let script = format!(
        r#"
import http.client
c = http.client.HTTPConnection("{ip}", {port}, timeout=20)
for i in range(3):
    c.request("GET", "/hello")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"Hello, World!", r.status
c.request("POST", "/echo", body=b"abc" * 1000)
r = c.getresponse()
assert r.read() == b"abc" * 1000
c.request("POST", "/echo", body=iter([b"chunk1", b"chunk2"]), encode_chunked=True)
r = c.getresponse()
assert r.read() == b"chunk1chunk2"
c.request("HEAD", "/digits.txt")
r = c.getresponse()
assert r.getheader("content-length") == "10" and r.read() == b""
c.request("GET", "/missing")
r = c.getresponse()
assert r.status == 404; r.read()
print("ok")
"#,
        ip = server.addr.ip(),
        port = server.addr.port()
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    let out = run_bounded(cmd, "python http.client");
    assert!(
        out.status.success() && text(&out.stdout).trim() == "ok",
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn wrk_and_h2load_smoke() {
    let (server, _dir) = serve("load");
    let url = format!("http://{}/hello", server.addr);
    if have("wrk") {
        let mut cmd = Command::new("wrk");
        cmd.args(["-t1", "-c10", "-d1", &url]);
        let out = run_bounded(cmd, "wrk");
        let report = text(&out.stdout);
        assert!(out.status.success(), "{report}{}", text(&out.stderr));
        assert!(!report.contains("Non-2xx") && !report.contains("Socket errors"), "{report}");
        assert!(report.contains("requests in"), "{report}");
    }
    if have("h2load") {
        let mut cmd = Command::new("h2load");
        cmd.args(["--h1", "-n", "2000", "-c", "10", "-m", "4", &url]);
        let out = run_bounded(cmd, "h2load");
        let report = text(&out.stdout);
        assert!(out.status.success(), "{report}{}", text(&out.stderr));
        assert!(report.contains("2000 succeeded, 0 failed, 0 errored"), "{report}");
    }
}
