//! Endpoint strings: where to listen and where to connect, written as Twisted users write them
//! for `serverFromString` and `clientFromString`, parsed into typed values. Pure parsing: no
//! socket is opened and no name is resolved here.
//!
//! ```
//! use std::net::{IpAddr, Ipv6Addr};
//! use torsion_transports::{ClientEndpoint, ServerEndpoint};
//!
//! let server: ServerEndpoint = r"tcp6:8080:interface=\:\:1".parse().unwrap();
//! assert_eq!(
//!     server,
//!     ServerEndpoint::Tcp {
//!         port: 8080,
//!         interface: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
//!         backlog: None,
//!         ipv6: true,
//!     }
//! );
//! assert_eq!(server.address().unwrap().to_string(), "[::1]:8080");
//! // Display is the canonical Twisted form, and parses back to the same value.
//! assert_eq!("[::1]:8080".parse::<ServerEndpoint>().unwrap().to_string(), r"tcp6:8080:interface=\:\:1");
//!
//! let client: ClientEndpoint = "example.com:443".parse().unwrap();
//! assert_eq!(client.host_port(), Some(("example.com", 443)));
//! assert_eq!(client.to_string(), "tcp:host=example.com:port=443");
//!
//! let err = "tcp:99999".parse::<ServerEndpoint>().unwrap_err();
//! assert_eq!((err.field(), err.position()), (Some("port"), 4));
//! ```
//!
//! # Grammar
//!
//! A description is `TYPE:ARG:ARG...`. Each argument is positional (`8080`) or `KEY=VALUE`;
//! only the first `=` of an argument separates (later ones are literal); `\` makes the next
//! character literal (`\:`, `\\`, `\=`). Positional arguments bind to the type's parameters in
//! Twisted's order, keywords by name, so `tcp:8080:127.0.0.1` and
//! `tcp:port=8080:interface=127.0.0.1` are the same. Stricter than Twisted: a key given twice,
//! an unknown key, an empty value, a number with a sign, space or `_`, or a key Twisted has but
//! torsion does not support (`sslmethod`, `dhParameters`, systemd `name`, client `lockfile`,
//! `certificate`, `privateKey`, `endpoint`) is an error, never ignored. Type names are lowercase.
//! IP addresses are literals; in `tcp:`, `tcp6:`, `ssl:` and `tls:` an IPv6 address may be
//! escaped (`interface=\:\:1`, Twisted's way) or bracketed (`interface=[::1]`, twisted#8035).
//!
//! ## Servers ([`ServerEndpoint`])
//!
//! | form | example | notes |
//! |---|---|---|
//! | `tcp:PORT[:interface=IP][:backlog=N]` | `tcp:8080:interface=127.0.0.1` | port `0..=65535` (0: the kernel picks); interface defaults to `0.0.0.0` |
//! | `tcp6:PORT[:backlog=N][:interface=IPV6]` | `tcp6:8080:interface=\:\:1` | interface defaults to `::`; an IPv4 interface is an error |
//! | `unix:PATH[:mode=OCTAL][:backlog=N][:lockfile=0\|1]` | `unix:/run/app.sock:mode=660` | `unix:@NAME` is a Linux abstract name (`unix:\@x` a path `@x`); mode defaults to `666`; `lockfile` defaults to **1**, as Twisted's (a `PATH.lock` holding our pid) |
//! | `ssl:PORT[:privateKey=KEY][:certKey=CERT][:extraCertChain=PEM][:interface=IP][:backlog=N]` | `ssl:8443:privateKey=key.pem:certKey=cert.pem` | as Twisted: `privateKey` defaults to `server.pem`, `certKey` to `privateKey` |
//! | `systemd:domain=INET\|INET6\|UNIX:index=N` | `systemd:domain=INET:index=0` | the Nth socket systemd passed (`LISTEN_FDS`) |
//! | `IP:PORT`, `[IPV6]:PORT` | `127.0.0.1:8080`, `[::1]:0` | shorthand for `tcp:`/`tcp6:` with that interface; the host must be an IP literal (`localhost:8080` is an error: write `127.0.0.1:8080` or `[::1]:8080`) |
//!
//! The `backlog` default (`None`) is the listener's own ([`DEFAULT_BACKLOG`](crate::DEFAULT_BACKLOG)),
//! not Twisted's 50.
//!
//! ## Clients ([`ClientEndpoint`])
//!
//! | form | example | notes |
//! |---|---|---|
//! | `tcp:host=HOST:port=PORT[:timeout=S][:bindAddress=IP]` | `tcp:host=example.com:port=80:timeout=5` | also positional: `tcp:example.com:80`, `tcp:host=example.com:80` |
//! | `unix:path=PATH[:timeout=S]` | `unix:/run/app.sock` | positional path too; `@NAME` is an abstract name |
//! | `tls:host=HOST:port=PORT[:timeout=S][:bindAddress=IP][:trustRoots=DIR]` | `tls:host=example.com:port=443` | `caCertsDir=DIR` is accepted for `trustRoots` |
//! | `HOST:PORT`, `[IPV6]:PORT` | `example.com:80`, `[::1]:8080` | shorthand for `tcp:`; the host may be a name (resolved later, not here), but not `ssl`, `tcp6` or `systemd` (`ssl:443` is an unknown client type, not host `ssl`) |
//!
//! Client ports are `1..=65535`. Timeouts are seconds, whole (`30`, as Twisted) or with up to 9
//! decimals (`2.5`); the default (`None`) is the connector's.
//!
//! Errors ([`EndpointParseError`]) name the field and the byte offset of the bad text.
//! `Display` writes the canonical form: `tcp:PORT…`, `tcp6:PORT…` (when `ipv6`),
//! `unix:PATH…`, `ssl:PORT:privateKey=…`, `systemd:domain=…:index=N`, `tcp:host=…:port=…`,
//! `unix:path=…`, `tls:host=…:port=…`, with `:` and `\` in values escaped, and parses back to the
//! same value. (A path or abstract name that is not UTF-8 displays lossily, so only UTF-8 ones
//! round-trip; an unnamed Unix address displays as `unix:`, which does not parse.)

