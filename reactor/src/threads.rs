//! Blocking work off the loop: a bounded thread pool owned by the reactor (Twisted's
//! `deferToThread` and `reactor.getThreadPool()`, asyncio's `run_in_executor`).
//!
//! [`LoopCtx::defer_to_thread`] runs a `Send` closure on a worker thread and hands its result
//! to an `on_done` callback **on the loop thread**, through the same wake-up as
//! [`ReactorHandle::call_from_thread`](crate::ReactorHandle::call_from_thread). `on_done` need
//! not be `Send`: it may capture `Rc`s, `ConnId`s, anything the loop owns.
//!
//! ```
//! use torsion_reactor::Reactor;
//!
//! let mut reactor = Reactor::new()?;
//! reactor.call_later(std::time::Duration::ZERO, |cx| {
//!     // A blocking call (a file, a database, a name lookup) stays off the loop.
//!     cx.defer_to_thread(
//!         || std::fs::metadata("/").map(|m| m.is_dir()).unwrap_or(false),
//!         |cx, result| cx.stop_with(result),
//!     );
//! });
//! let result = reactor.run_with_result::<Result<bool, torsion_reactor::JobError>>()?;
//! assert_eq!(result, Some(Ok(true)));
//! # Ok::<(), torsion_reactor::Error>(())
//! ```
//!
//! # Limits
//! At most [`DEFAULT_POOL_SIZE`] threads (Twisted's default; [`Reactor::set_thread_pool_size`](crate::Reactor::set_thread_pool_size))
//! run jobs at once; they start on demand and stay. Jobs beyond them wait in a queue of at
//! most [`DEFAULT_QUEUE_LIMIT`] jobs ([`Reactor::set_thread_pool_queue_limit`](crate::Reactor::set_thread_pool_queue_limit)); a job
//! submitted to a full queue is not run, and its `on_done` gets [`JobError::QueueFull`] (after
//! the submitting callback returns, like every other effect).
//!
//! # Order
//! Results arrive in completion order, not submission order. Each `on_done` runs exactly
//! once.
//!
//! # Panics
//! A panicking job does not kill its worker: the panic is caught and `on_done` gets
//! [`JobError::Panicked`] with the message. A panic in `on_done` is caught and logged like any
//! callback's.
//!
//! # Shutdown
//! A graceful stop cancels the jobs still queued (their `on_done` gets
//! [`JobError::Cancelled`] at once) and waits for the running ones until the shutdown
//! deadline; what is still running then is abandoned (`on_done` gets `Cancelled`; the thread
//! finishes its job in the background, and its result is dropped). Dropping the reactor tells
//! idle workers to exit; it does not wait for busy ones.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::ctx::LoopCtx;
use crate::handle::ReactorHandle;

/// How many worker threads run jobs at once by default (Twisted's thread pool maximum).
pub const DEFAULT_POOL_SIZE: usize = 10;
/// How many jobs may wait for a worker by default.
pub const DEFAULT_QUEUE_LIMIT: usize = 10_000;

/// Why a job's result did not come.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job panicked; the text is the panic's message.
    #[error("the job panicked: {0}")]
    Panicked(String),
    /// The queue was full ([`Reactor::set_thread_pool_queue_limit`](crate::Reactor::set_thread_pool_queue_limit)); the job did not run.
    #[error("the thread pool's queue is full")]
    QueueFull,
    /// The reactor stopped before the job finished (queued jobs are cancelled when a graceful
    /// stop begins, running ones at its deadline).
    #[error("the reactor stopped before the job finished")]
    Cancelled,
    /// A worker thread could not be started.
    #[error("cannot start a worker thread: {0}")]
    Spawn(String),
}

