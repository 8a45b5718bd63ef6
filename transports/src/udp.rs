//! UDP sockets: binding (socket2 options), receiving with oversized datagrams detected and
//! dropped, sending with a typed outcome, connected mode, multicast and broadcast options.
//!
//! # No write buffer
//! A datagram socket has no write buffer here, on purpose. The network drops datagrams
//! anyway, so a queue would not make delivery reliable; it would only hide loss from the
//! protocol and grow memory while the kernel's buffer is full. A send that cannot go now
//! reports [`SendOutcome::WouldBlock`] and the protocol decides: drop it, or retry when the
//! socket is writable again.
//!
//! # Truncation
//! [`UdpSocket::recv_from`] receives into a slice one byte longer than the configured maximum
//! datagram size: a datagram that fills that extra byte was larger than the maximum (the
//! kernel truncated it silently), so it is reported as [`RecvOutcome::Oversized`] and never
//! delivered truncated. This needs no `MSG_TRUNC` flag and works the same for connected and
//! unconnected sockets.
//!
//! ```
//! use torsion_transports::udp::{bind_udp, RecvOutcome, SendOutcome, UdpOptions};
//!
//! let a = bind_udp("127.0.0.1:0".parse().unwrap(), &UdpOptions::default()).unwrap();
//! let b = bind_udp("127.0.0.1:0".parse().unwrap(), &UdpOptions::default()).unwrap();
//! assert!(matches!(a.send_to(b"ping", b.local_addr().unwrap()), SendOutcome::Sent(4)));
//! let mut buf = vec![0; 2048];
//! for _ in 0..10_000 {
//!     match b.recv_from(&mut buf, 1000) {
//!         RecvOutcome::Datagram(n, from) => {
//!             assert_eq!(&buf[..n], b"ping");
//!             assert_eq!(from, a.local_addr().unwrap());
//!             break;
//!         }
//!         RecvOutcome::WouldBlock => std::thread::yield_now(),
//!         other => panic!("{other:?}"),
//!     }
//! }
//! ```

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::TransportError;

/// Default maximum datagram size: 65,535 - 8 (UDP header) - 20 (IPv4 header) = 65,507 bytes,
/// the largest payload an IPv4 datagram can carry.
pub const DEFAULT_MAX_DATAGRAM: usize = 65_507;

/// How a UDP socket is set up.
#[derive(Debug, Clone)]
pub struct UdpOptions {
    /// SO_REUSEADDR (default off; on lets several sockets share a multicast port).
    pub reuse_address: bool,
    /// IPV6_V6ONLY for IPv6 addresses (default on).
    pub only_v6: bool,
    /// SO_BROADCAST (default off).
    pub broadcast: bool,
    /// Largest datagram delivered; larger ones are dropped and counted (default
    /// [`DEFAULT_MAX_DATAGRAM`]).
    pub max_datagram_size: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            reuse_address: false,
            only_v6: true,
            broadcast: false,
            max_datagram_size: DEFAULT_MAX_DATAGRAM,
        }
    }
}

impl UdpOptions {
    /// Sets SO_REUSEADDR.
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.reuse_address = on;
        self
    }

    /// Sets IPV6_V6ONLY.
    pub fn only_v6(mut self, on: bool) -> Self {
        self.only_v6 = on;
        self
    }

    /// Sets SO_BROADCAST.
    pub fn broadcast(mut self, on: bool) -> Self {
        self.broadcast = on;
        self
    }

    /// Sets the largest datagram delivered (at least 1 byte).
    pub fn max_datagram_size(mut self, bytes: usize) -> Self {
        self.max_datagram_size = bytes.max(1);
        self
    }
}

/// What one receive found.
#[derive(Debug)]
pub enum RecvOutcome {
    /// A datagram of this many bytes (at the start of the buffer), from this address.
    Datagram(usize, SocketAddr),
    /// A datagram larger than the maximum: dropped.
    Oversized(SocketAddr),
    /// Nothing to read now.
    WouldBlock,
    /// An error the socket reported: for a connected socket, usually an ICMP error (port
    /// unreachable: `ConnectionRefused`) about an earlier send. The socket stays usable.
    Error(io::Error),
}

