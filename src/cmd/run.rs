//! `txguard run`: check the command line, take the lock, check the rules, then drive the
//! pipeline (input → executor → ordered results), commit every output together, and
//! report what happened.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};

use crate::cli::RunArgs;
use crate::config::{BadRows, ExecutorKind, FailOn, Outputs, RunConfig};
use crate::dialect::CsvConfig;
use crate::exec::Executor;
use crate::exec::processes::{ProcessesExecutor, WorkerSetup};
use crate::exec::threads::{FloorExecutor, ThreadsExecutor};
use crate::exit::{self, Interrupted, Usage};
use crate::format::ResultsFormat;
use crate::input::{InputReader, Layout};
use crate::model::Kind;
use crate::model::Tally;
use crate::output::{
    Destination, Finished, OutputLock, RejectsWriter, ResultsWriter, Sink, check_stdout_open,
    commit_all,
};
use crate::pipeline::SideWriter;
use crate::pipeline::windows::WindowStage;
use crate::pipeline::{self, Settings, Writers};
use crate::progress::Progress;
use crate::rules::{self, Evaluator, RuleSet, RulesErrors};
use crate::signals::StopFlag;
use crate::summary::{RunFacts, Summary};

/// What a run has learnt so far: enough for a summary even when it fails half-way.
struct Known {
    facts: RunFacts,
    clock: Instant,
    rules: Option<Arc<RuleSet>>,
    tally: Tally,
    /// Held until every output is committed.
    lock: Option<OutputLock>,
    /// Results are being streamed (stdout, a pipe): what was written cannot be taken back.
    streaming: bool,
    /// `--decisions` is being streamed, likewise.
    streaming_decisions: bool,
    /// The file outputs of a run whose reader of streamed output went away (exit 0),
    /// finished: committed with its summary, which counts what they hold.
    cut_short: Vec<Finished>,
}

/// A run that completed: its exit code, and its outputs, finished but not yet renamed.
struct Completed {
    code: i32,
    outputs: Vec<Finished>,
}

