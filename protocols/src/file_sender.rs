//! [`FileSender`]: a pull producer that streams any `impl Read` to a transport.

use std::fmt;
use std::io::{self, Read};

use torsion_reactor::{Ctx, Producer};

/// Default chunk size (Twisted's `FileSender.CHUNK_SIZE`).
pub const DEFAULT_CHUNK_SIZE: usize = 16 * 1024;

/// Called once when the transfer ends: the bytes sent, or the read error.
type Done = Box<dyn FnOnce(&mut Ctx<'_>, io::Result<u64>)>;

/// Streams a reader to a connection as a pull producer, one chunk per `resume_producing`
/// (Twisted's `basic.FileSender`). At the end of the reader it unregisters itself and calls
/// the completion callback; on a read error it unregisters and reports the error; if the
/// connection goes away first it stops and reports `ConnectionAborted`.
///
/// ```no_run
/// use torsion_protocols::FileSender;
/// use torsion_reactor::{Ctx, Protocol};
///
/// struct SendFile;
///
/// impl Protocol for SendFile {
///     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
///         let file = std::fs::File::open("/etc/hostname").expect("open");
///         let sender = FileSender::new(file).on_done(|cx, result| {
///             tracing::info!(?result, "transfer finished");
///             cx.transport().lose_connection();
///         });
///         cx.transport().register_producer(sender, false).expect("no other producer");
///     }
///     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
/// }
/// ```
pub struct FileSender<R> {
    reader: R,
    chunk: usize,
    sent: u64,
    done: Option<Done>,
}

impl<R> fmt::Debug for FileSender<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSender")
            .field("chunk", &self.chunk)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<R: Read + 'static> FileSender<R> {
    /// A sender for `reader`, in chunks of [`DEFAULT_CHUNK_SIZE`].
    pub fn new(reader: R) -> Self {
        FileSender { reader, chunk: DEFAULT_CHUNK_SIZE, sent: 0, done: None }
    }

    /// Sets the chunk size (at least 1 byte).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk = bytes.max(1);
        self
    }

    /// Sets the callback run once when the transfer ends.
    pub fn on_done(mut self, done: impl FnOnce(&mut Ctx<'_>, io::Result<u64>) + 'static) -> Self {
        self.done = Some(Box::new(done));
        self
    }

    fn finish(&mut self, cx: &mut Ctx<'_>, result: io::Result<u64>) {
        cx.transport().unregister_producer();
        if let Some(done) = self.done.take() {
            done(cx, result);
        }
    }
}

impl<R: Read + 'static> Producer for FileSender<R> {
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        let mut buf = vec![0; self.chunk];
        let n = loop {
            match self.reader.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.finish(cx, Err(e)),
            }
        };
        if n == 0 {
            let sent = self.sent;
            return self.finish(cx, Ok(sent));
        }
        buf.truncate(n);
        self.sent += n as u64;
        cx.transport().write_bytes(buf.into());
    }

    fn stop_producing(&mut self, cx: &mut Ctx<'_>) {
        if let Some(done) = self.done.take() {
            done(cx, Err(io::ErrorKind::ConnectionAborted.into()));
        }
    }
}
