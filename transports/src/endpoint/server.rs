//! Server endpoint strings: `tcp:`, `tcp6:`, `unix:`, `ssl:`, `systemd:` and `HOST:PORT`.

use std::fmt;
use std::net::IpAddr;

use super::lex::{self, bind, p, required, unsupported, Param};
use super::{EndpointParseError as E, ServerEndpoint, SystemdDomain};

// Parameter lists in the order of Twisted's parser signatures, so that positional arguments bind
// as they do in Twisted (`tcp:80:127.0.0.1` is an interface; for `tcp6:` the second is backlog).
const TCP: &[Param] = &[p(&["port"]), p(&["interface"]), p(&["backlog"])];
const TCP6: &[Param] = &[p(&["port"]), p(&["backlog"]), p(&["interface"])];
const UNIX: &[Param] = &[p(&["address"]), p(&["mode"]), p(&["backlog"]), p(&["lockfile"])];
const SSL: &[Param] = &[
    p(&["port"]),
    p(&["privateKey"]),
    p(&["certKey"]),
    unsupported(&["sslmethod"]),
    p(&["interface"]),
    p(&["backlog"]),
    p(&["extraCertChain"]),
    unsupported(&["dhParameters"]),
];
const SYSTEMD: &[Param] = &[p(&["domain"]), p(&["index"]), unsupported(&["name"])];

/// Twisted's `_parseSSL` default key file.
pub(crate) const DEFAULT_PRIVATE_KEY: &str = "server.pem";

pub(crate) fn parse(input: &str) -> Result<ServerEndpoint, E> {
    if input.is_empty() {
        return Err(E::Empty);
    }
    let (kind, rest) = match input.split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (input, None),
    };
    let base = kind.len() + 1;
    let brackets = match kind {
        "tcp" | "tcp6" | "ssl" => true,
        "unix" | "systemd" => false,
        _ => return super::shorthand(input).and_then(|(ip, port)| server_shorthand(ip, port)),
    };
    // `tcp` alone has no arguments at all; `tcp:` has one, empty.
    let items = match rest {
        Some(r) => lex::split(r, base, brackets)?,
        None => Vec::new(),
    };
    match kind {
        "tcp" | "tcp6" => {
            let ipv6 = kind == "tcp6";
            let [port, interface, backlog] = if ipv6 {
                let [po, b, i] = bound::<3>(items, TCP6, "tcp6", input)?;
                [po, i, b]
            } else {
                bound::<3>(items, TCP, "tcp", input)?
            };
            let port = lex::port(&required(port, "port", input)?, "port", 0)?;
            let interface = interface.map(|t| interface_of(&t, ipv6)).transpose()?;
            let backlog = backlog.map(|t| lex::number(&t, "backlog")).transpose()?;
            Ok(ServerEndpoint::Tcp { port, interface, backlog, ipv6 })
        }
        "unix" => {
            let [address, mode, backlog, lockfile] = bound::<4>(items, UNIX, "unix", input)?;
            let addr = lex::unix_addr(&required(address, "address", input)?, "address")?;
            Ok(ServerEndpoint::Unix {
                addr,
                mode: mode.map(|t| lex::mode(&t)).transpose()?,
                lockfile: lockfile.map(|t| lex::boolean(&t, "lockfile")).transpose()?.unwrap_or(true),
                backlog: backlog.map(|t| lex::number(&t, "backlog")).transpose()?,
            })
        }
        "ssl" => {
            let [port, key, cert, _, interface, backlog, chain, _] = bound::<8>(items, SSL, "ssl", input)?;
            let port = lex::port(&required(port, "port", input)?, "port", 0)?;
            let private_key = key
                .map(|t| lex::path(&t, "privateKey"))
                .transpose()?
                .unwrap_or_else(|| DEFAULT_PRIVATE_KEY.into());
            let cert_key =
                cert.map(|t| lex::path(&t, "certKey")).transpose()?.unwrap_or_else(|| private_key.clone());
            Ok(ServerEndpoint::Ssl {
                port,
                interface: interface.map(|t| interface_of(&t, false)).transpose()?,
                backlog: backlog.map(|t| lex::number(&t, "backlog")).transpose()?,
                private_key,
                cert_key,
                extra_cert_chain: chain.map(|t| lex::path(&t, "extraCertChain")).transpose()?,
            })
        }
        _ => {
            let [domain, index, _] = bound::<3>(items, SYSTEMD, "systemd", input)?;
            let domain = required(domain, "domain", input)?;
            let domain = match domain.text.as_str() {
                "INET" => SystemdDomain::Inet,
                "INET6" => SystemdDomain::Inet6,
                "UNIX" => SystemdDomain::Unix,
                _ => return Err(E::BadDomain { value: domain.text, position: domain.pos }),
            };
            let index = lex::number(&required(index, "index", input)?, "index")?;
            Ok(ServerEndpoint::Systemd { domain, index })
        }
    }
}