pub fn run(args: RunArgs) -> Result<i32> {
    // A command line that does not hold together writes nothing, not even a summary.
    let config = args.into_config()?;
    let outputs = config.outputs();
    let stop = StopFlag::install()?;
    let mut known = Known {
        facts: RunFacts {
            started_at: SystemTime::now(),
            input: config.input.display().to_string(),
            rules_file: config.rules.display().to_string(),
            rules_sha256: String::new(),
            executor: config.executor_name(),
            inputs: config
                .inputs
                .iter()
                .map(|p| crate::inputs::InputSummary::of(p))
                .collect(),
            jobs: config.jobs,
            workers: None,
            wall: Default::default(),
            shard: None,
        },
        clock: Instant::now(),
        rules: None,
        tally: Tally::default(),
        lock: None,
        streaming: false,
        streaming_decisions: false,
        cut_short: Vec::new(),
    };
    let result = execute(&config, &outputs, &mut known, &stop);
    known.facts.wall = known.clock.elapsed();
    let result = result.map_err(|err| incomplete_stream(err, &outputs, &known));
    // A reader of streamed results that went away (`| head`) wanted no more: the run
    // ends quietly with exit 0, and its summary counts what was written. What it was sent
    // still answers `--fail-on` (exit 3): a gate reading `| head` must not pass a hit it
    // was shown.
    let code = match &result {
        Ok(completed) => completed.code,
        Err(err) if exit::is_broken_pipe(err) => {
            known.rules.as_deref().map_or(exit::SUCCESS, |rules| {
                exit_code(&config.fail_on, &known.tally, rules)
            })
        }
        Err(err) => exit::code_of(err),
    };
    let error = match &result {
        Err(err) if !exit::is_broken_pipe(err) => Some(format!("{err:#}")),
        _ => None,
    };
    let empty = RuleSet {
        columns: Default::default(),
        nullable: Default::default(),
        rules: Vec::new(),
        memory_limit: None,
        decision: None,
        derived: Default::default(),
    };
    let rules = known.rules.clone();
    let summary = Summary::new(
        known.facts,
        rules.as_deref().unwrap_or(&empty),
        &known.tally,
        code,
        error,
    );
    // A run locked out by another must not overwrite the summary of the one that runs.
    // (Nor must a command line found wrong once the rules were read: `--fail-on` naming
    // no decision of the file.)
    let summary_json = match (
        &outputs.summary,
        code == exit::LOCKED || code == exit::USAGE,
    ) {
        (Some(dest), false) => Some(write_summary_json(dest, &summary)),
        _ => None,
    };
    let completed = match result {
        Ok(completed) => completed,
        Err(err) => {
            // A failed run commits its summary alone (it says why the run failed), and
            // reports its own error; a summary that cannot be written is said too, but
            // under -q the run's own error is the one line printed.
            // After a broken pipe (exit 0) its other files go too, before the summary.
            let mut files = std::mem::take(&mut known.cut_short);
            let committed = match summary_json {
                Some(summary) => summary.and_then(|finished| {
                    files.push(finished);
                    commit_all(files, None)
                }),
                None if !files.is_empty() => commit_all(files, None),
                None => Ok(()),
            };
            if let Err(also) = committed
                && !config.quiet
            {
                exit::say(&format!("txguard: also: {also:#}"));
            }
            if code == exit::FAIL_ON {
                exit::say(&format!(
                    "txguard: exit 3: {}",
                    fail_on_hit(&config.fail_on, &known.tally, known.rules.as_deref())
                ));
                return Ok(code);
            }
            return Err(err);
        }
    };
    // The rejects first, then the results, the summary last: whoever sees the new
    // summary sees every other new file (see `commit_all`).
    let mut all = completed.outputs;
    all.reverse();
    match summary_json {
        Some(Ok(finished)) => all.push(finished),
        // Nothing is committed without its summary: no new results beside old rejects.
        Some(Err(err)) => {
            return Err(err.context(nothing_committed(
                &config,
                &known.tally,
                rules.as_deref(),
                code,
            )));
        }
        None => {}
    }
    if let Err(err) = commit_all(all, Some(&stop)) {
        // The summary, renamed last, was not committed: one saying why replaces it
        // (best effort), so that no summary claims a commit that failed.
        if let Some(dest) = &outputs.summary
            && err.downcast_ref::<Interrupted>().is_none()
        {
            let mut failed = summary.clone();
            failed.exit_code = exit::FAILURE;
            failed.error = Some(format!("{err:#}"));
            let _ = write_summary_json(dest, &failed)
                .and_then(|finished| commit_all(vec![finished], None));
        }
        return Err(err);
    }
    if !config.quiet {
        use std::io::IsTerminal;
        exit::say(&summary.render_for(std::io::stderr().is_terminal()));
    }
    // Said even under -q: every non-zero exit prints one line naming its cause.
    if code == exit::FAIL_ON {
        exit::say(&format!(
            "txguard: exit 3: {}",
            fail_on_hit(&config.fail_on, &known.tally, known.rules.as_deref())
        ));
    }
    // A signal that arrived while the outputs were being renamed could not stop it: they
    // are complete and committed, and the exit code is the run's own. Said even under -q.
    if let Some(signal) = stop.signal() {
        exit::say(&format!(
            "txguard: {} arrived while the outputs were being committed; they are complete \
             (exit {code})",
            exit::signal_name(signal)
        ));
    }
    Ok(code)
}

/// The error of a run whose results or decisions were streamed: it says they are
/// incomplete (what a stream received cannot be taken back; the exit code says the run
/// failed).
fn incomplete_stream(err: anyhow::Error, outputs: &Outputs, known: &Known) -> anyhow::Error {
    let ends_quietly = exit::is_broken_pipe(&err) || err.downcast_ref::<Interrupted>().is_some();
    if ends_quietly {
        return err;
    }
    let incomplete = |what: &str, dest: &Destination| match dest {
        Destination::Stdout => format!("{what} on standard output are incomplete"),
        dest => {
            let path = crate::output::paths::show(dest.path().unwrap_or(Path::new("-")));
            format!("{what} written to {path} are incomplete")
        }
    };
    let mut err = err;
    if let Some(dest) = outputs
        .decisions
        .as_ref()
        .filter(|_| known.streaming_decisions)
    {
        err = err.context(incomplete("decisions", dest));
    }
    if known.streaming {
        err = err.context(incomplete("results", &outputs.results));
    }
    err
}

