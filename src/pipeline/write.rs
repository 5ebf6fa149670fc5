//! The writer stage, on the calling thread: it puts finished tasks back in input order
//! and writes their bytes, handles bad rows in input order (the first fails the run under
//! `--bad-rows fail`; under `skip` they go to the rejects file), counts, and gives each
//! task's output (and its chunk's bytes, after the chunk's last task) back to the budget
//! once written. A lane's failure is reported in its task's place, after the tasks
//! before it: the first problem in input order is the one reported.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use std::io::Write;

use anyhow::{Context, Result, anyhow};

use crate::config::BadRows;
use crate::exit::Interrupted;
use crate::input::BadRowError;
use crate::model::Tally;
use crate::output::{RejectsWriter, ResultsWriter, Sink};
use crate::pipeline::budget::ByteBudget;
use crate::pipeline::lane::{Done, Finished};
use crate::signals::StopFlag;

/// Where finished tasks go.
pub struct Outputs<'a> {
    pub results: &'a mut ResultsWriter,
    /// `--decisions`: the lines of `Finished::side`, in order.
    pub side: Option<&'a mut SideWriter>,
    pub rejects: Option<&'a mut RejectsWriter>,
    pub bad_rows: BadRows,
    /// The input's name, for the message of a bad row.
    pub input: &'a str,
    /// Told every transaction written, and its `error` and `timeout` results.
    pub progress: &'a crate::progress::Progress,
}

/// Writes every task in order until the lanes are done; `tally` counts what was written.
/// Returns whether every task handed out was written.
pub fn write_in_order(
    done: &Receiver<Done>,
    out: &mut Outputs<'_>,
    budget: &ByteBudget,
    stop: &StopFlag,
    tally: &mut Tally,
) -> Result<bool> {
    let mut next = 0u64;
    let mut pending: BTreeMap<u64, Finished> = BTreeMap::new();
    // The earliest failed task: reported once every task before it is written, so that
    // the first problem in input order is the one reported.
    let mut failed: Option<(u64, anyhow::Error)> = None;
    loop {
        if let Some(signal) = stop.signal() {
            // The caller's error path shuts the executor down, stopping what runs.
            return Err(Interrupted(signal).into());
        }
        match done.recv_timeout(Duration::from_millis(50)) {
            Ok(Done::Task(task)) => {
                pending.insert(task.seq, task);
                while let Some(task) = pending.remove(&next) {
                    let release = task.release;
                    write_task(task, out, tally)?;
                    next += 1;
                    budget.written(release, Some(next));
                }
            }
            Ok(Done::Failed { seq: None, error }) => return Err(error),
            Ok(Done::Failed {
                seq: Some(seq),
                error,
            }) => {
                if failed.as_ref().is_none_or(|(first, _)| seq < *first) {
                    failed = Some((seq, error));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return match failed {
                    Some((_, error)) => Err(error),
                    None => Ok(pending.is_empty()),
                };
            }
        }
        if let Some((seq, _)) = &failed
            && *seq <= next
            && let Some((_, error)) = failed.take()
        {
            return Err(error);
        }
    }
}

/// A second output written in input order beside the results (`--decisions`).
pub struct SideWriter {
    sink: Sink,
}

impl SideWriter {
    /// Starts the output with its `header` line.
    pub fn new(mut sink: Sink, header: &str) -> Result<SideWriter> {
        sink.write_all(header.as_bytes())
            .and_then(|()| sink.write_all(b"\n"))
            .with_context(|| format!("cannot write {}", sink.label()))?;
        Ok(SideWriter { sink })
    }

    /// Writes finished lines; a stream is flushed after each task, like the results.
    pub fn write(&mut self, lines: &[u8]) -> Result<()> {
        let streams = self.sink.streams();
        self.sink
            .write_all(lines)
            .and_then(|()| if streams { self.sink.flush() } else { Ok(()) })
            .with_context(|| format!("cannot write {}", self.sink.label()))
    }

    /// Flushes and syncs, leaving the rename to `commit_all`.
    pub fn finish(self) -> Result<crate::output::Finished> {
        self.sink.finish()
    }
}

fn write_task(task: Finished, out: &mut Outputs<'_>, tally: &mut Tally) -> Result<()> {
    let skipped = task.bad.len() as u64;
    for bad in task.bad {
        match (out.bad_rows, out.rejects.as_deref_mut()) {
            (BadRows::Skip, Some(rejects)) => {
                rejects.write(&bad)?;
                tally.bad_rows += 1;
            }
            _ => {
                return Err(BadRowError {
                    input: out.input.to_string(),
                    row: bad,
                }
                .into());
            }
        }
    }
    out.results
        .write_formatted(&task.results, task.rows, &task.counts)?;
    out.results.count_extra(&task.side.counters);
    if let Some(side) = out.side.as_deref_mut() {
        side.write(&task.side.bytes)?;
    }
    if tally.extra.len() < task.side.counters.len() {
        tally.extra.resize(task.side.counters.len(), 0);
    }
    for (total, c) in tally.extra.iter_mut().zip(&task.side.counters) {
        *total += c;
    }
    tally.rows += task.rows;
    if tally.counts.len() != task.counts.len() {
        return Err(anyhow!(
            "internal error: counts of {} rules",
            task.counts.len()
        ));
    }
    for (total, counts) in tally.counts.iter_mut().zip(&task.counts) {
        for (t, c) in total.iter_mut().zip(counts) {
            *t += c;
        }
    }
    let of = |kind: crate::model::Kind| task.counts.iter().map(|c| c[kind as usize]).sum();
    out.progress.written(
        task.rows,
        skipped,
        of(crate::model::Kind::Error),
        of(crate::model::Kind::Timeout),
    );
    Ok(())
}
