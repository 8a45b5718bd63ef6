//! The contract between the reactor and user code: [`Protocol`], [`Factory`], [`ClientFactory`]
//! and [`DisconnectReason`].
//!
//! # Call order
//! Per connection: `connection_made` once, before anything else; then any number of
//! `data_received` (and `timer_fired`, `pause_producing`/`resume_producing`); then at most one
//! `eof_received` when the peer half-closes; then `connection_lost(reason)` exactly once, last.
//! Nothing is called on a protocol after `connection_lost`, and the protocol is dropped.
//!
//! # Re-entrancy
//! No method of [`Ctx`] or of a [`Transport`](crate::Transport) runs user code synchronously.
//! Writing, closing, pausing, connecting or writing to another connection only records the
//! intent or queues data; any callback that follows (`connection_lost` after a close,
//! `connection_made` of an outbound connection, producer pause/resume, timer firings) is
//! dispatched after the current callback returns. Shared `Rc<RefCell<_>>` state held by a
//! factory and its protocols is therefore never borrowed twice.
//!
//! # Contexts
//! Protocol and producer callbacks get a [`Ctx`]: `cx.transport()` is their connection.
//! Callbacks that belong to no connection (a closure given to `call_later`, `looping_call`,
//! `call_soon` or `call_from_thread`; `client_connection_failed`; a before-shutdown trigger) get
//! a [`LoopCtx`], which has everything a `Ctx` has except `transport()` and `set_timer`: they
//! reach connections by id with `transport_for`. (A `Ctx` dereferences to a `LoopCtx`.)
//!
//! # Dispatch
//! Every user callback (protocol, producer, factory, timer, thread call, shutdown trigger) runs
//! through one dispatcher that enters the connection's tracing span, catches a panic (see
//! Panics), and then runs the work the callback queued and flushes what it wrote, before the
//! next event is looked at.
//!
//! # Disconnects
//! A disconnect is an event, not an error: `connection_lost` receives a [`DisconnectReason`]
//! telling a clean close from a lost connection (with the I/O error), an abort, a timeout or a
//! panic. Setup calls (`listen_tcp`, `connect_tcp`) return `Result` with [`Error`].
//!
//! # Closing
//! `lose_connection` stops delivering input, flushes everything buffered, sends FIN and then
//! `connection_lost(Clean)` follows. Writes after `lose_connection` are ignored (except those of
//! a registered pull producer the close is waiting for; see Backpressure).
//! `abort_connection` drops the buffer and resets the connection (RST) at once:
//! `connection_lost(Aborted)`. Repeated close calls are no-ops.
//!
//! # Half-close
//! When the peer sends FIN, `eof_received` is called. Returning `false` (the default) finishes
//! writing everything buffered and then closes cleanly, so a reply to the last bytes is never
//! lost. Returning `true` keeps the write side open until the protocol calls `write_eof` or
//! `lose_connection`. When both halves are closed `connection_lost` follows, exactly once.
//!
//! # Backpressure
//! Each transport buffers writes in user space as a queue of chunks with watermarks (64 KiB
//! high, 16 KiB low by default; `set_write_buffer_limits` changes them and refuses low > high).
//! Every path that adds bytes (`write`, `write_bytes`, `write_sequence`, and writes to another
//! connection through `cx.transport_for`) runs the same check, and `write` returns whether the
//! buffer is now above the high mark, for writers that loop.
//!
//! The transport's *producer* is paused and resumed around the marks, Twisted's
//! producer/consumer contract with asyncio's hysteresis:
//! - a push producer gets `pause_producing` exactly once when the buffer goes strictly above
//!   high, and `resume_producing` exactly once when it drains to at or below low; they
//!   alternate strictly;
//! - by default the connection's own protocol is its producer, and [`Protocol::pause_producing`]
//!   and [`Protocol::resume_producing`] pause and resume reading, so an echo server is
//!   backpressured for free;
//! - `register_producer(producer, streaming)` registers another connection (a [`ConnId`]: its
//!   reading is paused, the proxy case) or a [`Producer`] object instead; a second registration
//!   is an error, and registering on a closed transport calls `stop_producing` (after the
//!   current callback);
//! - a push producer *object* registered while the buffer is not above high gets one
//!   `resume_producing` right after the registering callback (its start: it has no other way to
//!   get a `Ctx` to write with); registered above high it gets `pause_producing` instead, and its
//!   first `resume_producing` at the low mark. A connection registered as producer (a
//!   [`ConnId`]) is not resumed at registration: its reading is left as it is;
//! - a pull producer (`streaming == false`) gets `resume_producing` after registering and after
//!   each drain to the low mark, however the bytes left (a large write that went straight to the
//!   socket counts as a drain), writes one chunk each time, and is never paused;
//! - `stop_producing` is called exactly once if the connection is lost while a producer is
//!   registered; `unregister_producer` never calls it;
//! - `lose_connection` with a pull producer registered waits for `unregister_producer`, and
//!   meanwhile the producer's writes are still taken (that is what it waits for: a
//!   `FileSender` registered and then `lose_connection` sends the whole file, then FIN); with a
//!   push producer it calls `stop_producing` once the buffer has drained, and writes made after
//!   `lose_connection` are ignored as usual; then FIN;
//! - `pause_reading`/`resume_reading` are idempotent; pausing in `connection_made` is honoured;
//!   resuming delivers data already in the kernel (and a FIN that came while paused), and does
//!   not restart reading on a closing connection;
//! - an optional hard cap (`set_max_write_buffer`, off by default) aborts a connection whose
//!   buffer exceeds it, with [`DisconnectReason::BufferOverflow`].
//!
//! [`ConnId`]: crate::ConnId

