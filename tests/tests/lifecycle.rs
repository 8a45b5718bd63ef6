//! Connection lifecycle over loopback: call order, clean close, abort, stale ids.

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;

use bytes::Bytes;
use torsion_reactor::{ConnId, Ctx, DisconnectReason, Protocol, Reactor};
use torsion_tests::{localhost, pattern, run_until, Event, Log, Recorder, WAIT};

fn client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

#[test]
fn call_order_is_made_data_eof_lost() {
    let mut reactor = Reactor::new().unwrap();
    let log: Log = Log::default();
    let factory_log = log.clone();
    let port = reactor
        .listen_tcp(localhost(), move |_| {
            Some(Box::new(Recorder { log: factory_log.clone() }) as Box<dyn Protocol>)
        })
        .unwrap();
    let mut peer = client(port.local_addr());
    peer.write_all(b"hello").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    run_until(&mut reactor, "connection_lost", |_| matches!(log.borrow().last(), Some(Event::Lost(_))));

    let events = log.borrow().clone();
    assert_eq!(events.first(), Some(&Event::Made), "{events:?}");
    let data: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Data(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(data, b"hello");
    let eof_at = events.iter().position(|e| *e == Event::Eof).expect("eof_received was called");
    assert!(events[1..eof_at].iter().all(|e| matches!(e, Event::Data(_))), "{events:?}");
    assert_eq!(events.len(), eof_at + 2, "only connection_lost after eof: {events:?}");
    assert_eq!(events[eof_at + 1], Event::Lost("Clean".into()));

    // The echo of everything that arrived with the FIN came back, then our FIN.
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello");
    assert_eq!(reactor.connection_count(), 0);
}

/// Writes 8 MiB at once, then closes; records its disconnect reason.
struct BigWriter {
    data: Bytes,
    lost: Rc<RefCell<Vec<String>>>,
}

impl Protocol for BigWriter {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write_bytes(self.data.clone());
        cx.transport().lose_connection();
        let buffered = cx.transport().write_buffer_len();
        cx.transport().write(b"ignored");
        assert_eq!(cx.transport().write_buffer_len(), buffered, "writes after lose_connection are ignored");
        cx.transport().lose_connection();
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.lost.borrow_mut().push(format!("{reason:?}"));
    }
}

#[test]
fn lose_connection_after_8_mib_write_delivers_everything_then_fin() {
    let data = Bytes::from(pattern(7, 8 << 20));
    let mut reactor = Reactor::new().unwrap();
    let lost = Rc::new(RefCell::new(Vec::new()));
    let (d, l) = (data.clone(), lost.clone());
    let port = reactor
        .listen_tcp(localhost(), move |_| {
            Some(Box::new(BigWriter { data: d.clone(), lost: l.clone() }) as Box<dyn Protocol>)
        })
        .unwrap();
    let addr = port.local_addr();
    let reader = std::thread::spawn(move || {
        let mut peer = client(addr);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).map(|_| got)
    });
    run_until(&mut reactor, "reader finished and connection lost", |_| {
        reader.is_finished() && !lost.borrow().is_empty()
    });
    let got = reader.join().unwrap().expect("read to EOF");
    assert_eq!(got.len(), data.len());
    assert!(got == data[..], "bytes differ");
    assert_eq!(*lost.borrow(), vec!["Clean".to_string()]);
}

/// Aborts on the first byte.
struct Aborter {
    lost: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Aborter {
    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        cx.transport().write(b"this is dropped");
        cx.transport().abort_connection();
        cx.transport().abort_connection();
        cx.transport().lose_connection();
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.lost.borrow_mut().push(format!("{reason:?}"));
    }
}

#[test]
fn abort_connection_resets_the_peer_and_reports_aborted_once() {
    let mut reactor = Reactor::new().unwrap();
    let lost = Rc::new(RefCell::new(Vec::new()));
    let l = lost.clone();
    let port = reactor
        .listen_tcp(localhost(), move |_| Some(Box::new(Aborter { lost: l.clone() }) as Box<dyn Protocol>))
        .unwrap();
    let mut peer = client(port.local_addr());
    peer.write_all(b"x").unwrap();
    run_until(&mut reactor, "connection lost", |_| !lost.borrow().is_empty());
    // A few more turns: connection_lost must not come twice.
    for _ in 0..5 {
        reactor.run_until(std::time::Duration::from_millis(1), |_| false).unwrap();
    }
    assert_eq!(*lost.borrow(), vec!["Aborted".to_string()]);
    let mut buf = [0u8; 64];
    let err = peer.read(&mut buf).expect_err("the peer sees a reset, not data or EOF");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

/// Remembers its id and reports when it is lost.
struct Remember {
    id: Rc<Cell<Option<ConnId>>>,
    lost: Rc<Cell<bool>>,
}

impl Protocol for Remember {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.id.set(Some(cx.conn_id()));
    }
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, cx: &mut Ctx<'_>, _reason: DisconnectReason) {
        let me = cx.conn_id();
        assert!(cx.transport_for(me).is_none(), "a connection is gone by connection_lost");
        self.lost.set(true);
    }
}

#[test]
fn a_stale_conn_id_resolves_to_nothing_even_after_its_slot_is_reused() {
    let mut reactor = Reactor::new().unwrap();
    type Slot = Rc<Cell<Option<ConnId>>>;
    let ids: Rc<RefCell<Vec<Slot>>> = Rc::default();
    let losts: Rc<RefCell<Vec<Rc<Cell<bool>>>>> = Rc::default();
    let (i, l) = (ids.clone(), losts.clone());
    let port = reactor
        .listen_tcp(localhost(), move |_| {
            let id = Rc::new(Cell::new(None));
            let lost = Rc::new(Cell::new(false));
            i.borrow_mut().push(id.clone());
            l.borrow_mut().push(lost.clone());
            Some(Box::new(Remember { id, lost }) as Box<dyn Protocol>)
        })
        .unwrap();
    let first = client(port.local_addr());
    run_until(&mut reactor, "first connection made", |_| {
        ids.borrow().first().is_some_and(|c| c.get().is_some())
    });
    drop(first);
    run_until(&mut reactor, "first connection lost", |_| losts.borrow()[0].get());
    let _second = client(port.local_addr());
    run_until(&mut reactor, "second connection made", |_| {
        ids.borrow().get(1).is_some_and(|c| c.get().is_some())
    });
    let stale = ids.borrow()[0].get().unwrap();
    let fresh = ids.borrow()[1].get().unwrap();
    assert_ne!(stale, fresh);
    // Look both up from inside the loop.
    let seen = Rc::new(Cell::new((true, false)));
    let s = seen.clone();
    reactor.call_later(std::time::Duration::ZERO, move |cx| {
        s.set((cx.transport_for(stale).is_some(), cx.transport_for(fresh).is_some()));
    });
    run_until(&mut reactor, "lookup ran", |_| seen.get() != (true, false));
    assert_eq!(seen.get(), (false, true), "stale id resolves to nothing; the live one resolves");
}
