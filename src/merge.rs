//! The parts of a sharded run (`run --shard I/N`), found and checked: `txguard merge`
//! joins them only when they make up exactly one whole run of one input — parts 0…N−1
//! all present and successful, one N, one input (size and modification time), one rules
//! hash, seed and set of options, and byte ranges that tile the input with no gap and no
//! overlap. Anything else is a refusal naming the part and what is wrong with it.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::output::paths::show;
use crate::shard::{PartDigest, REJECTS_SUFFIX, SUMMARY_SUFFIX, ShardFacts, parse_part_name};

/// The header of every results file, as `run` writes it.
pub const RESULTS_HEADER: &[u8] = b"transaction_id,rule_id,result,detail\n";
/// The header of every rejects file.
pub const REJECTS_HEADER: &[u8] = b"line,reason,raw\n";

/// One decision's count in a part's summary.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DecisionCounts {
    pub decision: String,
    pub transactions: u64,
}

/// What `merge` reads of a part's summary.
#[derive(Debug, Clone, Deserialize)]
pub struct PartSummary {
    pub input: String,
    pub input_bytes: u64,
    pub rules_file: String,
    pub rules_sha256: String,
    pub executor: String,
    pub jobs: usize,
    pub transactions: u64,
    pub bad_rows: u64,
    pub evaluations: u64,
    pub rules: Vec<crate::summary::RuleSummary>,
    /// Transactions per decision, when the rules file has a `[decision]` table.
    #[serde(default)]
    pub decisions: Option<Vec<DecisionCounts>>,
    pub wall_seconds: f64,
    pub exit_code: i32,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub shard: Option<ShardFacts>,
}

/// A checked part: its files and its summary.
#[derive(Debug)]
pub struct Part {
    pub index: u32,
    pub results: PathBuf,
    pub summary_file: PathBuf,
    /// Under `--bad-rows skip`.
    pub rejects: Option<PathBuf>,
    pub summary: PartSummary,
}

impl Part {
    /// The shard facts (checked present by `find_parts`).
    pub fn facts(&self) -> &ShardFacts {
        self.summary.shard.as_ref().expect("checked by find_parts")
    }

    /// The size and SHA-256 its shard recorded for `path`, one of its files (checked
    /// present by `find_parts`).
    pub fn digest_of(&self, path: &Path) -> Option<&PartDigest> {
        let facts = self.facts();
        if path == self.results {
            facts.results.as_ref()
        } else if Some(path) == self.rejects.as_deref() {
            facts.rejects.as_ref()
        } else {
            None
        }
    }

    /// Every file of this part.
    pub fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.results.as_path(), self.summary_file.as_path()];
        files.extend(self.rejects.as_deref());
        files
    }
}

