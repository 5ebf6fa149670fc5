//! One lane's loop, on a pool thread: take a task, split and type its records, evaluate
//! the rows on the executor's lane, format the results into bytes, hand them to the
//! writer. Everything that scales with the input happens here, on every core.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Instant;

use anyhow::anyhow;

use crate::exec::Executor;
use crate::format::ResultsFormat;
use crate::framer::Chunk;
use crate::model::{BadRow, Batch};
use crate::pipeline::sizer::Sizer;
use crate::pipeline::work::WorkQueue;
use crate::typing::Typer;

/// A task's results, ready to write.
pub struct Finished {
    pub seq: u64,
    /// Result lines, formatted.
    pub results: Vec<u8>,
    /// The task's bad rows, in input order.
    pub bad: Vec<BadRow>,
    pub rows: u64,
    /// Per rule: counts of true, false, error, timeout.
    pub counts: Vec<[u64; 4]>,
    /// Bytes to give back to the budget once written.
    pub release: usize,
}

/// What a lane tells the writer.
pub enum Done {
    Task(Finished),
    Failed(anyhow::Error),
}

/// What every lane shares.
pub struct Shared<'a> {
    pub queue: &'a WorkQueue,
    pub sizer: &'a Sizer,
    pub abort: &'a AtomicBool,
    /// Chunks no task holds any more go back to the reader for their buffers.
    pub recycle: Sender<Chunk>,
    pub done: Sender<Done>,
}

/// Drives lane `index` of `executor` until the work runs out, the run aborts or the
/// writer goes away.
pub fn drive(
    executor: &dyn Executor,
    index: usize,
    mut typer: Typer,
    mut format: ResultsFormat,
    shared: Shared<'_>,
) {
    let mut lane = match executor.lane(index) {
        Ok(lane) => lane,
        Err(e) => {
            let _ = shared.done.send(Done::Failed(e));
            return;
        }
    };
    let rules = format.rules();
    let mut batch = Batch::default();
    let mut outcomes = Vec::new();
    while !shared.abort.load(Ordering::Relaxed) {
        let asked = shared.sizer.records();
        let Some(task) = shared.queue.take(asked) else {
            return;
        };
        let started = Instant::now();
        let mut bad = Vec::new();
        let records = task.chunk.records().skip(task.records.start);
        typer.type_records(records.take(task.records.len()), &mut batch.rows, &mut bad);
        batch.seq = task.seq;
        outcomes.clear();
        if !batch.rows.is_empty()
            && let Err(e) = lane.evaluate(&batch, &mut outcomes)
        {
            let _ = shared.done.send(Done::Failed(e));
            return;
        }
        if outcomes.len() != batch.rows.len() * rules {
            let e = anyhow!(
                "internal error: task {} came back with {} outcomes for {} rows × {rules} rules",
                task.seq,
                outcomes.len(),
                batch.rows.len()
            );
            let _ = shared.done.send(Done::Failed(e));
            return;
        }
        let mut results = Vec::with_capacity(outcomes.len() * 24);
        let mut counts = vec![[0; 4]; rules];
        format.rows(&batch.rows, &outcomes, &mut results, &mut counts);
        shared
            .sizer
            .observe(asked, task.records.len(), started.elapsed());
        if let Ok(chunk) = Arc::try_unwrap(task.chunk) {
            let _ = shared.recycle.send(chunk);
        }
        let finished = Finished {
            seq: task.seq,
            results,
            bad,
            rows: batch.rows.len() as u64,
            counts,
            release: task.release,
        };
        if shared.done.send(Done::Task(finished)).is_err() {
            return;
        }
    }
}
