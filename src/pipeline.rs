//! Wires the stages of a run: a reader thread cuts the input into numbered batches, one
//! thread per lane evaluates them, and the calling thread writes results back in input
//! order. Memory is bounded by a window of batches: the reader needs a token to start a
//! batch, and the writer returns one per batch it writes, so a slow batch holds back the
//! reader (back-pressure) instead of letting finished batches pile up behind it.
//!
//! Batches are sized by how long they take: the lanes aim at ~20 ms of work per batch.
//! Fast rules get large batches (little per-batch overhead); slow or hanging rules get
//! small ones, so no lane sits on a long batch while the others have run out of work.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::config::BadRows;
use crate::exec::Executor;
use crate::exit::Interrupted;
use crate::input::{BadRowError, InputReader};
use crate::model::{Batch, Outcome};
use crate::output::{RejectsWriter, ResultsWriter};
use crate::progress::Progress;
use crate::signals::StopFlag;

/// What a run needs besides its stages.
pub struct Settings {
    /// Lanes: one per job of the executor.
    pub jobs: usize,
    pub bad_rows: BadRows,
    /// The largest batch, in rows (batches start small and grow while they are fast).
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

/// A batch and its outcomes, on their way to the writer.
enum Done {
    Batch(Batch, Vec<Outcome>),
    Failed(anyhow::Error),
}

/// Runs the whole pipeline; on success the results are written (not yet committed).
/// Rejected rows go to `rejects`, which is handed back so the caller can commit it.
pub fn run(
    input: InputReader,
    executor: Arc<dyn Executor>,
    rules: usize,
    rejects: Option<RejectsWriter>,
    results: &mut ResultsWriter,
    settings: &Settings,
) -> Result<(Tally, Option<RejectsWriter>)> {
    let jobs = settings.jobs.max(1);
    // Enough batches in flight to keep every lane busy while the writer catches up.
    let window = 4 * jobs + 4;
    let (token_tx, token_rx) = mpsc::sync_channel::<()>(window);
    for _ in 0..window {
        token_tx
            .send(())
            .expect("the window channel holds `window` tokens");
    }
    let (work_tx, work_rx) = mpsc::sync_channel::<Batch>(jobs);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let abort = Arc::new(AtomicBool::new(false));
    let sizer = Arc::new(BatchSizer::new(settings.batch_size));

    let reader = {
        let abort = Arc::clone(&abort);
        let bad_rows = settings.bad_rows;
        let sizer = Arc::clone(&sizer);
        let progress = settings.progress.clone();
        thread::Builder::new()
            .name("reader".into())
            .spawn(move || {
                read_batches(
                    input, rejects, bad_rows, &sizer, &progress, &token_rx, &work_tx, &abort,
                )
            })
            .context("cannot start the reader thread")?
    };

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("lane-{i}"))
        .build()
        .context("cannot start the thread pool")?;
    let work_rx = Arc::new(Mutex::new(work_rx));
    {
        let executor = Arc::clone(&executor);
        let done_tx = Mutex::new(done_tx);
        // Each pool thread drives one lane for the whole run: the lane owns what is
        // expensive to build (an evaluator, a worker process).
        pool.spawn_broadcast(move |ctx| {
            let done = done_tx.lock().map(|tx| tx.clone());
            let Ok(done) = done else { return };
            drive_lane(&*executor, ctx.index(), &work_rx, &done, &sizer);
        });
    }

    let written = write_in_order(&done_rx, results, rules, &token_tx, settings, &abort);
    if written.is_err() {
        abort.store(true, Ordering::Relaxed);
        executor.shutdown();
    }
    drop(done_rx);
    drop(token_tx);
    let mut tally = written?;
    let (bytes, rejected, rejects) = reader
        .join()
        .map_err(|_| anyhow!("the reader thread panicked"))??;
    tally.bad_rows = rejected;
    tally.bytes = bytes;
    Ok((tally, rejects))
}

/// The reader stage: returns (bytes read, rows rejected, the rejects writer).
#[allow(clippy::too_many_arguments)]
fn read_batches(
    mut input: InputReader,
    mut rejects: Option<RejectsWriter>,
    bad_rows: BadRows,
    sizer: &BatchSizer,
    progress: &Progress,
    tokens: &Receiver<()>,
    work: &SyncSender<Batch>,
    abort: &AtomicBool,
) -> Result<(u64, u64, Option<RejectsWriter>)> {
    let mut seq = 0;
    let mut rejected = 0;
    let mut rows = Vec::new();
    let mut at_end = false;
    while !at_end {
        let batch_size = sizer.get();
        while rows.len() < batch_size {
            match input.next_row()? {
                None => {
                    at_end = true;
                    break;
                }
                Some(Ok(row)) => rows.push(row),
                Some(Err(bad)) => match (bad_rows, rejects.as_mut()) {
                    (BadRows::Skip, Some(writer)) => {
                        writer.write(&bad)?;
                        rejected += 1;
                    }
                    _ => {
                        abort.store(true, Ordering::Relaxed);
                        return Err(BadRowError {
                            input: input.name().to_string(),
                            row: bad,
                        }
                        .into());
                    }
                },
            }
        }
        progress.set_position(input.bytes_read());
        if rows.is_empty() || abort.load(Ordering::Relaxed) {
            break;
        }
        // Wait for room in the window; the writer going away means the run is over.
        if tokens.recv().is_err() {
            break;
        }
        let batch = Batch {
            seq,
            rows: std::mem::take(&mut rows),
        };
        if work.send(batch).is_err() {
            break;
        }
        seq += 1;
    }
    Ok((input.bytes_read(), rejected, rejects))
}

