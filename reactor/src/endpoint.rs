//! Listening and connecting by endpoint strings (Twisted's `serverFromString` and
//! `clientFromString`): [`Reactor::listen_endpoint`] and [`Reactor::connect_endpoint`] (and
//! the same on [`LoopCtx`]) take the typed values of
//! [`torsion_transports::endpoint`], which documents the grammar.
//!
//! ```no_run
//! use torsion_reactor::{Ctx, Protocol, Reactor, ServerEndpoint};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         cx.transport().write(data);
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! // From a config file or a command line: tcp, tcp6, unix, ssl or systemd.
//! let endpoint: ServerEndpoint = "tcp:8000:interface=127.0.0.1".parse().expect("a valid endpoint");
//! let port = reactor.listen_endpoint(&endpoint, |_peer| Some(Echo))?;
//! println!("listening on {}", port.local_addr());
//! reactor.run()?;
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! # Why not `listen` and `connect`
//! Those take an [`Address`] (one socket) and return its id; an endpoint may need a name
//! resolved and several addresses raced (a `tcp:host=NAME` client), or TLS configured from
//! files, so it has calls of its own. An `Address` converts into either endpoint kind.

use torsion_transports::{
    rustls, Address, ClientEndpoint, InheritedKind, ListenOptions, ServerEndpoint, SystemdDomain, TlsRole,
    UnixListenOptions,
};

use crate::accept::ListeningPort;
use crate::core::ConnId;
use crate::ctx::LoopCtx;
use crate::happy::HostConnectId;
use crate::protocol::{ClientFactory, Factory};
use crate::{Error, Reactor};

/// An outbound connection started from an endpoint: to one address (its id), or to a host name
/// being resolved and raced (Happy Eyeballs).
#[derive(Debug, Clone)]
pub enum Connecting {
    /// One connection to an address.
    Conn(ConnId),
    /// A host name: the protocol's id is known in its `connection_made`.
    Host(HostConnectId),
}

impl Reactor {
    /// Listens on any server endpoint: `tcp:`, `tcp6:`, `unix:`, `ssl:`, `systemd:` or
    /// `IP:PORT`. See the [module docs](crate::endpoint).
    pub fn listen_endpoint(
        &mut self,
        endpoint: &ServerEndpoint,
        factory: impl Factory,
    ) -> Result<ListeningPort, Error> {
        match endpoint {
            ServerEndpoint::Tcp { backlog, .. } => {
                let Some(Address::Inet(addr)) = endpoint.address() else {
                    unreachable!("tcp has an address")
                };
                let mut options = ListenOptions::default();
                if let Some(backlog) = backlog {
                    options = options.backlog(backlog_arg(*backlog));
                }
                self.listen_tcp_with(addr, &options, factory)
            }
            ServerEndpoint::Unix { addr, mode, lockfile, backlog } => {
                let mut options = UnixListenOptions::default().lockfile(*lockfile);
                if mode.is_some() {
                    options = options.mode(*mode);
                }
                if let Some(backlog) = backlog {
                    options = options.backlog(backlog_arg(*backlog));
                }
                self.listen_unix_with(addr, &options, factory)
            }
            ServerEndpoint::Systemd { domain, index } => {
                self.listen_inherited(*index, inherited_kind(*domain)?, factory)
            }
            ServerEndpoint::Ssl { backlog, private_key, cert_key, extra_cert_chain, .. } => {
                let Some(Address::Inet(addr)) = endpoint.address() else {
                    unreachable!("ssl has an address")
                };
                let config = torsion_transports::server_config_from_pem_chain(
                    cert_key,
                    private_key,
                    extra_cert_chain.as_deref(),
                )?;
                let mut options = ListenOptions::default();
                if let Some(backlog) = backlog {
                    options = options.backlog(backlog_arg(*backlog));
                }
                let port = self.listen_tcp_with(addr, &options, factory)?;
                self.serve_tls_on(&port, std::sync::Arc::new(config));
                Ok(port)
            }
            _ => Err(Error::Unsupported { what: "this kind of server endpoint" }),
        }
    }