mod client;
mod lex;
mod server;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::address::{Address, UnixAddr};

/// Where a server listens: parsed from a Twisted `serverFromString` description (see the
/// [module docs](self) for the grammar).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerEndpoint {
    /// `tcp:PORT…` or `tcp6:PORT…` (and the `IP:PORT` shorthand).
    Tcp {
        /// The port; 0 lets the kernel choose.
        port: u16,
        /// The interface to bind; `None` is every interface (`0.0.0.0`, or `::` for `tcp6`).
        interface: Option<IpAddr>,
        /// The listen backlog; `None` is the listener's default.
        backlog: Option<u32>,
        /// Written `tcp6:` (the default interface is `::`, and an interface must be IPv6).
        ipv6: bool,
    },
    /// `unix:PATH…` or `unix:@NAME…`.
    Unix {
        /// The path or abstract name.
        addr: UnixAddr,
        /// The socket file's mode; `None` is the default (`0o666`).
        mode: Option<u32>,
        /// Hold a `PATH.lock` file with our pid (Twisted's `wantPID`); `true` unless `lockfile=0`,
        /// as in Twisted.
        lockfile: bool,
        /// The listen backlog; `None` is the listener's default.
        backlog: Option<u32>,
    },
    /// `ssl:PORT…`: TCP with TLS.
    Ssl {
        /// The port; 0 lets the kernel choose.
        port: u16,
        /// The interface to bind; `None` is `0.0.0.0`.
        interface: Option<IpAddr>,
        /// The listen backlog; `None` is the listener's default.
        backlog: Option<u32>,
        /// The PEM private key file (`privateKey`, default `server.pem` as in Twisted).
        private_key: PathBuf,
        /// The PEM certificate file (`certKey`; the private key's file when not given).
        cert_key: PathBuf,
        /// A PEM file of intermediate certificates (`extraCertChain`).
        extra_cert_chain: Option<PathBuf>,
    },
    /// `systemd:domain=…:index=N`: a listening socket passed by systemd socket activation.
    Systemd {
        /// The socket's address family.
        domain: SystemdDomain,
        /// Its position among the passed descriptors (0 is descriptor 3).
        index: usize,
    },
}

/// The address family of a socket passed by systemd (`domain=` of `systemd:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SystemdDomain {
    /// `INET`: IPv4.
    Inet,
    /// `INET6`: IPv6.
    Inet6,
    /// `UNIX`: a Unix domain socket.
    Unix,
}

