//! Child processes: `spawn_process` and the `ProcessProtocol` contract with real children
//! (`cat`, `sh`, `yes | head`, `sleep`): byte-exact stdout, exit statuses, signals, a missing
//! program, a grandchild holding stdout open, many children with no zombies and no leaked
//! descriptors, and the graceful-shutdown policy (close stdin, SIGKILL at the deadline).

use std::cell::RefCell;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion_reactor::{Error, ProcessCtx, ProcessProtocol, Reactor, Signal};
use torsion_tests::{run_until, WAIT};

/// What a [`Recorder`] saw.
#[derive(Default)]
struct Log {
    events: Vec<&'static str>,
    out: Vec<u8>,
    err: Vec<u8>,
    pid: u32,
    exited: Option<ExitStatus>,
    ended: Option<ExitStatus>,
    /// When `process_exited` and `process_ended` arrived.
    exited_at: Option<Instant>,
    ended_at: Option<Instant>,
    above_high_on_write: bool,
}

type Shared = Rc<RefCell<Log>>;

/// Records every callback; writes `input` at `connection_made`, then closes stdin (unless
/// `keep_stdin`); sends `signal` at `connection_made` when given.
struct Recorder {
    log: Shared,
    input: Vec<u8>,
    keep_stdin: bool,
    /// Close stdin at `resume_producing` (the buffer drained) instead of at once.
    close_on_resume: bool,
    signal: Option<Signal>,
}

impl Recorder {
    fn new(log: &Shared) -> Recorder {
        Recorder {
            log: log.clone(),
            input: Vec::new(),
            keep_stdin: false,
            close_on_resume: false,
            signal: None,
        }
    }
}

impl ProcessProtocol for Recorder {
    fn connection_made(&mut self, cx: &mut ProcessCtx<'_>) {
        let mut log = self.log.borrow_mut();
        log.events.push("connection_made");
        log.pid = cx.pid();
        if !self.input.is_empty() {
            log.above_high_on_write = cx.write(&self.input);
        }
        if !self.keep_stdin && !self.close_on_resume {
            cx.close_stdin();
        }
        if let Some(signal) = self.signal {
            cx.signal_process(signal).expect("signal the child");
        }
    }

    fn out_received(&mut self, _cx: &mut ProcessCtx<'_>, data: &[u8]) {
        self.log.borrow_mut().out.extend_from_slice(data);
    }

    fn err_received(&mut self, _cx: &mut ProcessCtx<'_>, data: &[u8]) {
        self.log.borrow_mut().err.extend_from_slice(data);
    }

    fn in_connection_lost(&mut self, _cx: &mut ProcessCtx<'_>) {
        self.log.borrow_mut().events.push("in_connection_lost");
    }

    fn out_connection_lost(&mut self, _cx: &mut ProcessCtx<'_>) {
        self.log.borrow_mut().events.push("out_connection_lost");
    }

    fn err_connection_lost(&mut self, _cx: &mut ProcessCtx<'_>) {
        self.log.borrow_mut().events.push("err_connection_lost");
    }

    fn process_exited(&mut self, _cx: &mut ProcessCtx<'_>, status: ExitStatus) {
        let mut log = self.log.borrow_mut();
        log.events.push("process_exited");
        log.exited = Some(status);
        log.exited_at = Some(Instant::now());
    }

    fn process_ended(&mut self, _cx: &mut ProcessCtx<'_>, status: ExitStatus) {
        let mut log = self.log.borrow_mut();
        log.events.push("process_ended");
        log.ended = Some(status);
        log.ended_at = Some(Instant::now());
    }

    fn pause_producing(&mut self, _cx: &mut ProcessCtx<'_>) {
        self.log.borrow_mut().events.push("pause_producing");
    }

    fn resume_producing(&mut self, cx: &mut ProcessCtx<'_>) {
        self.log.borrow_mut().events.push("resume_producing");
        assert!(!cx.is_write_buffer_above_high());
        if self.close_on_resume {
            cx.close_stdin();
        }
    }
}

fn sh(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    command
}