/// One lane's loop: take the next batch, evaluate it, pass it on.
fn drive_lane(
    executor: &dyn Executor,
    index: usize,
    work: &Mutex<Receiver<Batch>>,
    done: &mpsc::Sender<Done>,
    sizer: &BatchSizer,
) {
    let mut lane = match executor.lane(index) {
        Ok(lane) => lane,
        Err(e) => {
            let _ = done.send(Done::Failed(e));
            return;
        }
    };
    loop {
        // Hold the lock only to receive, so other lanes can take the next batch.
        let next = work
            .lock()
            .map_err(|_| ())
            .and_then(|rx| rx.recv().map_err(|_| ()));
        let Ok(batch) = next else { return };
        let mut outcomes = Vec::new();
        let started = Instant::now();
        let evaluated = lane.evaluate(&batch, &mut outcomes);
        sizer.observe(batch.rows.len(), started.elapsed());
        let message = match evaluated {
            Ok(()) => Done::Batch(batch, outcomes),
            Err(e) => Done::Failed(e),
        };
        let failed = matches!(message, Done::Failed(_));
        if done.send(message).is_err() || failed {
            return;
        }
    }
}

/// The batch size the reader uses next, steered by the lanes toward `TARGET` of work.
struct BatchSizer {
    current: AtomicUsize,
    max: usize,
}

impl BatchSizer {
    /// Work per batch worth aiming at: long enough that per-batch costs vanish, short
    /// enough that the last batches of a run finish together.
    const TARGET: Duration = Duration::from_millis(20);
    const MIN: usize = 4;
    const START: usize = 64;

    fn new(max: usize) -> BatchSizer {
        BatchSizer {
            current: AtomicUsize::new(Self::START.min(max).max(1)),
            max: max.max(1),
        }
    }

