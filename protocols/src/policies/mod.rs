//! Policies from Twisted's `policies.py`, as wrappers that compose around any [`Protocol`] or
//! [`Factory`]:
//!
//! - [`TimeoutProtocol`] / [`TimeoutFactory`]: close a connection idle for too long
//!   (`TimeoutMixin`, `TimeoutFactory`), changeable at run time through a [`TimeoutHandle`];
//! - [`LimitConnectionsFactory`]: cap open connections in total and per peer address
//!   (`LimitTotalConnectionsFactory`, `LimitConnectionsByPeer`);
//! - [`ThrottlingFactory`]: cap read and write bandwidth with token buckets refilled every
//!   few milliseconds (`ThrottlingFactory`).
//!
//! Every limit has a default (a `DEFAULT_*` constant, documented with its reasoning), a
//! setter (`set_*`, through `&mut`, chainable) and a builder form (`with_*`, by value, for
//! building a wrapper in one expression). Wrappers nest: each one is a [`Factory`] around a
//! [`Factory`], and the protocols they build pass every callback they do not handle through
//! to the wrapped protocol, including `timer_fired` for timers the wrapped protocol set. They
//! are [`Wrapper`]s, so forwarding is the reactor's one mechanism, not seven hand-written
//! methods per wrapper (`tests/wrappers.rs` checks every callback reaches the inner protocol).
//!
//! ```
//! use std::time::Duration;
//! use torsion_protocols::policies::{LimitConnectionsFactory, ThrottlingFactory, TimeoutFactory};
//! use torsion_protocols::Echo;
//! use torsion_reactor::testing::Harness;
//! use torsion_reactor::DisconnectReason;
//!
//! let echo = |_| Some(Echo);
//! let timeout = TimeoutFactory::new(echo).with_timeout(Some(Duration::from_secs(60)));
//! let throttle =
//!     ThrottlingFactory::new(timeout).with_read_limit(Some(1 << 20)).with_write_limit(Some(1 << 20));
//! let mut factory =
//!     LimitConnectionsFactory::new(throttle).with_max_connections(Some(1000)).with_max_per_peer(Some(10));
//!
//! let mut h = Harness::new();
//! let id = h.accept(&mut factory).unwrap();
//! h.feed(id, b"hello");
//! assert_eq!(h.take_written(id), b"hello");
//! h.advance(Duration::from_secs(60));
//! assert_eq!(h.disconnect_reason(id), Some(DisconnectReason::TimedOut));
//! ```
//!
//! [`Protocol`]: torsion_reactor::Protocol
//! [`Factory`]: torsion_reactor::Factory
//! [`Wrapper`]: torsion_reactor::Wrapper

mod limits;
mod throttle;
mod timeout;

pub use limits::{ConnectionCounts, LimitConnectionsFactory, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_PEER};
pub use throttle::{ThrottlingFactory, DEFAULT_BURST, DEFAULT_THROTTLE_INTERVAL};
pub use timeout::{
    TimeoutFactory, TimeoutHandle, TimeoutProtocol, DEFAULT_ABORT_AFTER, DEFAULT_IDLE_TIMEOUT,
};
