//! `echo-client`: talking to a server from the client side, and from another thread.
//!
//! The ideas it teaches:
//! * **Outbound connections** go through a [`ClientFactory`]: `connect` (to a TCP address or
//!   a Unix socket, `unix:/path`) returns at once, the factory builds the protocol when the
//!   connection is established, or hears
//!   `client_connection_failed` (refused, unreachable, timed out). A refused connection is an
//!   event, reported here as one line on stderr and exit code 1.
//! * **Streams are not messages.** A reply may arrive split anywhere, down to one byte, or
//!   several replies in one read: the protocol buffers bytes in a [`LineBuffer`] and prints
//!   only complete lines.
//! * **Other threads talk to the reactor through its handle.** Reading stdin blocks, so a
//!   separate thread reads it and hands each line to the reactor with
//!   [`ReactorHandle::call_from_thread`]; the closure runs on the reactor thread and finds the
//!   connection by its [`ConnId`] with `cx.transport_for(id)`. At end of input it half-closes
//!   (`write_eof`); the echo server finishes and closes, and the client exits.
//!
//! Like the servers, it stops gracefully on SIGINT/SIGTERM (the connection is flushed and
//! closed) and then exits 0; a bad address is one line on stderr with exit code 2.
//!
//! ```text
//! echo-client --connect 127.0.0.1:8000                        # lines from stdin
//! echo-client --connect 127.0.0.1:8000 --message hi --count 3 # "hi" three times, then exit
//! echo-client --connect unix:/tmp/echo.sock --message hi      # over a Unix socket
//! echo-client --connect localhost:8443 --tls --ca ca.pem      # over TLS
//! ```

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use torsion_examples::{
    error_text, exit_with, init_logging, io_error_text, parse_endpoint, run_failure, startup_failure,
    LineBuffer, EXIT_FAILURE, EXIT_USAGE,
};
use torsion_reactor::{
    Address, ClientFactory, ConnId, Ctx, DisconnectReason, Error, LoopCtx, Protocol, Reactor, ReactorHandle,
    TransportError,
};
use tracing::{debug, info, warn};

/// Sends lines to an echo server and prints the replies.
///
/// By default each line of stdin is sent and each reply line printed; at the end of stdin the
/// client half-closes and exits once the server has closed. With --message, TEXT is sent
/// --count times instead and the client exits as soon as every reply has arrived.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address of the echo server: `HOST:PORT`, `[V6]:PORT`, `unix:PATH` or `unix:@NAME` (Linux
    /// abstract socket).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    connect: String,
    /// Connect over TLS, verifying the server against --ca (default: the public web roots).
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA certificates to trust (with --tls).
    #[arg(long, value_name = "PEM", requires = "tls")]
    ca: Option<std::path::PathBuf>,
    /// The name to verify the server's certificate as (default: the host in --connect).
    #[arg(long, value_name = "NAME", requires = "tls")]
    server_name: Option<String>,
    /// Send TEXT, followed by a newline, instead of reading stdin.
    #[arg(long, value_name = "TEXT")]
    message: Option<String>,
    /// With --message: how many times to send TEXT.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "message")]
    count: usize,
}

/// What to send.
#[derive(Debug, Clone)]
enum Mode {
    /// Forward stdin, line by line, from a separate thread.
    Stdin,
    /// Send `payload` at once and close after `expected` reply lines.
    Repeat { payload: Vec<u8>, expected: usize },
}

/// What the protocol and factory found out, read by `main` after the reactor stops. The reactor
/// is single-threaded and never re-enters a callback, so `Rc<RefCell<_>>` is enough.
#[derive(Debug, Default)]
struct Outcome {
    /// Why the connection could not be made.
    connect_error: Option<String>,
    /// Reply lines printed.
    lines: usize,
    /// How the connection ended.
    lost: Option<DisconnectReason>,
    /// Printing a reply failed.
    stdout_error: Option<io::Error>,
}

/// Builds the protocol once connected, or records why not.
#[derive(Debug)]
struct EchoClientFactory {
    mode: Mode,
    addr: Address,
    outcome: Rc<RefCell<Outcome>>,
}

impl ClientFactory for EchoClientFactory {
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        debug!(%peer, "connected");
        Box::new(EchoClient {
            mode: self.mode.clone(),
            replies: LineBuffer::default(),
            outcome: self.outcome.clone(),
        })
    }

    fn client_connection_failed(&mut self, cx: &mut LoopCtx<'_>, reason: Error) {
        self.outcome.borrow_mut().connect_error = Some(connect_error(&self.addr, &reason));
        cx.stop_reactor();
    }
}

