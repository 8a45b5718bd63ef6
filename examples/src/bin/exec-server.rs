//! `exec-server`: each connection talks to its own child process (inetd in a page).
//!
//! The idea it teaches is **two kinds of sources driving each other**: a TCP connection's
//! protocol ([`Session`]) and a child process's protocol ([`Child`]) hold each other's ids
//! ([`ConnId`], [`ProcessId`]), never each other, and reach the other side through the
//! context (`cx.process(id)`, `cx.transport_for(id)`).
//!
//! * socket → child stdin: a write that puts stdin's buffer above its high watermark pauses
//!   reading the socket; the child's `resume_producing` (stdin drained) resumes it;
//! * child stdout → socket: the socket's buffer going above its high watermark calls the
//!   session's `pause_producing`, which pauses reading the child's stdout (the pipe fills and
//!   the child blocks); `resume_producing` resumes it;
//! * the child's stderr is logged line by line (at `warn`) with the connection id;
//! * the client's half-close (EOF) closes the child's stdin; the connection stays open for the
//!   rest of the output;
//! * the child's end (it exited and its stdout and stderr are closed, so all its output has
//!   been delivered) closes the connection after flushing;
//! * a connection that is lost (reset, or a write to a client that has gone) closes the
//!   child's stdin; if the child has not exited after a grace period ([`GRACE`]), it gets
//!   SIGTERM. A client's plain close arrives as a FIN, which cannot be told from a half-close:
//!   it only closes stdin, and the connection is lost at the child's next write;
//! * `--max-children N` refuses connections (closing them at once) while N children run.
//!
//! Same CLI conventions as `echo-server`: the first stdout line is `listening on <addr>`,
//! setup errors exit 2, SIGINT/SIGTERM stop gracefully (children's stdin is closed, and what
//! is still running at the shutdown deadline is killed) and the process exits 0.
//!
//! ```text
//! cargo run -p torsion-examples --bin exec-server -- --listen 127.0.0.1:0 -- cat
//! cargo run -p torsion-examples --bin exec-server -- --listen unix:/tmp/sh.sock -- sh -i
//! ```

use std::cell::Cell;
use std::ffi::OsString;
use std::process::{Command, ExitCode, ExitStatus};
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use torsion_examples::{
    announce_listening, exit_with, init_logging, run_failure, startup_failure, EXIT_FAILURE, EXIT_USAGE,
};
use torsion_reactor::{
    Address, ConnId, Ctx, DisconnectReason, ProcessCtx, ProcessId, ProcessProtocol, Reactor, Signal,
};
use tracing::{debug, info, warn};

/// How long a child whose client disconnected may run on (its stdin closed) before SIGTERM.
const GRACE: Duration = Duration::from_secs(2);

/// Runs COMMAND for each connection, with the connection as its stdin and stdout.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to listen: an endpoint such as `HOST:PORT`, `[V6]:PORT`, `tcp:PORT`, `unix:PATH`,
    /// `unix:@NAME`, `ssl:PORT:...` or `systemd:...` (--help shows the grammar). Port 0 picks a
    /// free port; the first line of stdout tells which.
    #[arg(long, value_name = "ENDPOINT", default_value = "127.0.0.1:8000", long_help = torsion_examples::endpoint_cli::SERVER_HELP)]
    listen: String,
    /// At most this many children at once; further connections are closed at once.
    #[arg(long, value_name = "N")]
    max_children: Option<usize>,
    /// The command and its arguments (after `--`).
    #[arg(required = true, last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    exit_with(serve(args))
}

/// The command line to run per connection.
#[derive(Debug, Clone)]
struct Program(Rc<Vec<OsString>>);

impl Program {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.0[0]);
        command.args(&self.0[1..]);
        command
    }
}

/// A client connection: its child's id once spawned.
#[derive(Debug)]
struct Session {
    program: Program,
    running: Rc<Cell<usize>>,
    child: Option<ProcessId>,
}

