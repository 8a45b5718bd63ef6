//! The connection table: everything the loop owns except protocols and the read buffer, so that
//! a protocol (`&mut`), the read buffer and a [`Ctx`](crate::Ctx) (`&mut Core`) can be lent at
//! once. Its methods change the table (add, finish, abort, requeue); they never run user code:
//! whatever user code must follow is queued as a [`Task`].

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use slotmap::{Key, KeyData, SlotMap};
use torsion_transports::{
    Address, BoxedStream, Connection, ListenerSocket, ProducerCall, ProducerState, ReserveFd,
};
use tracing::{debug, error};

use crate::clock::Clock;
use crate::ctx::LoopCtx;
use crate::handle::Shared;
use crate::protocol::{ClientFactory, DisconnectReason, Factory, Producer};
use crate::testing::Seams;
use crate::timers::{TimerId, Timers};
use crate::Error;

slotmap::new_key_type! {
    /// Slot key of a source: a listener or a connection.
    pub(crate) struct SourceKey;
}

/// A connection's identity. Generational: once the connection is gone, its id resolves to
/// nothing, never to a newer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) SourceKey);

/// A listening port's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub(crate) SourceKey);

/// The poller token of a source.
pub(crate) fn token_of(key: SourceKey) -> Token {
    Token(key.data().as_ffi() as usize)
}

/// The source of a poller token.
pub(crate) fn key_of(token: Token) -> SourceKey {
    KeyData::from_ffi(token.0 as u64).into()
}

/// How long a cleanly closed socket keeps draining the peer's input, waiting for its FIN.
pub(crate) const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// How many bytes a lingering socket drains before giving up.
pub(crate) const LINGER_MAX_BYTES: usize = 1024 * 1024;

/// Tunables, all with defaults and setters on [`Reactor`](crate::Reactor).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) reads_per_turn: usize,
    pub(crate) accepts_per_turn: usize,
    pub(crate) writes_per_flush: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) accept_backoff: Duration,
    pub(crate) nodelay: bool,
    pub(crate) shutdown_drain_max: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) tls_close_timeout: Duration,
}

/// A listening socket and its factory.
pub(crate) struct Listener {
    pub(crate) socket: ListenerSocket,
    /// Taken out while `build_protocol` runs.
    pub(crate) factory: Option<Box<dyn Factory>>,
    pub(crate) local: Address,
    /// Waiting for the retry timer after running out of file descriptors.
    pub(crate) backing_off: bool,
    /// Resource exhaustion was logged; cleared by the next successful accept.
    pub(crate) exhaustion_logged: bool,
    /// In the ready list for more accepts next turn.
    pub(crate) queued: bool,
    /// TLS listeners: the server configuration each connection's handshake uses.
    pub(crate) tls: Option<Arc<torsion_transports::rustls::ServerConfig>>,
}

/// Where a connection is in its life.
pub(crate) enum Phase {
    /// Connecting out; the factory builds the protocol on success.
    Connecting { factory: Option<Box<dyn ClientFactory>>, timeout: TimerId },
    /// Established, with a protocol.
    Open,
    /// Finished; `connection_lost` is queued.
    Lost,
    /// Closed cleanly by us, draining the peer's input until its FIN so unread input cannot turn
    /// the close into a reset (the protocol is gone already).
    Lingering { timer: TimerId },
}

/// Who produces a connection's output.
pub(crate) enum ProducerKind {
    /// No registration: the connection's own protocol (pausing it pauses reading by default).
    Own,
    /// Another connection: pausing it pauses its reading (the proxy case).
    Conn(SourceKey),
    /// A producer object; `None` while one of its callbacks runs.
    Object(Option<Box<dyn Producer>>),
}

