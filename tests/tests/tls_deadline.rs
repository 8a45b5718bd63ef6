//! The TLS handshake deadline (issue 11): 200 connections that connect and send nothing (and
//! a few that drip a ClientHello a byte at a time) beside 20 echoing TLS clients. The silent
//! ones are closed at the deadline with `Tls(HandshakeTimeout)`, not before; the echoing
//! clients' p99 round trip is not hurt (a wide margin over a baseline measured in the same
//! run).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use torsion_reactor::{Address, Ctx, DisconnectReason, Factory, Protocol, TlsFailure};
use torsion_tests::tls::{blocking_client, localhost_name, tls_server, Pki};
use torsion_tests::{recv, Stats};

const DEADLINE: Duration = Duration::from_secs(2);

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

struct Reporting {
    tx: mpsc::Sender<DisconnectReason>,
}

impl Factory for Reporting {
    fn build_protocol(&mut self, _peer: Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Echo))
    }

    fn handshake_failed(&mut self, _peer: Address, reason: &DisconnectReason) {
        let _ = self.tx.send(reason.clone());
    }
}

/// 20 blocking rustls clients, each doing `n` 64-byte round trips; all latencies.
fn echo_round_trips(addr: &Address, pki: &Pki, n: usize) -> Vec<Duration> {
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let addr = addr.clone();
            let config = pki.client_config();
            std::thread::spawn(move || {
                let mut c = blocking_client(&addr, config).expect("handshake");
                let msg = [5u8; 64];
                let mut buf = [0u8; 64];
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let t = Instant::now();
                    c.write_all(&msg).unwrap();
                    c.read_exact(&mut buf).unwrap();
                    out.push(t.elapsed());
                }
                out
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
}

#[test]
fn load_silent_tls_connections_are_closed_at_the_deadline_without_hurting_others() {
    let pki = Pki::new();
    let (tx, rx) = mpsc::channel();
    let (_server, addr) =
        tls_server(pki.server_config(), |r| r.set_handshake_timeout(DEADLINE), move || Reporting { tx });
    let baseline = Stats::of(echo_round_trips(&addr, &pki, 200));

    let Address::Inet(inet) = addr.clone() else { unreachable!() };
    let started = Instant::now();
    let silent: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(inet).unwrap()).collect();
    // Ten drippers: a real ClientHello, one byte every 100 ms (pacing, not synchronisation).
    let mut hello_conn =
        torsion_reactor::rustls::ClientConnection::new(pki.client_config(), localhost_name()).unwrap();
    let mut hello = Vec::new();
    hello_conn.write_tls(&mut hello).unwrap();
    let drippers: Vec<_> = (0..10)
        .map(|_| {
            let hello = hello.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(inet).unwrap();
                for b in hello {
                    if s.write_all(&[b]).is_err() {
                        break; // closed by the server at the deadline
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    let loaded = Stats::of(echo_round_trips(&addr, &pki, 200));

    // Every silent connection is closed by the server: EOF (or a reset), not before the deadline.
    for mut s in silent {
        s.set_read_timeout(Some(DEADLINE + torsion_tests::WAIT)).unwrap();
        let mut buf = [0u8; 16];
        let r = s.read(&mut buf);
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
    let closed_after = started.elapsed();
    assert!(closed_after >= DEADLINE - Duration::from_millis(100), "closed early: {closed_after:?}");
    for _ in 0..210 {
        assert_eq!(
            recv(&rx, "a handshake timeout"),
            DisconnectReason::Tls(TlsFailure::HandshakeTimeout(DEADLINE))
        );
    }
    for d in drippers {
        d.join().unwrap();
    }
    println!(
        "handshake deadline: p99 {:?} baseline, {:?} beside 210 stalled handshakes",
        baseline.p99, loaded.p99
    );
    assert!(
        loaded.p99 <= baseline.p99 * 10 + Duration::from_millis(50),
        "p99 {:?} with stalled handshakes vs {:?} without",
        loaded.p99,
        baseline.p99
    );
}
