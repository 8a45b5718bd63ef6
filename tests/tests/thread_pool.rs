//! The reactor's thread pool (`LoopCtx::defer_to_thread`): 1,000 jobs with every result on
//! the loop thread, results in completion order, a panicking job, the size bound, a full
//! queue, and graceful shutdown with queued and running jobs.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use torsion_reactor::{JobError, LoopCtx, Reactor};
use torsion_tests::{run_until, WAIT};

/// Results tagged with the job's number.
type Numbered = Rc<RefCell<Vec<(usize, Result<(), JobError>)>>>;

/// Runs `f` in a callback of `reactor` (the pool is reached through a context).
fn in_loop(reactor: &mut Reactor, f: impl FnOnce(&mut LoopCtx<'_>) + 'static) {
    reactor.call_later(Duration::ZERO, f);
}

#[test]
fn a_thousand_jobs_each_deliver_one_result_on_the_loop_thread() {
    let mut reactor = Reactor::new().unwrap();
    let results: Rc<RefCell<Vec<(usize, std::thread::ThreadId)>>> = Rc::default();
    let workers: Arc<Mutex<std::collections::HashSet<std::thread::ThreadId>>> = Arc::default();
    let (sink, seen_workers) = (results.clone(), workers.clone());
    in_loop(&mut reactor, move |cx| {
        for i in 0..1000usize {
            let (sink, workers) = (sink.clone(), seen_workers.clone());
            cx.defer_to_thread(
                move || {
                    workers.lock().unwrap().insert(std::thread::current().id());
                    i * 2
                },
                move |_cx, result| sink.borrow_mut().push((result.unwrap(), std::thread::current().id())),
            );
        }
    });
    let done = results.clone();
    run_until(&mut reactor, "1,000 results", move |_| done.borrow().len() == 1000);
    let me = std::thread::current().id();
    let results = results.borrow();
    assert!(results.iter().all(|&(_, thread)| thread == me), "an on_done ran off the loop thread");
    let mut values: Vec<usize> = results.iter().map(|&(v, _)| v).collect();
    values.sort_unstable();
    assert_eq!(values, (0..1000).map(|i| i * 2).collect::<Vec<_>>(), "each result exactly once");
    let workers = workers.lock().unwrap();
    assert!(!workers.contains(&me), "a job ran on the loop thread");
    assert!(workers.len() <= torsion_reactor::threads::DEFAULT_POOL_SIZE, "{} workers", workers.len());
}

#[test]
fn results_arrive_in_completion_order_not_submission_order() {
    let mut reactor = Reactor::new().unwrap();
    let order: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    // The first job waits until the second job's result has been delivered on the loop.
    let (tx, rx) = mpsc::channel::<()>();
    let log = order.clone();
    in_loop(&mut reactor, move |cx| {
        let first = log.clone();
        cx.defer_to_thread(
            move || rx.recv_timeout(WAIT).is_ok(),
            move |_cx, r| {
                assert_eq!(r, Ok(true));
                first.borrow_mut().push("first submitted")
            },
        );
        let second = log.clone();
        cx.defer_to_thread(
            || (),
            move |_cx, _| {
                second.borrow_mut().push("second submitted");
                tx.send(()).unwrap();
            },
        );
    });
    let done = order.clone();
    run_until(&mut reactor, "both results", move |_| done.borrow().len() == 2);
    assert_eq!(*order.borrow(), ["second submitted", "first submitted"]);
}

#[test]
fn a_panicking_job_reports_an_error_and_the_pool_keeps_working() {
    let mut reactor = Reactor::new().unwrap();
    // One worker: the job after the panic runs on the same thread, so it survived.
    reactor.set_thread_pool_size(1);
    let results: Rc<RefCell<Vec<Result<u32, JobError>>>> = Rc::default();
    let sink = results.clone();
    in_loop(&mut reactor, move |cx| {
        let (a, b) = (sink.clone(), sink.clone());
        cx.defer_to_thread(|| -> u32 { panic!("boom") }, move |_cx, r| a.borrow_mut().push(r));
        cx.defer_to_thread(|| 7u32, move |_cx, r| b.borrow_mut().push(r));
    });
    let done = results.clone();
    run_until(&mut reactor, "two results", move |_| done.borrow().len() == 2);
    assert_eq!(*results.borrow(), [Err(JobError::Panicked("boom".into())), Ok(7)]);
}

/// Threads of this process named `torsion-pool`.
fn pool_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "torsion-pool")
        .count()
}

