//! Endpoints on the command line: every server's `--listen` takes a Twisted server endpoint
//! string, every client's `--connect` (and the proxy's `--target`) a client endpoint string.
//! Today's `HOST:PORT`, `[V6]:PORT`, `unix:PATH` and `unix:@NAME` keep working: they are
//! endpoint shorthands (a server's `localhost:PORT` is resolved first, as before).
//!
//! ```
//! use torsion_examples::endpoint_cli::{parse_client, parse_server};
//!
//! assert_eq!(parse_server("127.0.0.1:0").unwrap().to_string(), "tcp:0:interface=127.0.0.1");
//! assert_eq!(parse_server("tcp:8000:interface=127.0.0.1:backlog=64").unwrap().to_string(),
//!            "tcp:8000:interface=127.0.0.1:backlog=64");
//! assert!(parse_server("tcp:99999").unwrap_err().contains("port"));
//! assert_eq!(parse_client("localhost:8000").unwrap().host_port(), Some(("localhost", 8000)));
//! ```

use std::sync::Arc;

use torsion_reactor::rustls::ServerConfig;
use torsion_reactor::{Address, ClientEndpoint, Factory, ListeningPort, Reactor, ServerEndpoint};

use crate::{listen_error, parse_endpoint, Failure, EXIT_USAGE};

/// The server endpoint grammar, for `--help` (`long_help` of `--listen`).
pub const SERVER_HELP: &str = "Where to listen, as a Twisted server endpoint string:
  HOST:PORT, [V6]:PORT                       127.0.0.1:8000, [::1]:0 (port 0: any free port)
  tcp:PORT[:interface=IP][:backlog=N]        tcp:8000:interface=127.0.0.1
  tcp6:PORT[:interface=IPV6][:backlog=N]     tcp6:8000:interface=\\:\\:1
  unix:PATH[:mode=OCTAL][:lockfile=0|1]      unix:/tmp/app.sock:mode=600 (unix:@NAME: abstract)
  ssl:PORT:privateKey=KEY:certKey=CERT[:extraCertChain=PEM][:interface=IP]
  systemd:domain=INET|INET6|UNIX:index=N     a socket passed by systemd (socket activation)
Colons and backslashes inside values are escaped with a backslash.";

/// The client endpoint grammar, for `--help` (`long_help` of `--connect` and `--target`).
pub const CLIENT_HELP: &str = "Where to connect, as a Twisted client endpoint string:
  HOST:PORT, [V6]:PORT                            127.0.0.1:8000, localhost:8000
  tcp:host=HOST:port=PORT[:timeout=S][:bindAddress=IP]
  unix:PATH, unix:path=PATH[:timeout=S]           unix:/tmp/app.sock (unix:@NAME: abstract)
  tls:host=HOST:port=PORT[:trustRoots=DIR][:timeout=S]
A host name is resolved off the loop and its addresses raced (IPv6 first, Happy Eyeballs).";

/// Parses `--listen`. A host name (`localhost:8000`) is not an endpoint a server can bind, so
/// it is resolved as before (the first address wins).
pub fn parse_server(text: &str) -> Result<ServerEndpoint, String> {
    match text.parse::<ServerEndpoint>() {
        Ok(endpoint) => Ok(endpoint),
        Err(e) => {
            // The shorthand with a name: resolve it, as today's `HOST:PORT` did.
            let looks_like_host_port =
                !text.contains('=') && text.split(':').count() == 2 && !text.starts_with("unix:");
            match parse_endpoint(text) {
                Ok(Address::Inet(addr)) if looks_like_host_port => Ok(Address::Inet(addr).into()),
                _ => Err(format!("bad endpoint '{text}': {e}")),
            }
        }
    }
}

/// Parses `--connect` / `--target`.
pub fn parse_client(text: &str) -> Result<ClientEndpoint, String> {
    text.parse::<ClientEndpoint>().map_err(|e| format!("bad endpoint '{text}': {e}"))
}

/// Listens on `endpoint`, over TLS when `tls` (from `--tls-cert`/`--tls-key`) is given (an
/// `ssl:` endpoint brings its own certificate); a failure is the usual one-line message.
pub fn listen(
    reactor: &mut Reactor,
    endpoint: &ServerEndpoint,
    tls: Option<Arc<ServerConfig>>,
    factory: impl Factory,
) -> Result<ListeningPort, Failure> {
    let shown = endpoint.address().unwrap_or(Address::Unix(torsion_reactor::UnixAddr::Unnamed));
    let port = match (tls, endpoint) {
        (Some(_), ServerEndpoint::Ssl { .. }) => {
            return Err((
                EXIT_USAGE,
                "--tls-cert/--tls-key and an ssl: endpoint: give the certificate once".into(),
            ))
        }
        (Some(config), _) => match endpoint.address() {
            Some(addr) => reactor.listen_tls(&addr, config, factory),
            None => {
                return Err((
                    EXIT_USAGE,
                    format!("--tls-cert needs a tcp: or unix: endpoint, not {endpoint}"),
                ))
            }
        },
        (None, _) => reactor.listen_endpoint(endpoint, factory),
    };
    port.map_err(|e| match endpoint {
        ServerEndpoint::Systemd { .. } | ServerEndpoint::Ssl { .. } => {
            (EXIT_USAGE, format!("cannot listen on {endpoint}: {e}"))
        }
        _ => (EXIT_USAGE, listen_error(&shown, &e)),
    })
}

/// The single address a `--threads N` pool listens on: `tcp:`, `tcp6:` and `unix:` only.
pub fn pool_address(endpoint: &ServerEndpoint) -> Result<Address, Failure> {
    match endpoint {
        ServerEndpoint::Tcp { .. } | ServerEndpoint::Unix { .. } => {
            Ok(endpoint.address().expect("tcp and unix endpoints have an address"))
        }
        _ => Err((EXIT_USAGE, format!("--threads N needs a tcp: or unix: endpoint, not {endpoint}"))),
    }
}

/// The one address a client endpoint names, for callers that need a single address (the
/// proxy's backend, a TLS `--connect`): a host name is resolved now (the first address wins).
pub fn client_address(endpoint: &ClientEndpoint) -> Result<Address, Failure> {
    match endpoint {
        ClientEndpoint::Unix { addr, .. } => Ok(Address::Unix(addr.clone())),
        _ => {
            let (host, port) =
                endpoint.host_port().ok_or((EXIT_USAGE, format!("unsupported endpoint {endpoint}")))?;
            let text = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            parse_endpoint(&text).map_err(|message| (EXIT_USAGE, message))
        }
    }
}
