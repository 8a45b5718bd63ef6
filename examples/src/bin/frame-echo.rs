//! `frame-echo`: an echo server that works in messages, not bytes.
//!
//! The idea it teaches is **framing by composition**. TCP delivers a byte stream split
//! anywhere; a framer ([`LineReceiver`], [`IntNStringReceiver`], [`NetstringReceiver`]) is a
//! [`Protocol`] that reassembles whole frames and hands each one to a small handler. The
//! handlers here are three lines long and know nothing of buffering, partial reads or limits:
//! the framer owns all of that, with limits on by default, so a too-long frame (over
//! `--max-length`, by default Twisted's 16384 for lines and 99999 otherwise) or a malformed
//! netstring closes the connection, and the frames before it are still echoed.
//!
//! | `--framing` | wire format |
//! |---|---|
//! | `line` | bytes, then `\r\n` (the delimiter is not part of the line or of its length) |
//! | `int8`, `int16`, `int32` | a big-endian unsigned length of 1, 2 or 4 bytes, then that many bytes |
//! | `netstring` | `<decimal length>:<bytes>,` |
//!
//! With `--framing line`, `--line-endings` says which bytes end a line (the names are
//! [`LineEndings`]' variants): `exact` (the default, Twisted's): only `\r\n`, a bare `\n` stays
//! part of the line; `lenient`: `\r\n` or a bare `\n`, what `nc` users need, since `nc` sends
//! a bare `\n` (`telnet` sends `\r\n`); `strict`: only `\r\n`, and a bare `\n` closes the
//! connection. Echoed lines always end in `\r\n`.
//!
//! Otherwise the conventions are echo-server's: the first line of stdout is
//! `listening on <addr>` (the real port when `--listen` asked for port 0; `--listen` also takes
//! `unix:/path` or `unix:@name` for a Unix socket), logs go to stderr
//! (`RUST_LOG=debug` shows each connection and why it closed), SIGINT/SIGTERM stop it
//! gracefully with exit code 0, and a startup failure (including a `--max-length` the length
//! prefix cannot express, such as over 255 for `int8`) is one line on stderr with exit code 2.
//! `--threads N` serves on N reactor threads (0: one per core; 1, the default, is one reactor
//! on the main thread): each framer lives on the thread that accepted its connection.
//!
//! `nc -N` is OpenBSD netcat (Debian's `netcat-openbsd`): it closes its side at the end of
//! input, so `nc` exits once the echo is back; with traditional netcat use `nc -q 1` instead.
//! Without either, `nc` waits forever after printing the reply.
//!
//! ```text
//! cargo run -p torsion-examples --bin frame-echo -- --listen 127.0.0.1:0 --framing netstring
//! printf '5:hello,' | nc -N 127.0.0.1 PORT      # prints 5:hello,
//! cargo run -p torsion-examples --bin frame-echo -- --listen 127.0.0.1:0 --framing line --line-endings lenient
//! printf 'a\nb\n' | nc -N 127.0.0.1 PORT        # prints a and b, each ending in \r\n
//! ```

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use torsion_examples::pool_cli::serve_on_pool;
use torsion_examples::{
    announce_listening, exit_with, init_logging, listen_error, parse_endpoint, run_failure, startup_failure,
    EXIT_FAILURE, EXIT_USAGE,
};
use torsion_protocols::framing::{
    IntNStringReceiver, LengthPrefix, LineCtx, LineEndings, LineHandler, LineReceiver, NetstringReceiver,
    StringCtx, StringHandler,
};
use torsion_reactor::{Address, DisconnectReason, Protocol, Reactor};
use tracing::{debug, info};

/// Echoes each received frame back in the same framing; too-long or malformed frames close the
/// connection. Stops gracefully on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on: `HOST:PORT`, `[V6]:PORT`, `unix:PATH` or `unix:@NAME` (Linux
    /// abstract socket). Port 0 picks a free port; the first line of stdout tells which.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: String,

    /// How frames are delimited on the wire.
    #[arg(long, value_enum)]
    framing: Framing,

    /// Longest accepted frame in bytes (a line's length does not count its delimiter).
    /// Default: 16384 for lines, 99999 otherwise (255 and 65535 are the most an int8 or
    /// int16 prefix can express; more is refused at startup).
    #[arg(long, value_name = "N")]
    max_length: Option<usize>,

    /// With `--framing line`: which bytes end a line. `nc` sends a bare `\n`, `telnet`
    /// sends `\r\n`; echoed lines always end in `\r\n`. Default: exact.
    #[arg(long, value_enum, value_name = "MODE")]
    line_endings: Option<Endings>,

    /// Reactor threads: 1 runs one reactor on the main thread; N > 1 runs N reactors, each
    /// accepting on its own SO_REUSEPORT socket (a Unix socket is handed off by one acceptor
    /// thread); 0 runs one per core.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
}

/// `--line-endings`: the command-line names of [`LineEndings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Endings {
    /// Only `\r\n` ends a line; a bare `\n` is part of the line (Twisted's LineReceiver). An
    /// `nc` user's lines never end: use lenient for them.
    Exact,
    /// `\r\n` or a bare `\n` ends a line (the `\r` is stripped): for people typing into `nc`
    /// or `telnet`.
    Lenient,
    /// Only `\r\n` ends a line; a bare `\n` is a protocol error that closes the connection.
    Strict,
}

impl From<Endings> for LineEndings {
    fn from(endings: Endings) -> LineEndings {
        match endings {
            Endings::Exact => LineEndings::Exact,
            Endings::Lenient => LineEndings::Lenient,
            Endings::Strict => LineEndings::Strict,
        }
    }
}

