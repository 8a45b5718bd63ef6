//! The chat server's per-connection wrapper, [`Member`], forwards every one of the seven
//! `Protocol` callbacks to the protocol it wraps: a recording protocol inside a `Member` on
//! the in-memory harness sees each of them, in the order the reactor made them.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion_examples::chat::{ChatConfig, ChatServer, Member};
use torsion_reactor::testing::{Call, Harness};
use torsion_reactor::{Ctx, DisconnectReason, Protocol, TimerId};

/// More than the default high watermark (64 KiB), so one write pauses the producer.
const FLOOD: usize = 200 * 1024;

/// Records each callback it gets, as the harness's own [`Call`]s. Sets a timer when it
/// connects and writes [`FLOOD`] bytes when it receives `flood`.
struct Recorder {
    calls: Rc<RefCell<Vec<Call>>>,
}

impl Recorder {
    fn record(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

impl Protocol for Recorder {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.record(Call::Made);
        cx.set_timer(Duration::from_secs(1));
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.record(Call::Data(data.len()));
        if data == b"flood" {
            cx.transport().write(&vec![b'x'; FLOOD]);
        }
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.record(Call::Eof);
        false // close our side too
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.record(Call::Lost(reason));
    }

    fn timer_fired(&mut self, _cx: &mut Ctx<'_>, timer: TimerId) {
        self.record(Call::Timer(timer));
    }

    fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.record(Call::PauseProducing);
    }

    fn resume_producing(&mut self, _cx: &mut Ctx<'_>) {
        self.record(Call::ResumeProducing);
    }
}

#[test]
fn member_forwards_all_seven_callbacks_to_the_protocol_it_wraps() {
    let room = ChatServer::new(ChatConfig::default()).room();
    let calls = Rc::new(RefCell::new(Vec::new()));
    let mut h = Harness::new();
    let (log, member_room) = (calls.clone(), room.clone());
    let mut factory = move |_| Some(Member::new(Recorder { calls: log.clone() }, member_room.clone()));
    let id = h.accept(&mut factory).expect("the factory builds the member");

    // connection_made, then timer_fired when the timer set there comes due.
    h.advance(Duration::from_secs(1));
    // data_received; the write crosses the high watermark of a peer that reads nothing, so the
    // connection's producer (its protocol) is paused...
    h.set_peer_window(id, Some(0));
    h.feed(id, b"flood");
    // ...and resumed once the peer reads it all and the buffer drains.
    h.set_peer_window(id, None);
    assert_eq!(h.take_written(id).len(), FLOOD, "every flooded byte reached the peer");
    // eof_received (returning false closes our side), then connection_lost.
    h.feed_eof(id);
    assert!(h.fin_sent(id));

    let seen = calls.borrow().clone();
    assert_eq!(seen.len(), 7, "one of each callback: {seen:?}");
    let timer = match seen[1] {
        Call::Timer(timer) => timer,
        ref other => panic!("the second call is the timer, got {other:?} in {seen:?}"),
    };
    assert_eq!(
        seen,
        [
            Call::Made,
            Call::Timer(timer),
            Call::Data(5),
            Call::PauseProducing,
            Call::ResumeProducing,
            Call::Eof,
            Call::Lost(DisconnectReason::Clean),
        ]
    );
    // The wrapped protocol saw exactly what the reactor called on the wrapper.
    assert_eq!(h.calls(id), seen);
    // The member left the room's flow control with its connection: nothing is held back.
    assert_eq!(room.held_back(), 0);
}
