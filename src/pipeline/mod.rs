//! Wires the stages of a run so that every core is busy, and no more than `-j` of them:
//!
//! ```text
//!  lanes (a thread per job), each in turn:
//!  frame the next chunk ──► take a task of a few records: split, type, ──► write finished
//!  when none is left       evaluate (exec::Lane), format into bytes        tasks in order
//!  (read, work, budget)    (lane)                                          (write)
//! ```
//!
//! There is no reader or writer thread: a lane that finds no chunk framed frames one
//! (`read`, through `work`), and reads ahead between tasks while others work; the lane that
//! finishes the task the output waits for writes it and what follows it (`write`). So a
//! `-j 1` run is one thread, and `-j 2` doubles it. Lanes share chunks through the `work`
//! queue, a few records at a time, sized by measured cost (`sizer`) so that slow rows never
//! leave one lane busy while the others idle (`lane`). Memory is bounded by bytes in
//! flight (`budget`), not rows. With `[windows]` a lane feeds each task's rows to the
//! windows between typing and evaluating them, in task order (`windows`). The calling
//! thread only waits: for the lanes, a failure, or a signal.

mod budget;
mod lane;
mod read;
mod sizer;
pub mod windows;
mod work;
mod write;

pub use write::{SideWriter, Writers};

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::config::BadRows;
use crate::exec::Executor;
use crate::exit::Interrupted;
use crate::format::ResultsFormat;
use crate::input::InputReader;
use crate::model::Tally;
use crate::progress::Progress;
use crate::signals::StopFlag;
use crate::typing::Typer;

use budget::ByteBudget;
use lane::Shared;
use read::Reader;
use sizer::Sizer;
use work::WorkQueue;
use write::OrderedWriter;

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