//! # Panics
//! A panic in any callback is caught and logged (as `error`, with the connection's id and peer);
//! the connection it belongs to is aborted and its protocol receives `connection_lost(Panicked)`
//! (unless that is the callback that panicked). A panic in a callback that belongs to no
//! connection is logged only. Other connections and the loop carry on. A panic in a
//! [`DatagramProtocol`](crate::DatagramProtocol) callback is logged and the port keeps
//! serving: there is no connection to abort (see [`crate::datagram`]).
//!
//! # TLS
//! A TLS connection ([`Reactor::listen_tls`](crate::Reactor::listen_tls),
//! [`Reactor::connect_tls`](crate::Reactor::connect_tls), [`Transport::start_tls`](crate::Transport::start_tls))
//! keeps every rule above; TLS shows only through [`Transport::tls`](crate::Transport::tls) and
//! these (details and tests: [`crate::tls`]):
//! - `connection_made` runs after the handshake completed (the protocol is built then, too);
//!   after `start_tls`, [`Protocol::handshake_completed`] runs instead. A failed handshake builds
//!   no protocol: [`Factory::handshake_failed`] or `client_connection_failed` with
//!   [`Error::Tls`], the rustls error inside, logged once. The handshake has a
//!   deadline (10 s, settable).
//! - Watermarks, `write`'s above-high answer and producers count the plaintext buffered plus
//!   the ciphertext not yet sent.
//! - The peer's `close_notify` is `eof_received`, as a FIN is for TCP (return `true` to keep
//!   writing: TLS 1.3 half-close; TLS 1.2 peers usually close their side at once). A TCP EOF
//!   without `close_notify` is `connection_lost(DisconnectReason::Tls(TlsFailure::Truncated))`.
//! - `lose_connection` flushes, sends `close_notify`, then FIN, without waiting for the peer's
//!   `close_notify`; if that has not finished within the close timeout (30 s, settable) the
//!   connection is aborted with `TimedOut`. `abort_connection` sends no `close_notify`.
//!
//! # Datagrams
//! UDP has its own contract, [`DatagramProtocol`](crate::DatagramProtocol) (`started`,
//! `datagram_received`, `error_received`, `writable`, `timer_fired`, `stopped`), and no write
//! buffer; it is written down in [`crate::datagram`].

use std::io;

use torsion_transports::Address;

