//! `txguard diff OLD_RULES NEW_RULES INPUT`: backtest a rule change. Both files are
//! evaluated in one pass over the input (`diff::PairExecutor`), rules matched by id; the
//! pairs whose result changed (and the decisions that changed, when both files have
//! `[decision]`) go to `-o`, the counts to stderr and `--summary`. Outputs are written
//! like `run`'s: checked before any work, locked, and committed only when complete.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

use crate::cli::DiffArgs;
use crate::config::{BadRows, ExecutorKind, RunConfig, cpus};
use crate::diff::{self, DiffFormat, PairExecutor, Report};
use crate::exec::Executor;
use crate::exec::processes::{ProcessesExecutor, WorkerSetup};
use crate::exec::threads::ThreadsExecutor;
use crate::exit::{self, Usage};
use crate::format::{Extra, ResultsFormat};
use crate::model::{Columns, Tally};
use crate::output::paths::{identity, show};
use crate::output::{
    Destination, Finished, OutputLock, RejectsWriter, ResultsWriter, Sink, check_stdout_open,
    commit_all,
};
use crate::pipeline::{self, Settings, Writers};
use crate::progress::Progress;
use crate::rules::{Evaluator, LoadedRules, RuleSet, RulesErrors};
use crate::signals::StopFlag;

/// The `--summary` JSON of a diff.
#[derive(Debug, Serialize)]
struct DiffSummary {
    txguard_version: &'static str,
    started_at: String,
    input: String,
    old_rules: String,
    old_rules_sha256: String,
    new_rules: String,
    new_rules_sha256: String,
    executor: String,
    jobs: usize,
    seed: u64,
    transactions: u64,
    bad_rows: u64,
    #[serde(flatten)]
    report: Report,
    /// The windows' peak state and the history read, as in `run`'s summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    windows: Option<crate::model::WindowStats>,
    wall_seconds: f64,
    exit_code: i32,
}

