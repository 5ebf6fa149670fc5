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
use crate::output::Destination;
use crate::output::paths::{Identity, identity, show, with_suffix};

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

/// A result kind, or a decision of the rules file's `[decision]`, that `--fail-on` can
/// turn into exit code 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOn {
    Error,
    Timeout,
    False,
    /// A decision name (`review`, `block`): checked against the rules file once read.
    Decision(String),
}

/// Parses one word of `--fail-on`.
pub fn parse_fail_on(word: &str) -> Result<FailOn, String> {
    Ok(match word {
        "error" => FailOn::Error,
        "timeout" => FailOn::Timeout,
        "false" => FailOn::False,
        w if crate::model::is_identifier(w) && w != "true" => FailOn::Decision(w.to_string()),
        w => {
            return Err(format!(
                "{w:?} is neither a result (error, timeout, false) nor a decision name"
            ));
        }
    })
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
    /// Transactions CSV; `-` is standard input. The first of `inputs`.
    pub input: PathBuf,
    /// Every input, in the order they are evaluated (one, or several).
    pub inputs: Vec<PathBuf>,
    pub rules: PathBuf,
    /// `--history`: files read into the windows before the input, in order.
    pub history: Vec<PathBuf>,
    /// A shard's: the files `txguard merge` will write from its parts (OUT, and
    /// OUT.rejects.csv under `--bad-rows skip`), set by `shard::part_config`. No list the
    /// rules read may be one of them (checked once the rules are read).
    pub merged: Vec<PathBuf>,
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
    /// The longest input record, in bytes.
    pub max_record_size: usize,
    /// Evaluate nothing: the parse-and-write floor of the benchmarks.
    pub floor: bool,
    /// `--memory-limit`: bytes one evaluation may hold, unless the rules file says.
    pub memory_limit: Option<usize>,
    /// How the input is read: delimiter, id column, longest record.
    pub csv: crate::dialect::CsvConfig,
    /// `--explain`: `detail` of `true` results shows the values the rule read.
    pub explain: bool,
    /// `--decisions`: one line per transaction, its score and decision.
    pub decisions: Option<PathBuf>,
    /// `--shard`: this run is one shard; `output` and `summary` are its part's files.
    pub shard: Option<crate::shard::ShardSpec>,
    /// `--columns`: the input has no header row; its columns' names.
    pub columns: Option<Vec<String>>,
    /// `--no-output-header`: results without their header row.
    pub no_output_header: bool,
}

/// Where each output of a run goes, as the flags say (`RunConfig::outputs`).
#[derive(Debug, Clone)]
pub struct Outputs {
    pub results: Destination,
    /// Under `--bad-rows skip` only: `--rejects`, or `OUTPUT.rejects.csv` beside a file
    /// output, or stderr.
    pub rejects: Option<Destination>,
    /// The rejects file is the default one, derived from the output's name.
    pub default_rejects: bool,
    pub summary: Option<Destination>,
    /// `--decisions`.
    pub decisions: Option<Destination>,
}

impl Outputs {
    /// Every output with the flag that names it, for messages.
    fn named(&self) -> Vec<(&'static str, &Destination)> {
        let mut named = vec![("--output", &self.results)];
        if let Some(rejects) = &self.rejects {
            let flag = if self.default_rejects {
                "the default rejects file (see --rejects)"
            } else {
                "--rejects"
            };
            named.push((flag, rejects));
        }
        if let Some(summary) = &self.summary {
            named.push(("--summary", summary));
        }
        if let Some(decisions) = &self.decisions {
            named.push(("--decisions", decisions));
        }
        named
    }

    /// Whether some output goes to standard output.
    pub fn uses_stdout(&self) -> bool {
        self.named()
            .iter()
            .any(|(_, dest)| **dest == Destination::Stdout)
    }

