//! The writer role: whichever lane finishes the task the output waits for writes it, and
//! every finished task after it, in input order (a lane that finishes out of order leaves
//! its task to be written). No thread of its own, so that `-j N` runs on N threads. The
//! writer handles bad rows in input order (the first fails the run under `--bad-rows
//! fail`; under `skip` they go to the rejects file), counts, and gives each task's output
//! (and its chunk's bytes, after the chunk's last task) back to the budget once written.
//! A lane's failure is reported in its task's place, after the tasks before it: the first
//! problem in input order is the one reported.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use std::io::Write;

use anyhow::{Context, Result, anyhow};

use crate::config::BadRows;
use crate::input::BadRowError;
use crate::model::Tally;
use crate::output::{RejectsWriter, ResultsWriter, Sink};
use crate::pipeline::budget::ByteBudget;
use crate::pipeline::lane::{Finished, panic_message};

/// The outputs of a run: lent to the pipeline for one input, and given back.
pub struct Writers {
    pub results: ResultsWriter,
    /// `--rejects` (under `--bad-rows skip`).
    pub rejects: Option<RejectsWriter>,
    /// `--decisions`: the lines of `Finished::side`, in order.
    pub side: Option<SideWriter>,
}

/// Where finished tasks go, and how they are counted.
struct Outputs {
    writers: Writers,
    bad_rows: BadRows,
    /// The input's name, for the message of a bad row.
    input: String,
    /// Told every transaction written, and its `error` and `timeout` results.
    progress: crate::progress::Progress,
    tally: Tally,
}

/// What a lane hands the writer for task `seq`.
pub enum Entry {
    Task(Finished),
    /// The lane failed at this task (or reading the input failed here).
    Failed(anyhow::Error),
}

/// Puts finished tasks back in input order and writes them.
pub struct OrderedWriter {
    order: Mutex<Order>,
    /// Locked by the lane that writes (one at a time, as `Order::writing` says), and by
    /// the run at its end to take the outputs back (`None` then).
    outputs: Mutex<Option<Outputs>>,
}

struct Order {
    pending: BTreeMap<u64, Entry>,
    /// The task written next.
    next: u64,
    /// A lane is writing: it writes whatever is next before it lets go.
    writing: bool,
    /// The run failed: what it reports. Nothing more is written.
    error: Option<anyhow::Error>,
}

impl Order {
    /// The task the writing lane writes next, if it is done; the lane stops writing
    /// (`writing` cleared) when it is not, or (`Err`) when the run has failed meanwhile: a
    /// lane that could not start, or a signal, must not let the writing lane go on
    /// streaming finished tasks to stdout until the run takes the outputs back.
    fn take_next(&mut self) -> Result<Option<Entry>, ()> {
        if self.error.is_some() {
            self.writing = false;
            return Err(());
        }
        let entry = self.pending.remove(&self.next);
        self.writing = entry.is_some();
        Ok(entry)
    }
}

impl OrderedWriter {
    pub fn new(
        writers: Writers,
        bad_rows: BadRows,
        input: String,
        progress: crate::progress::Progress,
        tally: Tally,
    ) -> OrderedWriter {
        OrderedWriter {
            order: Mutex::new(Order {
                pending: BTreeMap::new(),
                next: 0,
                writing: false,
                error: None,
            }),
            outputs: Mutex::new(Some(Outputs {
                writers,
                bad_rows,
                input,
                progress,
                tally,
            })),
        }
    }

    fn order(&self) -> MutexGuard<'_, Order> {
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands over task `seq`; if it is next (and no lane is writing), writes it and every
    /// task after it that is done. False once the run has failed.
    pub fn deposit(&self, seq: u64, entry: Entry, budget: &ByteBudget) -> bool {
        let mut order = self.order();
        if order.error.is_some() {
            return false;
        }
        order.pending.insert(seq, entry);
        if order.writing {
            return true;
        }
        order.writing = true;
        loop {
            let next = order.next;
            let entry = match order.take_next() {
                Ok(Some(entry)) => entry,
                Ok(None) => return true,
                Err(()) => return false,
            };
            drop(order);
            let written = match entry {
                Entry::Task(task) => {
                    let release = task.release;
                    let mut outputs = self.outputs();
                    match outputs.as_mut() {
                        // A panic (a bug) fails the run, not the lane that writes: it
                        // would leave `writing` set, and the run waiting for nobody.
                        Some(outputs) => {
                            panic::catch_unwind(AssertUnwindSafe(|| write_task(task, outputs)))
                                .unwrap_or_else(|panic| {
                                    Err(anyhow!(
                                        "internal error: writing task {next} panicked: {}",
                                        panic_message(&*panic)
                                    ))
                                })
                                .inspect(|()| budget.written(release, Some(next + 1)))
                        }
                        // Taken back: the run is over (its error is set).
                        None => Err(anyhow!("the run is over")),
                    }
                }
                Entry::Failed(error) => Err(error),
            };
            order = self.order();
            match written {
                Ok(()) => order.next = next + 1,
                Err(error) => {
                    order.writing = false;
                    order.error.get_or_insert(error);
                    return false;
                }
            }
        }
    }

