//! A process lane: the supervisor of one worker at a time, on the lane's own thread.
//!
//! For each batch it sends the worker one request (the evaluation indexes still without
//! an outcome) and waits for outcomes with a timeout. Whenever it wakes it reads the
//! worker's progress slot: the evaluation in flight and its start. Past that rule's limit
//! plus a margin (`KILL_GRACE` if the worker is running, less if it is blocked and cannot
//! stop itself), the worker is killed and reaped, the evaluation is recorded as
//! `timeout`, and the rest goes to a fresh worker. A worker that dies on its own is
//! replaced too; the evaluation it was running is retried once, and if it kills the next
//! worker as well it is recorded as `error` ("worker died: signal 9"). Outcomes are
//! placed by index, so nothing is lost or written twice, whatever happens in between.
//!
//! Once a lane has had to replace a worker it keeps a spare one started and set up, so
//! the next replacement costs no spawn on the critical path (rules that hang on many
//! rows would otherwise pay a process start per hang).
//!
//! A lane starts its first worker when its first batch arrives, not before: `-j 1000` on
//! two rows starts one worker, and lanes that do get work start theirs concurrently, each
//! on its own thread. A worker that dies of memory (its hard `RLIMIT_DATA`, the backstop
//! of the cooperative budget) is replaced and the evaluation it was running is recorded as
//! `error` at once: retrying it would only exhaust the next worker's memory too.
//!
//! A request is sized by bytes as well as rows: one whose frame would pass the workers'
//! frame limit (`protocol::max_to_worker` of `--max-record-size`) is split in halves until
//! it fits, and a single row that still cannot fit (none the framer lets through should)
//! gets an `error` for each of its evaluations instead of failing the run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::progress_slot::monotonic_ns;
use super::work::{InFlight, Work};
use super::worker_process::{Message, Worker, describe};
use super::{Plan, Shared};
use crate::backoff::{Backoff, any_out_of_resources};
use crate::budget;
use crate::exec::Lane;
use crate::exec::protocol::{self, Reply};
use crate::model::{Batch, Outcome};

/// A worker that is not evaluating and says nothing for this long is stuck outside any
/// rule (a bug, or a stopped process): the run fails rather than hang.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// How long a worker may say nothing while it evaluates no rule. Before it is ready it
/// parses the setup frame, whose lists may hold millions of keys: parsing them takes time
/// in proportion to their size (more when more workers than cores parse at once), so the
/// limit grows by a second per 256 KiB of the frame (a 1,000,000-key list: a minute more).
fn idle_limit(ready: bool, setup_bytes: usize) -> Duration {
    if ready {
        IDLE_LIMIT
    } else {
        IDLE_LIMIT + Duration::from_secs((setup_bytes >> 18) as u64)
    }
}
/// Longest sleep between two looks at the progress slot when nothing is in flight.
const MAX_POLL: Duration = Duration::from_secs(1);
/// How long a worker whose stdout ended may take to exit before it is killed.
const EXIT_BOUND: Duration = Duration::from_secs(1);
/// Workers in a row killed by a signal before they were ready: then the run fails.
const STARTUP_DEATHS: u32 = 3;
/// Rows per request once a worker of the batch has been replaced (see `evaluate`).
const RESEND_ROWS: usize = 128;
/// A request buffer larger than this is freed once sent, not kept for the next batch.
const FRAME_KEPT: usize = 4 << 20;
/// How long error messages wait for a dead worker's stderr to close.
const STDERR_WAIT: Duration = Duration::from_secs(1);

pub struct ProcessLane {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    /// The worker between batches; `None` after it was killed or died.
    worker: Option<Worker>,
    /// A started, set-up worker standing by (see the module doc).
    spare: Option<Worker>,
    /// A worker killed at a deadline, reaped after the next request is sent.
    dying: Option<Worker>,
    keep_spare: bool,
    /// The request buffer, kept from batch to batch (unless huge: `FRAME_KEPT`).
    frame: Vec<u8>,
    next_request: u64,
    startup_deaths: u32,
}

/// How a request ended.
enum Ending {
    /// Every evaluation of the request has its outcome.
    Answered,
    /// Evaluation `index` passed its deadline and grace: kill the worker.
    Overran { index: u64 },
    /// The worker's output ended before the request was answered.
    Died,
}

impl ProcessLane {
    /// A lane with no worker yet: the first batch starts one (see the module doc).
    pub fn new(plan: Arc<Plan>, shared: Arc<Shared>) -> Result<ProcessLane> {
        Ok(ProcessLane {
            plan,
            shared,
            worker: None,
            spare: None,
            dying: None,
            keep_spare: false,
            frame: Vec::new(),
            next_request: 0,
            startup_deaths: 0,
        })
    }

