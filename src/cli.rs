//! The command line, declared once with clap derive. Every flag states its default here;
//! `cmd::*` turns these loose arguments into checked, typed configurations (`config`).
//! Nothing below `cmd/` imports this module.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{
    BadRows, ExecutorKind, FailOn, ProgressWhen, RocketMode, RunConfig, Workload, cpus,
};
use crate::duration::parse_duration;
use crate::shard::ShardSpec;
use crate::size::parse_size;

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
    /// Evaluate two rule files on one input in one pass and report what changed.
    Diff(DiffArgs),
    /// Write synthetic transactions (CSV) with realistic distributions.
    Generate(GenerateArgs),
    /// Merge the parts of a sharded run (`run --shard`) into one output, after checking
    /// that they make up exactly one whole run.
    Merge(MergeArgs),
    /// Launch rockets: the concurrency throughput workload.
    Rockets(RocketsArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(CompletionsArgs),
    /// Print the manual page (roff) of txguard or of one of its subcommands.
    Man(ManArgs),
    /// Internal: a process-executor worker, fed over stdin (not for people).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Internal: one rocket in its own process (not for people).
    #[command(hide = true)]
    Rocket(RocketArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Transactions CSV, or `-` for standard input; several are evaluated in this order
    /// into one output (their headers must have the same columns, in any order).
    #[arg(value_name = "INPUT", required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Rules file (TOML).
    #[arg(long, value_name = "FILE")]
    pub rules: PathBuf,
    /// Earlier transactions (same columns as the input) read first, in order, only to fill
    /// the rules' `[windows]`; never evaluated nor written. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub history: Vec<PathBuf>,
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
    /// Comma list of `error`, `timeout`, `false` and decision names of the rules file's
    /// `[decision]` (`review`, `block`): exit 3 if any such result or decision occurred.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = crate::config::parse_fail_on)]
    pub fail_on: Vec<FailOn>,
    /// Progress bar on stderr; `auto` draws it only when stderr is a terminal.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressWhen::Auto)]
    pub progress: ProgressWhen,
    /// No summary on stderr; any failure (and exit 3) is one line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// The longest input record (`64KiB`, `1MiB`, `64MiB`); a longer one is a bad row, and
    /// memory stays bounded whatever the input.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_record_size: usize,
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
    /// Run shard I of N (0-based): only the records starting in its byte range, into
    /// OUTPUT.part-IIIII-of-NNNNN and its summary, for `txguard merge`. `auto`: I/N from
    /// TXGUARD_SHARD, else I from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID and N from
    /// TXGUARD_SHARD_COUNT [default: the whole input].
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<String>,
    /// The input has no header row: these are its columns, in order (`id,amount,...`)
    /// [default: the input's first row].
    #[arg(long, value_name = "NAMES", value_delimiter = ',', value_parser = column_name)]
    pub columns: Option<Vec<String>>,
    /// Write the results without their header row (for engines that concatenate
    /// the outputs of many runs).
    #[arg(long)]
    pub no_output_header: bool,
    #[command(flatten)]
    pub csv: CsvArgs,
    /// `detail` of every `true` result also shows the values of the variables its rule
    /// read (`amount=25000.0 country="IR"`), after the rendered reason.
    #[arg(long)]
    pub explain: bool,
    /// Also write one line per transaction, `transaction_id,score,decision,reasons`
    /// (needs `[decision]` in the rules file); `-` is standard output.
    #[arg(long, value_name = "FILE")]
    pub decisions: Option<PathBuf>,
}

/// How transactions CSVs are read: one set of flags for every command that reads them.
#[derive(Debug, Clone, Args)]
pub struct CsvArgs {
    /// Field delimiter: one ASCII character, `'\t'` for a tab [default: a tab for `.tsv`
    /// and `.tab` files, else `,`].
    #[arg(short, long, value_name = "CHAR", value_parser = crate::dialect::parse_delimiter)]
    pub delimiter: Option<u8>,
    /// The column holding the transaction id (written as `transaction_id` in the results).
    #[arg(long, value_name = "NAME", default_value = "id", value_parser = crate::dialect::parse_id_column)]
    pub id_column: String,
}

impl CsvArgs {
    /// The CSV configuration these flags give, with the longest record allowed.
    pub fn config(&self, max_record: usize) -> crate::dialect::CsvConfig {
        crate::dialect::CsvConfig {
            delimiter: self.delimiter,
            id_column: self.id_column.clone(),
            max_record,
        }
    }
}

/// `txguard merge`: the parts of a sharded run into one output.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The output the shards were run with (`-o OUT`): reads OUT.part-*-of-*, writes OUT.
    pub output: PathBuf,
    /// Also write the summary of the whole run as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Comma list of `error`, `timeout`, `false` and decision names: exit 3 if any such
    /// result or decision occurred in the whole run.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = crate::config::parse_fail_on)]
    pub fail_on: Vec<FailOn>,
    /// Remove the parts (results, summaries, rejects) once the merged output is written.
    #[arg(long)]
    pub remove_parts: bool,
    /// No summary on stderr; any failure (and exit 3) is one line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The rules in force (TOML).
    pub old_rules: PathBuf,
    /// The rules proposed (TOML).
    pub new_rules: PathBuf,
    /// Transactions CSV, or `-` for standard input.
    pub input: PathBuf,
    /// Changes CSV (`transaction_id,rule_id,old,new`); `-` is standard output
    /// [default: standard output].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Transaction labels (CSV: transaction_id,label with label true or false): precision,
    /// recall and F1 of every rule and decision, old and new.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Earlier transactions (same columns as the input) read first, in order, only to fill
    /// the `[windows]` both files declare, as `run --history` does. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub history: Vec<PathBuf>,
    /// Exit 3 when any result or decision changed.
    #[arg(long)]
    pub fail_on_change: bool,
    /// Rayon thread pool, or supervised child worker processes (two per job: one per file).
    #[arg(long, value_enum, default_value_t = ExecutorKind::Threads)]
    pub executor: ExecutorKind,
    /// Threads in the pool, or worker processes [default: number of CPUs].
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Default time limit of one evaluation (`250ms`, `3s`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Seed of `coin_flip()` and `random()`, the same for both files.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// A malformed input row stops the diff, or is skipped and recorded.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = BadRows::Fail)]
    pub bad_rows: BadRows,
    /// Where skipped rows go [default: OUTPUT.rejects.csv, or stderr].
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Progress bar on stderr; `auto` draws it only when stderr is a terminal.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressWhen::Auto)]
    pub progress: ProgressWhen,
    /// No report on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// The longest input record (`64KiB`, `1MiB`, `64MiB`).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_record_size: usize,
    /// Memory one evaluation may hold; each file's `[defaults] memory_limit` wins.
    #[arg(long, value_name = "SIZE", value_parser = crate::budget::parse_size)]
    pub memory_limit: Option<usize>,
    #[command(flatten)]
    pub csv: CsvArgs,
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
    #[command(flatten)]
    pub csv: CsvArgs,
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
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (`txguard-run(1)`) [default: txguard(1)].
    #[arg(value_name = "SUBCOMMAND", value_parser = ["run", "check", "diff", "merge", "generate", "rockets", "completions", "man"])]
    pub subcommand: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Protocol version the supervisor speaks; a mismatch is refused.
    #[arg(long)]
    pub protocol: u32,
    /// Largest frame the supervisor sends (`exec::protocol::max_to_worker`).
    #[arg(long, default_value_t = crate::exec::protocol::MAX_TO_WORKER)]
    pub max_frame: usize,
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
            input: self.input[0].clone(),
            inputs: self.input,
            rules: self.rules,
            history: self.history,
            merged: Vec::new(),
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
            max_record_size: self.max_record_size,
            floor: self.floor,
            memory_limit: self.memory_limit,
            csv: self.csv.config(self.max_record_size),
            explain: self.explain,
            decisions: self.decisions,
            shard: self.shard.as_deref().map(ShardSpec::from_arg).transpose()?,
            columns: self.columns,
            no_output_header: self.no_output_header,
        }
        .check()
    }
}