use crate::ctx::{Ctx, LoopCtx};
use crate::timers::TimerId;
use crate::Error;

/// Why a connection ended. Delivered once, to `connection_lost`.
///
/// Reasons compare by value (`Lost` errors by their kind and OS error code, not their text),
/// and clone (a `Lost` error is rebuilt from its OS code, or its kind and message).
#[derive(Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Closed cleanly: our `lose_connection` finished, or the peer closed and we finished.
    Clean,
    /// Lost: the peer reset the connection or I/O failed.
    Lost(io::Error),
    /// Aborted by `abort_connection`, or at the end of a graceful shutdown's deadline.
    Aborted,
    /// Closed because a timeout expired.
    TimedOut,
    /// A callback panicked; the message is the panic's payload.
    Panicked(String),
    /// The protocol closed the connection because the peer broke a limit (a line or frame too
    /// long, too many connections); the text says which.
    LimitExceeded(String),
    /// The protocol closed the connection because the peer sent malformed input; the text says
    /// what was wrong.
    ProtocolError(String),
    /// The write buffer exceeded the hard cap set with
    /// [`Transport::set_max_write_buffer`](crate::Transport::set_max_write_buffer); the
    /// connection was aborted.
    BufferOverflow,
    /// TLS ended the connection: a failed handshake (typed rustls error, timeout, the peer
    /// leaving mid-handshake), a TLS error later, or truncation (a TCP EOF without
    /// `close_notify`, which is not a clean close).
    Tls(torsion_transports::TlsFailure),
}

impl Clone for DisconnectReason {
    fn clone(&self) -> Self {
        match self {
            DisconnectReason::Clean => DisconnectReason::Clean,
            DisconnectReason::Lost(e) => DisconnectReason::Lost(match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            }),
            DisconnectReason::Aborted => DisconnectReason::Aborted,
            DisconnectReason::TimedOut => DisconnectReason::TimedOut,
            DisconnectReason::Panicked(m) => DisconnectReason::Panicked(m.clone()),
            DisconnectReason::LimitExceeded(m) => DisconnectReason::LimitExceeded(m.clone()),
            DisconnectReason::ProtocolError(m) => DisconnectReason::ProtocolError(m.clone()),
            DisconnectReason::BufferOverflow => DisconnectReason::BufferOverflow,
            DisconnectReason::Tls(f) => DisconnectReason::Tls(f.clone()),
        }
    }
}

impl PartialEq for DisconnectReason {
    fn eq(&self, other: &Self) -> bool {
        use DisconnectReason::*;
        match (self, other) {
            (Lost(a), Lost(b)) => a.kind() == b.kind() && a.raw_os_error() == b.raw_os_error(),
            (Panicked(a), Panicked(b))
            | (LimitExceeded(a), LimitExceeded(b))
            | (ProtocolError(a), ProtocolError(b)) => a == b,
            (Tls(a), Tls(b)) => a == b,
            (Clean, Clean) | (Aborted, Aborted) | (TimedOut, TimedOut) | (BufferOverflow, BufferOverflow) => {
                true
            }
            _ => false,
        }
    }
}

impl Eq for DisconnectReason {}

impl DisconnectReason {
    /// A `Lost` reason with an error of this kind (for comparisons in tests).
    pub fn lost(kind: io::ErrorKind) -> DisconnectReason {
        DisconnectReason::Lost(kind.into())
    }

    /// True for [`DisconnectReason::Lost`].
    pub fn is_lost(&self) -> bool {
        matches!(self, DisconnectReason::Lost(_))
    }

    /// The reason an I/O error from a connection's socket stands for: a TLS failure it carries
    /// ([`DisconnectReason::Tls`]), else [`DisconnectReason::Lost`].
    pub fn from_io(e: io::Error) -> DisconnectReason {
        match torsion_transports::TlsFailure::from_io(&e) {
            Some(failure) => DisconnectReason::Tls(failure.clone()),
            None => DisconnectReason::Lost(e),
        }
    }

