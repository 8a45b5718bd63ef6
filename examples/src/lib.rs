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
//! * `proxy`: a TCP port forwarder whose two connections are each other's producer, so a slow
//!   reader on either side pauses reading on the other (producer/consumer across two
//!   connections). Its protocols live in the [`proxy`] module, so tests can run the proxy
//!   in-process and watch its buffers.
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
//! ([`announce_listening`]), address parsing ([`resolve_addr`]), a [`LineBuffer`] that
//! turns a byte stream into complete lines, and the [`proxy`] protocols.
//!
//! ```
//! use torsion_examples::{announce_listening, resolve_addr, LineBuffer};
//!
//! let addr = resolve_addr("127.0.0.1:0").unwrap();
//! assert_eq!(addr.port(), 0);
//!
//! // Replies arrive split anywhere; only complete lines come out.
//! let mut lines = LineBuffer::default();
//! assert!(lines.push(b"hel").is_empty());
//! assert_eq!(lines.push(b"lo\nwor"), vec![b"hello".to_vec()]);
//! assert_eq!(lines.take_rest(), Some(b"wor".to_vec()));
//!
//! announce_listening(addr).unwrap(); // prints `listening on 127.0.0.1:0`
//! ```

use std::io::{self, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use tracing_subscriber::EnvFilter;

pub mod chat;
pub mod proxy;

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
pub fn announce_listening(addr: SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()
}

/// Parses `host:port` into a socket address: a literal address (`127.0.0.1:8000`,
/// `[::1]:8000`) or a name resolved by the system (`localhost:8000`, first address wins).
/// The error is a one-line message naming the address.
pub fn resolve_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("'{text}' resolves to no address")),
        Err(e) => Err(format!("bad address '{text}' (expected HOST:PORT): {}", io_error_text(&e))),
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
/// one line a server prints when `listen_tcp` fails.
pub fn listen_error(addr: SocketAddr, error: &torsion_reactor::Error) -> String {
    use torsion_reactor::{Error, TransportError};
    match error {
        Error::Transport(TransportError::Bind { source, .. }) | Error::Io(source) => {
            format!("cannot listen on {addr}: {}", io_error_text(source))
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
    fn addresses() {
        assert_eq!(resolve_addr("127.0.0.1:8000").unwrap().port(), 8000);
        assert_eq!(resolve_addr("[::1]:9").unwrap().port(), 9);
        assert!(resolve_addr("127.0.0.1").is_err());
        assert!(resolve_addr("not an address").is_err());
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
