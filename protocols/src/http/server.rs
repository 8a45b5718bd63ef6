//! [`HttpServer`]: the factory (one [`HttpProtocol`] per connection, one handler each) and the
//! graceful stop (idle keep-alive connections closed at once, responses in flight finished).

use std::cell::RefCell;
use std::fmt;
use std::rc::{Rc, Weak};

use torsion_reactor::{Address, Factory, ListeningPort, LoopCtx, Protocol, Reactor};

use super::config::HttpConfig;
use super::conn::{HttpProtocol, Shared};
use super::handler::Handler;
use super::producer::Hold;

type Registry = Rc<RefCell<Vec<Weak<RefCell<Shared>>>>>;

/// An HTTP/1.1 server: a [`Factory`] that builds a handler per connection with `make` and
/// serves it with [`HttpProtocol`] under one [`HttpConfig`]. A factory-level handler (one
/// state for all connections) is a per-connection handler holding an `Rc<RefCell<_>>` that
/// `make` clones into each: callbacks never run re-entrantly, so the borrow is always free.
///
/// [`listen`](HttpServer::listen) also installs the graceful stop: when the reactor stops,
/// idle keep-alive connections are closed at once, and connections with a request in flight
/// stay open (within the reactor's shutdown deadline) until their responses are written.
/// (Servers that wait for idle keep-alive connections instead hang on shutdown: cpython#104344.)
///
/// ```no_run
/// use http::StatusCode;
/// use torsion_protocols::http::{text, Handler, HttpCtx, HttpServer, Request};
/// use torsion_reactor::Reactor;
///
/// struct Hello;
/// impl Handler for Hello {
///     fn request(&mut self, hx: &mut HttpCtx<'_, '_>, _request: Request) {
///         let _ = hx.respond(text(StatusCode::OK, "Hello, World!"));
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let addr = "127.0.0.1:8080".parse::<std::net::SocketAddr>().unwrap().into();
/// HttpServer::new(|_peer| Hello).listen(&mut reactor, &addr)?;
/// reactor.run()?;
/// # Ok::<(), torsion_reactor::Error>(())
/// ```
///
/// # HTTPS
/// TLS is a layer inside the connection (DESIGN.md): the same factory serves HTTPS unchanged
/// through `Reactor::listen_tls` or an `ssl:` endpoint (`Reactor::listen_endpoint`), since
/// [`HttpProtocol`] only sees plaintext. Call [`install_graceful_stop`](HttpServer::install_graceful_stop)
/// first, as [`listen`](HttpServer::listen) does.
pub struct HttpServer<F> {
    make: F,
    config: Rc<HttpConfig>,
    registry: Registry,
}

impl<F> fmt::Debug for HttpServer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServer").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<F, H> HttpServer<F>
where
    F: FnMut(&Address) -> H + 'static,
    H: Handler,
{
    /// A server building each connection's handler with `make(peer)`, with the default config.
    pub fn new(make: F) -> Self {
        HttpServer { make, config: Rc::new(HttpConfig::default()), registry: Registry::default() }
    }

    /// Replaces the config (limits, timeouts, `Server` header, access log).
    pub fn with_config(mut self, config: HttpConfig) -> Self {
        self.config = Rc::new(config);
        self
    }

    /// Installs the graceful stop on `reactor` (done by [`listen`](Self::listen); call it
    /// yourself when you pass the server to `Reactor::listen` as a plain factory).
    pub fn install_graceful_stop(&self, reactor: &mut Reactor) {
        let registry = self.registry.clone();
        reactor.before_shutdown(move |lx, _deadline| graceful_stop(lx, &registry));
    }

    /// The graceful stop as a callback, for a reactor this server is not handed to directly
    /// (each thread of a `ReactorPool`): run it from that reactor's `before_shutdown`.
    pub fn graceful_stop_hook(&self) -> impl FnOnce(&mut LoopCtx<'_>) + 'static {
        let registry = self.registry.clone();
        move |lx| graceful_stop(lx, &registry)
    }

    /// Listens on `addr` (TCP or Unix) and installs the graceful stop.
    pub fn listen(
        self,
        reactor: &mut Reactor,
        addr: &Address,
    ) -> Result<ListeningPort, torsion_reactor::Error> {
        self.install_graceful_stop(reactor);
        reactor.listen(addr, self)
    }
}

/// Marks every connection as stopping; those with a request in flight get a [`Hold`] (a pull
/// producer the reactor's close waits for) unless a body producer already holds them. Idle
/// ones are left to the reactor, which closes them at once.
fn graceful_stop(lx: &mut LoopCtx<'_>, registry: &Registry) {
    for weak in registry.borrow().iter() {
        let Some(shared) = weak.upgrade() else { continue };
        let mut shared = shared.borrow_mut();
        shared.stopping = true;
        let Some(conn) = shared.conn else { continue };
        if shared.in_flight && !shared.producing && !shared.held {
            if let Some(mut t) = lx.transport_for(conn) {
                shared.held = t.register_producer(Hold, false).is_ok();
            }
        }
    }
}

impl<F, H> Factory for HttpServer<F>
where
    F: FnMut(&Address) -> H + 'static,
    H: Handler,
{
    fn build_protocol(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        let handler = (self.make)(&peer);
        let shared = Rc::new(RefCell::new(Shared::default()));
        let mut registry = self.registry.borrow_mut();
        if registry.len() >= 64 && registry.len().is_power_of_two() {
            registry.retain(|w| w.strong_count() > 0);
        }
        registry.push(Rc::downgrade(&shared));
        Some(Box::new(HttpProtocol::with_shared(handler, self.config.clone(), shared)))
    }
}
