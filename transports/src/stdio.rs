//! Standard I/O as a stream transport: [`stdio_pair`] connects a blocking reader and writer
//! (the process's own stdin and stdout, or anything else) to one end of a Unix socket pair,
//! and returns the other, non-blocking end for the event loop.
//!
//! # Why a socket pair and two threads
//! The process's stdin and stdout are shared with the parent (a shell, a pipe, a terminal):
//! setting `O_NONBLOCK` on them would change them for every other process holding the same
//! open file description, and a terminal or regular file cannot be polled usefully anyway.
//! So they stay blocking and two threads copy bytes: stdin → socket, socket → stdout. The loop
//! sees an ordinary Unix stream connection, so everything above it is shared (write buffer,
//! watermarks, producers, half-close): a paused protocol stops reading the socket, the pair's
//! buffer fills, the stdin thread blocks, and stdin is no longer read (real backpressure).
//!
//! * End of stdin (or a read error) half-closes the socket: the protocol hears
//!   `eof_received`.
//! * The protocol's `lose_connection` (or `write_eof`) ends the stdout thread after it has
//!   written everything and flushed.
//! * A stdout write error (EPIPE: the reader went away) shuts the socket down, so the loop's
//!   next write fails and the connection is lost.
//! * The stdin thread may stay blocked in `read` after the connection ends (a blocking read
//!   cannot be interrupted); it is detached and ends with the process, or at the next byte or
//!   end of input.
//! * The stdout thread ends once the loop's end is closed and everything before the close is
//!   written; [`StdioPair::output_done`] disconnects then, so a program can wait for its
//!   output to reach stdout before it exits.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream as StdUnixStream;

/// Bytes each copying thread moves per system call.
const COPY_BUFFER: usize = 64 * 1024;

/// The loop's end of a standard I/O pair, and a way to wait for the output thread.
#[derive(Debug)]
pub struct StdioPair {
    /// The loop's end of the socket pair (non-blocking).
    pub stream: mio::net::UnixStream,
    /// Disconnects (`recv` returns an error) when the output thread has written everything
    /// the loop sent before closing its end, and exited.
    pub output_done: std::sync::mpsc::Receiver<()>,
}

/// Starts the two copying threads and returns the loop's end of the socket pair.
pub fn stdio_pair<R, W>(input: R, output: W) -> io::Result<StdioPair>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let (ours, theirs) = StdUnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let to_loop = theirs.try_clone()?;
    let from_loop = theirs;
    std::thread::Builder::new().name("torsion-stdin".into()).spawn(move || copy_in(input, to_loop))?;
    let (done, output_done) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new().name("torsion-stdout".into()).spawn(move || {
        copy_out(from_loop, output);
        drop(done);
    })?;
    Ok(StdioPair { stream: mio::net::UnixStream::from_std(ours), output_done })
}

/// stdin → socket, then a half-close.
fn copy_in(mut input: impl Read, mut socket: StdUnixStream) {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if socket.write_all(&buf[..n]).is_err() {
                    // The loop's end is gone: nothing more to deliver.
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(error = %e, "reading standard input failed; treating it as its end");
                break;
            }
        }
    }
    let _ = socket.shutdown(Shutdown::Write);
}

/// socket → stdout until the loop closes its end, flushing after each chunk.
fn copy_out(mut socket: StdUnixStream, mut output: impl Write) {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                    tracing::debug!(error = %e, "writing standard output failed; closing it");
                    let _ = socket.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = output.flush();
}
