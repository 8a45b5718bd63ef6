//! `http-server`'s graceful stop (cpython#104344 is the bug it avoids: a server that waits for
//! idle keep-alive connections never stops): with 100 idle keep-alive connections and 10
//! downloads in flight, SIGINT closes the idle ones at once, lets the downloads finish, and the
//! process exits 0.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use common::{connect, start_listening};

const SIZE: u64 = 32 << 20;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads one response head; returns it and the body bytes that came with it.
fn read_head(s: &mut TcpStream) -> (String, usize) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return (String::from_utf8_lossy(&buf[..end]).into_owned(), buf.len() - end - 4);
        }
        let n = s.read(&mut chunk).expect("read a head");
        assert!(n > 0, "closed before the head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn graceful_stop_closes_idle_keep_alive_at_once_and_finishes_downloads() {
    let dir = TempDir(std::env::temp_dir().join(format!("torsion-http-stop-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    File::create(dir.0.join("big.bin")).unwrap().set_len(SIZE).unwrap();
    let mut server = start_listening(
        env!("CARGO_BIN_EXE_http-server"),
        &["--listen", "127.0.0.1:0", "--root", dir.0.to_str().unwrap(), "--access-log", "false"],
    );

    let mut idle = Vec::new();
    for _ in 0..100 {
        let mut s = connect(server.addr);
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let (head, body) = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 200 OK") && !head.contains("connection: close"), "{head}");
        let mut rest = vec![0u8; 13 - body];
        s.read_exact(&mut rest).unwrap();
        idle.push(s);
    }
    let mut downloads = Vec::new();
    for _ in 0..10 {
        let mut s = connect(server.addr);
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let (head, body) = read_head(&mut s);
        assert!(head.contains(&format!("content-length: {SIZE}")), "{head}");
        // Not reading on: the server's buffer and the socket fill, the download is in flight.
        downloads.push((s, body as u64));
    }

    server.process.interrupt();

    // Every idle connection is closed while the downloads are still stalled (not read).
    for (i, s) in idle.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        let n = s.read(&mut byte).unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        assert_eq!(n, 0, "idle connection {i} got bytes instead of a close");
    }
    // Our side closes too, so the server does not linger on them until its deadline.
    drop(idle);
    // Each download completes, all of it, then the server closes.
    let mut buf = vec![0u8; 256 * 1024];
    for (i, (s, mut got)) in downloads.into_iter().enumerate() {
        let mut s = s;
        loop {
            let n = s.read(&mut buf).unwrap_or_else(|e| panic!("download {i}: {e}"));
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        assert_eq!(got, SIZE, "download {i} was cut short");
        drop(s);
    }
    let status = server.process.wait_exit("http-server after SIGINT");
    assert!(status.success(), "exit status {status}");
}