/// Runs one child to `process_ended` and returns its log.
fn run_child(command: Command, setup: impl FnOnce(&mut Recorder)) -> Log {
    let mut reactor = Reactor::new().unwrap();
    let log = Shared::default();
    let mut recorder = Recorder::new(&log);
    setup(&mut recorder);
    reactor.spawn_process(command, recorder).expect("spawn");
    let done = log.clone();
    run_until(&mut reactor, "process_ended", move |_| done.borrow().ended.is_some());
    assert_eq!(reactor.process_count(), 0, "an ended process leaves the table");
    assert_contract(&log.borrow());
    assert_not_zombie(log.borrow().pid);
    log.take()
}

/// `connection_made` first, `process_ended` last, every other notification exactly once.
fn assert_contract(log: &Log) {
    assert_eq!(log.events.first(), Some(&"connection_made"), "{:?}", log.events);
    assert_eq!(log.events.last(), Some(&"process_ended"), "{:?}", log.events);
    for name in [
        "connection_made",
        "in_connection_lost",
        "out_connection_lost",
        "err_connection_lost",
        "process_exited",
        "process_ended",
    ] {
        assert_eq!(log.events.iter().filter(|e| **e == name).count(), 1, "{name} once: {:?}", log.events);
    }
    assert_eq!(log.exited, log.ended);
}

/// The child `pid` of this process is gone (reaped) or at least not a zombie of ours.
fn assert_not_zombie(pid: u32) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return };
    // pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next().unwrap();
    let ppid: u32 = fields.next().unwrap().parse().unwrap();
    assert!(!(state == "Z" && ppid == std::process::id()), "child {pid} is a zombie of ours: {stat}");
}

/// Tests here count descriptors and children of this process: under `cargo test` (tests on
/// threads of one process) they take turns, so one test's pipes are not counted by another.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn cat_echoes_one_mib_byte_exact() {
    let _serial = serial();
    let input: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expected = input.clone();
    let log = run_child(Command::new("cat"), |r| {
        r.input = input;
        r.close_on_resume = true;
    });
    assert!(log.out == expected, "cat echoed {} of {} bytes, or wrong bytes", log.out.len(), expected.len());
    assert!(log.err.is_empty());
    assert!(log.exited.unwrap().success());
    // 1 MiB written at once is above the 64 KiB high mark: pause, then resume once drained
    // (stdin is closed at the resume: the rest of the buffer is flushed first).
    assert!(log.above_high_on_write);
    let pause = log.events.iter().position(|e| *e == "pause_producing").expect("pause_producing");
    let resume = log.events.iter().position(|e| *e == "resume_producing").expect("resume_producing");
    assert!(pause < resume);
}

#[test]
fn exit_status_is_reported() {
    let _serial = serial();
    let log = run_child(sh("echo out; echo err >&2; exit 3"), |_| {});
    assert_eq!(log.exited.unwrap().code(), Some(3));
    assert_eq!(log.out, b"out\n");
    assert_eq!(log.err, b"err\n");
}

#[test]
fn a_child_killed_by_a_signal() {
    let _serial = serial();
    let log = run_child(Command::new("sleep").arg("30").to_owned_command(), |r| {
        r.keep_stdin = true;
        r.signal = Some(Signal::SIGTERM);
    });
    let status = log.exited.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    assert_eq!(status.code(), None);
}

#[test]
fn kill_sends_sigkill() {
    let _serial = serial();
    struct Killer(Shared);
    impl ProcessProtocol for Killer {
        fn connection_made(&mut self, cx: &mut ProcessCtx<'_>) {
            self.0.borrow_mut().pid = cx.pid();
            cx.kill().unwrap();
        }
        fn process_ended(&mut self, _cx: &mut ProcessCtx<'_>, status: ExitStatus) {
            self.0.borrow_mut().ended = Some(status);
        }
    }
    let mut reactor = Reactor::new().unwrap();
    let log = Shared::default();
    reactor.spawn_process(Command::new("sleep").arg("30").to_owned_command(), Killer(log.clone())).unwrap();
    let done = log.clone();
    run_until(&mut reactor, "process_ended", move |_| done.borrow().ended.is_some());
    assert_eq!(log.borrow().ended.unwrap().signal(), Some(libc::SIGKILL));
    assert_not_zombie(log.borrow().pid);
}

