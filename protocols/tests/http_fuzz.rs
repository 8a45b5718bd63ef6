//! Bad input never panics the HTTP server: random bytes, and valid request streams with random
//! bytes flipped, inserted or cut, fed in random pieces, end in responses or a close, never in
//! a panic (a caught panic would show as `connection_lost(Panicked)`).

use std::rc::Rc;

use http::StatusCode;
use proptest::prelude::*;
use torsion_protocols::http::{text, Handler, HttpConfig, HttpCtx, HttpProtocol, Request};
use torsion_reactor::testing::Harness;
use torsion_reactor::DisconnectReason;

struct Answer;

impl Handler for Answer {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        if request.method() == http::Method::POST {
            return; // answered at the end
        }
        let _ = hx.respond(text(StatusCode::OK, "ok"));
    }
    fn end(&mut self, hx: &mut HttpCtx<'_, '_>) {
        let _ = hx.respond(text(StatusCode::OK, "posted"));
    }
}

const VALID: &[u8] = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n\
POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n\
HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
OPTIONS * HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n";

fn run(input: &[u8], cuts: &[usize]) {
    let mut h = Harness::new();
    let config = Rc::new(HttpConfig::default().max_body_size(Some(1 << 16)));
    let id = h.accept(&mut move |_| Some(HttpProtocol::new(Answer, config.clone()))).unwrap();
    let mut rest = input;
    for &cut in cuts {
        if rest.is_empty() {
            break;
        }
        let n = cut % rest.len() + 1;
        h.feed(id, &rest[..n]);
        rest = &rest[n..];
        let _ = h.take_written(id);
    }
    if !rest.is_empty() {
        h.feed(id, rest);
    }
    let _ = h.take_written(id);
    h.feed_eof(id);
    let _ = h.take_written(id);
    if let Some(DisconnectReason::Panicked(message)) = h.disconnect_reason(id) {
        panic!("the protocol panicked: {message} on {:?}", String::from_utf8_lossy(input));
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Cut(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
        (
            any::<usize>(),
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), Just(b'0'), any::<u8>()]
        )
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 0usize..40).prop_map(|(at, n)| Edit::Cut(at, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..600),
                                cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        run(&input, &cuts);
    }

    #[test]
    fn mutated_request_streams_never_panic(edits in proptest::collection::vec(edit(), 1..6),
                                           cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let mut input = VALID.to_vec();
        for e in edits {
            match e {
                Edit::Flip(at, b) => { let i = at % input.len(); input[i] = b; }
                Edit::Insert(at, b) => { let i = at % (input.len() + 1); input.insert(i, b); }
                Edit::Cut(at, n) => { let i = at % input.len(); let j = (i + n).min(input.len()); input.drain(i..j); }
            }
            if input.is_empty() { input.push(b'G'); }
        }
        run(&input, &cuts);
    }
}