pub fn run(args: DiffArgs) -> Result<i32> {
    let started_at = SystemTime::now();
    let clock = Instant::now();
    // The outputs are checked as `run` checks its own (NEW stands for the rules file).
    let config = RunConfig {
        input: args.input.clone(),
        rules: args.new_rules.clone(),
        output: args.output.clone(),
        executor: args.executor,
        jobs: args.jobs.map_or_else(cpus, |j| j as usize),
        timeout: args.timeout,
        seed: args.seed,
        bad_rows: args.bad_rows,
        rejects: args.rejects.clone(),
        fail_on: Vec::new(),
        progress: args.progress,
        quiet: args.quiet,
        summary: args.summary.clone(),
        batch_size: 1024,
        max_record_size: args.max_record_size,
        floor: false,
        memory_limit: args.memory_limit,
        explain: false,
        decisions: None,
        shard: None,
        columns: None,
        no_output_header: false,
        csv: args.csv.config(args.max_record_size),
        inputs: vec![args.input.clone()],
        history: args.history.clone(),
        merged: Vec::new(),
    };
    // The files a diff reads besides its input, before `check`: its messages would name
    // NEW_RULES `--rules`, a flag `diff` does not have.
    let outputs = config.outputs();
    let read = [
        ("OLD_RULES", &args.old_rules),
        ("NEW_RULES", &args.new_rules),
    ];
    for (flag, path) in read
        .into_iter()
        .chain(args.labels.as_ref().map(|p| ("--labels", p)))
    {
        let id = identity(path);
        let clash = [
            outputs.results.path(),
            outputs.summary.as_ref().and_then(|d| d.path()),
        ]
        .into_iter()
        .chain([outputs.rejects.as_ref().and_then(|d| d.path())])
        .flatten()
        .any(|out| id.is_some() && identity(out) == id);
        if clash {
            return Err(Usage(format!(
                "{flag} {} is also an output; every file of a diff must be distinct",
                show(path)
            ))
            .into());
        }
        // A history that is a rules or labels file would be read as rows (OLD_RULES and
        // --labels were not checked at all, NEW_RULES was called `--rules`).
        if id.is_some() && args.history.iter().any(|h| identity(h) == id) {
            return Err(Usage(format!(
                "--history and {flag} name the same file: {}; every file of a diff must be \
                 distinct",
                show(path)
            ))
            .into());
        }
    }
    let config = config.check()?;
    if outputs.uses_stdout() {
        check_stdout_open()?;
    }
    let stop = StopFlag::install()?;
    let _lock = outputs
        .results
        .file()
        .map(|out| OutputLock::acquire(out, &outputs.covered_by_lock()))
        .transpose()?;

    let load = |path: &Path| -> Result<LoadedRules> {
        let mut loaded = super::run::load_rules(path, args.timeout, &stop)?;
        loaded.set.or_memory_limit(args.memory_limit);
        Ok(loaded)
    };
    let old = load(&args.old_rules)?;
    let new = load(&args.new_rules)?;
    crate::config::lists_are_not_outputs(
        &[(&args.old_rules, &old.set), (&args.new_rules, &new.set)],
        &outputs,
    )?;
    let merged = merged_columns(&old.set, &new.set, &args)?;
    let merged = Arc::new(merged);
    let fail = args.bad_rows == BadRows::Fail;
    let input = super::run::open_input(
        &args.input,
        &merged,
        &config.csv,
        fail,
        &crate::input::Layout::default(),
        &stop,
    )?;
    let columns = input.columns().clone();
    // Each file as `run` would take it: a file `run` refuses (a variable that is no
    // column, a reason naming one) is no change to backtest.
    for (loaded, path) in [(&old, &args.old_rules), (&new, &args.new_rules)] {
        Evaluator::new(&loaded.set, &columns, args.seed)
            .map_err(|errors| RulesErrors::of(path, errors))?;
        crate::format::rule_details(&loaded.set, &columns, false)
            .map_err(|errors| RulesErrors::of(path, errors))?;
    }
    let labels = args
        .labels
        .as_deref()
        .map(diff::read_labels)
        .transpose()?
        .map(Arc::new);

    // With `--history`, the windows start from yesterday's rows, as the run's did; before
    // any output is opened, as in `run`.
    let mut windows = super::run::windows_stage(&config, &merged, &input, &stop)?;

    let format = DiffFormat::new(&old.set, &new.set, labels.clone());
    let ids: Vec<i64> = old
        .set
        .rules
        .iter()
        .chain(&new.set.rules)
        .map(|r| r.id)
        .collect();
    let format = ResultsFormat::with(&ids, Extra::Diff(Box::new(format)));
    let results = ResultsWriter::with_header(
        Sink::create(&outputs.results)?,
        ids.len(),
        b"transaction_id,rule_id,old,new\n",
    )?;
    let rejects = match &outputs.rejects {
        None => None,
        Some(dest) => Some(RejectsWriter::new(Sink::create(dest)?)?),
    };
    let executor = Arc::new(PairExecutor {
        old: executor(&args, &old, &columns)?,
        new: executor(&args, &new, &columns)?,
        old_rules: old.set.rules.len(),
        new_rules: new.set.rules.len(),
    });
    let settings = Settings {
        jobs: config.jobs,
        bad_rows: args.bad_rows,
        batch_size: config.batch_size,
        progress: Progress::new(args.progress, input.total_bytes),
        stop: stop.clone(),
    };
    let mut writers = Some(Writers {
        results,
        rejects,
        side: None,
    });
    let ran = pipeline::run(
        input,
        Arc::clone(&executor) as Arc<dyn Executor>,
        format,
        &mut writers,
        &settings,
        &mut windows,
    );
    // The pipeline gives the outputs back whatever becomes of the run.
    let Writers {
        results, rejects, ..
    } = writers.ok_or_else(|| anyhow!("internal error: the outputs were not given back"))?;
    settings.progress.finish();
    let summarize = |tally: &Tally, code: i32| DiffSummary {
        txguard_version: env!("CARGO_PKG_VERSION"),
        started_at: humantime::format_rfc3339_millis(started_at).to_string(),
        input: args.input.display().to_string(),
        old_rules: args.old_rules.display().to_string(),
        old_rules_sha256: old.sha256.clone(),
        new_rules: args.new_rules.display().to_string(),
        new_rules_sha256: new.sha256.clone(),
        executor: format!("{:?}", args.executor).to_lowercase(),
        jobs: config.jobs,
        seed: args.seed,
        transactions: tally.rows,
        bad_rows: tally.bad_rows,
        windows: tally.windows,
        report: DiffFormat::new(&old.set, &new.set, None).report(&tally.extra, labels.as_deref()),
        wall_seconds: clock.elapsed().as_secs_f64(),
        exit_code: code,
    };
    let bad_rows = rejects.as_ref().map_or(0, RejectsWriter::rows);
    let tally = match ran {
        Ok(done) => done,
        Err(err) if exit::is_broken_pipe(&err) => {
            // The reader of the streamed changes went away (`| head`): it wanted no
            // more, and the diff ends quietly (exit 0, or 3 under `--fail-on-change`
            // when it was sent a change: a gate reading `| head` must not pass what it
            // was shown). As `run`'s, its summary counts what was written.
            // It commits every file, the rejects of the rows read until then too:
            // yesterday's must not stay beside this summary.
            let tally = Tally {
                bad_rows,
                ..results.written().tally()
            };
            let written = summarize(&tally, exit::SUCCESS);
            let code = fail_on_change(&args, &written.report);
            let written = DiffSummary {
                exit_code: code,
                ..written
            };
            let mut finished = Vec::new();
            if let Some(rejects) = rejects {
                finished.push(rejects.finish()?);
            }
            if let Some(dest) = &outputs.summary {
                finished.push(write_summary(dest, &written)?);
            }
            commit_all(finished, None)?;
            if code == exit::FAIL_ON {
                say_fail_on_change(&written.report);
                return Ok(code);
            }
            return Err(err);
        }
        // What a stream received cannot be taken back (as `run` says of its results).
        Err(err)
            if outputs.results.file().is_none()
                && err.downcast_ref::<exit::Interrupted>().is_none() =>
        {
            let shown = match outputs.results.path() {
                Some(path) => show(path),
                None => "standard output".to_string(),
            };
            return Err(err.context(format!("the changes written to {shown} are incomplete")));
        }
        Err(err) => return Err(err),
    };
    if let Some(signal) = stop.signal() {
        return Err(exit::Interrupted(signal).into());
    }
    let summary = summarize(&tally, exit::SUCCESS);
    let code = fail_on_change(&args, &summary.report);
    let summary = DiffSummary {
        exit_code: code,
        ..summary
    };
    let wall = summary.wall_seconds;
    let mut finished = Vec::new();
    if let Some(rejects) = rejects {
        finished.push(rejects.finish()?);
    }
    finished.push(results.finish()?);
    if let Some(dest) = &outputs.summary {
        finished.push(write_summary(dest, &summary)?);
    }
    commit_all(finished, Some(&stop))?;
    if !args.quiet && old.set.decision.is_some() != new.set.decision.is_some() {
        let (has, lacks) = if old.set.decision.is_some() {
            (&args.old_rules, &args.new_rules)
        } else {
            (&args.new_rules, &args.old_rules)
        };
        exit::say(&format!(
            "txguard: note: decisions are not compared: {} has [decision], {} has none",
            show(has),
            show(lacks)
        ));
    }
    if !args.quiet {
        exit::say(&format!(
            "txguard diff: {} transactions, {} × {} rules, {:.2} s, {} -j {}\n{}  bad rows: {}\n{}",
            tally.rows,
            old.set.rules.len(),
            new.set.rules.len(),
            wall,
            summary.executor,
            config.jobs,
            summary.report.render(),
            tally.bad_rows,
            tally
                .windows
                .as_ref()
                .map_or_else(String::new, |w| crate::summary::windows_lines(w, |n| n
                    .to_string()))
        ));
    }
    if code == exit::FAIL_ON {
        say_fail_on_change(&summary.report);
    }
    Ok(code)
}