#[test]
fn yes_piped_to_head() {
    let _serial = serial();
    let log = run_child(sh("yes | head -c 1000000"), |_| {});
    assert_eq!(log.out.len(), 1_000_000);
    assert!(log.out.chunks(2).all(|c| c == b"y\n"));
    assert!(log.exited.unwrap().success());
}

#[test]
fn a_missing_command_is_a_typed_error() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    let log = Shared::default();
    let before = open_fds();
    match reactor.spawn_process(Command::new("/nonexistent/torsion-no-such-program"), Recorder::new(&log)) {
        Err(Error::Spawn { program, source }) => {
            assert_eq!(program, "/nonexistent/torsion-no-such-program");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Error::Spawn, got {other:?}"),
    }
    // Not executable: a directory.
    assert!(matches!(
        reactor.spawn_process(Command::new("/"), Recorder::new(&log)),
        Err(Error::Spawn { .. })
    ));
    assert_eq!(reactor.process_count(), 0);
    assert!(log.borrow().events.is_empty());
    // The SIGCHLD registration (first spawn) holds descriptors; nothing else may be left.
    assert!(open_fds() <= before + 2, "descriptors leaked by failed spawns");
}

/// A grandchild that keeps stdout open delays `process_ended`, not `process_exited`.
#[test]
fn a_grandchild_holding_stdout_delays_only_process_ended() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    let log = Shared::default();
    // The shell prints the grandchild's pid and exits at once; the grandchild holds stdout.
    reactor.spawn_process(sh("sleep 30 & echo $!"), Recorder::new(&log)).unwrap();
    let exited = log.clone();
    run_until(&mut reactor, "process_exited", move |_| exited.borrow().exited.is_some());
    assert!(log.borrow().exited.unwrap().success());
    // Wait until the grandchild's pid has arrived (the line may come after the exit).
    let line = log.clone();
    run_until(&mut reactor, "grandchild pid", move |_| line.borrow().out.ends_with(b"\n"));
    let grandchild: i32 = String::from_utf8(log.borrow().out.clone()).unwrap().trim().parse().unwrap();
    // The pipe stays open: a few turns later, still no process_ended.
    let _ = reactor.run_until(Duration::from_millis(200), |_| false).unwrap();
    assert!(log.borrow().ended.is_none(), "process_ended before stdout closed: {:?}", log.borrow().events);
    assert!(!log.borrow().events.contains(&"out_connection_lost"));
    // End the grandchild (ours, through our child): stdout closes, process_ended follows.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(grandchild), Signal::SIGKILL).unwrap();
    let ended = log.clone();
    run_until(&mut reactor, "process_ended", move |_| ended.borrow().ended.is_some());
    assert_contract(&log.borrow());
    let log = log.borrow();
    assert!(log.ended_at.unwrap() >= log.exited_at.unwrap());
}

/// 1,000 short-lived children, one after another: no zombie, descriptors back to baseline.
#[test]
fn a_thousand_children_in_sequence() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    // The first spawn registers SIGCHLD (descriptors that stay); count after it.
    let log = Shared::default();
    reactor.spawn_process(Command::new("true"), Recorder::new(&log)).unwrap();
    let done = log.clone();
    run_until(&mut reactor, "first child", move |_| done.borrow().ended.is_some());
    let baseline = open_fds();
    let mut pids = Vec::new();
    for i in 0..1000 {
        let log = Shared::default();
        reactor.spawn_process(sh(&format!("exit {}", i % 7)), Recorder::new(&log)).unwrap();
        let done = log.clone();
        run_until(&mut reactor, "child ended", move |_| done.borrow().ended.is_some());
        let log = log.borrow();
        assert_eq!(log.exited.unwrap().code(), Some(i % 7));
        assert_contract(&log);
        pids.push(log.pid);
    }
    for pid in pids {
        assert_not_zombie(pid);
    }
    assert_eq!(open_fds(), baseline, "descriptors leaked");
}

