//! TLS test material, minted at run time with rcgen (no key material is committed): a CA, a
//! server certificate for `localhost` and `127.0.0.1`, a client certificate, and the odd ones the
//! bad-input tests need (expired, wrong host, self-signed). Each is also written as PEM into a
//! temporary directory, for the `openssl` and Python peers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use torsion_reactor::rustls;

use crate::TempPath;

/// One certificate with its key, as DER and as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate chain, end entity first (DER).
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key (PKCS#8 DER).
    pub key_der: Vec<u8>,
    /// The chain as a PEM file.
    pub cert_pem: PathBuf,
    /// The key as a PEM file.
    pub key_pem: PathBuf,
}

impl CertFiles {
    /// The private key, for rustls.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A test PKI: a CA and certificates it signed, plus odd ones.
#[derive(Debug)]
pub struct Pki {
    /// The directory holding the PEM files (removed on drop).
    pub dir: TempPath,
    /// The CA certificate (DER).
    pub ca: CertificateDer<'static>,
    /// The CA certificate as a PEM file.
    pub ca_pem: PathBuf,
    /// `localhost` and `127.0.0.1`, signed by the CA.
    pub server: CertFiles,
    /// A client certificate signed by the CA (mutual TLS).
    pub client: CertFiles,
    /// `localhost`, signed by the CA, expired in 2020.
    pub expired: CertFiles,
    /// `other.example`, signed by the CA: the wrong host for `localhost`.
    pub wrong_host: CertFiles,
    /// `localhost`, self-signed.
    pub self_signed: CertFiles,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM");
    path
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    client: bool,
    issuer: Option<&CertifiedIssuer<'_, KeyPair>>,
    expired: bool,
) -> CertFiles {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages =
        vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
    if expired {
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).expect("sign"),
        None => params.self_signed(&key).expect("self-sign"),
    };
    let cert_pem = write(dir, &format!("{name}.pem"), &cert.pem());
    let key_pem = write(dir, &format!("{name}.key"), &key.serialize_pem());
    CertFiles { chain: vec![cert.der().clone()], key_der: key.serialize_der(), cert_pem, key_pem }
}

impl Pki {
    /// Mints a fresh PKI.
    pub fn new() -> Pki {
        let dir = TempPath::new("pki");
        std::fs::create_dir_all(dir.path()).expect("PKI directory");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "torsion test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, ca_key).expect("CA");
        let ca_pem = write(dir.path(), "ca.pem", &ca.pem());
        let d = dir.path().to_owned();
        Pki {
            ca: ca.der().clone(),
            ca_pem,
            server: leaf(&d, "server", &["localhost", "127.0.0.1"], false, Some(&ca), false),
            client: leaf(&d, "client", &["client.test"], true, Some(&ca), false),
            expired: leaf(&d, "expired", &["localhost", "127.0.0.1"], false, Some(&ca), true),
            wrong_host: leaf(&d, "wrong-host", &["other.example"], false, Some(&ca), false),
            self_signed: leaf(&d, "self-signed", &["localhost", "127.0.0.1"], false, None, false),
            dir,
        }
    }

    /// A server configuration presenting `cert`, TLS 1.2 and 1.3, no client certificates.
    pub fn server_config_for(&self, cert: &CertFiles) -> Arc<ServerConfig> {
        Arc::new(
            ServerConfig::builder_with_provider(torsion_reactor::tls_provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(cert.chain.clone(), cert.key())
                .expect("server config"),
        )
    }

    /// The usual server configuration (the `localhost` certificate).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config_for(&self.server)
    }

    /// A server configuration that requires a client certificate signed by the CA.
    pub fn server_config_mtls(&self) -> Arc<ServerConfig> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()),
            torsion_reactor::tls_provider(),
        )
        .build()
        .expect("client verifier");
        Arc::new(
            ServerConfig::builder_with_provider(torsion_reactor::tls_provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_client_cert_verifier(verifier)
                .with_single_cert(self.server.chain.clone(), self.server.key())
                .expect("server config"),
        )
    }

    /// A root store holding the CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("CA");
        roots
    }

    /// A client configuration trusting the CA.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::new(torsion_reactor::client_config_with_roots(self.roots()))
    }

    /// A client configuration trusting the CA and presenting the client certificate.
    pub fn client_config_mtls(&self) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder_with_provider(torsion_reactor::tls_provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(self.roots())
                .with_client_auth_cert(self.client.chain.clone(), self.client.key())
                .expect("client config"),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// The server name `localhost`.
pub fn localhost_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}

/// A reactor thread serving `make_factory`'s protocols over TLS on `127.0.0.1:0` (with a hook
/// to configure the reactor first); returns it and the bound address.
pub fn tls_server<F: torsion_reactor::Factory>(
    config: Arc<ServerConfig>,
    configure: impl FnOnce(&mut torsion_reactor::Reactor) + Send + 'static,
    make_factory: impl FnOnce() -> F + Send + 'static,
) -> (crate::ReactorThread, torsion_reactor::Address) {
    crate::ReactorThread::start(move |reactor| {
        configure(reactor);
        let addr = torsion_reactor::Address::Inet(crate::localhost());
        let port = reactor.listen_tls(&addr, config, make_factory()).expect("listen_tls");
        port.local_addr().clone()
    })
}

/// A blocking rustls client (rustls' own `StreamOwned`) connected to `addr`, handshake done,
/// with read/write timeouts of [`WAIT`](crate::WAIT).
pub fn blocking_client(
    addr: &torsion_reactor::Address,
    config: Arc<ClientConfig>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let torsion_reactor::Address::Inet(inet) = addr else { panic!("TCP only") };
    let tcp = std::net::TcpStream::connect(inet)?;
    tcp.set_read_timeout(Some(crate::WAIT))?;
    tcp.set_write_timeout(Some(crate::WAIT))?;
    let conn = rustls::ClientConnection::new(config, localhost_name()).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}
