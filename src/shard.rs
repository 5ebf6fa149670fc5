//! Shards: one run of many over byte ranges of the same input (`run --shard I/N`), as
//! Kubernetes Indexed Jobs, Slurm arrays or Spark tasks start them, and what each part
//! records so that `txguard merge` can prove the parts make up exactly one whole run.
//!
//! Shard I of N owns the records whose first byte lies in its range of the body (the
//! input after the header): `[body + len·I/N, body + len·(I+1)/N)`, each end moved to the
//! first record start at or after it (`framer::record_start_at_or_after`, exact: it
//! tracks the quote state from a known record start, so a quoted newline never starts a
//! record). Every record is owned by exactly one shard, and its line numbers are the file's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::exit::Usage;
use crate::output::paths::{show, with_suffix};

/// The most shards a run can be cut into: part names hold five digits.
pub const MAX_SHARDS: u32 = 99_999;

/// Which shard of how many: index `I` (0-based) of `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `TXGUARD_SHARD`: `I/N`, the whole spec.
pub const ENV_SHARD: &str = "TXGUARD_SHARD";
/// `TXGUARD_SHARD_COUNT`: N, when the index comes from the engine.
pub const ENV_COUNT: &str = "TXGUARD_SHARD_COUNT";
/// Set by Kubernetes in each pod of an Indexed Job.
pub const ENV_K8S_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Set by Slurm in each task of a job array.
pub const ENV_SLURM_INDEX: &str = "SLURM_ARRAY_TASK_ID";

