//! One address type for every stream transport: an Internet socket address or a Unix socket
//! address (a path, a Linux abstract name, or unnamed), displayed as users write them.
//!
//! ```
//! use torsion_transports::{Address, UnixAddr};
//!
//! let tcp: Address = "127.0.0.1:8000".parse().unwrap();
//! assert_eq!(tcp.to_string(), "127.0.0.1:8000");
//! let v6: Address = "[::1]:8000".parse().unwrap();
//! assert_eq!(v6.to_string(), "[::1]:8000");
//! let unix: Address = "unix:/run/app.sock".parse().unwrap();
//! assert_eq!(unix, Address::Unix(UnixAddr::Path("/run/app.sock".into())));
//! assert_eq!(unix.to_string(), "unix:/run/app.sock");
//! let abstract_name: Address = "unix:@torsion".parse().unwrap();
//! assert_eq!(abstract_name, Address::Unix(UnixAddr::Abstract(b"torsion".to_vec())));
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The longest path (in bytes) a Unix socket address can hold on Linux: `sun_path` is 108
/// bytes, one of which is the terminating NUL.
pub const UNIX_PATH_MAX: usize = 107;

/// A Unix domain socket address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnixAddr {
    /// A path in the file system.
    Path(PathBuf),
    /// A name in Linux's abstract namespace (no file; written `@name`).
    Abstract(Vec<u8>),
    /// No name: the peer of an accepted connection whose client did not bind, or a socket pair.
    Unnamed,
}

impl UnixAddr {
    /// The path, for a path address.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            UnixAddr::Path(p) => Some(p),
            _ => None,
        }
    }

    /// Converts the standard library's Unix socket address.
    pub fn from_std(addr: &std::os::unix::net::SocketAddr) -> UnixAddr {
        use std::os::linux::net::SocketAddrExt;
        if let Some(path) = addr.as_pathname() {
            UnixAddr::Path(path.to_owned())
        } else if let Some(name) = addr.as_abstract_name() {
            UnixAddr::Abstract(name.to_vec())
        } else {
            UnixAddr::Unnamed
        }
    }

    /// The standard library's form of this address (fails for [`UnixAddr::Unnamed`], and for
    /// a path or name longer than [`UNIX_PATH_MAX`]).
    pub fn to_std(&self) -> std::io::Result<std::os::unix::net::SocketAddr> {
        use std::os::linux::net::SocketAddrExt;
        match self {
            UnixAddr::Path(p) => std::os::unix::net::SocketAddr::from_pathname(p),
            UnixAddr::Abstract(name) => std::os::unix::net::SocketAddr::from_abstract_name(name),
            UnixAddr::Unnamed => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an unnamed Unix address has no name",
            )),
        }
    }
}

impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddr::Path(p) => write!(f, "unix:{}", p.display()),
            UnixAddr::Abstract(name) => write!(f, "unix:@{}", String::from_utf8_lossy(name)),
            UnixAddr::Unnamed => f.write_str("unix:(unnamed)"),
        }
    }
}

/// Where a stream transport listens or connects, or who its peer is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address and port (TCP).
    Inet(SocketAddr),
    /// A Unix domain socket address.
    Unix(UnixAddr),
}

impl Address {
    /// The Internet address, if this is one.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(a) => Some(*a),
            Address::Unix(_) => None,
        }
    }

    /// The Unix address, if this is one.
    pub fn unix(&self) -> Option<&UnixAddr> {
        match self {
            Address::Unix(a) => Some(a),
            Address::Inet(_) => None,
        }
    }

    /// A Unix path address.
    pub fn unix_path(path: impl Into<PathBuf>) -> Address {
        Address::Unix(UnixAddr::Path(path.into()))
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Inet(addr)
    }
}

impl From<UnixAddr> for Address {
    fn from(addr: UnixAddr) -> Address {
        Address::Unix(addr)
    }
}

impl PartialEq<SocketAddr> for Address {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.inet() == Some(*other)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // SocketAddr's Display already writes `127.0.0.1:8000` and `[::1]:8000`.
            Address::Inet(a) => a.fmt(f),
            Address::Unix(u) => u.fmt(f),
        }
    }
}

