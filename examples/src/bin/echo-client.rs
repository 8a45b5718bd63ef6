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
//! * **Standard I/O is a connection too.** Once connected, the client opens
//!   [`LoopCtx::standard_io`]: a second protocol whose `data_received` is stdin and whose
//!   transport writes to stdout (Twisted's `StandardIO`; stdin and stdout stay blocking, two
//!   threads copy them). Each connection's `pause_producing` / `resume_producing` pauses and
//!   resumes reading the other: a server that stops reading pauses reading stdin, a stdout
//!   nobody reads pauses reading the server. End of stdin half-closes the server connection
//!   (`write_eof`); the echo server finishes and closes, and the client exits after the last
//!   reply reached stdout.
//! * **Staying connected.** With `--reconnect` a [`ClientService`] owns the connection: a
//!   refused connect or a lost connection is retried with backoff, stdin waits meanwhile, and
//!   the same standard I/O connection is attached to each new server connection.
//!
//! Like the servers, it stops gracefully on SIGINT/SIGTERM (the connection is flushed and
//! closed) and then exits 0; a bad address is one line on stderr with exit code 2.
//!
//! ```text
//! echo-client --connect 127.0.0.1:8000                        # lines from stdin
//! echo-client --connect 127.0.0.1:8000 --message hi --count 3 # "hi" three times, then exit
//! echo-client --connect unix:/tmp/echo.sock --message hi      # over a Unix socket
//! echo-client --connect 127.0.0.1:8000 --reconnect            # survives server restarts
//! echo-client --connect localhost:8443 --tls --ca ca.pem      # over TLS
//! ```

use std::cell::RefCell;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use torsion_examples::{
    error_text, exit_with, init_logging, io_error_text, run_failure, startup_failure, LineBuffer,
    EXIT_FAILURE, EXIT_USAGE,
};
use torsion_reactor::rustls::pki_types::ServerName;
use torsion_reactor::rustls::ClientConfig;
use torsion_reactor::{
    Address, ClientEndpoint, ClientFactory, ClientService, ConnId, Ctx, DisconnectReason, Error, LoopCtx,
    Protocol, Reactor, Target, TransportError,
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
    /// The echo server: a client endpoint such as `HOST:PORT`, `[V6]:PORT`, `unix:PATH`,
    /// `unix:@NAME`, `tcp:host=HOST:port=PORT[:timeout=S]` or `tls:host=HOST:port=PORT`
    /// (--help shows the grammar). A host name is resolved off the loop (Happy Eyeballs).
    #[arg(long, value_name = "ENDPOINT", default_value = "127.0.0.1:8000", long_help = torsion_examples::endpoint_cli::CLIENT_HELP)]
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
    /// Keep connecting: retry a refused connect, and reconnect after the server goes away
    /// (1 s, then x1.5 up to 60 s, with jitter). Input typed meanwhile waits and is sent once
    /// connected. Not with --message.
    #[arg(long, conflicts_with = "message")]
    reconnect: bool,
}

/// What to send.
#[derive(Debug, Clone)]
enum Mode {
    /// Forward stdin to the server and replies to stdout, over standard I/O.
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
    /// The endpoint as typed, for messages.
    label: String,
    outcome: Rc<RefCell<Outcome>>,
    link: Rc<RefCell<Link>>,
}

impl ClientFactory for EchoClientFactory {
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        debug!(%peer, "connected");
        Box::new(EchoClient {
            mode: self.mode.clone(),
            replies: LineBuffer::default(),
            outcome: self.outcome.clone(),
            link: self.link.clone(),
        })
    }

    fn client_connection_failed(&mut self, cx: &mut LoopCtx<'_>, reason: Error) {
        self.outcome.borrow_mut().connect_error = Some(connect_error(&self.label, &reason));
        cx.stop_reactor();
    }
}

/// What the server connection and the standard I/O connection share in stdin mode. Each is
/// the other's flow control: a server that stops reading pauses reading stdin, a stdout that
/// backs up pauses reading the server. Reached by id, as every connection is.
#[derive(Debug)]
struct Link {
    /// The live server connection (with --reconnect, it changes; `None` between connections).
    server: Option<ConnId>,
    /// The standard I/O connection, opened at the first connection and kept.
    stdio: Option<ConnId>,
    /// Input read while no server connection was up (with --reconnect), sent on reconnect.
    pending: Vec<u8>,
    /// stdin has ended (the server connection gets, or got, `write_eof`).
    input_done: bool,
    /// Whether the input so far ended with a newline (a last line without one gets one).
    ended_with_newline: bool,
    /// Keep connecting after a loss (--reconnect).
    reconnect: bool,
}

