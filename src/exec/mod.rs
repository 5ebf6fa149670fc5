//! Stage 2 of a run: executors turn every (row, rule) of a batch into exactly one
//! `Outcome`. An executor hands out `Lane`s, one per job; the pipeline drives each lane on
//! its own thread with batches in input order.
//!
//! - `threads`: each lane is a private `Evaluator` on a rayon pool thread;
//! - `processes`: each lane is a supervisor thread and its worker process.

pub mod processes;
pub mod protocol;
pub mod threads;

use anyhow::Result;

use crate::model::{Batch, Outcome};

/// Evaluates batches for one job of the run.
pub trait Lane {
    /// Appends one outcome per (row, rule) of `batch`, row-major, rules in file order.
    /// `Err` is fatal to the run (not a rule failing: that is an `Outcome::Error`).
    fn evaluate(&mut self, batch: &Batch, out: &mut Vec<Outcome>) -> Result<()>;
}

/// A way to evaluate rules: it hands out one lane per job.
pub trait Executor: Send + Sync {
    /// Creates lane `index`; called once, on the thread that will drive it.
    fn lane(&self, index: usize) -> Result<Box<dyn Lane>>;
    /// Stops everything the executor started, at once: running evaluations stop at their
    /// next check, worker processes are killed. Called on the way out of an interrupted
    /// or failed run; must be safe to call from any thread.
    fn shutdown(&self);
}