/// 100 children at once: each reaped (SIGCHLDs coalesce), no zombie, descriptors back.
#[test]
fn a_hundred_children_at_once() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    let first = Shared::default();
    reactor.spawn_process(Command::new("true"), Recorder::new(&first)).unwrap();
    let done = first.clone();
    run_until(&mut reactor, "first child", move |_| done.borrow().ended.is_some());
    let baseline = open_fds();
    let logs: Vec<Shared> = (0..100).map(|_| Shared::default()).collect();
    for (i, log) in logs.iter().enumerate() {
        reactor.spawn_process(sh(&format!("echo {i}; exit {}", i % 5)), Recorder::new(log)).unwrap();
    }
    assert_eq!(reactor.process_count(), 100);
    let all = logs.clone();
    run_until(&mut reactor, "all 100 ended", move |_| all.iter().all(|l| l.borrow().ended.is_some()));
    assert_eq!(reactor.process_count(), 0);
    for (i, log) in logs.iter().enumerate() {
        let log = log.borrow();
        assert_contract(&log);
        assert_eq!(log.exited.unwrap().code(), Some((i % 5) as i32));
        assert_eq!(log.out, format!("{i}\n").as_bytes());
        assert_not_zombie(log.pid);
    }
    assert_eq!(open_fds(), baseline, "descriptors leaked");
}

/// Graceful stop: stdin is closed (so `cat` exits on its own) and `run` returns once the
/// children have ended; a child that ignores stdin is SIGKILLed at the deadline and reaped.
#[test]
fn graceful_shutdown_closes_stdin_then_kills_at_the_deadline() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    reactor.set_shutdown_timeout(Duration::from_millis(300));
    let cat = Shared::default();
    let sleeper = Shared::default();
    let mut keep = Recorder::new(&cat);
    keep.keep_stdin = true;
    reactor.spawn_process(Command::new("cat"), keep).unwrap();
    let mut keep = Recorder::new(&sleeper);
    keep.keep_stdin = true;
    reactor.spawn_process(Command::new("sleep").arg("30").to_owned_command(), keep).unwrap();
    let started = (cat.clone(), sleeper.clone());
    run_until(&mut reactor, "both started", move |_| {
        started.0.borrow().pid != 0 && started.1.borrow().pid != 0
    });
    reactor.stop();
    let began = Instant::now();
    reactor.run().unwrap();
    assert!(began.elapsed() < WAIT, "run returned late");
    assert_eq!(reactor.process_count(), 0);
    let cat = cat.borrow();
    assert_contract(&cat);
    assert!(cat.exited.unwrap().success(), "cat exits on EOF: {:?}", cat.exited);
    let sleeper = sleeper.borrow();
    assert_contract(&sleeper);
    assert_eq!(sleeper.exited.unwrap().signal(), Some(libc::SIGKILL));
    assert_not_zombie(cat.pid);
    assert_not_zombie(sleeper.pid);
}

/// Spawning from a callback (a timer): `connection_made` runs after it.
#[test]
fn spawn_from_a_callback() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    let log = Shared::default();
    let recorder = Recorder::new(&log);
    reactor.call_later(Duration::ZERO, move |cx| {
        cx.spawn_process(sh("echo hi"), recorder).unwrap();
    });
    let done = log.clone();
    run_until(&mut reactor, "process_ended", move |_| done.borrow().ended.is_some());
    assert_eq!(log.borrow().out, b"hi\n");
    assert_contract(&log.borrow());
}

/// `Command::arg` returns `&mut Command`; tests want an owned one.
trait ToOwnedCommand {
    fn to_owned_command(&mut self) -> Command;
}

impl ToOwnedCommand for Command {
    fn to_owned_command(&mut self) -> Command {
        let mut command = Command::new(self.get_program());
        command.args(self.get_args());
        command
    }
}