/// Where a client connects: parsed from a Twisted `clientFromString` description (see the
/// [module docs](self) for the grammar).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientEndpoint {
    /// `tcp:host=…:port=…` (and the `HOST:PORT` shorthand).
    Tcp {
        /// A host name or IP literal (unresolved).
        host: String,
        /// The port, `1..=65535`.
        port: u16,
        /// The connect timeout; `None` is the connector's default.
        timeout: Option<Duration>,
        /// The local address to bind before connecting (any port).
        bind_address: Option<IpAddr>,
    },
    /// `unix:path=…`.
    Unix {
        /// The path or abstract name.
        addr: UnixAddr,
        /// The connect timeout; `None` is the connector's default.
        timeout: Option<Duration>,
    },
    /// `tls:host=…:port=…`: TCP with TLS, the host also naming the certificate to expect.
    Tls {
        /// A host name or IP literal (unresolved).
        host: String,
        /// The port, `1..=65535`.
        port: u16,
        /// A directory of PEM CA certificates to trust (`trustRoots`, or `caCertsDir`); `None`
        /// is the platform's trust store.
        ca_certs_dir: Option<PathBuf>,
        /// The connect timeout; `None` is the connector's default.
        timeout: Option<Duration>,
        /// The local address to bind before connecting (any port).
        bind_address: Option<IpAddr>,
    },
}

/// Why a string is not a [`ServerEndpoint`] or [`ClientEndpoint`]. Every variant but
/// [`Empty`](Self::Empty) carries the byte offset in the string of the text at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointParseError {
    /// The empty string.
    #[error("an empty endpoint description")]
    Empty,
    /// Not a known type, nor `HOST:PORT`.
    #[error("unknown endpoint type `{name}` at byte {position}: expected tcp:, tcp6:, unix:, ssl:, systemd: (servers), tcp:, unix:, tls: (clients), or HOST:PORT")]
    UnknownType {
        /// What was there.
        name: String,
        /// Its byte offset.
        position: usize,
    },
    /// A key the endpoint type does not have.
    #[error("unknown key `{key}` for {endpoint}: at byte {position}")]
    UnknownKey {
        /// The endpoint type.
        endpoint: &'static str,
        /// The key.
        key: String,
        /// Its byte offset.
        position: usize,
    },
    /// A key Twisted has for this type that torsion does not support.
    #[error("`{key}` of {endpoint}: (at byte {position}) is not supported by torsion")]
    UnsupportedKey {
        /// The endpoint type.
        endpoint: &'static str,
        /// The key.
        key: &'static str,
        /// Its byte offset.
        position: usize,
    },
    /// A parameter given twice (as keys, or positionally and as a key).
    #[error("`{key}` given twice (again at byte {position})")]
    DuplicateKey {
        /// The parameter.
        key: &'static str,
        /// The byte offset of the second one.
        position: usize,
    },
    /// More positional arguments than the type takes.
    #[error("too many positional arguments for {endpoint}: `{value}` at byte {position}")]
    TooManyArguments {
        /// The endpoint type.
        endpoint: &'static str,
        /// The extra argument.
        value: String,
        /// Its byte offset.
        position: usize,
    },
    /// A required parameter is absent.
    #[error("missing `{field}` (at byte {position}, the end)")]
    MissingKey {
        /// The parameter.
        field: &'static str,
        /// The length of the string.
        position: usize,
    },
    /// A port that is not a number in range.
    #[error("bad {field} `{value}` at byte {position}: expected {min}..=65535")]
    BadPort {
        /// `port`.
        field: &'static str,
        /// The text.
        value: String,
        /// Its byte offset.
        position: usize,
        /// 0 for servers, 1 for clients.
        min: u16,
    },
    /// Not an IP literal.
    #[error("bad {field} `{value}` at byte {position}: expected an IP address (IPv6 as \\:\\:1 or [::1])")]
    BadIp {
        /// The parameter.
        field: &'static str,
        /// The text.
        value: String,
        /// Its byte offset.
        position: usize,
    },
    /// An IPv4 address where `tcp6:` needs IPv6.
    #[error("bad {field} `{value}` at byte {position}: tcp6 needs an IPv6 address")]
    NotIpv6 {
        /// The parameter.
        field: &'static str,
        /// The text.
        value: String,
        /// Its byte offset.
        position: usize,
    },
    /// A host with white space or control characters.
    #[error("bad {field} `{value}`: unexpected character at byte {position}")]
    BadHost {
        /// The parameter.
        field: &'static str,
        /// The text.
        value: String,
        /// The byte offset of the bad character.
        position: usize,
    },
    /// Not a decimal number in range (backlog, index, timeout).
    #[error("bad {field} `{value}` at byte {position}: expected a decimal number")]
    BadNumber {
        /// The parameter.
        field: &'static str,
        /// The text.
        value: String,
        /// Its byte offset.
        position: usize,
    },
    /// Not an octal file mode up to `7777`.
    #[error("bad mode `{value}` at byte {position}: expected octal, as 660")]
    BadMode {
        /// The text.
        value: String,
        /// Its byte offset.
        position: usize,
    },
    /// Not `0` or `1`.
    #[error("bad {field} `{value}` at byte {position}: expected 0 or 1")]
    BadBoolean {
        /// The parameter.
        field: &'static str,
        /// The text.
        value: String,
        /// Its byte offset.
        position: usize,
    },
    /// A systemd domain other than `INET`, `INET6`, `UNIX`.
    #[error("bad domain `{value}` at byte {position}: expected INET, INET6 or UNIX")]
    BadDomain {
        /// The text.
        value: String,
        /// Its byte offset.
        position: usize,
    },
    /// A `\` with nothing after it.
    #[error("trailing backslash at byte {position}")]
    TrailingBackslash {
        /// Its byte offset.
        position: usize,
    },
    /// A `[` with no `]`.
    #[error("unclosed `[` at byte {position}")]
    UnclosedBracket {
        /// Its byte offset.
        position: usize,
    },
    /// `KEY=` with nothing after it.
    #[error("empty {field} at byte {position}")]
    EmptyValue {
        /// The parameter.
        field: &'static str,
        /// The byte offset where the value should be.
        position: usize,
    },
    /// An address value cut short by an unescaped `:` (`interface=::1`).
    #[error("{field} at byte {position} starts with an unescaped `:`: write IPv6 as \\:\\:1 or [::1]")]
    UnescapedColon {
        /// The parameter.
        field: &'static str,
        /// The byte offset of the colon.
        position: usize,
    },
    /// A Unix path or abstract name longer than `sun_path` holds.
    #[error("{field} at byte {position} is {len} bytes long; a Unix socket address holds {max}")]
    UnixPathTooLong {
        /// The parameter.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// [`UNIX_PATH_MAX`](crate::UNIX_PATH_MAX).
        max: usize,
        /// Its byte offset.
        position: usize,
    },
    /// A NUL character in a path.
    #[error("NUL in {field} at byte {position}")]
    NulInPath {
        /// The parameter.
        field: &'static str,
        /// The byte offset of the NUL.
        position: usize,
    },
}

