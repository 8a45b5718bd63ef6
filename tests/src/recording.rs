//! Deterministic bytes (`pattern`) and a recording protocol (`Recorder`).

use std::cell::RefCell;
use std::rc::Rc;

use torsion_reactor::{Ctx, DisconnectReason, Protocol};

/// Deterministic pseudo-random bytes (xorshift64*), so failures are reproducible.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One lifecycle event seen by a [`Recorder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `connection_made`.
    Made,
    /// `data_received` with these bytes.
    Data(Vec<u8>),
    /// `eof_received`.
    Eof,
    /// `connection_lost` with its reason.
    Lost(DisconnectReason),
}

/// A shared log of events.
pub type Log = Rc<RefCell<Vec<Event>>>;

/// A protocol that records every callback and echoes data back.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Where events go.
    pub log: Log,
}

impl Protocol for Recorder {
    fn connection_made(&mut self, _cx: &mut Ctx<'_>) {
        self.log.borrow_mut().push(Event::Made);
    }

    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.log.borrow_mut().push(Event::Data(data.to_vec()));
        cx.transport().write(data);
    }

    fn eof_received(&mut self, _cx: &mut Ctx<'_>) -> bool {
        self.log.borrow_mut().push(Event::Eof);
        false
    }

    fn connection_lost(&mut self, _cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.log.borrow_mut().push(Event::Lost(reason));
    }
}
