//! The one shared util of torsion's loopback integration tests (`tests/tests/*.rs`, one file per
//! behaviour):
//!
//! - bounded waits: [`WAIT`], [`run_until`] (turn a reactor until a condition, with a
//!   deadline), [`wait_for`], [`recv`];
//! - a reactor on its own thread: [`ReactorThread`], and [`Server`] for the common case of one
//!   listener on it;
//! - the stream kinds a transport suite runs over: [`Kind`] (TCP on `127.0.0.1:0`, or a Unix
//!   socket at a unique temporary path), [`listen`], a blocking client [`AnyStream`] and
//!   [`connect`], and [`over_kinds!`](crate::over_kinds) to make one test per kind from one body;
//! - `expect_*` helpers for what a client sees: [`expect_closed`], [`expect_eof`],
//!   [`expect_aborted`];
//! - load and measurement: [`Pinger`] (round trips without a thread per peer), [`LoadChild`],
//!   [`Stats`], log capture ([`capture_logs`]), descriptor, CPU and RSS figures, and the
//!   [`serial`] lock for tests that measure process-wide figures;
//! - deterministic bytes ([`pattern`]) and a recording protocol ([`Recorder`]).
//!
//! ```
//! use torsion_tests::pattern;
//!
//! let a = pattern(1, 1024);
//! assert_eq!(a, pattern(1, 1024), "the same seed gives the same bytes");
//! assert_ne!(a, pattern(2, 1024));
//! ```

mod clients;
mod figures;
mod kinds;
mod load;
mod reactor_thread;
mod recording;
pub mod tls;
mod wait;

pub use clients::*;
pub use figures::*;
pub use kinds::*;
pub use load::*;
pub use reactor_thread::*;
pub use recording::*;
pub use wait::*;
