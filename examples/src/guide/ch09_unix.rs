//! # Chapter 9: Unix sockets
//!
//! Everything in the previous chapters works over Unix stream sockets unchanged: the same
//! protocols, factories, framers, policies and flow control. Only the address differs. Use
//! them for local services: no port to allocate, file permissions for access control, and
//! the kernel tells you who the peer is.
//!
//! ## Addresses
//! Peers and local ends are one [`Address`] type, parsed and displayed the way users write
//! them. Every example binary takes all three forms in `--listen` / `--connect` / `--target`.
//!
//! ```
//! use torsion_reactor::{Address, UnixAddr};
//!
//! let tcp: Address = "127.0.0.1:8000".parse().unwrap();
//! let path: Address = "unix:/run/app.sock".parse().unwrap();
//! let abstract_name: Address = "unix:@app".parse().unwrap(); // Linux: a name, no file
//! assert_eq!(tcp.inet().unwrap().port(), 8000);
//! assert_eq!(path.unix().and_then(UnixAddr::as_path), Some(std::path::Path::new("/run/app.sock")));
//! assert_eq!(path.to_string(), "unix:/run/app.sock");
//! assert!(matches!(abstract_name.unix(), Some(UnixAddr::Abstract(_))));
//! assert!("unix:".parse::<Address>().is_err());
//! ```
//!
//! [`Reactor::listen`] and [`Reactor::connect`] take any `Address`, so a program can accept
//! both kinds with one line; [`Reactor::listen_unix`] and [`Reactor::connect_unix`] take a
//! path.
//!
//! ## A server and a client on a socket file
//! This runs for real, in a temporary directory. The server learns who connected from
//! [`peer_credentials`](torsion_reactor::Transport::peer_credentials) (the peer process's
//! pid, uid and gid, from the kernel: `SO_PEERCRED`), and the socket file is made
//! owner-only with [`UnixListenOptions::mode`]:
//!
//! ```
//! use std::os::unix::fs::{FileTypeExt, PermissionsExt};
//! use torsion_reactor::{Ctx, Protocol, Reactor, UnixAddr, UnixListenOptions};
//!
//! /// Tells each client its uid, then closes.
//! struct WhoAmI;
//! impl Protocol for WhoAmI {
//!     fn connection_made(&mut self, cx: &mut Ctx<'_>) {
//!         let creds = cx.transport().peer_credentials().expect("a Unix peer");
//!         cx.transport().write(format!("uid {}\n", creds.uid).as_bytes());
//!         cx.transport().lose_connection();
//!     }
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, _data: &[u8]) {}
//! }
//!
//! /// Reads the answer and stops the reactor with it.
//! struct Ask(Vec<u8>);
//! impl Protocol for Ask {
//!     fn data_received(&mut self, _cx: &mut Ctx<'_>, data: &[u8]) {
//!         self.0.extend_from_slice(data);
//!     }
//!     fn connection_lost(&mut self, cx: &mut Ctx<'_>, _reason: torsion_reactor::DisconnectReason) {
//!         cx.stop_with(String::from_utf8_lossy(&self.0).into_owned());
//!     }
//! }
//!
//! let dir = std::env::temp_dir().join(format!("torsion-guide-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("whoami.sock");
//!
//! let mut reactor = Reactor::new()?;
//! let options = UnixListenOptions::default().mode(Some(0o600)); // default 0o666, as Twisted
//! let port = reactor.listen_unix_with(&UnixAddr::Path(path.clone()), &options, |_| Some(WhoAmI))?;
//! assert_eq!(port.local_addr().to_string(), format!("unix:{}", path.display()));
//! let meta = std::fs::metadata(&path).unwrap();
//! assert!(meta.file_type().is_socket());
//! assert_eq!(meta.permissions().mode() & 0o777, 0o600);
//!
//! reactor.connect_unix(&path, |_| Ask(Vec::new()))?;
//! let answer: Option<String> = reactor.run_with_result()?;
//! assert!(answer.unwrap().starts_with("uid "));
//! assert!(!path.exists()); // the listener removed its socket file when the reactor stopped
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! ## Stale socket files
//! A socket file outlives the process that made it if that process is killed. Listening
//! again on the path then just works: a socket file nothing accepts on is *stale* and is
//! replaced. A path where a live server answers is refused with
//! [`TransportError::AddressInUse`](torsion_reactor::TransportError::AddressInUse) and the
//! other server's file is left alone; a path that is not a socket at all (a typo pointing at
//! your data) is refused and never deleted. The file is removed when the listener stops, if
//! it is still the one this listener created. (`UnixListenOptions::lockfile(true)` adds
//! Twisted's pid lock file, for a stricter "one server per path".)
//!
//! ```
//! use torsion_reactor::testing::Upper;
//! use torsion_reactor::{Error, Reactor, TransportError};
//!
//! let dir = std::env::temp_dir().join(format!("torsion-guide-stale-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("app.sock");
//!
//! // A server that died: its socket file is still there.
//! drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
//! assert!(path.exists());
//!
//! let mut reactor = Reactor::new()?;
//! reactor.listen_unix(&path, |_| Some(Upper))?; // stale: replaced
//!
//! // A second server on the same path: refused, the first one's file untouched.
//! let mut other = Reactor::new()?;
//! let refused = other.listen_unix(&path, |_| Some(Upper)).unwrap_err();
//! assert!(matches!(refused, Error::Transport(TransportError::AddressInUse { .. })));
//! assert!(path.exists());
//!
//! // Not a socket: refused, never deleted.
//! let data = dir.join("data.txt");
//! std::fs::write(&data, "precious").unwrap();
//! assert!(other.listen_unix(&data, |_| Some(Upper)).is_err());
//! assert_eq!(std::fs::read_to_string(&data).unwrap(), "precious");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! ## From the shell
//! ```sh
//! cargo run -p torsion-examples --bin echo-server -- --listen unix:/tmp/echo.sock
//! nc -U /tmp/echo.sock                     # or: socat - UNIX-CONNECT:/tmp/echo.sock
//! cargo run -p torsion-examples --bin proxy -- --listen 127.0.0.1:8002 --target unix:/tmp/echo.sock
//! ```
//!
//! Abstract names (`unix:@NAME`, Linux only) have no file, so nothing is stale and there are
//! no permissions: any process in the same network namespace can connect. Check
//! `peer_credentials` if that matters.
//!
//! That is the end of the chapters. For the mapping from other frameworks, see
//! [coming from Twisted](super::from_twisted) and
//! [coming from tokio or asyncio](super::from_tokio).
//!
//! [`Address`]: torsion_reactor::Address
//! [`Reactor::listen`]: torsion_reactor::Reactor::listen
//! [`Reactor::connect`]: torsion_reactor::Reactor::connect
//! [`Reactor::listen_unix`]: torsion_reactor::Reactor::listen_unix
//! [`Reactor::connect_unix`]: torsion_reactor::Reactor::connect_unix
//! [`UnixListenOptions::mode`]: torsion_reactor::UnixListenOptions::mode
