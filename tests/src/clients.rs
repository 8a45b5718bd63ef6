//! Blocking clients of either kind (`AnyStream`, `connect`), what they expect to see (`expect_*`), and addresses that refuse or hang.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::*;
use torsion_reactor::{Address, UnixAddr};

/// A blocking client stream of either kind: a std `TcpStream` or `UnixStream` behind one type.
#[derive(Debug)]
pub enum AnyStream {
    /// A TCP stream.
    Tcp(TcpStream),
    /// A Unix stream.
    Unix(UnixStream),
}

/// Connects a blocking client to `addr`, which must be of `kind`, with read and write
/// timeouts of [`WAIT`]; a failed connect fails the test.
pub fn connect(kind: Kind, addr: &Address) -> AnyStream {
    assert_eq!(Kind::of(addr), kind, "{addr} is not a {kind} address");
    let stream = AnyStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Like [`connect`], for a client whose receive buffer is small and fixed (16 KiB, TCP), so that
/// data sent to it backs up in the server's user-space buffer rather than the kernel's. A Unix
/// stream's kernel buffering is the sender's send buffer (a receive buffer size does not
/// apply), so for Unix this is a plain connect.
pub fn connect_small_window(addr: &Address) -> AnyStream {
    let stream = match addr {
        Address::Inet(inet) => {
            let domain = if inet.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(16 * 1024).unwrap();
            socket.connect(&(*inet).into()).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
            AnyStream::Tcp(socket.into())
        }
        Address::Unix(_) => AnyStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}")),
    };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

impl AnyStream {
    /// Connects to `addr` (TCP for an inet address, Unix for a path or abstract name), with no
    /// timeouts set.
    pub fn connect(addr: &Address) -> std::io::Result<AnyStream> {
        match addr {
            Address::Inet(inet) => TcpStream::connect(inet).map(AnyStream::Tcp),
            Address::Unix(UnixAddr::Path(path)) => UnixStream::connect(path).map(AnyStream::Unix),
            Address::Unix(unix) => UnixStream::connect_addr(&unix.to_std()?).map(AnyStream::Unix),
        }
    }

    /// The kind of stream.
    pub fn kind(&self) -> Kind {
        match self {
            AnyStream::Tcp(_) => Kind::Tcp,
            AnyStream::Unix(_) => Kind::Unix,
        }
    }

    /// The TCP stream; panics for a Unix one.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            AnyStream::Tcp(s) => s,
            AnyStream::Unix(_) => panic!("a Unix stream, not TCP"),
        }
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        match self {
            AnyStream::Tcp(s) => s.shutdown(how),
            AnyStream::Unix(s) => s.shutdown(how),
        }
    }

    /// Shuts down the write half (sends FIN for TCP; the peer reads EOF either way).
    pub fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    /// Sets the read timeout.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            AnyStream::Tcp(s) => s.set_read_timeout(timeout),
            AnyStream::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Sets the write timeout.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            AnyStream::Tcp(s) => s.set_write_timeout(timeout),
            AnyStream::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    /// Moves the stream in or out of non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        match self {
            AnyStream::Tcp(s) => s.set_nonblocking(on),
            AnyStream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// A second handle to the same stream (for a writer thread beside a reader).
    pub fn try_clone(&self) -> std::io::Result<AnyStream> {
        match self {
            AnyStream::Tcp(s) => s.try_clone().map(AnyStream::Tcp),
            AnyStream::Unix(s) => s.try_clone().map(AnyStream::Unix),
        }
    }

    /// This end's address (for a Unix client that did not bind, `unix:(unnamed)`), as the
    /// server's transport reports it in `peer_addr()`.
    pub fn local_addr(&self) -> Address {
        match self {
            AnyStream::Tcp(s) => Address::Inet(s.local_addr().unwrap()),
            AnyStream::Unix(s) => Address::Unix(UnixAddr::from_std(&s.local_addr().unwrap())),
        }
    }

    /// Closes the stream the rudest way its kind has: TCP with SO_LINGER 0 (the kernel sends a
    /// reset instead of FIN); a Unix stream has no reset, so it is a plain close.
    pub fn reset(self) {
        if let AnyStream::Tcp(s) = &self {
            socket2::SockRef::from(s).set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(self);
    }
}

impl Read for AnyStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            AnyStream::Tcp(s) => s.read(buf),
            AnyStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for AnyStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            AnyStream::Tcp(s) => s.write(buf),
            AnyStream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `data` on a second thread while reading on this one; returns what came back before
/// EOF. Shuts the write half down after writing when `half_close` is set.
pub fn write_and_read_to_end(stream: AnyStream, data: Vec<u8>, half_close: bool) -> std::io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&data)?;
        if half_close {
            writer.shutdown_write()?;
        }
        Ok(())
    });
    let mut reader = stream;
    let mut got = Vec::new();
    let read = reader.read_to_end(&mut got);
    sender.join().expect("writer thread panicked")?;
    read.map(|_| got)
}

/// Reads until the server's end of the connection is gone, EOF or a reset (or, for an
/// aborted connection, `ConnectionAborted`); returns how many bytes came first. A timeout or
/// another error fails the test.
pub fn expect_closed(stream: &mut impl Read, what: &str) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return total
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("{what}: the connection was not closed: {e} (after {total} bytes)"),
        }
    }
}

/// Reads to EOF and returns the bytes; a reset, a timeout or another error fails the test.
pub fn expect_eof(stream: &mut impl Read, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    if let Err(e) = stream.read_to_end(&mut got) {
        panic!("{what}: expected data then EOF, got {e} after {} bytes", got.len());
    }
    got
}

/// What the peer of an aborted connection reads, after whatever data the kernel already held:
/// a reset for TCP (the abort sends RST); for a Unix stream, which has no reset, end of file
/// or a reset (Linux reports `ECONNRESET` to the peer when a socket closes with unread input).
/// Returns the bytes read before it.
pub fn expect_aborted(stream: &mut AnyStream, what: &str) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) if stream.kind() == Kind::Unix => return read,
            Ok(0) => panic!("{what}: EOF after {read} B: expected a reset"),
            Ok(n) => read += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return read,
            Err(e) => panic!("{what}: expected a reset, got {e} after {read} B"),
        }
    }
}

/// A loopback address where a connect is refused, for as long as the returned socket lives.
///
/// The socket is bound but not listening, so the kernel answers a SYN with a reset, and no
/// other test (nor a client's ephemeral source port) can take the port meanwhile. Closing a
/// listener and reusing its port instead races with every other test binding port 0.
pub fn refused_addr() -> (socket2::Socket, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&localhost().into()).expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("local_addr").as_socket().expect("an inet address");
    (socket, addr)
}

/// A loopback listener whose accept queue is full, so that a further connect hangs until it
/// times out: `listen(1)`, never accepted, filled by up to four raw connects (the kernel then
/// drops further SYNs). Keep both returned values alive for as long as the queue must stay full.
pub fn full_accept_queue() -> (socket2::Socket, Vec<TcpStream>, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&localhost().into()).expect("bind 127.0.0.1:0");
    socket.listen(1).expect("listen(1)");
    let addr = socket.local_addr().expect("local_addr").as_socket().expect("an inet address");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        // Some of these complete (queued), the rest time out: either way the queue is full.
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    assert!(!fillers.is_empty(), "the accept queue took no connection at all");
    (socket, fillers, addr)
}