impl torsion_reactor::Protocol for Session {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let child = Child { conn: cx.conn_id(), running: self.running.clone(), stderr: Vec::new() };
        match cx.spawn_process(self.program.command(), child) {
            Ok(id) => {
                self.running.set(self.running.get() + 1);
                self.child = Some(id);
            }
            Err(e) => {
                warn!(conn = ?cx.conn_id(), error = %e, "cannot start the command");
                cx.transport().lose_connection();
            }
        }
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        let Some(id) = self.child else { return };
        let above = cx.process(id).is_some_and(|mut p| p.write(data));
        if above {
            // Backpressure: stop reading the socket until the child's stdin drains.
            cx.transport().pause_reading();
        }
    }

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        if let Some(mut p) = self.child.and_then(|id| cx.process(id)) {
            p.close_stdin();
        }
        // Keep the connection open for the rest of the child's output.
        true
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        if let Some(mut p) = self.child.and_then(|id| cx.process(id)) {
            p.pause_reading();
        }
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        if let Some(mut p) = self.child.and_then(|id| cx.process(id)) {
            p.resume_reading();
        }
    }

    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        debug!(%reason, "client gone");
        let Some(id) = self.child else { return };
        let Some(mut p) = cx.process(id) else { return };
        p.close_stdin();
        // Output is no longer wanted: never block the child on a full pipe.
        p.resume_reading();
        cx.call_later(GRACE, move |cx| {
            if let Some(mut p) = cx.process(id) {
                if !p.has_exited() {
                    info!(pid = p.pid(), "client gone and the child still runs: SIGTERM");
                    let _ = p.signal_process(Signal::SIGTERM);
                }
            }
        });
    }
}

/// A connection's child process.
#[derive(Debug)]
struct Child {
    conn: ConnId,
    running: Rc<Cell<usize>>,
    /// A partial stderr line.
    stderr: Vec<u8>,
}

impl Child {
    fn log_stderr_line(&self, line: &[u8]) {
        warn!(conn = ?self.conn, line = %String::from_utf8_lossy(line), "child stderr");
    }
}

impl ProcessProtocol for Child {
    fn out_received(&mut self, cx: &mut ProcessCtx<'_>, data: &[u8]) {
        // The connection's own flow control pauses our reading (Session::pause_producing).
        if let Some(mut t) = cx.transport_for(self.conn) {
            t.write(data);
        }
    }

    fn err_received(&mut self, _cx: &mut ProcessCtx<'_>, data: &[u8]) {
        self.stderr.extend_from_slice(data);
        while let Some(end) = self.stderr.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.stderr.drain(..=end).collect();
            self.log_stderr_line(&line[..line.len() - 1]);
        }
    }

    fn err_connection_lost(&mut self, _cx: &mut ProcessCtx<'_>) {
        if !self.stderr.is_empty() {
            let rest = std::mem::take(&mut self.stderr);
            self.log_stderr_line(&rest);
        }
    }

    fn resume_producing(&mut self, cx: &mut ProcessCtx<'_>) {
        if let Some(mut t) = cx.transport_for(self.conn) {
            t.resume_reading();
        }
    }

    fn process_exited(&mut self, cx: &mut ProcessCtx<'_>, status: ExitStatus) {
        debug!(conn = ?self.conn, pid = cx.pid(), %status, "child exited");
    }

    fn process_ended(&mut self, cx: &mut ProcessCtx<'_>, status: ExitStatus) {
        self.running.set(self.running.get() - 1);
        debug!(conn = ?self.conn, %status, "child ended");
        // Exited, and stdout is closed so all its output has arrived: close after flushing.
        if let Some(mut t) = cx.transport_for(self.conn) {
            t.lose_connection();
        }
    }
}

/// Runs the server until a signal stops it.
fn serve(args: Args) -> Result<(), (i32, String)> {
    let endpoint = torsion_examples::endpoint_cli::parse_server(&args.listen)
        .map_err(|message| (EXIT_USAGE, message))?;
    let program = Program(Rc::new(args.command));
    let max = args.max_children.unwrap_or(usize::MAX);
    let running = Rc::new(Cell::new(0usize));

    let mut reactor = Reactor::new().map_err(startup_failure)?;
    let factory = move |peer: Address| {
        if running.get() >= max {
            warn!(%peer, max, "too many children: refusing a connection");
            return None;
        }
        debug!(%peer, "accepted a connection");
        Some(Session { program: program.clone(), running: running.clone(), child: None })
    };
    let port = torsion_examples::endpoint_cli::listen(&mut reactor, &endpoint, None, factory)?;
    reactor.install_signal_handlers().map_err(startup_failure)?;

    let local = port.local_addr().clone();
    announce_listening(&local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    info!(%local, "exec server listening; Ctrl-C (SIGINT) or SIGTERM stops it");

    reactor.run().map_err(run_failure)?;
    info!("stopped");
    Ok(())
}