/// The client side of one connection.
#[derive(Debug)]
struct EchoClient {
    mode: Mode,
    replies: LineBuffer,
    outcome: Rc<RefCell<Outcome>>,
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        match &self.mode {
            Mode::Stdin => {
                // The thread gets a handle and this connection's id, never the transport itself.
                let (handle, id) = (cx.handle(), cx.conn_id());
                std::thread::spawn(move || forward_stdin(&handle, id));
            }
            Mode::Repeat { payload, expected } => {
                let mut transport = cx.transport();
                transport.write(payload);
                if *expected == 0 {
                    transport.lose_connection();
                }
            }
        }
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        let lines = self.replies.push(data);
        if lines.is_empty() {
            return;
        }
        let mut outcome = self.outcome.borrow_mut();
        outcome.lines += lines.len();
        if let Err(e) = print_lines(&lines) {
            outcome.stdout_error = Some(e);
            cx.transport().abort_connection();
            return;
        }
        if let Mode::Repeat { expected, .. } = self.mode {
            if outcome.lines >= expected {
                // Every reply is in: close cleanly; `connection_lost` follows from the loop.
                cx.transport().lose_connection();
            }
        }
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        debug!(%reason, "disconnected");
        let mut outcome = self.outcome.borrow_mut();
        if let Some(rest) = self.replies.take_rest() {
            // A last reply with no newline (the server closed mid-line): print what came.
            if let Err(e) = print_lines(&[rest]) {
                outcome.stdout_error.get_or_insert(e);
            }
        }
        outcome.lost = Some(reason);
        cx.stop_reactor();
    }
}

/// Runs on its own thread: sends each stdin line to the connection, then half-closes it.
fn forward_stdin(handle: &ReactorHandle, id: ConnId) {
    let mut input = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let line = std::mem::take(&mut line);
                // Runs on the reactor thread; the connection may be gone by then.
                handle.call_from_thread(move |cx| {
                    if let Some(mut transport) = cx.transport_for(id) {
                        transport.write(&line);
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "reading stdin failed; closing");
                break;
            }
        }
    }
    handle.call_from_thread(move |cx| {
        if let Some(mut transport) = cx.transport_for(id) {
            transport.write_eof();
        }
    });
}

/// Prints lines to stdout, each followed by `\n`, and flushes.
fn print_lines(lines: &[Vec<u8>]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    for line in lines {
        out.write_all(line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// `cannot connect to 127.0.0.1:8000: Connection refused`,
/// `cannot connect to unix:/tmp/echo.sock: No such file or directory`.
fn connect_error(addr: &Address, error: &Error) -> String {
    match error {
        Error::ConnectFailed { source, .. }
        | Error::Transport(
            TransportError::Connect { source, .. } | TransportError::ConnectUnix { source, .. },
        )
        | Error::Register(source)
        | Error::Io(source) => {
            format!("cannot connect to {addr}: {}", io_error_text(source))
        }
        Error::ConnectTimeout { timeout, .. } => {
            format!("cannot connect to {addr}: timed out after {timeout:?}")
        }
        other => format!("cannot connect to {addr}: {other}"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(run(&args))
}

/// Connects, runs the reactor until the connection is over, and judges how it went. Errors
/// carry the exit code and a one-line message.
fn run(args: &Args) -> Result<(), (i32, String)> {
    let addr = parse_endpoint(&args.connect).map_err(|message| (EXIT_USAGE, message))?;
    let mode = match &args.message {
        None => Mode::Stdin,
        Some(text) => {
            let mut message = text.clone().into_bytes();
            message.push(b'\n');
            // A TEXT with newlines in it comes back as several lines.
            let lines_per_message = message.iter().filter(|&&b| b == b'\n').count();
            Mode::Repeat { payload: message.repeat(args.count), expected: lines_per_message * args.count }
        }
    };

    let mut reactor = Reactor::new().map_err(startup_failure)?;
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    let factory = EchoClientFactory { mode: mode.clone(), addr: addr.clone(), outcome: outcome.clone() };
    // TCP or Unix: `connect` takes either kind of address.
    let started = if args.tls {
        let config = torsion_examples::tls_cli::client_config(args.ca.as_ref())?;
        let name = torsion_examples::tls_cli::server_name(args.server_name.as_deref(), &args.connect)?;
        reactor.connect_tls(addr.clone(), name, config, factory)
    } else {
        reactor.connect(addr.clone(), factory)
    };
    started.map_err(|e| (EXIT_FAILURE, connect_error(&addr, &e)))?;
    // SIGINT/SIGTERM stop the reactor gracefully (the connection is flushed and closed); the
    // flag tells an interrupted run, which exits 0, from a server that hung up early.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .map_err(|e| (EXIT_USAGE, format!("cannot handle signals: {}", io_error_text(&e))))?;
    }
    reactor
        .install_signal_handlers()
        .map_err(|e| (EXIT_USAGE, format!("cannot handle signals: {}", error_text(&e))))?;
    reactor.run().map_err(run_failure)?;

    let outcome = outcome.take();
    if interrupted.load(Ordering::SeqCst) && outcome.connect_error.is_none() && outcome.stdout_error.is_none()
    {
        info!(replies = outcome.lines, "interrupted; stopped gracefully");
        return Ok(());
    }
    if let Some(message) = outcome.connect_error {
        return Err((EXIT_FAILURE, message));
    }
    if let Some(e) = outcome.stdout_error {
        return Err((EXIT_FAILURE, format!("cannot write to stdout: {}", io_error_text(&e))));
    }
    let reason = outcome.lost.unwrap_or(DisconnectReason::Aborted);
    match mode {
        Mode::Repeat { expected, .. } if outcome.lines < expected => Err((
            EXIT_FAILURE,
            format!("{addr} closed the connection after {} of {expected} replies ({reason})", outcome.lines),
        )),
        Mode::Repeat { .. } => Ok(()),
        Mode::Stdin if reason.is_clean() => Ok(()),
        Mode::Stdin => Err((EXIT_FAILURE, format!("{addr}: {reason}"))),
    }
}
