//! The writer stage, on the calling thread: it puts finished tasks back in input order
//! and writes their bytes, handles bad rows in input order (the first fails the run under
//! `--bad-rows fail`; under `skip` they go to the rejects file), counts, and gives each
//! chunk's bytes back to the budget once its last task is written.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::config::BadRows;
use crate::exit::Interrupted;
use crate::input::BadRowError;
use crate::output::{RejectsWriter, ResultsWriter};
use crate::pipeline::Tally;
use crate::pipeline::budget::ByteBudget;
use crate::pipeline::lane::{Done, Finished};
use crate::signals::StopFlag;

/// Where finished tasks go.
pub struct Outputs<'a> {
    pub results: &'a mut ResultsWriter,
    pub rejects: Option<&'a mut RejectsWriter>,
    pub bad_rows: BadRows,
    /// The input's name, for the message of a bad row.
    pub input: &'a str,
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
    loop {
        if let Some(signal) = stop.signal() {
            // The caller's error path shuts the executor down, stopping what runs.
            return Err(Interrupted(signal).into());
        }
        match done.recv_timeout(Duration::from_millis(50)) {
            Ok(Done::Task(task)) => {
                pending.insert(task.seq, task);
                while let Some(task) = pending.remove(&next) {
                    write_task(task, out, budget, tally)?;
                    next += 1;
                }
            }
            Ok(Done::Failed(e)) => return Err(e),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(pending.is_empty()),
        }
    }
}

fn write_task(
    task: Finished,
    out: &mut Outputs<'_>,
    budget: &ByteBudget,
    tally: &mut Tally,
) -> Result<()> {
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
    budget.release(task.release);
    Ok(())
}