impl Link {
    fn new(reconnect: bool) -> Link {
        Link {
            server: None,
            stdio: None,
            pending: Vec::new(),
            input_done: false,
            ended_with_newline: true,
            reconnect,
        }
    }
}

/// The client side of one connection.
#[derive(Debug)]
struct EchoClient {
    mode: Mode,
    replies: LineBuffer,
    outcome: Rc<RefCell<Outcome>>,
    link: Rc<RefCell<Link>>,
}

impl EchoClient {
    /// Prints reply lines: to the standard I/O connection in stdin mode (flow-controlled), to
    /// stdout directly otherwise.
    fn print(&mut self, cx: &mut Ctx<'_>, lines: &[Vec<u8>]) -> io::Result<()> {
        let Some(stdio) = self.link.borrow().stdio else { return print_lines(lines) };
        if let Some(mut out) = cx.transport_for(stdio) {
            for line in lines {
                out.write(line);
                out.write(b"\n");
            }
        }
        Ok(())
    }

    /// Stdin mode: (re)attach standard I/O to this connection.
    fn attach(&mut self, cx: &mut Ctx<'_>) {
        let server = cx.conn_id();
        let (stdio, pending, input_done) = {
            let mut link = self.link.borrow_mut();
            link.server = Some(server);
            (link.stdio, std::mem::take(&mut link.pending), link.input_done)
        };
        match stdio {
            None => {
                match cx.standard_io(StdinSide { link: self.link.clone(), outcome: self.outcome.clone() }) {
                    Ok(stdio) => self.link.borrow_mut().stdio = Some(stdio),
                    Err(e) => {
                        self.outcome.borrow_mut().stdout_error = Some(io::Error::other(e.to_string()));
                        cx.transport().abort_connection();
                    }
                }
            }
            Some(stdio) => {
                // Reconnected: what came in meanwhile goes first, then stdin flows again.
                let mut transport = cx.transport();
                transport.write(&pending);
                if input_done {
                    transport.write_eof();
                } else if let Some(mut input) = cx.transport_for(stdio) {
                    input.resume_reading();
                }
            }
        }
    }
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        match &self.mode {
            Mode::Stdin => self.attach(cx),
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
        let printed = self.print(cx, &lines);
        let mut outcome = self.outcome.borrow_mut();
        outcome.lines += lines.len();
        if let Err(e) = printed {
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

    /// Our output to the server backed up: stop reading stdin.
    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        if let Some(mut input) = self.link.borrow().stdio.and_then(|id| cx.transport_for(id)) {
            input.pause_reading();
        }
    }

    /// It drained: read stdin again.
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        if let Some(mut input) = self.link.borrow().stdio.and_then(|id| cx.transport_for(id)) {
            input.resume_reading();
        }
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        debug!(%reason, "disconnected");
        if let Some(rest) = self.replies.take_rest() {
            // A last reply with no newline (the server closed mid-line): print what came.
            if let Err(e) = self.print(cx, &[rest]) {
                self.outcome.borrow_mut().stdout_error.get_or_insert(e);
            }
        }
        self.outcome.borrow_mut().lost = Some(reason.clone());
        let (reconnect, stdio) = {
            let mut link = self.link.borrow_mut();
            link.server = None;
            (link.reconnect && !link.input_done && self.outcome.borrow().stdout_error.is_none(), link.stdio)
        };
        if reconnect {
            // The service connects again; stdin waits (unread) until it has.
            warn!(%reason, "connection lost; reconnecting");
            if let Some(mut input) = stdio.and_then(|id| cx.transport_for(id)) {
                input.pause_reading();
            }
            return;
        }
        // Stopping closes standard I/O after its flush; `run` returns once stdout has it all.
        cx.stop_reactor();
    }
}

/// The standard I/O side in stdin mode: stdin goes to the server as it comes.
#[derive(Debug)]
struct StdinSide {
    link: Rc<RefCell<Link>>,
    outcome: Rc<RefCell<Outcome>>,
}

impl StdinSide {
    fn server<'a>(&self, cx: &'a mut Ctx<'_>) -> Option<torsion_reactor::Transport<'a>> {
        let id = self.link.borrow().server?;
        cx.transport_for(id)
    }
}

