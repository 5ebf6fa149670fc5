//! One worker process, as its supervisor holds it: the child, its progress slot, its pipes,
//! none of which can block the supervisor:
//! - stdin does not block: a request goes straight into the pipe when it fits (it does,
//!   as a rule: the pipe holds 1 MiB), and whatever does not fit goes to a writer thread
//!   that waits for room, so a worker that stops reading cannot block the supervisor;
//! - stdout is read by the supervisor itself, and only once `poll` says there is
//!   something to read (`reply_reader`): `recv_timeout` gives the next frame as a
//!   `Message` within a deadline. No thread stands between the two processes on the way
//!   of a batch (each hop through a thread was a wake-up, and wake-ups were much of a
//!   batch's cost);
//! - a drain thread empties stderr (a full pipe must never block the worker) and keeps
//!   its tail for error messages.
//!
//! A worker dies with its supervisor: `PR_SET_PDEATHSIG` (set in the child, fired when the
//! spawning thread exits, and lanes spawn from their own long-lived thread), a `getppid`
//! check for the race where the parent died before that, and exit on stdin EOF. It runs in
//! its own process group, so a kill of `-pid` takes anything it started. Every kill is
//! followed by a bounded reap: no zombies.

use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rustix::process::{self, Pid, Signal};
use wait_timeout::ChildExt;

use super::progress_slot::{ProgressSlot, SLOT_FD_ENV};
pub use super::reply_reader::Message;
use super::reply_reader::ReplyReader;
use super::{Plan, Shared};
use crate::exec::protocol;

/// Longest wait for a killed worker to be reaped; past it the run fails rather than leak.
const REAP_BOUND: Duration = Duration::from_secs(5);
/// How much of a worker's stderr is kept for messages.
const STDERR_KEPT: usize = 8 << 10;
/// Stack of the pipe threads: they copy bytes, nothing deep.
const PIPE_THREAD_STACK: usize = 256 << 10;
/// The last bytes a worker wrote on stderr, and whether its stderr has closed.
#[derive(Default)]
struct StderrTail {
    state: Mutex<(Vec<u8>, bool)>,
    closed: Condvar,
}

/// The worker's stdin, non-blocking: requests go straight in while they fit, the rest
/// through a writer thread (`feed`), in order.
struct Input {
    stdin: Arc<ChildStdin>,
    /// Bytes for the writer thread.
    rest: Sender<Vec<u8>>,
    /// Buffers sent to the writer thread and not yet written out: while there are any,
    /// the next bytes must queue behind them.
    queued: Arc<AtomicUsize>,
}

pub struct Worker {
    child: Child,
    pub pid: u32,
    pub slot: ProgressSlot,
    /// `None` once stdin is closed (the writer thread closes its copy once its queue is
    /// written out).
    input: Option<Input>,
    output: ReplyReader,
    stderr: Arc<StderrTail>,
    /// `Ready` has been received.
    pub ready: bool,
    status: Option<ExitStatus>,
    shared: Arc<Shared>,
}