impl ShardSpec {
    /// Parses `I/N` (0 ≤ I < N ≤ 99999); `source` names where the text came from.
    pub fn parse(text: &str, source: &str) -> Result<ShardSpec, Usage> {
        let bad = |why: &str| Usage(format!("{source}: {text:?} {why}"));
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| bad("is not I/N (e.g. 0/8: the first of 8 shards)"))?;
        let index = parse_number(i).ok_or_else(|| bad("has no valid shard index I in I/N"))?;
        let count = parse_number(n).ok_or_else(|| bad("has no valid shard count N in I/N"))?;
        ShardSpec::new(index, count).map_err(|why| bad(&why))
    }

    fn new(index: u32, count: u32) -> Result<ShardSpec, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("has N = {count}: N must be 1 to {MAX_SHARDS}"));
        }
        if index >= count {
            return Err(format!(
                "has I = {index}, N = {count}: I is 0-based and must be below N \
                 (Slurm: --array=0-{})",
                count - 1
            ));
        }
        Ok(ShardSpec { index, count })
    }

    /// `--shard auto`: `TXGUARD_SHARD` (`I/N`); else I from `JOB_COMPLETION_INDEX`
    /// (Kubernetes) or `SLURM_ARRAY_TASK_ID` (Slurm) and N from `TXGUARD_SHARD_COUNT`.
    /// N never comes from `SLURM_ARRAY_TASK_COUNT`: it shrinks when only some tasks of an
    /// array are rerun. `env` looks a variable up (the process environment, or a test's).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<ShardSpec, Usage> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let count = get(ENV_COUNT);
        let k8s = get(ENV_K8S_INDEX);
        let slurm = get(ENV_SLURM_INDEX);
        if let Some(text) = get(ENV_SHARD) {
            let spec = ShardSpec::parse(text.trim(), &format!("--shard auto: {ENV_SHARD}"))?;
            if let Some(n) = &count
                && parse_number(n) != Some(spec.count)
            {
                return Err(Usage(format!(
                    "--shard auto: {ENV_SHARD}={text} and {ENV_COUNT}={n} disagree on the \
                     shard count; set one of them"
                )));
            }
            return Ok(spec);
        }
        let index_var = match (&k8s, &slurm) {
            (Some(a), Some(b)) if parse_number(a) != parse_number(b) => {
                return Err(Usage(format!(
                    "--shard auto: {ENV_K8S_INDEX}={a} and {ENV_SLURM_INDEX}={b} disagree; \
                     set {ENV_SHARD}=I/N to say which shard this is"
                )));
            }
            (Some(a), _) => Some((ENV_K8S_INDEX, a)),
            (None, Some(b)) => Some((ENV_SLURM_INDEX, b)),
            (None, None) => None,
        };
        let Some((index_var, index_text)) = index_var else {
            return Err(Usage(format!(
                "--shard auto: no shard index in the environment: set {ENV_SHARD}=I/N, or run \
                 as a Kubernetes Indexed Job ({ENV_K8S_INDEX}) or a Slurm array \
                 ({ENV_SLURM_INDEX}) with {ENV_COUNT}=N"
            )));
        };
        let Some(count_text) = count else {
            return Err(Usage(format!(
                "--shard auto: {index_var}={index_text} gives the shard index, but \
                 {ENV_COUNT} is not set: set it to the number of shards N (the Job's \
                 completions, the array's size)"
            )));
        };
        let index = parse_number(index_text).ok_or_else(|| {
            Usage(format!(
                "--shard auto: {index_var}={index_text:?} is not a shard index"
            ))
        })?;
        let count = parse_number(&count_text).ok_or_else(|| {
            Usage(format!(
                "--shard auto: {ENV_COUNT}={count_text:?} is not a shard count"
            ))
        })?;
        ShardSpec::new(index, count).map_err(|why| {
            Usage(format!(
                "--shard auto: {index_var}={index} and {ENV_COUNT}={count}: {}",
                why.trim_start_matches("has ")
            ))
        })
    }

    /// `--shard I/N` or `--shard auto`, from the process environment.
    pub fn from_arg(arg: &str) -> Result<ShardSpec, Usage> {
        if arg == "auto" {
            ShardSpec::from_env(|name| std::env::var(name).ok())
        } else {
            ShardSpec::parse(arg, "--shard")
        }
    }

    /// `.part-IIIII-of-NNNNN`, the suffix of this shard's files.
    pub fn part_suffix(&self) -> String {
        format!(".part-{:05}-of-{:05}", self.index, self.count)
    }

    /// `OUT.part-IIIII-of-NNNNN`: this shard's results.
    pub fn part_path(&self, output: &Path) -> PathBuf {
        with_suffix(output, &self.part_suffix())
    }

    /// The byte range `[start, end)` of the body `[body, size)` this shard owns before
    /// its ends are moved to record starts. Ranges of 0..N tile the body exactly.
    pub fn byte_range(&self, body: u64, size: u64) -> (u64, u64) {
        let len = size.saturating_sub(body) as u128;
        let at = |i: u32| body + (len * i as u128 / self.count as u128) as u64;
        (at(self.index), at(self.index + 1))
    }
}