impl EndpointParseError {
    /// The byte offset in the description of the text at fault (0 for [`Self::Empty`]).
    pub fn position(&self) -> usize {
        use EndpointParseError::*;
        match self {
            Empty => 0,
            UnknownType { position, .. }
            | UnknownKey { position, .. }
            | UnsupportedKey { position, .. }
            | DuplicateKey { position, .. }
            | TooManyArguments { position, .. }
            | MissingKey { position, .. }
            | BadPort { position, .. }
            | BadIp { position, .. }
            | NotIpv6 { position, .. }
            | BadHost { position, .. }
            | BadNumber { position, .. }
            | BadMode { position, .. }
            | BadBoolean { position, .. }
            | BadDomain { position, .. }
            | TrailingBackslash { position }
            | UnclosedBracket { position }
            | EmptyValue { position, .. }
            | UnescapedColon { position, .. }
            | UnixPathTooLong { position, .. }
            | NulInPath { position, .. } => *position,
        }
    }

    /// The parameter at fault (`port`, `interface`, `mode`…), or the key for key errors; `None`
    /// for errors about the whole string or its syntax.
    pub fn field(&self) -> Option<&str> {
        use EndpointParseError::*;
        match self {
            UnknownKey { key, .. } => Some(key),
            UnsupportedKey { key, .. } | DuplicateKey { key, .. } => Some(key),
            MissingKey { field, .. }
            | BadPort { field, .. }
            | BadIp { field, .. }
            | NotIpv6 { field, .. }
            | BadHost { field, .. }
            | BadNumber { field, .. }
            | BadBoolean { field, .. }
            | EmptyValue { field, .. }
            | UnescapedColon { field, .. }
            | UnixPathTooLong { field, .. }
            | NulInPath { field, .. } => Some(field),
            BadMode { .. } => Some("mode"),
            BadDomain { .. } => Some("domain"),
            Empty
            | UnknownType { .. }
            | TooManyArguments { .. }
            | TrailingBackslash { .. }
            | UnclosedBracket { .. } => None,
        }
    }
}

impl FromStr for ServerEndpoint {
    type Err = EndpointParseError;

    /// Parses a server description (see the [module docs](self)).
    fn from_str(s: &str) -> Result<ServerEndpoint, EndpointParseError> {
        server::parse(s)
    }
}

impl FromStr for ClientEndpoint {
    type Err = EndpointParseError;

