//! `txguard merge OUT`: the parts a sharded run left beside OUT (`run --shard I/N`),
//! checked to make up exactly one whole run (`merge::find_parts`), joined into OUT (one
//! header, the bodies in shard order) and `OUT.rejects.csv`, with the summaries summed
//! and `--fail-on` applied to the totals. Byte-identical to a single run's output. A
//! refusal writes nothing; the outputs are atomic and locked like `run -o`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::cli::MergeArgs;
use crate::config::FailOn;
use crate::exit::{self, Usage};
use crate::merge::{Part, REJECTS_HEADER, RESULTS_HEADER, find_parts};
use crate::model::Tally;
use crate::output::paths::{Identity, LOCK_SUFFIX, identity, show, with_suffix};
use crate::output::{Destination, OutputLock, Sink, commit_all};
use crate::shard::Digester;
use crate::signals::StopFlag;
use crate::summary::{RuleSummary, Summary};

pub fn run(args: &MergeArgs) -> Result<i32> {
    let started = SystemTime::now();
    // SIGINT, SIGTERM, SIGHUP: the merge stops between two reads and its temporary
    // outputs are removed (exit 130, 143, 129); OUT and the parts are left as they were.
    let stop = StopFlag::install()?;
    let output = args.output.clone();
    if output.as_os_str() == "-" {
        return Err(Usage(
            "merge OUT: OUT names the output the shards were run with (`-o OUT`), a file".into(),
        )
        .into());
    }
    let results = Destination::of(Some(&output));
    results.check("OUT", true)?;
    let rejects_path = with_suffix(&output, crate::shard::REJECTS_SUFFIX);
    let summary_dest = args.summary.as_deref().map(|p| Destination::of(Some(p)));
    if let Some(dest) = &summary_dest {
        dest.check("--summary", false)?;
        // By identity, not spelling: `./OUT` or an absolute path is OUT too, and the
        // summary renamed last would replace the merged results.
        let id = dest.path().and_then(identity);
        if id.is_some() && (id == identity(&output) || id == identity(&rejects_path)) {
            return Err(Usage(format!(
                "--summary {} would replace the merged output",
                show(dest.path().unwrap_or(&output))
            ))
            .into());
        }
    }
    // Like `run -o OUT`: one writer of OUT at a time (a second merge, or a run writing
    // OUT itself, is locked out).
    let _lock = OutputLock::acquire(&output, &[output.as_path(), rejects_path.as_path()])?;
    let found = find_parts(&output).context("merge refused; nothing was written")?;
    // Every part's lock too, then the parts checked again under them: no shard (a second
    // pod of an index, a late retry) can replace a part while it is read or removed.
    let mut part_locks = Vec::with_capacity(found.len());
    for part in &found {
        let mut covered = vec![part.results.as_path()];
        covered.extend(part.rejects.as_deref());
        part_locks.push(
            OutputLock::acquire(&part.results, &covered)
                .with_context(|| format!("part {} is being written", part.index))?,
        );
    }
    let parts = find_parts(&output).context("merge refused; nothing was written")?;
    if let Some(summary) = summary_dest.as_ref().and_then(Destination::path) {
        let id = identity(summary);
        let clash = parts
            .iter()
            .flat_map(Part::files)
            .find(|file| id.is_some() && identity(file) == id);
        if let Some(file) = clash {
            return Err(Usage(format!(
                "--summary {} is {}, a part of this run",
                show(summary),
                show(file)
            ))
            .into());
        }
        if let Some(file) = read_by_shards(&parts, id.as_ref()) {
            return Err(Usage(format!(
                "--summary {} is {}, a file the shards read",
                show(summary),
                show(file)
            ))
            .into());
        }
    }
    // Nor may OUT (or its rejects) be one of them: `run -o tx.csv --shard` writes only
    // parts beside tx.csv, and the merge would replace the input with the results.
    let skip_mode = parts[0].rejects.is_some();
    let merged = [
        Some(output.as_path()),
        skip_mode.then_some(rejects_path.as_path()),
    ];
    for out in merged.into_iter().flatten() {
        if let Some(file) = read_by_shards(&parts, identity(out).as_ref()) {
            return Err(Usage(format!(
                "OUT {} is {}, a file the shards read: merge would replace it",
                show(out),
                show(file)
            ))
            .into());
        }
    }

    let mut finished = Vec::new();
    let mut sink = Sink::create(&results)?;
    join(
        &mut sink,
        &parts,
        RESULTS_HEADER,
        |p| Some(&p.results),
        &stop,
    )?;
    finished.push(sink.finish()?);
    if skip_mode {
        let mut sink = Sink::create(&Destination::of(Some(&rejects_path)))?;
        join(
            &mut sink,
            &parts,
            REJECTS_HEADER,
            |p| p.rejects.as_ref(),
            &stop,
        )?;
        finished.push(sink.finish()?);
    }
    let summary = merged_summary(&parts, started);
    let code = fail_on_code(&args.fail_on, &summary)?;
    let mut summary = summary;
    summary.exit_code = code;
    // The rejects first, then the results, the summary last (see `commit_all`).
    finished.reverse();
    if let Some(dest) = &summary_dest {
        finished.push(super::run::write_summary_json(dest, &summary)?);
    }
    commit_all(finished, Some(&stop))?;
    if !args.quiet {
        exit::say(&format!(
            "txguard: merged {} parts into {}",
            parts.len(),
            show(&output)
        ));
        exit::say(&summary.render());
    }
    if args.remove_parts {
        remove_parts(&parts, args.quiet);
    }
    drop(part_locks);
    if code == exit::FAIL_ON {
        exit::say(&format!(
            "txguard: exit 3: {}",
            fail_on_hit(&args.fail_on, &summary)
        ));
    }
    Ok(code)
}

