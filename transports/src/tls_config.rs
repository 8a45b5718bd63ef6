//! TLS configuration for the common cases: a server from PEM certificate chain and key files,
//! a client trusting the public web roots (webpki-roots) or a given CA file. Everything uses
//! rustls' ring provider; for anything else (client certificates, SNI resolvers, ALPN), build
//! a `rustls::ServerConfig` / `ClientConfig` with [`tls_provider`] and pass it in.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Errors from building a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {}: {source}", path.display())]
    Pem {
        /// What was being read ("certificate chain", "private key", "CA certificates").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file held no certificate.
    #[error("no certificate found in {}", path.display())]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the material (a key that does not match, an unsupported algorithm).
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every configuration here uses: rustls' ring provider (no C toolchain
/// build, unlike aws-lc-rs). rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange; it remains supported, and is what this project chose (issue 11).
#[allow(deprecated)]
pub fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a PEM certificate chain (end entity first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem_err = |source| TlsConfigError::Pem { what: "certificate chain", path: path.to_owned(), source };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificates { path: path.to_owned() });
    }
    Ok(certs)
}

/// Loads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsConfigError::Pem {
        what: "private key",
        path: path.to_owned(),
        source,
    })
}

/// A server configuration from a PEM certificate chain and a PEM private key, TLS 1.2 and 1.3,
/// no client certificates, no ALPN.
pub fn server_config_from_pem(cert: &Path, key: &Path) -> Result<ServerConfig, TlsConfigError> {
    let certs = load_certs(cert)?;
    let key = load_private_key(key)?;
    Ok(ServerConfig::builder_with_provider(tls_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}

/// [`server_config_from_pem`] with the intermediate certificates of `extra_chain` appended to
/// the chain (Twisted's `extraCertChain`).
pub fn server_config_from_pem_chain(
    cert: &Path,
    key: &Path,
    extra_chain: Option<&Path>,
) -> Result<ServerConfig, TlsConfigError> {
    let mut certs = load_certs(cert)?;
    if let Some(extra) = extra_chain {
        certs.extend(load_certs(extra)?);
    }
    let key = load_private_key(key)?;
    Ok(ServerConfig::builder_with_provider(tls_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}

/// A client configuration trusting every certificate in the PEM files (`*.pem`, `*.crt`) of a
/// directory (Twisted's `trustRoots`/`caCertsDir`); files holding no certificate are skipped.
/// A directory with no certificate at all is an error.
pub fn client_config_with_ca_dir(dir: &Path) -> Result<ClientConfig, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    let entries = std::fs::read_dir(dir).map_err(|e| TlsConfigError::Pem {
        what: "CA certificates",
        path: dir.to_owned(),
        source: rustls::pki_types::pem::Error::Io(e),
    })?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt"))
        .collect();
    files.sort();
    for file in &files {
        // A file with no certificate in it (a private key beside them) is not a root: skip it.
        let certs = match load_certs(file) {
            Err(TlsConfigError::NoCertificates { .. }) => continue,
            other => other?,
        };
        for cert in certs {
            roots.add(cert)?;
        }
    }
    if roots.is_empty() {
        return Err(TlsConfigError::NoCertificates { path: dir.to_owned() });
    }
    Ok(client_config_with_roots(roots))
}

/// A client configuration trusting the public web roots (webpki-roots).
pub fn client_config_webpki() -> ClientConfig {
    let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    client_config_with_roots(roots)
}

/// A client configuration trusting only the CA certificates in a PEM file.
pub fn client_config_with_ca(ca: &Path) -> Result<ClientConfig, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert)?;
    }
    Ok(client_config_with_roots(roots))
}

/// A client configuration trusting `roots`.
pub fn client_config_with_roots(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(tls_provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
