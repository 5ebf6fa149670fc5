//! Stage 2 of a run: executors turn every (row, rule) of a batch into exactly one
//! `Outcome`. An executor hands out `Lane`s, one per job; the pipeline drives each lane on
//! its own thread with batches in input order.
//!
//! - `threads`: each lane is a private `Evaluator` on a rayon pool thread;
//! - `processes`: each lane is a supervisor thread and its worker process.

pub mod processes;
pub mod protocol;
pub mod threads;

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

use crate::input::Batch;
use crate::outcome::Outcome;

/// Evaluates batches for one job of the run.
pub trait Lane {
    /// Appends one outcome per (row, rule) of `batch`, row-major, rules in file order.
    /// `Err` is fatal to the run (not a rule failing: that is an `Outcome::Error`).
    fn evaluate(&mut self, batch: &Batch, out: &mut Vec<Outcome>) -> Result<()>;
}

/// A way to evaluate rules, with `jobs()` lanes.
pub trait Executor: Send + Sync {
    /// `threads` or `processes`, as the summary names it.
    fn name(&self) -> &'static str;
    fn jobs(&self) -> usize;
    /// Creates lane `index`; called once, on the thread that will drive it.
    fn lane(&self, index: usize) -> Result<Box<dyn Lane>>;
    /// Worker-process counters, for executors that have worker processes.
    fn workers(&self) -> Option<WorkerCounts> {
        None
    }
    /// Stops everything the executor started (worker processes), at once. Called on the
    /// way out of an interrupted or failed run; must be safe to call from any thread.
    fn shutdown(&self) {}
}

/// Worker-process counters reported in the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounts {
    /// Worker processes started, replacements included.
    pub started: u64,
    /// Workers killed because an evaluation passed its deadline.
    pub killed: u64,
    /// Workers that died on their own (crash, signal from outside, OOM).
    pub died: u64,
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
