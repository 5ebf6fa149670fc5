//! One lane's loop, on a thread of its own: take a task (framing the next chunk when none
//! is left: `work`), split and type its records, evaluate the rows on the executor's lane,
//! format the results into bytes, hand them to the writer (writing them, and whatever
//! follows them in order, when they are next: `write`), read ahead. Every stage runs on
//! the lanes, so `-j N` keeps N threads busy, and no more.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::exec::{Executor, Lane};
use crate::format::{ResultsFormat, Side};
use crate::framer::Chunk;
use crate::model::{BadRow, Batch, Outcome};
use crate::pipeline::budget::ByteBudget;
use crate::pipeline::sizer::Sizer;
use crate::pipeline::windows::LaneWindows;
use crate::pipeline::work::{Taken, Task, WorkQueue};
use crate::pipeline::write::{Entry, OrderedWriter};
use crate::typing::Typer;

/// A task's results, ready to write.
pub struct Finished {
    /// Result lines, formatted.
    pub results: Vec<u8>,
    /// The task's bad rows, in input order.
    pub bad: Vec<BadRow>,
    pub rows: u64,
    /// Per rule: counts of true, false, error, timeout.
    pub counts: Vec<[u64; 4]>,
    /// The decisions' lines and the format's counters (`format::Side`).
    pub side: Side,
    /// Bytes to give back to the budget once written: this output's, and the chunk's
    /// for its last task.
    pub release: usize,
}

/// What every lane shares.
pub struct Shared<'a> {
    pub queue: &'a WorkQueue,
    pub sizer: &'a Sizer,
    pub budget: &'a ByteBudget,
    /// Chunks no task holds any more go back to the reader for their buffers.
    pub recycle: Sender<Chunk>,
    pub writer: &'a OrderedWriter,
    /// Wakes the run when this lane ends it (a failure); the run also learns that every
    /// lane is done when the last one drops its sender.
    pub ended: Sender<()>,
}

/// Drives lane `index` of `executor` until the work runs out or the run is over. A panic
/// (a bug) fails the run like an error, not the process. With `windows`, each task's rows
/// are fed to the windows stage in task order before they are evaluated.
pub fn drive(
    executor: &dyn Executor,
    index: usize,
    mut typer: Typer,
    mut format: ResultsFormat,
    mut windows: Option<LaneWindows>,
    shared: Shared<'_>,
) {
    // The lane failed: at task `seq` (the writer reports it once every task before it is
    // written, so an earlier bad row is reported first), or before taking any.
    let failed = |windows: &Option<LaneWindows>, seq: Option<u64>, error| {
        // A task this lane took may never have had its turn: nobody waits for it. The
        // tasks before it still take theirs, so that the writer reaches this failure (a
        // task before it dropped for want of its turn left the failure unreported, and
        // the run waiting for it).
        if let Some(windows) = windows {
            match seq {
                Some(seq) => windows.close_from(seq),
                None => windows.close(),
            }
        }
        match seq {
            Some(seq) => {
                shared
                    .writer
                    .deposit(seq, Entry::Failed(error), shared.budget);
            }
            None => shared.writer.fail(error),
        }
        let _ = shared.ended.send(());
    };
    let started = panic::catch_unwind(AssertUnwindSafe(|| executor.lane(index)));
    let mut lane = match started {
        Ok(Ok(lane)) => lane,
        Ok(Err(e)) => return failed(&windows, None, e),
        Err(panic) => return failed(&windows, None, panicked(index, panic)),
    };
    let mut batch = Batch::default();
    let mut outcomes = Vec::new();
    // A closed queue (the run failed or was interrupted) hands out nothing: the lane ends.
    loop {
        let asked = shared.sizer.records();
        let task = match shared.queue.take(asked, shared.budget) {
            None => return,
            Some(Taken::Task(task)) => task,
            // Reading failed: the last task of the input. The windows stay open (the tasks
            // before it are still to take their turns).
            Some(Taken::Failed { seq, error }) => {
                if !shared
                    .writer
                    .deposit(seq, Entry::Failed(error), shared.budget)
                {
                    let _ = shared.ended.send(());
                }
                return;
            }
        };
        let seq = task.seq;
        let done = panic::catch_unwind(AssertUnwindSafe(|| {
            let mut work = Work {
                lane: &mut *lane,
                typer: &mut typer,
                format: &mut format,
                batch: &mut batch,
                outcomes: &mut outcomes,
                windows: windows.as_mut(),
            };
            work.run(task, asked, &shared)
        }));
        let finished = match done {
            Ok(Ok(Some(finished))) => finished,
            // The budget or the windows' turns are closed: the run is over.
            Ok(Ok(None)) => return,
            Ok(Err(e)) => return failed(&windows, Some(seq), e),
            Err(panic) => return failed(&windows, Some(seq), panicked(index, panic)),
        };
        if !shared
            .writer
            .deposit(seq, Entry::Task(finished), shared.budget)
        {
            // The run failed (maybe here, writing): wake it.
            let _ = shared.ended.send(());
            return;
        }
        shared.queue.read_ahead(shared.budget);
    }
}