fn bound<const N: usize>(
    items: Vec<lex::Item>,
    params: &[Param],
    endpoint: &'static str,
    input: &str,
) -> Result<[Option<lex::Token>; N], E> {
    let v = bind(items, params, params.len(), endpoint, input)?;
    Ok(v.try_into().unwrap_or_else(|_| unreachable!("one slot per parameter")))
}

fn interface_of(tok: &lex::Token, ipv6: bool) -> Result<IpAddr, E> {
    let addr = lex::ip(tok, "interface")?;
    if ipv6 && addr.is_ipv4() {
        return Err(E::NotIpv6 { field: "interface", value: tok.text.clone(), position: tok.pos });
    }
    Ok(addr)
}

fn server_shorthand(host: lex::Token, port: lex::Token) -> Result<ServerEndpoint, E> {
    // An IP literal has a `.` (IPv6 is bracketed): `udp:80` or `TCP:80` is a type, mistyped.
    if !host.bracketed && !host.text.contains('.') && host.text != "localhost" {
        return Err(E::UnknownType { name: host.text, position: 0 });
    }
    let interface = lex::ip(&host, "host")?;
    let port = lex::port(&port, "port", 0)?;
    Ok(ServerEndpoint::Tcp { port, interface: Some(interface), backlog: None, ipv6: interface.is_ipv6() })
}

impl fmt::Display for ServerEndpoint {
    /// The canonical Twisted form (see the [module docs](super)).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        match self {
            ServerEndpoint::Tcp { port, interface, backlog, ipv6 } => {
                out.push_str(if *ipv6 { "tcp6:" } else { "tcp:" });
                out.push_str(&port.to_string());
                if let Some(i) = interface {
                    lex::kw(&mut out, "interface", &i.to_string());
                }
                if let Some(b) = backlog {
                    lex::kw(&mut out, "backlog", &b.to_string());
                }
            }
            ServerEndpoint::Unix { addr, mode, lockfile, backlog } => {
                out.push_str("unix:");
                super::write_unix(&mut out, addr);
                if let Some(m) = mode {
                    lex::kw(&mut out, "mode", &format!("{m:o}"));
                }
                if let Some(b) = backlog {
                    lex::kw(&mut out, "backlog", &b.to_string());
                }
                if !lockfile {
                    lex::kw(&mut out, "lockfile", "0");
                }
            }
            ServerEndpoint::Ssl { port, interface, backlog, private_key, cert_key, extra_cert_chain } => {
                out.push_str("ssl:");
                out.push_str(&port.to_string());
                lex::kw(&mut out, "privateKey", &private_key.to_string_lossy());
                if cert_key != private_key {
                    lex::kw(&mut out, "certKey", &cert_key.to_string_lossy());
                }
                if let Some(c) = extra_cert_chain {
                    lex::kw(&mut out, "extraCertChain", &c.to_string_lossy());
                }
                if let Some(i) = interface {
                    lex::kw(&mut out, "interface", &i.to_string());
                }
                if let Some(b) = backlog {
                    lex::kw(&mut out, "backlog", &b.to_string());
                }
            }
            ServerEndpoint::Systemd { domain, index } => {
                let domain = match domain {
                    SystemdDomain::Inet => "INET",
                    SystemdDomain::Inet6 => "INET6",
                    SystemdDomain::Unix => "UNIX",
                };
                out.push_str(&format!("systemd:domain={domain}:index={index}"));
            }
        }
        f.write_str(&out)
    }
}
