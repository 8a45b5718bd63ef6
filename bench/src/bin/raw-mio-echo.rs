//! `raw-mio-echo`: the baseline, a hand-written single-threaded mio echo server.
//!
//! It is meant to be as close to the cost of the system calls themselves as a portable
//! mio program gets, so that other servers can be expressed as a ratio of it:
//!
//! * one edge-triggered `epoll` loop on one thread;
//! * one shared 256 KiB read buffer for the whole loop: connections own no read buffer;
//! * data read is written straight back from that buffer. Only when a write comes up
//!   short is the unwritten rest copied into the connection's `pending` vector, and only
//!   then is the connection registered for `WRITABLE` as well; while anything is pending
//!   the connection is not read (backpressure: at most one read's worth per connection
//!   is ever buffered);
//! * reading stops at `WouldBlock` or at a short read (the receive queue is empty, so
//!   the next edge will come with new data), which saves one `read` syscall per message.
//!
//! The same loop serves TCP or a Unix socket: the server is generic over the
//! [`Listener`] (mio's `TcpListener` or `UnixListener`) and the stream type it accepts,
//! and the only difference is that TCP connections get `TCP_NODELAY`.
//!
//! Usage: `raw-mio-echo [--listen 127.0.0.1:0 | --listen unix:/path] [--read-size BYTES]`.
//! The first line on standard output is `listening on <addr>` (`listening on unix:/path`
//! for a Unix socket). A Unix socket path must not exist yet, and the socket file is
//! left behind when the server is killed: use a fresh path (in a temporary directory)
//! for each run.

use std::io::{self, Read, Write};

use clap::Parser;
use mio::event::{Event, Source};
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token};
use torsion_bench::Endpoint;

/// Size of the one read buffer shared by all connections.
const READ_BUF: usize = 256 * 1024;
/// Capacity of the event buffer returned by one `epoll_wait`.
const EVENT_CAPACITY: usize = 1024;
/// Token of the listening socket; connections use their slot index.
const LISTENER: Token = Token(usize::MAX);

/// Baseline mio echo server for the torsion benchmark.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on: IP:PORT (port 0 lets the kernel choose), unix:/path (which
    /// must not exist yet) or unix:@name (Linux abstract name).
    #[arg(long, default_value = torsion_bench::DEFAULT_LISTEN)]
    listen: Endpoint,
    /// Most bytes taken by one `read` (the shared buffer is always 256 KiB). The
    /// default uses the whole buffer; smaller values are for experiments (fewer bytes
    /// touched per read, more syscalls per megabyte).
    #[arg(long, default_value_t = READ_BUF, value_parser = parse_read_size)]
    read_size: usize,
}

/// Parses `--read-size`: 1 byte up to the buffer size.
fn parse_read_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=READ_BUF).contains(&n) => Ok(n),
        _ => Err(format!("expected a byte count from 1 to {READ_BUF}")),
    }
}

/// A listening socket the server can accept connections of type `Stream` from.
trait Listener: Source {
    /// The connected socket type.
    type Stream: Read + Write + Source;

    /// Accepts one pending connection (non-blocking).
    fn accept_stream(&self) -> io::Result<Self::Stream>;

    /// Per-connection socket settings, applied once after accepting.
    fn prepare(stream: &Self::Stream) -> io::Result<()>;
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    fn accept_stream(&self) -> io::Result<TcpStream> {
        self.accept().map(|(stream, _peer)| stream)
    }

    fn prepare(stream: &TcpStream) -> io::Result<()> {
        // Answer small messages at once, as every benchmarked server does.
        stream.set_nodelay(true)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;

    fn accept_stream(&self) -> io::Result<UnixStream> {
        self.accept().map(|(stream, _peer)| stream)
    }

    fn prepare(_stream: &UnixStream) -> io::Result<()> {
        // No Nagle on Unix sockets: nothing to set.
        Ok(())
    }
}

/// One accepted connection.
#[derive(Debug)]
struct Conn<S> {
    stream: S,
    /// Echo data the socket did not accept yet; empty in the common case.
    pending: Vec<u8>,
    /// How much of `pending` has been written already.
    pending_pos: usize,
}

/// What to do with a connection after handling an event.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Keep,
    Close,
}

/// Result of trying to write bytes out.
#[derive(Debug, PartialEq, Eq)]
enum Flushed {
    /// Everything was written.
    All,
    /// The socket is full; the rest is in `pending`.
    Blocked,
}

impl<S: Read + Write + Source> Conn<S> {
    fn has_pending(&self) -> bool {
        self.pending_pos < self.pending.len()
    }