    fn get(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// A lane evaluated `rows` rows in `took`: move halfway toward the size that takes
    /// `TARGET`, aiming at most 4× the current size (so at most 2.5× in one step).
    fn observe(&self, rows: usize, took: Duration) {
        if rows == 0 {
            return;
        }
        let per_row = took.as_secs_f64() / rows as f64;
        let ideal = if per_row > 0.0 {
            Self::TARGET.as_secs_f64() / per_row
        } else {
            f64::MAX
        };
        let current = self.get();
        let next = ((current as f64 + ideal.min(current as f64 * 4.0)) / 2.0) as usize;
        self.current.store(
            next.clamp(Self::MIN.min(self.max), self.max),
            Ordering::Relaxed,
        );
    }
}

/// The writer stage, on the calling thread: restores input order, writes, counts.
fn write_in_order(
    done: &Receiver<Done>,
    results: &mut ResultsWriter,
    rules: usize,
    tokens: &SyncSender<()>,
    settings: &Settings,
    abort: &AtomicBool,
) -> Result<Tally> {
    let mut tally = Tally {
        counts: vec![[0; 4]; rules],
        ..Tally::default()
    };
    let mut next = 0u64;
    let mut pending: BTreeMap<u64, (Batch, Vec<Outcome>)> = BTreeMap::new();
    loop {
        if let Some(signal) = settings.stop.signal() {
            // The caller's error path shuts the executor down, stopping what runs.
            return Err(Interrupted(signal).into());
        }
        match done.recv_timeout(Duration::from_millis(50)) {
            Ok(Done::Batch(batch, outcomes)) => {
                if outcomes.len() != batch.rows.len() * rules {
                    return Err(anyhow!(
                        "internal error: batch {} came back with {} outcomes for {} rows × {rules} rules",
                        batch.seq,
                        outcomes.len(),
                        batch.rows.len()
                    ));
                }
                pending.insert(batch.seq, (batch, outcomes));
                while let Some((batch, outcomes)) = pending.remove(&next) {
                    results.write_batch(&batch.rows, &outcomes)?;
                    tally.rows += batch.rows.len() as u64;
                    for (i, outcome) in outcomes.iter().enumerate() {
                        tally.counts[i % rules][outcome.kind() as usize] += 1;
                    }
                    next += 1;
                    // The reader may have finished: a token nobody takes is harmless.
                    let _ = tokens.try_send(());
                }
            }
            Ok(Done::Failed(e)) => return Err(e),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if abort.load(Ordering::Relaxed) || !pending.is_empty() {
        // The reader stopped early (its error is reported by the caller), or a batch
        // never came back: either way these results are incomplete.
        if pending.is_empty() {
            return Ok(tally);
        }
        return Err(anyhow!(
            "internal error: {} batches were never written",
            pending.len()
        ));
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Lane;
    use crate::output::{Destination, Sink};
    use std::sync::atomic::AtomicU64;

    /// A fake executor: answers `true` for every pair, but lane 0 holds its first batch
    /// until every other batch has been evaluated, so batches finish out of order.
    struct OutOfOrder {
        jobs: usize,
        evaluated: Arc<AtomicU64>,
        batches: u64,
        fail_at: Option<u64>,
    }

    struct FakeLane {
        index: usize,
        evaluated: Arc<AtomicU64>,
        batches: u64,
        fail_at: Option<u64>,
    }

    impl Executor for OutOfOrder {
        fn lane(&self, index: usize) -> Result<Box<dyn crate::exec::Lane>> {
            Ok(Box::new(FakeLane {
                index,
                evaluated: Arc::clone(&self.evaluated),
                batches: self.batches,
                fail_at: self.fail_at,
            }))
        }
        fn shutdown(&self) {}
    }

    impl Lane for FakeLane {
        fn evaluate(&mut self, batch: &Batch, out: &mut Vec<Outcome>) -> Result<()> {
            if Some(batch.seq) == self.fail_at {
                return Err(anyhow!("lane {} failed on batch {}", self.index, batch.seq));
            }
            if batch.seq == 0 {
                // Wait (bounded) until the other lanes have evaluated everything else.
                let until = Instant::now() + Duration::from_secs(10);
                while self.evaluated.load(Ordering::SeqCst) + 1 < self.batches
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
            self.evaluated.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn rules() -> crate::rules::RuleSet {
        crate::rules::file::parse(
            "[[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n",
            Duration::from_secs(1),
        )
        .unwrap()
    }

    fn run_fake(rows: u64, batch: usize, executor: OutOfOrder) -> (Result<Tally>, String) {
        let csv: String = std::iter::once("id\n".to_string())
            .chain((1..=rows).map(|i| format!("{i}\n")))
            .collect();
        let input = InputReader::from_reader(
            Box::new(std::io::Cursor::new(csv.into_bytes())),
            "t.csv".into(),
            None,
            &rules(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut results = ResultsWriter::new(
            Sink::create(&Destination::File(path.clone())).unwrap(),
            &[1],
        )
        .unwrap();
        let settings = Settings {
            jobs: executor.jobs,
            bad_rows: BadRows::Fail,
            batch_size: batch,
            progress: Progress::new(crate::config::ProgressWhen::Never, None),
            stop: StopFlag::never(),
        };
        let tally =
            run(input, Arc::new(executor), 1, None, &mut results, &settings).map(|(t, _)| t);
        if tally.is_ok() {
            results.commit().unwrap();
        }
        (tally, std::fs::read_to_string(&path).unwrap_or_default())
    }

    #[test]
    fn batches_that_finish_out_of_order_are_written_in_input_order() {
        // --batch-size 4: ten batches of four rows.
        let evaluated = Arc::new(AtomicU64::new(0));
        let executor = OutOfOrder {
            jobs: 3,
            evaluated,
            batches: 10,
            fail_at: None,
        };
        let (tally, out) = run_fake(40, 4, executor);
        let tally = tally.unwrap();
        assert_eq!(tally.rows, 40);
        assert_eq!(tally.counts, vec![[36, 4, 0, 0]]);
        let expected: String =
            std::iter::once("transaction_id,rule_id,result,detail\n".to_string())
                .chain(
                    (1..=40).map(|i| {
                        format!("{i},1,{},\n", if i % 10 == 7 { "false" } else { "true" })
                    }),
                )
                .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn a_failing_lane_fails_the_run() {
        let evaluated = Arc::new(AtomicU64::new(0));
        let executor = OutOfOrder {
            jobs: 2,
            evaluated,
            batches: 100,
            fail_at: Some(3),
        };
        let (tally, out) = run_fake(400, 4, executor);
        // Which lane takes batch 3 depends on scheduling; the message names it.
        let message = tally.unwrap_err().to_string();
        assert!(
            ["lane 0 failed on batch 3", "lane 1 failed on batch 3"].contains(&message.as_str()),
            "{message}"
        );
        assert_eq!(out, "", "nothing is committed");
    }

    #[test]
    fn the_sizer_grows_for_fast_batches_and_shrinks_for_slow_ones() {
        let sizer = BatchSizer::new(1024);
        assert_eq!(sizer.get(), 64);
        sizer.observe(64, Duration::from_micros(64));
        assert_eq!(
            sizer.get(),
            160,
            "at most 4x the current size, halfway there"
        );
        for _ in 0..10 {
            sizer.observe(sizer.get(), Duration::from_micros(sizer.get() as u64));
        }
        assert_eq!(sizer.get(), 1024, "capped at --batch-size");
        for _ in 0..20 {
            sizer.observe(sizer.get(), Duration::from_millis(5) * sizer.get() as u32);
        }
        assert_eq!(
            sizer.get(),
            BatchSizer::MIN,
            "5 ms per row: a few rows per batch"
        );
        let small = BatchSizer::new(7);
        assert_eq!(small.get(), 7);
    }
}
