//! Helpers shared by torsion's example binaries.
//!
//! Each binary in `examples/src/bin/` teaches one idea of torsion's protocol/factory model:
//!
//! * `echo-server`: a [`Factory`](torsion_reactor::Factory) that builds one
//!   [`Echo`](torsion_protocols::Echo) per connection, a graceful stop on SIGINT/SIGTERM, and
//!   setup errors as `Result`s.
//! * `echo-client`: an outbound connection made with a
//!   [`ClientFactory`](torsion_reactor::ClientFactory), replies that arrive split arbitrarily
//!   reassembled into lines, and a second thread (stdin) talking to the reactor only through
//!   [`ReactorHandle::call_from_thread`](torsion_reactor::ReactorHandle::call_from_thread).
//! * `proxy`: a port forwarder (TCP or Unix sockets, on either side) whose two connections are
//!   each other's producer, so a slow reader on either side pauses reading on the other
//!   (producer/consumer across two connections). Its protocols live in the [`proxy`] module,
//!   so tests can run the proxy in-process and watch its buffers.
//! * `chat-server`: a chat room, Twisted's classic demo: shared state (the [`chat::Room`])
//!   lives in the factory and holds [`ConnId`](torsion_reactor::ConnId)s, a broadcast reaches
//!   each member through `cx.transport_for(id)`, and framing ([`LineReceiver`]), an idle
//!   timeout and a connection limit are composed around the protocol. Its protocol lives in
//!   the [`chat`] module.
//! * `frame-echo`: framing by composition: a framer from `torsion_protocols::framing` (lines,
//!   length prefixes, netstrings) reassembles whole messages and hands each to a small
//!   handler that echoes it in the same framing.
//!
//! [`LineReceiver`]: torsion_protocols::framing::LineReceiver
//!
//! This library holds only what the binaries share, so they stay about one idea each: logging
//! setup ([`init_logging`]), the `listening on <addr>` line scripts read the port from
//! ([`announce_listening`]), endpoint parsing ([`parse_endpoint`]: `HOST:PORT`, `[V6]:PORT`,
//! `unix:PATH`, `unix:@NAME`, so every server listens and every client connects on TCP or a
//! Unix socket alike), a [`LineBuffer`] that turns a byte stream into complete lines, and the
//! [`proxy`] protocols.
//!
//! ```
//! use torsion_examples::{announce_listening, parse_endpoint, LineBuffer};
//!
//! let addr = parse_endpoint("127.0.0.1:0").unwrap();
//! assert_eq!(addr.inet().unwrap().port(), 0);
//! let unix = parse_endpoint("unix:/run/echo.sock").unwrap();
//! assert_eq!(unix.to_string(), "unix:/run/echo.sock");
//!
//! // Replies arrive split anywhere; only complete lines come out.
//! let mut lines = LineBuffer::default();
//! assert!(lines.push(b"hel").is_empty());
//! assert_eq!(lines.push(b"lo\nwor"), vec![b"hello".to_vec()]);
//! assert_eq!(lines.take_rest(), Some(b"wor".to_vec()));
//!
//! announce_listening(&addr).unwrap(); // prints `listening on 127.0.0.1:0`
//! ```

use std::io::{self, IsTerminal, Write};
use std::net::ToSocketAddrs;

use torsion_reactor::{Address, AddressParseError, UnixAddr};
use tracing_subscriber::EnvFilter;

pub mod chat;
pub mod chat_web;
pub mod endpoint_cli;
pub mod guide;
pub mod http_files;
pub mod pool_cli;
pub mod proxy;
pub mod tls_cli;

/// Exit code for a failure at startup: bad arguments, a bad address, an address in use.
/// The same code clap uses for usage errors.
pub const EXIT_USAGE: i32 = 2;

/// Exit code for a failure at run time: refused connection, lost connection, I/O error.
pub const EXIT_FAILURE: i32 = 1;

/// Sends `tracing` output to standard error, filtered by `RUST_LOG` (default `info`), so
/// standard output stays free for the program's own output. Colours only on a terminal.
///
/// Calling it twice is harmless: the second call changes nothing.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

/// Prints `listening on <addr>` as the first line of standard output and flushes it, so a
/// script reading the pipe learns the bound port (useful with port 0) at once.
pub fn announce_listening(addr: &Address) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()
}

/// The endpoint forms every example accepts, for `--help` texts and error messages.
pub const ENDPOINT_FORMS: &str = "HOST:PORT, [V6]:PORT, unix:PATH or unix:@NAME";

/// Parses an endpoint as the examples take it on the command line (`--listen`, `--connect`,
/// `--target`) into a [`torsion_reactor::Address`]:
///
/// * `127.0.0.1:8000`, `[::1]:8000`: a literal Internet address (TCP);
/// * `localhost:8000`: a host name, resolved by the system (the first address wins);
/// * `unix:/run/echo.sock` (or a relative `unix:echo.sock`): a Unix socket path;
/// * `unix:@echo`: a name in Linux's abstract namespace (no file).
///
/// The error is a one-line message naming the text and the accepted forms.
pub fn parse_endpoint(text: &str) -> Result<Address, String> {
    match text.parse::<Address>() {
        Ok(addr) => Ok(addr),
        // Not a literal: a host name to resolve, unless it was meant as a Unix address.
        Err(AddressParseError::Invalid(_)) if !text.starts_with("unix:") => match text.to_socket_addrs() {
            Ok(mut addrs) => {
                addrs.next().map(Address::from).ok_or_else(|| format!("'{text}' resolves to no address"))
            }
            Err(e) => Err(format!("bad address '{text}' (expected {ENDPOINT_FORMS}): {}", io_error_text(&e))),
        },
        // This message quotes the text already.
        Err(e @ AddressParseError::UnixPathTooLong { .. }) => Err(format!("bad address: {e}")),
        Err(e) => Err(format!("bad address '{text}': {e}")),
    }
}

