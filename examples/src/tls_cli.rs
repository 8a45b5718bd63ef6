//! The TLS options every example shares: `--tls-cert PEM --tls-key PEM` on servers,
//! `--tls [--ca PEM] [--server-name NAME]` on clients, and the one-line exit-2 errors for a
//! missing or unreadable file.
//!
//! ```text
//! cargo run -p torsion-examples --bin echo-server -- --listen 127.0.0.1:0 --tls-cert cert.pem --tls-key key.pem
//! openssl s_client -connect 127.0.0.1:PORT -quiet
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use torsion_reactor::rustls::pki_types::ServerName;
use torsion_reactor::rustls::{ClientConfig, ServerConfig};
use torsion_reactor::{Address, Factory, ListeningPort, Reactor};

use crate::{listen_error, Failure, EXIT_USAGE};

/// `--tls-cert` and `--tls-key`: serve TLS with this certificate chain and key.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsServerArgs {
    /// Serve TLS with this PEM certificate chain (end entity first); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsServerArgs {
    /// The server configuration the options ask for (`None`: plain TCP). A missing or
    /// unreadable file is a one-line failure with exit code 2.
    pub fn config(&self) -> Result<Option<Arc<ServerConfig>>, Failure> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        torsion_reactor::server_config_from_pem(cert, key)
            .map(|c| Some(Arc::new(c)))
            .map_err(|e| (EXIT_USAGE, e.to_string()))
    }
}

/// Listens on `addr`, over TLS when `tls` is given; a failure is the usual one-line message.
pub fn listen_maybe_tls(
    reactor: &mut Reactor,
    addr: &Address,
    tls: Option<Arc<ServerConfig>>,
    factory: impl Factory,
) -> Result<ListeningPort, Failure> {
    let port = match tls {
        Some(config) => reactor.listen_tls(addr, config, factory),
        None => reactor.listen(addr, factory),
    };
    port.map_err(|e| (EXIT_USAGE, listen_error(addr, &e)))
}

/// A client configuration trusting `ca` (a PEM file) or, without it, the public web roots.
pub fn client_config(ca: Option<&PathBuf>) -> Result<Arc<ClientConfig>, Failure> {
    match ca {
        Some(ca) => {
            torsion_reactor::client_config_with_ca(ca).map(Arc::new).map_err(|e| (EXIT_USAGE, e.to_string()))
        }
        None => Ok(Arc::new(torsion_reactor::client_config_webpki())),
    }
}

/// The name to verify the server as: `name` if given, else the host part of the endpoint text
/// as typed (`localhost:8443` → `localhost`, `[::1]:8443` → `::1`; a Unix socket: `localhost`).
pub fn server_name(name: Option<&str>, endpoint: &str) -> Result<ServerName<'static>, Failure> {
    let text = match name {
        Some(name) => name.to_owned(),
        None if endpoint.starts_with("unix:") => "localhost".to_owned(),
        None => {
            let host = endpoint.rsplit_once(':').map_or(endpoint, |(host, _port)| host);
            host.trim_start_matches('[').trim_end_matches(']').to_owned()
        }
    };
    ServerName::try_from(text.clone()).map_err(|e| (EXIT_USAGE, format!("bad server name '{text}': {e}")))
}

/// The TLS settings of a `tls:` client endpoint: a client configuration trusting its
/// `trustRoots` directory (or, without one, the public web roots), and the name to verify the
/// server as (`name` if given, else the endpoint's host).
pub fn endpoint_tls(
    host: &str,
    ca_certs_dir: Option<&std::path::Path>,
    name: Option<&str>,
) -> Result<(ServerName<'static>, Arc<ClientConfig>), Failure> {
    let config = match ca_certs_dir {
        Some(dir) => Arc::new(
            torsion_reactor::client_config_with_ca_dir(dir).map_err(|e| (EXIT_USAGE, e.to_string()))?,
        ),
        None => client_config(None)?,
    };
    let name = match name {
        Some(name) => name.to_owned(),
        None => host.trim_start_matches('[').trim_end_matches(']').to_owned(),
    };
    let name = ServerName::try_from(name.clone())
        .map_err(|e| (EXIT_USAGE, format!("bad server name '{name}': {e}")))?;
    Ok((name, config))
}