/// The error for a panic of lane `index`.
fn panicked(index: usize, panic: Box<dyn Any + Send>) -> anyhow::Error {
    anyhow!(
        "internal error: lane {index} panicked: {}",
        panic_message(&*panic)
    )
}

/// What a panic said, if it said it as text.
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// What a lane holds across tasks.
struct Work<'l> {
    lane: &'l mut dyn Lane,
    typer: &'l mut Typer,
    format: &'l mut ResultsFormat,
    batch: &'l mut Batch,
    outcomes: &'l mut Vec<Outcome>,
    windows: Option<&'l mut LaneWindows>,
}

impl Work<'_> {
    /// Types, evaluates and formats `task`, and charges its output to the budget; `None`
    /// once the budget or the windows' turns are closed.
    fn run(&mut self, task: Task, asked: usize, shared: &Shared<'_>) -> Result<Option<Finished>> {
        let rules = self.format.rules();
        let started = Instant::now();
        let mut bad = Vec::new();
        let records = task.chunk.records().skip(task.records.start);
        let mut windows = self.windows.as_deref_mut();
        self.typer.type_batch(
            records.take(task.records.len()),
            self.batch,
            &mut bad,
            |_, body, _| {
                // Tests break typing (a bug) on a row of their choosing.
                #[cfg(test)]
                super::tests::typing_hook(body);
                windows.as_mut().map_or(Ok(()), |w| w.row(body))
            },
        );
        // Each row gets its window values after its columns, once every earlier task's
        // rows are in the windows. The turn (its wait, then the windows' sequential work)
        // depends on the other lanes: it is left out of this task's cost (`sizer`).
        let mut waited = Duration::ZERO;
        if let Some(windows) = windows {
            let turn = Instant::now();
            if !windows.take_turn(task.seq, &mut self.batch.rows) {
                return Ok(None);
            }
            waited = turn.elapsed();
        }
        self.batch.seq = task.seq;
        self.outcomes.clear();
        if !self.batch.rows.is_empty() {
            self.lane.evaluate(self.batch, self.outcomes)?;
        }
        if self.outcomes.len() != self.batch.rows.len() * rules {
            return Err(anyhow!(
                "internal error: task {} came back with {} outcomes for {} rows × {rules} rules",
                task.seq,
                self.outcomes.len(),
                self.batch.rows.len()
            ));
        }
        let mut results = Vec::with_capacity(self.outcomes.len() * 24);
        let mut counts = vec![[0; 4]; rules];
        let mut side = Side::default();
        self.format.rows(
            &self.batch.rows,
            self.outcomes,
            &mut results,
            &mut counts,
            &mut side,
        );
        shared.sizer.observe(
            asked,
            task.records.len(),
            started.elapsed().saturating_sub(waited),
        );
        if let Ok(chunk) = Arc::try_unwrap(task.chunk) {
            let _ = shared.recycle.send(chunk);
        }
        // What the writer will hold until it can write this task.
        let output = results.capacity()
            + side.bytes.capacity()
            + bad
                .iter()
                .map(|b: &BadRow| b.raw.len() + b.reason.len())
                .sum::<usize>();
        if !shared.budget.acquire_output(task.seq, output) {
            return Ok(None);
        }
        Ok(Some(Finished {
            results,
            bad,
            rows: self.batch.rows.len() as u64,
            counts,
            side,
            release: task.release + output,
        }))
    }
}
