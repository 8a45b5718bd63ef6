//! What the TLS write path allocates at steady state: a server streaming 64 MiB to a Python
//! `ssl` client (another process, so the client's own allocations are not counted), from a pull
//! producer writing one static 64 KiB chunk (`Bytes::from_static`, no copy) each time the
//! buffer drains, measured with a counting allocator once warmed up.
//!
//! Torsion's own write path allocates nothing: `TlsStream` hands rustls at most one batch
//! (`TLS_WRITE_BATCH`) of plaintext at a time and writes its ciphertext straight to the socket.
//! What is left is rustls' own: in 0.23 each record is encrypted into a fresh `Vec`, one
//! allocation per record, about the bytes written (measured 1.001x; rustls' unbuffered API
//! does the same, 1.002x). The bound leaves 1/16 on top of that: another copy of each write
//! fails it. Alone in its binary: the counting allocator is process-wide.

use std::alloc::System;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use cap::Cap;
use torsion_reactor::{Bytes, Ctx, Producer, Protocol};
use torsion_tests::tls::{tls_server, Pki};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

static CHUNK: [u8; 65536] = [b'x'; 65536];

/// Bytes the producer has handed to the transport.
static PRODUCED: AtomicUsize = AtomicUsize::new(0);

const PY: &str = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="localhost")
buf = bytearray(1 << 20)
def read(n):
    while n > 0:
        got = s.recv_into(buf, min(n, len(buf)))
        if got == 0:
            sys.exit("EOF")
        n -= got
read(8 << 20)                     # warm-up: 8 MiB
print("warm", flush=True)
sys.stdin.readline()
read(64 << 20)                    # measured: 64 MiB
print("read", flush=True)
sys.stdin.readline()
s.close()
"#;

/// Writes a 64 KiB chunk whenever the buffer drains, forever.
struct Source;

impl Producer for Source {
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write_bytes(Bytes::from_static(&CHUNK));
        PRODUCED.fetch_add(CHUNK.len(), Ordering::Relaxed);
    }
}

struct Sender;

impl Protocol for Sender {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().register_producer(Source, false).expect("register");
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
}

#[test]
fn load_the_tls_write_path_allocates_only_rustls_record_copies() {
    let pki = Pki::new();
    let (_server, addr) = tls_server(pki.server_config(), |_| {}, || |_| Some(Sender));
    let torsion_reactor::Address::Inet(inet) = addr else { unreachable!() };
    let mut child = Command::new("python3")
        .args(["-c", PY, &inet.port().to_string()])
        .arg(&pki.ca_pem)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "warm", "the client read the warm-up bytes");
    let before = ALLOCATOR.total_allocated();
    let produced_before = PRODUCED.load(Ordering::Relaxed);
    writeln!(stdin).unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "read", "the client read the measured bytes");
    let allocated = ALLOCATOR.total_allocated() - before;
    let written = PRODUCED.load(Ordering::Relaxed) - produced_before;
    writeln!(stdin).unwrap();
    let _ = child.wait();
    println!("TLS write path: {allocated} bytes allocated while writing {written} bytes");
    // The client read 64 MiB; what the server wrote in the same window differs by what the
    // socket buffers held at either end, so the bound is on the bytes the producer wrote:
    // rustls' one allocation per record (1.0x), nothing of torsion's on top, 1/16 of margin.
    assert!(written >= 32 << 20, "only {written} bytes written in the window");
    let bound = written + written / 16;
    assert!(
        allocated < bound,
        "{allocated} bytes allocated while writing {written} bytes over TLS (bound {bound})"
    );
}