    /// Parses a client description (see the [module docs](self)).
    fn from_str(s: &str) -> Result<ClientEndpoint, EndpointParseError> {
        client::parse(s)
    }
}

impl ServerEndpoint {
    /// The address to bind: the interface (default `0.0.0.0`, or `::` for `tcp6:`) and port for
    /// `tcp:`, `tcp6:` and `ssl:`, the Unix address for `unix:`; `None` for `systemd:` (the socket
    /// is inherited, not bound).
    pub fn address(&self) -> Option<Address> {
        match self {
            ServerEndpoint::Tcp { port, interface, ipv6, .. } => {
                let any =
                    if *ipv6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
                Some(Address::Inet(SocketAddr::new(interface.unwrap_or(any), *port)))
            }
            ServerEndpoint::Ssl { port, interface, .. } => Some(Address::Inet(SocketAddr::new(
                interface.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                *port,
            ))),
            ServerEndpoint::Unix { addr, .. } => Some(Address::Unix(addr.clone())),
            ServerEndpoint::Systemd { .. } => None,
        }
    }
}

impl ClientEndpoint {
    /// The host and port to resolve and connect to; `None` for `unix:`.
    pub fn host_port(&self) -> Option<(&str, u16)> {
        match self {
            ClientEndpoint::Tcp { host, port, .. } | ClientEndpoint::Tls { host, port, .. } => {
                Some((host, *port))
            }
            ClientEndpoint::Unix { .. } => None,
        }
    }
}

/// An Internet address is `tcp:` (`tcp6:` for IPv6) on that interface and port; a Unix address
/// is `unix:` with Twisted's defaults (so the same as parsing the address's string). An unnamed
/// Unix address gives an endpoint that displays as `unix:`, which does not parse.
impl From<Address> for ServerEndpoint {
    fn from(addr: Address) -> ServerEndpoint {
        match addr {
            Address::Inet(a) => ServerEndpoint::Tcp {
                port: a.port(),
                interface: Some(a.ip()),
                backlog: None,
                ipv6: a.is_ipv6(),
            },
            Address::Unix(addr) => ServerEndpoint::Unix { addr, mode: None, lockfile: true, backlog: None },
        }
    }
}

/// An Internet address is `tcp:` to that IP literal and port (port 0 displays, but does not
/// parse back: a client needs a port); a Unix address is `unix:`.
impl From<Address> for ClientEndpoint {
    fn from(addr: Address) -> ClientEndpoint {
        match addr {
            Address::Inet(a) => ClientEndpoint::Tcp {
                host: a.ip().to_string(),
                port: a.port(),
                timeout: None,
                bind_address: None,
            },
            Address::Unix(addr) => ClientEndpoint::Unix { addr, timeout: None },
        }
    }
}

/// Splits the `IP:PORT`/`HOST:PORT`/`[IPV6]:PORT` shorthand into host (bracketed when written
/// so) and port tokens; anything else is an unknown endpoint type.
fn shorthand(input: &str) -> Result<(lex::Token, lex::Token), EndpointParseError> {
    let token = |text: &str, pos: usize, bracketed: bool| lex::Token {
        text: text.to_owned(),
        pos,
        bracketed,
        first_escaped: false,
    };
    if input.starts_with('[') {
        let Some(close) = input.find(']') else {
            return Err(EndpointParseError::UnclosedBracket { position: 0 });
        };
        let Some(port) = input[close + 1..].strip_prefix(':') else {
            return Err(EndpointParseError::MissingKey { field: "port", position: close + 1 });
        };
        return Ok((token(&input[..=close], 0, true), token(port, close + 2, false)));
    }
    let kind = input.split(':').next().unwrap_or_default();
    match input.split_once(':') {
        Some((host, port)) if !port.contains(':') && !input.contains(['\\', '=', '[', ']']) => {
            if host.is_empty() {
                return Err(EndpointParseError::EmptyValue { field: "host", position: 0 });
            }
            Ok((token(host, 0, false), token(port, host.len() + 1, false)))
        }
        _ => Err(EndpointParseError::UnknownType { name: kind.to_owned(), position: 0 }),
    }
}

/// Writes a Unix address as a value: `@NAME`, or the path with a leading `@` escaped.
fn write_unix(out: &mut String, addr: &UnixAddr) {
    match addr {
        UnixAddr::Path(p) => lex::escape(out, &p.to_string_lossy(), true, true),
        UnixAddr::Abstract(name) => {
            out.push('@');
            lex::escape(out, &String::from_utf8_lossy(name), true, false);
        }
        UnixAddr::Unnamed => {}
    }
}