    /// The run fails with `error` (a lane that could not start), whatever is pending.
    pub fn fail(&self, error: anyhow::Error) {
        self.order().error.get_or_insert(error);
    }

    /// Whether the run has failed.
    pub fn failed(&self) -> bool {
        self.order().error.is_some()
    }

    fn outputs(&self) -> MutexGuard<'_, Option<Outputs>> {
        self.outputs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The end of the run: the outputs back (after the write a lane may be in the middle
    /// of: once taken, nothing more is written), and what the pipeline wrote (`Ok(None)`
    /// when some of the `tasks` handed out were never written), or why it failed. With
    /// lanes still running (a failed or interrupted run), `tasks` does not matter.
    pub fn finish(&self, tasks: u64) -> (Option<Writers>, Result<Option<Tally>>) {
        let mut order = self.order();
        let error = order.error.take();
        // Set, so that a lane still running writes nothing more.
        order.error = Some(anyhow!("the run is over"));
        let complete = order.next == tasks && order.pending.is_empty();
        drop(order);
        match (self.outputs().take(), error) {
            (Some(outputs), Some(error)) => (Some(outputs.writers), Err(error)),
            (Some(outputs), None) => (Some(outputs.writers), Ok(complete.then_some(outputs.tally))),
            (None, _) => (
                None,
                Err(anyhow!("internal error: the outputs were taken twice")),
            ),
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

fn write_task(task: Finished, out: &mut Outputs) -> Result<()> {
    let Outputs {
        writers,
        bad_rows,
        input,
        progress,
        tally,
    } = out;
    let skipped = task.bad.len() as u64;
    for bad in task.bad {
        match (*bad_rows, writers.rejects.as_mut()) {
            (BadRows::Skip, Some(rejects)) => {
                rejects.write(&bad)?;
                tally.bad_rows += 1;
            }
            _ => {
                return Err(BadRowError {
                    input: input.clone(),
                    row: bad,
                }
                .into());
            }
        }
    }
    writers
        .results
        .write_formatted(&task.results, task.rows, &task.counts)?;
    writers.results.count_extra(&task.side.counters);
    if let Some(side) = writers.side.as_mut() {
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
    progress.written(
        task.rows,
        skipped,
        of(crate::model::Kind::Error),
        of(crate::model::Kind::Timeout),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writing() -> Order {
        Order {
            pending: BTreeMap::new(),
            next: 0,
            writing: true,
            error: None,
        }
    }

    fn failed(what: &str) -> Entry {
        Entry::Failed(anyhow!("{what}"))
    }

    #[test]
    fn the_writing_lane_takes_the_next_task_and_lets_go_at_a_gap() {
        let mut order = writing();
        order.pending.insert(1, failed("one"));
        assert!(matches!(order.take_next(), Ok(None)), "task 0 is not done");
        assert!(
            !order.writing,
            "nobody writes: the lane that deposits 0 will"
        );
        order.pending.insert(0, failed("zero"));
        order.writing = true;
        match order.take_next() {
            Ok(Some(Entry::Failed(e))) => assert_eq!(e.to_string(), "zero"),
            _ => panic!("task 0 is next"),
        }
        assert!(order.writing);
    }

    #[test]
    fn the_writing_lane_stops_once_the_run_has_failed() {
        // A lane that could not start (or a signal) failed the run while another lane was
        // writing: the finished tasks after it are not written, even to a streamed stdout.
        let mut order = writing();
        order.pending.insert(0, failed("zero"));
        order.error = Some(anyhow!("lane 1 could not start"));
        assert!(order.take_next().is_err());
        assert!(!order.writing);
        assert!(order.pending.contains_key(&0), "task 0 stays unwritten");
    }
}