/// Why nothing was committed when the summary could not be written, and what the run
/// would have exited with.
fn nothing_committed(
    config: &RunConfig,
    tally: &Tally,
    rules: Option<&RuleSet>,
    code: i32,
) -> String {
    let mut message = "no output was committed".to_string();
    if code == exit::FAIL_ON {
        message.push_str(&format!(
            " (the run completed, and would have exited 3: {})",
            fail_on_hit(&config.fail_on, tally, rules)
        ));
    }
    message
}

fn execute(
    config: &RunConfig,
    outputs: &Outputs,
    known: &mut Known,
    stop: &StopFlag,
) -> Result<Completed> {
    if outputs.uses_stdout() {
        // Before any work: a closed stdout would silently swallow the data stream.
        check_stdout_open()?;
    }

    // The lock before anything else: a run locked out does nothing (exit 75). Holding
    // it, the run may remove what a killed run left beside these outputs.
    known.lock = outputs
        .results
        .file()
        .or(outputs.decisions.as_ref().and_then(Destination::file))
        .map(|out| OutputLock::acquire(out, &outputs.covered_by_lock()))
        .transpose()?;

    // Rules first: their errors are reported before any input is read. The file is read
    // once; the same bytes are hashed, parsed and shipped to workers.
    let loaded = load_rules(&config.rules, config.timeout, stop)?;
    known.facts.rules_sha256 = loaded.sha256.clone();
    let mut set = loaded.set;
    set.or_memory_limit(config.memory_limit);
    let rules = Arc::new(set);
    known.rules = Some(Arc::clone(&rules));
    crate::config::lists_are_not_outputs(&[(&config.rules, &rules)], &config.outputs())?;
    crate::config::lists_are_not_merged((&config.rules, &rules), &config.merged)?;

    // Under `fail` the first bad row ends the run: reading past a record too long to keep
    // (perhaps one without end) is useless.
    let stop_at_too_long = config.bad_rows == BadRows::Fail;
    let layout = Layout {
        columns: config.columns.clone(),
        shard: config.shard,
    };
    let input = open_input(
        &config.input,
        &rules,
        &config.csv,
        stop_at_too_long,
        &layout,
        stop,
    )?;
    known.facts.shard = input
        .shard
        .map(|bounds| crate::shard::facts(config, &bounds));
    // Several inputs: the others' headers, where they can be read twice, before any work.
    let reference = crate::inputs::Reference::of(&input);
    crate::inputs::check_headers(
        &config.inputs[1..],
        &reference,
        &rules,
        &config.csv,
        config.columns.as_ref(),
    )?;
    let columns = input.columns().clone();
    // Compiling against the input's columns finds variables that are neither a column
    // nor the rule's own, before a single row is evaluated.
    Evaluator::new(&rules, &columns, config.seed)
        .map_err(|errors| RulesErrors::of(&config.rules, errors))?;
    check_decisions(config, &rules)?;
    // Reasons bound to the input's columns: a `{name}` that is none is the rules' error.
    let format = ResultsFormat::for_run(
        &rules,
        &columns,
        config.explain,
        outputs.decisions.is_some(),
    )
    .map_err(|errors| RulesErrors::of(&config.rules, errors))?;

    // The windows (and `--history`) before any output is opened: a `where` that does not
    // compile, or a bad history file, then leaves standard output without a header.
    let mut windows = windows_stage(config, &rules, &input, stop)?;

    let rule_ids: Vec<i64> = rules.rules.iter().map(|r| r.id).collect();
    let sink = Sink::create(&outputs.results)?;
    let results = if config.no_output_header {
        ResultsWriter::without_header(sink, rule_ids.len())
    } else {
        ResultsWriter::new(sink, rule_ids.len())?
    };
    known.streaming = outputs.results.file().is_none();
    let several = config.inputs.len() > 1;
    let rejects = match &outputs.rejects {
        None => None,
        // Several inputs: each rejected row names its input.
        Some(dest) if several => Some(RejectsWriter::with_inputs(Sink::create(dest)?)?),
        Some(dest) => Some(RejectsWriter::new(Sink::create(dest)?)?),
    };
    let decisions = match &outputs.decisions {
        None => None,
        Some(dest) => Some(SideWriter::new(
            Sink::create(dest)?,
            "transaction_id,score,decision,reasons",
        )?),
    };
    known.streaming_decisions = outputs
        .decisions
        .as_ref()
        .is_some_and(|d| d.file().is_none());

    // The process executor is kept by its type too: only it has worker counters.
    let mut processes = None;
    let executor: Arc<dyn Executor> = match (config.floor, config.executor) {
        (true, _) => Arc::new(FloorExecutor {
            rules: rule_ids.len(),
        }),
        (false, ExecutorKind::Threads) => Arc::new(ThreadsExecutor::new(
            Arc::clone(&rules),
            columns,
            config.seed,
        )),
        (false, ExecutorKind::Processes) => {
            let setup = WorkerSetup {
                rules_text: loaded.text,
                list_files: loaded.list_files,
                default_timeout: config.timeout,
                memory_limit: rules.memory_limit(),
                columns,
                seed: config.seed,
                max_record: config.max_record_size,
            };
            let executor = Arc::new(ProcessesExecutor::new(&rules, setup)?);
            processes = Some(Arc::clone(&executor));
            executor
        }
    };
    let settings = Settings {
        jobs: config.jobs,
        bad_rows: config.bad_rows,
        batch_size: config.batch_size,
        progress: Progress::new(config.progress, total_bytes(config, &input)),
        stop: stop.clone(),
    };
    let inputs = Inputs {
        reference,
        executor: &executor,
        rule_ids: &rule_ids,
        config,
        rules: &rules,
        stop_at_too_long,
        stop,
    };
    let mut writers = Some(Writers {
        results,
        rejects,
        side: decisions,
    });
    let outcome = inputs.run_all(
        input,
        format,
        &mut writers,
        &settings,
        &mut known.facts.inputs,
        &mut windows,
    );
    // The pipeline gives the outputs back whatever becomes of the run.
    let Writers {
        results,
        rejects,
        side: decisions,
    } = writers.ok_or_else(|| anyhow!("internal error: the outputs were not given back"))?;
    settings.progress.finish();
    known.facts.workers = processes.as_deref().map(ProcessesExecutor::workers);
    let mut tally = match outcome {
        Ok(done) => done,
        Err(err) => {
            if exit::is_broken_pipe(&err) {
                // The inputs' figures (`run_all`) add up to the run's.
                let inputs = &known.facts.inputs;
                known.tally = Tally {
                    bytes: inputs.iter().map(|i| i.bytes).sum(),
                    bad_rows: inputs.iter().map(|i| i.bad_rows).sum(),
                    ..results.written().tally()
                };
                // Exit 0 commits every file output, as written until then, in the order
                // of a run that completes (rejects first): yesterday's must not stay
                // beside this summary. The stream that broke has nothing to commit.
                let files = [
                    rejects.map(RejectsWriter::finish),
                    Some(results.finish()),
                    decisions.map(SideWriter::finish),
                ];
                let mut cut_short = Vec::new();
                for finished in files.into_iter().flatten() {
                    match finished {
                        Ok(finished) => cut_short.push(finished),
                        Err(e) if exit::is_broken_pipe(&e) => {}
                        // A failed run commits nothing but its summary.
                        Err(e) => return Err(e),
                    }
                }
                known.cut_short = cut_short;
            }
            return Err(err);
        }
    };
    if let Some(signal) = stop.signal() {
        return Err(exit::Interrupted(signal).into());
    }
    // A shard accounts for the bytes it owns: the parts' sizes sum to the input's.
    if let Some(shard) = &known.facts.shard {
        tally.bytes = shard.bytes_owned();
        if let Some(input) = known.facts.inputs.first_mut() {
            input.bytes = tally.bytes;
        }
    }
    // Finished (written and synced) here; renamed into place together with the summary.
    let mut finished = vec![results.finish()?];
    if let Some(shard) = &mut known.facts.shard {
        shard.results = Some(part_digest(&finished[0])?);
    }
    if let Some(decisions) = decisions {
        finished.insert(0, decisions.finish()?);
    }
    if let Some(rejects) = rejects {
        let rejects = rejects.finish()?;
        if let Some(shard) = &mut known.facts.shard {
            shard.rejects = Some(part_digest(&rejects)?);
        }
        finished.push(rejects);
    }
    let code = exit_code(&config.fail_on, &tally, &rules);
    known.tally = tally;
    Ok(Completed {
        code,
        outputs: finished,
    })
}

