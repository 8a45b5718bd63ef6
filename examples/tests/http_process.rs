//! `http-server` as a separate process: its peak memory (VmHWM from /proc) stays bounded while
//! 1 GiB goes to a slow reader and 1 GiB comes from a client through `POST /echo`.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::Duration;

use common::{connect, start_listening};

const GIB: u64 = 1 << 30;
/// The server's peak resident memory must stay under this: the 1 GiB is not buffered.
const BOUND: u64 = 64 << 20;

fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line");
    kb * 1024
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("torsion-http-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads the head of a response from `s`, returning it and any body bytes read with it.
fn read_head(s: &mut impl Read) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return (head, buf[end + 4..].to_vec());
        }
        let n = s.read(&mut chunk).expect("read the head");
        assert!(n > 0, "closed before the head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// catalogue 14 over HTTP: a 1 GiB file (sparse) to a reader that pauses every MiB.
#[test]
fn load_http_download_1gib_to_slow_reader_memory_bounded() {
    let dir = TempDir::new("down");
    File::create(dir.0.join("big.bin")).unwrap().set_len(GIB).unwrap();
    let root = dir.0.to_str().unwrap().to_owned();
    let server = start_listening(
        env!("CARGO_BIN_EXE_http-server"),
        &["--listen", "127.0.0.1:0", "--root", &root, "--access-log", "false"],
    );
    let mut s = connect(server.addr);
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let (head, mut early) = read_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.contains(&format!("content-length: {GIB}")),
        "{head}"
    );
    let mut got = early.len() as u64;
    early.clear();
    let mut buf = vec![0u8; 256 * 1024];
    let mut next_pause = 1 << 20;
    while got < GIB {
        let n = s.read(&mut buf).expect("read the body");
        assert!(n > 0, "closed after {got} bytes");
        assert!(buf[0] == 0 && buf[n - 1] == 0, "a sparse file reads as zeros");
        got += n as u64;
        if got >= next_pause {
            // Slow: a reader that falls behind the server, not a synchronisation.
            std::thread::sleep(Duration::from_micros(500));
            next_pause += 1 << 20;
        }
    }
    assert_eq!(got, GIB);
    let hwm = vm_hwm(server.process.child.id());
    assert!(hwm < BOUND, "server VmHWM {} MiB for a 1 GiB download", hwm >> 20);
    eprintln!("http-server VmHWM after a 1 GiB download: {} MiB", hwm >> 20);
}

/// 1 GiB up through `POST /echo`, streamed back, read slowly: the server pauses reading the
/// upload while the echo is not read, so neither direction is buffered.
#[test]
fn load_http_upload_1gib_through_echo_memory_bounded() {
    let server = start_listening(
        env!("CARGO_BIN_EXE_http-server"),
        &["--listen", "127.0.0.1:0", "--access-log", "false"],
    );
    let mut s = connect(server.addr);
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(
            format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {GIB}\r\n\r\n").as_bytes(),
        )?;
        let block = vec![7u8; 256 * 1024];
        for _ in 0..GIB / block.len() as u64 {
            writer.write_all(&block)?;
        }
        writer.shutdown(Shutdown::Write)
    });
    let (head, early) = read_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.contains(&format!("content-length: {GIB}")),
        "{head}"
    );
    let mut got = early.len() as u64;
    let mut buf = vec![0u8; 256 * 1024];
    let mut next_pause = 1 << 20;
    while got < GIB {
        let n = s.read(&mut buf).expect("read the echo");
        assert!(n > 0, "closed after {got} bytes");
        assert!(buf[0] == 7 && buf[n - 1] == 7);
        got += n as u64;
        if got >= next_pause {
            std::thread::sleep(Duration::from_micros(500));
            next_pause += 1 << 20;
        }
    }
    sender.join().unwrap().expect("upload");
    let hwm = vm_hwm(server.process.child.id());
    assert!(hwm < BOUND, "server VmHWM {} MiB for a 1 GiB echo", hwm >> 20);
    eprintln!("http-server VmHWM after a 1 GiB upload+echo: {} MiB", hwm >> 20);
}