/// What one send did.
#[derive(Debug)]
pub enum SendOutcome {
    /// The whole datagram (this many bytes) went to the kernel.
    Sent(usize),
    /// The kernel's send buffer is full: nothing was sent.
    WouldBlock,
    /// The send failed (message too long, no route, an ICMP error reported late, …).
    Error(io::Error),
}

impl SendOutcome {
    /// True if the datagram was sent.
    pub fn is_sent(&self) -> bool {
        matches!(self, SendOutcome::Sent(_))
    }

    fn from_result(result: io::Result<usize>) -> SendOutcome {
        match result {
            Ok(n) => SendOutcome::Sent(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => SendOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => SendOutcome::WouldBlock,
            Err(e) => SendOutcome::Error(e),
        }
    }
}

/// A non-blocking UDP socket, registrable with mio.
#[derive(Debug)]
pub struct UdpSocket {
    socket: mio::net::UdpSocket,
}

/// Binds a non-blocking UDP socket on `addr` (port 0 picks a free port).
pub fn bind_udp(addr: SocketAddr, options: &UdpOptions) -> Result<UdpSocket, TransportError> {
    let bind = |e: io::Error| TransportError::Bind { addr, source: e };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(bind)?;
    if addr.is_ipv6() {
        socket.set_only_v6(options.only_v6).map_err(bind)?;
    }
    socket.set_reuse_address(options.reuse_address).map_err(bind)?;
    socket.set_broadcast(options.broadcast).map_err(bind)?;
    socket.set_nonblocking(true).map_err(bind)?;
    socket.bind(&addr.into()).map_err(bind)?;
    let std: std::net::UdpSocket = socket.into();
    Ok(UdpSocket { socket: mio::net::UdpSocket::from_std(std) })
}

impl UdpSocket {
    /// The bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The connected peer, in connected mode.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.peer_addr()
    }

    /// Receives one datagram into `buf`, which must hold at least `max + 1` bytes; a datagram
    /// of more than `max` bytes is reported as [`RecvOutcome::Oversized`] (see the module's
    /// "Truncation").
    pub fn recv_from(&self, buf: &mut [u8], max: usize) -> RecvOutcome {
        let limit = (max + 1).min(buf.len());
        match self.socket.recv_from(&mut buf[..limit]) {
            Ok((n, from)) if n > max => RecvOutcome::Oversized(from),
            Ok((n, from)) => RecvOutcome::Datagram(n, from),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => RecvOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => RecvOutcome::WouldBlock,
            Err(e) => RecvOutcome::Error(e),
        }
    }

    /// Sends one datagram to `to`.
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> SendOutcome {
        SendOutcome::from_result(self.socket.send_to(data, to))
    }

    /// Sends one datagram to the connected peer.
    pub fn send(&self, data: &[u8]) -> SendOutcome {
        SendOutcome::from_result(self.socket.send(data))
    }

