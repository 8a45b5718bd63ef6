//! The WebSocket protocol on the test harness (memory transport, manual clock): the upgrade
//! and its refusals, automatic pong, the close handshake both ways (echoing the peer's code),
//! failures closing with their code, and a peer that never answers our close being aborted at
//! the deadline. The client side's handshake, too.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion_protocols::http::{status, HttpConfig, HttpProtocol, Request};
use torsion_protocols::websocket::{
    close_payload, encode_frame, ws_client, CloseInfo, Message, Opcode, Route, WsConfig, WsCtx, WsHandler,
    WsServer,
};
use torsion_reactor::testing::Harness;
use torsion_reactor::{ConnId, DisconnectReason};

type Log = Rc<RefCell<Vec<String>>>;

/// Echoes messages, closes on "close", logs everything.
struct Probe(Log);

impl WsHandler for Probe {
    fn open(&mut self, wx: &mut WsCtx<'_, '_>) {
        self.0.borrow_mut().push(format!("open {:?}", wx.protocol()));
    }
    fn message_received(&mut self, wx: &mut WsCtx<'_, '_>, message: Message<'_>) {
        match message {
            Message::Text("close") => wx.close(4000, "asked"),
            Message::Text(t) => {
                self.0.borrow_mut().push(format!("text {t}"));
                wx.send_text(t);
            }
            Message::Binary(b) => {
                self.0.borrow_mut().push(format!("binary {}", b.len()));
                wx.send_binary(b);
            }
        }
    }
    fn pong_received(&mut self, _wx: &mut WsCtx<'_, '_>, data: &[u8]) {
        self.0.borrow_mut().push(format!("pong {}", String::from_utf8_lossy(data)));
    }
    fn connection_lost(&mut self, _wx: &mut WsCtx<'_, '_>, close: CloseInfo) {
        self.0.borrow_mut().push(format!("lost {} {} clean={}", close.code, close.reason, close.clean));
    }
}

const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fn server(h: &mut Harness, config: WsConfig, log: &Log) -> ConnId {
    let ws = Rc::new(config);
    let http = Rc::new(HttpConfig::default());
    let log = log.clone();
    h.accept(&mut move |_| {
        let log = log.clone();
        let route = move |r: &Request| match r.uri().path() {
            "/ws" => Route::Upgrade(Probe(log.clone())),
            _ => Route::Respond(status(http::StatusCode::NOT_FOUND)),
        };
        Some(HttpProtocol::new(WsServer::new(ws.clone(), route), http.clone()))
    })
    .unwrap()
}

fn upgraded(config: WsConfig) -> (Harness, ConnId, Log) {
    let mut h = Harness::new();
    let log = Log::default();
    let id = server(&mut h, config, &log);
    h.feed(id, &[UPGRADE, b"\r\n"].concat());
    let head = String::from_utf8(h.take_written(id)).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    (h, id, log)
}

fn masked(op: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, op, fin, payload, Some([9, 8, 7, 6]));
    out
}

fn close_frame(code: u16) -> Vec<u8> {
    let mut out = vec![0x88];
    let body = close_payload(code, "");
    out.push(body.len() as u8);
    out.extend(body);
    out
}

#[test]
fn echoes_text_and_binary_and_answers_pings() {
    let (mut h, id, log) = upgraded(WsConfig::default());
    h.feed(id, &masked(Opcode::Text, true, b"hello"));
    assert_eq!(h.take_written(id), b"\x81\x05hello");
    h.feed(id, &masked(Opcode::Ping, true, b"are you there"));
    assert_eq!(h.take_written(id), b"\x8a\x0dare you there");
    h.feed(id, &masked(Opcode::Binary, true, &[5; 300]));
    let out = h.take_written(id);
    assert_eq!(&out[..4], b"\x82\x7e\x01\x2c");
    assert_eq!(&out[4..], &[5; 300]);
    h.feed(id, &masked(Opcode::Pong, true, b"x"));
    assert_eq!(*log.borrow(), ["open None", "text hello", "binary 300", "pong x"]);
}

#[test]
fn peer_close_is_echoed_with_its_code_and_the_connection_closes() {
    for code in [1000u16, 1001, 3000, 4999] {
        let (mut h, id, log) = upgraded(WsConfig::default());
        h.feed(id, &masked(Opcode::Close, true, &close_payload(code, "")));
        assert_eq!(h.take_written(id), close_frame(code));
        assert!(h.fin_sent(id));
        h.close_peer(id);
        assert_eq!(log.borrow().last().unwrap(), &format!("lost {code}  clean=true"));
    }
    // A close with no body is answered with no body, and reported as 1005.
    let (mut h, id, log) = upgraded(WsConfig::default());
    h.feed(id, &masked(Opcode::Close, true, b""));
    assert_eq!(h.take_written(id), b"\x88\x00");
    h.close_peer(id);
    assert_eq!(log.borrow().last().unwrap(), "lost 1005  clean=true");
}