    /// The TLS failure, for [`DisconnectReason::Tls`].
    pub fn tls_failure(&self) -> Option<&torsion_transports::TlsFailure> {
        match self {
            DisconnectReason::Tls(f) => Some(f),
            _ => None,
        }
    }

    /// True for [`DisconnectReason::Clean`].
    pub fn is_clean(&self) -> bool {
        matches!(self, DisconnectReason::Clean)
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::Clean => f.write_str("connection closed cleanly"),
            DisconnectReason::Lost(e) => write!(f, "connection lost: {e}"),
            DisconnectReason::Aborted => f.write_str("connection aborted"),
            DisconnectReason::TimedOut => f.write_str("connection timed out"),
            DisconnectReason::Panicked(msg) => write!(f, "a callback panicked: {msg}"),
            DisconnectReason::LimitExceeded(what) => write!(f, "limit exceeded: {what}"),
            DisconnectReason::ProtocolError(what) => write!(f, "protocol error: {what}"),
            DisconnectReason::BufferOverflow => f.write_str("write buffer exceeded its hard cap"),
            DisconnectReason::Tls(failure) => write!(f, "{failure}"),
        }
    }
}

/// An event-driven connection handler, built per connection by a [`Factory`] or
/// [`ClientFactory`]. Every callback gets a [`Ctx`]: `cx.transport()` is this connection.
pub trait Protocol: 'static {
    /// The connection is established. Called once, before any other callback.
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        let _ = cx;
    }

    /// Bytes arrived. `data` is a slice of the reactor's shared read buffer, valid only during
    /// the call: copy what you keep. Any split of the stream is possible, down to one byte.
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]);

    /// The peer half-closed (sent FIN). Return `false` (the default) to finish writing and close
    /// cleanly, `true` to keep the write side open.
    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        let _ = cx;
        false
    }

    /// The connection is over. Called exactly once, last.
    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        let _ = (cx, reason);
    }

    /// A timer made with [`Ctx::set_timer`] fired.
    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        let _ = (cx, timer);
    }

    /// The transport's write buffer went above its high watermark. Default: pause reading.
    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().pause_reading();
    }

    /// The transport's write buffer drained to its low watermark. Default: resume reading.
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        cx.transport().resume_reading();
    }

    /// A TLS handshake begun by [`Transport::start_tls`](crate::Transport::start_tls) on this
    /// live connection completed; the TLS accessors (`cx.transport().tls()`) now answer. (A
    /// connection made by `listen_tls` / `connect_tls` gets `connection_made` after its
    /// handshake instead, and never this.) Default: nothing.
    fn handshake_completed(&mut self, cx: &mut Ctx<'_>) {
        let _ = cx;
    }
}

/// A protocol that wraps another (timeouts, limits, throttling, a test probe) implements this
/// instead of [`Protocol`]: every callback it does not override is forwarded to
/// [`inner`](Wrapper::inner), so a wrapper cannot drop one by forgetting it (a hand-written
/// `Protocol` impl would silently run the trait's default instead). Each `on_*` method is the
/// wrapper's version of the `Protocol` method of the same name.
///
/// ```
/// use torsion_reactor::testing::Harness;
/// use torsion_reactor::{Ctx, Protocol, Wrapper};
///
/// /// Counts bytes on the way in; everything else goes straight through.
/// struct Counting<P> { inner: P, bytes: usize }
///
/// impl<P: Protocol> Wrapper for Counting<P> {
///     type Inner = P;
///     fn inner(&mut self) -> &mut P {
///         &mut self.inner
///     }
///     fn on_data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
///         self.bytes += data.len();
///         self.inner.data_received(cx, data);
///     }
/// }
///
/// let mut h = Harness::new();
/// let id = h.accept(&mut |_| Some(Counting { inner: torsion_reactor::testing::Upper, bytes: 0 })).unwrap();
/// h.feed(id, b"abc");
/// assert_eq!(h.take_written(id), b"ABC");
/// ```
pub trait Wrapper: 'static {
    /// The wrapped protocol.
    type Inner: Protocol + ?Sized;

    /// The wrapped protocol, for forwarding.
    fn inner(&mut self) -> &mut Self::Inner;

    /// [`Protocol::connection_made`]; default: forward.
    fn on_connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.inner().connection_made(cx);
    }

    /// [`Protocol::data_received`]; default: forward.
    fn on_data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.inner().data_received(cx, data);
    }

    /// [`Protocol::eof_received`]; default: forward.
    fn on_eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        self.inner().eof_received(cx)
    }

    /// [`Protocol::connection_lost`]; default: forward.
    fn on_connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.inner().connection_lost(cx, reason);
    }

    /// [`Protocol::timer_fired`]; default: forward.
    fn on_timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        self.inner().timer_fired(cx, timer);
    }

    /// [`Protocol::pause_producing`]; default: forward.
    fn on_pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.inner().pause_producing(cx);
    }

    /// [`Protocol::resume_producing`]; default: forward.
    fn on_resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.inner().resume_producing(cx);
    }

    /// [`Protocol::handshake_completed`]; default: forward.
    fn on_handshake_completed(&mut self, cx: &mut Ctx<'_>) {
        self.inner().handshake_completed(cx);
    }
}

