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

/// Stack of every thread that evaluates rules: the thread executor's lanes (the pool
/// builder in `pipeline` sets it, via `Executor::lane_stack_bytes`) and each worker
/// process's evaluation thread (`worker_loop`).
///
/// Why 64 MiB: Rhai recurses natively over nested values (clone, drop, size checks,
/// display), so the deepest value the sandbox allows must fit. Function pointers cannot
/// carry values (no `curry`, no capturing closures), so only arrays and maps nest, at
/// most as deep as their size limits (`rules::sandbox::limits`: 10,000 array elements,
/// 1,000 map entries, nested ones included). Measured in a debug build (the deepest
/// frames): 10,000 nested arrays, built, returned and displayed, overflow 8 MiB but fit
/// in 16 MiB; 1,000 nested maps fit in 8 MiB. 64 MiB covers both limits reached at once
/// with twice that to spare; release frames are smaller. It is address space, not
/// memory: only the pages a deep evaluation touches become resident.
pub const LANE_STACK_BYTES: usize = 64 << 20;

/// Stack of a lane that only supervises (a process lane: its worker evaluates).
pub const SUPERVISOR_STACK_BYTES: usize = 2 << 20;

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
    /// The stack the thread driving a lane needs: `LANE_STACK_BYTES` where the lane
    /// evaluates rules itself (a thousand process lanes must not reserve 64 GiB).
    fn lane_stack_bytes(&self) -> usize {
        LANE_STACK_BYTES
    }
    /// Whether lanes give batches their `RawFields` (the read columns' fields as bytes)
    /// instead of building those columns' values (`typing::Typer::with_raw_fields`): an
    /// executor that types elsewhere (worker processes) says so.
    fn raw_fields(&self) -> bool {
        false
    }
    /// Stops everything the executor started, at once: running evaluations stop at their
    /// next check, worker processes are killed. Called on the way out of an interrupted
    /// or failed run; must be safe to call from any thread.
    fn shutdown(&self);
}