impl Command {
    /// `run -q`, `diff -q`: errors, too, are cut to one line.
    pub fn quiet(&self) -> bool {
        matches!(self, Command::Run(args) if args.quiet)
            || matches!(self, Command::Diff(args) if args.quiet)
            || matches!(self, Command::Merge(args) if args.quiet)
    }
}

/// The command line as clap builds it from `Cli`, with the exit codes after the help of
/// `txguard` and of `txguard run` (from `exit::CODES`, their one source): what parsing,
/// the completion scripts and the man pages all use.
pub fn command() -> clap::Command {
    let codes = crate::exit::codes_help();
    Cli::command()
        .after_help(codes.clone())
        .mut_subcommand("run", |run| run.after_help(codes))
}

/// Parses the process's arguments; on a usage error prints clap's message and exits 2.
/// Clap may suggest hidden flags and subcommands for a typo (`--flor` → `--floor`,
/// `worke` → `worker`): those are internal, and are taken out of the message. Under
/// `-q` the message is one line, like every other error.
pub fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = command()
        .try_get_matches_from(&args)
        .and_then(|matches| <Cli as clap::FromArgMatches>::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => cli,
        Err(mut err) => {
            use clap::error::ErrorKind;
            let quiet = quiet_requested(&args);
            without_hidden_suggestions(&mut err);
            let printed = matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if quiet && !printed {
                let rendered = err.render().to_string();
                crate::exit::say(&format!(
                    "txguard: error: {} (see txguard --help)",
                    first_paragraph(&rendered)
                ));
                std::process::exit(err.exit_code());
            }
            err.exit()
        }
    }
}