impl Worker {
    /// Starts a worker and sends it its `Setup` frame (without waiting for `Ready`).
    pub fn spawn(plan: &Plan, shared: &Arc<Shared>) -> Result<Worker> {
        if shared.is_stopping() {
            return Err(anyhow!("the run is stopping: no new worker"));
        }
        let slot =
            ProgressSlot::create().context("cannot create a worker's progress slot (memfd)")?;
        let mut command = Command::new(&plan.program);
        command
            .arg0(&plan.arg0)
            .arg("worker")
            .arg("--protocol")
            .arg(protocol::VERSION.to_string())
            .arg("--max-frame")
            .arg(plan.max_frame.to_string())
            .env(SLOT_FD_ENV, slot.raw_fd().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let slot_fd = slot.raw_fd();
        let parent = process::getpid();
        let data_limit = plan.data_limit;
        // SAFETY: the closure only makes raw system calls (prctl, getppid, fcntl,
        // setrlimit) through rustix, which allocate nothing and are async-signal-safe, as
        // pre_exec requires.
        unsafe {
            command.pre_exec(move || {
                process::set_parent_process_death_signal(Some(Signal::KILL))?;
                // The backstop of the cooperative memory budget: past it the kernel
                // refuses memory and the worker aborts, instead of the machine swapping.
                crate::budget::limit_data(data_limit)?;
                // The parent may have died before prctl: then nobody would ever kill us.
                if process::getppid() != Some(parent) {
                    return Err(rustix::io::Errno::SRCH.into());
                }
                // The slot is close-on-exec in the parent (other children must not get
                // it); this child keeps it, under the same number.
                // SAFETY: the slot's descriptor is open in the parent, hence in this fork.
                let slot = BorrowedFd::borrow_raw(slot_fd);
                rustix::io::fcntl_setfd(slot, rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
        let mut child = command.spawn().with_context(|| {
            format!("cannot start a worker process ({})", plan.program.display())
        })?;
        let pid = child.id();
        shared
            .counters
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        // A batch fits in the pipe at once, so it is written with one system call and no
        // thread; the default is kept if the system refuses.
        let _ = rustix::pipe::fcntl_setpipe_size(&stdin, 1 << 20);
        rustix::fs::fcntl_setfl(&stdin, rustix::fs::OFlags::NONBLOCK)
            .context("cannot make a worker's stdin non-blocking")?;

        let stderr = Arc::new(StderrTail::default());
        let (rest_tx, rest_rx) = mpsc::channel::<Vec<u8>>();
        let stdin = Arc::new(stdin);
        let queued = Arc::new(AtomicUsize::new(0));
        let mut worker = Worker {
            child,
            pid,
            slot,
            input: Some(Input {
                stdin: Arc::clone(&stdin),
                rest: rest_tx,
                queued: Arc::clone(&queued),
            }),
            output: ReplyReader::new(stdout),
            stderr: Arc::clone(&stderr),
            ready: false,
            status: None,
            shared: Arc::clone(shared),
        };
        if !shared.register(pid) {
            // Shutdown began while we were spawning: this one goes too (Drop reaps it).
            return Err(anyhow!("the run is stopping: no new worker"));
        }
        spawn_pipe_thread(format!("worker-{pid}-in"), move || {
            feed(&stdin, &rest_rx, &queued)
        })?;
        spawn_pipe_thread(format!("worker-{pid}-err"), move || {
            drain_stderr(stderr_pipe, &stderr)
        })?;
        worker.send(&plan.setup_frame);
        Ok(worker)
    }

    /// Writes a frame to the worker's stdin: at once as far as the pipe takes it, the rest
    /// through the writer thread. A worker that died is noticed on its stdout.
    pub fn send(&mut self, frame: &[u8]) {
        let Some(input) = &self.input else { return };
        let mut written = 0;
        // Straight in, unless earlier bytes still wait for the writer thread.
        if input.queued.load(Ordering::Acquire) == 0 {
            while written < frame.len() {
                match (&*input.stdin).write(&frame[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // Gone: its stdout says how.
                    Err(_) => return,
                }
            }
        }
        if written < frame.len() {
            input.queued.fetch_add(1, Ordering::AcqRel);
            if input.rest.send(frame[written..].to_vec()).is_err() {
                input.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// The next message, or `None` if none came within `wait`.
    pub fn recv_timeout(&mut self, wait: Duration) -> Option<Message> {
        self.output.recv_timeout(wait)
    }

    /// The exit status, if the worker has already exited (reaping it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            // Under the registry's lock, so `shutdown` cannot signal the pid once reaped.
            let mut live = self
                .shared
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Ok(Some(status)) = self.child.try_wait() {
                live.retain(|&p| p != self.pid);
                self.status = Some(status);
            }
        }
        self.status
    }

    /// Kills the worker's process group and reaps it, within `REAP_BOUND`.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.signal_kill();
        self.reap(REAP_BOUND)
    }

    /// Sends SIGKILL to the worker's process group, without waiting: `kill` (or drop)
    /// reaps it later. Dying takes a process a fraction of a millisecond that its
    /// replacement need not wait for.
    pub fn signal_kill(&mut self) {
        if self.status.is_some() {
            return;
        }
        // Out of the registry first: once reaped, the pid may be reused, and `shutdown`
        // must never signal a stranger.
        self.shared.deregister(self.pid);
        // The child is not reaped yet, so the pid is still ours.
        kill_group_and_process(self.pid);
    }

    /// Waits up to `bound` for the worker to exit on its own; kills it past that.
    pub fn wait_or_kill(&mut self, bound: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        // Out of the registry before a wait that may reap. While it waits, `shutdown` does
        // not see this worker; harmless: it is exiting (stdin closed, or stdout ended), and
        // is killed below if it does not.
        self.shared.deregister(self.pid);
        match self.child.wait_timeout(bound) {
            Ok(Some(status)) => {
                self.status = Some(status);
                Ok(status)
            }
            _ => self.kill(),
        }
    }

    fn reap(&mut self, bound: Duration) -> Result<ExitStatus> {
        match self.child.wait_timeout(bound) {
            Ok(Some(status)) => {
                self.status = Some(status);
                Ok(status)
            }
            Ok(None) => Err(anyhow!(
                "worker pid {} could not be reaped within {bound:?} of SIGKILL",
                self.pid
            )),
            Err(e) => Err(anyhow!("cannot reap worker pid {}: {e}", self.pid)),
        }
    }

    /// True if the worker is not running: asleep (`sleep_ms`, a blocking call) or
    /// stopped, so it cannot reach its cooperative deadline check. A few system calls,
    /// made only for an evaluation past its limit. Every thread counts, not only the
    /// process's main one: a worker evaluates on a thread of its own while its main
    /// thread waits for it, so the main thread alone would look blocked even while
    /// `loop {}` runs (every such hang was killed instead of stopping itself).
    pub fn is_blocked(&self) -> bool {
        threads_blocked(self.pid)
    }

    /// Closes the worker's stdin: a healthy worker exits 0 on that EOF (once the writer
    /// thread has written what it still holds, and closed its copy).
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// The last lines the worker wrote on stderr, waiting up to `wait` for it to close.
    pub fn stderr_tail(&self, wait: Duration) -> String {
        let guard = self
            .stderr
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .stderr
            .closed
            .wait_timeout_while(guard, wait, |(_, closed)| !*closed)
            .unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&guard.0).trim().to_string()
    }
}

impl Drop for Worker {
    /// A worker never outlives its handle: stdin is closed (a healthy worker exits at
    /// once), then it is reaped, or killed and reaped.
    fn drop(&mut self) {
        if self.status.is_none() {
            self.close_input();
            let result = if self.shared.is_stopping() {
                self.kill()
            } else {
                self.wait_or_kill(Duration::from_secs(2))
            };
            if result.is_err() {
                eprintln!(
                    "txguard: warning: worker pid {} could not be reaped",
                    self.pid
                );
            }
        }
    }
}

/// `signal 9` or `exit code 3`, for messages.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => format!("{status}"),
    }
}

fn spawn_pipe_thread(name: String, body: impl FnOnce() + Send + 'static) -> Result<()> {
    thread::Builder::new()
        .name(name)
        .stack_size(PIPE_THREAD_STACK)
        .spawn(body)
        .map(drop)
        .context("cannot start a worker's pipe thread")
}

/// The writer thread: what did not fit in the pipe at once, to stdin, in order, until the
/// channel closes or the worker is gone; dropping the last `stdin` is the worker's EOF.
fn feed(stdin: &ChildStdin, rest: &Receiver<Vec<u8>>, queued: &AtomicUsize) {
    for bytes in rest {
        let mut written = 0;
        while written < bytes.len() {
            match (&*stdin).write(&bytes[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Wait for room (or for the worker to be gone: then the write fails).
                    let mut fds = [rustix::event::PollFd::new(
                        stdin,
                        rustix::event::PollFlags::OUT,
                    )];
                    let _ = rustix::event::poll(&mut fds, None);
                }
                Err(_) => return,
            }
        }
        queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The drain thread: keeps the last `STDERR_KEPT` bytes of stderr.
fn drain_stderr(mut stderr: std::process::ChildStderr, tail: &StderrTail) {
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stderr.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut state = tail.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0.extend_from_slice(&chunk[..n]);
        if state.0.len() > 2 * STDERR_KEPT {
            let cut = state.0.len() - STDERR_KEPT;
            state.0.drain(..cut);
        }
    }
    tail.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
    tail.closed.notify_all();
}

/// SIGKILL to a worker's process group (what it started too) and to the worker itself.
/// The caller makes sure `pid` is an unreaped child of ours, so it names no stranger.
pub fn kill_group_and_process(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = process::kill_process_group(pid, Signal::KILL);
        let _ = process::kill_process(pid, Signal::KILL);
    }
}

/// Whether every thread of process `pid` is blocked (see `WorkerProcess::is_blocked`);
/// false for a process that is gone.
fn threads_blocked(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut seen = false;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        seen = true;
        if !is_blocked_state(&stat) {
            return false;
        }
    }
    seen
}

/// Whether a `/proc/…/stat` line shows a thread that cannot run: asleep, in an
/// uninterruptible wait, or stopped.
fn is_blocked_state(stat: &str) -> bool {
    // The state follows the command name, which is in parentheses.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    matches!(state, Some('S' | 'D' | 'T' | 't'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_running_while_any_of_its_threads_is() {
        // This test process: its main thread waits for the test threads, this one runs.
        assert!(!threads_blocked(std::process::id()));
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // Asleep once it has started (generous: a loaded machine).
        let started = std::time::Instant::now();
        while !threads_blocked(sleeper.id()) {
            assert!(started.elapsed() < std::time::Duration::from_secs(20));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(is_blocked_state("12 (a (b) c) S 1"));
        assert!(!is_blocked_state("12 (w) R 1"));
        assert!(!is_blocked_state("12 (w) Z 1"));
    }
}
