//! The proxy's protocols in-process, so the test can watch the proxy's own buffers: 256 MiB
//! through it to a slow backend stays bounded and byte-exact; FINs and resets are forwarded
//! both ways; an unreachable backend closes the client; nothing is left behind.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use torsion_examples::proxy::{Proxy, ProxyStats};
use torsion_reactor::Reactor;

const WAIT: Duration = Duration::from_secs(30);
/// The default high watermark and the reactor's default read buffer: one read can add at most
/// this much to a buffer that was at or below the high mark.
const HIGH: usize = 64 * 1024;
const READ_BUFFER: usize = 256 * 1024;

/// A proxy reactor (driven on the test thread) in front of `backend`.
struct Harness {
    reactor: Reactor,
    proxy: SocketAddr,
    stats: ProxyStats,
}

fn proxy_to(backend: SocketAddr) -> Harness {
    let mut reactor = Reactor::new().unwrap();
    let proxy = Proxy::new(backend);
    let stats = proxy.stats();
    let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), proxy).unwrap();
    Harness { reactor, proxy: port.local_addr().inet().unwrap(), stats }
}

impl Harness {
    /// Turns the proxy's reactor until `thread` has finished, failing after [`WAIT`].
    fn run_while<T>(&mut self, what: &str, thread: &JoinHandle<T>) {
        let deadline = Instant::now() + WAIT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "timed out after {WAIT:?}: {what}");
            self.reactor.run_until(Duration::from_millis(5), |_| false).unwrap();
        }
    }

    /// Turns the reactor until the proxy holds no connection, failing after [`WAIT`].
    fn run_until_idle(&mut self, what: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stats.live_connections().is_empty() || self.reactor.connection_count() > 0 {
            assert!(Instant::now() < deadline, "timed out after {WAIT:?}: {what}: {:?}", self.stats);
            self.reactor.run_until(Duration::from_millis(5), |_| false).unwrap();
        }
    }
}

/// A backend listener whose single connection is handled by `serve` on a thread.
fn backend<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> io::Result<T> + Send + 'static,
) -> (SocketAddr, JoinHandle<io::Result<T>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(WAIT))?;
        stream.set_write_timeout(Some(WAIT))?;
        serve(stream)
    });
    (addr, thread)
}

fn client<T: Send + 'static>(
    addr: SocketAddr,
    talk: impl FnOnce(TcpStream) -> io::Result<T> + Send + 'static,
) -> JoinHandle<io::Result<T>> {
    std::thread::spawn(move || {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(WAIT))?;
        stream.set_write_timeout(Some(WAIT))?;
        talk(stream)
    })
}

fn join<T>(thread: JoinHandle<io::Result<T>>, what: &str) -> T {
    thread.join().unwrap_or_else(|_| panic!("{what} panicked")).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Byte `i` of the transfer: position-dependent, so a lost, repeated or reordered chunk shows.
fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9) >> 13) as u8 ^ (i >> 20) as u8
}

fn fill(buf: &mut [u8], from: u64) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = byte_at(from + k as u64);
    }
}