/// A job as the worker sees it: run it, get a boxed result.
type Work = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;
/// A job's completion as the loop sees it.
type Done = Box<dyn FnOnce(&mut LoopCtx<'_>, Result<Box<dyn Any + Send>, JobError>)>;

/// State the loop and the workers share.
struct Queue {
    jobs: VecDeque<(u64, Work)>,
    idle: usize,
    threads: usize,
    closed: bool,
}

struct PoolShared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// The loop's side of the pool: limits, the shared queue, and the completions waiting for
/// their results.
pub(crate) struct ThreadPool {
    shared: Arc<PoolShared>,
    pub(crate) size: usize,
    pub(crate) queue_limit: usize,
    next_id: u64,
    waiting: HashMap<u64, Done>,
}

impl Default for ThreadPool {
    fn default() -> Self {
        ThreadPool {
            shared: Arc::new(PoolShared {
                queue: Mutex::new(Queue { jobs: VecDeque::new(), idle: 0, threads: 0, closed: false }),
                ready: Condvar::new(),
            }),
            size: DEFAULT_POOL_SIZE,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            next_id: 0,
            waiting: HashMap::new(),
        }
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("size", &self.size)
            .field("outstanding", &self.waiting.len())
            .finish()
    }
}

impl ThreadPool {
    /// Jobs submitted whose `on_done` has not run yet.
    pub(crate) fn outstanding(&self) -> usize {
        self.waiting.len()
    }

    /// Queues `work`; returns its id, or the error its `on_done` must get instead.
    fn submit(&mut self, work: Work, done: Done, handle: &ReactorHandle) -> Result<u64, (JobError, Done)> {
        let id = self.next_id;
        self.next_id += 1;
        let mut queue = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.jobs.len() >= self.queue_limit {
            return Err((JobError::QueueFull, done));
        }
        if queue.idle == 0 && queue.threads < self.size {
            let shared = self.shared.clone();
            let handle = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("torsion-pool".into())
                .spawn(move || worker(&shared, &handle));
            match spawned {
                Ok(_) => queue.threads += 1,
                // With no thread at all the job would wait forever.
                Err(e) if queue.threads == 0 => return Err((JobError::Spawn(e.to_string()), done)),
                Err(e) => tracing::warn!(error = %e, "cannot start another pool thread; the job waits"),
            }
        }
        queue.jobs.push_back((id, work));
        drop(queue);
        self.shared.ready.notify_one();
        self.waiting.insert(id, done);
        Ok(id)
    }

    /// Takes the completion of job `id` (`None` if it was cancelled already).
    pub(crate) fn take(&mut self, id: u64) -> Option<Done> {
        self.waiting.remove(&id)
    }

    /// Removes the jobs no worker has started; returns their completions.
    pub(crate) fn cancel_queued(&mut self) -> Vec<Done> {
        let queued: Vec<u64> = {
            let mut queue = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.jobs.drain(..).map(|(id, _)| id).collect()
        };
        queued.into_iter().filter_map(|id| self.waiting.remove(&id)).collect()
    }

    /// Abandons every job still waiting for a result; returns their completions.
    pub(crate) fn cancel_all(&mut self) -> Vec<Done> {
        let mut done = self.cancel_queued();
        done.extend(self.waiting.drain().map(|(_, d)| d));
        done
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.closed = true;
        queue.jobs.clear();
        drop(queue);
        self.shared.ready.notify_all();
    }
}

/// A worker: takes jobs until the pool closes, sends each result to the loop.
fn worker(shared: &PoolShared, handle: &ReactorHandle) {
    loop {
        let (id, work) = {
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.idle += 1;
            loop {
                if queue.closed {
                    queue.idle -= 1;
                    queue.threads -= 1;
                    return;
                }
                if let Some(job) = queue.jobs.pop_front() {
                    queue.idle -= 1;
                    break job;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let result =
            catch_unwind(AssertUnwindSafe(work)).map_err(|payload| JobError::Panicked(panic_text(&*payload)));
        handle.call_from_thread(move |cx| {
            if let Some(done) = cx.core.threads.take(id) {
                done(cx, result);
            }
        });
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}

/// Blocking work from callbacks.
impl LoopCtx<'_> {
    /// Runs `job` on a worker thread of the reactor's pool and `on_done` with its result on
    /// the loop thread, after this callback returns. See the [module docs](crate::threads).
    pub fn defer_to_thread<T, F, D>(&mut self, job: F, on_done: D)
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
        D: FnOnce(&mut LoopCtx<'_>, Result<T, JobError>) + 'static,
    {
        let work: Work = Box::new(move || Box::new(job()) as Box<dyn Any + Send>);
        let done: Done = Box::new(move |cx, result| {
            let result = result.map(|boxed| *boxed.downcast::<T>().expect("a job's result has its own type"));
            on_done(cx, result);
        });
        if self.core.stopping {
            self.call_soon(move |cx| done(cx, Err(JobError::Cancelled)));
            return;
        }
        let handle = self.handle();
        if let Err((error, done)) = self.core.threads.submit(work, done, &handle) {
            self.call_soon(move |cx| done(cx, Err(error)));
        }
    }

    /// Jobs given to [`defer_to_thread`](LoopCtx::defer_to_thread) whose `on_done` has not
    /// run yet.
    pub fn jobs_outstanding(&self) -> usize {
        self.core.threads.outstanding()
    }
}

/// The pool's limits.
impl crate::Reactor {
    /// Sets how many worker threads may run jobs at once (default [`DEFAULT_POOL_SIZE`]; at
    /// least 1). Threads already started stay.
    pub fn set_thread_pool_size(&mut self, threads: usize) {
        self.world.core.threads.size = threads.max(1);
    }

    /// Sets how many jobs may wait for a worker (default [`DEFAULT_QUEUE_LIMIT`]).
    pub fn set_thread_pool_queue_limit(&mut self, jobs: usize) {
        self.world.core.threads.queue_limit = jobs;
    }
}

/// Completions given `Cancelled`, queued as tasks (a graceful stop cancels the queued jobs at
/// its start and abandons the running ones at its deadline).
pub(crate) fn cancelled(done: Vec<Done>) -> impl Iterator<Item = crate::core::Task> {
    done.into_iter().map(|d| {
        crate::core::Task::Call(Box::new(move |cx: &mut LoopCtx<'_>| d(cx, Err(JobError::Cancelled))))
    })
}