    fn stopped(&self) -> Result<()> {
        if self.shared.is_stopping() {
            bail!("the run is stopping: worker processes were stopped");
        }
        Ok(())
    }

    /// The lane's worker: the one from the last batch, else the spare, else a new one.
    fn take_worker(&mut self) -> Result<Worker> {
        if let Some(worker) = self.worker.take() {
            return Ok(worker);
        }
        if let Some(mut spare) = self.spare.take() {
            match spare.try_status() {
                None => return Ok(spare),
                Some(_) => {
                    // It died standing by (killed from outside): it still died.
                    self.shared.counters.died.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        spawn_patiently(&self.plan, &self.shared)
    }

    /// Kills `worker` and returns the run's error: what it did, and its stderr.
    fn fatal(&self, mut worker: Worker, what: &str) -> anyhow::Error {
        let _ = worker.kill();
        with_stderr(anyhow!("worker pid {} {what}", worker.pid), &worker)
    }

    /// Waits for the answers to `request`, watching the deadline of the evaluation in
    /// flight. `Err` is fatal to the run (a protocol error, a stuck worker).
    fn supervise(
        &mut self,
        worker: &mut Worker,
        request: &mut InFlight,
        work: &mut Work,
    ) -> Result<Ending, String> {
        let rules = self.plan.rules as u64;
        let shortest = self.plan.limit_ns.iter().min().copied().unwrap_or(0);
        let idle_poll = Duration::from_nanos(shortest.saturating_add(self.plan.blocked_margin_ns))
            .clamp(Duration::from_millis(1), MAX_POLL);
        let mut last_seq = None;
        let mut last_activity = Instant::now();
        loop {
            if request.is_answered() {
                return Ok(Ending::Answered);
            }
            let mut wait = idle_poll;
            let snapshot = worker.slot.read();
            if snapshot.map(|s| s.seq) != last_seq {
                last_seq = snapshot.map(|s| s.seq);
                last_activity = Instant::now();
            }
            match snapshot {
                Some(s) if s.request == request.id && s.started_ns.is_some() => {
                    let started = s.started_ns.unwrap_or_default();
                    let limit_end =
                        started.saturating_add(self.plan.limit_ns[(s.index % rules) as usize]);
                    let blocked_kill = limit_end.saturating_add(self.plan.blocked_margin_ns);
                    let running_kill = limit_end.saturating_add(self.plan.grace_ns);
                    let now = monotonic_ns();
                    if now >= running_kill || (now >= blocked_kill && worker.is_blocked()) {
                        return Ok(Ending::Overran { index: s.index });
                    }
                    let next = if now < blocked_kill {
                        blocked_kill
                    } else {
                        running_kill
                    };
                    wait = wait.min(Duration::from_nanos(next - now));
                }
                _ if last_activity.elapsed()
                    > idle_limit(worker.ready, self.plan.setup_frame.len()) =>
                {
                    let limit = idle_limit(worker.ready, self.plan.setup_frame.len());
                    return Err(if worker.ready {
                        format!(
                            "has answered nothing for {} s while evaluating no rule",
                            limit.as_secs()
                        )
                    } else {
                        format!(
                            "has answered nothing for {} s while reading its rules and lists",
                            limit.as_secs()
                        )
                    });
                }
                _ => {}
            }
            let Some(message) = worker.recv_timeout(wait) else {
                continue;
            };
            last_activity = Instant::now();
            match message {
                Message::Reply(Reply::Ready { rules: n, .. }) => {
                    if worker.ready {
                        return Err("said it was ready twice".into());
                    }
                    if n as usize != self.plan.rules {
                        return Err(format!("compiled {n} rules, expected {}", self.plan.rules));
                    }
                    worker.ready = true;
                    self.startup_deaths = 0;
                }
                Message::Reply(Reply::Outcomes {
                    request: r,
                    first,
                    outcomes,
                }) => {
                    if !worker.ready {
                        return Err("sent outcomes before it was ready".into());
                    }
                    request
                        .accept(r, first, outcomes, work)
                        .map_err(|e| format!("broke the protocol: {e}"))?;
                }
                Message::Reply(Reply::Fatal(m)) => return Err(format!("failed: {m}")),
                Message::Bad(m) => return Err(format!("sent a malformed frame: {m}")),
                Message::Eof => return Ok(Ending::Died),
            }
        }
    }

    /// After a kill: keeps the outcomes the worker wrote before it was killed that have
    /// already arrived (they need not be computed again). Those still in the pipe are
    /// not waited for: a worker writes out every 20 ms during a slow batch, so all but the
    /// last few milliseconds of work are already here, and the rest is computed again.
    fn keep_answers(worker: &mut Worker, request: &mut InFlight, work: &mut Work) {
        while let Some(message) = worker.recv_timeout(Duration::ZERO) {
            match message {
                Message::Reply(Reply::Ready { .. }) => worker.ready = true,
                Message::Reply(Reply::Outcomes {
                    request: r,
                    first,
                    outcomes,
                }) if worker.ready => {
                    if request.accept(r, first, outcomes, work).is_err() {
                        return;
                    }
                }
                Message::Reply(_) => {}
                Message::Bad(_) | Message::Eof => return,
            }
        }
    }

    /// A worker that stopped answering on its own: reap it, then decide what its death
    /// means for the evaluation it was running.
    fn bury(&mut self, mut worker: Worker, request: &InFlight, work: &mut Work) -> Result<()> {
        let status = worker.wait_or_kill(EXIT_BOUND)?;
        self.stopped()?;
        if !worker.ready {
            // Dying before `Ready` is not a rule's doing: a worker that exits (version
            // mismatch, bad setup) fails the run; signals are retried, a few times.
            self.startup_deaths += 1;
            if status.code().is_some() || self.startup_deaths >= STARTUP_DEATHS {
                let what = format!("exited with {} before it was ready", describe(status));
                return Err(with_stderr(
                    anyhow!("worker pid {} {what}", worker.pid),
                    &worker,
                ));
            }
            self.shared.counters.died.fetch_add(1, Ordering::Relaxed);
            self.keep_spare = true;
            return Ok(());
        }
        self.shared.counters.died.fetch_add(1, Ordering::Relaxed);
        self.keep_spare = true;
        // The evaluation in flight at the death; or, if it died between two, the one it
        // touched last (its outcome may be what killed it); or, if it never started this
        // request, the first one not answered. Whatever it is, a second death on the same
        // one records it as an error, so the lane always moves on.
        let last = worker
            .slot
            .read()
            .filter(|s| s.request == request.id)
            .map(|s| s.index);
        let blamed = match last {
            Some(index) if work.is_missing(index) => Some(index),
            Some(index) => work.next_missing_after(index),
            None => work.first_missing(),
        };
        let Some(blamed) = blamed else { return Ok(()) };
        let abort = rustix::process::Signal::ABORT.as_raw();
        if std::os::unix::process::ExitStatusExt::signal(&status) == Some(abort)
            && budget::died_of_memory(status, &worker.stderr_tail(STDERR_WAIT))
        {
            work.set(
                blamed,
                Outcome::error(format_args!(
                    "{}: the worker process reached its hard limit",
                    budget::exceeded_message(self.plan.memory_limit)
                )),
            );
        } else if work.struck.contains(&blamed) {
            let mut cause = format!("worker died: {}", describe(status));
            if status.code().is_some()
                && let Some(line) = worker.stderr_tail(STDERR_WAIT).lines().last()
            {
                cause.push_str(": ");
                cause.push_str(line.trim());
            }
            work.set(blamed, Outcome::error(cause));
        } else {
            work.struck.push(blamed);
        }
        Ok(())
    }
}

impl Lane for ProcessLane {
    fn evaluate(&mut self, batch: &Batch, out: &mut Vec<Outcome>) -> Result<()> {
        let rules = self.plan.rules;
        let mut work = Work::new(batch.rows.len() * rules);
        let mut frame = std::mem::take(&mut self.frame);
        // The whole batch goes in one request; after a kill or a death, the rest goes in
        // requests of `RESEND_ROWS`, so rules that hang on many rows of a big batch do not
        // have the rest of the batch sent again after each hang.
        let mut max_rows = usize::MAX;
        while work.missing > 0 {
            self.stopped()?;
            let mut request =
                InFlight::new(self.next_request, work.missing_ranges(rules, max_rows));
            // Only the rows the request needs: none before its first evaluation or after its last.
            let row_base = request.ranges[0].start as usize / rules;
            let row_end = request
                .ranges
                .last()
                .map_or(row_base, |r| (r.end as usize).div_ceil(rules));
            frame.clear();
            // Grown once, not doubled from empty (each doubling copies the frame so far).
            frame.reserve(frame_estimate(
                batch,
                row_base..row_end,
                &self.plan.sent_columns,
            ));
            let encoded = protocol::encode_batch(
                &mut frame,
                request.id,
                rules as u32,
                row_base as u64,
                &request.ranges,
                &batch.rows[row_base..row_end],
                &batch.raw,
                &self.plan.sent_columns,
            );
            // Past a frame's u32 length: too large, as a frame past the limit is.
            let length = match encoded {
                Err(protocol::ProtocolError::Oversize { length, .. }) => length,
                encoded => encoded.map(|()| frame.len())?,
            };
            if length > self.plan.max_frame {
                let rows = row_end - row_base;
                if rows > 1 {
                    // Too many bytes for one frame: half the rows, until it fits.
                    max_rows = rows / 2;
                    continue;
                }
                let cause = format!(
                    "the row is too large to send to a worker process ({length} bytes; at most {})",
                    self.plan.max_frame
                );
                for range in &request.ranges {
                    for index in range.clone() {
                        work.set(index, Outcome::error(&cause));
                    }
                }
                continue;
            }
            self.next_request += 1;
            max_rows = max_rows.min(RESEND_ROWS);
            let mut worker = self.take_worker()?;
            worker.send(&frame);
            if frame.capacity() > FRAME_KEPT {
                // A request of huge rows: its buffer is not held for the rest of the run.
                frame = Vec::new();
            }
            if let Some(mut dying) = self.dying.take() {
                dying.kill()?;
            }
            if self.keep_spare && self.spare.is_none() {
                // Started while the worker evaluates, off the critical path. Only a
                // convenience: if the system refuses a process now, try next time.
                self.spare = Worker::spawn(&self.plan, &self.shared).ok();
            }
            match self.supervise(&mut worker, &mut request, &mut work) {
                Err(what) => {
                    self.stopped()?;
                    return Err(self.fatal(worker, &what));
                }
                Ok(Ending::Answered) => self.worker = Some(worker),
                Ok(Ending::Overran { index }) => {
                    // Reaped once the rest is on its way to the next worker.
                    worker.signal_kill();
                    self.shared.counters.killed.fetch_add(1, Ordering::Relaxed);
                    self.keep_spare = true;
                    Self::keep_answers(&mut worker, &mut request, &mut work);
                    if work.is_missing(index) {
                        let limit = self.plan.timeouts[index as usize % rules];
                        work.set(index, Outcome::Timeout(limit));
                    }
                    self.dying = Some(worker);
                }
                Ok(Ending::Died) => self.bury(worker, &request, &mut work)?,
            }
        }
        if let Some(mut dying) = self.dying.take() {
            dying.kill()?;
        }
        self.frame = frame;
        work.finish(out);
        Ok(())
    }
}

impl Drop for ProcessLane {
    /// Closes every worker's stdin first, so they all exit at once; each is then reaped
    /// (or killed and reaped) by its own drop. Lanes are dropped before the summary is
    /// made, so its counters are complete.
    fn drop(&mut self) {
        for worker in self.worker.iter_mut().chain(self.spare.iter_mut()) {
            // One that already died on its own (killed from outside between batches)
            // still counts as died.
            if worker.try_status().is_some_and(|status| !status.success()) {
                self.shared.counters.died.fetch_add(1, Ordering::Relaxed);
            }
            worker.close_input();
        }
    }
}

/// Starts a worker, retrying for a few seconds when the system is out of processes,
/// memory or descriptors for the moment (the program's one `Backoff` policy): a busy
/// machine slows the run, it does not fail it. Any other error fails at once.
fn spawn_patiently(plan: &Plan, shared: &Arc<Shared>) -> Result<Worker> {
    let mut backoff = Backoff {
        retries: 0,
        give_up_after: Duration::from_secs(10),
    };
    backoff.retry_when(
        || Worker::spawn(plan, shared),
        |e| !shared.is_stopping() && any_out_of_resources(e),
        std::thread::sleep,
    )
}

/// About the bytes of a `Batch` frame of rows `rows` of `batch`: their kept fields, and a
/// few bytes per row and per field.
fn frame_estimate(batch: &Batch, rows: std::ops::Range<usize>, sent: &[bool]) -> usize {
    let raw = &batch.raw;
    let fields = raw.columns.len();
    // The rows' fields, as far as the batch holds them (none when it kept no raw fields).
    let field = |row: usize| raw.start((row * fields).min(raw.fields()));
    let raw_bytes = field(rows.end) - field(rows.start);
    let sent = sent.iter().filter(|&&s| s).count();
    256 + raw_bytes + rows.len() * (8 + 13 * sent)
}

/// Adds the worker's stderr tail to an error, or says it was empty.
fn with_stderr(err: anyhow::Error, worker: &Worker) -> anyhow::Error {
    let tail = worker.stderr_tail(STDERR_WAIT);
    if tail.is_empty() {
        anyhow!("{err} (its stderr is empty)")
    } else {
        anyhow!("{err}; its stderr ends with:\n{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_worker_has_time_for_its_lists() {
        assert_eq!(idle_limit(true, 100 << 20), IDLE_LIMIT);
        assert_eq!(idle_limit(false, 1000), IDLE_LIMIT);
        // The setup frame of a 1,000,000-key map list (about 16 MB).
        assert_eq!(
            idle_limit(false, 16 << 20),
            IDLE_LIMIT + Duration::from_secs(64)
        );
    }
}
