//! The real `proxy` bridging a Unix socket and TCP, in front of the real `echo-server`: 1 MiB
//! byte-exact through `--listen unix:PATH --target 127.0.0.1:PORT` and through
//! `--listen 127.0.0.1:0 --target unix:PATH`, with half-close forwarded both ways; SIGINT
//! stops both processes with exit 0 and removes their socket files.

mod common;

use common::{
    connect, connect_unix, pattern, send_all_then_read_to_end, start_listening, start_listening_unix,
    TempSocket,
};

const PROXY: &str = env!("CARGO_BIN_EXE_proxy");
const ECHO: &str = env!("CARGO_BIN_EXE_echo-server");

/// 1 MiB, far above the proxy's and the kernel's buffers, so backpressure is exercised.
const SIZE: usize = 1024 * 1024;

#[test]
fn proxy_from_a_unix_socket_to_tcp_is_byte_exact_both_ways() {
    let mut echo = start_listening(ECHO, &["--listen", "127.0.0.1:0"]);
    let target = echo.addr.to_string();
    let socket = TempSocket::new("proxy-in");
    let mut proxy =
        start_listening_unix(PROXY, &["--listen", &socket.endpoint(), "--target", &target], &socket.path);

    let data = pattern(SIZE, 5);
    let got = send_all_then_read_to_end(connect_unix(&socket.path), &data);
    assert_eq!(got.len(), data.len(), "every byte came back through unix -> tcp -> unix");
    assert!(got == data, "bytes through the proxy differ");

    proxy.process.interrupt();
    assert_eq!(proxy.process.wait_exit("proxy after SIGINT").code(), Some(0));
    assert!(!socket.path.exists(), "the proxy removes its socket file on a clean stop");
    echo.process.interrupt();
    assert_eq!(echo.process.wait_exit("echo-server after SIGINT").code(), Some(0));
}

#[test]
fn proxy_from_tcp_to_a_unix_socket_is_byte_exact_both_ways() {
    let socket = TempSocket::new("proxy-target");
    let mut echo = start_listening_unix(ECHO, &["--listen", &socket.endpoint()], &socket.path);
    let mut proxy = start_listening(PROXY, &["--listen", "127.0.0.1:0", "--target", &socket.endpoint()]);

    let data = pattern(SIZE, 9);
    let got = send_all_then_read_to_end(connect(proxy.addr), &data);
    assert_eq!(got.len(), data.len(), "every byte came back through tcp -> unix -> tcp");
    assert!(got == data, "bytes through the proxy differ");

    proxy.process.interrupt();
    assert_eq!(proxy.process.wait_exit("proxy after SIGINT").code(), Some(0));
    echo.process.interrupt();
    assert_eq!(echo.process.wait_exit("echo-server after SIGINT").code(), Some(0));
    assert!(!socket.path.exists(), "the echo server removes its socket file on a clean stop");
}
