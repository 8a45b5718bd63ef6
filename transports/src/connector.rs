//! Outgoing connections of every stream kind: start a non-blocking connect, follow its
//! progress ([`StreamSocket::connect_progress`]), and establish it (socket options set once,
//! local address read once).

use crate::address::Address;
use crate::socket::{BoxedStream, StreamSocket};
use crate::TransportError;

/// Starts a non-blocking connect to `addr` (TCP or Unix). Completion is reported by
/// writability, then [`StreamSocket::connect_progress`].
pub fn start_stream_connect(addr: &Address) -> Result<BoxedStream, TransportError> {
    match addr {
        Address::Inet(inet) => Ok(Box::new(crate::tcp::start_connect(*inet)?)),
        Address::Unix(unix) => Ok(Box::new(crate::unix::connect_unix(unix)?)),
    }
}

/// A connection is established (its connect completed): sets TCP_NODELAY once if asked
/// ([`apply_nodelay`]) and returns our local address.
pub fn establish(socket: &dyn StreamSocket, nodelay: bool) -> Option<Address> {
    apply_nodelay(socket, nodelay);
    socket.local_address()
}

/// Sets TCP_NODELAY on a new connection if asked (best effort: a failure leaves Nagle on,
/// nothing worse). Accepting calls it alone: the local address is read lazily there.
pub fn apply_nodelay(socket: &dyn StreamSocket, nodelay: bool) {
    if nodelay {
        let _ = socket.set_nodelay(true);
    }
}
