//! The stream kinds a transport suite runs over: `Kind`, `over_kinds!`, temporary socket paths, `listen`.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use torsion_reactor::{Address, Factory, ListeningPort, Reactor};

/// A kind of stream socket: a transport suite runs over every kind (see
/// [`over_kinds!`](crate::over_kinds)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// TCP over IPv4 loopback, port 0.
    Tcp,
    /// A Unix stream socket at a unique path in the temporary directory.
    Unix,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 2] = [Kind::Tcp, Kind::Unix];

    /// A fresh address to listen on: `127.0.0.1:0`, or a unique socket path (whose file the
    /// returned guard removes).
    pub fn listen_addr(self) -> ListenAddr {
        match self {
            Kind::Tcp => ListenAddr { addr: Address::Inet(localhost()), path: None },
            Kind::Unix => {
                let path = TempPath::new(".sock");
                ListenAddr { addr: Address::unix_path(path.path()), path: Some(path) }
            }
        }
    }

    /// The kind of an address.
    pub fn of(addr: &Address) -> Kind {
        match addr {
            Address::Inet(_) => Kind::Tcp,
            Address::Unix(_) => Kind::Unix,
        }
    }

    /// Whether `error`, from a client's connect, says that nothing listens there: refused
    /// for TCP; for a Unix path, refused (a file without a listener) or not found (the file
    /// was removed, as a stopped listener does).
    pub fn is_refusal(self, error: &std::io::Error) -> bool {
        match self {
            Kind::Tcp => error.kind() == ErrorKind::ConnectionRefused,
            Kind::Unix => matches!(error.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Tcp => "tcp",
            Kind::Unix => "unix",
        })
    }
}

/// Makes two tests of each named function `fn NAME(kind: Kind)`: `NAME::tcp` and `NAME::unix`
/// (a module beside the function, of the same name). The function's doc comment is the
/// tests' doc comment.
///
/// ```ignore
/// /// Catalogue 8 (peer_half_close_echo): ...
/// fn half_close_echo(kind: Kind) { /* ... */ }
/// over_kinds!(half_close_echo);
/// ```
#[macro_export]
macro_rules! over_kinds {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn tcp() {
                super::$name($crate::Kind::Tcp)
            }
            #[test]
            fn unix() {
                super::$name($crate::Kind::Unix)
            }
        }
    )+};
}

/// A unique path in the temporary directory (this process's id and a counter), removed (if
/// anything is there) when dropped.
#[derive(Debug)]
pub struct TempPath(PathBuf);

impl TempPath {
    /// A new unique path ending in `suffix`; nothing is created.
    pub fn new(suffix: &str) -> TempPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!("torsion-test-{}-{n}{suffix}", std::process::id())))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An address to listen on, from [`Kind::listen_addr`].
#[derive(Debug)]
pub struct ListenAddr {
    /// The address.
    pub addr: Address,
    /// For a Unix socket: the guard that removes its file.
    pub path: Option<TempPath>,
}

/// A listener made by [`listen`].
#[derive(Debug)]
pub struct Listener {
    /// The listening port.
    pub port: ListeningPort,
    /// Its bound address (the real port for TCP; `unix:/path`).
    pub addr: Address,
    /// For a Unix socket: the guard that removes its file if the listener did not.
    pub path: Option<TempPath>,
}

/// Listens with `factory` on a fresh address of `kind` (`127.0.0.1:0`, or a unique socket
/// path), through [`Reactor::listen`].
pub fn listen(reactor: &mut Reactor, kind: Kind, factory: impl Factory) -> Listener {
    let ListenAddr { addr, path } = kind.listen_addr();
    let port = reactor.listen(&addr, factory).unwrap_or_else(|e| panic!("listen on {addr}: {e}"));
    Listener { addr: port.local_addr().clone(), port, path }
}

/// 127.0.0.1 port 0.
pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}