/// A reactor dropped while its children run kills and reaps them: no zombie, no orphan.
#[test]
fn dropping_the_reactor_reaps_running_children() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    let log = Shared::default();
    let mut keep = Recorder::new(&log);
    keep.keep_stdin = true;
    reactor.spawn_process(Command::new("sleep").arg("30").to_owned_command(), keep).unwrap();
    let started = log.clone();
    run_until(&mut reactor, "started", move |_| started.borrow().pid != 0);
    let pid = log.borrow().pid;
    drop(reactor);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "child {pid} left behind");
}

/// A child that stops reading (`head -c 10` exits): writing to its stdin fails with EPIPE,
/// which closes our end (`in_connection_lost` once) instead of failing the reactor.
#[test]
fn a_child_that_closes_stdin_early() {
    let _serial = serial();
    let input = vec![b'x'; 1024 * 1024];
    let log = run_child(Command::new("head").arg("-c").arg("10").to_owned_command(), |r| r.input = input);
    assert_eq!(log.out, b"xxxxxxxxxx");
    assert!(log.exited.unwrap().success());
}

/// Panics in `out_received` the first time; records everything else like [`Recorder`].
struct PanicsOnOutput {
    inner: Recorder,
    panicked: bool,
}

impl ProcessProtocol for PanicsOnOutput {
    fn connection_made(&mut self, cx: &mut ProcessCtx<'_>) {
        self.inner.connection_made(cx);
    }

    fn out_received(&mut self, cx: &mut ProcessCtx<'_>, data: &[u8]) {
        if !std::mem::replace(&mut self.panicked, true) {
            panic!("a bug in out_received");
        }
        self.inner.out_received(cx, data);
    }

    fn err_received(&mut self, cx: &mut ProcessCtx<'_>, data: &[u8]) {
        self.inner.err_received(cx, data);
    }

    fn in_connection_lost(&mut self, cx: &mut ProcessCtx<'_>) {
        self.inner.in_connection_lost(cx);
    }

    fn out_connection_lost(&mut self, cx: &mut ProcessCtx<'_>) {
        self.inner.out_connection_lost(cx);
    }

    fn err_connection_lost(&mut self, cx: &mut ProcessCtx<'_>) {
        self.inner.err_connection_lost(cx);
    }

    fn process_exited(&mut self, cx: &mut ProcessCtx<'_>, status: ExitStatus) {
        self.inner.process_exited(cx, status);
    }

    fn process_ended(&mut self, cx: &mut ProcessCtx<'_>, status: ExitStatus) {
        self.inner.process_ended(cx, status);
    }
}

/// A panic in a process callback is isolated like a connection's: the child is SIGKILLed and
/// reaped, the protocol still hears every remaining notification exactly once, and the
/// reactor goes on serving another child.
#[test]
fn a_panicking_process_protocol_gets_its_child_killed_and_its_remaining_callbacks() {
    let _serial = serial();
    let mut reactor = Reactor::new().unwrap();
    let log = Shared::default();
    let mut inner = Recorder::new(&log);
    inner.keep_stdin = true;
    // Prints, then would sleep far past any deadline unless killed.
    let child = sh("echo hello; exec sleep 1000");
    reactor.spawn_process(child, PanicsOnOutput { inner, panicked: false }).unwrap();
    let other = Shared::default();
    let mut cat = Recorder::new(&other);
    cat.input = b"still serving\n".to_vec();
    reactor.spawn_process(Command::new("cat"), cat).unwrap();
    let (done, other_done) = (log.clone(), other.clone());
    run_until(&mut reactor, "both processes ended", move |_| {
        done.borrow().ended.is_some() && other_done.borrow().ended.is_some()
    });
    let log = log.borrow();
    assert_contract(&log);
    assert_eq!(log.exited.unwrap().signal(), Some(Signal::SIGKILL as i32), "{:?}", log.exited);
    assert_not_zombie(log.pid);
    let other = other.borrow();
    assert_eq!(other.out, b"still serving\n");
    assert_eq!(other.exited.unwrap().code(), Some(0));
    assert_eq!(reactor.process_count(), 0);
}