/// 3 under `--fail-on-change` when `report` counts a change, else 0.
fn fail_on_change(args: &DiffArgs, report: &Report) -> i32 {
    let changed = report.pairs_changed > 0 || report.transactions_changed > 0;
    if changed && args.fail_on_change {
        exit::FAIL_ON
    } else {
        exit::SUCCESS
    }
}

/// The line every exit 3 of a diff prints, even under -q.
fn say_fail_on_change(report: &Report) {
    exit::say(&format!(
        "txguard: exit 3: {} results changed in {} transactions (--fail-on-change)",
        report.pairs_changed, report.transactions_changed
    ));
}

/// The columns of both files, for reading the input once: a column both declare must
/// have one type (each file would type the input differently otherwise).
fn merged_columns(old: &RuleSet, new: &RuleSet, args: &DiffArgs) -> Result<RuleSet> {
    let mut names: Vec<&String> = old.columns.keys().chain(new.columns.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (a, b) = (old.column_type(name), new.column_type(name));
        let nullable = (old.is_nullable(name), new.is_nullable(name));
        if a != b || nullable.0 != nullable.1 {
            let (a, b) = (
                format!("{}{}", a.name(), if nullable.0 { "?" } else { "" }),
                format!("{}{}", b.name(), if nullable.1 { "?" } else { "" }),
            );
            return Err(anyhow!(
                "column {name:?} is {} in {} but {} in {}: both files must type the input alike",
                a,
                show(&args.old_rules),
                b,
                show(&args.new_rules)
            ));
        }
    }
    let mut columns = old.columns.clone();
    columns.extend(new.columns.clone());
    // The windows are computed once, on the rows both files see: they must be one set.
    if old.derived.windows != new.derived.windows {
        return Err(Usage(format!(
            "{} and {} declare different [windows.*]: diff computes the windows once for \
             both, so they must be the same (a rule change may still use them differently)",
            show(&args.old_rules),
            show(&args.new_rules)
        ))
        .into());
    }
    // Their `where` filters run once, with NEW's lists: OLD's must hold the same.
    if let Some(list) = new.derived.filter_list_differing(&old.derived) {
        return Err(Usage(format!(
            "a [windows.*] `where` reads [lists.{list}], which {} and {} do not hold alike: \
             diff computes the windows once for both, with one file's lists",
            show(&args.old_rules),
            show(&args.new_rules)
        ))
        .into());
    }
    let mut nullable = old.nullable.clone();
    nullable.extend(new.nullable.iter().cloned());
    Ok(RuleSet {
        columns,
        nullable,
        rules: old.rules.iter().chain(&new.rules).cloned().collect(),
        memory_limit: None,
        decision: None,
        // The windows both declare (their `where` may read NEW's lists); for evaluation,
        // each file's executor binds its own lists.
        derived: new.derived.clone(),
    })
}

/// One file's executor, as `run` would build it.
fn executor(args: &DiffArgs, loaded: &LoadedRules, columns: &Columns) -> Result<Arc<dyn Executor>> {
    let set = Arc::new(loaded.set.clone());
    Ok(match args.executor {
        ExecutorKind::Threads => Arc::new(ThreadsExecutor::new(set, columns.clone(), args.seed)),
        ExecutorKind::Processes => Arc::new(ProcessesExecutor::new(
            &set,
            WorkerSetup {
                rules_text: loaded.text.clone(),
                default_timeout: args.timeout,
                memory_limit: set.memory_limit(),
                columns: columns.clone(),
                seed: args.seed,
                list_files: loaded.list_files.clone(),
                max_record: args.max_record_size,
            },
        )?),
    })
}

/// Writes the `--summary` JSON of a diff, leaving the rename to `commit_all`.
fn write_summary(dest: &Destination, summary: &DiffSummary) -> Result<Finished> {
    use std::io::Write;
    let mut sink = Sink::create(dest)?;
    let label = sink.label().to_string();
    serde_json::to_writer_pretty(&mut sink, summary)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(sink.write_all(b"\n")?))
        .with_context(|| format!("cannot write {label}"))?;
    sink.finish()
}
