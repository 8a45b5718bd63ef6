//! `tokio-rustls-echo`: the TLS comparison server, tokio-rustls on tokio's single-threaded
//! runtime with the same rustls version and ring provider torsion uses.
//!
//! One task per connection: handshake, then read and `write_all` what was read (64 KiB
//! buffer) until the peer closes; then `shutdown` (close_notify).
//!
//! Usage: `tokio-rustls-echo --listen 127.0.0.1:0 --tls-cert CERT.pem --tls-key KEY.pem`. The
//! first line on standard output is `listening on <addr>`.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Per-connection buffer size.
const BUF_SIZE: usize = 64 * 1024;

/// tokio-rustls echo server for the torsion TLS benchmark.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on (port 0 lets the kernel choose).
    #[arg(long, default_value = torsion_bench::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// PEM certificate chain.
    #[arg(long)]
    tls_cert: PathBuf,
    /// PEM private key.
    #[arg(long)]
    tls_key: PathBuf,
}

async fn echo(acceptor: TlsAcceptor, stream: TcpStream) -> io::Result<()> {
    let mut tls = acceptor.accept(stream).await?;
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return tls.shutdown().await;
        }
        tls.write_all(&buf[..n]).await?;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let certs = CertificateDer::pem_file_iter(&cli.tls_cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(io::Error::other)?;
    let key = PrivateKeyDer::from_pem_file(&cli.tls_key).map_err(io::Error::other)?;
    #[allow(deprecated)] // the ring provider, as torsion uses (see torsion_transports::tls_provider)
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(cli.listen).await?;
    torsion_bench::announce_listening(listener.local_addr()?)?;
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if e.kind() != io::ErrorKind::Other => continue,
            Err(e) => return Err(e),
        };
        stream.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = echo(acceptor, stream).await;
        });
    }
}
