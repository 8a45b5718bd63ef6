//! Re-entrancy: closing from inside callbacks never runs user code synchronously (catalogue 28).
//! Alone in its binary: it compares the process's descriptor count with its baseline.
//!
//! A double close cannot be written with the reactor's owned descriptors; if one happened
//! through a bug, std's debug-build check on dropping an already-closed descriptor aborts the
//! process (the EBADF the catalogue asks to fail on), and the descriptor count must come back
//! to its baseline.

use std::cell::Cell;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use torsion_reactor::{Ctx, DisconnectReason, Protocol, TimerId};
use torsion_tests::{expect_closed, fd_count, localhost, recv, wait_for, ReactorThread, WAIT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    ConnectionMade,
    DataReceived,
    ResumeProducing,
    Timer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Abort,
    Lose,
}

const SITES: [Site; 4] = [Site::ConnectionMade, Site::DataReceived, Site::ResumeProducing, Site::Timer];
const CLOSES: [Close; 2] = [Close::Abort, Close::Lose];

/// `(site, first, second, reason, nested)` from `connection_lost`.
type Report = (Site, Close, Close, DisconnectReason, bool);

struct Closer {
    site: Site,
    pair: (Close, Close),
    /// Callbacks of this protocol on the stack.
    depth: Rc<Cell<u32>>,
    lost: Sender<Report>,
    /// Told when this protocol is paused (its buffer went above the high mark).
    paused: Sender<()>,
}

impl Closer {
    fn enter(&self) {
        self.depth.set(self.depth.get() + 1);
    }

    fn leave(&self) {
        self.depth.set(self.depth.get() - 1);
    }

    fn close_if(&self, cx: &mut Ctx<'_>, here: Site) {
        if self.site != here {
            return;
        }
        for close in [self.pair.0, self.pair.1] {
            match close {
                Close::Abort => cx.transport().abort_connection(),
                Close::Lose => cx.transport().lose_connection(),
            }
        }
    }
}

impl Protocol for Closer {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.enter();
        match self.site {
            Site::Timer => {
                cx.set_timer(Duration::from_millis(1));
            }
            // Above the high mark; resume_producing comes once the client has read.
            Site::ResumeProducing => {
                // Write until the buffer is above the high mark (the kernel takes what it can
                // first; the client reads nothing until told of the pause); bounded, as a
                // loopback socket never takes 256 MiB.
                let chunk = vec![b'r'; 1 << 20];
                for _ in 0..256 {
                    if cx.transport().write(&chunk) {
                        break;
                    }
                }
            }
            _ => {}
        }
        self.close_if(cx, Site::ConnectionMade);
        self.leave();
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, _data: &[u8]) {
        self.enter();
        self.close_if(cx, Site::DataReceived);
        self.leave();
    }

    fn timer_fired(&mut self, cx: &mut Ctx<'_>, _timer: TimerId) {
        self.enter();
        self.close_if(cx, Site::Timer);
        self.leave();
    }

    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().pause_reading();
        let _ = self.paused.send(());
    }

    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.enter();
        cx.transport().resume_reading();
        self.close_if(cx, Site::ResumeProducing);
        self.leave();
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let nested = self.depth.get() != 0;
        self.lost.send((self.site, self.pair.0, self.pair.1, reason, nested)).unwrap();
    }
}

/// Catalogue 28 (reentrancy_matrix): every ordered pair of {abort, lose}, called from
/// `connection_made`, `data_received`, `resume_producing` and a timer, over real sockets.
/// Pass: `connection_lost` exactly once, never while another callback of the same protocol is
/// on the stack; the reason is `Clean` only when both calls were `lose`; no double close (the
/// descriptor count comes back to its baseline).
#[test]
fn abort_and_lose_in_every_order_from_every_callback_end_once_and_never_nested() {
    let baseline = fd_count();
    let (tx, lost) = mpsc::channel();
    let (paused_tx, paused) = mpsc::channel();
    let (server, ports) = ReactorThread::start(move |r| {
        let mut ports: Vec<(Site, Close, Close, SocketAddr)> = Vec::new();
        for site in SITES {
            for first in CLOSES {
                for second in CLOSES {
                    let lost = tx.clone();
                    let paused = paused_tx.clone();
                    let port = r
                        .listen_tcp(localhost(), move |_| {
                            Some(Closer {
                                site,
                                pair: (first, second),
                                depth: Rc::default(),
                                lost: lost.clone(),
                                paused: paused.clone(),
                            })
                        })
                        .unwrap();
                    ports.push((site, first, second, port.local_addr().inet().unwrap()));
                }
            }
        }
        ports
    });
    for &(site, first, second, addr) in &ports {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        if site == Site::DataReceived {
            c.write_all(b"go").unwrap();
        }
        if site == Site::ResumeProducing {
            // Read nothing until the writer is paused, so the kernel cannot keep taking it all.
            recv(&paused, "the writer was paused above the high mark");
        }
        expect_closed(&mut c, "the closed connection");
        let report = recv(&lost, "connection_lost");
        let expected = if (first, second) == (Close::Lose, Close::Lose) {
            DisconnectReason::Clean
        } else {
            DisconnectReason::Aborted
        };
        assert_eq!(report, (site, first, second, expected, false));
    }
    server.stop();
    assert!(lost.try_recv().is_err(), "a connection_lost was delivered twice");
    wait_for("descriptors back to the baseline", || fd_count() <= baseline);
    println!("reentrancy_matrix: {} cases, each lost once, none nested; fds back to {baseline}", ports.len());
}