/// The wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Framing {
    /// Lines ending in `\r\n` (see --line-endings).
    Line,
    /// A 1-byte length, then the data.
    Int8,
    /// A 2-byte big-endian length, then the data.
    Int16,
    /// A 4-byte big-endian length, then the data.
    Int32,
    /// Netstrings: `<length>:<data>,`.
    Netstring,
}

/// Echoes each line (the line handler).
struct LineEcho;

impl LineHandler for LineEcho {
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        lx.send_line(line);
    }

    fn connection_lost(&mut self, _lx: &mut LineCtx<'_, '_>, reason: DisconnectReason) {
        debug!(%reason, "connection closed");
    }
}

/// Echoes each string (the handler for length prefixes and netstrings).
struct StringEcho;

impl StringHandler for StringEcho {
    fn string_received(&mut self, sx: &mut StringCtx<'_, '_>, data: &[u8]) {
        // A frame that was accepted always fits the same framing and limit on the way back.
        if let Err(error) = sx.send_string(data) {
            sx.lose_connection_with(DisconnectReason::ProtocolError(error.to_string()));
        }
    }

    fn connection_lost(&mut self, _sx: &mut StringCtx<'_, '_>, reason: DisconnectReason) {
        debug!(%reason, "connection closed");
    }
}

/// The frame settings, checked at startup.
#[derive(Debug, Clone, Copy)]
struct Settings {
    framing: Framing,
    max_length: Option<usize>,
    line_endings: LineEndings,
}

impl Settings {
    /// The settings `args` ask for, or the one-line reason they make no sense together.
    fn from_args(args: &Args) -> Result<Settings, String> {
        let prefix = match args.framing {
            Framing::Int8 => Some(LengthPrefix::Int8),
            Framing::Int16 => Some(LengthPrefix::Int16),
            Framing::Int32 => Some(LengthPrefix::Int32),
            Framing::Line | Framing::Netstring => None,
        };
        if let (Some(prefix), Some(max)) = (prefix, args.max_length) {
            if u64::try_from(max).unwrap_or(u64::MAX) > prefix.limit() {
                let framing = framing_name(args.framing);
                return Err(format!(
                    "--max-length {max} is too long for --framing {framing}: a {}-byte length prefix \
                     can express at most {} bytes",
                    prefix.width(),
                    prefix.limit()
                ));
            }
        }
        if args.line_endings.is_some() && args.framing != Framing::Line {
            let framing = framing_name(args.framing);
            return Err(format!("--line-endings applies to --framing line only, not --framing {framing}"));
        }
        Ok(Settings {
            framing: args.framing,
            max_length: args.max_length,
            line_endings: args.line_endings.unwrap_or(Endings::Exact).into(),
        })
    }
}

/// `framing`'s name on the command line.
fn framing_name(framing: Framing) -> String {
    framing.to_possible_value().map_or_else(|| format!("{framing:?}"), |v| v.get_name().to_owned())
}

/// The protocol for one connection: a framer composed with an echo handler.
fn build(settings: Settings) -> Box<dyn Protocol> {
    let max_length = settings.max_length;
    let prefixed = |prefix| {
        let receiver = IntNStringReceiver::new_prefixed(prefix, StringEcho);
        Box::new(match max_length {
            Some(max) => receiver.with_max_length(max),
            None => receiver,
        }) as Box<dyn Protocol>
    };
    match settings.framing {
        Framing::Line => {
            let receiver = LineReceiver::new(LineEcho).with_line_endings(settings.line_endings);
            Box::new(match max_length {
                Some(max) => receiver.with_max_length(max),
                None => receiver,
            })
        }
        Framing::Int8 => prefixed(LengthPrefix::Int8),
        Framing::Int16 => prefixed(LengthPrefix::Int16),
        Framing::Int32 => prefixed(LengthPrefix::Int32),
        Framing::Netstring => {
            let receiver = NetstringReceiver::netstring(StringEcho);
            Box::new(match max_length {
                Some(max) => receiver.with_max_length(max),
                None => receiver,
            })
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(serve(&args))
}

/// Runs the server until a signal stops it. Errors carry the exit code and a one-line message.
fn serve(args: &Args) -> Result<(), (i32, String)> {
    let addr = parse_endpoint(&args.listen).map_err(|message| (EXIT_USAGE, message))?;
    let settings = Settings::from_args(args).map_err(|message| (EXIT_USAGE, message))?;
    if args.threads != 1 {
        // Every core: one factory per reactor thread, each building framers for its own
        // connections.
        return serve_on_pool(&addr, args.threads, "frame echo", move |_reactor| {
            move |peer: Address| {
                debug!(%peer, "accepted a connection");
                Some(build(settings))
            }
        });
    }

    let mut reactor = Reactor::new().map_err(startup_failure)?;
    let factory = move |peer: Address| {
        debug!(%peer, "accepted a connection");
        Some(build(settings))
    };
    let port = reactor.listen(&addr, factory).map_err(|e| (EXIT_USAGE, listen_error(&addr, &e)))?;
    reactor.install_signal_handlers().map_err(startup_failure)?;

    let local = port.local_addr().clone();
    announce_listening(&local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    let Settings { framing, max_length, line_endings } = settings;
    info!(%local, ?framing, ?max_length, ?line_endings, "frame echo listening; Ctrl-C (SIGINT) or SIGTERM stops it");

    reactor.run().map_err(run_failure)?;
    info!("stopped");
    Ok(())
}