/// Size and SHA-256 of a shard's finished (synced, not yet renamed) part file, for its
/// summary: `merge` joins only a part whose bytes are still these.
fn part_digest(finished: &crate::output::Finished) -> Result<crate::shard::PartDigest> {
    let Some(temp) = finished.temp_path() else {
        bail!(
            "{}: a shard's part must be a regular file, to be checked by merge",
            finished.label()
        );
    };
    crate::shard::digest_file(temp)
        .with_context(|| format!("cannot read back {}", finished.label()))
}

/// The size of every input together, when each is a regular file (for the bar's ETA).
fn total_bytes(config: &RunConfig, first: &InputReader) -> Option<u64> {
    let mut total = first.total_bytes?;
    for path in &config.inputs[1..] {
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        total += meta.len();
    }
    Some(total)
}

/// What evaluating the inputs one after another needs besides the pipeline's stages.
struct Inputs<'a> {
    reference: crate::inputs::Reference,
    executor: &'a Arc<dyn Executor>,
    rule_ids: &'a [i64],
    config: &'a RunConfig,
    rules: &'a Arc<RuleSet>,
    stop_at_too_long: bool,
    stop: &'a StopFlag,
}

impl Inputs<'_> {
    /// Runs the pipeline over `first`, then over every other input in order (each opened
    /// when its turn comes, its header aligned to the first's), into the same results
    /// and rejects. `summaries` holds one entry per input, filled in as each is done.
    #[allow(clippy::too_many_arguments)]
    fn run_all(
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

/// The windows stage of a run, when the rules have `[windows]`, with every `--history`
/// file fed to it in order (their bad rows fail the run under `--bad-rows fail`, and are
/// skipped and counted under `skip`: the rejects file is the input's). `diff` builds its
/// stage here too, so that a backtest sees the windows a run saw.
pub(crate) fn windows_stage(
    config: &RunConfig,
    rules: &Arc<RuleSet>,
    input: &InputReader,
    stop: &StopFlag,
) -> Result<Option<WindowStage>> {
    // A `where` that does not compile is the rules file's error, named as `check` names it.
    let first = WindowStage::for_input(rules, input, config.seed).map_err(|e| {
        match e.downcast::<crate::pipeline::windows::FilterErrors>() {
            Ok(filters) => RulesErrors::of(&config.rules, filters.0).into(),
            Err(e) => e,
        }
    })?;
    let Some(stage) = first else {
        if let Some(first) = config.history.first() {
            return Err(exit::Usage(format!(
                "--history {}: the rules declare no [windows.*] for history to fill",
                first.display()
            ))
            .into());
        }
        return Ok(None);
    };
    // A window reads the rows before each row: a shard has not got them.
    if let Some(spec) = config.shard {
        return Err(exit::Usage(format!(
            "--shard {spec}: the rules declare [windows.*], which need every earlier row of \
             the input; a shard reads only its range: run the whole input in one run"
        ))
        .into());
    }
    if config.columns.is_some() && !config.history.is_empty() {
        return Err(exit::Usage(
            "--columns with --history: the history files are aligned to the input's header \
             row, which --columns says the input has not got"
                .into(),
        )
        .into());
    }
    if config.history.is_empty() {
        return Ok(Some(stage));
    }
    let (schema, name) = (input.schema.clone(), input.name().to_string());
    // On a lane's stack: history rows go through the windows' `where` filters.
    let mut stage = thread::scope(|scope| {
        thread::Builder::new()
            .name("history".into())
            .stack_size(crate::exec::LANE_STACK_BYTES)
            .spawn_scoped(scope, move || {
                feed_history(stage, (&schema, &name), config, rules, stop)
            })
            .context("cannot start the history thread")?
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the history thread panicked")))
    })?;
    // Back to the input's column order, with the history's windows.
    if let Some(reading) = WindowStage::for_input(rules, input, config.seed)? {
        stage.continue_with(reading);
    }
    Ok(Some(stage))
}

/// Feeds every `--history` file to `stage`, in order. A history file has the columns of
/// the input (`input`: its schema and name), in any order, as several inputs may.
fn feed_history(
    mut stage: WindowStage,
    input: (&crate::typing::Schema, &str),
    config: &RunConfig,
    rules: &Arc<RuleSet>,
    stop: &StopFlag,
) -> Result<WindowStage> {
    for path in &config.history {
        let fail = config.bad_rows == BadRows::Fail;
        let history = open_input(path, rules, &config.csv, fail, &Layout::default(), stop)?;
        let name = history.name().to_string();
        history.schema.aligned_to(input.0, &name, input.1)?;
        // The windows go on reading this file's column order.
        if let Some(reading) = WindowStage::for_input(rules, &history, config.seed)? {
            stage.continue_with(reading);
        }
        let go_on = || match stop.signal() {
            Some(signal) => Err(Interrupted(signal).into()),
            None => Ok(()),
        };
        let fed = stage.feed_history(history, fail, go_on)?;
        if let Some(first) = fed.first_bad
            && fail
        {
            return Err(crate::input::BadRowError {
                input: name,
                row: first,
            }
            .into());
        }
        stage.count_history(fed.rows, fed.bad);
    }
    Ok(stage)
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

/// What `--fail-on` found: e.g. `a result named by --fail-on occurred: 2 error
/// (--fail-on error,timeout)`.
pub(crate) fn fail_on_hit(fail_on: &[FailOn], tally: &Tally, rules: Option<&RuleSet>) -> String {
    let total = |kind: Kind| -> u64 { tally.counts.iter().map(|c| c[kind as usize]).sum() };
    let mut found = Vec::new();
    let mut named = Vec::new();
    for f in fail_on {
        let (n, name) = match f {
            FailOn::Error => (total(Kind::Error), "error"),
            FailOn::Timeout => (total(Kind::Timeout), "timeout"),
            FailOn::False => (total(Kind::False), "false"),
            FailOn::Decision(name) => (decided(tally, rules, name), name.as_str()),
        };
        named.push(name);
        if n > 0 {
            found.push(format!("{n} {name}"));
        }
    }
    format!(
        "a result named by --fail-on occurred: {} (--fail-on {})",
        found.join(", "),
        named.join(",")
    )
}

/// Transactions given decision `name` (0 when the file has no such decision).
fn decided(tally: &Tally, rules: Option<&RuleSet>, name: &str) -> u64 {
    rules
        .and_then(|r| r.decision.as_ref())
        .and_then(|d| d.index(name))
        .and_then(|i| tally.extra.get(i).copied())
        .unwrap_or(0)
}

/// `--decisions` needs `[decision]`, and every decision `--fail-on` names must be one of
/// the file's (a usage error, exit 2, found once the rules are read).
fn check_decisions(config: &RunConfig, rules: &RuleSet) -> Result<()> {
    let names = rules
        .decision
        .as_ref()
        .map(|d| d.names().join(", "))
        .unwrap_or_default();
    if config.decisions.is_some() && rules.decision.is_none() {
        return Err(Usage(format!(
            "--decisions: {} has no [decision] table",
            crate::output::paths::show(&config.rules)
        ))
        .into());
    }
    for f in &config.fail_on {
        if let FailOn::Decision(name) = f
            && rules
                .decision
                .as_ref()
                .and_then(|d| d.index(name))
                .is_none()
        {
            let known = if names.is_empty() {
                "it has no [decision] table".to_string()
            } else {
                format!("its decisions: {names}")
            };
            return Err(Usage(format!(
                "--fail-on {name}: neither a result (error, timeout, false) nor a decision of {} ({known})",
                crate::output::paths::show(&config.rules)
            ))
            .into());
        }
    }
    Ok(())
}

/// 3 when a result or decision named by `--fail-on` occurred, else 0.
pub(crate) fn exit_code(fail_on: &[FailOn], tally: &Tally, rules: &RuleSet) -> i32 {
    let occurred = |kind: Kind| tally.counts.iter().any(|c| c[kind as usize] > 0);
    let hit = fail_on.iter().any(|f| match f {
        FailOn::Error => occurred(Kind::Error),
        FailOn::Timeout => occurred(Kind::Timeout),
        FailOn::False => occurred(Kind::False),
        FailOn::Decision(name) => decided(tally, Some(rules), name) > 0,
    });
    if hit { exit::FAIL_ON } else { exit::SUCCESS }
}

/// The `--summary` JSON, written and synced like every output, committed by the caller
/// (`run`'s and `merge`'s).
pub(crate) fn write_summary_json(dest: &Destination, summary: &Summary) -> Result<Finished> {
    use std::io::Write;
    let mut sink = Sink::create(dest)?;
    let label = sink.label().to_string();
    serde_json::to_writer_pretty(&mut sink, summary)
        .with_context(|| format!("cannot write {label}"))?;
    sink.write_all(b"\n")
        .with_context(|| format!("cannot write {label}"))?;
    sink.finish()
}
