//! Bad input with a heap bound: catalogue test 31's first criterion. The rest of bad input is
//! in `bad_input.rs`. Alone in its binary: the counting allocator's limit is lowered while the
//! prefix is decoded, and no other test may allocate meanwhile.

use std::alloc::System;
use std::sync::mpsc::{self, Sender};

use cap::Cap;
use torsion_protocols::framing::{IntNDecoder, LengthPrefix, StringCtx, StringDecoder, StringHandler};
use torsion_protocols::IntNStringReceiver;
use torsion_reactor::testing::Harness;
use torsion_reactor::DisconnectReason;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Reports strings and the length the limit hook saw.
struct Collect(Sender<String>);

impl StringHandler for Collect {
    fn string_received(&mut self, _sx: &mut StringCtx<'_, '_>, data: &[u8]) {
        let _ = self.0.send(format!("string of {}", data.len()));
    }

    fn length_limit_exceeded(&mut self, sx: &mut StringCtx<'_, '_>, length: u64) {
        let _ = self.0.send(format!("length_limit_exceeded({length})"));
        sx.lose_connection_with(DisconnectReason::LimitExceeded(format!("length {length}")));
    }
}

/// Catalogue 31 (length_prefix_limits): a length prefix of `0xFFFF_FFFF` calls
/// `length_limit_exceeded(4294967295)` and closes before allocating (peak heap < 64 KiB).
#[test]
fn t31_a_0xffffffff_prefix_is_rejected_before_allocating() {
    const BOUND: usize = 64 * 1024;
    let mut decoder = IntNDecoder::new(LengthPrefix::Int32);
    // The counting allocator refuses to let the live heap grow by 64 KiB while the prefix is
    // decoded: an allocation for the announced 4 GiB (or any 64 KiB) would abort the test.
    let before = ALLOCATOR.allocated();
    ALLOCATOR.set_limit(before + BOUND).unwrap();
    let out = decoder.feed(&[0xff, 0xff, 0xff, 0xff, b'a', b'b']);
    let after = ALLOCATOR.allocated();
    ALLOCATOR.set_limit(usize::MAX).unwrap();
    assert!(after <= before + BOUND);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(matches!(&out[0], Err(e) if e.to_string().contains("4294967295")), "{out:?}");
    assert!(decoder.buffered_len() < BOUND);

    // Through the Protocol adapter: the hook sees 4294967295, then the connection closes.
    let mut h = Harness::new();
    let (tx, rx) = mpsc::channel();
    let id = h.accept(&mut move |_| Some(IntNStringReceiver::int32(Collect(tx.clone())))).unwrap();
    let before = ALLOCATOR.allocated();
    ALLOCATOR.set_limit(before + BOUND).unwrap();
    h.feed(id, &[0xff, 0xff, 0xff, 0xff]);
    ALLOCATOR.set_limit(usize::MAX).unwrap();
    assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::LimitExceeded("length 4294967295".into())));
    assert!(h.fin_sent(id), "closed cleanly");
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["length_limit_exceeded(4294967295)"], "nothing delivered");
    println!("length_prefix_limits: a 0xFFFFFFFF prefix rejected with the live heap growing < 64 KiB");
}
