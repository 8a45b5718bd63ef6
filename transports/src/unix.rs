//! Unix stream sockets: listening on a path or a Linux abstract name (with Twisted's `mode`
//! and `lockfile` options), non-blocking connects, and the peer's credentials.
//!
//! ```
//! use std::io::{Read, Write};
//! use torsion_transports::{bind_unix_listener, connect_unix, UnixAddr, UnixListenOptions};
//!
//! let name = format!("torsion-doc-{}", std::process::id());
//! let addr = UnixAddr::Abstract(name.into_bytes());
//! let listener = bind_unix_listener(&addr, &UnixListenOptions::default()).unwrap();
//! let mut client = connect_unix(&addr).unwrap();
//! // A Unix connect completes at once: the connection is already queued on the listener.
//! let (mut server, _peer) = listener.accept().unwrap();
//! client.write_all(b"hi").unwrap();
//! let mut buf = [0; 2];
//! server.read_exact(&mut buf).unwrap();
//! assert_eq!(&buf, b"hi");
//! ```
//!
//! # Socket files
//!
//! A listener on a path owns the socket file it created, and nothing else:
//!
//! - a file already at the path that is not a socket is refused
//!   ([`TransportError::NotASocket`]) and left alone;
//! - a socket file that a live server answers on is refused ([`TransportError::AddressInUse`])
//!   and left alone (removing it, as cpython#121252 did, silently detaches a running server);
//! - a socket file nobody accepts on (a connect is refused: the server that made it is gone) is
//!   stale, and replaced;
//! - on close or drop the file is removed only if the path still names the file this listener
//!   bound (same device and inode): a server that replaced it since keeps its file.
//!
//! The liveness probe is a real connect: the live server sees a connection that closes at once.
//!
//! # Abstract names
//!
//! [`UnixAddr::Abstract`] binds in Linux's abstract namespace: there is no file, so no mode, no
//! stale file and nothing to clean up; the name is freed when the socket closes.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::address::{Address, UnixAddr, UNIX_PATH_MAX};
use crate::connection::Socket as TransportSocket;
use crate::socket::{ConnectProgress, PeerCredentials, StreamSocket};
use crate::tcp::DEFAULT_BACKLOG;
use crate::TransportError;

/// The permissions given to a listener's socket file by default: `0o666`, as Twisted's
/// `listenUNIX(mode=0o666)`.
pub const DEFAULT_UNIX_MODE: u32 = 0o666;

/// How a Unix listening socket is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixListenOptions {
    /// Listen backlog (default 1024). When it is full, a client's non-blocking connect fails
    /// with `WouldBlock` (see [`connect_unix`]).
    pub backlog: i32,
    /// Permissions for the socket file, applied with `chmod` after binding (default
    /// `Some(0o666)`, Twisted's default: any local user who can reach the directory may
    /// connect). Connecting needs write permission on the file, so `Some(0o600)` limits it to
    /// the owner. Because the mode is set explicitly, the process umask does not matter;
    /// `None` keeps the mode the kernel gave the file (`0o777` less the umask). Between the
    /// bind and the `chmod` the file has that umask-derived mode: to be strict from the first
    /// instant, put the socket in a directory only its users can enter. Ignored for abstract
    /// names (there is no file).
    pub mode: Option<u32>,
    /// Twisted's `lockfile=1` (default off): hold `PATH.lock`, a file holding our pid, for as
    /// long as the listener lives, so a second server started on the same path fails with
    /// [`TransportError::Locked`] before touching the socket file. A lock whose pid is not a
    /// live process (or is not a pid at all) is stale and replaced. Ignored for abstract names.
    ///
    /// The lock is advisory and pid-based: the lock file is created with `O_EXCL` and the pid
    /// written just after, so a process that looks at it in that instant sees no pid and takes
    /// the lock as stale; and a pid reused by an unrelated process keeps a stale lock alive.
    pub lockfile: bool,
}

impl Default for UnixListenOptions {
    fn default() -> Self {
        UnixListenOptions { backlog: DEFAULT_BACKLOG, mode: Some(DEFAULT_UNIX_MODE), lockfile: false }
    }
}

