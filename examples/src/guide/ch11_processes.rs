//! # Chapter 11: Child processes and standard I/O
//!
//! Twisted programs run other programs with `spawnProcess` and a `ProcessProtocol`, and talk
//! to their own terminal through `StandardIO`. torsion has both, on the same loop as sockets.
//!
//! ## Running a child
//! [`Reactor::spawn_process`](torsion_reactor::Reactor::spawn_process) (or
//! [`LoopCtx::spawn_process`](torsion_reactor::LoopCtx::spawn_process) from a callback) takes
//! a [`std::process::Command`], so arguments, environment, working directory, uid/gid and
//! process group are set the standard way. The child's stdin, stdout and stderr become pipes
//! the reactor drives, and a [`ProcessProtocol`](torsion_reactor::ProcessProtocol) hears
//! about them:
//!
//! | callback | when |
//! |---|---|
//! | `connection_made` | the child runs; stdin accepts writes |
//! | `out_received`, `err_received` | bytes on stdout / stderr |
//! | `in_connection_lost`, `out_connection_lost`, `err_connection_lost` | each pipe closed, once |
//! | `process_exited(status)` | the child exited (reaped by pid, no zombie) |
//! | `process_ended(status)` | exited AND stdout and stderr closed: last, once |
//! | `pause_producing`, `resume_producing` | stdin's buffer crossed the high / low mark |
//!
//! A program that does not exist is an error from `spawn_process` itself
//! ([`Error::Spawn`](torsion_reactor::Error::Spawn)), not a callback later.
//!
//! ```
//! use std::process::{Command, ExitStatus};
//! use torsion_reactor::{ProcessCtx, ProcessProtocol, Reactor};
//!
//! /// Feeds `tr` a line and collects what comes back.
//! struct Upper { out: Vec<u8> }
//!
//! impl ProcessProtocol for Upper {
//!     fn connection_made(&mut self, cx: &mut ProcessCtx<'_>) {
//!         cx.write(b"hello, child\n");
//!         cx.close_stdin(); // after the flush: `tr` sees its end of input and exits
//!     }
//!     fn out_received(&mut self, _cx: &mut ProcessCtx<'_>, data: &[u8]) {
//!         self.out.extend_from_slice(data);
//!     }
//!     fn process_ended(&mut self, cx: &mut ProcessCtx<'_>, status: ExitStatus) {
//!         assert!(status.success());
//!         cx.stop_with(String::from_utf8_lossy(&self.out).into_owned());
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let mut tr = Command::new("tr");
//! tr.args(["a-z", "A-Z"]);
//! reactor.spawn_process(tr, Upper { out: Vec::new() })?;
//! assert_eq!(reactor.run_with_result::<String>()?.as_deref(), Some("HELLO, CHILD\n"));
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! ## Exited is not ended
//! A child can exit while a grandchild it started still holds its stdout open (`sh -c 'sleep
//! 100 & exit 0'`). `process_exited` comes at once; `process_ended` waits for the pipes to
//! close. Use `process_exited` for "the program is done" and `process_ended` for "nothing more
//! will arrive".
//!
//! ## Backpressure both ways
//! Stdin has the same write buffer and watermarks as a TCP connection: `write` returns whether
//! the buffer is above the high mark, and `pause_producing` / `resume_producing` tell a
//! producer when to stop and start. A child that stops reading its stdin pauses you, and
//! nothing queues beyond the high mark. In the other direction, `pause_reading` stops reading
//! the child's stdout and stderr: the pipe fills and the child blocks in `write`. The
//! `exec-server` example wires a socket to a child with both: a slow client pauses reading the
//! child; a slow child pauses reading the socket.
//!
//! ## Signals, shutdown and panics
//! `signal_process(Signal::SIGTERM)` and `kill()` (SIGKILL) reach the child. A graceful stop of
//! the reactor closes every child's stdin (after flushing it), waits for them until the
//! shutdown deadline, then SIGKILLs and reaps what is left: `run` never returns with a
//! zombie behind it. A panic in a process callback is logged and the child is killed; its
//! remaining callbacks still arrive, as `connection_lost` does after a panic in a `Protocol`.
//!
//! ## Standard I/O as a connection
//! [`Reactor::standard_io`](torsion_reactor::Reactor::standard_io) (and
//! [`LoopCtx::standard_io`](torsion_reactor::LoopCtx::standard_io) from a callback) runs an
//! ordinary [`Protocol`](torsion_reactor::Protocol) over the process's own stdin and stdout:
//! `data_received` is input, `transport().write` is output, end of input is `eof_received`,
//! and watermarks and producers work as for a socket.
//!
//! Your stdin and stdout are shared with the shell that started you; making them non-blocking
//! would change them for the shell too (a famous way to break a terminal). So torsion leaves
//! them alone: two threads copy between them and a socket pair whose other end is an ordinary
//! connection on the loop. Output written before a close reaches stdout before `run` returns.
//!
//! ```no_run
//! use torsion_reactor::{Ctx, Protocol, Reactor};
//!
//! /// `cat`, as a torsion protocol.
//! struct Cat;
//! impl Protocol for Cat {
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         cx.transport().write(data);
//!     }
//!     fn connection_lost(&mut self, cx: &mut Ctx<'_>, _reason: torsion_reactor::DisconnectReason) {
//!         cx.stop_reactor(); // end of input: the echo is flushed, then `run` returns
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! reactor.standard_io(Cat)?;
//! reactor.run()?;
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! `echo-client` is the real example: it opens standard I/O once connected, and each side is
//! the other's producer, so a server that stops reading pauses reading your stdin.
//!
//! ## Try it
//! ```text
//! cargo run -p torsion-examples --bin exec-server -- --listen 127.0.0.1:9000 -- cat
//! echo hello | cargo run -p torsion-examples --bin echo-client -- --connect 127.0.0.1:9000
//! ```
