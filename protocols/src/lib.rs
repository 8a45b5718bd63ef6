//! Reusable protocols for torsion. This crate grows framing (lines, length prefixes,
//! netstrings), policies and wire toys in its own issue; today it holds [`Echo`] and the pull
//! producer [`FileSender`].
//!
//! ```
//! use torsion_protocols::Echo;
//! use torsion_reactor::Protocol;
//!
//! let _protocol: Box<dyn Protocol> = Box::new(Echo);
//! ```

mod file_sender;
pub mod framing;
pub mod policies;
pub mod wire;

pub use file_sender::{FileSender, DEFAULT_CHUNK_SIZE};
pub use framing::{
    FrameError, IntNStringReceiver, LineCtx, LineHandler, LineReceiver, NetstringReceiver, StringCtx,
    StringHandler,
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