    /// Writes `data` (fresh echo data from the shared buffer) directly to the socket.
    /// Whatever is not accepted is copied into `pending`.
    fn echo(&mut self, data: &[u8]) -> io::Result<Flushed> {
        let mut written = 0;
        while written < data.len() {
            match self.stream.write(&data[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if written == data.len() {
            return Ok(Flushed::All);
        }
        self.pending.clear();
        self.pending_pos = 0;
        self.pending.extend_from_slice(&data[written..]);
        Ok(Flushed::Blocked)
    }

    /// Writes out `pending`. On success the vector is emptied (keeping its capacity).
    fn flush_pending(&mut self) -> io::Result<Flushed> {
        while self.has_pending() {
            match self.stream.write(&self.pending[self.pending_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pending_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        self.pending_pos = 0;
        Ok(Flushed::All)
    }

    /// Reads and echoes until the socket is drained or a write blocks.
    ///
    /// `trust_short_read` allows stopping after a read that did not fill the buffer.
    /// That is only sound when this very event reported the readiness and no FIN: a FIN
    /// that arrived together with the last data produces no further edge, so in that
    /// case (and after a backpressure pause, when earlier edges were ignored) reading
    /// continues until `WouldBlock` or end-of-file.
    fn read_and_echo(
        &mut self,
        token: Token,
        buf: &mut [u8],
        registry: &Registry,
        trust_short_read: bool,
    ) -> io::Result<Next> {
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => return Ok(Next::Close),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Keep),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if self.echo(&buf[..n])? == Flushed::Blocked {
                // Stop reading until the peer drains its side; resume on WRITABLE.
                registry.reregister(&mut self.stream, token, Interest::READABLE | Interest::WRITABLE)?;
                return Ok(Next::Keep);
            }
            if n < buf.len() && trust_short_read {
                return Ok(Next::Keep);
            }
        }
    }

    /// Handles one readiness event for this connection.
    fn on_event(
        &mut self,
        token: Token,
        event: &Event,
        buf: &mut [u8],
        registry: &Registry,
    ) -> io::Result<Next> {
        if self.has_pending() {
            // Backpressured: only the socket becoming writable (or an error, which the
            // write reports) can make progress; readable edges are deliberately ignored
            // and made up for by the full drain below.
            if !(event.is_writable() || event.is_write_closed() || event.is_error()) {
                return Ok(Next::Keep);
            }
            if self.flush_pending()? == Flushed::Blocked {
                return Ok(Next::Keep);
            }
            registry.reregister(&mut self.stream, token, Interest::READABLE)?;
            return self.read_and_echo(token, buf, registry, false);
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            return self.read_and_echo(token, buf, registry, !event.is_read_closed());
        }
        // A stale WRITABLE edge with nothing pending: nothing to do.
        Ok(Next::Keep)
    }
}

/// Whether an `accept` error concerns only that one connection (which the peer gave up
/// on before it was accepted), so accepting should simply go on.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

/// The server: listener, connection slab and the shared read buffer.
#[derive(Debug)]
struct Server<L: Listener> {
    poll: Poll,
    listener: L,
    /// Connections indexed by token; `None` marks a free slot.
    conns: Vec<Option<Conn<L::Stream>>>,
    /// Free slots in `conns`, reused before the vector grows.
    free: Vec<usize>,
    /// The single read buffer shared by every connection.
    buf: Vec<u8>,
    /// How much of `buf` one read may fill.
    read_size: usize,
}

impl<L: Listener> Server<L> {
    fn new(mut listener: L, read_size: usize) -> io::Result<Self> {
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Self { poll, listener, conns: Vec::new(), free: Vec::new(), buf: vec![0; READ_BUF], read_size })
    }

    /// Accepts every pending connection (edge-triggered: the backlog must be drained).
    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            let mut stream = match self.listener.accept_stream() {
                Ok(stream) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // The peer gave up before we accepted it; try the next one.
                Err(e) if is_transient_accept_error(&e) => continue,
                // Anything else (e.g. out of file descriptors) is fatal for a benchmark
                // server: an edge-triggered listener cannot simply retry later.
                Err(e) => return Err(e),
            };
            L::prepare(&stream)?;
            let slot = match self.free.pop() {
                Some(slot) => slot,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            self.poll.registry().register(&mut stream, Token(slot), Interest::READABLE)?;
            self.conns[slot] = Some(Conn { stream, pending: Vec::new(), pending_pos: 0 });
        }
    }

    /// Runs the event loop forever.
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENT_CAPACITY);
        loop {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                let token = event.token();
                if token == LISTENER {
                    self.accept_all()?;
                    continue;
                }
                // An event may refer to a connection closed earlier in this batch (its
                // slot possibly reused since): the handlers then just see WouldBlock.
                let Some(conn) = self.conns.get_mut(token.0).and_then(Option::as_mut) else {
                    continue;
                };
                let next = conn
                    .on_event(token, event, &mut self.buf[..self.read_size], self.poll.registry())
                    .unwrap_or(Next::Close);
                if next == Next::Close {
                    // Dropping the socket closes it, which also removes it from epoll.
                    self.conns[token.0] = None;
                    self.free.push(token.0);
                }
            }
        }
    }
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let bind_error = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cli.listen));
    match &cli.listen {
        Endpoint::Tcp(addr) => {
            let mut server = Server::new(TcpListener::bind(*addr).map_err(bind_error)?, cli.read_size)?;
            torsion_bench::announce_listening(server.listener.local_addr()?)?;
            server.run()
        }
        unix @ (Endpoint::Unix(_) | Endpoint::UnixAbstract(_)) => {
            let listener = UnixListener::bind_addr(&unix.unix_socket_addr()?).map_err(bind_error)?;
            let mut server = Server::new(listener, cli.read_size)?;
            torsion_bench::announce_listening(unix)?;
            server.run()
        }
    }
}