/// Finds the parts of `output` beside it and checks that they make up one whole run.
pub fn find_parts(output: &Path) -> Result<Vec<Part>> {
    let shown = show(output);
    let Some(name) = output.file_name().and_then(|n| n.to_str()) else {
        bail!("{shown}: not a file name merge can find parts of");
    };
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = fs::read_dir(&dir)
        .map_err(|e| anyhow::anyhow!("cannot list {} to find the parts: {e}", show(&dir)))?;
    // (count, index, suffix) of every part file beside the output.
    let mut found: Vec<(u32, u32, String)> = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if let Some((index, count, suffix)) = parse_part_name(file_name, name)
            && ["", SUMMARY_SUFFIX, REJECTS_SUFFIX].contains(&suffix)
        {
            found.push((count, index, suffix.to_string()));
        }
    }
    let mut counts: Vec<u32> = found.iter().map(|(n, _, _)| *n).collect();
    counts.sort_unstable();
    counts.dedup();
    let count = match counts.as_slice() {
        [] => bail!(
            "no parts of {shown} found: expected {shown}.part-00000-of-NNNNN and its \
             summary, written by `txguard run ... -o {shown} --shard I/N`"
        ),
        [n] => *n,
        several => {
            let listed: Vec<String> = several
                .iter()
                .map(|n| format!("N = {n} ({shown}.part-*-of-{n:05})"))
                .collect();
            bail!(
                "parts of runs with different shard counts sit beside {shown}: {}; remove \
                 the parts of the run that is not wanted",
                listed.join(", ")
            )
        }
    };
    let has = |index: u32, suffix: &str| {
        found
            .iter()
            .any(|(_, i, s)| *i == index && s.as_str() == suffix)
    };
    let part_path = |index: u32, suffix: &str| {
        let spec = crate::shard::ShardSpec { index, count };
        crate::output::paths::with_suffix(&spec.part_path(output), suffix)
    };
    let mut parts = Vec::with_capacity(count as usize);
    for index in 0..count {
        let results = part_path(index, "");
        let summary_file = part_path(index, SUMMARY_SUFFIX);
        let label = format!("part {index} of {count}");
        if !has(index, SUMMARY_SUFFIX) {
            bail!(
                "{label} is missing: no {} (run shard {index}/{count} again)",
                show(&summary_file)
            );
        }
        let summary = read_summary(&summary_file, &label)?;
        if summary.exit_code != 0 {
            bail!(
                "{label} failed (exit {}): {}; run shard {index}/{count} again",
                summary.exit_code,
                summary.error.as_deref().unwrap_or("see its summary")
            );
        }
        let Some(facts) = &summary.shard else {
            bail!(
                "{label}: {} has no `shard` facts: it was not written by `run --shard`",
                show(&summary_file)
            );
        };
        if (facts.index, facts.count) != (index, count) {
            bail!(
                "{label}: {} says it is shard {}/{}",
                show(&summary_file),
                facts.index,
                facts.count
            );
        }
        if !has(index, "") {
            bail!(
                "{label}: its results {} are missing (run shard {index}/{count} again)",
                show(&results)
            );
        }
        let rejects = if facts.options.get("bad_rows").map(String::as_str) == Some("skip") {
            let rejects = part_path(index, REJECTS_SUFFIX);
            if !has(index, REJECTS_SUFFIX) {
                bail!(
                    "{label}: its rejects {} are missing (run shard {index}/{count} again)",
                    show(&rejects)
                );
            }
            Some(rejects)
        } else {
            None
        };
        parts.push(Part {
            index,
            results,
            summary_file,
            rejects,
            summary,
        });
    }
    check_one_run(&parts)?;
    for part in &parts {
        check_file(
            &part.results,
            part.facts().results.as_ref(),
            "results",
            part,
        )?;
        starts_with(&part.results, RESULTS_HEADER, part)?;
        if let Some(rejects) = &part.rejects {
            check_file(rejects, part.facts().rejects.as_ref(), "rejects", part)?;
            starts_with(rejects, REJECTS_HEADER, part)?;
        }
    }
    Ok(parts)
}

/// A part's file is a regular file (a directory or a FIFO is no part; opening a FIFO
/// would wait for a writer forever) of the size its summary recorded. Its SHA-256 is
/// checked as it is copied (`cmd::merge`).
fn check_file(path: &Path, digest: Option<&PartDigest>, what: &str, part: &Part) -> Result<()> {
    let label = format!("part {} of {}", part.index, part.facts().count);
    let Some(digest) = digest else {
        bail!(
            "{label}: {} records no size and SHA-256 of its {what}: not written by this \
             version of `run --shard`; run shard {}/{} again",
            show(&part.summary_file),
            part.index,
            part.facts().count
        );
    };
    let meta = fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("{label}: cannot read {}: {e}", show(path)))?;
    if !meta.is_file() {
        bail!(
            "{label}: {} is not a regular file: not the {what} its shard wrote",
            show(path)
        );
    }
    if meta.len() != digest.bytes {
        bail!(
            "{label}: {} has {} bytes, but its shard wrote {}: the part was edited, \
             truncated or replaced since; run shard {}/{} again",
            show(path),
            meta.len(),
            digest.bytes,
            part.index,
            part.facts().count
        );
    }
    Ok(())
}

/// A part summary is a few kilobytes; a larger file is no summary txguard wrote.
const MAX_SUMMARY_BYTES: u64 = 16 << 20;

