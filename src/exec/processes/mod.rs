//! The process executor (`--executor processes`): each lane is a supervisor and one
//! long-lived worker process (this binary re-executed as `txguard worker`), fed batches
//! over stdin, answering over stdout (`exec::protocol`). What threads cannot do, this
//! can: an evaluation blocked outside the interpreter (`sleep_ms`, a stuck native call)
//! is stopped at its deadline by killing its worker, and a worker that crashes costs
//! nothing but a retry.
//!
//! - `supervisor`: the lane: sends batches, watches deadlines, kills, respawns, retries;
//! - `worker_loop`: what runs inside a worker: setup, then evaluate batch after batch;
//! - `work`: which evaluations of a batch have their outcome (retries lose nothing);
//! - `worker_process`: one child process, its pipes, kill and reap;
//! - `reply_reader`: a worker's stdout, read by its supervisor with a deadline;
//! - `progress_slot`: shared memory that tells the supervisor which evaluation is in
//!   flight and since when, without a system call per evaluation.

pub mod progress_slot;
mod reply_reader;
mod start_clock;
mod supervisor;
mod work;
pub mod worker_loop;
mod worker_process;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Executor, Lane};
use crate::budget;
use crate::exec::protocol::{self, Setup};
use crate::model::{Columns, WorkerCounts};
use crate::rules::RuleSet;

/// Past its rule's time limit, an evaluation still in flight and running on the CPU is
/// given this much more before its worker is killed: the worker's own cooperative
/// deadline stops an ordinary `loop {}` within microseconds, so this only absorbs
/// scheduling delays, and saves a process start per ordinary hang.
///
/// An evaluation still in flight past its limit gives `timeout` whether it is killed or
/// stops itself (`Evaluator::evaluate` turns any late finish into a timeout), so a kill
/// never changes a result; the grace is a matter of cost only. Hence a worker that is
/// *blocked* past the limit (asleep in `sleep_ms`, or stopped: it cannot stop itself) is
/// killed sooner, `BLOCKED_MARGIN` past the limit.
pub const KILL_GRACE: Duration = Duration::from_millis(20);
/// See `KILL_GRACE`: the margin past the limit for a worker that is not running.
pub const BLOCKED_MARGIN: Duration = Duration::from_millis(1);

/// What a worker needs to rebuild the run's evaluator.
pub struct WorkerSetup {
    /// The rules file's text, parsed again by each worker (not re-read from disk).
    pub rules_text: String,
    /// `--timeout`, the default limit of rules without their own.
    pub default_timeout: Duration,
    /// The memory budget of one evaluation (`RuleSet::memory_limit`, resolved).
    pub memory_limit: usize,
    pub columns: Columns,
    pub seed: u64,
    /// The `[lists.*]` files' bytes, read once (`rules::LoadedRules::list_files`).
    pub list_files: Vec<Vec<u8>>,
    /// `--max-record-size`: the frames to workers make room for one such row.
    pub max_record: usize,
}

/// What every lane needs to start and supervise workers; built once per run.
pub struct Plan {
    /// The program to run: `/proc/self/exe`, this very binary even if the file on disk
    /// has been replaced since the run started (a rebuild would otherwise start workers
    /// of another version).
    program: PathBuf,
    /// `argv[0]` of workers, as people see them in `ps`.
    arg0: OsString,
    /// The `Setup` frame, encoded once.
    setup_frame: Vec<u8>,
    /// The largest frame sent to a worker (`protocol::max_to_worker`), which it is told.
    max_frame: usize,
    rules: usize,
    /// Per rule (file order): its time limit in nanoseconds.
    limit_ns: Vec<u64>,
    /// Past the limit, when a blocked worker is killed (`BLOCKED_MARGIN`), and when a
    /// running one is (`KILL_GRACE`), in nanoseconds.
    blocked_margin_ns: u64,
    grace_ns: u64,
    /// The rules' time limits, recorded as `timeout` outcomes when a worker is killed.
    timeouts: Vec<Duration>,
    /// The memory budget of one evaluation, for messages.
    memory_limit: usize,
    /// Each worker's hard `RLIMIT_DATA` (`budget::worker_data_limit`), clamped to the
    /// hard limit this process has (raising it would be refused).
    data_limit: u64,
    /// Per column: whether its values cross the pipe: only those some rule may read
    /// (`RuleSet::columns_read`); the others are not in the frame and are unit in the
    /// worker. With typical rules that is most string columns: their copy and decoding
    /// dominated a worker's time. The input's read columns go as the fields the lanes
    /// kept (`Executor::raw_fields`, `typing::keep_field`), made values by the worker.
    sent_columns: Vec<bool>,
}

/// Lock-free counters behind `WorkerCounts`, shared by supervisor threads.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub started: AtomicU64,
    pub killed: AtomicU64,
    pub died: AtomicU64,
}

impl WorkerCounters {
    pub fn snapshot(&self) -> WorkerCounts {
        WorkerCounts {
            started: self.started.load(Ordering::Relaxed),
            killed: self.killed.load(Ordering::Relaxed),
            died: self.died.load(Ordering::Relaxed),
        }
    }
}

