//! The torsion guide: from an echo server to a production chat room, one idea per chapter.
//!
//! Every code block in this guide is a doctest of `torsion-examples`: it compiles against the
//! real API, and most of them run, driving the protocol through the in-memory
//! [`Harness`](torsion_reactor::testing::Harness) and asserting on what it wrote. Blocks
//! marked `no_run` listen on a real port or run until Ctrl-C; they are still compiled.
//!
//! # Where to start
//! Read [chapter 1](ch01_echo) and then run the smallest real program, the `echo-server`
//! binary (`examples/src/bin/echo-server.rs`), and talk to it with `nc`. After that, the
//! chapters follow the example binaries in the order they build on each other:
//!
//! | read | then run |
//! |---|---|
//! | [1. An echo server](ch01_echo) | `echo-server` |
//! | [2. A client](ch02_client) | `echo-client` |
//! | [3. The chat room](ch03_chat) | `chat-server` |
//! | [4. Framing and limits](ch04_framing) | `frame-echo` |
//! | [5. Flow control](ch05_flow_control) | `proxy` |
//! | [6. Testing protocols without sockets](ch06_testing) | `cargo test` |
//! | [7. Timeouts, limits and throttling](ch07_policies) | `chat-server --idle-timeout` |
//! | [8. Shutting down cleanly](ch08_shutdown) | any server, then Ctrl-C |
//! | [9. Unix sockets](ch09_unix) | any binary with `unix:PATH` |
//! | [10. Datagrams (UDP)](ch10_udp) | `udp-echo`, `udp-time` |
//! | [11. Child processes and standard I/O](ch11_processes) | `exec-server`, `echo-client` |
//! | [12. Endpoints, names, reconnecting, blocking work](ch12_endpoints) | `echo-client --reconnect` |
//! | [13. Every core](ch13_many_cores) | `echo-server --threads 0` |
//! | [14. An HTTP/1.1 server](ch14_http) | `http-server` |
//! | [15. TLS](ch15_tls) | any server with `--tls-cert/--tls-key` |
//! | [16. WebSocket, and the chat room in a browser](ch16_websocket) | `ws-echo`, `chat-server --web` |
//!
//! If you know another framework, skim [coming from Twisted](from_twisted) or
//! [coming from tokio or asyncio](from_tokio) first: each is a table from the names you
//! know to torsion's.
//!
//! # The model in one paragraph
//! A [`Protocol`](torsion_reactor::Protocol) reacts to one connection's events
//! (`connection_made`, `data_received`, `eof_received`, `connection_lost`, `timer_fired`); a
//! [`Factory`](torsion_reactor::Factory) builds one protocol per accepted connection; the
//! [`Reactor`](torsion_reactor::Reactor) owns sockets, timers and the loop, on one thread.
//! Every callback is lent a [`Ctx`](torsion_reactor::Ctx) to act through (write, close, set a
//! timer, reach another connection by id, stop the reactor), and nothing it does calls back
//! into your code before the callback returns. The full contract is in
//! [`torsion_reactor::protocol`].

pub mod ch01_echo;
pub mod ch02_client;
pub mod ch03_chat;
pub mod ch04_framing;
pub mod ch05_flow_control;
pub mod ch06_testing;
pub mod ch07_policies;
pub mod ch08_shutdown;
pub mod ch09_unix;
pub mod ch10_udp;
pub mod ch11_processes;
pub mod ch12_endpoints;
pub mod ch13_many_cores;
pub mod ch14_http;
pub mod ch15_tls;
pub mod ch16_websocket;
pub mod from_tokio;
pub mod from_twisted;
