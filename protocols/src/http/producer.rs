//! The pull producers of the HTTP connection: [`BodyProducer`] streams a [`Body::Reader`]
//! (framed by length or chunked), [`Hold`] keeps a closing connection open for a response in
//! flight during a graceful stop.
//!
//! [`Body::Reader`]: super::Body::Reader

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::{Ctx, DisconnectReason, Producer};

use super::conn::Shared;

/// Bytes read from a body reader per `resume_producing`.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

pub(crate) struct BodyProducer {
    pub reader: Box<dyn Read>,
    pub chunked: bool,
    /// Bytes still owed under `Content-Length` (None: chunked or close-delimited).
    pub remaining: Option<u64>,
    pub shared: Rc<RefCell<Shared>>,
}

impl BodyProducer {
    fn finish(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().unregister_producer();
        let wake = cx.set_timer(Duration::ZERO);
        let mut shared = self.shared.borrow_mut();
        shared.body_done = true;
        shared.wakes.push(wake);
    }
}

impl Producer for BodyProducer {
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        let want = match self.remaining {
            Some(n) => READ_CHUNK.min(usize::try_from(n).unwrap_or(usize::MAX)),
            None => READ_CHUNK,
        };
        if want == 0 {
            return self.finish(cx);
        }
        // Room for the chunk header and trailer around the data.
        let offset = if self.chunked { 18 } else { 0 };
        let mut buf = vec![0u8; offset + want + 2];
        let n = loop {
            match self.reader.read(&mut buf[offset..offset + want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The framing cannot be finished honestly: abort, so the client sees a cut.
                    tracing::warn!(error = %e, "reading a response body failed");
                    cx.transport().abort_connection_with(DisconnectReason::Lost(e));
                    return self.finish(cx);
                }
            }
        };
        if n == 0 {
            if self.remaining.is_some_and(|r| r > 0) {
                tracing::warn!("a response body reader ended before its Content-Length");
                cx.transport().abort_connection();
            } else if self.chunked {
                cx.transport().write(b"0\r\n\r\n");
            }
            return self.finish(cx);
        }
        if let Some(r) = &mut self.remaining {
            *r -= n as u64;
        }
        let data = if self.chunked {
            let size = format!("{n:x}\r\n");
            let start = offset - size.len();
            buf[start..offset].copy_from_slice(size.as_bytes());
            buf[offset + n..offset + n + 2].copy_from_slice(b"\r\n");
            buf.truncate(offset + n + 2);
            bytes::Bytes::from(buf).slice(start..)
        } else {
            buf.truncate(n);
            bytes::Bytes::from(buf)
        };
        cx.transport().write_bytes(data);
        if self.remaining == Some(0) {
            self.finish(cx);
        }
    }
}

/// Registered (as a pull producer) on a connection with a response in flight when a graceful
/// stop begins: the reactor's close then waits for it to be unregistered, which the connection
/// does once its last response is out. It produces nothing itself.
pub(crate) struct Hold;

impl Producer for Hold {
    fn resume_producing(&mut self, _cx: &mut Ctx<'_>) {}
}