/// Whether the line asks for `-q`/`--quiet` of its subcommand, as clap would read it:
/// `-q` alone or inside a bundle of short flags (`-qj 2`), but not as the value of a
/// flag (`-j q`, `-jq`, `-o -q`) nor after `--`. Which flags take values is asked of
/// clap's own definition, so it cannot drift from the parser.
fn quiet_requested(args: &[std::ffi::OsString]) -> bool {
    let root = Cli::command();
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    // The subcommand: the first word that is not a flag of the top level.
    let Some(sub) = words.by_ref().find(|w| !w.starts_with('-')) else {
        return false;
    };
    let Some(cmd) = root
        .get_subcommands()
        .find(|c| c.get_name() == sub || c.get_all_aliases().any(|a| a == sub))
    else {
        return false;
    };
    let quiet = cmd
        .get_arguments()
        .find(|a| a.get_id() == "quiet")
        .map(|a| (a.get_short(), a.get_long()));
    let Some((quiet_short, quiet_long)) = quiet else {
        return false;
    };
    let takes_value = |arg: &clap::Arg| {
        arg.get_num_args().is_none_or(|n| n.takes_values()) && arg.get_action().takes_values()
    };
    let short_takes_value = |c: char| {
        cmd.get_arguments()
            .find(|a| a.get_short() == Some(c))
            .is_some_and(takes_value)
    };
    let long_takes_value = |l: &str| {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(l))
            .is_some_and(takes_value)
    };
    let mut skip_next = false;
    for word in words {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if word == "--" {
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            if Some(long) == quiet_long {
                return true;
            }
            skip_next = !long.contains('=') && long_takes_value(long);
        } else if let Some(shorts) = word.strip_prefix('-') {
            let mut chars = shorts.chars();
            while let Some(c) = chars.next() {
                if Some(c) == quiet_short {
                    return true;
                }
                if short_takes_value(c) {
                    // The rest of the bundle is the value, else the next word.
                    skip_next = chars.as_str().is_empty();
                    break;
                }
            }
        }
    }
    false
}

/// The first paragraph of a clap error as one line: its headline and the indented lines
/// under it (the required arguments that were not provided), without `error: `.
fn first_paragraph(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or_default();
    let mut text = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let details: Vec<&str> = lines
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t'))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !details.is_empty() {
        text.push(' ');
        text.push_str(&details.join(", "));
    }
    text
}

