//! # Chapter 15: TLS
//!
//! TLS in torsion is a layer inside the connection, not a different kind of protocol: the
//! same `Protocol` runs over TCP or TLS and cannot tell them apart except through
//! [`Transport::tls`](torsion_reactor::Transport::tls). Ciphertext is on the socket side,
//! plaintext on the protocol side, and everything between (write buffer, watermarks,
//! producers, half-close, timers, shutdown) is shared with TCP. It is rustls, driven sans-IO
//! with its ring provider.
//!
//! ## A TLS server
//! [`Reactor::listen_tls`](torsion_reactor::Reactor::listen_tls) takes a rustls
//! `ServerConfig`; [`server_config_from_pem`](torsion_reactor::server_config_from_pem) builds the
//! common one from a certificate chain and a key file. The factory and the protocol are the
//! ones a TCP server would use:
//!
//! ```no_run
//! use std::sync::Arc;
//! use torsion_protocols::Echo;
//! use torsion_reactor::{server_config_from_pem, Address, Reactor};
//!
//! let config = server_config_from_pem("cert.pem".as_ref(), "key.pem".as_ref()).unwrap();
//! let mut reactor = Reactor::new().unwrap();
//! let addr: Address = "127.0.0.1:8443".parse().unwrap();
//! reactor.listen_tls(&addr, Arc::new(config), |_peer| Some(Echo)).unwrap();
//! reactor.run().unwrap();
//! ```
//!
//! ## When `connection_made` runs
//! After the handshake. The factory builds the protocol only once the handshake completed, so
//! `connection_made` can already read the negotiated ALPN protocol, the SNI name the client
//! asked for, the version, the cipher suite and the peer's certificates:
//!
//! ```
//! use torsion_reactor::{Ctx, Protocol};
//!
//! struct Hello;
//! impl Protocol for Hello {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         let mut t = cx.transport();
//!         let greeting = match t.tls().and_then(|tls| tls.alpn_protocol()) {
//!             Some(b"h2") => "http/2 is not spoken here\n",
//!             _ => "hello\n",
//!         };
//!         t.write(greeting.as_bytes());
//!     }
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
//! }
//! ```
//!
//! A handshake that fails (a bad certificate, no shared cipher suite or ALPN protocol, an HTTP
//! request sent to the TLS port, garbage) never creates a protocol: it is logged once and
//! reported to [`Factory::handshake_failed`](torsion_reactor::Factory::handshake_failed) with a
//! typed reason that carries the rustls error. A client's failure reaches
//! `client_connection_failed` as [`Error::Tls`](torsion_reactor::Error::Tls). A peer that
//! connects and says nothing is closed at the handshake deadline (10 s,
//! [`set_handshake_timeout`](torsion_reactor::Reactor::set_handshake_timeout)).
//!
//! A TLS listener accepts without reading, unlike a plain one: the ClientHello is read when
//! the loop reports it, in its turn among the other ready connections. Answering it is the
//! costly part of a handshake (the key exchange and the signature: about a millisecond of CPU
//! with the P-384 key exchange rustls' ring provider lists first, a fifth of that with X25519),
//! and doing it inside the accept batch would make every connection already waiting, such as a
//! client whose handshake is one message from done, wait behind each new one.
//!
//! ## A TLS client
//! [`Reactor::connect_tls`](torsion_reactor::Reactor::connect_tls) takes the name to verify
//! the server as and a `ClientConfig`:
//! [`client_config_webpki`](torsion_reactor::client_config_webpki) trusts the public web
//! roots, [`client_config_with_ca`](torsion_reactor::client_config_with_ca) a CA file.
//!
//! ```no_run
//! use std::sync::Arc;
//! use torsion_reactor::rustls::pki_types::ServerName;
//! use torsion_reactor::{client_config_webpki, client_factory, Ctx, Protocol, Reactor};
//!
//! struct Get;
//! impl Protocol for Get {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         cx.transport().write(b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n");
//!     }
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
//!         print!("{}", String::from_utf8_lossy(data));
//!     }
//! }
//!
//! let mut reactor = Reactor::new().unwrap();
//! let name = ServerName::try_from("example.com").unwrap();
//! let addr = "93.184.215.14:443".parse::<std::net::SocketAddr>().unwrap();
//! reactor.connect_tls(addr, name, Arc::new(client_config_webpki()), client_factory(|_| Get)).unwrap();
//! reactor.run().unwrap();
//! ```
//!
//! ### What a handshake costs
//! A TLS 1.3 client sends a key share for the first group in its list, and rustls 0.23.48's
//! ring provider lists P-384 first: about a millisecond of CPU per handshake on each side on
//! the benchmark machine, five times what X25519 costs (bench/README.md, "TLS benchmark").
//! Browsers, curl and OpenSSL offer X25519 first. A client that wants the same builds its
//! configuration from a provider whose list starts with X25519 (the server needs nothing: it
//! takes the share the client sent):
//!
//! ```
//! use std::sync::Arc;
//! use torsion_reactor::rustls::{self, ClientConfig, RootCertStore};
//! use torsion_reactor::tls_provider;
//!
//! let mut provider = (*tls_provider()).clone();
//! provider.kx_groups.sort_by_key(|group| group.name() != rustls::NamedGroup::X25519);
//! let config = ClientConfig::builder_with_provider(Arc::new(provider))
//!     .with_safe_default_protocol_versions()
//!     .unwrap()
//!     .with_root_certificates(RootCertStore::empty())
//!     .with_no_client_auth();
//! assert_eq!(config.crypto_provider().kx_groups[0].name(), rustls::NamedGroup::X25519);
//! ```
//!
//! ## How a TLS connection ends
//! * `lose_connection` flushes, sends `close_notify`, then the FIN; it does not wait for the
//!   peer's `close_notify` (TLS 1.3 does not require one), and it is aborted if it has not
//!   finished within 30 s ([`set_tls_close_timeout`](torsion_reactor::Reactor::set_tls_close_timeout)).
//! * The peer's `close_notify` is `eof_received`, exactly like a TCP FIN: return `true` to keep
//!   writing (a half-close; TLS 1.3 allows it, and so does rustls under TLS 1.2, though many
//!   TLS 1.2 peers close on their side at once).
//! * A TCP EOF *without* `close_notify` is a truncation: `connection_lost` gets
//!   `DisconnectReason::Tls(TlsFailure::Truncated)`, never `Clean`, since an attacker can cut a
//!   TCP stream but not forge `close_notify`.
//!
//! ## STARTTLS
//! [`Transport::start_tls`](torsion_reactor::Transport::start_tls) upgrades a live
//! connection, on either side. Bytes written before it go out first, in plaintext (the reply
//! "go ahead" must reach the client unencrypted); bytes written after it are encrypted once the
//! handshake completes, and [`Protocol::handshake_completed`](torsion_reactor::Protocol::handshake_completed)
//! tells the protocol when. Plaintext the peer pipelined after its STARTTLS command is never
//! delivered as if it were protected: what is still unread becomes handshake input and fails
//! the handshake; what the protocol already holds (the rest of the current `data_received`
//! slice) it must drop itself.
//!
//! ```
//! use torsion_reactor::{Ctx, Protocol, TlsRole};
//!
//! struct StartTls {
//!     role: TlsRole,
//!     upgraded: bool,
//! }
//! impl Protocol for StartTls {
//!     fn data_received(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
//!         if !self.upgraded && data.starts_with(b"STARTTLS\r\n") {
//!             cx.transport().write(b"220 go ahead\r\n"); // plaintext, before the handshake
//!             self.upgraded = cx.transport().start_tls(self.role.clone()).is_ok();
//!             return; // anything after the command in `data` is dropped, never trusted
//!         }
//!         cx.transport().write(data);
//!     }
//!     fn handshake_completed(&mut self, cx: &mut Ctx<'_>) {
//!         cx.transport().write(b"now encrypted\r\n");
//!     }
//! }
//! ```
//!
//! ## Flow control
//! The write buffer's watermarks count the plaintext the protocol wrote plus the ciphertext
//! not yet on the wire (the TLS layer takes more plaintext only when its own ciphertext is out,
//! at most 64 KiB at a time); `write`'s above-high answer, `pause_producing` and
//! `resume_producing`, and [`write_buffer_len`](torsion_reactor::Transport::write_buffer_len)
//! all count both. So an echo
//! over TLS to a reader that never reads holds at most the high watermark, one read and one
//! TLS batch, as over TCP.
//!
//! ## What a read costs
//! A TLS read puts ciphertext in the loop's read buffer, rustls takes it from there and
//! decrypts each record in place in its own record buffer, and the plaintext is copied back to
//! the front of the loop's buffer, which is what `data_received` gets: torsion allocates
//! nothing per read. rustls 0.23 itself moves each record's plaintext into a fresh `Vec` before
//! handing it out, one allocation per record (16 KiB at most), about one byte allocated per
//! byte read; its unbuffered API does the same in this version, so nothing on our side can
//! remove it. The test `tls_read_alloc` pins the figure, so no copy of ours creeps in on top.
