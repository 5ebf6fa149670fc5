//! Wires the stages of a run so that every core is busy:
//!
//! ```text
//!  reader thread          lanes (rayon pool, one per job)              calling thread
//!  frame into chunks ──► take a task of a few records: split, type, ──► write finished
//!  (framer, budget)       evaluate (exec::Lane), format into bytes     buffers in order
//! ```
//!
//! The reader only frames (`read`); lanes share chunks through the `work` queue, a few
//! records at a time, sized by measured cost (`sizer`) so that slow rows never leave one
//! lane busy while the others idle (`lane`); the writer puts tasks back in input order
//! (`write`). Memory is bounded by bytes in flight (`budget`), not rows.

mod budget;
mod lane;
mod read;
mod sizer;
mod work;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use anyhow::{Context, Result, anyhow};

use crate::config::BadRows;
use crate::exec::Executor;
use crate::format::ResultsFormat;
use crate::input::InputReader;
use crate::output::{RejectsWriter, ResultsWriter};
use crate::progress::Progress;
use crate::signals::StopFlag;
use crate::typing::Typer;

use budget::ByteBudget;
use lane::{Done, Shared};
use sizer::Sizer;
use work::WorkQueue;
use write::Outputs;

/// What a run needs besides its stages.
pub struct Settings {
    /// Lanes: one per job of the executor.
    pub jobs: usize,
    pub bad_rows: BadRows,
    /// The most rows in one task (tasks start small and grow while they are fast).
    pub batch_size: usize,
    pub progress: Progress,
    pub stop: StopFlag,
}

/// What the pipeline counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Valid rows evaluated.
    pub rows: u64,
    /// Rows rejected under `--bad-rows skip`.
    pub bad_rows: u64,
    /// Bytes of input read.
    pub bytes: u64,
    /// Per rule (file order): counts of true, false, error, timeout.
    pub counts: Vec<[u64; 4]>,
}