#[test]
fn a_256_mib_transfer_to_a_slow_backend_is_byte_exact_with_bounded_proxy_buffers() {
    const LEN: u64 = 256 << 20;
    // The backend reads 64 KiB at a time and is slow for the first 32 MiB (a short pause every
    // 64 KiB: it only makes the reader slow, nothing waits on it), then checks every byte, and
    // after the client's FIN (forwarded by the proxy) replies with what it counted and closes.
    let (backend_addr, backend) = backend(|mut stream| {
        let mut buf = vec![0; 64 * 1024];
        let mut expected = vec![0; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            fill(&mut expected[..n], total);
            if buf[..n] != expected[..n] {
                return Err(io::Error::other(format!("bytes differ in {total}..{}", total + n as u64)));
            }
            total += n as u64;
            if total < 32 << 20 {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        stream.write_all(format!("got {total}").as_bytes())?;
        Ok(total)
    });
    let mut h = proxy_to(backend_addr);
    let sender = client(h.proxy, |mut stream| {
        let mut buf = vec![0; 256 * 1024];
        let mut sent = 0u64;
        while sent < LEN {
            fill(&mut buf, sent);
            stream.write_all(&buf)?;
            sent += buf.len() as u64;
        }
        stream.shutdown(Shutdown::Write)?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    });
    h.run_while("the client to send 256 MiB and read the backend's reply", &sender);
    let reply = join(sender, "client");
    let received = join(backend, "backend");
    assert_eq!(received, LEN, "the backend got every byte");
    assert_eq!(reply, format!("got {LEN}"), "the reply after the forwarded FIN, then EOF");
    h.run_until_idle("both proxy connections to close");
    let max = h.stats.max_to_backend();
    assert!(max > HIGH, "precondition: the slow backend made the proxy buffer ({max} bytes)");
    assert!(max <= HIGH + READ_BUFFER, "client→backend buffer peaked at {max} bytes: unbounded");
    assert!(h.stats.max_to_client() <= HIGH + READ_BUFFER, "{:?}", h.stats);
    assert_eq!(h.stats.pairs(), 1);
}

#[test]
fn a_backend_half_close_reaches_the_client_which_can_still_send() {
    let (backend_addr, backend) = backend(|mut stream| {
        stream.write_all(b"banner")?;
        stream.shutdown(Shutdown::Write)?;
        let mut got = Vec::new();
        stream.read_to_end(&mut got)?;
        Ok(got)
    });
    let mut h = proxy_to(backend_addr);
    let talker = client(h.proxy, |mut stream| {
        let mut banner = Vec::new();
        stream.read_to_end(&mut banner)?; // The backend's FIN arrives as EOF.
        stream.write_all(b"after your FIN")?;
        stream.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest)?;
        Ok((banner, rest))
    });
    h.run_while("the client to finish", &talker);
    let (banner, rest) = join(talker, "client");
    assert_eq!(banner, b"banner");
    assert!(rest.is_empty());
    assert_eq!(join(backend, "backend"), b"after your FIN", "the client's bytes after the backend's FIN");
    h.run_until_idle("both proxy connections to close");
}

/// Closes `stream` with SO_LINGER 0, which sends RST instead of FIN.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

#[test]
fn a_client_reset_is_forwarded_to_the_backend() {
    let (backend_addr, backend) = backend(|mut stream| {
        let mut buf = [0; 5];
        stream.read_exact(&mut buf)?;
        let mut rest = Vec::new();
        Ok((buf, stream.read_to_end(&mut rest).map_err(|e| e.kind())))
    });
    let mut h = proxy_to(backend_addr);
    let talker = client(h.proxy, |mut stream| {
        stream.write_all(b"hello")?;
        Ok(stream)
    });
    h.run_while("the client to connect and write", &talker);
    let stream = join(talker, "client");
    // Wait until the proxy linked the pair (the backend read the greeting) before resetting.
    let deadline = Instant::now() + WAIT;
    while h.stats.pairs() == 0 {
        assert!(Instant::now() < deadline, "the proxy never reached the backend");
        h.reactor.run_until(Duration::from_millis(5), |_| false).unwrap();
    }
    reset(stream);
    h.run_while("the backend to see the end", &backend);
    let (greeting, end) = join(backend, "backend");
    assert_eq!(&greeting, b"hello");
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "a reset, not a clean EOF");
    h.run_until_idle("both proxy connections to close");
}

#[test]
fn a_backend_reset_is_forwarded_to_the_client() {
    let (backend_addr, backend) = backend(|mut stream| {
        let mut buf = [0; 5];
        stream.read_exact(&mut buf)?;
        reset(stream);
        Ok(buf)
    });
    let mut h = proxy_to(backend_addr);
    let talker = client(h.proxy, |mut stream| {
        stream.write_all(b"hello")?;
        let mut rest = Vec::new();
        Ok(stream.read_to_end(&mut rest).map_err(|e| e.kind()))
    });
    h.run_while("the client to see the end", &talker);
    assert_eq!(join(talker, "client"), Err(ErrorKind::ConnectionReset), "a reset, not a clean EOF");
    assert_eq!(&join(backend, "backend"), b"hello");
    h.run_until_idle("both proxy connections to close");
}

#[test]
fn an_unreachable_backend_closes_the_client() {
    // Bound but not listening: connects are refused, and nobody else can take the port.
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    held.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let refused = held.local_addr().unwrap().as_socket().unwrap();
    let mut h = proxy_to(refused);
    let talker = client(h.proxy, |mut stream| {
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest)?;
        Ok(rest)
    });
    h.run_while("the client to be closed", &talker);
    assert!(join(talker, "client").is_empty());
    assert_eq!(h.stats.pairs(), 0);
    h.run_until_idle("the client connection to close");
}