/// A gate jobs wait at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn wait(&self) {
        let deadline = Instant::now() + WAIT;
        let mut open = self.open.lock().unwrap();
        while !*open && Instant::now() < deadline {
            open = self.changed.wait_timeout(open, WAIT).unwrap().0;
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

#[test]
fn at_most_size_jobs_run_at_once() {
    let mut reactor = Reactor::new().unwrap();
    reactor.set_thread_pool_size(3);
    let gate = Arc::new(Gate::default());
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let finished: Rc<RefCell<usize>> = Rc::default();
    let (g, r, m, f) = (gate.clone(), running.clone(), max_running.clone(), finished.clone());
    in_loop(&mut reactor, move |cx| {
        for _ in 0..20 {
            let (g, r, m, f) = (g.clone(), r.clone(), m.clone(), f.clone());
            cx.defer_to_thread(
                move || {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    g.wait();
                    r.fetch_sub(1, Ordering::SeqCst);
                },
                move |_cx, result| {
                    result.unwrap();
                    *f.borrow_mut() += 1;
                },
            );
        }
    });
    let busy = running.clone();
    run_until(&mut reactor, "three jobs running", move |_| busy.load(Ordering::SeqCst) == 3);
    // Threads start when jobs are submitted: 20 jobs made exactly 3.
    assert_eq!(pool_threads(), 3);
    gate.open();
    let done = finished.clone();
    run_until(&mut reactor, "all 20 jobs", move |_| *done.borrow() == 20);
    assert_eq!(max_running.load(Ordering::SeqCst), 3);
}

#[test]
fn a_full_queue_refuses_the_job_with_an_error() {
    let mut reactor = Reactor::new().unwrap();
    reactor.set_thread_pool_size(1);
    reactor.set_thread_pool_queue_limit(2);
    let gate = Arc::new(Gate::default());
    let results: Numbered = Rc::default();
    let (g, sink) = (gate.clone(), results.clone());
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    in_loop(&mut reactor, move |cx| {
        // One runs (blocked at the gate) once the worker takes it; two wait; a fourth and
        // fifth find the queue full if the worker has not taken the first yet, so wait for
        // the first to start before submitting the rest.
        let (g1, s1, sink1) = (g.clone(), s.clone(), sink.clone());
        cx.defer_to_thread(
            move || {
                s1.fetch_add(1, Ordering::SeqCst);
                g1.wait()
            },
            move |_cx, r| sink1.borrow_mut().push((0, r)),
        );
    });
    let first = started.clone();
    run_until(&mut reactor, "the first job running", move |_| first.load(Ordering::SeqCst) == 1);
    let (g, sink) = (gate.clone(), results.clone());
    in_loop(&mut reactor, move |cx| {
        for i in 1..=3 {
            let (g, sink) = (g.clone(), sink.clone());
            cx.defer_to_thread(move || g.wait(), move |_cx, r| sink.borrow_mut().push((i, r)));
        }
    });
    let refused = results.clone();
    run_until(&mut reactor, "the refusal", move |_| !refused.borrow().is_empty());
    assert_eq!(*results.borrow(), [(3, Err(JobError::QueueFull))]);
    gate.open();
    let done = results.clone();
    run_until(&mut reactor, "the rest", move |_| done.borrow().len() == 4);
    let mut ok: Vec<usize> = results.borrow().iter().filter(|(_, r)| r.is_ok()).map(|&(i, _)| i).collect();
    ok.sort_unstable();
    assert_eq!(ok, [0, 1, 2]);
}

#[test]
fn a_graceful_stop_cancels_queued_jobs_and_waits_for_a_running_one() {
    let mut reactor = Reactor::new().unwrap();
    reactor.set_thread_pool_size(1);
    reactor.set_shutdown_timeout(WAIT);
    let gate = Arc::new(Gate::default());
    let results: Numbered = Rc::default();
    let started = Arc::new(AtomicUsize::new(0));
    let (g, sink, s) = (gate.clone(), results.clone(), started.clone());
    in_loop(&mut reactor, move |cx| {
        for i in 0..4 {
            let (g, sink, s) = (g.clone(), sink.clone(), s.clone());
            let opener = g.clone();
            cx.defer_to_thread(
                move || {
                    s.fetch_add(1, Ordering::SeqCst);
                    g.wait()
                },
                move |_cx, r| {
                    if r == Err(JobError::Cancelled) {
                        opener.open();
                    }
                    sink.borrow_mut().push((i, r))
                },
            );
        }
    });
    let first = started.clone();
    run_until(&mut reactor, "the first job running", move |_| first.load(Ordering::SeqCst) == 1);
    // The stop cancels the three queued jobs at once; the running one finishes (the gate is
    // opened by the first cancelled job's on_done, so after the cancelling) and run returns
    // after it.
    reactor.stop();
    reactor.run().unwrap();
    let results = results.borrow();
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results[..3].iter().all(|(_, r)| *r == Err(JobError::Cancelled)), "{results:?}");
    assert_eq!(results[3], (0, Ok(())), "{results:?}");
    assert_eq!(started.load(Ordering::SeqCst), 1, "a cancelled job ran");
}

#[test]
fn a_job_still_running_at_the_shutdown_deadline_is_abandoned_with_cancelled() {
    let mut reactor = Reactor::new().unwrap();
    reactor.set_shutdown_timeout(Duration::from_millis(100));
    let gate = Arc::new(Gate::default());
    let results: Rc<RefCell<Vec<Result<(), JobError>>>> = Rc::default();
    let started = Arc::new(AtomicUsize::new(0));
    let (g, sink, s) = (gate.clone(), results.clone(), started.clone());
    in_loop(&mut reactor, move |cx| {
        cx.defer_to_thread(
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                g.wait()
            },
            move |_cx, r| sink.borrow_mut().push(r),
        );
    });
    let first = started.clone();
    run_until(&mut reactor, "the job running", move |_| first.load(Ordering::SeqCst) == 1);
    reactor.stop();
    reactor.run().unwrap();
    assert_eq!(*results.borrow(), [Err(JobError::Cancelled)]);
    gate.open();
}
