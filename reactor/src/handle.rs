//! [`ReactorHandle`]: the thread-safe way into a running reactor.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::ctx::LoopCtx;

/// A callback sent from another thread.
pub(crate) type ThreadCall = Box<dyn FnOnce(&mut LoopCtx<'_>) + Send>;

/// State shared between the reactor and its handles.
pub(crate) struct Shared {
    calls: Mutex<Vec<ThreadCall>>,
    /// Set while `calls` is non-empty, so the loop can check without locking.
    pending: AtomicBool,
    stop: AtomicBool,
    waker: mio::Waker,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> Shared {
        Shared {
            calls: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            waker,
        }
    }

    pub(crate) fn has_calls(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes every queued call, in the order they were sent.
    pub(crate) fn take_calls(&self) -> Vec<ThreadCall> {
        if !self.has_calls() {
            return Vec::new();
        }
        let mut calls = self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *calls)
    }

    pub(crate) fn take_stop(&self) -> bool {
        self.stop.swap(false, Ordering::AcqRel)
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::warn!(error = %e, "waking the reactor failed");
        }
    }
}

/// A `Send + Clone` handle to a reactor, usable from any thread.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::Reactor;
///
/// let mut reactor = Reactor::new().unwrap();
/// let handle = reactor.handle();
/// let worker = std::thread::spawn(move || {
///     handle.call_from_thread(|cx| cx.stop_reactor());
/// });
/// reactor.run().unwrap(); // returns once the thread's callback stopped it
/// worker.join().unwrap();
/// ```
#[derive(Clone)]
pub struct ReactorHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ReactorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorHandle").finish_non_exhaustive()
    }
}

impl ReactorHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> ReactorHandle {
        ReactorHandle { shared }
    }

    /// Queues `f` to run on the reactor thread, in order, and wakes the loop. A panic in `f`
    /// is caught and logged.
    pub fn call_from_thread(&self, f: impl FnOnce(&mut LoopCtx<'_>) + Send + 'static) {
        let was_empty = {
            let mut calls = self.shared.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            calls.push(Box::new(f));
            !self.shared.pending.swap(true, Ordering::AcqRel)
        };
        if was_empty {
            self.shared.wake();
        }
    }

    /// Requests a graceful stop, as [`Reactor::stop`](crate::Reactor::stop).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_send_sync_and_clone() {
        fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
        assert_send_sync_clone::<ReactorHandle>();
    }
}