impl UnixListenOptions {
    /// Sets the backlog.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Sets the socket file's permissions (`None`: leave the kernel's umask-derived mode).
    pub fn mode(mut self, mode: Option<u32>) -> Self {
        self.mode = mode;
        self
    }

    /// Sets whether a `PATH.lock` lock file is held.
    pub fn lockfile(mut self, on: bool) -> Self {
        self.lockfile = on;
        self
    }
}

/// A file's identity: the same (device, inode) pair means the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }
}

/// Removes `path` if it is still the file `id` (and not, say, a file another server put there
/// since). Returns whether it removed it; a file already gone is not an error.
fn remove_if_same(path: &Path, id: FileId) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if FileId::of(&meta) == id => match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        Ok(_) => {
            tracing::debug!(path = %path.display(), "file was replaced by another; leaving it");
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A held `PATH.lock`: removed (if still ours) when dropped.
#[derive(Debug)]
struct LockFile {
    path: PathBuf,
    /// The open lock file and its identity, until released. Keeping it open keeps its inode
    /// allocated, so no other file can take the same (device, inode) while we hold it.
    held: Option<(fs::File, FileId)>,
}

/// How many times a stale lock is replaced before giving up (another process keeps racing us).
const LOCK_ATTEMPTS: usize = 8;

impl LockFile {
    fn acquire(lock_path: PathBuf) -> Result<LockFile, TransportError> {
        let fail =
            |path: &Path, source: io::Error| TransportError::LockFile { lock_path: path.to_owned(), source };
        for _ in 0..LOCK_ATTEMPTS {
            match fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&lock_path) {
                Ok(file) => {
                    let id = match file.metadata() {
                        Ok(meta) => FileId::of(&meta),
                        Err(e) => {
                            // Created with O_EXCL a moment ago: ours to remove.
                            let _ = fs::remove_file(&lock_path);
                            return Err(fail(&lock_path, e));
                        }
                    };
                    if let Err(e) = (&file).write_all(std::process::id().to_string().as_bytes()) {
                        let _ = remove_if_same(&lock_path, id);
                        return Err(fail(&lock_path, e));
                    }
                    tracing::debug!(lock = %lock_path.display(), "lock file acquired");
                    return Ok(LockFile { path: lock_path, held: Some((file, id)) });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let owner = match fs::read(&lock_path) {
                        Ok(bytes) => lock_owner(&bytes),
                        // Released between our open and our read: try again.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(fail(&lock_path, e)),
                    };
                    if let Some(pid) = owner.filter(|&pid| process_alive(pid)) {
                        return Err(TransportError::Locked { lock_path, pid });
                    }
                    tracing::debug!(lock = %lock_path.display(), ?owner, "replacing a stale lock file");
                    match fs::remove_file(&lock_path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(fail(&lock_path, e)),
                    }
                }
                Err(e) => return Err(fail(&lock_path, e)),
            }
        }
        Err(fail(
            &lock_path,
            io::Error::new(io::ErrorKind::AlreadyExists, "the lock file kept reappearing while replacing it"),
        ))
    }

    /// Removes the lock file if it is still the one we created (checked while it is still
    /// open), then closes it. Idempotent.
    fn release(&mut self) -> io::Result<()> {
        match self.held.take() {
            Some((file, id)) => {
                let removed = remove_if_same(&self.path, id).map(drop);
                drop(file);
                removed
            }
            None => Ok(()),
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::debug!(lock = %self.path.display(), error = %e, "cannot remove the lock file");
        }
    }
}

/// The pid a lock file names, if its contents are one.
fn lock_owner(contents: &[u8]) -> Option<u32> {
    std::str::from_utf8(contents).ok()?.trim().parse::<u32>().ok().filter(|&pid| pid != 0)
}

/// Whether a process with this pid exists (in our pid namespace). Without a mounted `/proc`
/// nothing can be told, and the lock is taken as held rather than broken.
fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists() || !Path::new("/proc/self").exists()
}