impl<W: Wrapper> Protocol for W {
    fn connection_made(&mut self, cx: &mut Ctx<'_>) {
        self.on_connection_made(cx);
    }
    fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        self.on_data_received(cx, data);
    }
    fn eof_received(&mut self, cx: &mut Ctx<'_>) -> bool {
        self.on_eof_received(cx)
    }
    fn connection_lost(&mut self, cx: &mut Ctx<'_>, reason: DisconnectReason) {
        self.on_connection_lost(cx, reason);
    }
    fn timer_fired(&mut self, cx: &mut Ctx<'_>, timer: TimerId) {
        self.on_timer_fired(cx, timer);
    }
    fn handshake_completed(&mut self, cx: &mut Ctx<'_>) {
        self.on_handshake_completed(cx);
    }
    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        self.on_pause_producing(cx);
    }
    fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
        self.on_resume_producing(cx);
    }
}

/// A boxed protocol is a protocol (a pure forwarder), so wrappers can hold `P` by value and
/// still wrap the `Box<dyn Protocol>` a factory returns.
impl<P: Protocol + ?Sized> Wrapper for Box<P> {
    type Inner = P;
    fn inner(&mut self) -> &mut P {
        self
    }
}

/// A source of data for a connection, flow-controlled by that connection's write buffer
/// (Twisted's `IPushProducer` / `IPullProducer`). Register it with
/// [`Transport::register_producer`](crate::Transport::register_producer); its callbacks get a
/// [`Ctx`] whose `transport()` is the consuming connection.
///
/// A *push* (streaming) producer writes whenever it likes and gets `pause_producing` when the
/// buffer goes above its high watermark and `resume_producing` when it drains to the low one.
/// Registered below high, it gets one `resume_producing` at once: that is where it starts.
/// A *pull* producer gets `resume_producing` right after registering and after each drain, and
/// writes one chunk each time; it is never paused.
///
/// # A pull producer
/// One chunk per call; unregister (and close, if that is the plan) when done:
///
/// ```
/// use torsion_reactor::testing::Harness;
/// use torsion_reactor::{Ctx, Producer, Protocol};
///
/// struct Countdown { left: u32 }
///
/// impl Producer for Countdown {
///     fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
///         cx.transport().write(format!("{}\n", self.left).as_bytes());
///         if self.left == 0 {
///             cx.transport().unregister_producer();
///         } else {
///             self.left -= 1;
///         }
///     }
/// }
///
/// struct Launch;
/// impl Protocol for Launch {
///     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
///         cx.transport().register_producer(Countdown { left: 3 }, false).unwrap();
///         cx.transport().lose_connection(); // waits for the producer to unregister
///     }
///     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
/// }
///
/// let mut h = Harness::new();
/// let id = h.accept(&mut |_| Some(Launch)).unwrap();
/// assert_eq!(h.take_written(id), b"3\n2\n1\n0\n");
/// assert!(h.fin_sent(id));
/// ```
///
/// # A push producer
/// It writes until `write` reports the buffer above high, then waits for `resume_producing`:
///
/// ```
/// use torsion_reactor::testing::Harness;
/// use torsion_reactor::{Ctx, Producer, Protocol};
///
/// struct Flood { left: usize, paused: bool }
///
/// impl Producer for Flood {
///     fn resume_producing(&mut self, cx: &mut Ctx<'_>) {
///         self.paused = false;
///         while !self.paused && self.left > 0 {
///             self.left -= 1;
///             if cx.transport().write(&[b'x'; 1024]) {
///                 break; // above the high mark: pause_producing follows
///             }
///         }
///         if self.left == 0 {
///             cx.transport().unregister_producer();
///             cx.transport().lose_connection();
///         }
///     }
///     fn pause_producing(&mut self, _cx: &mut Ctx<'_>) {
///         self.paused = true;
///     }
/// }
///
/// struct Start;
/// impl Protocol for Start {
///     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
///         // Below the high mark: the producer gets its first resume_producing right away.
///         cx.transport().register_producer(Flood { left: 1000, paused: false }, true).unwrap();
///     }
///     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
/// }
///
/// let mut h = Harness::new();
/// let id = h.accept(&mut |_| Some(Start)).unwrap();
/// let mut got = 0;
/// loop {
///     let n = h.take_written(id).len();
///     if n == 0 { break }
///     got += n;
/// }
/// assert_eq!(got, 1000 * 1024);
/// assert!(h.fin_sent(id));
/// ```
pub trait Producer: 'static {
    /// Produce (pull), or carry on producing (push).
    fn resume_producing(&mut self, cx: &mut Ctx<'_>);

    /// Stop producing until `resume_producing` (push producers only).
    fn pause_producing(&mut self, cx: &mut Ctx<'_>) {
        let _ = cx;
    }

    /// The consumer is gone or closing: stop for good. Called exactly once, if at all.
    fn stop_producing(&mut self, cx: &mut Ctx<'_>) {
        let _ = cx;
    }
}

