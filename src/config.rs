//! The checked, typed configuration of a run, built once from the command line
//! (ripgrep's `HiArgs` idea) and handed down: jobs resolved, time limits parsed, paths
//! checked for overlap. Below `cmd/` nothing reads flags; stages get what they need from
//! here. The value enums of the command line live here too (clap derives their parsers),
//! so that `cli.rs` is the only module that declares flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::ValueEnum;

use crate::exit::Usage;

/// Where rules are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    /// A rayon thread pool: fastest; deadlines are cooperative.
    Threads,
    /// Supervised child worker processes: hung or crashed evaluations are killed and replaced.
    Processes,
}

/// What a malformed input row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BadRows {
    /// Stop the run with exit 1 and leave no output.
    Fail,
    /// Record the row in the rejects file and go on.
    Skip,
}

/// When to draw a progress bar on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressWhen {
    /// Only when stderr is a terminal.
    Auto,
    Always,
    Never,
}

/// A result kind that `--fail-on` can turn into exit code 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Error,
    Timeout,
    False,
}

/// How rockets are launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RocketMode {
    /// One after another on the calling thread.
    Sequential,
    /// A rayon pool of `--jobs` threads.
    Rayon,
    /// One OS thread per rocket.
    Threads,
    /// One child process per rocket.
    Processes,
}

/// What a rocket's countdown does with its seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// The seconds are slept.
    Sleep,
    /// The seconds are burned on the CPU.
    Spin,
}

/// Logical CPUs: the default of `run --jobs` and of `rockets --mode rayon --jobs`,
/// decided here only.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Everything `txguard run` was asked to do, checked.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Transactions CSV; `-` is standard input.
    pub input: PathBuf,
    pub rules: PathBuf,
    /// Results; `None` or `-` is standard output.
    pub output: Option<PathBuf>,
    pub executor: ExecutorKind,
    /// Lanes: threads in the pool, or worker processes.
    pub jobs: usize,
    /// Time limit of rules without their own.
    pub timeout: Duration,
    pub seed: u64,
    pub bad_rows: BadRows,
    /// `--rejects` as given (the default depends on the output).
    pub rejects: Option<PathBuf>,
    pub fail_on: Vec<FailOn>,
    pub progress: ProgressWhen,
    pub quiet: bool,
    pub summary: Option<PathBuf>,
    /// Largest batch handed to a lane, in rows.
    pub batch_size: usize,
    /// Evaluate nothing: the parse-and-write floor of the benchmarks.
    pub floor: bool,
    /// `--memory-limit`: bytes one evaluation may hold, unless the rules file says.
    pub memory_limit: Option<usize>,
}

impl RunConfig {
    /// Checks what clap cannot: files that overlap. `Err` is a `Usage` error (exit 2),
    /// found before anything is opened or written.
    pub fn check(self) -> Result<RunConfig> {
        distinct_files(&self)?;
        Ok(self)
    }

    /// How the summary names the executor.
    pub fn executor_name(&self) -> String {
        if self.floor {
            "floor".into()
        } else {
            format!("{:?}", self.executor).to_lowercase()
        }
    }
}

/// Refuses a command line whose files overlap: the last one renamed into place would
/// replace the others (or the input) without a word.
fn distinct_files(config: &RunConfig) -> Result<()> {
    let named = [
        ("INPUT", Some(&config.input)),
        ("--rules", Some(&config.rules)),
        ("--output", config.output.as_ref()),
        ("--rejects", config.rejects.as_ref()),
        ("--summary", config.summary.as_ref()),
    ];
    let files: Vec<(&str, PathBuf)> = named
        .iter()
        .filter_map(|(flag, path)| path.map(|p| (*flag, p)))
        .filter(|(_, p)| p.as_os_str() != "-" && is_replaceable(p))
        .filter_map(|(flag, p)| std::path::absolute(p).ok().map(|abs| (flag, abs)))
        .collect();
    for (i, (a, path)) in files.iter().enumerate() {
        if let Some((b, _)) = files[i + 1..].iter().find(|(_, other)| other == path) {
            return Err(Usage(format!(
                "{a} and {b} name the same file: {}",
                path.display()
            ))
            .into());
        }
    }
    Ok(())
}

/// A regular file, a directory or a path that does not exist yet: something an output
/// would replace (unlike a pipe or a device, which is written straight).
fn is_replaceable(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file() || meta.is_dir(),
        Err(_) => true,
    }
}