/// A non-blocking Unix listening socket, built by [`bind_unix_listener`].
///
/// It registers with mio directly (it implements [`mio::event::Source`]). Dropping it, or
/// [`close`](Self::close), removes its socket file if the path still names the file it bound,
/// and its lock file.
#[derive(Debug)]
pub struct UnixListenerSocket {
    listener: UnixListener,
    addr: UnixAddr,
    /// The socket file this listener created, and its identity.
    file: Option<(PathBuf, FileId)>,
    lock: Option<LockFile>,
}

impl UnixListenerSocket {
    /// Wraps a listening socket someone else created (socket activation): it is never
    /// unlinked by us. The socket must be non-blocking already.
    pub fn adopt(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListenerSocket> {
        let addr = UnixAddr::from_std(&listener.local_addr()?);
        Ok(UnixListenerSocket { listener: UnixListener::from_std(listener), addr, file: None, lock: None })
    }

    /// The address it listens on, as given to [`bind_unix_listener`] (a relative path stays
    /// relative, and is resolved again against the current directory when the file is removed).
    pub fn local_addr(&self) -> &UnixAddr {
        &self.addr
    }

    /// Accepts one queued connection: a non-blocking stream and its peer's address (usually
    /// [`UnixAddr::Unnamed`]: clients rarely bind). `WouldBlock` when none is queued.
    pub fn accept(&self) -> io::Result<(UnixStream, UnixAddr)> {
        let (stream, peer) = self.listener.accept()?;
        Ok((stream, UnixAddr::from_std(&peer)))
    }

    /// The mio listener.
    pub fn socket(&self) -> &UnixListener {
        &self.listener
    }

    /// The mio listener, mutably (for registration).
    pub fn socket_mut(&mut self) -> &mut UnixListener {
        &mut self.listener
    }

    /// Closes the listener, removing its socket file (if the path still names the file it
    /// bound) and its lock file, and reports a failure to remove them, which dropping it
    /// cannot.
    pub fn close(mut self) -> io::Result<()> {
        self.cleanup()
    }

    /// Removes the files; idempotent. Runs while the socket is still open, which makes the
    /// identity check sound: a bound socket holds a reference to its file's inode, so even
    /// if our file was unlinked, its inode number cannot be reused by a replacement yet; and
    /// no other server can take our (live) file for stale and replace it between the check and
    /// the unlink.
    fn cleanup(&mut self) -> io::Result<()> {
        let file = match self.file.take() {
            Some((path, id)) => {
                let removed = remove_if_same(&path, id);
                tracing::debug!(path = %path.display(), ?removed, "unix listener closed");
                removed.map(drop)
            }
            None => Ok(()),
        };
        let lock = self.lock.take().map_or(Ok(()), |mut lock| lock.release());
        file.and(lock)
    }
}

impl Drop for UnixListenerSocket {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::debug!(addr = %self.addr, error = %e, "cannot remove the socket file");
        }
    }
}

impl mio::event::Source for UnixListenerSocket {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        self.listener.register(registry, token, interests)
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        self.listener.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.listener.deregister(registry)
    }
}

/// Fails with [`TransportError::UnixPathTooLong`] if a path or abstract name of `len` bytes
/// does not fit in `sun_path`.
fn check_len(addr: &UnixAddr, len: usize) -> Result<(), TransportError> {
    if len > UNIX_PATH_MAX {
        return Err(TransportError::UnixPathTooLong { addr: addr.clone(), len, max: UNIX_PATH_MAX });
    }
    Ok(())
}

/// Rejects paths the kernel would read as something else: empty (autobind), or holding a NUL
/// byte (truncated there, or abstract if it comes first).
fn check_path(path: &Path) -> io::Result<()> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a Unix socket path cannot be empty"));
    }
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a Unix socket path cannot contain a NUL byte",
        ));
    }
    Ok(())
}

/// socket2's form of an abstract name: a path whose first byte is NUL.
fn abstract_sockaddr(name: &[u8]) -> io::Result<SockAddr> {
    let mut bytes = Vec::with_capacity(name.len() + 1);
    bytes.push(0);
    bytes.extend_from_slice(name);
    SockAddr::unix(OsStr::from_bytes(&bytes))
}