/// The input or rules file the shards read whose identity is `id`: as they named them,
/// where that names a regular file from here (the input only with the size and
/// modification time they recorded: from another directory, the name may be another
/// file's).
fn read_by_shards<'a>(parts: &'a [Part], id: Option<&Identity>) -> Option<&'a Path> {
    let first = &parts[0].summary;
    let facts = parts[0].facts();
    let is_input = |file: &Path| {
        std::fs::metadata(file).is_ok_and(|meta| {
            let mtime = meta.modified().map(humantime::format_rfc3339_nanos);
            meta.len() == facts.input_size
                && mtime.is_ok_and(|t| t.to_string() == facts.input_mtime)
        })
    };
    let input = Path::new(&first.input);
    let read = [
        is_input(input).then_some(input),
        Some(Path::new(&first.rules_file)),
    ];
    read.into_iter()
        .flatten()
        .find(|file| file.is_file() && id.is_some() && identity(file).as_ref() == id)
}

/// Writes `header`, then each part's file after its own header, in shard order. Each
/// part's bytes, header included, must hash to what its shard recorded: a part edited
/// since is refused here, before anything is committed (the sink is dropped unfinished).
fn join(
    sink: &mut Sink,
    parts: &[Part],
    header: &[u8],
    file_of: impl Fn(&Part) -> Option<&std::path::PathBuf>,
    stop: &StopFlag,
) -> Result<()> {
    let label = sink.label().to_string();
    sink.write_all(header)
        .with_context(|| format!("cannot write {label}"))?;
    for part in parts {
        let Some(path) = file_of(part) else { continue };
        let mut file = File::open(path).with_context(|| format!("cannot read {}", show(path)))?;
        let mut digester = Digester::default();
        let mut head = vec![0; header.len()];
        file.read_exact(&mut head)
            .with_context(|| format!("cannot read {}", show(path)))?;
        digester.update(&head);
        copy(&mut file, sink, &mut digester, stop)
            .with_context(|| format!("cannot copy {} into {label}", show(path)))?;
        if let Some(signal) = stop.signal() {
            return Err(exit::Interrupted(signal).into());
        }
        let found = digester.finish();
        let recorded = part.digest_of(path);
        if recorded != Some(&found) {
            anyhow::bail!(
                "merge refused; nothing was written: part {} of {}: {} is not the file its \
                 shard wrote (its SHA-256 differs from the one in {}): the part was edited \
                 or replaced since; run shard {}/{} again",
                part.index,
                parts.len(),
                show(path),
                show(&part.summary_file),
                part.index,
                parts.len()
            );
        }
    }
    Ok(())
}

