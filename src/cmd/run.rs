//! `txguard run`: check the command line and the rules, take the lock, then drive the
//! pipeline (input → executor → ordered results) and report what happened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};

use crate::cli::RunArgs;
use crate::config::{BadRows, ExecutorKind, FailOn, RunConfig};
use crate::exec::Executor;
use crate::exec::processes::{ProcessesExecutor, WorkerSetup};
use crate::exec::threads::{FloorExecutor, ThreadsExecutor};
use crate::exit;
use crate::input::InputReader;
use crate::model::Kind;
use crate::output::{Destination, OutputLock, RejectsWriter, ResultsWriter, Sink};
use crate::pipeline::{self, Settings, Tally};
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
}

pub fn run(args: RunArgs) -> Result<i32> {
    // A command line that does not hold together writes nothing, not even a summary.
    let config = args.into_config()?;
    let mut known = Known {
        facts: RunFacts {
            started_at: SystemTime::now(),
            input: config.input.display().to_string(),
            rules_file: config.rules.display().to_string(),
            rules_sha256: String::new(),
            executor: config.executor_name(),
            jobs: config.jobs,
            workers: None,
            wall: Default::default(),
        },
        clock: Instant::now(),
        rules: None,
        tally: Tally::default(),
    };
    let result = execute(&config, &mut known);
    known.facts.wall = known.clock.elapsed();
    let code = match &result {
        Ok(code) => *code,
        Err(err) => exit::code_of(err),
    };
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let empty = RuleSet {
        columns: Default::default(),
        rules: Vec::new(),
        memory_limit: None,
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
    if let (Some(path), false) = (&config.summary, code == exit::LOCKED) {
        let written = write_summary_json(path, &summary);
        // A run that failed reports its own error; a summary that cannot be written fails
        // a run that had succeeded.
        if result.is_ok() {
            written?;
        } else if let Err(e) = written {
            eprintln!("txguard: also: {e:#}");
        }
    }
    let code = result?;
    if !config.quiet {
        eprint!("{}", summary.render());
        if code == exit::FAIL_ON {
            eprintln!("txguard: exit 3: a result named by --fail-on occurred");
        }
    }
    Ok(code)
}

fn execute(config: &RunConfig, known: &mut Known) -> Result<i32> {
    let stop = StopFlag::install()?;

    // Rules first: their errors are reported before any input is read. The file is read
    // once; the same bytes are hashed, parsed and shipped to workers.
    let loaded = rules::load(&config.rules, config.timeout)?;
    known.facts.rules_sha256 = loaded.sha256.clone();
    let mut set = loaded.set;
    set.or_memory_limit(config.memory_limit);
    let rules = Arc::new(set);
    known.rules = Some(Arc::clone(&rules));

    let dest = Destination::of(config.output.as_deref());
    // The lock is taken before any work, and held until the process ends.
    let _lock = dest.file().map(OutputLock::acquire).transpose()?;

    let input = InputReader::open(&config.input, &rules)?;
    let columns = input.columns().clone();
    // Compiling against the input's columns finds variables that are neither a column
    // nor the rule's own, before a single row is evaluated.
    Evaluator::new(&rules, &columns, config.seed)
        .map_err(|errors| RulesErrors::of(&config.rules, errors))?;

    let rule_ids: Vec<i64> = rules.rules.iter().map(|r| r.id).collect();
    let mut results = ResultsWriter::new(Sink::create(&dest)?, &rule_ids)?;
    let rejects = match config.bad_rows {
        BadRows::Fail => None,
        BadRows::Skip => Some(RejectsWriter::new(Sink::create(&rejects_destination(
            config, &dest,
        ))?)?),
    };

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
                default_timeout: config.timeout,
                memory_limit: rules.memory_limit(),
                columns,
                seed: config.seed,
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
        progress: Progress::new(config.progress, input.total_bytes),
        stop: stop.clone(),
    };
    let outcome = pipeline::run(
        input,
        Arc::clone(&executor),
        rule_ids.len(),
        rejects,
        &mut results,
        &settings,
    );
    settings.progress.finish();
    known.facts.workers = processes.as_deref().map(ProcessesExecutor::workers);
    let (tally, rejects) = outcome?;
    if let Some(signal) = stop.signal() {
        return Err(exit::Interrupted(signal).into());
    }
    results.commit()?;
    if let Some(rejects) = rejects {
        rejects.commit()?;
    }
    let code = exit_code(&config.fail_on, &tally);
    known.tally = tally;
    Ok(code)
}

/// `--rejects`, or `OUTPUT.rejects.csv` beside a file output, or stderr.
fn rejects_destination(config: &RunConfig, dest: &Destination) -> Destination {
    match (&config.rejects, dest.file()) {
        (Some(path), _) => Destination::of(Some(path)),
        (None, Some(out)) => {
            let mut name = out.as_os_str().to_owned();
            name.push(".rejects.csv");
            Destination::File(PathBuf::from(name))
        }
        (None, None) => Destination::Stderr,
    }
}

/// 3 when a result named by `--fail-on` occurred, else 0.
fn exit_code(fail_on: &[FailOn], tally: &Tally) -> i32 {
    let occurred = |kind: Kind| tally.counts.iter().any(|c| c[kind as usize] > 0);
    let hit = fail_on.iter().any(|f| match f {
        FailOn::Error => occurred(Kind::Error),
        FailOn::Timeout => occurred(Kind::Timeout),
        FailOn::False => occurred(Kind::False),
    });
    if hit { exit::FAIL_ON } else { exit::SUCCESS }
}

/// The `--summary` JSON, written atomically like every output.
fn write_summary_json(path: &Path, summary: &Summary) -> Result<()> {
    use std::io::Write;
    let mut sink = Sink::create(&Destination::of(Some(path)))?;
    serde_json::to_writer_pretty(&mut sink, summary)
        .with_context(|| format!("cannot write {}", path.display()))?;
    sink.write_all(b"\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    sink.commit()
}
