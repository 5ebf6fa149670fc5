//! The inputs of a run: the rules loaded and checked, each input opened (its header
//! aligned to the first's), and the pipeline run over them one after another into the
//! same outputs.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::config::RunConfig;
use crate::dialect::CsvConfig;
use crate::exec::Executor;
use crate::exit::{self, Interrupted};
use crate::format::ResultsFormat;
use crate::input::{InputReader, Layout};
use crate::model::Tally;
use crate::output::RejectsWriter;
use crate::pipeline::windows::WindowStage;
use crate::pipeline::{self, Settings, Writers};
use crate::rules::{self, RuleSet};
use crate::signals::StopFlag;

/// The size of every input together, when each is a regular file (for the bar's ETA).
pub(super) fn total_bytes(config: &RunConfig, first: &InputReader) -> Option<u64> {
    let mut total = first.total_bytes?;
    for path in &config.inputs[1..] {
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        total += meta.len();
    }
    Some(total)
}

/// What evaluating the inputs one after another needs besides the pipeline's stages.
pub(super) struct Inputs<'a> {
    pub(super) reference: crate::inputs::Reference,
    pub(super) executor: &'a Arc<dyn Executor>,
    pub(super) rule_ids: &'a [i64],
    pub(super) config: &'a RunConfig,
    pub(super) rules: &'a Arc<RuleSet>,
    pub(super) stop_at_too_long: bool,
    pub(super) stop: &'a StopFlag,
}

impl Inputs<'_> {
    /// Runs the pipeline over `first`, then over every other input in order (each opened
    /// when its turn comes, its header aligned to the first's), into the same results
    /// and rejects. `summaries` holds one entry per input, filled in as each is done.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_all(
        &self,
        first: InputReader,
        format: ResultsFormat,
        writers: &mut Option<Writers>,
        settings: &Settings,
        summaries: &mut [crate::inputs::InputSummary],
        windows: &mut Option<WindowStage>,
    ) -> Result<Tally> {
        let mut tally = Tally {
            counts: vec![[0; 4]; self.rule_ids.len()],
            ..Tally::default()
        };
        let mut first = Some(first);
        for (path, summary) in self.config.inputs.iter().zip(summaries) {
            let input = match first.take() {
                Some(input) => input,
                None => {
                    let mut input = open_input(
                        path,
                        self.rules,
                        &self.config.csv,
                        self.stop_at_too_long,
                        // `--columns` holds for every input (`--shard` takes one).
                        &Layout {
                            columns: self.config.columns.clone(),
                            shard: None,
                        },
                        self.stop,
                    )?;
                    crate::inputs::align(&mut input, &self.reference)?;
                    // The windows go on over this input's rows, whatever its column order.
                    if let Some(stage) = windows.as_mut()
                        && let Some(next) =
                            WindowStage::for_input(self.rules, &input, self.config.seed)?
                    {
                        stage.continue_with(next);
                    }
                    input
                }
            };
            if let Some(rejects) = writers.as_mut().and_then(|w| w.rejects.as_mut()) {
                rejects.set_input(input.name());
            }
            settings.progress.next_input(tally.bytes);
            let ran = pipeline::run(
                input,
                Arc::clone(self.executor),
                format.clone(),
                writers,
                settings,
                windows,
            );
            let done = match ran {
                Ok(ran) => ran,
                Err(err) => {
                    // The reader of the streamed results went away during this input: the
                    // summary counts what was written (`run`), this input's share too.
                    if exit::is_broken_pipe(&err)
                        && let Some(writers) = writers.as_ref()
                    {
                        let written = writers.results.written().rows;
                        summary.transactions = written.saturating_sub(tally.rows);
                        let rejected = writers.rejects.as_ref().map_or(0, RejectsWriter::rows);
                        summary.bad_rows = rejected.saturating_sub(tally.bad_rows);
                    }
                    return Err(err);
                }
            };
            summary.bytes = done.bytes;
            summary.transactions = done.rows;
            summary.bad_rows = done.bad_rows;
            tally.rows += done.rows;
            tally.bad_rows += done.bad_rows;
            tally.bytes += done.bytes;
            for (total, counts) in tally.counts.iter_mut().zip(&done.counts) {
                for (t, c) in total.iter_mut().zip(counts) {
                    *t += c;
                }
            }
            // The format's own counters (decisions): the first input sets their length.
            if tally.extra.len() < done.extra.len() {
                tally.extra.resize(done.extra.len(), 0);
            }
            for (total, c) in tally.extra.iter_mut().zip(&done.extra) {
                *total += c;
            }
            // The stage goes on from input to input: its last stats cover them all.
            tally.windows = done.windows;
        }
        Ok(tally)
    }
}

/// Reads the rules on a thread of its own, like the input: `--rules` may name a FIFO
/// nobody writes, and a signal must still end the run at once.
pub(crate) fn load_rules(
    path: &Path,
    timeout: Duration,
    stop: &StopFlag,
) -> Result<rules::LoadedRules> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_path_buf();
    thread::Builder::new()
        .name("load-rules".into())
        .spawn(move || {
            let _ = tx.send(rules::load(&path, timeout));
        })
        .context("cannot start a thread to read the rules")?;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(loaded) => return Ok(loaded?),
            Err(RecvTimeoutError::Timeout) => {
                if let Some(signal) = stop.signal() {
                    return Err(Interrupted(signal).into());
                }
            }
            Err(RecvTimeoutError::Disconnected) => bail!("the thread reading the rules panicked"),
        }
    }
}

/// Opens the input and reads its header on a thread of its own: opening a FIFO nobody
/// writes, or reading a header from a silent stdin, blocks in the kernel, and a signal
/// must still end the run at once (the blocked thread is left to the process's exit).
pub(crate) fn open_input(
    path: &Path,
    rules: &Arc<RuleSet>,
    csv: &CsvConfig,
    stop_at_too_long: bool,
    layout: &Layout,
    stop: &StopFlag,
) -> Result<InputReader> {
    let (tx, rx) = mpsc::channel();
    let (path, rules, csv, layout) = (
        path.to_path_buf(),
        Arc::clone(rules),
        csv.clone(),
        layout.clone(),
    );
    thread::Builder::new()
        .name("open-input".into())
        .spawn(move || {
            let _ = tx.send(InputReader::open_layout(
                &path,
                &rules,
                &csv,
                stop_at_too_long,
                &layout,
            ));
        })
        .context("cannot start a thread to open the input")?;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(opened) => return opened,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(signal) = stop.signal() {
                    return Err(Interrupted(signal).into());
                }
            }
            Err(RecvTimeoutError::Disconnected) => bail!("the thread opening the input panicked"),
        }
    }
}
