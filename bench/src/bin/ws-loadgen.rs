//! `ws-loadgen`: WebSocket echo load for bench/ws.sh.
//!
//! Opens `--conns` WebSocket connections to `--target`, then on each one sends a masked message
//! of `--size` bytes (`--binary`, or text) and waits for its echo before sending the next
//! (one message in flight per connection). After `--warmup` seconds it measures for
//! `--duration` seconds: messages echoed, and the server's CPU time (user + system, from
//! `/proc/PID/stat` of `--server-pid`). One result line on standard output:
//! `messages=N seconds=S msgs_per_sec=R server_cpu_ms=C server_cpu_us_per_msg=U`.
//!
//! Every echo is checked byte for byte against what was sent.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// WebSocket echo load generator.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The echo server.
    #[arg(long)]
    target: SocketAddr,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Send binary messages (default: text).
    #[arg(long)]
    binary: bool,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// The server's process id, for its CPU time.
    #[arg(long)]
    server_pid: u32,
}

/// utime + stime of `pid`, from /proc/PID/stat, in clock ticks.
fn process_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 14 (utime) and 15 (stime) of the whole line are 12 and 13 here (0-based, after
    // state at 0).
    let utime: u64 = fields[11].parse().map_err(|_| io::Error::other("bad utime"))?;
    let stime: u64 = fields[12].parse().map_err(|_| io::Error::other("bad stime"))?;
    Ok(utime + stime)
}

fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

async fn connection(
    target: SocketAddr,
    size: usize,
    binary: bool,
    seed: u8,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    let mut stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(io::Error::other("closed during the handshake"));
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other(format!("handshake refused: {}", String::from_utf8_lossy(&head))));
    }
    // The message (ASCII, so valid as text too), its masked frame, and the expected echo.
    let payload: Vec<u8> = (0..size).map(|i| b'a' + ((i + seed as usize) % 26) as u8).collect();
    let mask = [0x12, 0x34, 0x56, seed];
    let opcode = if binary { 0x82u8 } else { 0x81 };
    let mut frame = vec![opcode];
    let mut echo = vec![opcode];
    if size < 126 {
        frame.push(0x80 | size as u8);
        echo.push(size as u8);
    } else if size <= 0xFFFF {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(size as u16).to_be_bytes());
        echo.push(126);
        echo.extend_from_slice(&(size as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(size as u64).to_be_bytes());
        echo.push(127);
        echo.extend_from_slice(&(size as u64).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    echo.extend_from_slice(&payload);
    let mut got = vec![0u8; echo.len()];
    while !stop.load(Ordering::Relaxed) {
        stream.write_all(&frame).await?;
        stream.read_exact(&mut got).await?;
        if got != echo {
            return Err(io::Error::other("the echo differs from the message"));
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..cli.conns {
            let (count, stop) = (count.clone(), stop.clone());
            tasks.push(tokio::spawn(connection(cli.target, cli.size, cli.binary, i as u8, count, stop)));
        }
        tokio::time::sleep(Duration::from_secs_f64(cli.warmup)).await;
        let (n0, cpu0, t0) = (count.load(Ordering::Relaxed), process_ticks(cli.server_pid)?, Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(cli.duration)).await;
        let (n1, cpu1, t1) = (count.load(Ordering::Relaxed), process_ticks(cli.server_pid)?, Instant::now());
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            if let Ok(Err(e)) = task.await {
                return Err(e);
            }
        }
        let messages = n1 - n0;
        let seconds = (t1 - t0).as_secs_f64();
        let cpu_ms = (cpu1 - cpu0) as f64 * 1000.0 / clock_ticks_per_sec() as f64;
        let per_msg_us = if messages > 0 { cpu_ms * 1000.0 / messages as f64 } else { f64::NAN };
        println!(
            "messages={messages} seconds={seconds:.3} msgs_per_sec={:.0} server_cpu_ms={cpu_ms:.0} \
             server_cpu_us_per_msg={per_msg_us:.3}",
            messages as f64 / seconds
        );
        Ok(())
    })
}