    /// The files the lock on the results covers: the results, and the default rejects
    /// file derived from their name (no other run writes it without that lock).
    pub fn covered_by_lock(&self) -> Vec<&Path> {
        let mut covered: Vec<&Path> = self.results.file().into_iter().collect();
        covered.extend(self.decisions.as_ref().and_then(Destination::file));
        if self.default_rejects
            && let Some(rejects) = self.rejects.as_ref().and_then(Destination::file)
        {
            covered.push(rejects);
        }
        covered
    }
}

impl RunConfig {
    /// Checks what clap cannot, before anything is opened or written (`Usage`, exit 2):
    /// at most one output on standard output; every file output can be written (its
    /// directory exists and takes files, it is not a directory); no two files overlap.
    pub fn check(mut self) -> Result<RunConfig> {
        if let Some(columns) = &self.columns {
            crate::input::check_columns(columns, &self.csv.id_column)?;
        }
        // A shard writes its part's files instead of `-o` (and its summary always).
        self = crate::shard::part_config(self)?;
        let outputs = self.outputs();
        one_standard_output(&outputs, self.output.is_none())?;
        let locked = outputs.covered_by_lock();
        for (flag, dest) in outputs.named() {
            // The files the lock covers (results, decisions, the default rejects file)
            // are locked each: their lock files' names must fit too.
            let is_locked = dest.file().is_some_and(|file| locked.contains(&file));
            dest.check(flag, is_locked)?;
        }
        distinct_files(&self, &outputs)?;
        Ok(self)
    }

