//! `txguard run`: check the command line and the rules, take the lock, then drive the
//! pipeline (input → executor → ordered results) and report what happened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::cli::{BadRows, ExecutorKind, FailOn, RunArgs};
use crate::exec::Executor;
use crate::exec::processes::{ProcessesExecutor, WorkerSetup};
use crate::exec::threads::{FloorExecutor, ThreadsExecutor};
use crate::exit;
use crate::input::InputReader;
use crate::outcome::Kind;
use crate::output::{Destination, OutputLock, RejectsWriter, ResultsWriter, Sink};
use crate::pipeline::{self, Settings, Tally};
use crate::progress::Progress;
use crate::rules::{self, Evaluator, RuleSet, RulesErrors};
use crate::signals::StopFlag;
use crate::summary::{RunFacts, Summary};

/// Loads the rules file and compiles every script for syntax: every error at once.
pub fn load_rules(path: &Path, default_timeout: std::time::Duration) -> Result<RuleSet> {
    let set = rules::file::load(path, default_timeout)?;
    let errors = rules::engine::check_syntax(&set);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(RulesErrors {
            path: path.to_path_buf(),
            errors,
        }
        .into())
    }
}

/// What a run has learnt so far: enough for a summary even when it fails half-way.
struct Known {
    facts: RunFacts,
    clock: Instant,
    rules: Option<Arc<RuleSet>>,
    tally: Tally,
}

pub fn run(args: RunArgs) -> Result<i32> {
    let jobs = args.jobs.map_or_else(crate::cli::cpus, |j| j as usize);
    let mut known = Known {
        facts: RunFacts {
            started_at: SystemTime::now(),
            input: args.input.display().to_string(),
            rules_file: args.rules.display().to_string(),
            rules_sha256: String::new(),
            executor: if args.floor {
                "floor".into()
            } else {
                format!("{:?}", args.executor).to_lowercase()
            },
            jobs,
            workers: None,
            wall: Default::default(),
        },
        clock: Instant::now(),
        rules: None,
        tally: Tally::default(),
    };
    let result = execute(&args, jobs, &mut known);
    known.facts.wall = known.clock.elapsed();
    let code = match &result {
        Ok(code) => *code,
        Err(err) => exit::code_of(err),
    };
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let empty = RuleSet {
        columns: Default::default(),
        rules: Vec::new(),
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
    if let (Some(path), false) = (&args.summary, code == exit::LOCKED) {
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
    if !args.quiet {
        eprint!("{}", summary.render());
        if code == exit::FAIL_ON {
            eprintln!("txguard: exit 3: a result named by --fail-on occurred");
        }
    }
    Ok(code)
}

fn execute(args: &RunArgs, jobs: usize, known: &mut Known) -> Result<i32> {
    distinct_files(args)?;
    let stop = StopFlag::install()?;

    // Rules first: their errors are reported before any input is read.
    known.facts.rules_sha256 = sha256_hex(&args.rules)?;
    let rules = Arc::new(load_rules(&args.rules, args.timeout)?);
    known.rules = Some(Arc::clone(&rules));

    let dest = Destination::of(args.output.as_deref());
    // The lock is taken before any work, and held until the process ends.
    let _lock = dest.file().map(OutputLock::acquire).transpose()?;

    let input = InputReader::open(&args.input, &rules)?;
    let columns = input.columns().clone();
    // Compiling against the input's columns finds variables that are neither a column
    // nor the rule's own, before a single row is evaluated.
    Evaluator::new(&rules, &columns, args.seed).map_err(|errors| RulesErrors {
        path: args.rules.clone(),
        errors,
    })?;

    let rule_ids: Vec<i64> = rules.rules.iter().map(|r| r.id).collect();
    let mut results = ResultsWriter::new(Sink::create(&dest)?, &rule_ids)?;
    let rejects = match args.bad_rows {
        BadRows::Fail => None,
        BadRows::Skip => Some(RejectsWriter::new(Sink::create(&rejects_destination(
            args, &dest,
        ))?)?),
    };

    let executor: Arc<dyn Executor> = match (args.floor, args.executor) {
        (true, _) => Arc::new(FloorExecutor {
            rules: rule_ids.len(),
            jobs,
        }),
        (false, ExecutorKind::Threads) => Arc::new(ThreadsExecutor::new(
            Arc::clone(&rules),
            columns,
            args.seed,
            jobs,
        )),
        (false, ExecutorKind::Processes) => {
            let setup = WorkerSetup {
                rules_text: std::fs::read_to_string(&args.rules)
                    .with_context(|| format!("cannot read {}", args.rules.display()))?,
                default_timeout: args.timeout,
                columns,
                seed: args.seed,
            };
            Arc::new(ProcessesExecutor::new(Arc::clone(&rules), setup, jobs)?)
        }
    };
    let settings = Settings {
        bad_rows: args.bad_rows,
        batch_size: args.batch_size as usize,
        progress: Progress::new(args.progress, input.total_bytes),
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
    known.facts.workers = executor.workers();
    let (tally, rejects) = outcome?;
    if let Some(signal) = stop.signal() {
        return Err(exit::Interrupted(signal).into());
    }
    results.commit()?;
    if let Some(rejects) = rejects {
        rejects.commit()?;
    }
    let code = exit_code(&args.fail_on, &tally);
    known.tally = tally;
    Ok(code)
}

/// Refuses a command line whose files overlap: the last one renamed into place would
/// replace the others (or the input) without a word.
fn distinct_files(args: &RunArgs) -> Result<()> {
    let named = [
        ("INPUT", Some(&args.input)),
        ("--rules", Some(&args.rules)),
        ("--output", args.output.as_ref()),
        ("--rejects", args.rejects.as_ref()),
        ("--summary", args.summary.as_ref()),
    ];
    let files: Vec<(&str, PathBuf)> = named
        .iter()
        .filter_map(|(flag, path)| path.map(|p| (*flag, p)))
        .filter(|(_, p)| {
            p.as_os_str() != "-" && !matches!(Destination::of(Some(p)), Destination::Straight(_))
        })
        .filter_map(|(flag, p)| std::path::absolute(p).ok().map(|abs| (flag, abs)))
        .collect();
    for (i, (a, path)) in files.iter().enumerate() {
        if let Some((b, _)) = files[i + 1..].iter().find(|(_, other)| other == path) {
            return Err(exit::Usage(format!(
                "{a} and {b} name the same file: {}",
                path.display()
            ))
            .into());
        }
    }
    Ok(())
}

/// `--rejects`, or `OUTPUT.rejects.csv` beside a file output, or stderr.
fn rejects_destination(args: &RunArgs, dest: &Destination) -> Destination {
    match (&args.rejects, dest.file()) {
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

fn sha256_hex(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read rules file {}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
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