/// A bound, not yet listening, non-blocking Unix stream socket.
fn bound_socket(addr: &SockAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Binds a non-blocking Unix listening socket with the given backlog.
///
/// - A [`UnixAddr::Path`]: see the [module docs](self) for what happens to a file already at the
///   path. With [`UnixListenOptions::lockfile`], `PATH.lock` is taken first. After binding,
///   [`UnixListenOptions::mode`] is applied.
/// - An [`UnixAddr::Abstract`] name binds in Linux's abstract namespace (no file; `mode` and
///   `lockfile` do not apply). A name already bound is [`TransportError::AddressInUse`].
/// - [`UnixAddr::Unnamed`] is refused with [`TransportError::UnnamedUnixAddress`].
///
/// A path or name longer than [`UNIX_PATH_MAX`] bytes is [`TransportError::UnixPathTooLong`].
pub fn bind_unix_listener(
    addr: &UnixAddr,
    options: &UnixListenOptions,
) -> Result<UnixListenerSocket, TransportError> {
    let bind_error = |source: io::Error| TransportError::BindUnix { addr: addr.clone(), source };
    match addr {
        UnixAddr::Unnamed => Err(TransportError::UnnamedUnixAddress),
        UnixAddr::Abstract(name) => {
            check_len(addr, name.len())?;
            let socket = abstract_sockaddr(name).and_then(|sa| bound_socket(&sa)).map_err(|e| {
                // Abstract names have no stale leftovers: in use means a live socket holds it.
                if e.kind() == io::ErrorKind::AddrInUse {
                    TransportError::AddressInUse { addr: Address::Unix(addr.clone()) }
                } else {
                    bind_error(e)
                }
            })?;
            socket.listen(options.backlog).map_err(bind_error)?;
            tracing::debug!(%addr, "unix listener bound");
            Ok(UnixListenerSocket {
                listener: UnixListener::from_std(socket.into()),
                addr: addr.clone(),
                file: None,
                lock: None,
            })
        }
        UnixAddr::Path(path) => {
            check_len(addr, path.as_os_str().len())?;
            check_path(path).map_err(bind_error)?;
            let lock = if options.lockfile {
                let mut lock_path = path.clone().into_os_string();
                lock_path.push(".lock");
                Some(LockFile::acquire(lock_path.into())?)
            } else {
                None
            };
            // From here on, an early return drops `lock`, which removes the lock file.
            clear_stale_socket(addr, path)?;
            let socket = SockAddr::unix(path).and_then(|sa| bound_socket(&sa)).map_err(bind_error)?;
            let id = fs::symlink_metadata(path).map(|meta| FileId::of(&meta)).map_err(bind_error)?;
            // The file is ours now: dropping `listener` on a later failure removes it (and only
            // it, by identity).
            let listener = UnixListenerSocket {
                listener: UnixListener::from_std(socket.into()),
                addr: addr.clone(),
                file: Some((path.clone(), id)),
                lock,
            };
            if let Some(mode) = options.mode {
                fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(bind_error)?;
            }
            SockRef::from(&listener.listener).listen(options.backlog).map_err(bind_error)?;
            tracing::debug!(%addr, "unix listener bound");
            Ok(listener)
        }
    }
}

/// Clears the way for a bind at `path`: nothing there, or a stale socket file (removed).
/// Refuses a file that is not a socket and a socket a live server answers on, leaving both
/// alone.
fn clear_stale_socket(addr: &UnixAddr, path: &Path) -> Result<(), TransportError> {
    let bind_error = |source: io::Error| TransportError::BindUnix { addr: addr.clone(), source };
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(bind_error(e)),
    };
    // A symbolic link is refused too, even to a socket: what it points at is not ours to judge.
    if !meta.file_type().is_socket() {
        return Err(TransportError::NotASocket { path: path.to_owned() });
    }
    // A non-blocking probe: a Unix connect completes (or fails) at once, and cannot hang on a
    // live server whose backlog is full (that is `WouldBlock`, and means live).
    match UnixStream::connect(path) {
        Ok(_probe) => Err(TransportError::AddressInUse { addr: Address::Unix(addr.clone()) }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::EPROTOTYPE) => {
            // A full backlog, or a live socket of another type (datagram, seqpacket).
            Err(TransportError::AddressInUse { addr: Address::Unix(addr.clone()) })
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // Nobody accepts: the server that bound it is gone. Remove it, if it is still the
            // file we looked at.
            tracing::debug!(path = %path.display(), "removing a stale socket file");
            remove_if_same(path, FileId::of(&meta)).map_err(bind_error)?;
            Ok(())
        }
        // Removed between our look and our probe: the path is free.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // Permission denied and the like: we cannot tell whether it is live, so leave it.
        Err(e) => Err(bind_error(e)),
    }
}

