//! TCP socket setup: listening sockets built with socket2, non-blocking connects completed as
//! mio documents, and socket options.

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::address::Address;
use crate::connection::Socket as TransportSocket;
use crate::socket::{ConnectProgress, StreamSocket};
use crate::TransportError;

/// Default listen backlog.
pub const DEFAULT_BACKLOG: i32 = 1024;

/// How a listening socket is set up.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Listen backlog (default 1024).
    pub backlog: i32,
    /// SO_REUSEADDR (default on, so a restarted server can bind over TIME_WAIT sockets).
    pub reuse_address: bool,
    /// SO_REUSEPORT (default off): several processes may share the port.
    pub reuse_port: bool,
    /// IPV6_V6ONLY for IPv6 addresses (default on, as asyncio).
    pub only_v6: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions { backlog: DEFAULT_BACKLOG, reuse_address: true, reuse_port: false, only_v6: true }
    }
}

impl ListenOptions {
    /// Sets the backlog.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Sets SO_REUSEPORT.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Sets SO_REUSEADDR.
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.reuse_address = on;
        self
    }
}

/// Binds a non-blocking listening socket on `addr` (IPv4 or IPv6; port 0 picks a free port).
pub fn bind_listener(addr: SocketAddr, options: &ListenOptions) -> Result<TcpListener, TransportError> {
    let bind = |e: io::Error| TransportError::Bind { addr, source: e };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(bind)?;
    if addr.is_ipv6() {
        socket.set_only_v6(options.only_v6).map_err(bind)?;
    }
    socket.set_reuse_address(options.reuse_address).map_err(bind)?;
    if options.reuse_port {
        socket.set_reuse_port(true).map_err(bind)?;
    }
    socket.set_nonblocking(true).map_err(bind)?;
    socket.bind(&addr.into()).map_err(bind)?;
    socket.listen(options.backlog).map_err(bind)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Starts a non-blocking connect to `addr`. Completion is reported by writability; see
/// [`connect_progress`].
pub fn start_connect(addr: SocketAddr) -> Result<TcpStream, TransportError> {
    TcpStream::connect(addr).map_err(|e| TransportError::Connect { addr, source: e })
}

/// [`start_connect`] from a given local address (port chosen by the kernel): Twisted's
/// `bindAddress`.
pub fn start_connect_from(addr: SocketAddr, local: std::net::IpAddr) -> Result<TcpStream, TransportError> {
    let fail = |source: io::Error| TransportError::Connect { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.bind(&SocketAddr::new(local, 0).into()).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(fail(e)),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Checks a connecting stream after an event, following mio's documented steps: `take_error`,
/// then `peer_addr` (`NotConnected` means "not yet").
pub fn connect_progress(stream: &TcpStream) -> ConnectProgress {
    ConnectProgress::check(stream.take_error(), stream.peer_addr())
}

/// Turns SO_KEEPALIVE on (with the given idle time, if any) or off.
pub fn set_keepalive(stream: &TcpStream, idle: Option<std::time::Duration>) -> io::Result<()> {
    let sock = SockRef::from(stream);
    match idle {
        Some(idle) => sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle)),
        None => sock.set_keepalive(false),
    }
}

impl StreamSocket for TcpStream {
    fn local_address(&self) -> Option<Address> {
        self.local_addr().ok().map(Address::Inet)
    }

    fn connect_progress(&self) -> ConnectProgress {
        connect_progress(self)
    }

    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nodelay(self, on)
    }

    fn set_keepalive(&self, idle: Option<std::time::Duration>) -> io::Result<()> {
        set_keepalive(self, idle)
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl TransportSocket for TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        TcpStream::shutdown(&*self, std::net::Shutdown::Write)
    }

    fn set_abortive_close(&mut self) -> io::Result<()> {
        SockRef::from(&*self).set_linger(Some(std::time::Duration::ZERO))
    }
}