fn copy(
    from: &mut File,
    to: &mut Sink,
    digester: &mut Digester,
    stop: &StopFlag,
) -> io::Result<()> {
    let mut buf = vec![0; 1 << 20];
    loop {
        // A signal ends the merge between two reads; the caller reports it.
        if stop.signal().is_some() {
            return Ok(());
        }
        match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                digester.update(&buf[..n]);
                to.write_all(&buf[..n])?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The summaries summed: counts, bytes and rows of the whole run. `wall_seconds` is the
/// longest part's (the parts ran side by side); the executor and jobs are part 0's.
fn merged_summary(parts: &[Part], started: SystemTime) -> Summary {
    let first = &parts[0].summary;
    let mut rules: Vec<RuleSummary> = first
        .rules
        .iter()
        .map(|r| RuleSummary {
            id: r.id,
            name: r.name.clone(),
            true_: 0,
            false_: 0,
            error: 0,
            timeout: 0,
        })
        .collect();
    let mut tally = Tally {
        counts: vec![[0; 4]; rules.len()],
        ..Tally::default()
    };
    let mut wall: f64 = 0.0;
    for part in parts {
        let s = &part.summary;
        tally.rows += s.transactions;
        tally.bad_rows += s.bad_rows;
        tally.bytes += s.input_bytes;
        wall = wall.max(s.wall_seconds);
        for ((total, r), counts) in rules.iter_mut().zip(&s.rules).zip(&mut tally.counts) {
            total.true_ += r.true_;
            total.false_ += r.false_;
            total.error += r.error;
            total.timeout += r.timeout;
            *counts = [total.true_, total.false_, total.error, total.timeout];
        }
    }
    let evaluations = tally.counts.iter().flatten().sum();
    Summary {
        txguard_version: env!("CARGO_PKG_VERSION"),
        started_at: humantime::format_rfc3339_millis(started).to_string(),
        finished_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        input: first.input.clone(),
        input_bytes: tally.bytes,
        inputs: vec![crate::inputs::InputSummary {
            path: first.input.clone(),
            bytes: tally.bytes,
            transactions: tally.rows,
            bad_rows: tally.bad_rows,
        }],
        rules_file: first.rules_file.clone(),
        rules_sha256: first.rules_sha256.clone(),
        executor: first.executor.clone(),
        jobs: first.jobs,
        transactions: tally.rows,
        bad_rows: tally.bad_rows,
        evaluations,
        rules,
        decisions: decisions(parts),
        workers: None,
        windows: None,
        wall_seconds: wall,
        transactions_per_second: if wall > 0.0 {
            tally.rows as f64 / wall
        } else {
            0.0
        },
        exit_code: 0,
        error: None,
        shard: None,
    }
}

/// The parts' decision counts summed (decisions in part 0's order).
fn decisions(parts: &[Part]) -> Option<Vec<crate::summary::DecisionCount>> {
    let first = parts[0].summary.decisions.as_ref()?;
    Some(
        first
            .iter()
            .map(|d| crate::summary::DecisionCount {
                decision: d.decision.clone(),
                transactions: parts
                    .iter()
                    .filter_map(|p| p.summary.decisions.as_ref())
                    .flatten()
                    .filter(|e| e.decision == d.decision)
                    .map(|e| e.transactions)
                    .sum(),
            })
            .collect(),
    )
}

/// How many of what each `--fail-on` word names occurred in the whole run.
fn occurrences(fail_on: &[FailOn], summary: &Summary) -> Result<Vec<(String, u64)>> {
    let mut found = Vec::new();
    for f in fail_on {
        let total = |pick: fn(&RuleSummary) -> u64| summary.rules.iter().map(pick).sum::<u64>();
        found.push(match f {
            FailOn::Error => ("error".to_string(), total(|r| r.error)),
            FailOn::Timeout => ("timeout".to_string(), total(|r| r.timeout)),
            FailOn::False => ("false".to_string(), total(|r| r.false_)),
            FailOn::Decision(name) => {
                let count = summary
                    .decisions
                    .iter()
                    .flatten()
                    .find(|d| &d.decision == name)
                    .map(|d| d.transactions);
                let Some(count) = count else {
                    return Err(Usage(format!(
                        "--fail-on {name}: neither a result (error, timeout, false) nor a \
                         decision of the merged run"
                    ))
                    .into());
                };
                (name.clone(), count)
            }
        });
    }
    Ok(found)
}

/// 3 when something `--fail-on` names occurred in the whole run, else 0.
fn fail_on_code(fail_on: &[FailOn], summary: &Summary) -> Result<i32> {
    let hit = occurrences(fail_on, summary)?.iter().any(|(_, n)| *n > 0);
    Ok(if hit { exit::FAIL_ON } else { exit::SUCCESS })
}

/// What `--fail-on` found, as `run` says it.
fn fail_on_hit(fail_on: &[FailOn], summary: &Summary) -> String {
    let found = occurrences(fail_on, summary).unwrap_or_default();
    let hits: Vec<String> = found
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {name}"))
        .collect();
    let named: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    format!(
        "a result named by --fail-on occurred: {} (--fail-on {})",
        hits.join(", "),
        named.join(",")
    )
}

/// `--remove-parts`, once the merged output is committed: a part that cannot be removed
/// is said, and changes nothing (the merged output stands).
fn remove_parts(parts: &[Part], quiet: bool) {
    for part in parts {
        // Their lock files too: merge holds those locks, and a shard that tries to take
        // one now fails at once (exit 75) rather than waiting on a removed file.
        let locks = [
            with_suffix(&part.results, LOCK_SUFFIX),
            with_suffix(
                &with_suffix(&part.results, crate::shard::REJECTS_SUFFIX),
                LOCK_SUFFIX,
            ),
        ];
        for path in part
            .files()
            .into_iter()
            .chain(locks.iter().map(|p| p.as_path()))
        {
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != io::ErrorKind::NotFound
                && !quiet
            {
                exit::say(&format!(
                    "txguard: warning: cannot remove {}: {e}",
                    show(path)
                ));
            }
        }
    }
}