/// A connection in the table.
pub(crate) struct Conn {
    pub(crate) io: Option<Connection<BoxedStream>>,
    pub(crate) phase: Phase,
    pub(crate) peer: Address,
    /// Our address: set when the connection is made, or (accepted connections) read from the
    /// socket the first time it is asked for, which saves a `getsockname` per accept.
    pub(crate) local: OnceCell<Option<Address>>,
    /// In the ready list for more work next turn.
    pub(crate) queued: bool,
    /// In the flush list.
    pub(crate) dirty: bool,
    /// Registered with WRITABLE interest.
    pub(crate) writable_interest: bool,
    /// Where the producer stands (transports' pure state machine) ...
    pub(crate) producer: ProducerState,
    /// ... and who it is.
    pub(crate) producer_kind: ProducerKind,
    /// The connection ended while the producer object was out running: stop it when it returns.
    pub(crate) stop_pending: bool,
    /// Timers owned by this connection, cancelled when it ends.
    pub(crate) timers: Vec<TimerId>,
    /// The reason a clean close reports, when the protocol gave one (`lose_connection_with`).
    pub(crate) close_reason: Option<Box<DisconnectReason>>,
    /// A clean close drains the peer's input until its FIN (false for a standard I/O pair,
    /// whose far end is our own copying thread: nothing in flight can be lost to a reset).
    pub(crate) linger: bool,
    /// The protocol said the peer sends nothing more
    /// ([`Transport::expect_no_more_input`](crate::Transport::expect_no_more_input)): a clean
    /// close with no input known to be pending closes at once instead of lingering.
    pub(crate) input_done: bool,
    /// A TLS handshake in progress ([`crate::tls`]).
    pub(crate) handshake: Option<Box<crate::tls::Handshake>>,
    pub(crate) span: tracing::Span,
}

/// A listener or a connection.
pub(crate) enum Source {
    Listener(Listener),
    Conn(Box<Conn>),
    /// A UDP port ([`crate::datagram`]).
    Datagram(Box<crate::datagram::Datagram>),
    /// A child process and its pipes ([`crate::process`]).
    Process(Box<crate::process::Process>),
}

