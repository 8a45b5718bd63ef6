//! A reactor on its own thread: `ReactorThread`, and `Server` for one listener on it.

use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::*;
use torsion_reactor::{Address, Factory, Reactor, ReactorHandle};

/// A reactor running `run()` on its own thread. `setup` runs on that thread first (listen,
/// schedule timers) and returns what the test needs to know (addresses, ids).
///
/// Dropping it stops the reactor and waits (bounded) for `run()` to return, re-raising a panic
/// of its thread; while the test is already failing it only asks the reactor to stop.
#[derive(Debug)]
pub struct ReactorThread {
    /// Stops or calls into the reactor.
    pub handle: ReactorHandle,
    /// The reactor thread's kernel thread id, for [`thread_cpu`].
    pub tid: u32,
    thread: Option<JoinHandle<Result<(), torsion_reactor::Error>>>,
}

impl ReactorThread {
    /// Builds a reactor on a new thread, lets `setup` configure it (its result comes back to
    /// the caller), then calls `run()`.
    pub fn start<T: Send + 'static>(
        setup: impl FnOnce(&mut Reactor) -> T + Send + 'static,
    ) -> (ReactorThread, T) {
        let (thread, out, _) = ReactorThread::spawn(None, setup);
        (thread, out)
    }

    /// Like [`ReactorThread::start`], capturing the reactor thread's log at `level` and above.
    pub fn start_logged<T: Send + 'static>(
        level: tracing_subscriber::filter::LevelFilter,
        setup: impl FnOnce(&mut Reactor) -> T + Send + 'static,
    ) -> (ReactorThread, T, Captured) {
        let (thread, out, log) = ReactorThread::spawn(Some(level), setup);
        (thread, out, log.expect("a log was captured"))
    }

    fn spawn<T: Send + 'static>(
        level: Option<tracing_subscriber::filter::LevelFilter>,
        setup: impl FnOnce(&mut Reactor) -> T + Send + 'static,
    ) -> (ReactorThread, T, Option<Captured>) {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let (captured, _guard) = match level {
                Some(level) => {
                    let (c, g) = capture_logs(level);
                    (Some(c), Some(g))
                }
                None => (None, None),
            };
            let mut reactor = Reactor::new()?;
            let out = setup(&mut reactor);
            tx.send((reactor.handle(), current_tid(), out, captured)).expect("send setup result");
            reactor.run()
        });
        let (handle, tid, out, captured) = rx.recv_timeout(WAIT).expect("reactor thread did not start");
        (ReactorThread { handle, tid, thread: Some(thread) }, out, captured)
    }

    /// True once `run()` has returned.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits (bounded by [`WAIT`]) for `run()` to return by itself, and checks it returned
    /// `Ok`; re-raises a panic of the thread.
    pub fn join(mut self, what: &str) {
        self.finish(what);
    }

    /// Stops the reactor (gracefully) and waits for `run()` to return.
    pub fn stop(mut self) {
        self.handle.stop();
        self.finish("the reactor thread to stop");
    }

    fn finish(&mut self, what: &str) {
        let Some(thread) = self.thread.take() else { return };
        wait_for(what, || thread.is_finished());
        match thread.join() {
            Ok(result) => result.expect("the reactor's run() failed"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for ReactorThread {
    fn drop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        self.handle.stop();
        if !std::thread::panicking() {
            self.finish("the reactor thread to stop");
        }
    }
}

/// A reactor on its own thread serving one listener, on `127.0.0.1:0` or a unique Unix socket
/// path. Dereferences to its [`ReactorThread`] (`server.handle`, `server.tid`).
#[derive(Debug)]
pub struct Server {
    /// The bound address.
    pub addr: Address,
    /// The kind of socket it listens on.
    pub kind: Kind,
    reactor: ReactorThread,
    /// Dropped after the reactor, so the socket file goes last.
    _path: Option<TempPath>,
}

impl Server {
    /// A TCP server whose factory is made on the server thread by `make_factory`.
    pub fn start<F: Factory>(make_factory: impl FnOnce() -> F + Send + 'static) -> Server {
        Server::on(Kind::Tcp, make_factory)
    }

    /// Like [`Server::start`], with a hook to configure the reactor first.
    pub fn start_with<F: Factory>(
        configure: impl FnOnce(&mut Reactor) + Send + 'static,
        make_factory: impl FnOnce() -> F + Send + 'static,
    ) -> Server {
        Server::on_with(Kind::Tcp, configure, make_factory)
    }

    /// A server listening on a socket of `kind`.
    pub fn on<F: Factory>(kind: Kind, make_factory: impl FnOnce() -> F + Send + 'static) -> Server {
        Server::on_with(kind, |_| {}, make_factory)
    }

    /// Like [`Server::on`], with a hook to configure the reactor first.
    pub fn on_with<F: Factory>(
        kind: Kind,
        configure: impl FnOnce(&mut Reactor) + Send + 'static,
        make_factory: impl FnOnce() -> F + Send + 'static,
    ) -> Server {
        let ListenAddr { addr, path } = kind.listen_addr();
        let (reactor, addr) = ReactorThread::start(move |reactor| {
            configure(reactor);
            let port =
                reactor.listen(&addr, make_factory()).unwrap_or_else(|e| panic!("listen on {addr}: {e}"));
            port.local_addr().clone()
        });
        Server { addr, kind, reactor, _path: path }
    }

    /// A blocking client connected to the server, with read/write timeouts of [`WAIT`].
    pub fn connect(&self) -> AnyStream {
        connect(self.kind, &self.addr)
    }

    /// Stops the server gracefully and waits (bounded) for its thread to end.
    pub fn stop(self) {
        let Server { reactor, .. } = self;
        reactor.stop();
    }

    /// Waits (bounded) for the server's `run()` to return by itself (after a stop).
    pub fn join(self, what: &str) {
        let Server { reactor, .. } = self;
        reactor.join(what);
    }
}

impl std::ops::Deref for Server {
    type Target = ReactorThread;

    fn deref(&self) -> &ReactorThread {
        &self.reactor
    }
}
