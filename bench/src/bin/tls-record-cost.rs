//! `tls-record-cost`: what rustls' record protection alone costs per megabyte echoed, on this
//! machine, with the ring provider both TLS servers of bench/tls.sh use.
//!
//! A TLS echo server decrypts every byte it reads and encrypts every byte it writes; a
//! plaintext echo server does neither. This measures that difference in isolation: rustls'
//! own `MessageEncrypter` / `MessageDecrypter` for a TLS 1.3 suite, on full 16 KiB records
//! (the size a 64 KiB stream is cut into), one encryption (rustls copies the plaintext into the
//! record it seals, as it does for every write) and one decryption (in place) per record. No
//! sockets, no event loop, no buffering: a floor under any rustls-based echo server, torsion's
//! and tokio-rustls' alike.
//!
//! bench/tls.sh prints the AES-256-GCM figure (the suite rustls' ring provider negotiates by
//! default) as part of torsion's TLS cost per MB: plaintext echo + records + the rest.
//!
//! Usage: `tls-record-cost [--megabytes N] [--trials N]`. Prints one line per suite,
//! `SUITE us_per_mb=F` (the best of the trials, microseconds of CPU per MB echoed, that is per
//! MB decrypted plus MB encrypted).

use std::time::Instant;

use clap::Parser;
use rustls::crypto::cipher::{AeadKey, InboundOpaqueMessage, Iv, OutboundChunks, OutboundPlainMessage};
use rustls::{ContentType, ProtocolVersion, SupportedCipherSuite};

/// TLS record size: the largest plaintext a record carries.
const RECORD: usize = 16 * 1024;

#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Megabytes echoed per trial.
    #[arg(long, default_value_t = 256)]
    megabytes: usize,
    /// Trials per suite (the best is reported).
    #[arg(long, default_value_t = 5)]
    trials: usize,
}

/// Microseconds per MB (one MB encrypted plus one MB decrypted), best of `trials`.
fn cost(suite: SupportedCipherSuite, megabytes: usize, trials: usize) -> f64 {
    let aead = suite.tls13().expect("a TLS 1.3 suite").aead_alg;
    let iv = Iv::new([9; 12]);
    let mut sealer = aead.encrypter(AeadKey::from([7; 32]), Iv::new([9; 12]));
    let mut opener = aead.decrypter(AeadKey::from([7; 32]), iv);
    let plaintext = vec![0x5a_u8; RECORD];
    let records = megabytes * (1 << 20) / RECORD;
    let mut seq = 0u64;
    let mut best = f64::INFINITY;
    for _ in 0..trials {
        let start = Instant::now();
        for _ in 0..records {
            let message = OutboundPlainMessage {
                typ: ContentType::ApplicationData,
                version: ProtocolVersion::TLSv1_2,
                payload: OutboundChunks::Single(&plaintext),
            };
            let sealed = sealer.encrypt(message, seq).expect("encrypt");
            let mut record = sealed.encode();
            let opened = opener
                .decrypt(
                    InboundOpaqueMessage::new(
                        ContentType::ApplicationData,
                        ProtocolVersion::TLSv1_2,
                        &mut record[5..],
                    ),
                    seq,
                )
                .expect("decrypt");
            assert_eq!(opened.payload.len(), RECORD);
            seq += 1;
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / megabytes as f64);
    }
    best
}

fn main() {
    let cli = Cli::parse();
    #[allow(deprecated)] // the ring provider, as the servers use
    let suites = [
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    for suite in suites {
        let us = cost(suite, cli.megabytes.max(1), cli.trials.max(1));
        println!("{:?} us_per_mb={us:.1}", suite.suite());
    }
}