/// Runs the whole pipeline; on success the results are written (not yet committed).
/// Rejected rows go to `rejects`, which is handed back so the caller can commit it.
pub fn run(
    input: InputReader,
    executor: Arc<dyn Executor>,
    rule_ids: &[i64],
    mut rejects: Option<RejectsWriter>,
    results: &mut ResultsWriter,
    settings: &Settings,
) -> Result<(Tally, Option<RejectsWriter>)> {
    let jobs = settings.jobs.max(1);
    let InputReader {
        framer,
        config,
        first,
        name,
        schema,
        ..
    } = input;
    // Enough chunks in flight that every lane has work while the writer catches up.
    let budget = Arc::new(ByteBudget::new((2 * jobs + 2) * config.chunk_size()));
    let (chunk_tx, chunk_rx) = mpsc::channel();
    let (recycle_tx, recycle_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let abort = Arc::new(AtomicBool::new(false));

    let reader = {
        let budget = Arc::clone(&budget);
        let progress = settings.progress.clone();
        let name = name.clone();
        thread::Builder::new()
            .name("reader".into())
            .spawn(move || {
                read::read_chunks(
                    framer,
                    first,
                    &name,
                    &budget,
                    &chunk_tx,
                    &recycle_rx,
                    &progress,
                )
            })
            .context("cannot start the reader thread")?
    };

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("lane-{i}"))
        // Rhai recurses natively over nested values: see `exec::LANE_STACK_BYTES`.
        .stack_size(executor.lane_stack_bytes())
        .build()
        .context("cannot start the thread pool")?;
    {
        let executor = Arc::clone(&executor);
        let queue = WorkQueue::new(chunk_rx, 1);
        let sizer = Sizer::new(settings.batch_size);
        let schema = Arc::new(schema);
        let format = ResultsFormat::new(rule_ids);
        let abort = Arc::clone(&abort);
        let senders = std::sync::Mutex::new((done_tx, recycle_tx));
        // Each pool thread drives one lane for the whole run: the lane owns what is
        // expensive to build (an evaluator, a worker process).
        pool.spawn_broadcast(move |ctx| {
            let Ok((done, recycle)) = senders.lock().map(|s| (s.0.clone(), s.1.clone())) else {
                return;
            };
            let shared = Shared {
                queue: &queue,
                sizer: &sizer,
                abort: &abort,
                recycle,
                done,
            };
            let typer = Typer::new(Arc::clone(&schema), &config);
            lane::drive(&*executor, ctx.index(), typer, format.clone(), shared);
        });
    }

    let mut tally = Tally {
        counts: vec![[0; 4]; rule_ids.len()],
        ..Tally::default()
    };
    let mut outputs = Outputs {
        results,
        rejects: rejects.as_mut(),
        bad_rows: settings.bad_rows,
        input: &name,
    };
    let written =
        write::write_in_order(&done_rx, &mut outputs, &budget, &settings.stop, &mut tally);
    if written.is_err() {
        abort.store(true, Ordering::Relaxed);
        budget.close();
        executor.shutdown();
    }
    drop(done_rx);
    let complete = written?;
    tally.bytes = reader
        .join()
        .map_err(|_| anyhow!("the reader thread panicked"))??;
    if !complete {
        return Err(anyhow!("internal error: some tasks were never written"));
    }
    Ok((tally, rejects))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Lane;
    use crate::model::{Batch, Outcome};
    use crate::output::{Destination, Sink};
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    /// A fake executor: answers `true` for every pair (`false` for ids ending in 7), but
    /// the lane that gets the first task holds it until every other row has been evaluated,
    /// so tasks finish out of order.
    struct OutOfOrder {
        jobs: usize,
        evaluated: Arc<AtomicU64>,
        rows: u64,
        fail_at_row: Option<String>,
    }

    struct FakeLane {
        index: usize,
        evaluated: Arc<AtomicU64>,
        rows: u64,
        fail_at_row: Option<String>,
    }

    impl Executor for OutOfOrder {
        fn lane(&self, index: usize) -> Result<Box<dyn crate::exec::Lane>> {
            Ok(Box::new(FakeLane {
                index,
                evaluated: Arc::clone(&self.evaluated),
                rows: self.rows,
                fail_at_row: self.fail_at_row.clone(),
            }))
        }
        fn shutdown(&self) {}
    }

    impl Lane for FakeLane {
        fn evaluate(&mut self, batch: &Batch, out: &mut Vec<Outcome>) -> Result<()> {
            if batch
                .rows
                .iter()
                .any(|r| Some(&r.id) == self.fail_at_row.as_ref())
            {
                return Err(anyhow!("lane {} failed", self.index));
            }
            let n = batch.rows.len() as u64;
            if batch.seq == 0 {
                // Wait (bounded) until the other lanes have evaluated everything else.
                let until = Instant::now() + Duration::from_secs(10);
                while self.evaluated.load(Ordering::SeqCst) + n < self.rows
                    && Instant::now() < until
                {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            out.extend(batch.rows.iter().map(|row| {
                if row.id.ends_with('7') {
                    Outcome::False
                } else {
                    Outcome::True
                }
            }));
            self.evaluated.fetch_add(n, Ordering::SeqCst);
            Ok(())
        }
    }

    fn rules() -> crate::rules::RuleSet {
        crate::rules::file::parse(
            "[columns]\nid = \"int\"\n[[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n",
            Duration::from_secs(1),
        )
        .unwrap()
    }

    /// Runs `csv` through the pipeline in chunks of about 64 bytes; (tally, results,
    /// rejects). The whole input must fit in the budget (8 chunks for 3 jobs): the first
    /// task is held until all others are done.
    fn run_fake(
        csv: String,
        bad_rows: BadRows,
        executor: OutOfOrder,
    ) -> (Result<Tally>, String, String) {
        let config = crate::framer::Config::default().with_chunk_size(64);
        let input = InputReader::from_reader(
            Box::new(std::io::Cursor::new(csv.into_bytes())),
            "t.csv".into(),
            None,
            &rules(),
            config,
            bad_rows == BadRows::Fail,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let rejected = dir.path().join("rejects.csv");
        let mut results =
            ResultsWriter::new(Sink::create(&Destination::File(path.clone())).unwrap(), 1).unwrap();
        let rejects = (bad_rows == BadRows::Skip).then(|| {
            RejectsWriter::new(Sink::create(&Destination::File(rejected.clone())).unwrap()).unwrap()
        });
        let settings = Settings {
            jobs: executor.jobs,
            bad_rows,
            batch_size: 4,
            progress: Progress::new(crate::config::ProgressWhen::Never, None),
            stop: StopFlag::never(),
        };
        let ran = run(
            input,
            Arc::new(executor),
            &[1],
            rejects,
            &mut results,
            &settings,
        );
        let tally = ran.map(|(tally, rejects)| {
            results.commit().unwrap();
            if let Some(rejects) = rejects {
                rejects.commit().unwrap();
            }
            tally
        });
        let read = |p| std::fs::read_to_string(p).unwrap_or_default();
        (tally, read(&path), read(&rejected))
    }

    fn ids(rows: u64) -> String {
        std::iter::once("id\n".to_string())
            .chain((1..=rows).map(|i| format!("{i}\n")))
            .collect()
    }

    fn fake(jobs: usize, rows: u64) -> OutOfOrder {
        OutOfOrder {
            jobs,
            evaluated: Arc::new(AtomicU64::new(0)),
            rows,
            fail_at_row: None,
        }
    }

    fn results_of(ids: impl Iterator<Item = u64>) -> String {
        std::iter::once("transaction_id,rule_id,result,detail\n".to_string())
            .chain(ids.map(|i| format!("{i},1,{},\n", if i % 10 == 7 { "false" } else { "true" })))
            .collect()
    }

    #[test]
    fn tasks_that_finish_out_of_order_are_written_in_input_order() {
        let (tally, out, _) = run_fake(ids(100), BadRows::Fail, fake(3, 100));
        let tally = tally.unwrap();
        assert_eq!(tally.rows, 100);
        assert_eq!(tally.counts, vec![[90, 10, 0, 0]]);
        assert_eq!(out, results_of(1..=100));
    }

    #[test]
    fn a_failing_lane_fails_the_run() {
        let mut executor = fake(2, 100);
        executor.fail_at_row = Some("70".into());
        let (tally, out, _) = run_fake(ids(100), BadRows::Fail, executor);
        let message = tally.unwrap_err().to_string();
        assert!(
            ["lane 0 failed", "lane 1 failed"].contains(&message.as_str()),
            "{message}"
        );
        assert_eq!(out, "", "nothing is committed");
    }

    #[test]
    fn bad_rows_are_handled_in_input_order_whichever_lane_finds_them() {
        // Bad rows on lines 4 (in the first task, held back) and 51.
        let csv = ids(100)
            .replace("\n3\n", "\n3,x\n")
            .replace("\n50\n", "\n\n");
        let (tally, _, _) = run_fake(csv.clone(), BadRows::Fail, fake(2, 98));
        assert_eq!(
            tally.unwrap_err().to_string(),
            "t.csv:4: expected 1 fields, found 2"
        );
        let csv = csv.replace("\n\n", "\n,\n");
        let (tally, out, rejects) = run_fake(csv, BadRows::Skip, fake(2, 98));
        assert_eq!(tally.unwrap().bad_rows, 2);
        assert_eq!(
            rejects,
            "line,reason,raw\n4,\"expected 1 fields, found 2\",\"3,x\"\n51,\"expected 1 fields, found 2\",\",\"\n"
        );
        assert_eq!(out, results_of((1..=100).filter(|&i| i != 3 && i != 50)));
    }
}