    /// Connects the socket to `addr`: sends without an address go there, only its datagrams
    /// are received, and ICMP errors about it are reported by the next receive.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.socket.connect(addr)
    }

    /// Joins an IPv4 multicast group on the interface with address `interface`
    /// (`0.0.0.0`: the kernel's choice).
    pub fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.socket.join_multicast_v4(&group, &interface)
    }

    /// Leaves an IPv4 multicast group.
    pub fn leave_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.socket.leave_multicast_v4(&group, &interface)
    }

    /// Joins an IPv6 multicast group on the interface with index `interface` (0: any).
    pub fn join_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        self.socket.join_multicast_v6(&group, interface)
    }

    /// Leaves an IPv6 multicast group.
    pub fn leave_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        self.socket.leave_multicast_v6(&group, interface)
    }

    /// Sets the IPv4 multicast TTL (Twisted's `setTTL`; default 1).
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.socket.set_multicast_ttl_v4(ttl)
    }

    /// Sets the IPv6 multicast hop limit.
    pub fn set_multicast_hops_v6(&self, hops: u32) -> io::Result<()> {
        SockRef::from(&self.socket).set_multicast_hops_v6(hops)
    }

    /// Sets whether multicast datagrams sent here loop back to local listeners (Twisted's
    /// `setLoopbackMode`), for IPv4 or IPv6 according to the socket's family.
    pub fn set_multicast_loop(&self, on: bool) -> io::Result<()> {
        if self.local_addr()?.is_ipv6() {
            self.socket.set_multicast_loop_v6(on)
        } else {
            self.socket.set_multicast_loop_v4(on)
        }
    }

    /// Sets the interface IPv4 multicast datagrams leave by (Twisted's `setOutgoingInterface`).
    pub fn set_multicast_interface_v4(&self, interface: Ipv4Addr) -> io::Result<()> {
        SockRef::from(&self.socket).set_multicast_if_v4(&interface)
    }

    /// Sets the interface index IPv6 multicast datagrams leave by.
    pub fn set_multicast_interface_v6(&self, interface: u32) -> io::Result<()> {
        SockRef::from(&self.socket).set_multicast_if_v6(interface)
    }

    /// Sets the unicast TTL (IPv4) or hop limit (IPv6).
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        if self.local_addr()?.is_ipv6() {
            SockRef::from(&self.socket).set_unicast_hops_v6(ttl)
        } else {
            self.socket.set_ttl(ttl)
        }
    }

    /// Sets SO_BROADCAST.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.socket.set_broadcast(on)
    }

    /// Whether SO_BROADCAST is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.socket.broadcast()
    }
}

impl mio::event::Source for UdpSocket {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.socket.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.socket.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.socket.deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn bind(addr: &str) -> UdpSocket {
        bind_udp(addr.parse().unwrap(), &UdpOptions::default()).unwrap()
    }