/// Runs the whole pipeline over `input` into `writers`, which it takes and puts back
/// (also after a failure: rejected rows stay the caller's to commit, and a reader of
/// streamed results that went away ends a run that commits its files). On success the
/// results are written (not yet committed).
pub fn run(
    input: InputReader,
    executor: Arc<dyn Executor>,
    format: ResultsFormat,
    writers: &mut Option<Writers>,
    settings: &Settings,
    windows: &mut Option<windows::WindowStage>,
) -> Result<Tally> {
    let lent = writers
        .take()
        .ok_or_else(|| anyhow!("internal error: the outputs are not there"))?;
    // The windows stage runs on the lanes (its sequential part in task order), and comes
    // back for the next input.
    let stage = windows.take().map(windows::WindowStage::start);
    let jobs = settings.jobs.max(1);
    let InputReader {
        framer,
        config,
        first,
        name,
        schema,
        consumed,
        header_records,
        ..
    } = input;
    // Enough chunks in flight that every lane has work while the writer catches up.
    let budget = Arc::new(ByteBudget::new((2 * jobs + 2) * config.chunk_size()));
    let (recycle_tx, recycle_rx) = mpsc::channel();
    let (ended_tx, ended_rx) = mpsc::channel::<()>();
    let reader = Reader::new(
        framer,
        first,
        header_records,
        name.clone(),
        consumed,
        settings.progress.clone(),
        recycle_rx,
    );
    let queue = Arc::new(WorkQueue::new(reader, header_records, jobs));
    let writer = Arc::new(OrderedWriter::new(
        lent,
        settings.bad_rows,
        name,
        settings.progress.clone(),
        Tally {
            counts: vec![[0; 4]; format.rules()],
            extra: vec![0; format.counters()],
            ..Tally::default()
        },
    ));
    // Ends the run early (a failure, a signal): whoever waits gives up, workers stop.
    let stop_all = || {
        budget.close();
        queue.close();
        if let Some(stage) = &stage {
            stage.close();
        }
        executor.shutdown();
    };
    // The outputs back where they came from, and what the writer made of the run.
    let give_back = |writers: &mut Option<Writers>| {
        let (back, done) = writer.finish(queue.tasks());
        *writers = back;
        done?.ok_or_else(|| anyhow!("internal error: some tasks were never written"))
    };

    // One thread per lane, for the whole run: a lane owns what is expensive to build (an
    // evaluator, a worker process). Plain threads rather than a work-stealing pool: an idle
    // lane blocks (on the work queue, the budget) instead of spinning to steal, which with
    // `-j 1000` kept every core busy doing nothing. Lanes are not joined: one stuck in a
    // rule must not delay the end of a failed or interrupted run.
    let sizer = Arc::new(Sizer::new(settings.batch_size));
    let schema = Arc::new(schema);
    let mut started = Ok(());
    for index in 0..jobs {
        let executor = Arc::clone(&executor);
        let (queue, sizer, budget, writer) = (
            Arc::clone(&queue),
            Arc::clone(&sizer),
            Arc::clone(&budget),
            Arc::clone(&writer),
        );
        let (ended, recycle) = (ended_tx.clone(), recycle_tx.clone());
        let mut typer = Typer::new(Arc::clone(&schema), &config);
        if executor.raw_fields() {
            typer = typer.with_raw_fields(format.reads_values());
        }
        let format = format.clone();
        let lane_windows = match stage.as_ref().map(windows::RunWindows::lane) {
            None => None,
            Some(Ok(lane)) => Some(lane),
            Some(Err(e)) => {
                started = Err(e.context(format!("cannot start lane {index}")));
                break;
            }
        };
        let spawned = thread::Builder::new()
            .name(format!("lane-{index}"))
            // Rhai recurses natively over nested values: see `exec::LANE_STACK_BYTES`.
            .stack_size(executor.lane_stack_bytes())
            .spawn(move || {
                let shared = Shared {
                    queue: &queue,
                    sizer: &sizer,
                    budget: &budget,
                    recycle,
                    writer: &writer,
                    ended,
                };
                lane::drive(&*executor, index, typer, format, lane_windows, shared);
            });
        if let Err(e) = spawned {
            started = Err(anyhow::Error::new(e).context(format!("cannot start lane {index}")));
            break;
        }
    }
    drop((ended_tx, recycle_tx));
    if let Err(e) = started {
        stop_all();
        let _ = give_back(writers);
        return Err(e);
    }

    // Wait for every lane to end (the last drops the channel), a lane to fail the run, or
    // a signal (the lanes are then left to the executor's shutdown).
    loop {
        if let Some(signal) = settings.stop.signal() {
            stop_all();
            let _ = give_back(writers);
            return Err(Interrupted(signal).into());
        }
        if writer.failed() {
            stop_all();
            return give_back(writers);
        }
        match ended_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut tally = match give_back(writers) {
        // Every task handed out was written, but a lane that died reading (not as a read
        // error) would have handed out no more: the run would pass for complete.
        Ok(_) if !queue.drained() => {
            stop_all();
            return Err(anyhow!(
                "internal error: the lanes ended before the input did"
            ));
        }
        Ok(tally) => tally,
        Err(e) => {
            stop_all();
            return Err(e);
        }
    };
    tally.bytes = queue.bytes_read();
    // Every task is written: every task had its turn.
    *windows = match &stage {
        None => None,
        Some(stage) => Some(
            stage
                .finish()
                .ok_or_else(|| anyhow!("internal error: the windows stage was not given back"))?,
        ),
    };
    tally.windows = windows.as_ref().map(windows::WindowStage::stats);
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Lane;
    use crate::model::{Batch, Outcome};
    use crate::output::{Destination, RejectsWriter, ResultsWriter, Sink};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// A fake executor: answers `true` for every pair (`false` for ids ending in 7), but
    /// the lane that gets the first task holds it until every other row has been evaluated,
    /// so tasks finish out of order.
    #[derive(Clone)]
    struct OutOfOrder {
        jobs: usize,
        evaluated: Arc<AtomicU64>,
        rows: u64,
        fail_at_row: Option<String>,
        panic_at_row: Option<String>,
        /// Set once a lane failed: the held first task goes on then.
        failed: Arc<AtomicBool>,
        /// Rows the other lanes had evaluated when the held first task went on.
        held_saw: Arc<AtomicU64>,
    }

    /// A lane of the fake: its index and (shared through their `Arc`s) the fake's settings.
    struct FakeLane {
        index: usize,
        fake: OutOfOrder,
    }

    impl Executor for OutOfOrder {
        fn lane(&self, index: usize) -> Result<Box<dyn crate::exec::Lane>> {
            Ok(Box::new(FakeLane {
                index,
                fake: self.clone(),
            }))
        }
        fn shutdown(&self) {}
    }

    impl Lane for FakeLane {
        fn evaluate(&mut self, batch: &Batch, out: &mut Vec<Outcome>) -> Result<()> {
            let has = |id: &Option<String>| batch.rows.iter().any(|r| Some(&r.id) == id.as_ref());
            if has(&self.fake.fail_at_row) {
                self.fake.failed.store(true, Ordering::SeqCst);
                return Err(anyhow!("lane {} failed", self.index));
            }
            if has(&self.fake.panic_at_row) {
                self.fake.failed.store(true, Ordering::SeqCst);
                panic!("lane {} broke", self.index);
            }
            let n = batch.rows.len() as u64;
            if batch.seq == 0 {
                // Wait until the other lanes have evaluated everything else, or are held
                // back by the byte budget (nothing evaluated for a while), or failed.
                let mut seen = (self.fake.evaluated.load(Ordering::SeqCst), Instant::now());
                while seen.0 + n < self.fake.rows
                    && !self.fake.failed.load(Ordering::SeqCst)
                    && seen.1.elapsed() < Duration::from_millis(300)
                {
                    thread::sleep(Duration::from_millis(1));
                    let now = self.fake.evaluated.load(Ordering::SeqCst);
                    if now != seen.0 {
                        seen = (now, Instant::now());
                    }
                }
                self.fake.held_saw.store(seen.0, Ordering::SeqCst);
            }
            out.extend(batch.rows.iter().map(|row| {
                if row.id.ends_with('7') {
                    Outcome::False
                } else {
                    Outcome::True
                }
            }));
            self.fake.evaluated.fetch_add(n, Ordering::SeqCst);
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
    /// rejects). The first task is held until all others are done or the byte budget
    /// (8 chunks for 3 jobs, input and results) holds them back.
    fn run_fake(
        csv: String,
        bad_rows: BadRows,
        executor: OutOfOrder,
    ) -> (Result<Tally>, String, String) {
        run_fake_from(
            Box::new(std::io::Cursor::new(csv.into_bytes())),
            bad_rows,
            executor,
        )
    }

    /// `run_fake` on what `source` gives.
    fn run_fake_from(
        source: Box<dyn std::io::Read + Send>,
        bad_rows: BadRows,
        executor: OutOfOrder,
    ) -> (Result<Tally>, String, String) {
        run_fake_with(source, &rules(), 4, bad_rows, executor)
    }

    /// `run_fake_from` with the rules `set` (its windows too) and tasks of at most
    /// `batch_size` records.
    fn run_fake_with(
        source: Box<dyn std::io::Read + Send>,
        set: &crate::rules::RuleSet,
        batch_size: usize,
        bad_rows: BadRows,
        executor: OutOfOrder,
    ) -> (Result<Tally>, String, String) {
        let config = crate::framer::Config::default().with_chunk_size(64);
        let input = InputReader::from_reader(
            source,
            "t.csv".into(),
            None,
            set,
            config,
            bad_rows == BadRows::Fail,
        )
        .unwrap();
        let mut windows = windows::WindowStage::for_input(set, &input, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let rejected = dir.path().join("rejects.csv");
        let results =
            ResultsWriter::new(Sink::create(&Destination::File(path.clone())).unwrap(), 1).unwrap();
        let rejects = (bad_rows == BadRows::Skip).then(|| {
            RejectsWriter::new(Sink::create(&Destination::File(rejected.clone())).unwrap()).unwrap()
        });
        let settings = Settings {
            jobs: executor.jobs,
            bad_rows,
            batch_size,
            progress: Progress::new(crate::config::ProgressWhen::Never, None),
            stop: StopFlag::never(),
        };
        let mut writers = Some(Writers {
            results,
            rejects,
            side: None,
        });
        let ran = run(
            input,
            Arc::new(executor),
            ResultsFormat::new(&[1]),
            &mut writers,
            &settings,
            &mut windows,
        );
        let writers = writers.expect("the outputs are given back");
        if ran.is_ok() {
            writers.results.commit().unwrap();
            if let Some(rejects) = writers.rejects {
                rejects.commit().unwrap();
            }
        }
        let read = |p| std::fs::read_to_string(p).unwrap_or_default();
        (ran, read(&path), read(&rejected))
    }

    /// What `run` gives, run on a thread of its own: a test fails, not hangs, when the run
    /// does not end within `secs` (a generous bound, not a timing).
    fn without_hanging<T: Send + 'static>(
        jobs: usize,
        secs: u64,
        run: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (done, ran) = mpsc::channel();
        thread::spawn(move || {
            let _ = done.send(run());
        });
        match ran.recv_timeout(Duration::from_secs(secs)) {
            Ok(ran) => ran,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("-j {jobs}: the run hangs"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("-j {jobs}: the run panicked"),
        }
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
            panic_at_row: None,
            failed: Arc::new(AtomicBool::new(false)),
            held_saw: Arc::new(AtomicU64::new(0)),
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
    fn results_waiting_behind_a_slow_task_are_bounded_by_the_byte_budget() {
        // Lanes went on behind a held task until the whole input was done, the writer
        // holding every result: memory grew with the input, not the budget.
        let executor = fake(2, 5000);
        let held_saw = Arc::clone(&executor.held_saw);
        let (tally, out, _) = run_fake(ids(5000), BadRows::Fail, executor);
        assert_eq!(tally.unwrap().rows, 5000);
        assert_eq!(out, results_of(1..=5000));
        let saw = held_saw.load(Ordering::SeqCst);
        // The budget is 6 chunks of 64 bytes: results of a few dozen rows.
        assert!(saw < 500, "{saw} rows evaluated behind the held task");
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
    fn a_lane_failure_is_reported_after_an_earlier_bad_row() {
        // The bad row (line 4) is in the first task, held back until the lane evaluating
        // row 70 has failed: the bad row comes first in input order, so it is reported.
        let csv = ids(100).replace("\n3\n", "\n3,x\n");
        let mut executor = fake(2, 99);
        executor.fail_at_row = Some("70".into());
        let (tally, out, _) = run_fake(csv, BadRows::Fail, executor);
        assert_eq!(
            tally.unwrap_err().to_string(),
            "t.csv:4: expected 1 fields, found 2"
        );
        assert_eq!(out, "", "nothing is committed");
    }

    #[test]
    fn a_panicking_lane_fails_the_run_instead_of_the_process() {
        let mut executor = fake(2, 100);
        executor.panic_at_row = Some("70".into());
        let (tally, out, _) = run_fake(ids(100), BadRows::Fail, executor);
        let message = tally.unwrap_err().to_string();
        assert!(
            message.starts_with("internal error: lane ") && message.ends_with(" broke"),
            "{message}"
        );
        assert_eq!(out, "", "nothing is committed");
    }

    /// Reads `bytes`, then panics (a bug in a decoder, say) instead of reading on.
    struct PanicsAfter {
        bytes: std::io::Cursor<Vec<u8>>,
    }

    impl std::io::Read for PanicsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.bytes.read(buf)? {
                0 => panic!("the source broke"),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn a_panic_while_reading_fails_the_run_instead_of_hanging_it() {
        // The lane that framed chunks panicked with the reader taken out of the queue:
        // the other lanes waited for it to be put back, and the run for them, forever.
        for jobs in [1, 2, 4] {
            let (tally, out, _) = without_hanging(jobs, 30, move || {
                let source = PanicsAfter {
                    // More than the input is opened with: the panic comes mid-run.
                    bytes: std::io::Cursor::new(ids(50_000).into_bytes()),
                };
                run_fake_from(Box::new(source), BadRows::Fail, fake(jobs, 50_000))
            });
            let message = tally.unwrap_err().to_string();
            assert!(
                message.starts_with("internal error: ") && message.ends_with("the source broke"),
                "-j {jobs}: {message}"
            );
            assert_eq!(out, "", "nothing is committed");
        }
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

    /// Rows holding `held-while-typing` wait, while being typed, until a row holding
    /// `panic-while-typing` has broken its lane's typing (a bug), before its turn.
    static TYPING_BROKE: AtomicBool = AtomicBool::new(false);

    /// Called by the lanes on every row they type (`lane::Work::run`).
    pub(super) fn typing_hook(body: &[u8]) {
        let holds = |marker: &[u8]| body.windows(marker.len()).any(|w| w == marker);
        if holds(b"held-while-typing") {
            let until = Instant::now() + Duration::from_secs(10);
            while !TYPING_BROKE.load(Ordering::SeqCst) && Instant::now() < until {
                thread::sleep(Duration::from_millis(1));
            }
        }
        if holds(b"panic-while-typing") {
            TYPING_BROKE.store(true, Ordering::SeqCst);
            panic!("typing broke");
        }
    }

    #[test]
    fn a_panic_while_typing_with_windows_is_reported_after_the_tasks_before_it() {
        // Typing broke on a row while the task before it had not had its windows' turn:
        // the lane closed every turn, the task before it was dropped, and the failure
        // was never reached by the writer ("some tasks were never written", or a run
        // that waited forever for a lane held by the byte budget).
        let set = crate::rules::file::parse(
            "[columns]\nid = \"int\"\n[windows.n]\nkey = \"account\"\ntime = \"t\"\n\
             span = \"1h\"\nfunction = \"count\"\n[[rule]]\nid = 1\nname = \"r\"\nwhen = \"n > 0\"\n",
            Duration::from_secs(1),
        )
        .unwrap();
        let csv: String = std::iter::once("id,account,t\n".to_string())
            .chain((1..=60).map(|i| {
                let account = match i {
                    30 => "held-while-typing",
                    31 => "panic-while-typing",
                    _ => "a",
                };
                format!("{i},{account},2026-01-01T00:00:{:02}Z\n", i % 60)
            }))
            .collect();
        for jobs in [2, 4] {
            TYPING_BROKE.store(false, Ordering::SeqCst);
            let (csv, set) = (csv.clone(), set.clone());
            let (tally, _, _) = without_hanging(jobs, 60, move || {
                let source = Box::new(std::io::Cursor::new(csv.into_bytes()));
                // One row a task: the held row and the breaking one are two tasks. Nothing
                // held back by the executor: rows 0.
                run_fake_with(source, &set, 1, BadRows::Fail, fake(jobs, 0))
            });
            let message = tally.unwrap_err().to_string();
            assert!(
                message.starts_with("internal error: lane ") && message.ends_with(" typing broke"),
                "-j {jobs}: {message}"
            );
        }
    }

    /// A source that gives `bytes`, then fails.
    fn failing_after(bytes: String) -> Box<dyn std::io::Read + Send> {
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        Box::new(std::io::Read::chain(
            std::io::Cursor::new(bytes.into_bytes()),
            Broken,
        ))
    }

    #[test]
    fn a_read_error_fails_the_run_after_the_rows_before_it_and_their_problems() {
        // The rows read before the error are evaluated and written (nothing committed);
        // the error is the run's.
        let (tally, out, _) =
            run_fake_from(failing_after(ids(30_000)), BadRows::Fail, fake(2, 30_000));
        assert_eq!(
            format!("{:#}", tally.unwrap_err()),
            "cannot read t.csv: disk on fire"
        );
        assert_eq!(out, "", "nothing is committed");
        // A bad row before it (in the held first task) is the problem reported.
        let csv = ids(30_000).replace("\n3\n", "\n3,x\n");
        let (tally, _, _) = run_fake_from(failing_after(csv), BadRows::Fail, fake(2, 29_999));
        assert_eq!(
            tally.unwrap_err().to_string(),
            "t.csv:4: expected 1 fields, found 2"
        );
        // One lane: the same.
        let (tally, _, _) =
            run_fake_from(failing_after(ids(30_000)), BadRows::Fail, fake(1, 30_000));
        assert_eq!(
            format!("{:#}", tally.unwrap_err()),
            "cannot read t.csv: disk on fire"
        );
    }
}