impl Protocol for StdinSide {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        let Some(&last) = data.last() else { return };
        self.link.borrow_mut().ended_with_newline = last == b'\n';
        match self.server(cx) {
            Some(mut server) => {
                server.write(data);
            }
            None => {
                // Between connections (--reconnect): keep it for the next one, read no more.
                self.link.borrow_mut().pending.extend_from_slice(data);
                cx.transport().pause_reading();
            }
        }
    }

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        // End of input: finish the last line and half-close; the replies still come to stdout.
        let newline = {
            let mut link = self.link.borrow_mut();
            link.input_done = true;
            !link.ended_with_newline
        };
        match self.server(cx) {
            Some(mut server) => {
                if newline {
                    server.write(b"\n");
                }
                server.write_eof();
            }
            None if newline => self.link.borrow_mut().pending.push(b'\n'),
            None => {}
        }
        true
    }

    /// stdout backed up: stop reading replies.
    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        if let Some(mut server) = self.server(cx) {
            server.pause_reading();
        }
    }

    /// It drained: read replies again.
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        if let Some(mut server) = self.server(cx) {
            server.resume_reading();
        }
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        if let DisconnectReason::Lost(e) = reason {
            // stdout went away (EPIPE): nothing can be shown any more.
            self.outcome.borrow_mut().stdout_error.get_or_insert(io::Error::new(e.kind(), e.to_string()));
            if let Some(mut server) = self.server(cx) {
                server.abort_connection();
            }
            cx.stop_reactor();
        }
    }
}

/// The connect timeout an endpoint sets (`timeout=S`), if any.
fn endpoint_timeout(endpoint: &ClientEndpoint) -> Option<std::time::Duration> {
    match endpoint {
        ClientEndpoint::Tcp { timeout, .. }
        | ClientEndpoint::Unix { timeout, .. }
        | ClientEndpoint::Tls { timeout, .. } => *timeout,
        _ => None,
    }
}

/// What a `ClientService` connects to for `--reconnect`: an address, or a host name raced at
/// every attempt; a `tls:` endpoint brings its TLS settings.
type ServiceTls = Option<(ServerName<'static>, Arc<ClientConfig>)>;
fn service_target(endpoint: &ClientEndpoint, tls: ServiceTls) -> Result<(Target, ServiceTls), (i32, String)> {
    let host_target = |host: &str, port: u16| match host.trim_start_matches('[').trim_end_matches(']').parse()
    {
        Ok(ip) => Target::Address(Address::Inet(std::net::SocketAddr::new(ip, port))),
        Err(_) => Target::Host(host.to_owned(), port),
    };
    match endpoint {
        ClientEndpoint::Tcp { bind_address: Some(_), .. }
        | ClientEndpoint::Tls { bind_address: Some(_), .. } => {
            Err((EXIT_USAGE, "bindAddress is not supported with --reconnect".into()))
        }
        ClientEndpoint::Tcp { host, port, .. } => Ok((host_target(host, *port), tls)),
        ClientEndpoint::Unix { addr, .. } => Ok((Target::Address(Address::Unix(addr.clone())), tls)),
        ClientEndpoint::Tls { host, port, ca_certs_dir, .. } => {
            let tls = torsion_examples::tls_cli::endpoint_tls(host, ca_certs_dir.as_deref(), None)?;
            Ok((host_target(host, *port), Some(tls)))
        }
        other => Err((EXIT_USAGE, format!("unsupported endpoint {other}"))),
    }
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
fn connect_error(addr: &str, error: &Error) -> String {
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
    let endpoint = torsion_examples::endpoint_cli::parse_client(&args.connect)
        .map_err(|message| (EXIT_USAGE, message))?;
    let addr = args.connect.clone();
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
    let link = Rc::new(RefCell::new(Link::new(args.reconnect)));
    let factory = EchoClientFactory {
        mode: mode.clone(),
        label: addr.clone(),
        outcome: outcome.clone(),
        link: link.clone(),
    };
    let tls = if args.tls {
        let config = torsion_examples::tls_cli::client_config(args.ca.as_ref())?;
        let name = torsion_examples::tls_cli::server_name(args.server_name.as_deref(), &args.connect)?;
        Some((name, config))
    } else {
        None
    };
    if let Some(timeout) = endpoint_timeout(&endpoint) {
        reactor.set_connect_timeout(timeout);
    }
    if args.reconnect {
        // The service owns the retries; the factory's failure hook is not used then.
        let (target, tls) = service_target(&endpoint, tls)?;
        let label = addr.clone();
        let mut service = ClientService::new(target, factory)
            .on_failure(move |_cx, e| warn!("{}; retrying", connect_error(&label, e)))
            .on_connected(|_cx, id| info!(?id, "connected"));
        if let Some((name, config)) = tls {
            service = service.with_tls(name, config);
        }
        service.start(&mut reactor);
    } else {
        // Any endpoint: TCP (a literal, or a name raced with Happy Eyeballs), Unix, TLS.
        let started = match tls {
            Some((name, config)) => {
                let address = torsion_examples::endpoint_cli::client_address(&endpoint)?;
                reactor.connect_tls(address, name, config, factory).map(drop)
            }
            None => reactor.connect_endpoint(&endpoint, factory).map(drop),
        };
        started.map_err(|e| (EXIT_FAILURE, connect_error(&addr, &e)))?;
    }
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
