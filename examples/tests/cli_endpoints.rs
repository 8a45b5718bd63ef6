//! Every example takes Twisted endpoint strings on its command line: `--help` shows the grammar
//! (today's `HOST:PORT`, `[V6]:PORT`, `unix:PATH`, `unix:@NAME` and the typed forms), and a
//! malformed endpoint is a startup error naming the bad field: one line on stderr, exit code 2,
//! nothing on stdout.

mod common;

use common::{command, run_bounded, text};

const CHAT: &str = env!("CARGO_BIN_EXE_chat-server");
const ECHO: &str = env!("CARGO_BIN_EXE_echo-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");
const PROXY: &str = env!("CARGO_BIN_EXE_proxy");
const FRAME: &str = env!("CARGO_BIN_EXE_frame-echo");
const HTTP: &str = env!("CARGO_BIN_EXE_http-server");
const EXEC: &str = env!("CARGO_BIN_EXE_exec-server");
const WS: &str = env!("CARGO_BIN_EXE_ws-echo");

#[test]
fn every_help_shows_the_endpoint_forms() {
    for (program, option) in [
        (CHAT, "--listen"),
        (ECHO, "--listen"),
        (CLIENT, "--connect"),
        (PROXY, "--target"),
        (FRAME, "--listen"),
        (HTTP, "--listen"),
        (EXEC, "--listen"),
        (WS, "--listen"),
    ] {
        let out = run_bounded(command(program, &["--help"]), &format!("{program} --help"));
        assert_eq!(out.status.code(), Some(0), "{program}: exit status {}", out.status);
        let help = text(&out.stdout);
        assert!(help.contains(option), "{program}: {help}");
        let typed: &[&str] = if option == "--listen" {
            &["tcp:PORT", "tcp6:", "ssl:PORT", "systemd:domain="]
        } else {
            &["tcp:host=", "tls:host="]
        };
        for form in ["HOST:PORT", "[V6]:PORT", "unix:PATH", "unix:@NAME"].iter().chain(typed) {
            assert!(help.contains(form), "{program} --help does not show {form}: {help}");
        }
    }
}

#[test]
fn a_malformed_unix_endpoint_exits_2_with_one_line() {
    let long = format!("unix:/{}", "x".repeat(200));
    let cases: [(&str, Vec<&str>); 9] = [
        (ECHO, vec!["--listen", "tcp:99999"]),
        (ECHO, vec!["--listen", "tcp:80:backlog=lots"]),
        (CLIENT, vec!["--connect", "tcp:host=127.0.0.1:port=0", "--message", "hi"]),
        (ECHO, vec!["--listen", "unix:"]),
        (CHAT, vec!["--listen", "unix:@"]),
        (FRAME, vec!["--framing", "line", "--listen", "unix:"]),
        (PROXY, vec!["--listen", "unix:", "--target", "127.0.0.1:1"]),
        (PROXY, vec!["--listen", "127.0.0.1:0", "--target", &long]),
        (CLIENT, vec!["--connect", "unix:", "--message", "hi"]),
    ];
    for (program, args) in cases {
        let out = run_bounded(command(program, &args), &format!("{program} {args:?}"));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{program} {args:?}: exit status {}; {stderr:?}", out.status);
        assert_eq!(stderr.lines().count(), 1, "{program} {args:?}: one line on stderr: {stderr:?}");
        assert!(
            stderr.contains("bad endpoint") || stderr.contains("bad address"),
            "{program} {args:?}: {stderr:?}"
        );
        assert!(out.stdout.is_empty(), "{program} {args:?}: {:?}", text(&out.stdout));
    }
}