/// Builds a protocol for each accepted connection; shared state (a chat room) lives here and is
/// handed to each protocol.
///
/// A closure `FnMut(Address) -> Option<P>` is a factory for any protocol type `P`, so no
/// cast to `Box<dyn Protocol>` is needed (a closure returning `Box<dyn Protocol>` works too).
///
/// ```no_run
/// use torsion_reactor::{Ctx, Protocol, Reactor};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
///         cx.transport().write(data);
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), |_peer| Some(Echo))?;
/// # Ok::<(), torsion_reactor::Error>(())
/// ```
pub trait Factory: 'static {
    /// Builds the protocol for a connection from `peer`; `None` refuses it (the socket is
    /// closed at once).
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>>;

    /// A TLS listener's connection failed its handshake (bad certificate, no shared cipher or
    /// ALPN protocol, not TLS at all, the deadline, the peer leaving): no protocol was built
    /// for it, since `build_protocol` runs only after a successful handshake. The failure was
    /// already logged once at `info`. Default: nothing.
    fn handshake_failed(&mut self, peer: Address, reason: &DisconnectReason) {
        let _ = (peer, reason);
    }
}

impl<F, P> Factory for F
where
    F: FnMut(Address) -> Option<P> + 'static,
    P: Protocol,
{
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        self(peer).map(|p| Box::new(p) as Box<dyn Protocol>)
    }
}