/// Removes from a clap error every suggestion that names a hidden flag or subcommand.
fn without_hidden_suggestions(err: &mut clap::Error) {
    use clap::error::{ContextKind, ContextValue};
    let hidden = hidden_names(&Cli::command());
    let is_hidden = |name: &str| hidden.iter().any(|h| h == name);
    if let Some(ContextValue::String(arg)) = err.get(ContextKind::SuggestedArg)
        && is_hidden(arg)
    {
        err.remove(ContextKind::SuggestedArg);
    }
    if let Some(ContextValue::Strings(names)) = err.get(ContextKind::SuggestedSubcommand) {
        let visible: Vec<String> = names.iter().filter(|n| !is_hidden(n)).cloned().collect();
        err.remove(ContextKind::SuggestedSubcommand);
        if !visible.is_empty() {
            err.insert(
                ContextKind::SuggestedSubcommand,
                ContextValue::Strings(visible),
            );
        }
    }
    // Free-form tips such as "'run --floor' exists".
    if let Some(ContextValue::StyledStrs(tips)) = err.get(ContextKind::Suggested) {
        let visible: Vec<_> = tips
            .iter()
            .filter(|tip| {
                let text = tip.to_string();
                !hidden
                    .iter()
                    .any(|h| text.contains(&format!("{h}'")) || text.contains(&format!("{h} ")))
            })
            .cloned()
            .collect();
        err.remove(ContextKind::Suggested);
        if !visible.is_empty() {
            err.insert(ContextKind::Suggested, ContextValue::StyledStrs(visible));
        }
    }
}

/// A `--columns` name: written by hand on a command line (`--columns "id, amount"`), so
/// the blanks around it are not part of it, as a header's would be.
fn column_name(name: &str) -> Result<String, String> {
    Ok(name.trim().to_string())
}

/// Names of hidden subcommands, and `--long` names of hidden flags, at every level.
fn hidden_names(cmd: &clap::Command) -> Vec<String> {
    let mut names = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.is_hide_set()) {
        if let Some(long) = arg.get_long() {
            names.push(format!("--{long}"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() {
            names.push(sub.get_name().to_string());
        }
        names.extend(hidden_names(sub));
    }
    names
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

    #[test]
    fn quiet_is_found_in_bundles_but_never_as_a_value() {
        let q = |line: &[&str]| {
            let args: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
            quiet_requested(&args)
        };
        assert!(q(&["txguard", "run", "-q"]));
        assert!(q(&["txguard", "run", "-qj", "2", "--bogus"]));
        assert!(q(&["txguard", "run", "-j", "2", "--quiet"]));
        assert!(!q(&["txguard", "run", "-j", "q"]));
        assert!(!q(&["txguard", "run", "-jq"]));
        assert!(!q(&["txguard", "run", "-o", "-q"]));
        assert!(!q(&["txguard", "run", "--output", "-q"]));
        assert!(!q(&["txguard", "run", "x", "--", "-q"]));
        assert!(!q(&["txguard", "generate", "-q"]));
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typos_suggest_no_hidden_flag_or_subcommand() {
        for (args, hidden) in [
            (
                &["txguard", "run", "x", "--rules", "r", "--flor"][..],
                "--floor",
            ),
            (
                &["txguard", "run", "x", "--rules", "r", "--batch-siz", "5"][..],
                "--batch-size",
            ),
            (&["txguard", "worke"][..], "worker"),
            (&["txguard", "rocke"][..], "'rocket'"),
        ] {
            let mut err = Cli::try_parse_from(args).unwrap_err();
            without_hidden_suggestions(&mut err);
            let text = err.render().to_string();
            assert!(!text.contains(hidden), "{text}");
        }
        let mut err = Cli::try_parse_from(["txguard", "rocke"]).unwrap_err();
        without_hidden_suggestions(&mut err);
        assert!(err.render().to_string().contains("'rockets'"));
    }
}
