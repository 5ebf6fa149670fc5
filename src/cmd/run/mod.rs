//! `txguard run`: check the command line, take the lock, check the rules, then drive the
//! pipeline (input → executor → ordered results), commit every output together, and
//! report what happened. Beside it: `inputs.rs` (the rules and inputs, opened and run one
//! after another), `history.rs` (the windows stage and `--history`), `fail_on.rs`.

mod fail_on;
mod history;
mod inputs;

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};

use crate::cli::RunArgs;
use crate::config::{BadRows, ExecutorKind, Outputs, RunConfig};
use crate::exec::Executor;
use crate::exec::processes::{ProcessesExecutor, WorkerSetup};
use crate::exec::threads::{FloorExecutor, ThreadsExecutor};
use crate::exit::{self, Interrupted};
use crate::format::ResultsFormat;
use crate::input::Layout;
use crate::model::Tally;
use crate::output::{
    Destination, Finished, OutputLock, RejectsWriter, ResultsWriter, Sink, check_stdout_open,
    commit_all,
};
use crate::pipeline::SideWriter;
use crate::pipeline::{Settings, Writers};
use crate::progress::Progress;
use crate::rules::{Evaluator, RuleSet, RulesErrors};
use crate::signals::StopFlag;
use crate::summary::{RunFacts, Summary};

use fail_on::check_decisions;
pub(crate) use fail_on::{exit_code, fail_on_hit};
pub(crate) use history::windows_stage;
use inputs::{Inputs, total_bytes};
pub(crate) use inputs::{load_rules, open_input};

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
