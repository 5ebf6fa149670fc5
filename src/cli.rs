//! The command line, declared once with clap derive. Every flag states its default here;
//! `cmd::*` turns these loose arguments into checked, typed configurations (`config`).
//! Nothing below `cmd/` imports this module.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    BadRows, ExecutorKind, FailOn, ProgressWhen, RocketMode, RunConfig, Workload, cpus,
};
use crate::duration::parse_duration;

/// Evaluate analyst-written rules on every transaction of a CSV batch.
#[derive(Debug, Parser)]
#[command(name = "txguard", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate every rule on every transaction and write one result per pair.
    Run(RunArgs),
    /// Compile the rules, run their examples and report every problem at once.
    Check(CheckArgs),
    /// Write synthetic transactions (CSV) with realistic distributions.
    Generate(GenerateArgs),
    /// Launch rockets: the concurrency throughput workload.
    Rockets(RocketsArgs),
    /// Internal: a process-executor worker, fed over stdin (not for people).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Internal: one rocket in its own process (not for people).
    #[command(hide = true)]
    Rocket(RocketArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Transactions CSV, or `-` for standard input.
    pub input: PathBuf,
    /// Rules file (TOML).
    #[arg(long, value_name = "FILE")]
    pub rules: PathBuf,
    /// Results CSV; `-` is standard output [default: standard output].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rayon thread pool, or supervised child worker processes.
    #[arg(long, value_enum, default_value_t = ExecutorKind::Threads)]
    pub executor: ExecutorKind,
    /// Threads in the pool, or worker processes [default: number of CPUs].
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Default time limit of one evaluation (`250ms`, `3s`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Seed of the rule functions `coin_flip()` and `random()`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// A malformed input row stops the run, or is skipped and recorded.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = BadRows::Fail)]
    pub bad_rows: BadRows,
    /// Where skipped rows go (CSV: line,reason,raw) [default: OUTPUT.rejects.csv, or stderr
    /// when the output is standard output].
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Comma list of `error`, `timeout`, `false`: exit 3 if any such result occurred.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub fail_on: Vec<FailOn>,
    /// Progress bar on stderr; `auto` draws it only when stderr is a terminal.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressWhen::Auto)]
    pub progress: ProgressWhen,
    /// No summary on stderr (errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Rows per batch handed to an executor (tuning; results do not depend on it).
    #[arg(long, value_name = "N", default_value_t = 1024, hide = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// Read, type and write the input with no rule evaluated: the parse-and-write floor
    /// that benchmarks compare against. Every result is written as `false`.
    #[arg(long, hide = true)]
    pub floor: bool,
    /// Memory one evaluation may hold (`256MiB`, `1GiB`); the rules file's
    /// `[defaults] memory_limit` wins [default: 256MiB].
    #[arg(long, value_name = "SIZE", value_parser = crate::budget::parse_size)]
    pub memory_limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rules file (TOML).
    pub rules: PathBuf,
    /// Seed used for `coin_flip()` and `random()` while running examples.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Default time limit of one example evaluation.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Memory one evaluation may hold (`256MiB`, `1GiB`); the rules file's
    /// `[defaults] memory_limit` wins [default: 256MiB].
    #[arg(long, value_name = "SIZE", value_parser = crate::budget::parse_size)]
    pub memory_limit: Option<usize>,
    /// Also check the rules against this input: its header (every variable a rule reads
    /// must be a column) and its first rows (every rule evaluated, errors reported).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of transactions to write.
    #[arg(short = 'n', long = "count", value_name = "COUNT")]
    pub count: u64,
    /// Seed: the same seed writes byte-identical output.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Output CSV; `-` is standard output [default: standard output].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RocketsArgs {
    /// Rockets to launch.
    #[arg(
        short = 'n',
        long = "count",
        value_name = "COUNT",
        default_value_t = 10_000
    )]
    pub count: u32,
    /// How rockets are launched.
    #[arg(long, value_enum, default_value_t = RocketMode::Threads)]
    pub mode: RocketMode,
    /// Pool size for `rayon`; most processes alive at once for `processes`
    /// [default: CPUs for rayon, unlimited for processes].
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Multiply every sleep (1.0 = real seconds, as in the original program).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub time_scale: f64,
    /// Makes names, delays and countdowns reproducible [default: random].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Countdown seconds are slept, or burned on the CPU.
    #[arg(long, value_enum, default_value_t = Workload::Sleep)]
    pub workload: Workload,
    /// No per-rocket lines.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Protocol version the supervisor speaks; a mismatch is refused.
    #[arg(long)]
    pub protocol: u32,
}

#[derive(Debug, Args)]
pub struct RocketArgs {
    #[arg(long)]
    pub name: String,
    /// Delay before the countdown, in seconds (already scaled).
    #[arg(long)]
    pub delay: f64,
    #[arg(long)]
    pub countdown: u32,
    /// Length of one countdown step, in seconds (already scaled).
    #[arg(long)]
    pub step: f64,
    #[arg(long, value_enum)]
    pub workload: Workload,
    #[arg(short, long)]
    pub quiet: bool,
}

impl RunArgs {
    /// The checked configuration of this run (`Usage` error: exit 2).
    pub fn into_config(self) -> anyhow::Result<RunConfig> {
        RunConfig {
            jobs: self.jobs.map_or_else(cpus, |j| j as usize),
            input: self.input,
            rules: self.rules,
            output: self.output,
            executor: self.executor,
            timeout: self.timeout,
            seed: self.seed,
            bad_rows: self.bad_rows,
            rejects: self.rejects,
            fail_on: self.fail_on,
            progress: self.progress,
            quiet: self.quiet,
            summary: self.summary,
            batch_size: self.batch_size as usize,
            floor: self.floor,
            memory_limit: self.memory_limit,
        }
        .check()
    }
}

fn parse_time_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 => Ok(f),
        _ => Err(format!("{text:?} is not a non-negative number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