/// State shared by the lanes of a run and `shutdown`.
pub struct Shared {
    pub counters: WorkerCounters,
    /// Pids of live, unreaped workers (a reaped pid is removed before it can be reused).
    live: Mutex<Vec<u32>>,
    stopping: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            counters: WorkerCounters::default(),
            live: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        }
    }

    /// Records a new worker; false if the run is stopping (the caller kills it).
    fn register(&self, pid: u32) -> bool {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_stopping() {
            return false;
        }
        live.push(pid);
        true
    }

    fn deregister(&self, pid: u32) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|&p| p != pid);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Kills every live worker at once; no new one starts after this.
    fn shutdown(&self) {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        self.stopping.store(true, Ordering::Relaxed);
        for &pid in live.iter() {
            // Registered, hence not yet reaped: the pid is still our child's.
            worker_process::kill_group_and_process(pid);
        }
    }
}

pub struct ProcessesExecutor {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
}

impl ProcessesExecutor {
    pub fn new(rules: &RuleSet, setup: WorkerSetup) -> Result<ProcessesExecutor> {
        let exe = std::env::current_exe()
            .context("cannot find the txguard executable to start workers")?;
        let self_exe = PathBuf::from("/proc/self/exe");
        let program = if self_exe.exists() {
            self_exe
        } else {
            exe.clone()
        };
        let sent_columns = rules.columns_read(&setup.columns);
        // The lists travel in the setup frame, read under the worker's frame limit; lists
        // past it are refused before they are copied into a frame (whose u32 length could
        // not say 4 GiB of them).
        let max_frame = protocol::max_to_worker(setup.max_record);
        let listed = setup.list_files.iter().map(Vec::len).sum::<usize>();
        let too_large = |bytes: usize| {
            anyhow::anyhow!(
                "the rules and their lists take {bytes} bytes: more than worker processes \
                 accept ({max_frame} bytes); use --executor threads"
            )
        };
        if listed.saturating_add(setup.rules_text.len()) > max_frame {
            return Err(too_large(listed.saturating_add(setup.rules_text.len())));
        }
        let mut setup_frame = Vec::new();
        protocol::encode_setup(
            &mut setup_frame,
            &Setup {
                rules_text: setup.rules_text,
                default_timeout: setup.default_timeout,
                memory_limit: setup.memory_limit as u64,
                columns: setup.columns,
                seed: setup.seed,
                list_files: setup.list_files,
            },
        );
        if setup_frame.len() > max_frame {
            return Err(too_large(setup_frame.len()));
        }
        let timeouts: Vec<Duration> = rules.rules.iter().map(|r| r.timeout).collect();
        let hard = rustix::process::getrlimit(rustix::process::Resource::Data).maximum;
        let data_limit =
            budget::worker_data_limit(setup.memory_limit, crate::exec::LANE_STACK_BYTES, max_frame)
                // The lists, parsed: their maps hold a few times their files' bytes.
                .saturating_add(8 * setup_frame.len() as u64)
                .min(hard.unwrap_or(u64::MAX));
        let memory_limit = setup.memory_limit;
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let limit_ns = timeouts.iter().map(|&t| nanos(t)).collect();
        let plan = Plan {
            program,
            arg0: exe.into_os_string(),
            setup_frame,
            max_frame,
            rules: rules.rules.len(),
            limit_ns,
            blocked_margin_ns: nanos(BLOCKED_MARGIN),
            grace_ns: nanos(KILL_GRACE),
            timeouts,
            memory_limit,
            data_limit,
            sent_columns,
        };
        Ok(ProcessesExecutor {
            plan: Arc::new(plan),
            shared: Arc::new(Shared::new()),
        })
    }

    /// Worker processes started, killed and dead so far.
    pub fn workers(&self) -> WorkerCounts {
        self.shared.counters.snapshot()
    }
}

impl Executor for ProcessesExecutor {
    /// Starts the lane's first worker from the calling thread, which drives the lane for
    /// the whole run: `PR_SET_PDEATHSIG` fires when the spawning thread exits.
    fn lane(&self, _index: usize) -> Result<Box<dyn Lane>> {
        Ok(Box::new(supervisor::ProcessLane::new(
            Arc::clone(&self.plan),
            Arc::clone(&self.shared),
        )?))
    }

    fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// A process lane supervises; its worker evaluates, on its own big stack.
    fn lane_stack_bytes(&self) -> usize {
        crate::exec::SUPERVISOR_STACK_BYTES
    }

    /// Workers type the read columns from their fields' bytes: lanes only check them.
    fn raw_fields(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ColumnType;
    use crate::rules::file;

    #[test]
    fn only_columns_some_rule_names_are_sent() {
        let rules = r#"
[[rule]]
id = 1
name = "a"
when = "amount>1.0&&coin_flip()"

[[rule]]
id = 2
name = "b"
when = '''
let m = #{x: country};
m.x == "FR"
'''
"#;
        let set = file::parse(rules, Duration::from_secs(1)).unwrap();
        let names = ["id", "amount", "country", "merchant", "count"];
        let columns = Columns {
            names: names.iter().map(ToString::to_string).collect(),
            types: vec![ColumnType::String; names.len()],
        };
        assert_eq!(
            set.columns_read(&columns),
            [false, true, true, false, false]
        );
    }
}