#[test]
fn our_close_completes_when_the_peer_answers() {
    let (mut h, id, log) = upgraded(WsConfig::default());
    h.feed(id, &masked(Opcode::Text, true, b"close"));
    let mut expect = vec![0x88, 7];
    expect.extend(close_payload(4000, "asked"));
    assert_eq!(h.take_written(id), expect);
    assert!(!h.fin_sent(id));
    // Messages after our close are dropped, not answered.
    h.feed(id, &masked(Opcode::Text, true, b"late"));
    assert!(h.take_written(id).is_empty());
    h.feed(id, &masked(Opcode::Close, true, &close_payload(4000, "")));
    assert!(h.fin_sent(id));
    h.close_peer(id);
    assert_eq!(log.borrow().last().unwrap(), "lost 4000  clean=true");
}

#[test]
fn a_peer_that_never_answers_the_close_is_aborted_at_the_deadline() {
    let (mut h, id, log) = upgraded(WsConfig::default().close_timeout(Duration::from_secs(3)));
    h.feed(id, &masked(Opcode::Text, true, b"close"));
    assert!(!h.take_written(id).is_empty());
    h.advance(Duration::from_millis(2900));
    assert!(h.is_open(id), "still within the close deadline");
    h.advance(Duration::from_millis(200));
    assert!(!h.is_open(id));
    assert!(h.rst_sent(id), "aborted, not closed gracefully");
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
    assert_eq!(log.borrow().last().unwrap(), "lost 1006  clean=false");
}

#[test]
fn protocol_failures_close_with_their_code() {
    let cases: Vec<(&str, WsConfig, Vec<u8>, u16)> = vec![
        ("unmasked frame", WsConfig::default(), b"\x81\x02hi".to_vec(), 1002),
        (
            "reserved bit",
            WsConfig::default(),
            {
                let mut f = masked(Opcode::Text, true, b"x");
                f[0] |= 0x20;
                f
            },
            1002,
        ),
        ("unknown opcode", WsConfig::default(), vec![0x85, 0x80, 1, 2, 3, 4], 1002),
        ("bad UTF-8", WsConfig::default(), masked(Opcode::Text, true, b"\xff"), 1007),
        (
            "message too big",
            WsConfig::default().max_message(10),
            masked(Opcode::Binary, true, &[0; 11]),
            1009,
        ),
        ("frame too big", WsConfig::default().max_frame(10), masked(Opcode::Binary, true, &[0; 11]), 1009),
    ];
    for (what, config, input, code) in cases {
        let (mut h, id, log) = upgraded(config);
        h.feed(id, &input);
        let out = h.take_written(id);
        assert_eq!(out[0], 0x88, "{what}: a close frame");
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), code, "{what}");
        assert!(h.fin_sent(id), "{what}: closed");
        h.close_peer(id);
        assert!(
            log.borrow().last().unwrap().starts_with(&format!("lost {code} ")),
            "{what}: {:?}",
            log.borrow()
        );
    }
}