/// An I/O error's message without the `(os error N)` suffix: `Connection refused`.
pub fn io_error_text(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if error.raw_os_error().is_some() => text[..at].to_owned(),
        _ => text,
    }
}

/// How an example's run failed: its exit code and a one-line message for stderr.
pub type Failure = (i32, String);

/// The end of every example's `main`: success is exit code 0; a [`Failure`] is printed as one
/// `error: ...` line on stderr and becomes its exit code.
pub fn exit_with(result: Result<(), Failure>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// A failure to set the reactor up (creating its poller, installing signal handlers): exit
/// code 2 and `cannot start the reactor: <reason>`.
pub fn startup_failure(error: impl Into<torsion_reactor::Error>) -> Failure {
    (EXIT_USAGE, format!("cannot start the reactor: {}", error_text(&error.into())))
}

/// A reactor error's message, with an I/O error's `(os error N)` suffix dropped.
pub fn error_text(error: &torsion_reactor::Error) -> String {
    match error {
        torsion_reactor::Error::Io(source) => io_error_text(source),
        other => other.to_string(),
    }
}

/// A failure of [`Reactor::run`](torsion_reactor::Reactor::run) itself: exit code 1 and
/// `the reactor failed: <reason>`.
pub fn run_failure(error: torsion_reactor::Error) -> Failure {
    (EXIT_FAILURE, format!("the reactor failed: {}", error_text(&error)))
}

/// `cannot listen on 127.0.0.1:8000: Address already in use`, without the `(os error 98)`: the
/// one line a server prints when `listen` fails. For a Unix path it says whether a live server
/// holds it (`address in use`) or a file that is not a socket is in the way.
pub fn listen_error(addr: &Address, error: &torsion_reactor::Error) -> String {
    use torsion_reactor::{Error, TransportError};
    match error {
        Error::Transport(TransportError::Bind { source, .. } | TransportError::BindUnix { source, .. })
        | Error::Io(source)
        | Error::Register(source) => {
            format!("cannot listen on {addr}: {}", io_error_text(source))
        }
        Error::Transport(TransportError::AddressInUse { .. }) => match addr {
            Address::Unix(UnixAddr::Path(_)) => format!(
                "cannot listen on {addr}: address in use (a live server is listening there; its socket file \
                 is left alone)"
            ),
            _ => format!("cannot listen on {addr}: address in use (a live server is listening there)"),
        },
        Error::Transport(TransportError::NotASocket { .. }) => {
            format!("cannot listen on {addr}: the file there is not a socket (left untouched)")
        }
        other => format!("cannot listen on {addr}: {other}"),
    }
}

/// Reassembles a byte stream into `\n`-terminated lines. TCP may split a reply anywhere, down
/// to one byte, so a protocol buffers what it has and hands on only complete lines.
#[derive(Debug, Default, Clone)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Adds `data` and returns the lines it completed, without their `\n` (a `\r` before it is
    /// kept: this is a byte-exact echo, not a text protocol).
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut rest = data;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(at);
            let mut line = std::mem::take(&mut self.pending);
            line.extend_from_slice(head);
            lines.push(line);
            rest = &tail[1..];
        }
        self.pending.extend_from_slice(rest);
        lines
    }

    /// Bytes received after the last `\n`, if any (a final line with no terminator).
    pub fn take_rest(&mut self) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.pending))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_split_gives_the_same_lines() {
        let input = b"one\ntwo\n\nthree\nrest";
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let mut buffer = LineBuffer::default();
                let mut lines = buffer.push(&input[..a]);
                lines.extend(buffer.push(&input[a..b]));
                lines.extend(buffer.push(&input[b..]));
                assert_eq!(lines, [&b"one"[..], b"two", b"", b"three"], "split at {a}, {b}");
                assert_eq!(buffer.take_rest(), Some(b"rest".to_vec()));
                assert_eq!(buffer.take_rest(), None);
            }
        }
    }

    #[test]
    fn endpoints() {
        let inet = |text: &str| parse_endpoint(text).unwrap().inet().unwrap();
        assert_eq!(inet("127.0.0.1:8000").port(), 8000);
        assert_eq!(inet("[::1]:9").port(), 9);
        assert!(inet("localhost:7").ip().is_loopback(), "names are resolved");
        assert_eq!(parse_endpoint("unix:/tmp/e.sock").unwrap(), Address::unix_path("/tmp/e.sock"));
        assert_eq!(parse_endpoint("unix:rel.sock").unwrap(), Address::unix_path("rel.sock"));
        assert_eq!(parse_endpoint("unix:@name").unwrap().to_string(), "unix:@name");
        for bad in ["127.0.0.1", "not an address", "unix:", "unix:@"] {
            let error = parse_endpoint(bad).unwrap_err();
            assert!(error.contains(&format!("'{bad}'")) && !error.contains('\n'), "{error}");
        }
        let long = format!("unix:/{}", "x".repeat(200));
        let error = parse_endpoint(&long).unwrap_err();
        assert!(error.contains(&long) && error.contains("limit"), "{error}");
    }

    #[test]
    fn os_error_suffix_is_dropped() {
        let e = io::Error::from_raw_os_error(2);
        assert!(!io_error_text(&e).contains("os error"));
        let custom = io::Error::other("plain (os error 5) text");
        assert_eq!(io_error_text(&custom), "plain (os error 5) text");
    }
}

/// The README's code blocks, compiled as doctests so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
#[derive(Debug)]
pub struct ReadmeDoctests;