/// Starts a non-blocking connect to a Unix address. A Unix connect completes at once, so the
/// stream is usually connected on return; [`unix_connect_progress`] confirms it after the
/// first writable event, as for TCP.
///
/// # Errors
///
/// - [`TransportError::UnixPathTooLong`] for a path or name longer than [`UNIX_PATH_MAX`];
/// - [`TransportError::UnnamedUnixAddress`] for [`UnixAddr::Unnamed`];
/// - [`TransportError::ConnectUnix`] otherwise: `NotFound` (no such file), `ConnectionRefused`
///   (a stale socket file, or an abstract name nobody listens on), `PermissionDenied`, and
///   `WouldBlock`: Linux fails a non-blocking Unix connect with `EAGAIN` when the listener's
///   backlog is full, instead of queueing it. It is reported as an error, not as a connect in
///   progress: nothing would ever complete it, so the caller retries later or gives up.
pub fn connect_unix(addr: &UnixAddr) -> Result<UnixStream, TransportError> {
    let connect_error = |source: io::Error| TransportError::ConnectUnix { addr: addr.clone(), source };
    match addr {
        UnixAddr::Unnamed => Err(TransportError::UnnamedUnixAddress),
        UnixAddr::Path(path) => {
            check_len(addr, path.as_os_str().len())?;
            check_path(path).map_err(connect_error)?;
            UnixStream::connect(path).map_err(connect_error)
        }
        UnixAddr::Abstract(name) => {
            check_len(addr, name.len())?;
            addr.to_std().and_then(|sa| UnixStream::connect_addr(&sa)).map_err(connect_error)
        }
    }
}

/// Checks a connecting Unix stream after an event, as [`connect_progress`](crate::connect_progress)
/// does for TCP: `take_error`, then `peer_addr` (`NotConnected` means "not yet").
pub fn unix_connect_progress(stream: &UnixStream) -> ConnectProgress {
    ConnectProgress::check(stream.take_error(), stream.peer_addr())
}

/// Unix stream sockets as transports.
///
/// A Unix socket has no reset: there is no RST to send, so `set_abortive_close` does nothing
/// and an abort is simply a close (after the write buffer is dropped). The peer sees end of
/// file, not `ConnectionReset`, and data it had not read yet stays readable.
impl TransportSocket for UnixStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        UnixStream::shutdown(&*self, std::net::Shutdown::Write)
    }

    fn set_abortive_close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Unix stream sockets in the event loop. TCP_NODELAY and keep-alive do not apply (the
/// defaults: no-ops); the local address is usually [`UnixAddr::Unnamed`] for a client.
impl StreamSocket for UnixStream {
    fn local_address(&self) -> Option<Address> {
        self.local_addr().ok().map(|addr| Address::Unix(UnixAddr::from_std(&addr)))
    }

    fn connect_progress(&self) -> ConnectProgress {
        unix_connect_progress(self)
    }

    fn peer_credentials(&self) -> Option<PeerCredentials> {
        peer_credentials(self).ok()
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// The credentials of the process at the other end of a connected Unix stream
/// (`SO_PEERCRED`), as the kernel recorded them when the connection was made (the client's at
/// its `connect`, the server's at its `listen`, either end's at `socketpair`), not as they are
/// now: effective uid and gid, and the pid (`None` when the kernel reports 0, for a peer in a
/// pid namespace ours cannot see).
pub fn peer_credentials(stream: &UnixStream) -> io::Result<PeerCredentials> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok(PeerCredentials { pid: Some(cred.pid()).filter(|&pid| pid != 0), uid: cred.uid(), gid: cred.gid() })
}
