//! Connection limits: a total cap (150 clients against 100), a per-peer cap, a clean close
//! with a reason and an optional message for the refused, and counters freed however a
//! connection ends.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use torsion_protocols::policies::{
    LimitConnectionsFactory, TimeoutFactory, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_PEER,
};
use torsion_protocols::Echo;
use torsion_reactor::testing::{Call, Harness};
use torsion_reactor::{Address, ConnId, Ctx, DisconnectReason, Factory, Protocol, TimerId};

/// Every harness connection comes from this address.
const HARNESS_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn echo(_peer: Address) -> Option<Echo> {
    Some(Echo)
}

fn refused(h: &Harness, id: ConnId) -> bool {
    matches!(h.disconnect_reason(id), Some(DisconnectReason::LimitExceeded(_)))
}

#[test]
fn defaults_and_setters() {
    let mut factory = LimitConnectionsFactory::new(echo);
    assert_eq!(factory.max_connections(), Some(DEFAULT_MAX_CONNECTIONS));
    assert_eq!(factory.max_per_peer(), Some(DEFAULT_MAX_PER_PEER));
    assert_eq!((DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_PEER), (10_000, 100));
    factory.set_max_connections(Some(7)).set_max_per_peer(None);
    assert_eq!((factory.max_connections(), factory.max_per_peer()), (Some(7), None));
}

#[test]
fn one_hundred_fifty_clients_against_a_cap_of_one_hundred() {
    let mut h = Harness::new();
    let mut factory = LimitConnectionsFactory::new(echo);
    factory.set_max_connections(Some(100)).set_max_per_peer(None);
    let counts = factory.counts();
    let ids: Vec<ConnId> = (0..150).map(|_| h.accept(&mut factory).expect("accepted")).collect();
    let (over, under): (Vec<ConnId>, Vec<ConnId>) = ids.iter().partition(|id| refused(&h, **id));
    assert_eq!(under.len(), 100);
    assert_eq!(over.len(), 50);
    assert_eq!(over, ids[100..].to_vec(), "the first 100 are served, the rest refused");
    assert_eq!((counts.total(), counts.refused()), (100, 50));
    for id in &over {
        let reason = h.disconnect_reason(*id).unwrap();
        assert!(
            matches!(reason, DisconnectReason::LimitExceeded(ref m) if m.contains("too many connections (limit 100)")),
            "{reason:?}"
        );
        assert!(h.fin_sent(*id), "refused peers get a clean FIN");
        assert!(!h.rst_sent(*id));
    }
    for id in &under {
        h.feed(*id, b"hi");
        assert_eq!(h.take_written(*id), b"hi", "served connections work");
    }
    // Free 30; 30 new ones fit, the 31st does not.
    for id in &under[..30] {
        h.feed_eof(*id);
    }
    assert_eq!(counts.total(), 70);
    let more: Vec<ConnId> = (0..31).map(|_| h.accept(&mut factory).unwrap()).collect();
    assert!(more[..30].iter().all(|id| h.is_open(*id)));
    assert!(refused(&h, more[30]));
    assert_eq!(counts.total(), 100);
}

#[test]
fn per_peer_limit_counts_each_address() {
    let mut h = Harness::new();
    let mut factory = LimitConnectionsFactory::new(echo);
    factory.set_max_per_peer(Some(5));
    let counts = factory.counts();
    let ids: Vec<ConnId> = (0..6).map(|_| h.accept(&mut factory).unwrap()).collect();
    assert!(ids[..5].iter().all(|id| h.is_open(*id)));
    let reason = h.disconnect_reason(ids[5]).unwrap();
    assert!(
        matches!(reason, DisconnectReason::LimitExceeded(ref m) if m.contains("from 127.0.0.2 (limit 5)")),
        "{reason:?}"
    );
    assert_eq!(counts.for_peer(HARNESS_PEER), 5);
    assert_eq!(counts.peers(), 1);
    assert_eq!(counts.for_peer(IpAddr::V4(Ipv4Addr::LOCALHOST)), 0);
}

#[test]
fn per_peer_limit_keys_on_the_ip_and_maps_ipv4_in_ipv6() {
    // Straight through `build_protocol`, to pick the peer addresses.
    let mut factory = LimitConnectionsFactory::new(echo);
    factory.set_max_per_peer(Some(2));
    let counts = factory.counts();
    let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let a_mapped: SocketAddr = "[::ffff:10.0.0.1]:1001".parse().unwrap();
    let b: SocketAddr = "[2001:db8::1]:1000".parse().unwrap();
    let p1 = factory.build_protocol(a.into()).unwrap();
    let p2 = factory.build_protocol(a_mapped.into()).unwrap();
    assert_eq!(counts.for_peer(a.ip()), 2, "an IPv4-mapped address is the same peer");
    let p3 = factory.build_protocol(b.into()).unwrap();
    assert_eq!((counts.total(), counts.peers(), counts.refused()), (3, 2, 0));
    let _p4 = factory.build_protocol("10.0.0.1:2000".parse().unwrap()).unwrap();
    assert_eq!(counts.refused(), 1, "the third from 10.0.0.1 is refused");
    assert_eq!(counts.total(), 3, "a refused connection is not counted");
    // A protocol the reactor never ran still frees its slot when dropped.
    drop((p1, p2, p3));
    assert_eq!((counts.total(), counts.peers()), (0, 0));
}

