//! [`FileSender`]: a pull producer that streams any `impl Read` to a transport.

use std::fmt;
use std::io::{self, Read};

use bytes::Bytes;

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
    /// Exactly this many bytes are to be sent ([`limit`](FileSender::limit)).
    limit: Option<u64>,
    transform: Option<Transform>,
    done: Option<Done>,
}

/// Writes one chunk in place of `write_bytes` ([`FileSender::transform`]).
type Transform = Box<dyn FnMut(&mut Ctx<'_>, Bytes)>;

impl<R> fmt::Debug for FileSender<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSender")
            .field("chunk", &self.chunk)
            .field("sent", &self.sent)
            .field("limit", &self.limit)
            .field("transform", &self.transform.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: Read + 'static> FileSender<R> {
    /// A sender for `reader`, in chunks of [`DEFAULT_CHUNK_SIZE`].
    pub fn new(reader: R) -> Self {
        FileSender { reader, chunk: DEFAULT_CHUNK_SIZE, sent: 0, limit: None, transform: None, done: None }
    }

    /// Sets the chunk size (at least 1 byte).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk = bytes.max(1);
        self
    }

    /// Sends exactly `bytes` bytes: no more is read from the reader, and the transfer ends as
    /// soon as the last of them is written (without waiting for another drain). A reader that
    /// ends sooner fails the transfer with [`io::ErrorKind::UnexpectedEof`], since whatever
    /// framing promised that length (an HTTP `Content-Length`) cannot be kept.
    pub fn limit(mut self, bytes: u64) -> Self {
        self.limit = Some(bytes);
        self
    }

    /// Writes each chunk with `write` instead of `write_bytes`: Twisted's `transform`
    /// argument to `beginFileTransfer`, except that the function writes the chunk itself, so a
    /// framing (an HTTP chunk's size line and CRLF) goes around the data without copying it.
    pub fn transform(mut self, write: impl FnMut(&mut Ctx<'_>, Bytes) + 'static) -> Self {
        self.transform = Some(Box::new(write));
        self
    }

    /// Sets the callback run once when the transfer ends: `Ok` with the bytes sent when the
    /// reader ended (or the [`limit`](FileSender::limit) was reached), the read error, or
    /// [`io::ErrorKind::ConnectionAborted`] if the connection went away first. The sender has
    /// unregistered itself before it runs, so the callback may register another producer.
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
        let want = match self.limit {
            Some(limit) => usize::try_from(limit - self.sent).map_or(self.chunk, |left| left.min(self.chunk)),
            None => self.chunk,
        };
        if want == 0 {
            let sent = self.sent;
            return self.finish(cx, Ok(sent));
        }
        let mut buf = vec![0; want];
        let n = loop {
            match self.reader.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.finish(cx, Err(e)),
            }
        };
        if n == 0 {
            let result = match self.limit {
                Some(limit) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the reader ended after {} of {limit} bytes", self.sent),
                )),
                None => Ok(self.sent),
            };
            return self.finish(cx, result);
        }
        buf.truncate(n);
        self.sent += n as u64;
        let chunk = Bytes::from(buf);
        match &mut self.transform {
            Some(write) => write(cx, chunk),
            None => {
                cx.transport().write_bytes(chunk);
            }
        }
        if self.limit == Some(self.sent) {
            let sent = self.sent;
            self.finish(cx, Ok(sent));
        }
    }

    fn stop_producing(&mut self, cx: &mut Ctx<'_>) {
        if let Some(done) = self.done.take() {
            done(cx, Err(io::ErrorKind::ConnectionAborted.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io::{self, Read};
    use std::rc::Rc;

    use torsion_reactor::testing::Harness;
    use torsion_reactor::{Ctx, Protocol};

    use super::FileSender;

    type Outcome = Rc<RefCell<Option<io::Result<u64>>>>;

    /// Registers the sender `make` builds when connected; keeps the outcome.
    struct Send<F>(Option<F>, Outcome);

    impl<F: FnOnce(Outcome) -> FileSender<Box<dyn Read>> + 'static> Protocol for Send<F> {
        fn connection_made(&mut self, cx: &mut Ctx<'_>) {
            let sender = (self.0.take().unwrap())(self.1.clone());
            cx.transport().register_producer(sender, false).unwrap();
        }
        fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
    }

    fn run(make: impl FnOnce(Outcome) -> FileSender<Box<dyn Read>> + 'static) -> (Vec<u8>, io::Result<u64>) {
        let outcome: Outcome = Rc::default();
        let mut h = Harness::new();
        let mut make = Some(make);
        let o = outcome.clone();
        let id = h.accept(&mut move |_| Some(Send(make.take(), o.clone()))).unwrap();
        let mut written = Vec::new();
        for _ in 0..1000 {
            written.extend(h.take_written(id));
            if outcome.borrow().is_some() {
                break;
            }
        }
        written.extend(h.take_written(id));
        let result = outcome.borrow_mut().take().expect("the transfer ended");
        (written, result)
    }

    fn sender(data: &'static [u8], outcome: &Outcome) -> FileSender<Box<dyn Read>> {
        let o = outcome.clone();
        FileSender::new(Box::new(data) as Box<dyn Read>)
            .chunk_size(4)
            .on_done(move |_, r| *o.borrow_mut() = Some(r))
    }

    #[test]
    fn a_reader_is_sent_whole_in_chunks_and_the_count_reported() {
        let (written, result) = run(|o| sender(b"hello, world", &o));
        assert_eq!(written, b"hello, world");
        assert_eq!(result.unwrap(), 12);
    }

    #[test]
    fn a_limit_sends_exactly_that_many_bytes_and_ends_at_the_last_one() {
        // 10 of 12 bytes: the third chunk is cut to 2 and the transfer ends with it.
        let (written, result) = run(|o| sender(b"hello, world", &o).limit(10));
        assert_eq!(written, b"hello, wor");
        assert_eq!(result.unwrap(), 10);
        let (written, result) = run(|o| sender(b"hello, world", &o).limit(0));
        assert_eq!(written, b"");
        assert_eq!(result.unwrap(), 0);
    }

    #[test]
    fn a_reader_shorter_than_its_limit_fails_with_unexpected_eof() {
        let (written, result) = run(|o| sender(b"short", &o).limit(8));
        assert_eq!(written, b"short");
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_transform_writes_each_chunk_inside_its_own_framing() {
        let (written, result) = run(|o| {
            sender(b"abcdefghij", &o).transform(|cx, data| {
                let mut t = cx.transport();
                t.write(b"[");
                t.write_bytes(data);
                t.write(b"]");
            })
        });
        assert_eq!(written, b"[abcd][efgh][ij]");
        assert_eq!(result.unwrap(), 10);
    }

    #[test]
    fn a_read_error_ends_the_transfer_with_that_error() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        let (written, result) = run(|o| {
            FileSender::new(Box::new(Failing(2)) as Box<dyn Read>)
                .on_done(move |_, r| *o.borrow_mut() = Some(r))
        });
        assert_eq!(written, b"xx");
        assert_eq!(result.unwrap_err().to_string(), "disk on fire");
    }
}