    /// Where the results, rejects and summary go.
    pub fn outputs(&self) -> Outputs {
        let results = Destination::of(self.output.as_deref());
        let (rejects, default_rejects) = match (self.bad_rows, &self.rejects, results.file()) {
            (BadRows::Fail, _, _) => (None, false),
            (BadRows::Skip, Some(path), _) => (Some(Destination::of(Some(path))), false),
            (BadRows::Skip, None, Some(out)) => (
                Some(Destination::of(Some(&with_suffix(
                    out,
                    crate::shard::REJECTS_SUFFIX,
                )))),
                true,
            ),
            (BadRows::Skip, None, None) => (Some(Destination::Stderr), true),
        };
        Outputs {
            summary: self.summary.as_deref().map(|p| Destination::of(Some(p))),
            decisions: self.decisions.as_deref().map(|p| Destination::of(Some(p))),
            results,
            rejects,
            default_rejects,
        }
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

/// Two outputs on standard output would interleave into one unusable stream.
/// `default_stdout`: no `-o` was given, so the results go to stdout by default.
fn one_standard_output(outputs: &Outputs, default_stdout: bool) -> Result<()> {
    let on_stdout: Vec<&str> = outputs
        .named()
        .into_iter()
        .filter(|(_, dest)| **dest == Destination::Stdout)
        .map(|(flag, _)| flag)
        .collect();
    if let [first, second, ..] = on_stdout.as_slice() {
        let first = if *first == "--output" && default_stdout {
            "the results (standard output without -o)"
        } else {
            first
        };
        return Err(Usage(format!(
            "{first} and {second} would both write to standard output; \
             at most one output may go there: name a file for the other"
        ))
        .into());
    }
    Ok(())
}

/// Refuses a command line whose files overlap: the last one renamed into place would
/// replace the others (or the input) without a word. Files are compared as the kernel
/// sees them: the same inode when they exist (whatever links or `..` lead there), the
/// same canonical path when they do not exist yet. Standard input, output and error are
/// files of the run too when they are used and are regular files (`< tx.csv`,
/// `> out.csv`, `>> s.json`): their descriptors are compared.
fn distinct_files(config: &RunConfig, outputs: &Outputs) -> Result<()> {
    let stdin = descriptor_identity(0);
    let is_stdin = |input: &Path| {
        input.as_os_str() == "-" || (stdin.is_some() && raw_identity(input) == stdin)
    };
    let input_is_stdin = config.inputs.iter().any(|i| is_stdin(i));
    // Several inputs are named by their place: `INPUT 2`.
    let labels: Vec<String> = match config.inputs.len() {
        1 => vec!["INPUT".to_string()],
        n => (1..=n).map(|i| format!("INPUT {i}")).collect(),
    };
    let stdin_labels: Vec<String> = labels
        .iter()
        .map(|l| format!("{l} (standard input)"))
        .collect();
    // Standard input as a file of the run: its inode when it is a regular file.
    let stdin_file = || {
        let regular = stdin.filter(|s| s.regular).map(|s| Identity::Inode {
            dev: s.dev,
            ino: s.ino,
        });
        regular.or(Some(Identity::Name(PathBuf::from("/dev/stdin"))))
    };
    let mut identities: Vec<(&str, &Path, Option<Identity>)> = Vec::new();
    for (i, input) in config.inputs.iter().enumerate() {
        if is_stdin(input) {
            // Standard input twice (`- -`) is one stream read twice: refused like any
            // two inputs that are the same file.
            if input.as_os_str() == "-" {
                identities.push((&stdin_labels[i], Path::new("standard input"), stdin_file()));
            } else {
                // A file that standard input also is (`run a.csv - < a.csv`): named as
                // given, so the message does not call `a.csv` standard input.
                identities.push((&labels[i], input, stdin_file()));
            }
        } else {
            identities.push((&labels[i], input, identity(input)));
        }
    }
    // A history file that is also the input, an output or another history file would be
    // read twice into the windows, or replaced by the run.
    for history in &config.history {
        if is_stdin(history) {
            identities.push((
                "--history (standard input)",
                Path::new("standard input"),
                stdin_file(),
            ));
        } else {
            identities.push(("--history", history, identity(history)));
        }
    }
    identities.push(("--rules", &config.rules, identity(&config.rules)));
    for (flag, dest) in outputs.named() {
        if let Some(path) = dest.path() {
            // Writing to standard input (`/dev/stdin`, `/dev/fd/0`) while reading the
            // input from it: into the input itself, file or pipe.
            if input_is_stdin && stdin.is_some() && raw_identity(path) == stdin {
                return Err(Usage(format!(
                    "INPUT (standard input) and {flag} name the same file: {}; \
                     every file of a run must be distinct",
                    show(path)
                ))
                .into());
            }
            identities.push((flag, path, identity(path)));
        }
    }
    let streams = [
        (Destination::Stdout, 1, "standard output", "standard output"),
        (Destination::Stderr, 2, "standard error", "standard error"),
    ];
    for (dest, fd, flag, shown) in streams {
        let used = outputs.named().iter().any(|(_, d)| **d == dest);
        if let Some(id) = descriptor_identity(fd).filter(|id| used && id.regular) {
            identities.push((
                flag,
                Path::new(shown),
                Some(Identity::Inode {
                    dev: id.dev,
                    ino: id.ino,
                }),
            ));
        }
    }
    if let Some((a, b, path)) = first_overlap(&identities) {
        return Err(Usage(format!(
            "{a} and {b} name the same file: {}; every file of a run must be distinct",
            show(path)
        ))
        .into());
    }
    Ok(())
}

/// No output of a run may replace a list file its rules read (`[lists.NAME] file`, or
/// those of either file of a diff): checked once the rules are parsed, before any input
/// is read (`Usage`, exit 2).
pub fn lists_are_not_outputs(
    rules_files: &[(&Path, &crate::rules::RuleSet)],
    outputs: &Outputs,
) -> Result<()> {
    let named = outputs.named();
    let paths = named
        .iter()
        .filter_map(|(flag, dest)| Some((*flag, dest.path()?)));
    lists_are_not(rules_files, paths, "every file of a run must be distinct")
}

/// A shard's check of its rules' lists against the files `txguard merge` will write from
/// its parts (`RunConfig::merged`): merge would replace such a list with results.
pub fn lists_are_not_merged(
    rules: (&Path, &crate::rules::RuleSet),
    merged: &[PathBuf],
) -> Result<()> {
    let what = [
        "-o OUT, which `txguard merge` writes,",
        "OUT.rejects.csv, which `txguard merge` writes,",
    ];
    let paths = what.into_iter().zip(merged).map(|(w, p)| (w, p.as_path()));
    lists_are_not(&[rules], paths, "name another -o OUT")
}

/// Refuses (exit 2) any list of `rules_files` that is one of `outputs` (flag, path).
fn lists_are_not<'a>(
    rules_files: &[(&Path, &crate::rules::RuleSet)],
    outputs: impl Iterator<Item = (&'a str, &'a Path)> + Clone,
    why: &str,
) -> Result<()> {
    for (rules_path, rules) in rules_files {
        for decl in &rules.derived.lists {
            let list = crate::lists::path_of(decl, rules_path);
            let Some(id) = raw_identity(&list) else {
                continue;
            };
            for (flag, path) in outputs.clone() {
                let same =
                    raw_identity(path).is_some_and(|out| (out.dev, out.ino) == (id.dev, id.ino));
                if same {
                    return Err(Usage(format!(
                        "[lists.{}] and {flag} name the same file: {}; {why}",
                        decl.name,
                        show(&list)
                    ))
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// Device and inode of whatever a path or descriptor is (a FIFO, a device, a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawIdentity {
    dev: u64,
    ino: u64,
    regular: bool,
}

fn raw_identity(path: &Path) -> Option<RawIdentity> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    identity_of(meta.dev(), meta.ino(), meta.mode())
}

/// What descriptor `fd` (0, 1 or 2) is open on: `None` when closed, or a character
/// device (a terminal, `/dev/null`: sharing one is no overlap).
fn descriptor_identity(fd: i32) -> Option<RawIdentity> {
    use std::os::fd::AsFd;
    let stat = match fd {
        0 => rustix::fs::fstat(std::io::stdin().as_fd()),
        1 => rustix::fs::fstat(std::io::stdout().as_fd()),
        _ => rustix::fs::fstat(std::io::stderr().as_fd()),
    }
    .ok()?;
    identity_of(stat.st_dev, stat.st_ino, stat.st_mode)
}

fn identity_of(dev: u64, ino: u64, mode: u32) -> Option<RawIdentity> {
    use rustix::fs::FileType;
    match FileType::from_raw_mode(mode) {
        FileType::CharacterDevice | FileType::BlockDevice => None,
        kind => Some(RawIdentity {
            dev,
            ino,
            regular: kind == FileType::RegularFile,
        }),
    }
}

/// The first two entries with the same identity (entries without one never overlap).
fn first_overlap<'a>(
    files: &[(&'a str, &'a Path, Option<Identity>)],
) -> Option<(&'a str, &'a str, &'a Path)> {
    files.iter().enumerate().find_map(|(i, (a, _, id))| {
        let id = id.as_ref()?;
        files[i + 1..]
            .iter()
            .find(|(_, _, other)| other.as_ref() == Some(id))
            .map(|(b, path, _)| (*a, *b, *path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_overlap_names_both_flags() {
        let a = Some(Identity::Inode { dev: 1, ino: 2 });
        let b = Some(Identity::Name(PathBuf::from("/x/new.csv")));
        let files = [
            ("INPUT", Path::new("tx.csv"), a.clone()),
            ("--rules", Path::new("r.toml"), None),
            ("--output", Path::new("new.csv"), b.clone()),
            ("--summary", Path::new("sub/../new.csv"), b),
            ("--rejects", Path::new("alias.csv"), a),
        ];
        assert_eq!(
            first_overlap(&files),
            Some(("INPUT", "--rejects", Path::new("alias.csv")))
        );
        assert_eq!(
            first_overlap(&files[1..4]),
            Some(("--output", "--summary", Path::new("sub/../new.csv")))
        );
        assert_eq!(first_overlap(&files[..3]), None);
    }
}