fn read_summary(path: &Path, label: &str) -> Result<PartSummary> {
    let cannot = |e: std::io::Error| anyhow::anyhow!("{label}: cannot read {}: {e}", show(path));
    // A FIFO would block the open, a device (a link to /dev/zero) never end.
    if !fs::metadata(path).map_err(cannot)?.is_file() {
        bail!(
            "{label}: {} is not a regular file: not the summary its shard wrote",
            show(path)
        );
    }
    let text = crate::size::read_capped(path, MAX_SUMMARY_BYTES, "not a summary txguard wrote")
        .map_err(cannot)?;
    serde_json::from_slice(&text)
        .map_err(|e| anyhow::anyhow!("{label}: {} is not a txguard summary: {e}", show(path)))
}

/// Every part agrees with part 0 on what makes a run, and the byte ranges tile the input.
fn check_one_run(parts: &[Part]) -> Result<()> {
    let first = &parts[0];
    let f0 = first.facts();
    for part in &parts[1..] {
        let f = part.facts();
        let differ = |what: &str, a: &str, b: &str| -> Result<()> {
            if a != b {
                bail!(
                    "part {} of {} differs from part 0 in its {what}: {b} (part 0: {a}); \
                     every part must be a shard of one run",
                    part.index,
                    f.count
                );
            }
            Ok(())
        };
        differ(
            "input size",
            &f0.input_size.to_string(),
            &f.input_size.to_string(),
        )?;
        differ("input modification time", &f0.input_mtime, &f.input_mtime)?;
        differ(
            "rules (sha256)",
            &first.summary.rules_sha256,
            &part.summary.rules_sha256,
        )?;
        differ("seed", &f0.seed.to_string(), &f.seed.to_string())?;
        let keys: std::collections::BTreeSet<&String> =
            f0.options.keys().chain(f.options.keys()).collect();
        for key in keys {
            let get = |o: &std::collections::BTreeMap<String, String>| {
                o.get(key).cloned().unwrap_or_else(|| "(absent)".into())
            };
            differ(
                &format!("option {key}"),
                &get(&f0.options),
                &get(&f.options),
            )?;
        }
        let names = |p: &Part| -> String {
            let ids: Vec<String> = p.summary.rules.iter().map(|r| r.id.to_string()).collect();
            ids.join(",")
        };
        differ("rule ids", &names(first), &names(part))?;
        differ(
            "body offset (where the first record after the header starts)",
            &f0.body_offset.to_string(),
            &f.body_offset.to_string(),
        )?;
    }
    // The ranges: part 0 starts at the body, each next where the one before said, the last
    // ends at the end of the input.
    let count = f0.count;
    if f0.first_record_offset != f0.body_offset {
        bail!(
            "part 0 of {count} starts at byte {}, not where the input's first record does \
             (byte {}): its summary's offsets were edited, or it is not from this run",
            f0.first_record_offset,
            f0.body_offset
        );
    }
    for pair in parts.windows(2) {
        let (a, b) = (pair[0].facts(), pair[1].facts());
        if a.next_shard_offset != b.first_record_offset {
            bail!(
                "part {} of {count} starts at byte {}, but part {} says the next shard starts \
                 at byte {}: the parts do not tile the input (offsets edited, or parts of \
                 different runs)",
                b.index,
                b.first_record_offset,
                a.index,
                a.next_shard_offset
            );
        }
    }
    for part in parts {
        let f = part.facts();
        if f.first_record_offset > f.next_shard_offset {
            bail!(
                "part {} of {count} starts at byte {} after where the next shard starts \
                 (byte {}): its offsets were edited",
                f.index,
                f.first_record_offset,
                f.next_shard_offset
            );
        }
    }
    let last = parts[parts.len() - 1].facts();
    if last.next_shard_offset != last.input_size {
        bail!(
            "part {} of {count} ends at byte {}, not at the end of the input (byte {}): \
             its offsets were edited",
            last.index,
            last.next_shard_offset,
            last.input_size
        );
    }
    Ok(())
}

/// A part's file must begin with the header its kind of file has.
fn starts_with(path: &Path, header: &[u8], part: &Part) -> Result<()> {
    let mut head = vec![0; header.len()];
    let read = fs::File::open(path).and_then(|mut f| {
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    match read {
        Ok(n) if n == header.len() && head == header => Ok(()),
        Ok(_) => bail!(
            "part {}: {} does not start with the header {:?}: not a file txguard wrote",
            part.index,
            show(path),
            String::from_utf8_lossy(header).trim_end()
        ),
        Err(e) => bail!("part {}: cannot read {}: {e}", part.index, show(path)),
    }
}