    /// Receives one datagram, polling for at most 5 s.
    fn recv(socket: &UdpSocket, buf: &mut [u8], max: usize) -> RecvOutcome {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match socket.recv_from(buf, max) {
                RecvOutcome::WouldBlock if Instant::now() < deadline => std::thread::yield_now(),
                other => return other,
            }
        }
    }

    #[test]
    fn send_and_receive_v4_and_v6() {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(a) = bind_udp(host.parse().unwrap(), &UdpOptions::default()) else {
                eprintln!("SKIPPED {host}: cannot bind");
                continue;
            };
            let b = bind(host);
            let to = b.local_addr().unwrap();
            assert_ne!(to.port(), 0);
            assert!(a.send_to(b"hello", to).is_sent());
            let mut buf = vec![0; 100];
            match recv(&b, &mut buf, 50) {
                RecvOutcome::Datagram(5, from) => assert_eq!(from, a.local_addr().unwrap()),
                other => panic!("{other:?}"),
            }
            assert_eq!(&buf[..5], b"hello");
        }
    }

    #[test]
    fn empty_datagram_is_delivered() {
        let (a, b) = (bind("127.0.0.1:0"), bind("127.0.0.1:0"));
        assert!(matches!(a.send_to(b"", b.local_addr().unwrap()), SendOutcome::Sent(0)));
        let mut buf = vec![0; 10];
        assert!(matches!(recv(&b, &mut buf, 5), RecvOutcome::Datagram(0, _)));
    }

    #[test]
    fn oversized_datagram_is_reported_not_truncated() {
        let (a, b) = (bind("127.0.0.1:0"), bind("127.0.0.1:0"));
        let to = b.local_addr().unwrap();
        assert!(a.send_to(&[7; 1001], to).is_sent());
        assert!(a.send_to(&[8; 1000], to).is_sent());
        let mut buf = vec![0; 4096];
        assert!(matches!(recv(&b, &mut buf, 1000), RecvOutcome::Oversized(_)));
        assert!(matches!(recv(&b, &mut buf, 1000), RecvOutcome::Datagram(1000, _)));
        assert!(buf[..1000].iter().all(|&x| x == 8));
    }

    #[test]
    fn connected_send_and_port_unreachable() {
        let a = bind("127.0.0.1:0");
        let b = bind("127.0.0.1:0");
        let gone = b.local_addr().unwrap();
        drop(b);
        a.connect(gone).unwrap();
        assert_eq!(a.peer_addr().unwrap(), gone);
        assert!(a.send(b"anyone?").is_sent());
        let mut buf = vec![0; 100];
        match recv(&a, &mut buf, 50) {
            RecvOutcome::Error(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            other => panic!("expected an ICMP error, got {other:?}"),
        }
        // The socket keeps working.
        let c = bind("127.0.0.1:0");
        a.connect(c.local_addr().unwrap()).unwrap();
        assert!(a.send(b"x").is_sent());
        assert!(matches!(recv(&c, &mut buf, 50), RecvOutcome::Datagram(1, _)));
    }

    #[test]
    fn options_apply() {
        let a = bind_udp("127.0.0.1:0".parse().unwrap(), &UdpOptions::default().broadcast(true)).unwrap();
        assert!(a.broadcast().unwrap());
        a.set_broadcast(false).unwrap();
        assert!(!a.broadcast().unwrap());
        a.set_multicast_ttl_v4(2).unwrap();
        a.set_multicast_loop(true).unwrap();
        a.set_ttl(17).unwrap();
        a.set_multicast_interface_v4(Ipv4Addr::LOCALHOST).unwrap();
        if let Ok(v6) = bind_udp("[::1]:0".parse().unwrap(), &UdpOptions::default()) {
            v6.set_multicast_hops_v6(3).unwrap();
            v6.set_multicast_loop(true).unwrap();
            v6.set_ttl(9).unwrap();
        }
    }

    #[test]
    fn multicast_join_and_leave_v4_on_loopback() {
        let opts = UdpOptions::default().reuse_address(true);
        let r = bind_udp("0.0.0.0:0".parse().unwrap(), &opts).unwrap();
        let group = Ipv4Addr::new(239, 255, 0, 77);
        if let Err(e) = r.join_multicast_v4(group, Ipv4Addr::LOCALHOST) {
            eprintln!("SKIPPED multicast: joining {group} on 127.0.0.1 refused: {e}");
            return;
        }
        let s = bind("127.0.0.1:0");
        s.set_multicast_interface_v4(Ipv4Addr::LOCALHOST).unwrap();
        s.set_multicast_loop(true).unwrap();
        let port = r.local_addr().unwrap().port();
        match s.send_to(b"to the group", SocketAddr::from((group, port))) {
            SendOutcome::Sent(_) => {}
            other => {
                eprintln!("SKIPPED multicast: sending to {group} failed: {other:?}");
                return;
            }
        }
        let mut buf = vec![0; 100];
        match recv(&r, &mut buf, 50) {
            RecvOutcome::Datagram(12, _) => assert_eq!(&buf[..12], b"to the group"),
            other => panic!("{other:?}"),
        }
        r.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
    }

    #[test]
    fn multicast_join_and_leave_v6() {
        let Ok(r) = bind_udp("[::]:0".parse().unwrap(), &UdpOptions::default()) else {
            eprintln!("SKIPPED IPv6 multicast: no IPv6");
            return;
        };
        let group: Ipv6Addr = "ff02::1:77".parse().unwrap();
        match r.join_multicast_v6(group, 0) {
            Ok(()) => r.leave_multicast_v6(group, 0).unwrap(),
            Err(e) => eprintln!("SKIPPED IPv6 multicast: joining {group} refused: {e}"),
        }
    }

    #[test]
    fn would_block_when_nothing_to_read() {
        let a = bind("127.0.0.1:0");
        let mut buf = vec![0; 10];
        assert!(matches!(a.recv_from(&mut buf, 5), RecvOutcome::WouldBlock));
    }
}