/// An Internet address resolves to itself, so `TcpStream::connect(port.local_addr())` works; a
/// Unix address is an `InvalidInput` error (connect with `UnixStream` instead).
impl std::net::ToSocketAddrs for Address {
    type Iter = std::option::IntoIter<SocketAddr>;

    fn to_socket_addrs(&self) -> std::io::Result<Self::Iter> {
        match self {
            Address::Inet(a) => Ok(Some(*a).into_iter()),
            Address::Unix(u) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{u} is a Unix socket address, not an Internet one"),
            )),
        }
    }
}

/// Why a string is not an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressParseError {
    /// Neither `HOST:PORT` with a numeric host, `[V6]:PORT`, nor `unix:PATH`.
    #[error("`{0}` is not an address: expected HOST:PORT, [V6]:PORT or unix:PATH")]
    Invalid(String),
    /// `unix:` with nothing after it.
    #[error("`unix:` needs a path (unix:/path/to/socket) or an abstract name (unix:@name)")]
    EmptyUnixPath,
    /// A Unix path or abstract name longer than `sun_path` holds.
    #[error("Unix socket address `{text}` is {len} bytes long; the limit is {max}")]
    UnixPathTooLong {
        /// The address as given.
        text: String,
        /// Its length in bytes.
        len: usize,
        /// [`UNIX_PATH_MAX`].
        max: usize,
    },
}

impl FromStr for Address {
    type Err = AddressParseError;

    /// Parses `127.0.0.1:8000`, `[::1]:8000`, `unix:/path` (or `unix:relative/path`) and
    /// `unix:@abstract-name`. Host names are not resolved here: a host must be an IP literal.
    fn from_str(text: &str) -> Result<Address, AddressParseError> {
        if let Some(rest) = text.strip_prefix("unix:") {
            if rest.is_empty() || rest == "@" {
                return Err(AddressParseError::EmptyUnixPath);
            }
            let len = rest.len() - usize::from(rest.starts_with('@'));
            if len > UNIX_PATH_MAX {
                return Err(AddressParseError::UnixPathTooLong {
                    text: text.to_owned(),
                    len,
                    max: UNIX_PATH_MAX,
                });
            }
            return Ok(Address::Unix(match rest.strip_prefix('@') {
                Some(name) => UnixAddr::Abstract(name.as_bytes().to_vec()),
                None => UnixAddr::Path(PathBuf::from(rest)),
            }));
        }
        text.parse::<SocketAddr>().map(Address::Inet).map_err(|_| AddressParseError::Invalid(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_every_form() {
        for text in ["127.0.0.1:8000", "[::1]:8000", "unix:/tmp/x.sock", "unix:rel/x.sock", "unix:@name"] {
            let addr: Address = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        assert_eq!(Address::Unix(UnixAddr::Unnamed).to_string(), "unix:(unnamed)");
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert_eq!("unix:".parse::<Address>(), Err(AddressParseError::EmptyUnixPath));
        assert_eq!("unix:@".parse::<Address>(), Err(AddressParseError::EmptyUnixPath));
        assert!(matches!("localhost:80".parse::<Address>(), Err(AddressParseError::Invalid(_))));
        assert!(matches!("::1:80".parse::<Address>(), Err(AddressParseError::Invalid(_))));
        let long = format!("unix:/{}", "x".repeat(200));
        assert!(matches!(
            long.parse::<Address>(),
            Err(AddressParseError::UnixPathTooLong { len: 201, max: UNIX_PATH_MAX, .. })
        ));
        let exact = format!("unix:/{}", "x".repeat(UNIX_PATH_MAX - 1));
        assert!(exact.parse::<Address>().is_ok(), "107 bytes fit");
    }

    #[test]
    fn std_conversion_keeps_paths_and_abstract_names() {
        for addr in [UnixAddr::Path("/tmp/a.sock".into()), UnixAddr::Abstract(b"abc".to_vec())] {
            assert_eq!(UnixAddr::from_std(&addr.to_std().unwrap()), addr);
        }
        assert!(UnixAddr::Unnamed.to_std().is_err());
    }
}