#[test]
fn counters_are_freed_however_the_connection_ends() {
    let mut h = Harness::new();
    let mut factory = LimitConnectionsFactory::new(TimeoutFactory::new(echo));
    factory.inner_mut().set_timeout(Some(Duration::from_secs(5)));
    factory.set_max_connections(Some(4));
    let counts = factory.counts();
    let ids: Vec<ConnId> = (0..4).map(|_| h.accept(&mut factory).unwrap()).collect();
    assert_eq!(counts.total(), 4);
    h.feed_eof(ids[0]); // clean close by the peer
    h.reset_peer(ids[1]); // reset
    h.close_peer(ids[2]); // full close
    assert_eq!(counts.total(), 1);
    h.advance(Duration::from_secs(5)); // the idle timeout closes the last
    assert_eq!(h.disconnect_reason(ids[3]), Some(DisconnectReason::TimedOut));
    assert_eq!((counts.total(), counts.peers()), (0, 0));
    let again: Vec<ConnId> = (0..4).map(|_| h.accept(&mut factory).unwrap()).collect();
    assert!(again.iter().all(|id| h.is_open(*id)), "freed slots are reusable");
}

#[test]
fn refusal_message_is_sent_before_the_close_and_the_inner_factory_is_not_asked() {
    let mut h = Harness::new();
    let built = Rc::new(Cell::new(0));
    let count = built.clone();
    let mut factory = LimitConnectionsFactory::new(move |_| {
        count.set(count.get() + 1);
        Some(Echo)
    });
    factory.set_max_connections(Some(1)).set_refusal_message(Some(Bytes::from_static(b"421 busy\r\n")));
    let first = h.accept(&mut factory).unwrap();
    let second = h.accept(&mut factory).unwrap();
    assert_eq!(built.get(), 1, "the wrapped factory built a protocol for a refused connection");
    assert_eq!(h.take_written(second), b"421 busy\r\n");
    assert!(h.fin_sent(second));
    assert!(refused(&h, second));
    h.feed(second, b"ignored");
    assert!(h.is_open(first));
}

#[test]
fn a_connection_the_inner_factory_refuses_is_not_counted() {
    let mut h = Harness::new();
    let mut factory = LimitConnectionsFactory::new(|_| None::<Box<dyn Protocol>>);
    let counts = factory.counts();
    assert!(h.accept(&mut factory).is_none());
    assert_eq!((counts.total(), counts.refused()), (0, 0));
}

/// Sets a timer and lets reading be paused by backpressure: the wrapper must pass both on.
struct Busy {
    timer: Option<TimerId>,
    fired: Rc<Cell<bool>>,
}

impl Protocol for Busy {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.timer = Some(cx.set_timer(Duration::from_secs(1)));
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }

    fn timer_fired(&mut self, _cx: &mut Ctx<'_>, timer: TimerId) {
        assert_eq!(Some(timer), self.timer);
        self.fired.set(true);
    }
}

#[test]
fn limited_protocols_get_their_timers_and_backpressure() {
    let mut h = Harness::new();
    let fired = Rc::new(Cell::new(false));
    let flag = fired.clone();
    let mut factory = LimitConnectionsFactory::new(move |_| Some(Busy { timer: None, fired: flag.clone() }));
    let id = h.accept(&mut factory).unwrap();
    h.advance(Duration::from_secs(1));
    assert!(fired.get());
    h.set_peer_window(id, Some(0));
    h.feed(id, &vec![7; 200_000]);
    assert!(h.calls(id).contains(&Call::PauseProducing));
    // The wrapped protocol's default response paused reading: more input is not read.
    let reads = |h: &Harness| h.calls(id).iter().filter(|c| matches!(c, Call::Data(_))).count();
    let before = reads(&h);
    h.feed(id, &[8; 1000]);
    assert_eq!(reads(&h), before, "reading was not paused through the wrapper");
    h.set_peer_window(id, None);
    assert!(h.calls(id).contains(&Call::ResumeProducing));
    assert_eq!(reads(&h), before + 1, "reading resumed through the wrapper");
}

#[test]
fn builder_forms_chain_like_the_setters() {
    let mut h = Harness::new();
    let mut factory = LimitConnectionsFactory::new(echo)
        .with_max_connections(Some(2))
        .with_max_per_peer(None)
        .with_refusal_message(Some(Bytes::from_static(b"full\r\n")));
    assert_eq!((factory.max_connections(), factory.max_per_peer()), (Some(2), None));
    let served: Vec<ConnId> = (0..2).map(|_| h.accept(&mut factory).unwrap()).collect();
    let third = h.accept(&mut factory).unwrap();
    assert!(refused(&h, third));
    assert_eq!(h.take_written(third), b"full\r\n", "the refusal message set with with_refusal_message");
    for id in served {
        assert!(!refused(&h, id));
        h.feed(id, b"hi");
        assert_eq!(h.take_written(id), b"hi");
    }
}