/// Builds the protocol of an outgoing connection once it is established, and hears about
/// failures to establish it.
///
/// # When the connection cannot be made
/// [`client_connection_failed`](ClientFactory::client_connection_failed) is called once with
/// the reason (refused, unreachable, timed out, cancelled by a shutdown). The default logs it
/// at `warn` and, when nothing else is left for the reactor to do (no listener, no
/// connection, no timer, no queued call), stops the reactor so that [`Reactor::run`] returns
/// that error: a client whose only connection failed exits with it instead of hanging.
///
/// A client that wants its exit status from a callback needs no shared cell: call
/// [`Ctx::stop_with_error`] (then `run` returns that error) or [`Ctx::stop_with`] (then
/// [`Reactor::run_with_result`] returns the value).
///
/// A closure `FnMut(Address) -> P` is a client factory with the default failure handling;
/// [`client_factory`] adds a failure hook:
///
/// ```no_run
/// use torsion_reactor::{client_factory, Ctx, Protocol, Reactor};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
///         cx.transport().write(b"hello\n");
///         cx.transport().lose_connection();
///     }
///     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
///     fn connection_lost(&mut self, cx: &mut Ctx<'_>, _reason: torsion_reactor::DisconnectReason) {
///         cx.stop_with(0u8); // the exit status
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let factory = client_factory(|_peer| Hello).on_failure(|cx, error| {
///     eprintln!("cannot connect: {error}");
///     cx.stop_with(1u8);
/// });
/// reactor.connect_tcp("127.0.0.1:8000".parse().unwrap(), factory)?;
/// let status: Option<u8> = reactor.run_with_result()?;
/// std::process::exit(status.unwrap_or(0).into());
/// # Ok::<(), torsion_reactor::Error>(())
/// ```
///
/// [`Reactor::run`]: crate::Reactor::run
/// [`Reactor::run_with_result`]: crate::Reactor::run_with_result
/// [`Ctx::stop_with_error`]: crate::LoopCtx::stop_with_error
/// [`Ctx::stop_with`]: crate::LoopCtx::stop_with
pub trait ClientFactory: 'static {
    /// Builds the protocol once the connection to `peer` is established.
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol>;

    /// The connection could not be made: refused, unreachable, timed out, or cancelled by a
    /// shutdown. Default: log it at `warn`, and stop the reactor with `reason` as
    /// [`Reactor::run`](crate::Reactor::run)'s error when nothing else is left to do.
    fn client_connection_failed(&mut self, cx: &mut LoopCtx<'_>, reason: Error) {
        tracing::warn!(%reason, "client connection failed");
        cx.stop_with_error_if_idle(reason);
    }
}

impl<F, P> ClientFactory for F
where
    F: FnMut(Address) -> P + 'static,
    P: Protocol,
{
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        Box::new(self(peer))
    }
}

/// A client factory from a closure, with an optional failure hook; see [`client_factory`].
pub struct ClientFn<B, H> {
    build: B,
    on_failure: H,
}

impl<B, H> std::fmt::Debug for ClientFn<B, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFn").finish_non_exhaustive()
    }
}

/// The failure hook of a [`ClientFn`] that has none: the default handling of
/// [`ClientFactory::client_connection_failed`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultFailure;

/// A client factory building its protocol with `build`; add a failure hook with
/// [`ClientFn::on_failure`].
pub fn client_factory<B, P>(build: B) -> ClientFn<B, DefaultFailure>
where
    B: FnMut(Address) -> P + 'static,
    P: Protocol,
{
    ClientFn { build, on_failure: DefaultFailure }
}

impl<B> ClientFn<B, DefaultFailure> {
    /// Calls `hook` instead of the default when the connection cannot be made.
    pub fn on_failure<H>(self, hook: H) -> ClientFn<B, H>
    where
        H: FnMut(&mut LoopCtx<'_>, Error) + 'static,
    {
        ClientFn { build: self.build, on_failure: hook }
    }
}

impl<B, P> ClientFactory for ClientFn<B, DefaultFailure>
where
    B: FnMut(Address) -> P + 'static,
    P: Protocol,
{
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        Box::new((self.build)(peer))
    }
}

impl<B, P, H> ClientFactory for ClientFn<B, H>
where
    B: FnMut(Address) -> P + 'static,
    P: Protocol,
    H: FnMut(&mut LoopCtx<'_>, Error) + 'static,
{
    fn build_protocol(&mut self, peer: Address) -> Box<dyn Protocol> {
        Box::new((self.build)(peer))
    }

    fn client_connection_failed(&mut self, cx: &mut LoopCtx<'_>, reason: Error) {
        (self.on_failure)(cx, reason);
    }
}
