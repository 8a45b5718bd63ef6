//! The framers over real loopback sockets: `LineReceiver`, `IntNStringReceiver` (16 and 32
//! bit) and `NetstringReceiver` echo servers receive many pipelined frames, split however TCP
//! splits them, and echo each byte-exact; the peer's FIN is answered after the last frame; a
//! too-long or malformed frame closes the connection after echoing what came before.

use std::io::{Read, Write};

use torsion_protocols::framing::{
    IntNStringReceiver, LineCtx, LineHandler, LineReceiver, NetstringReceiver, StringCtx, StringHandler,
};
use torsion_reactor::Protocol;
use torsion_tests::{pattern, write_and_read_to_end, Server};

struct LineEcho;

impl LineHandler for LineEcho {
    fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
        lx.send_line(line);
    }
}

struct StringEcho;

impl StringHandler for StringEcho {
    fn string_received(&mut self, sx: &mut StringCtx<'_, '_>, data: &[u8]) {
        sx.send_string(data).expect("an echo fits");
    }
}

/// Frames of sizes 0..=max spread over `count`, deterministic.
fn payloads(count: usize, max: usize, no_newlines: bool) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let len = if i == 0 {
                0
            } else if i == 1 {
                max
            } else {
                (i * 7919) % (max + 1)
            };
            let mut p = pattern(i as u64, len);
            if no_newlines {
                p.iter_mut().filter(|b| **b == b'\r' || **b == b'\n').for_each(|b| *b = b'.');
            }
            p
        })
        .collect()
}

/// Sends `wire` (half-closing after it) and checks the echo is exactly `wire`.
fn round_trip(server: &Server, wire: Vec<u8>) {
    let got = write_and_read_to_end(server.connect(), wire.clone(), true).expect("echo");
    assert_eq!(got.len(), wire.len());
    assert!(got == wire, "echo differs");
}

/// Sends `good` then `bad`; expects exactly `good` echoed, then the server's close.
fn closes_after(server: &Server, good: &[u8], bad: &[u8]) {
    let mut stream = server.connect();
    stream.write_all(good).unwrap();
    stream.write_all(bad).unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("a clean close");
    assert_eq!(got, good);
}

#[test]
fn line_receiver_echoes_pipelined_lines_and_closes_on_a_too_long_one() {
    let server = Server::start(|| {
        |_| Some(Box::new(LineReceiver::new(LineEcho).with_max_length(5000)) as Box<dyn Protocol>)
    });
    let wire: Vec<u8> =
        payloads(2000, 5000, true).iter().flat_map(|l| [l.as_slice(), b"\r\n"].concat()).collect();
    round_trip(&server, wire);
    closes_after(&server, b"fine\r\n", &[b'x'; 5001]);
    server.stop();
}

#[test]
fn int_n_string_receivers_echo_pipelined_strings_and_close_on_a_too_long_one() {
    let server = Server::start(|| {
        |_| Some(Box::new(IntNStringReceiver::int16(StringEcho).with_max_length(3000)) as Box<dyn Protocol>)
    });
    let wire: Vec<u8> = payloads(2000, 3000, false)
        .iter()
        .flat_map(|s| [&(s.len() as u16).to_be_bytes()[..], s].concat())
        .collect();
    round_trip(&server, wire);
    closes_after(&server, b"\x00\x02ok", &3001u16.to_be_bytes());
    server.stop();

    let server =
        Server::start(|| |_| Some(Box::new(IntNStringReceiver::int32(StringEcho)) as Box<dyn Protocol>));
    let wire: Vec<u8> = payloads(300, 99999, false)
        .iter()
        .flat_map(|s| [&(s.len() as u32).to_be_bytes()[..], s].concat())
        .collect();
    round_trip(&server, wire);
    closes_after(&server, b"\x00\x00\x00\x02ok", &[0xFF; 4]);
    server.stop();
}

#[test]
fn netstring_receiver_echoes_pipelined_netstrings_and_closes_on_malformed_input() {
    let server =
        Server::start(|| |_| Some(Box::new(NetstringReceiver::netstring(StringEcho)) as Box<dyn Protocol>));
    let wire: Vec<u8> = payloads(1000, 20_000, false)
        .iter()
        .flat_map(|s| [format!("{}:", s.len()).as_bytes(), s, b","].concat())
        .collect();
    round_trip(&server, wire);
    closes_after(&server, b"2:ok,", b"3:abcX");
    closes_after(&server, b"2:ok,", b"100000:");
    server.stop();
}