/// Under `--shard`, checks what a shard cannot do and points its outputs at its part's
/// files: results `OUT.part-IIIII-of-NNNNN`, its summary (always) beside them, and under
/// `--bad-rows skip` its rejects (the default name, derived from the part's). Without
/// `--shard`, the configuration as it is.
pub fn part_config(mut config: RunConfig) -> Result<RunConfig, Usage> {
    let Some(spec) = config.shard else {
        return Ok(config);
    };
    let refuse = |what: String| Err(Usage(format!("--shard {spec}: {what}")));
    let output = match &config.output {
        Some(out) if out.as_os_str() != "-" => out.clone(),
        _ => {
            return refuse(
                "needs -o OUT, a file: each shard writes OUT.part-IIIII-of-NNNNN and its \
                 summary, which `txguard merge OUT` joins"
                    .into(),
            );
        }
    };
    if !config.fail_on.is_empty() {
        return refuse(
            "--fail-on cannot be used with --shard: exit 3 would make Kubernetes retry a \
             finished index and break Slurm's afterok; give --fail-on to `txguard merge`"
                .into(),
        );
    }
    if config.summary.is_some() {
        return refuse(format!(
            "--summary cannot be used with --shard: each shard writes its summary to \
             {}, which merge reads; give --summary to `txguard merge`",
            show(&with_suffix(&spec.part_path(&output), SUMMARY_SUFFIX))
        ));
    }
    if config.rejects.is_some() {
        return refuse(format!(
            "--rejects cannot be used with --shard: each shard writes its rejects to \
             {}, which merge joins into OUT.rejects.csv",
            show(&with_suffix(&spec.part_path(&output), REJECTS_SUFFIX))
        ));
    }
    if config.decisions.is_some() {
        return refuse(
            "--decisions cannot be used with --shard yet: merge does not join decisions \
             files; run the decisions of the whole input in one run"
                .into(),
        );
    }
    if config.no_output_header {
        return refuse(
            "--no-output-header cannot be used with --shard: each part is a complete \
             results file, and merge writes the one header"
                .into(),
        );
    }
    if config.inputs.len() > 1 {
        return refuse(format!(
            "takes one input, not {}: each shard is a byte range of one file; run the \
             shards of each input to its own output, or concatenate the inputs first",
            config.inputs.len()
        ));
    }
    if config.input.as_os_str() == "-" {
        return refuse(
            "INPUT is standard input: a shard seeks to its byte range of the input, which \
             standard input cannot do; give a file path"
                .into(),
        );
    }
    // Checked before the input is opened: opening a FIFO blocks until someone writes it.
    if let Ok(meta) = std::fs::metadata(&config.input)
        && !meta.is_file()
    {
        return refuse(format!(
            "INPUT {} is not a regular file: a shard seeks to its byte range of the input, \
             which a pipe or a device cannot do; give a file path",
            show(&config.input)
        ));
    }
    // OUT itself is what `merge` writes (and OUT.rejects.csv in skip mode): neither may
    // be the input or the rules, which a run without --shard refuses as its output too.
    let mut merged = vec![output.clone()];
    if config.bad_rows == crate::config::BadRows::Skip {
        merged.push(with_suffix(&output, REJECTS_SUFFIX));
    }
    for out in &merged {
        let id = crate::output::paths::identity(out);
        for (what, file) in [("INPUT", &config.input), ("--rules", &config.rules)] {
            if id.is_some() && crate::output::paths::identity(file) == id {
                return refuse(format!(
                    "{what} {} would be replaced by `txguard merge`, which writes {}: \
                     name another -o OUT",
                    show(file),
                    show(out)
                ));
            }
        }
    }
    config.merged = merged;
    let part = spec.part_path(&output);
    config.summary = Some(with_suffix(&part, SUMMARY_SUFFIX));
    config.output = Some(part);
    Ok(config)
}

/// A part's summary: `OUT.part-IIIII-of-NNNNN.summary.json`.
pub const SUMMARY_SUFFIX: &str = ".summary.json";
/// The default rejects file's suffix: a run's `OUT.rejects.csv`, a part's
/// `OUT.part-IIIII-of-NNNNN.rejects.csv`, and what merge writes from them.
pub const REJECTS_SUFFIX: &str = ".rejects.csv";

/// Every option of a run that changes its results or their layout, as text: the parts of
/// one run must agree on each (`merge` names the one that differs). The executor and
/// `-j` are not among them: results do not depend on them.
pub fn options_of(config: &RunConfig) -> BTreeMap<String, String> {
    let mut options = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        options.insert(k.to_string(), v);
    };
    put("bad_rows", format!("{:?}", config.bad_rows).to_lowercase());
    put(
        "timeout",
        humantime::format_duration(config.timeout).to_string(),
    );
    put(
        "memory_limit",
        config
            .memory_limit
            .map_or("default".into(), |m| m.to_string()),
    );
    put("max_record_size", config.max_record_size.to_string());
    put(
        "columns",
        config
            .columns
            .as_ref()
            .map_or("(header row)".into(), |c| c.join(",")),
    );
    put("floor", config.floor.to_string());
    put("explain", config.explain.to_string());
    // Another id column gives other transaction ids; another delimiter, other fields.
    put("id_column", config.csv.id_column.clone());
    let delimiter = config.csv.delimiter_for(&config.input);
    put(
        "delimiter",
        std::ascii::escape_default(delimiter).to_string(),
    );
    options
}

