//! Reusable protocols for torsion: Twisted's `protocols/basic.py`, `policies.py` and `wire.py`,
//! with every limit on by default.
//!
//! * [`framing`]: pure decoders for lines, 8/16/32-bit length prefixes and netstrings, and the
//!   [`LineReceiver`] / [`IntNStringReceiver`] / [`NetstringReceiver`] adapters that turn a
//!   handler into a [`Protocol`] (composition, not inheritance);
//!   limits, raw mode, pausing and a per-frame deadline included. Errors are [`FrameError`].
//! * [`policies`]: wrappers around any factory or protocol: idle timeouts, connection limits
//!   (total and per peer IP) and token-bucket throttling.
//! * [`wire`]: the toys: [`Echo`], Discard, Chargen, Daytime, QOTD.
//! * [`FileSender`]: a pull producer that streams any `impl Read` in 16 KiB chunks (settable),
//!   optionally limited to a length and framed by a `transform` (HTTP uses it for file bodies).
//! * [`http`]: an HTTP/1.1 server protocol (strict, pipelined, flow-controlled).
//!
//! A line-echo protocol is a handler and one line of glue. [`LineReceiver`] ends lines at
//! `\r\n` only, as Twisted does; for people typing into `nc` (which sends a bare `\n`) pick
//! [`LineEndings::Lenient`]:
//!
//! ```
//! use torsion_protocols::{LineCtx, LineEndings, LineHandler, LineReceiver};
//! use torsion_reactor::Protocol;
//!
//! struct Shout;
//!
//! impl LineHandler for Shout {
//!     fn line_received(&mut self, lx: &mut LineCtx<'_, '_>, line: &[u8]) {
//!         lx.send_line(&line.to_ascii_uppercase());
//!     }
//! }
//!
//! let _protocol: Box<dyn Protocol> = Box::new(LineReceiver::new(Shout));
//! let _for_netcat: Box<dyn Protocol> =
//!     Box::new(LineReceiver::new(Shout).with_line_endings(LineEndings::Lenient).with_max_length(100));
//! ```

mod file_sender;
pub mod framing;
pub mod http;
pub mod policies;
pub mod websocket;
pub mod wire;

pub use file_sender::{FileSender, DEFAULT_CHUNK_SIZE};
pub use framing::{
    FrameError, IntNStringReceiver, LineCtx, LineEndings, LineHandler, LineReceiver, NetstringReceiver,
    StringCtx, StringHandler,
};

use torsion_reactor::{Ctx, Protocol};

/// Writes back every byte it receives (Twisted's `wire.Echo`). On the peer's FIN it finishes
/// writing everything and then closes, so no byte that arrived with the FIN is lost.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}