    /// Connects to any client endpoint: `tcp:`, `unix:`, `tls:` or `HOST:PORT`; a host name
    /// is resolved on the thread pool and its addresses raced (see [`crate::happy`]).
    pub fn connect_endpoint(
        &mut self,
        endpoint: &ClientEndpoint,
        factory: impl ClientFactory,
    ) -> Result<Connecting, Error> {
        LoopCtx::new(&mut self.world.core).connect_endpoint(endpoint, factory)
    }
}

impl LoopCtx<'_> {
    /// [`Reactor::connect_endpoint`] from a callback.
    pub fn connect_endpoint(
        &mut self,
        endpoint: &ClientEndpoint,
        factory: impl ClientFactory,
    ) -> Result<Connecting, Error> {
        let default_timeout = self.core.config.connect_timeout;
        match endpoint {
            ClientEndpoint::Tcp { host, port, timeout, bind_address } => {
                let timeout = timeout.unwrap_or(default_timeout);
                self.connect_host_or_ip(host, *port, *bind_address, factory, timeout, None)
            }
            ClientEndpoint::Unix { addr, timeout } => {
                let timeout = timeout.unwrap_or(default_timeout);
                self.core
                    .connect(Address::Unix(addr.clone()), Box::new(factory), timeout)
                    .map(Connecting::Conn)
            }
            ClientEndpoint::Tls { host, port, ca_certs_dir, timeout, bind_address } => {
                let timeout = timeout.unwrap_or(default_timeout);
                let config = match ca_certs_dir {
                    Some(dir) => torsion_transports::client_config_with_ca_dir(dir)?,
                    None => torsion_transports::client_config_webpki(),
                };
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(bare.to_owned()).map_err(|_| {
                    Error::Unsupported { what: "a TLS server name that is neither a DNS name nor an IP" }
                })?;
                let role = TlsRole::Client(std::sync::Arc::new(config), name);
                self.connect_host_or_ip(host, *port, *bind_address, factory, timeout, Some(role))
            }
            _ => Err(Error::Unsupported { what: "this kind of client endpoint" }),
        }
    }
}

impl LoopCtx<'_> {
    /// An IP literal (bracketed or not) is one connection, from `bind` if given; a host name is
    /// resolved and raced (Happy Eyeballs), which cannot honour `bind`.
    fn connect_host_or_ip(
        &mut self,
        host: &str,
        port: u16,
        bind: Option<std::net::IpAddr>,
        factory: impl ClientFactory,
        timeout: std::time::Duration,
        tls: Option<TlsRole>,
    ) -> Result<Connecting, Error> {
        match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            Ok(ip) => {
                let addr = Address::Inet(std::net::SocketAddr::new(ip, port));
                self.core.connect_with(addr, bind, Box::new(factory), timeout, tls).map(Connecting::Conn)
            }
            Err(_) if bind.is_some() => Err(Error::Unsupported { what: "bindAddress with a host name" }),
            Err(_) => Ok(Connecting::Host(self.connect_host_with(host, port, factory, timeout, tls))),
        }
    }
}

fn inherited_kind(domain: SystemdDomain) -> Result<InheritedKind, Error> {
    match domain {
        SystemdDomain::Inet => Ok(InheritedKind::Inet),
        SystemdDomain::Inet6 => Ok(InheritedKind::Inet6),
        SystemdDomain::Unix => Ok(InheritedKind::Unix),
        _ => Err(Error::Unsupported { what: "this systemd socket domain" }),
    }
}

/// `listen(2)` takes an int; larger backlogs are capped by the kernel anyway.
fn backlog_arg(backlog: u32) -> i32 {
    i32::try_from(backlog).unwrap_or(i32::MAX)
}
