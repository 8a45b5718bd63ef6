//! The pull producers of the HTTP connection: [`body_sender`] streams a [`Body::Reader`] with
//! a [`FileSender`] (framed by length or chunked), [`Hold`] keeps a closing connection open
//! for a response in flight during a graceful stop.
//!
//! [`Body::Reader`]: super::Body::Reader

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::{Ctx, DisconnectReason, Producer};

use super::conn::{BodyProducerParts, Shared};
use super::response::chunk_size_line;
use crate::FileSender;

/// Bytes read from a body reader per `resume_producing`.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// The pull producer for a [`Body::Reader`](super::Body::Reader): a [`FileSender`] of the
/// reader, limited to the `Content-Length` when there is one, writing each chunk inside HTTP
/// chunked framing when the response is chunked. When it ends the connection is woken to send
/// the next response; a body that cannot be finished honestly (a read error, a reader shorter
/// than its `Content-Length`) aborts the connection so the client sees the cut.
pub(crate) fn body_sender(
    parts: BodyProducerParts,
    shared: Rc<RefCell<Shared>>,
) -> FileSender<Box<dyn Read>> {
    let BodyProducerParts { reader, chunked, remaining } = parts;
    let mut sender = FileSender::new(reader).chunk_size(READ_CHUNK);
    if let Some(length) = remaining {
        sender = sender.limit(length);
    }
    if chunked {
        sender = sender.transform(|cx, data| {
            let (line, len) = chunk_size_line(data.len());
            let mut t = cx.transport();
            t.write(&line[..len]);
            t.write_bytes(data);
            t.write(b"\r\n");
        });
    }
    sender.on_done(move |cx, result| {
        match result {
            Ok(_) if chunked => {
                cx.transport().write(b"0\r\n\r\n");
            }
            Ok(_) => {}
            // The connection is gone: no next response to wake.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => return,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                tracing::warn!(error = %e, "a response body reader ended before its Content-Length");
                cx.transport().abort_connection();
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading a response body failed");
                cx.transport().abort_connection_with(DisconnectReason::Lost(e));
            }
        }
        let wake = cx.set_timer(Duration::ZERO);
        let mut shared = shared.borrow_mut();
        shared.body_done = true;
        shared.wakes.push(wake);
    })
}

/// Registered (as a pull producer) on a connection with a response in flight when a graceful
/// stop begins: the reactor's close then waits for it to be unregistered, which the connection
/// does once its last response is out. It produces nothing itself.
pub(crate) struct Hold;

impl Producer for Hold {
    fn resume_producing(&mut self, _cx: &mut Ctx<'_>) {}
}
