//! Client endpoint strings: `tcp:`, `unix:`, `tls:` and `HOST:PORT`.

use std::fmt;

use super::lex::{self, bind, p, required, unsupported, Item, Param};
use super::{ClientEndpoint, EndpointParseError as E};

// In the order of Twisted's `TCP4ClientEndpoint`, `UNIXClientEndpoint` and `_parseClientTLS`.
const TCP: &[Param] = &[p(&["host"]), p(&["port"]), p(&["timeout"]), p(&["bindAddress"])];
const UNIX: &[Param] = &[p(&["path"]), p(&["timeout"]), unsupported(&["lockfile"])];
const TLS: &[Param] = &[
    p(&["host"]),
    p(&["port"]),
    p(&["timeout"]),
    p(&["bindAddress"]),
    unsupported(&["certificate"]),
    unsupported(&["privateKey"]),
    // Twisted's `tls:` spells it `trustRoots`; `caCertsDir` is its `ssl:` client spelling.
    p(&["trustRoots", "caCertsDir"]),
    unsupported(&["endpoint"]),
];

pub(crate) fn parse(input: &str) -> Result<ClientEndpoint, E> {
    if input.is_empty() {
        return Err(E::Empty);
    }
    let (kind, rest) = match input.split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (input, None),
    };
    let base = kind.len() + 1;
    let split = |brackets| match rest {
        Some(r) => lex::split(r, base, brackets),
        None => Ok(Vec::new()),
    };
    match kind {
        "tcp" => {
            let mut items = split(true)?;
            // Twisted's `_parseClientTCP`: one positional with `host=` given is the port.
            let positionals = items.iter().filter(|i| matches!(i, Item::Positional(_))).count();
            let has_host = items.iter().any(|i| matches!(i, Item::Keyword(k, _) if k.text == "host"));
            if positionals == 1 && has_host {
                for item in &mut items {
                    if let Item::Positional(v) = item {
                        let key = lex::Token { text: "port".into(), ..v.clone() };
                        *item = Item::Keyword(key, v.clone());
                    }
                }
            }
            let [host, port, timeout, bind_address]: [Option<lex::Token>; 4] =
                slots(bind(items, TCP, 2, "tcp", input)?);
            Ok(ClientEndpoint::Tcp {
                host: lex::host(&required(host, "host", input)?, "host")?,
                port: lex::port(&required(port, "port", input)?, "port", 1)?,
                timeout: timeout.map(|t| lex::seconds(&t, "timeout")).transpose()?,
                bind_address: bind_address.map(|t| lex::ip(&t, "bindAddress")).transpose()?,
            })
        }
        "unix" => {
            let [path, timeout, _]: [Option<lex::Token>; 3] =
                slots(bind(split(false)?, UNIX, 1, "unix", input)?);
            Ok(ClientEndpoint::Unix {
                addr: lex::unix_addr(&required(path, "path", input)?, "path")?,
                timeout: timeout.map(|t| lex::seconds(&t, "timeout")).transpose()?,
            })
        }
        "tls" => {
            let [host, port, timeout, bind_address, _, _, ca, _]: [Option<lex::Token>; 8] =
                slots(bind(split(true)?, TLS, TLS.len(), "tls", input)?);
            Ok(ClientEndpoint::Tls {
                host: lex::host(&required(host, "host", input)?, "host")?,
                port: lex::port(&required(port, "port", input)?, "port", 1)?,
                ca_certs_dir: ca.map(|t| lex::path(&t, "trustRoots")).transpose()?,
                timeout: timeout.map(|t| lex::seconds(&t, "timeout")).transpose()?,
                bind_address: bind_address.map(|t| lex::ip(&t, "bindAddress")).transpose()?,
            })
        }
        // Twisted's other types, not a host named `ssl`.
        "ssl" | "tcp6" | "systemd" => Err(E::UnknownType { name: kind.to_owned(), position: 0 }),
        _ => {
            let (host, port) = super::shorthand(input)?;
            Ok(ClientEndpoint::Tcp {
                host: lex::host(&host, "host")?,
                port: lex::port(&port, "port", 1)?,
                timeout: None,
                bind_address: None,
            })
        }
    }
}

fn slots<const N: usize>(v: Vec<Option<lex::Token>>) -> [Option<lex::Token>; N] {
    v.try_into().unwrap_or_else(|_| unreachable!("one slot per parameter"))
}

impl fmt::Display for ClientEndpoint {
    /// The canonical Twisted form (see the [module docs](super)).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        match self {
            ClientEndpoint::Tcp { host, port, timeout, bind_address } => {
                out.push_str("tcp:host=");
                lex::escape(&mut out, host, false, false);
                lex::kw(&mut out, "port", &port.to_string());
                if let Some(t) = timeout {
                    lex::kw(&mut out, "timeout", &lex::fmt_seconds(*t));
                }
                if let Some(b) = bind_address {
                    lex::kw(&mut out, "bindAddress", &b.to_string());
                }
            }
            ClientEndpoint::Unix { addr, timeout } => {
                out.push_str("unix:path=");
                super::write_unix(&mut out, addr);
                if let Some(t) = timeout {
                    lex::kw(&mut out, "timeout", &lex::fmt_seconds(*t));
                }
            }
            ClientEndpoint::Tls { host, port, ca_certs_dir, timeout, bind_address } => {
                out.push_str("tls:host=");
                lex::escape(&mut out, host, false, false);
                lex::kw(&mut out, "port", &port.to_string());
                if let Some(t) = timeout {
                    lex::kw(&mut out, "timeout", &lex::fmt_seconds(*t));
                }
                if let Some(b) = bind_address {
                    lex::kw(&mut out, "bindAddress", &b.to_string());
                }
                if let Some(c) = ca_certs_dir {
                    lex::kw(&mut out, "trustRoots", &c.to_string_lossy());
                }
            }
        }
        f.write_str(&out)
    }
}