#[test]
fn bad_handshakes_are_refused_and_plain_requests_routed() {
    let base = "GET /ws HTTP/1.1\r\nHost: x\r\n";
    let cases = [
        ("no upgrade", "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n", 400),
        ("version 8", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n", 426),
        ("no key", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", 400),
        ("short key", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n", 400),
        ("no connection upgrade", "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n", 400),
    ];
    for (what, headers, code) in cases {
        let mut h = Harness::new();
        let log = Log::default();
        let id = server(&mut h, WsConfig::default(), &log);
        h.feed(id, format!("{base}{headers}\r\n").as_bytes());
        let out = String::from_utf8(h.take_written(id)).unwrap();
        assert!(out.starts_with(&format!("HTTP/1.1 {code} ")), "{what}: {out}");
        if code == 426 {
            assert!(out.contains("sec-websocket-version: 13\r\n"), "{out}");
        }
        assert!(log.borrow().is_empty());
    }
    let mut h = Harness::new();
    let id = server(&mut h, WsConfig::default(), &Log::default());
    h.feed(id, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(String::from_utf8(h.take_written(id)).unwrap().starts_with("HTTP/1.1 404 "));
}

#[test]
fn origin_check_and_subprotocol_selection() {
    let config = || {
        WsConfig::default()
            .protocols(["chat.v2", "chat.v1"])
            .origin_check(|o| o == Some("http://good.example"))
    };
    let mut h = Harness::new();
    let log = Log::default();
    let id = server(&mut h, config(), &log);
    h.feed(id, &[UPGRADE, b"Origin: http://evil.example\r\n\r\n"].concat());
    assert!(String::from_utf8(h.take_written(id)).unwrap().starts_with("HTTP/1.1 403 "));

    let id = server(&mut h, config(), &log);
    h.feed(
        id,
        &[UPGRADE, b"Origin: http://good.example\r\nSec-WebSocket-Protocol: x, chat.v1, chat.v2\r\n\r\n"]
            .concat(),
    );
    let out = String::from_utf8(h.take_written(id)).unwrap();
    assert!(out.starts_with("HTTP/1.1 101 "), "{out}");
    // The client's first choice that the server speaks.
    assert!(out.contains("sec-websocket-protocol: chat.v1\r\n"), "{out}");
    assert_eq!(*log.borrow(), ["open Some(\"chat.v1\")"]);
}

#[test]
fn client_handshake_then_masked_frames() {
    let mut h = Harness::new();
    let log = Log::default();
    let addr = "127.0.0.1:9".parse().unwrap();
    let mut factory = ws_client(addr, "/chat", Probe(log.clone()), Rc::new(WsConfig::default()));
    let id = h.connect(&mut factory);
    let req = String::from_utf8(h.take_written(id)).unwrap();
    assert!(req.starts_with("GET /chat HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"), "{req}");
    let key = req.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
    let accept = torsion_protocols::websocket::accept_key(key);
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    // The answer and a first frame in one read.
    h.feed(id, &[answer.as_bytes(), b"\x81\x02hi"].concat());
    let out = h.take_written(id);
    // The echo is masked: header bit set, 4-byte key, payload XORed.
    assert_eq!(out[0], 0x81);
    assert_eq!(out[1], 0x82);
    let key = &out[2..6];
    let payload: Vec<u8> = out[6..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
    assert_eq!(payload, b"hi");
    // A masked frame from a server fails the client with 1002.
    h.feed(id, &masked(Opcode::Text, true, b"x"));
    let out = h.take_written(id);
    assert_eq!(out[0], 0x88);
    assert_eq!(out[1] & 0x80, 0x80, "the client's close frame is masked too");
    assert_eq!(log.borrow()[..2], ["open None", "text hi"]);
    assert!(log.borrow()[2].starts_with("lost 1002 "), "{:?}", log.borrow());

    // A wrong accept value: the connection is aborted, and the handler told.
    let log = Log::default();
    let mut factory = ws_client(addr, "/", Probe(log.clone()), Rc::new(WsConfig::default()));
    let id = h.connect(&mut factory);
    h.take_written(id);
    h.feed(
        id,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n",
    );
    assert!(!h.is_open(id));
    assert_eq!(*log.borrow(), ["lost 1006  clean=false"]);
}

/// Relays everything it reads to a WebSocket connection as binary messages, registered as
/// that connection's push producer: when the WebSocket's peer stops reading, this
/// connection stops being read.
struct Relay {
    target: ConnId,
    relayed: Rc<std::cell::Cell<usize>>,
}

impl torsion_reactor::Protocol for Relay {
    fn connection_made(&mut self, cx: &mut torsion_reactor::Ctx<'_>) {
        let me = cx.conn_id();
        let mut ws = cx.transport_for(self.target).expect("the WebSocket is open");
        ws.register_producer(me, true).unwrap();
    }
    fn data_received(&mut self, cx: &mut torsion_reactor::Ctx<'_>, data: &[u8]) {
        self.relayed.set(self.relayed.get() + data.len());
        let mut frame = Vec::with_capacity(data.len() + 4);
        encode_frame(&mut frame, Opcode::Binary, true, data, None);
        if let Some(mut ws) = cx.transport_for(self.target) {
            ws.write(&frame);
        }
    }
}

#[test]
fn a_push_producer_feeds_a_websocket_within_its_watermarks() {
    let (mut h, ws, log) = upgraded(WsConfig::default());
    let relayed = Rc::new(std::cell::Cell::new(0));
    let r = relayed.clone();
    let src = h.accept(&mut move |_| Some(Relay { target: ws, relayed: r.clone() })).unwrap();
    h.set_peer_window(ws, Some(0)); // the WebSocket's client reads nothing for now
    let chunk = [7u8; 1000];
    for _ in 0..300 {
        h.feed(src, &chunk);
    }
    // The relay was paused once the WebSocket's buffer passed its high mark (64 KiB): far
    // less than the 300 KB offered was read from it.
    let read = relayed.get();
    assert!(read < 100 * 1024, "the relay read {read} bytes: the producer was not paused");
    // The client reads: everything arrives (as binary messages of whatever each read held).
    h.set_peer_window(ws, None);
    let mut out = Vec::new();
    loop {
        let got = h.take_written(ws);
        if got.is_empty() {
            break;
        }
        out.extend(got);
    }
    let mut d = torsion_protocols::websocket::FrameDecoder::new(torsion_protocols::websocket::Role::Client);
    let mut rest = &out[..];
    let mut total = 0;
    while let Ok((used, event)) = d.decode(rest) {
        rest = &rest[used..];
        match event {
            Some(torsion_protocols::websocket::Event::Message(Message::Binary(b))) => {
                assert!(b.iter().all(|&x| x == 7), "the relayed bytes changed");
                total += b.len();
            }
            None => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(total, 300 * chunk.len());
    assert_eq!(*log.borrow(), ["open None"]);
}
