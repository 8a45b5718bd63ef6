//! Half-close in both orders, ending in exactly one `connection_lost`.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;

use torsion_reactor::{Ctx, DisconnectReason, Protocol, Reactor};
use torsion_tests::{localhost, run_until, WAIT};

/// Sends a greeting and half-closes at once; keeps reading; counts callbacks.
struct WriteEofFirst {
    log: Rc<RefCell<Vec<String>>>,
    keep_open: bool,
}

impl Protocol for WriteEofFirst {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().write(b"bye");
        cx.transport().write_eof();
        cx.transport().write_eof();
    }

    fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
        self.log.borrow_mut().push(format!("data {}", String::from_utf8_lossy(data)));
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.log.borrow_mut().push("eof".into());
        self.keep_open
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.log.borrow_mut().push(format!("lost {reason:?}"));
    }
}

/// Regression: our FIN first, the peer's second must still end the connection (it once hung).
#[test]
fn write_eof_then_peer_fin_delivers_connection_lost_once() {
    for keep_open in [false, true] {
        let mut reactor = Reactor::new().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let port = reactor
            .listen_tcp(localhost(), move |_| {
                Some(Box::new(WriteEofFirst { log: l.clone(), keep_open }) as Box<dyn Protocol>)
            })
            .unwrap();
        let mut peer = TcpStream::connect(port.local_addr()).unwrap();
        peer.set_read_timeout(Some(WAIT)).unwrap();
        // Our side's FIN arrives after "bye"; the read side stays open for us.
        let reader = std::thread::spawn({
            let mut peer = peer.try_clone().unwrap();
            move || {
                let mut got = Vec::new();
                peer.read_to_end(&mut got).map(|_| got)
            }
        });
        run_until(&mut reactor, "greeting read to EOF", |_| reader.is_finished());
        assert_eq!(reader.join().unwrap().unwrap(), b"bye");
        peer.write_all(b"still reading").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        run_until(&mut reactor, "connection lost", |r| r.connection_count() == 0);
        let log = log.borrow();
        assert_eq!(log.last().map(String::as_str), Some("lost Clean"), "keep_open={keep_open}: {log:?}");
        assert_eq!(log.iter().filter(|e| e.starts_with("lost")).count(), 1);
        assert!(log.iter().any(|e| e == "eof"), "{log:?}");
        let data: String = log.iter().filter_map(|e| e.strip_prefix("data ")).collect();
        assert_eq!(data, "still reading");
    }
}

/// Keeps writing after the peer's FIN, then closes.
struct KeepWriting {
    lost: Rc<RefCell<Vec<String>>>,
}

impl Protocol for KeepWriting {
    fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}

    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        cx.call_later(std::time::Duration::from_millis(1));
        true
    }

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: torsion_reactor::TimerId) {
        cx.transport().write(b"after your FIN");
        cx.transport().lose_connection();
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.lost.borrow_mut().push(format!("{reason:?}"));
    }
}

#[test]
fn eof_received_true_keeps_the_write_side_open() {
    let mut reactor = Reactor::new().unwrap();
    let lost = Rc::new(RefCell::new(Vec::new()));
    let l = lost.clone();
    let port = reactor
        .listen_tcp(
            localhost(),
            move |_| Some(Box::new(KeepWriting { lost: l.clone() }) as Box<dyn Protocol>),
        )
        .unwrap();
    let mut peer = TcpStream::connect(port.local_addr()).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    run_until(&mut reactor, "connection lost", |_| !lost.borrow().is_empty());
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"after your FIN");
    assert_eq!(*lost.borrow(), vec!["Clean".to_string()]);
}