/// What a shard's summary records, from its configuration and the range it found.
pub fn facts(config: &RunConfig, bounds: &ShardBounds) -> ShardFacts {
    let spec = config.shard.expect("facts of a shard run");
    ShardFacts {
        index: spec.index,
        count: spec.count,
        input_size: bounds.input_size,
        input_mtime: humantime::format_rfc3339_nanos(bounds.input_mtime).to_string(),
        body_offset: bounds.body_offset,
        first_record_offset: bounds.first.offset,
        first_record_line: bounds.first.line,
        next_shard_offset: bounds.next,
        seed: config.seed,
        options: options_of(config),
        results: None,
        rejects: None,
    }
}

/// The size and SHA-256 of a file a shard wrote, recorded in its summary so that `merge`
/// joins exactly those bytes: a part edited, truncated or replaced after its shard
/// finished is refused, not merged under counts that no longer describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// A running SHA-256 and byte count of what is read or written.
#[derive(Default)]
pub struct Digester {
    hasher: sha2::Sha256,
    bytes: u64,
}

impl Digester {
    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    pub fn finish(self) -> PartDigest {
        use sha2::Digest;
        PartDigest {
            bytes: self.bytes,
            sha256: self
                .hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

/// The digest of the file at `path` (a part's temporary file, once written and synced).
pub fn digest_file(path: &Path) -> std::io::Result<PartDigest> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut digester = Digester::default();
    let mut buf = vec![0; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(digester.finish()),
            Ok(n) => digester.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn parse_number(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `SUFFIX` of a part file name `OUT.part-IIIII-of-NNNNN` + `SUFFIX`, if `name` is one of
/// `output_name`'s parts: (index, count, suffix).
pub fn parse_part_name<'a>(name: &'a str, output_name: &str) -> Option<(u32, u32, &'a str)> {
    let rest = name.strip_prefix(output_name)?.strip_prefix(".part-")?;
    let (index, rest) = (rest.get(..5)?, rest.get(5..)?);
    let rest = rest.strip_prefix("-of-")?;
    let (count, suffix) = (rest.get(..5)?, rest.get(5..)?);
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(count) {
        return None;
    }
    Some((index.parse().ok()?, count.parse().ok()?, suffix))
}

/// What a shard records in its summary (`shard` in the JSON) for `merge` to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFacts {
    /// I, 0-based.
    pub index: u32,
    /// N.
    pub count: u32,
    /// The input's size in bytes and modification time (RFC 3339, nanoseconds) when the
    /// shard opened it: every part must have read the same file.
    pub input_size: u64,
    pub input_mtime: String,
    /// Offset of the body: the first record after the header (the input size when none).
    pub body_offset: u64,
    /// Offset and line where this shard's first record starts (or where the next
    /// shard's does, when it owns none).
    pub first_record_offset: u64,
    pub first_record_line: u64,
    /// Offset where the next shard's first record starts (the input size for the last).
    pub next_shard_offset: u64,
    pub seed: u64,
    /// Every option that changes results; all parts must agree on each.
    pub options: BTreeMap<String, String>,
    /// Size and SHA-256 of the part's results file as written (header included), and of
    /// its rejects under `--bad-rows skip`: `merge` joins only these exact bytes. Absent
    /// in the summary of a shard that failed before its outputs were finished.
    #[serde(default)]
    pub results: Option<PartDigest>,
    #[serde(default)]
    pub rejects: Option<PartDigest>,
}

impl ShardFacts {
    /// Bytes of the input this shard accounts for (the header counts in shard 0), so that
    /// the parts' `input_bytes` sum to the input's size.
    pub fn bytes_owned(&self) -> u64 {
        let from = if self.index == 0 {
            0
        } else {
            self.first_record_offset
        };
        self.next_shard_offset.saturating_sub(from)
    }
}

/// Where a shard's range lies, found when its input is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardBounds {
    pub input_size: u64,
    pub input_mtime: std::time::SystemTime,
    pub body_offset: u64,
    pub first: crate::framer::Position,
    pub next: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!(
            ShardSpec::parse("3/16", "--shard").unwrap(),
            ShardSpec {
                index: 3,
                count: 16
            }
        );
        for (text, why) in [
            ("16/16", "must be below N"),
            ("1/0", "N must be 1 to 99999"),
            ("0/100000", "N must be 1 to 99999"),
            ("x/2", "no valid shard index"),
            ("-1/2", "no valid shard index"),
            ("3", "is not I/N"),
        ] {
            let err = ShardSpec::parse(text, "--shard").unwrap_err().0;
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn auto_reads_kubernetes_slurm_or_txguard_variables() {
        let spec = |i, n| ShardSpec { index: i, count: n };
        let ok = |vars: &[(&str, &str)]| ShardSpec::from_env(env(vars)).unwrap();
        let err = |vars: &[(&str, &str)]| ShardSpec::from_env(env(vars)).unwrap_err().0;
        assert_eq!(ok(&[("TXGUARD_SHARD", "2/5")]), spec(2, 5));
        assert_eq!(
            ok(&[("JOB_COMPLETION_INDEX", "4"), ("TXGUARD_SHARD_COUNT", "7")]),
            spec(4, 7)
        );
        assert_eq!(
            ok(&[
                ("SLURM_ARRAY_TASK_ID", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "1"),
                ("TXGUARD_SHARD_COUNT", "3")
            ]),
            spec(0, 3)
        );
        assert!(err(&[]).contains("TXGUARD_SHARD=I/N"));
        assert!(err(&[("JOB_COMPLETION_INDEX", "1")]).contains("TXGUARD_SHARD_COUNT is not set"));
        assert!(
            err(&[("SLURM_ARRAY_TASK_ID", "3"), ("TXGUARD_SHARD_COUNT", "3")])
                .contains("SLURM_ARRAY_TASK_ID=3 and TXGUARD_SHARD_COUNT=3")
        );
        assert!(
            err(&[
                ("JOB_COMPLETION_INDEX", "1"),
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("TXGUARD_SHARD_COUNT", "3")
            ])
            .contains("disagree")
        );
        assert!(
            err(&[("TXGUARD_SHARD", "1/4"), ("TXGUARD_SHARD_COUNT", "5")]).contains("disagree")
        );
        assert!(
            err(&[("SLURM_ARRAY_TASK_ID", "x"), ("TXGUARD_SHARD_COUNT", "3")])
                .contains("not a shard index")
        );
    }

    #[test]
    fn byte_ranges_tile_the_body() {
        for n in 1..20u32 {
            let mut at = 10;
            for i in 0..n {
                let (a, b) = ShardSpec { index: i, count: n }.byte_range(10, 47);
                assert_eq!(a, at);
                at = b;
            }
            assert_eq!(at, 47);
        }
    }

    #[test]
    fn part_names_round_trip() {
        let spec = ShardSpec {
            index: 7,
            count: 16,
        };
        let path = spec.part_path(Path::new("dir/out.csv"));
        assert_eq!(path, Path::new("dir/out.csv.part-00007-of-00016"));
        assert_eq!(
            parse_part_name("out.csv.part-00007-of-00016.summary.json", "out.csv"),
            Some((7, 16, ".summary.json"))
        );
        assert_eq!(parse_part_name("out.csv.part-7-of-16", "out.csv"), None);
        assert_eq!(
            parse_part_name("other.part-00007-of-00016", "out.csv"),
            None
        );
    }
}
