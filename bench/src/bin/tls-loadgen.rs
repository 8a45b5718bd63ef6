//! `tls-loadgen`: the TLS benchmark's load generator (bench/tls.sh), rustls' blocking client
//! on one thread per connection, against any TLS echo server.
//!
//! Scenarios (`--scenario`):
//! * `handshake`: each connection loops: connect, TLS 1.3 handshake (no resumption), one 64-byte
//!   echo, close_notify, close. Reports handshakes.
//! * `stream`: each connection loops: write a 64 KiB block, read its echo. Reports bytes echoed.
//! * `pingpong`: each connection loops: write 64 bytes, read them back. Reports messages.
//!
//! Prints one line: `count=N seconds=S` (count of handshakes, bytes or messages completed
//! during the measured window).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Server address.
    #[arg(long)]
    connect: SocketAddr,
    /// CA certificate (PEM) to trust.
    #[arg(long)]
    ca: PathBuf,
    /// handshake, stream or pingpong.
    #[arg(long)]
    scenario: String,
    /// Concurrent connections (threads).
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Plain TCP instead of TLS (the plaintext baseline of the stream scenario).
    #[arg(long)]
    plain: bool,
    /// The key exchange the client offers: `provider` (the ring provider's default list, which
    /// rustls 0.23.48 starts with P-384), or only `x25519` (what browsers, curl and
    /// OpenSSL offer first), `p256` or `p384`.
    #[arg(long, default_value = "provider")]
    kx: String,
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A connection: TLS, or plain TCP for the baseline.
enum Conn {
    Tls(Box<Tls>),
    Plain(TcpStream),
}

impl Conn {
    fn open(addr: SocketAddr, config: &Arc<ClientConfig>, plain: bool) -> std::io::Result<Conn> {
        if plain {
            let tcp = TcpStream::connect(addr)?;
            tcp.set_nodelay(true)?;
            return Ok(Conn::Plain(tcp));
        }
        Ok(Conn::Tls(Box::new(connect(addr, config)?)))
    }

    fn echo(&mut self, out: &[u8], back: &mut [u8], chunk: &mut [u8]) -> std::io::Result<()> {
        match self {
            Conn::Tls(t) => echo(t, out, back, chunk),
            Conn::Plain(t) => {
                t.write_all(out)?;
                t.read_exact(&mut back[..out.len()])
            }
        }
    }
}

fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    let conn = ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
        .map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// Ciphertext read from the socket per `read` call.
const READ_CHUNK: usize = 256 * 1024;

/// Writes `out` and reads its echo into `back`.
///
/// The ciphertext is read from the socket in chunks of up to 256 KiB and fed to rustls from
/// memory, as torsion's server does, instead of through `StreamOwned`, whose `read_tls` asks
/// the socket for at most 4 KiB at a time: with a read system call per 4 KiB, this generator,
/// not the server under test, set the TLS stream scenario's pace.
fn echo(tls: &mut Tls, out: &[u8], back: &mut [u8], chunk: &mut [u8]) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    tls.conn.writer().write_all(out)?;
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock)?;
    }
    let back = &mut back[..out.len()];
    let mut got = 0;
    while got < back.len() {
        let n = tls.sock.read(chunk)?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "the server closed mid-echo"));
        }
        let mut ciphertext = &chunk[..n];
        while !ciphertext.is_empty() {
            tls.conn.read_tls(&mut ciphertext)?;
            tls.conn.process_new_packets().map_err(Error::other)?;
            // Drain the plaintext before feeding more: rustls refuses ciphertext while 16 KiB
            // of plaintext waits.
            loop {
                match tls.conn.reader().read(&mut back[got..]) {
                    Ok(0) if got < back.len() => {
                        return Err(Error::new(ErrorKind::UnexpectedEof, "close_notify mid-echo"))
                    }
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&cli.ca).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("CA");
    }
    #[allow(deprecated)] // the ring provider, as the servers use
    let mut provider = rustls::crypto::ring::default_provider();
    #[allow(deprecated)]
    let group: Option<&'static dyn rustls::crypto::SupportedKxGroup> = match cli.kx.as_str() {
        "provider" => None,
        "x25519" => Some(rustls::crypto::ring::kx_group::X25519),
        "p256" => Some(rustls::crypto::ring::kx_group::SECP256R1),
        "p384" => Some(rustls::crypto::ring::kx_group::SECP384R1),
        other => {
            eprintln!("tls-loadgen: unknown --kx {other} (provider, x25519, p256, p384)");
            std::process::exit(2);
        }
    };
    if let Some(group) = group {
        provider.kx_groups = vec![group];
    }
    let provider = Arc::new(provider);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every handshake is a full one.
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..cli.conns)
        .map(|_| {
            let (config, measuring, stop, count) =
                (config.clone(), measuring.clone(), stop.clone(), count.clone());
            let (addr, scenario, plain) = (cli.connect, cli.scenario.clone(), cli.plain);
            std::thread::spawn(move || -> std::io::Result<()> {
                let size = if scenario == "stream" { 64 * 1024 } else { 64 };
                let out = vec![7u8; size];
                let mut back = vec![0u8; size];
                let mut chunk = vec![0u8; READ_CHUNK];
                let mut tls = None;
                while !stop.load(Ordering::Relaxed) {
                    if scenario == "handshake" {
                        let mut t = connect(addr, &config)?;
                        echo(&mut t, &out, &mut back, &mut chunk)?;
                        t.conn.send_close_notify();
                        let _ = t.flush();
                        if measuring.load(Ordering::Relaxed) {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let t = match &mut tls {
                        Some(t) => t,
                        None => tls.insert(Conn::open(addr, &config, plain)?),
                    };
                    t.echo(&out, &mut back, &mut chunk)?;
                    if measuring.load(Ordering::Relaxed) {
                        count
                            .fetch_add(if scenario == "stream" { size as u64 } else { 1 }, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    // One second of warm-up, then the window.
    std::thread::sleep(Duration::from_secs(1));
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(cli.seconds));
    measuring.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            eprintln!("tls-loadgen: a connection failed: {e}");
        }
    }
    println!("count={n} seconds={seconds:.3}");
}
