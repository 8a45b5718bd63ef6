//! Where a benchmarked server listens: a TCP address or a Unix socket.
//!
//! The textual forms are the ones torsion prints (`torsion_reactor::Address`), so a
//! server's `listening on <addr>` line can be handed to the load generator as it is:
//!
//! * `127.0.0.1:7000`, `[::1]:7000`: TCP;
//! * `unix:/path/to/socket`: a Unix socket bound to a file system path;
//! * `unix:@name`: a Linux abstract Unix socket (no file; the name is the rest of the
//!   text, without the `@`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr as UnixSocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The prefix that marks a Unix socket address.
const UNIX_PREFIX: &str = "unix:";

/// A TCP address or a Unix socket name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket bound to a file system path.
    Unix(PathBuf),
    /// A Linux abstract Unix socket name (without the leading NUL byte).
    UnixAbstract(Vec<u8>),
}

impl Endpoint {
    /// Whether a client of this endpoint stays on this machine: a loopback TCP address,
    /// or any Unix socket (which cannot reach another machine).
    pub fn is_local(&self) -> bool {
        match self {
            Endpoint::Tcp(addr) => addr.ip().is_loopback(),
            Endpoint::Unix(_) | Endpoint::UnixAbstract(_) => true,
        }
    }

    /// The standard library's Unix socket address for a Unix endpoint, to bind or connect
    /// with (`mio::net::UnixListener::bind_addr`, `UnixStream::connect_addr`). Fails for
    /// a TCP endpoint, for a path too long for `sockaddr_un`, and for an abstract name
    /// on systems other than Linux and Android.
    pub fn unix_socket_addr(&self) -> io::Result<UnixSocketAddr> {
        match self {
            Endpoint::Tcp(addr) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr} is not a Unix socket address"),
            )),
            Endpoint::Unix(path) => UnixSocketAddr::from_pathname(path),
            Endpoint::UnixAbstract(name) => abstract_addr(name),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<UnixSocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    UnixSocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<UnixSocketAddr> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "abstract Unix socket names exist only on Linux"))
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint::Tcp(addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
            Endpoint::UnixAbstract(name) => write!(f, "{UNIX_PREFIX}@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// Error for text that is neither a TCP address nor a `unix:` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEndpointError(String);

impl fmt::Display for ParseEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseEndpointError {}

impl FromStr for Endpoint {
    type Err = ParseEndpointError;

    /// Parses `IP:PORT`, `[IPv6]:PORT`, `unix:/path` or `unix:@name` (host names are
    /// not resolved).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some(rest) = text.strip_prefix(UNIX_PREFIX) else {
            return text.parse().map(Endpoint::Tcp).map_err(|_| {
                ParseEndpointError(format!(
                    "invalid address '{text}': expected IP:PORT, unix:/path or unix:@name"
                ))
            });
        };
        if let Some(name) = rest.strip_prefix('@') {
            return Ok(Endpoint::UnixAbstract(name.as_bytes().to_vec()));
        }
        if rest.is_empty() {
            return Err(ParseEndpointError(format!("invalid address '{text}': empty Unix socket path")));
        }
        let path = PathBuf::from(rest);
        // The same limit the kernel applies (108 bytes with the terminating NUL), checked
        // here so that a long temporary directory fails with a clear message.
        if UnixSocketAddr::from_pathname(&path).is_err() {
            return Err(ParseEndpointError(format!(
                "invalid address '{text}': the path is {} bytes long, more than a Unix socket name holds",
                path.as_os_str().as_bytes().len()
            )));
        }
        Ok(Endpoint::Unix(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for text in ["127.0.0.1:7000", "[::1]:80", "unix:/tmp/x.sock", "unix:@bench", "unix:relative.sock"] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint.to_string(), text);
        }
        assert_eq!("unix:/a/b".parse(), Ok(Endpoint::Unix("/a/b".into())));
        assert_eq!("unix:@n".parse(), Ok(Endpoint::UnixAbstract(b"n".to_vec())));
        assert_eq!("127.0.0.1:1".parse(), Ok(Endpoint::Tcp("127.0.0.1:1".parse().unwrap())));
    }

    #[test]
    fn rejects_bad_text() {
        for text in ["", "localhost:80", "127.0.0.1", "unix:", "tcp:127.0.0.1:80"] {
            assert!(text.parse::<Endpoint>().is_err(), "{text:?}");
        }
        let long = format!("unix:/{}", "x".repeat(200));
        let err = long.parse::<Endpoint>().unwrap_err();
        assert!(err.to_string().contains("201 bytes"), "{err}");
    }

    #[test]
    fn locality() {
        assert!("127.0.0.1:1".parse::<Endpoint>().unwrap().is_local());
        assert!("[::1]:1".parse::<Endpoint>().unwrap().is_local());
        assert!(!"192.0.2.1:1".parse::<Endpoint>().unwrap().is_local());
        assert!("unix:/tmp/x".parse::<Endpoint>().unwrap().is_local());
    }

    #[test]
    fn unix_socket_addrs() {
        let addr = Endpoint::Unix("/tmp/x.sock".into()).unix_socket_addr().unwrap();
        assert_eq!(addr.as_pathname(), Some(std::path::Path::new("/tmp/x.sock")));
        assert!(Endpoint::Tcp("127.0.0.1:1".parse().unwrap()).unix_socket_addr().is_err());
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = Endpoint::UnixAbstract(b"bench".to_vec()).unix_socket_addr().unwrap();
            assert_eq!(addr.as_abstract_name(), Some(&b"bench"[..]));
        }
    }
}
