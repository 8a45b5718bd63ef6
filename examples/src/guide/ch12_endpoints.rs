//! # Chapter 12: Endpoints, names, reconnecting clients and blocking work
//!
//! ## Endpoint strings
//! Twisted programs take "where to listen" and "where to connect" as strings, so a config
//! file or a command line can say `tcp:8000`, `unix:/run/app.sock:mode=660` or
//! `systemd:domain=INET:index=0` without code changes. torsion parses the same grammar into
//! typed values ([`ServerEndpoint`](torsion_reactor::ServerEndpoint),
//! [`ClientEndpoint`](torsion_reactor::ClientEndpoint)); a bad string is an error that names
//! the field and its position, never a guess. The full grammar is in
//! the `endpoint` module of `torsion_transports` (the [`ServerEndpoint`](torsion_reactor::ServerEndpoint) docs link it); every example binary's `--help` repeats it.
//!
//! ```
//! use torsion_reactor::{ClientEndpoint, ServerEndpoint};
//!
//! let server: ServerEndpoint = "tcp:8000:interface=127.0.0.1".parse().unwrap();
//! assert_eq!(server.to_string(), "tcp:8000:interface=127.0.0.1");
//! let v6: ServerEndpoint = "[::1]:8000".parse().unwrap(); // shorthand, Twisted's escaping on display
//! assert_eq!(v6.to_string(), r"tcp6:8000:interface=\:\:1");
//! let client: ClientEndpoint = "tcp:host=localhost:port=8000:timeout=5".parse().unwrap();
//! assert_eq!(client.host_port(), Some(("localhost", 8000)));
//! let bad = "tcp:80:backlog=lots".parse::<ServerEndpoint>().unwrap_err();
//! assert_eq!(bad.field(), Some("backlog"));
//! ```
//!
//! [`Reactor::listen_endpoint`](torsion_reactor::Reactor::listen_endpoint) and
//! [`Reactor::connect_endpoint`](torsion_reactor::Reactor::connect_endpoint) take them.
//! `systemd:` adopts a socket your service manager opened (socket activation): the unit's
//! `.socket` file owns the address, and your program only says which inherited socket to use.
//!
//! ## Host names, without blocking the loop
//! Resolving a name (`getaddrinfo`) blocks. [`LoopCtx::connect_host`](torsion_reactor::LoopCtx::connect_host)
//! (what a `tcp:host=NAME` endpoint does) resolves on the reactor's thread pool, then races the
//! addresses with Happy Eyeballs (RFC 8305): IPv6 first, the next address 250 ms later or as
//! soon as one fails, the first to connect wins and the others are cancelled. A host whose
//! IPv6 address is blackholed costs a quarter of a second, not a connect timeout.
//!
//! ## Blocking work: the thread pool
//! Anything else that blocks (a file, a database driver, a CPU-heavy hash) goes to
//! [`LoopCtx::defer_to_thread`](torsion_reactor::LoopCtx::defer_to_thread): the job runs on a
//! worker, and its result comes back to a callback **on the loop thread**, so it may touch
//! `Rc`s and connections like any callback. The pool has 10 threads by default (Twisted's), a
//! bounded queue, and survives a panicking job (the callback gets the panic as an error).
//!
//! ```
//! use torsion_reactor::Reactor;
//!
//! let mut reactor = Reactor::new()?;
//! reactor.call_later(std::time::Duration::ZERO, |cx| {
//!     cx.defer_to_thread(
//!         || (1..=20u64).product::<u64>(), // stands in for a slow call
//!         |cx, result| cx.stop_with(result.expect("the job ran")),
//!     );
//! });
//! assert_eq!(reactor.run_with_result::<u64>()?, Some(2_432_902_008_176_640_000));
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! ## Staying connected
//! A client that must survive server restarts wraps its factory in a
//! [`ClientService`](torsion_reactor::ClientService) (Twisted's `ClientService`): it connects,
//! and after a failure or a loss waits 1 s, then 1.5× longer each time up to 60 s, with ±10%
//! jitter so a thousand clients do not come back in the same millisecond. A success resets the
//! delay. `stop_trying` stops for good, even in the middle of a connect.
//!
//! ```no_run
//! use torsion_reactor::{client_factory, ClientService, Ctx, Protocol, Reactor};
//!
//! struct Subscriber;
//! impl Protocol for Subscriber {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         cx.transport().write(b"SUBSCRIBE news\n"); // again after every reconnect
//!     }
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
//!         print!("{}", String::from_utf8_lossy(data));
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let server: std::net::SocketAddr = "127.0.0.1:7000".parse().unwrap();
//! ClientService::new(server, client_factory(|_| Subscriber))
//!     .on_failure(|_cx, error| eprintln!("{error}; retrying"))
//!     .start(&mut reactor);
//! reactor.run()?;
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! ## Try it
//! ```text
//! cargo run -p torsion-examples --bin echo-server -- --listen tcp:9000:interface=127.0.0.1
//! cargo run -p torsion-examples --bin echo-client -- --connect tcp:host=localhost:port=9000 --reconnect
//! # stop the server with Ctrl-C and start it again: the client carries on
//! ```