/// A one-shot callback for the loop-level `call_later` and `call_soon`.
pub(crate) type TimerFn = Box<dyn FnOnce(&mut LoopCtx<'_>)>;
/// A repeating callback for `looping_call`.
pub(crate) type LoopFn = Box<dyn FnMut(&mut LoopCtx<'_>)>;

/// What a timer does when it fires.
pub(crate) enum TimerKind {
    /// `timer_fired` on the owning connection's protocol.
    Protocol(SourceKey),
    /// A loop-level one-shot callback.
    Call(TimerFn),
    /// A looping call; `None` while the callback is running.
    Looping { interval: Duration, f: Option<LoopFn> },
    /// The reactor's own bookkeeping.
    Internal(Internal),
}

/// The reactor's own timers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Internal {
    ConnectTimeout(SourceKey, Duration),
    AcceptRetry(SourceKey),
    LingerTimeout(SourceKey),
    HandshakeTimeout(SourceKey, Duration),
    TlsCloseTimeout(SourceKey),
    ShutdownDeadline,
}

/// Work queued to run after the current callback.
pub(crate) enum Task {
    /// Deliver `connection_lost` and drop the protocol.
    Lost(SourceKey, DisconnectReason),
    /// Pause or resume the producer registered (at the serial) on a connection.
    Producer(SourceKey, ProducerCall, u64),
    /// `resume_producing` on a connection's own protocol, which a registration displaced
    /// while it was paused.
    ResumeOwn(SourceKey),
    /// `stop_producing` on a producer object whose consumer is the connection.
    StopObject(SourceKey, Box<dyn Producer>),
    /// `stop_producing` on a connection registered as a producer: close it cleanly.
    StopConn(SourceKey),
    /// A callback queued by `call_soon`, a shutdown, or a failed connect.
    Call(TimerFn),
    /// Installs a new datagram port's protocol (the protocol map is not reachable from a
    /// context) and calls its `started`.
    DatagramStarted(SourceKey, Box<dyn crate::datagram::DatagramProtocol>),
    /// `stopped` on a datagram port, then its socket closes.
    DatagramStopped(SourceKey),
    /// Installs the protocol of a stream connection made open from a callback (standard I/O)
    /// and calls its `connection_made`.
    StreamStarted(SourceKey, Box<dyn crate::protocol::Protocol>),
    /// `handshake_failed` on a TLS listener's factory.
    HandshakeFailed(SourceKey, Address, DisconnectReason),
}

/// A callback run when a graceful stop begins, with the deadline after which connections are
/// aborted.
pub(crate) type ShutdownTrigger = Box<dyn FnOnce(&mut LoopCtx<'_>, Instant)>;

/// How a callback asked `run` to end.
pub(crate) enum Exit {
    Error(Error),
    Value(Box<dyn std::any::Any>),
}

/// The connection table and the loop's queues.
pub(crate) struct Core {
    pub(crate) registry: Registry,
    pub(crate) clock: Box<dyn Clock>,
    pub(crate) sources: SlotMap<SourceKey, Source>,
    pub(crate) timers: Timers<TimerKind>,
    pub(crate) tasks: VecDeque<Task>,
    /// Sources with work left over from an earlier turn (read or accept budget, write budget).
    pub(crate) ready: Vec<SourceKey>,
    /// Connections written to since the last flush.
    pub(crate) dirty: Vec<SourceKey>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: Config,
    /// Spare descriptor spent to accept-and-close queued clients when descriptors run out.
    pub(crate) reserve: ReserveFd,
    pub(crate) stop_requested: bool,
    pub(crate) stopping: bool,
    /// Open or connecting connections.
    pub(crate) connections: usize,
    /// How `run` ends, when a callback said so.
    pub(crate) exit: Option<Exit>,
    /// Run once when a graceful stop begins, before anything is closed.
    pub(crate) shutdown_triggers: Vec<ShutdownTrigger>,
    /// Test seams ([`crate::testing`]); `None` in production.
    pub(crate) seams: Option<Box<Seams>>,
    /// Queued work is being run: a callback invoked meanwhile leaves it to that loop.
    pub(crate) settling: bool,
    /// SIGCHLD, registered by the first spawn.
    pub(crate) child_signals: Option<signal_hook_mio::v1_0::Signals>,
    /// Processes spawned from a callback, waiting for their protocol to join the map.
    pub(crate) new_processes: Vec<(SourceKey, Box<dyn crate::process::ProcessProtocol>)>,
    /// Disconnect when a standard I/O connection's output thread is done (`run` waits for them).
    pub(crate) stdio_outputs: Vec<std::sync::mpsc::Receiver<()>>,
    /// The thread pool of `defer_to_thread`, and the completions waiting for results.
    pub(crate) threads: crate::threads::ThreadPool,
    /// `connect_host`'s resolver and RFC 8305 attempt delay.
    pub(crate) happy: crate::happy::HappyConfig,
}

impl Core {
    pub(crate) fn new(
        registry: Registry,
        clock: Box<dyn Clock>,
        shared: Arc<Shared>,
        config: Config,
    ) -> Core {
        Core {
            registry,
            clock,
            sources: SlotMap::with_key(),
            timers: Timers::default(),
            tasks: VecDeque::new(),
            ready: Vec::new(),
            dirty: Vec::new(),
            shared,
            config,
            reserve: ReserveFd::new(),
            stop_requested: false,
            stopping: false,
            connections: 0,
            exit: None,
            shutdown_triggers: Vec::new(),
            seams: None,
            settling: false,
            child_signals: None,
            new_processes: Vec::new(),
            stdio_outputs: Vec::new(),
            threads: Default::default(),
            happy: Default::default(),
        }
    }

    pub(crate) fn conn(&self, key: SourceKey) -> Option<&Conn> {
        match self.sources.get(key) {
            Some(Source::Conn(c)) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn conn_mut(&mut self, key: SourceKey) -> Option<&mut Conn> {
        match self.sources.get_mut(key) {
            Some(Source::Conn(c)) => Some(c),
            _ => None,
        }
    }

    /// An open connection (not connecting, lost or lingering).
    pub(crate) fn open_conn(&mut self, key: SourceKey) -> Option<&mut Conn> {
        self.conn_mut(key).filter(|c| matches!(c.phase, Phase::Open))
    }

    /// An open connection, read-only.
    pub(crate) fn open_conn_ref(&self, key: SourceKey) -> Option<&Conn> {
        self.conn(key).filter(|c| matches!(c.phase, Phase::Open))
    }

    /// A listener.
    pub(crate) fn listener_mut(&mut self, key: SourceKey) -> Option<&mut Listener> {
        match self.sources.get_mut(key) {
            Some(Source::Listener(l)) => Some(l),
            _ => None,
        }
    }

    /// Keys of connections that still count (open or connecting).
    pub(crate) fn conn_keys(&self) -> Vec<SourceKey> {
        self.sources
            .iter()
            .filter(|(_, s)| matches!(s, Source::Conn(c) if matches!(c.phase, Phase::Open | Phase::Connecting { .. })))
            .map(|(k, _)| k)
            .collect()
    }

    /// The span of a connection (none for other sources).
    pub(crate) fn span_of(&self, key: SourceKey) -> tracing::Span {
        match self.sources.get(key) {
            Some(Source::Conn(c)) => c.span.clone(),
            Some(Source::Datagram(d)) => d.span.clone(),
            Some(Source::Process(p)) => p.span.clone(),
            _ => tracing::Span::none(),
        }
    }

    /// The peer of connection `key`, for log lines that must name it even when the
    /// connection's (debug-level) span is filtered out.
    pub(crate) fn peer_text(&self, key: SourceKey) -> String {
        self.conn(key).map_or_else(|| "?".to_owned(), |c| c.peer.to_string())
    }

    /// True when the loop has nothing to do but wait: no listener, no connection, no timer, no
    /// queued callback.
    pub(crate) fn is_idle(&self) -> bool {
        self.connections == 0
            && !self
                .sources
                .iter()
                .any(|(_, s)| matches!(s, Source::Listener(_) | Source::Datagram(_) | Source::Process(_)))
            && self.timers.len() == 0
            && self.tasks.is_empty()
            && !self.shared.has_calls()
    }

    /// Registers a connected (or connecting) stream as a new connection. `local` is our
    /// address when known (filled in later for an outbound connect); an empty cell reads it
    /// from the socket when first asked for.
    pub(crate) fn add_stream(
        &mut self,
        mut stream: BoxedStream,
        peer: Address,
        local: OnceCell<Option<Address>>,
        phase: Phase,
    ) -> Result<SourceKey, Error> {
        let connecting = matches!(phase, Phase::Connecting { .. });
        let interest = if connecting { Interest::WRITABLE | Interest::READABLE } else { Interest::READABLE };
        let registry = &self.registry;
        let mut registered = Ok(());
        let key = self.sources.insert_with_key(|key| {
            registered = registry.register(&mut stream, token_of(key), interest);
            let span = tracing::debug_span!("conn", id = ?key.data(), %peer);
            Source::Conn(Box::new(Conn {
                io: Some(Connection::new(stream)),
                phase,
                peer,
                local,
                queued: false,
                dirty: false,
                writable_interest: connecting,
                producer: ProducerState::default(),
                producer_kind: ProducerKind::Own,
                stop_pending: false,
                timers: Vec::new(),
                close_reason: None,
                linger: true,
                input_done: false,
                handshake: None,
                span,
            }))
        });
        if let Err(e) = registered {
            error!(error = %e, "registering a connection failed");
            self.sources.remove(key);
            return Err(Error::Register(e));
        }
        self.connections += 1;
        Ok(key)
    }

    /// Deregisters and drops a source of any kind.
    pub(crate) fn remove_source(&mut self, key: SourceKey) {
        match self.sources.remove(key) {
            Some(Source::Listener(mut l)) => {
                let _ = self.registry.deregister(&mut l.socket);
                debug!(local = %l.local, "stopped listening");
            }
            Some(Source::Conn(mut conn)) => {
                if let Some(io) = conn.io.take() {
                    self.close_io(key, io);
                }
                if matches!(conn.phase, Phase::Open | Phase::Connecting { .. }) {
                    self.connections -= 1;
                }
                self.timers.cancel_all(&conn.timers);
                if let Phase::Lingering { timer } = conn.phase {
                    self.timers.cancel(timer);
                }
            }
            Some(Source::Datagram(mut d)) => {
                let _ = self.registry.deregister(&mut d.socket);
                self.timers.cancel_all(&d.timers);
                debug!(local = %d.local, "stopped listening (udp)");
            }
            Some(Source::Process(p)) => self.remove_process(p),
            None => {}
        }
    }

    /// Deregisters and closes a connection's socket (the test seams keep memory sockets for
    /// the harness to inspect).
    pub(crate) fn close_io(&mut self, key: SourceKey, mut io: Connection<BoxedStream>) {
        let _ = self.registry.deregister(io.socket_mut());
        if let Some(seams) = self.seams.as_mut() {
            seams.keep_closed(key, io.into_socket());
        }
    }

    /// Ends a connection for its protocol: queues `connection_lost(reason)` exactly once.
    /// A clean close whose peer has not sent FIN yet keeps draining input (lingering) so the
    /// close cannot turn into a reset that destroys data still in flight to the peer.
    pub(crate) fn finish(&mut self, key: SourceKey, reason: DisconnectReason) {
        let linger_deadline = self.clock.now() + LINGER_TIMEOUT;
        let Some(conn) = self.conn_mut(key) else { return };
        if !matches!(conn.phase, Phase::Open | Phase::Connecting { .. }) {
            return;
        }
        let timers = std::mem::take(&mut conn.timers);
        let handshake = conn.handshake.take();
        // A clean close (our FIN after a flush) lingers, whatever reason the protocol reports.
        let clean_close = reason.is_clean();
        let reason = match (reason, conn.close_reason.take()) {
            (DisconnectReason::Clean, Some(given)) => *given,
            (reason, _) => reason,
        };
        self.stop_producer(key);
        let Some(conn) = self.conn_mut(key) else { return };
        // No lingering either when the protocol knows the peer sends nothing more and no input
        // is known to be waiting (the last read drained the socket, no readiness since): then
        // nothing unread can turn the close into a reset (see `expect_no_more_input`).
        let linger = conn.linger
            && clean_close
            && conn.io.as_ref().is_some_and(|io| {
                !io.is_read_closed() && !io.is_aborted() && (!conn.input_done || io.is_read_ready())
            });
        if linger {
            conn.phase = Phase::Lingering { timer: TimerId::placeholder() };
            if let Some(io) = conn.io.as_mut() {
                io.set_readable(false);
            }
        } else {
            conn.phase = Phase::Lost;
            if let Some(io) = conn.io.take() {
                self.close_io(key, io);
            }
        }
        self.connections -= 1;
        self.timers.cancel_all(&timers);
        if let Some(handshake) = handshake {
            self.timers.cancel(handshake.timer);
            self.handshake_failed(key, handshake.then, &reason);
        }
        if linger {
            let timer =
                self.timers.schedule(linger_deadline, TimerKind::Internal(Internal::LingerTimeout(key)));
            if let Some(Conn { phase: Phase::Lingering { timer: t }, .. }) = self.conn_mut(key) {
                *t = timer;
            }
            // Drain whatever is already there next turn; edges report the rest.
            self.requeue(key);
        }
        self.tasks.push_back(Task::Lost(key, reason));
    }

    /// Aborts a connection (RST) and queues `connection_lost(reason)`.
    pub(crate) fn abort_with(&mut self, key: SourceKey, reason: DisconnectReason) {
        if let Some(conn) = self.conn_mut(key) {
            if matches!(conn.phase, Phase::Open | Phase::Connecting { .. }) {
                if let Some(io) = conn.io.as_mut() {
                    io.abort();
                }
            }
        }
        self.finish(key, reason);
    }

    /// Puts a source on the list for more work next turn.
    pub(crate) fn requeue(&mut self, key: SourceKey) {
        let queued = match self.sources.get_mut(key) {
            Some(Source::Conn(c)) => std::mem::replace(&mut c.queued, true),
            Some(Source::Listener(l)) => std::mem::replace(&mut l.queued, true),
            Some(Source::Datagram(d)) => std::mem::replace(&mut d.queued, true),
            Some(Source::Process(p)) => std::mem::replace(&mut p.queued, true),
            None => true,
        };
        if !queued {
            self.ready.push(key);
        }
    }

    /// Puts a connection on the flush list.
    pub(crate) fn mark_dirty(&mut self, key: SourceKey) {
        if let Some(conn) = self.conn_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Schedules a timer that fires `timer_fired` on connection `key`'s protocol; it is
    /// cancelled when the connection ends.
    pub(crate) fn set_protocol_timer(&mut self, key: SourceKey, delay: Duration) -> TimerId {
        let deadline = self.clock.now() + delay;
        let id = self.timers.schedule(deadline, TimerKind::Protocol(key));
        if let Some(conn) = self.conn_mut(key) {
            conn.timers.push(id);
        }
        id
    }

    /// Schedules a loop-level one-shot callback.
    pub(crate) fn call_later(&mut self, delay: Duration, f: TimerFn) -> TimerId {
        let deadline = self.clock.now() + delay;
        self.timers.schedule(deadline, TimerKind::Call(f))
    }

    /// Schedules a looping call, first run now.
    pub(crate) fn looping_call(&mut self, interval: Duration, f: LoopFn) -> TimerId {
        let now = self.clock.now();
        self.timers.schedule(now, TimerKind::Looping { interval, f: Some(f) })
    }

    /// Cancels a timer; a protocol timer also leaves its connection's list, so a protocol that
    /// cancels and re-arms a timer per message does not grow that list.
    pub(crate) fn cancel_timer(&mut self, id: TimerId) -> bool {
        let owner = match self.timers.get_mut(id) {
            Some(TimerKind::Protocol(key)) => Some(*key),
            _ => None,
        };
        match owner.and_then(|key| self.sources.get_mut(key)) {
            Some(Source::Conn(conn)) => conn.timers.retain(|t| *t != id),
            Some(Source::Datagram(d)) => d.timers.retain(|t| *t != id),
            _ => {}
        }
        self.timers.cancel(id)
    }

    /// Moves a pending timer to fire `delay` from now.
    pub(crate) fn reset_timer(&mut self, id: TimerId, delay: Duration) -> bool {
        let deadline = self.clock.now() + delay;
        self.timers.reset(id, deadline)
    }

    /// Records how `run` ends (the first request wins) and asks for a stop.
    pub(crate) fn exit_with(&mut self, exit: Exit) {
        if self.exit.is_none() {
            self.exit = Some(exit);
        }
        self.stop_requested = true;
    }
}
