//! `txguard merge` joins parts only when they make up one whole run: a missing part,
//! mixed N, different rules or seed, edited offsets or a failed part is a refusal naming
//! the part and what is wrong, and nothing is written. And `--fail-on`, `--remove-parts`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::workdir::{Entry, Workdir, rule, send, wait_until_blocked};

const RULES: &str = "[columns]\nid = \"int\"\namount = \"float\"\n\n";

fn rules(body: &str) -> String {
    format!("{RULES}{body}")
}

/// 30 rows; the last third holds an error for rule 2 (amount 0).
fn setup(name: &str) -> Workdir {
    let wd = Workdir::new(name);
    let mut csv = String::from("id,amount\n");
    for i in 1..=30 {
        csv.push_str(&format!("{i},{}\n", if i == 25 { 0 } else { i }));
    }
    wd.create("tx.csv", csv);
    wd.rules(rules(
        &[
            rule(1, "amount > 10.0"),
            rule(2, "if amount == 0.0 { throw \"zero amount\" } coin_flip()"),
        ]
        .concat(),
    ));
    wd
}

/// Runs shard `spec` into `out.csv`; `extra` may name other `--rules`.
fn shard(wd: &Workdir, spec: &str, extra: &[&str]) {
    let mut args = vec![
        "run", "tx.csv", "-o", "out.csv", "--shard", spec, "-q", "-j", "1",
    ];
    if !extra.contains(&"--rules") {
        args.extend(["--rules", "rules.toml"]);
    }
    args.extend_from_slice(extra);
    wd.run(&args).expect_success();
}

fn all_shards(wd: &Workdir, n: u32) {
    for i in 0..n {
        shard(wd, &format!("{i}/{n}"), &[]);
    }
}

/// Every file but the lock files of `out.csv` and its rejects (a merge takes them, like
/// `run -o`).
fn files(wd: &Workdir) -> BTreeMap<PathBuf, Entry> {
    let mut files = wd.snapshot();
    files.remove(Path::new("out.csv.lock"));
    files.remove(Path::new("out.csv.rejects.csv.lock"));
    files
}

/// `merge out.csv` is refused with `needle` in its message, and changes no file.
#[track_caller]
fn refused(wd: &Workdir, needle: &str) {
    let before = files(wd);
    let run = wd.run(&["merge", "out.csv", "--summary", "merged.json"]);
    run.expect_code(1)
        .expect_stderr_contains("merge refused; nothing was written")
        .expect_stderr_contains(needle);
    assert!(
        files(wd) == before,
        "the refused merge changed files\n{}",
        run.describe()
    );
    assert!(!wd.exists("out.csv") && !wd.exists("merged.json"));
}

fn edit_summary(wd: &Workdir, part: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let name = format!("out.csv.{part}.summary.json");
    let mut json = wd.json(&name);
    edit(&mut json);
    wd.create(&name, serde_json::to_string_pretty(&json).unwrap());
}

#[test]
fn merge_refuses_parts_that_are_not_one_whole_run() {
    let wd = setup("merge-refusals");
    refused(&wd, "no parts of out.csv found");
    all_shards(&wd, 3);

    // A missing part.
    let summary = wd.read_bytes("out.csv.part-00001-of-00003.summary.json");
    std::fs::remove_file(wd.path("out.csv.part-00001-of-00003.summary.json")).unwrap();
    refused(&wd, "part 1 of 3 is missing");
    wd.create("out.csv.part-00001-of-00003.summary.json", &summary);
    let results = wd.read_bytes("out.csv.part-00002-of-00003");
    std::fs::remove_file(wd.path("out.csv.part-00002-of-00003")).unwrap();
    refused(&wd, "part 2 of 3: its results");
    wd.create("out.csv.part-00002-of-00003", &results);

    // Mixed N: a part of a 2-shard run beside the 3 parts.
    shard(&wd, "0/2", &[]);
    refused(&wd, "different shard counts");
    for f in [
        "out.csv.part-00000-of-00002",
        "out.csv.part-00000-of-00002.summary.json",
    ] {
        std::fs::remove_file(wd.path(f)).unwrap();
    }

    // Different rules, different seed, different options.
    wd.create(
        "other.toml",
        rules(&[rule(1, "amount > 11.0"), rule(2, "true")].concat()),
    );
    shard(&wd, "2/3", &["--rules", "other.toml"]);
    refused(&wd, "part 2 of 3 differs from part 0 in its rules (sha256)");
    shard(&wd, "2/3", &["--seed", "9"]);
    refused(
        &wd,
        "part 2 of 3 differs from part 0 in its seed: 9 (part 0: 0)",
    );
    shard(&wd, "2/3", &["--timeout", "5s"]);
    refused(
        &wd,
        "differs from part 0 in its option timeout: 5s (part 0: 3s)",
    );
    // Another id column or delimiter: other transaction ids, other fields.
    shard(&wd, "2/3", &["--id-column", "amount"]);
    refused(
        &wd,
        "differs from part 0 in its option id_column: amount (part 0: id)",
    );
    // The delimiter the file's name gives, written out, is the same delimiter.
    shard(&wd, "2/3", &["-d", ","]);
    shard(&wd, "2/3", &[]);

    // Edited offsets.
    let part1 = wd.read_bytes("out.csv.part-00001-of-00003.summary.json");
    edit_summary(&wd, "part-00001-of-00003", |j| {
        let next = j["shard"]["next_shard_offset"].as_u64().unwrap();
        j["shard"]["next_shard_offset"] = (next + 3).into();
    });
    refused(&wd, "the parts do not tile the input");
    edit_summary(&wd, "part-00001-of-00003", |j| {
        j["shard"]["index"] = 2.into();
    });
    refused(&wd, "says it is shard 2/3");
    wd.create("out.csv.part-00001-of-00003.summary.json", &part1);

    // A different input (its modification time).
    let t = wd.read("tx.csv");
    std::thread::sleep(std::time::Duration::from_millis(20));
    wd.create("tx.csv", &t);
    shard(&wd, "1/3", &[]);
    refused(&wd, "differs from part 0 in its input modification time");
    all_shards(&wd, 3);

    // A failed part: a bad row in the last third, under --bad-rows fail.
    wd.create("tx.csv", t.replace("\n28,28\n", "\n28,oops\n"));
    for i in 0..2 {
        shard(&wd, &format!("{i}/3"), &[]);
    }
    wd.txguard_run(&["-o", "out.csv", "--shard", "2/3", "-q"])
        .expect_code(1)
        .expect_stderr_contains("tx.csv:29: ");
    refused(&wd, "part 2 of 3 failed (exit 1): tx.csv:29: ");

    // Skip mode needs every part's rejects.
    for i in 0..3 {
        shard(&wd, &format!("{i}/3"), &["--bad-rows", "skip"]);
    }
    std::fs::remove_file(wd.path("out.csv.part-00000-of-00003.rejects.csv")).unwrap();
    refused(&wd, "part 0 of 3: its rejects");
    // A part whose results were replaced by something else.
    shard(&wd, "0/3", &["--bad-rows", "skip"]);
    wd.create("out.csv.part-00001-of-00003", "id,amount\n1,2\n");
    refused(
        &wd,
        "out.csv.part-00001-of-00003 has 14 bytes, but its shard wrote ",
    );
    shard(&wd, "1/3", &["--bad-rows", "skip"]);
    // A part edited by hand after its shard finished: one result flipped (same size), a
    // row added, or its rejects changed. Its summary's counts no longer describe it.
    let part = "out.csv.part-00001-of-00003";
    let results = wd.read(part);
    let flipped = if results.contains(",true,") {
        results.replacen(",true,", ",fals,", 1)
    } else {
        results.replacen(",false,", ",true, ", 1)
    };
    assert_eq!(flipped.len(), results.len());
    wd.create(part, &flipped);
    refused(
        &wd,
        "part 1 of 3: out.csv.part-00001-of-00003 is not the file its shard wrote",
    );
    wd.create(part, format!("{results}99,1,true,\n"));
    refused(&wd, "out.csv.part-00001-of-00003 has ");
    wd.create(part, &results);
    let rejects = "out.csv.part-00002-of-00003.rejects.csv";
    let kept = wd.read(rejects);
    wd.create(rejects, kept.replacen("29,", "28,", 1));
    refused(
        &wd,
        "part 2 of 3: out.csv.part-00002-of-00003.rejects.csv is not the file",
    );
    wd.create(rejects, &kept);
    // A part that is a directory, or a FIFO (opening it would wait forever).
    std::fs::remove_file(wd.path(part)).unwrap();
    wd.mkdir(part);
    refused(&wd, "out.csv.part-00001-of-00003 is not a regular file");
    std::fs::remove_dir(wd.path(part)).unwrap();
    let fifo = std::ffi::CString::new(wd.path(part).into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    refused(&wd, "out.csv.part-00001-of-00003 is not a regular file");
    std::fs::remove_file(wd.path(part)).unwrap();
    wd.create(part, &results);
    wd.run(&["merge", "out.csv", "-q"]).expect_success();
    assert_eq!(wd.first_column("out.csv.rejects.csv"), ["29"]);
}

#[test]
fn merge_applies_fail_on_to_the_totals_and_can_remove_the_parts() {
    let wd = setup("merge-fail-on");
    wd.txguard_run(&["-o", "single.csv", "-q"]).expect_success();
    all_shards(&wd, 4);
    // A shard still writing its part (a second pod of index 1): the merge waits its turn.
    {
        let _writer = wd.hold_lock("out.csv.part-00001-of-00004.lock");
        wd.run(&["merge", "out.csv", "-q"])
            .expect_code(75)
            .expect_stderr_contains("part 1 is being written");
    }
    assert!(!wd.exists("out.csv"));
    // Rule 2 errs on the row with amount 0 (in part 2 only): exit 3, outputs written.
    wd.run(&[
        "merge",
        "out.csv",
        "--fail-on",
        "error",
        "-q",
        "--remove-parts",
    ])
    .expect_code(3)
    .expect_stderr_contains("txguard: exit 3: a result named by --fail-on occurred: 1 error");
    assert_eq!(wd.read("out.csv"), wd.read("single.csv"));
    let left: Vec<String> = wd
        .listing()
        .into_iter()
        .filter(|f| f.contains(".part-"))
        .collect();
    assert!(left.is_empty(), "--remove-parts left {left:?}");
    // A second merge has no parts to merge: refused, the merged output untouched.
    refused_keeps(&wd);
}

fn refused_keeps(wd: &Workdir) {
    let before = files(wd);
    wd.run(&["merge", "out.csv"])
        .expect_code(1)
        .expect_stderr_contains("no parts of out.csv found");
    assert!(files(wd) == before);
}

/// SIGTERM or SIGINT while merging (here: blocked opening a `--summary` FIFO nobody
/// reads, after OUT's temporary file is written): exit 143 / 130, no OUT, no temporary
/// file left beside it, the parts as they were.
#[test]
fn a_signal_during_merge_leaves_no_output_and_the_parts_intact() {
    let wd = setup("merge-signal");
    all_shards(&wd, 2);
    let fifo = std::ffi::CString::new(
        wd.path("summary.fifo")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let before = files(&wd);
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let running = wd.spawn(&mut wd.command(&["merge", "out.csv", "--summary", "summary.fifo"]));
        wait_until_blocked(running.pid());
        send(running.pid(), signal);
        running
            .finish_within(std::time::Duration::from_secs(60))
            .expect_code(code);
        assert!(
            files(&wd) == before,
            "a merge ended by signal {signal} left {:?}",
            wd.listing()
        );
    }
}

#[test]
fn a_summary_naming_the_output_or_a_file_the_shards_read_is_refused() {
    // `merge out.csv --summary ./out.csv` compared spellings only: the summary, renamed
    // last, replaced the merged results (exit 0); `--summary tx.csv` replaced the input.
    let wd = setup("merge-summary-clash");
    all_shards(&wd, 2);
    let root = wd.root().display().to_string();
    for (summary, message) in [
        ("./out.csv".to_string(), "would replace the merged output"),
        (format!("{root}/out.csv"), "would replace the merged output"),
        (
            "./out.csv.rejects.csv".to_string(),
            "would replace the merged output",
        ),
        ("./tx.csv".to_string(), "is tx.csv, a file the shards read"),
        (
            format!("{root}/rules.toml"),
            "is rules.toml, a file the shards read",
        ),
    ] {
        let before = files(&wd);
        wd.run(&["merge", "out.csv", "--summary", &summary, "-q"])
            .expect_code(2)
            .expect_stderr_contains(message);
        assert!(files(&wd) == before, "--summary {summary} changed files");
        assert!(!wd.exists("out.csv"));
    }
    // Once the merged output exists, a hard link to it is the output too.
    wd.run(&["merge", "out.csv", "-q"]).expect_success();
    let merged = wd.read("out.csv");
    std::fs::hard_link(wd.path("out.csv"), wd.path("linked.csv")).unwrap();
    wd.run(&["merge", "out.csv", "--summary", "linked.csv", "-q"])
        .expect_code(2)
        .expect_stderr_contains("would replace the merged output");
    assert_eq!(wd.read("out.csv"), merged);
}

#[test]
fn a_part_summary_that_is_a_fifo_or_a_device_is_refused_at_once() {
    // A part's results that are a FIFO were refused, but its summary was read whole as it
    // was: a FIFO blocked the merge until a signal, a link to /dev/zero filled memory.
    let wd = setup("merge-summary-special");
    all_shards(&wd, 2);
    let summary = "out.csv.part-00001-of-00002.summary.json";
    std::fs::remove_file(wd.path(summary)).unwrap();
    let fifo =
        std::ffi::CString::new(wd.path(summary).into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let needle = format!("part 1 of 2: {summary} is not a regular file");
    let refused_within_a_minute = || {
        let before = files(&wd);
        wd.run_within(
            std::time::Duration::from_secs(60),
            &["merge", "out.csv", "-q"],
        )
        .expect_code(1)
        .expect_stderr_contains(&needle);
        assert!(files(&wd) == before && !wd.exists("out.csv"));
    };
    refused_within_a_minute();
    std::fs::remove_file(wd.path(summary)).unwrap();
    wd.symlink("/dev/zero", summary);
    refused_within_a_minute();
}

#[test]
fn an_out_that_is_the_input_or_the_rules_is_refused_by_the_shards_and_by_merge() {
    // `run tx.csv -o tx.csv --shard 0/1` passed (its parts are other files), and
    // `merge tx.csv` then replaced the input with the merged results.
    let wd = setup("merge-out-is-input");
    let input = wd.read("tx.csv");
    let rules = wd.read("rules.toml");
    for (out, extra, message) in [
        (
            "tx.csv",
            None,
            "INPUT tx.csv would be replaced by `txguard merge`",
        ),
        ("./rules.toml", None, "--rules rules.toml would be replaced"),
        ("tx", Some("skip"), "which writes tx.rejects.csv"),
    ] {
        if extra.is_some() {
            std::fs::rename(wd.path("tx.csv"), wd.path("tx.rejects.csv")).unwrap();
        }
        let input_name = if extra.is_some() {
            "tx.rejects.csv"
        } else {
            "tx.csv"
        };
        let mut args = vec!["run", input_name, "--rules", "rules.toml", "-o", out];
        args.extend(["--shard", "0/1", "-q"]);
        if let Some(policy) = extra {
            args.extend(["--bad-rows", policy]);
        }
        let before = wd.snapshot();
        let run = wd.run(&args);
        run.expect_code(2).expect_stderr_contains(message);
        wd.expect_unchanged(&before, &run);
        if extra.is_some() {
            std::fs::rename(wd.path("tx.rejects.csv"), wd.path("tx.csv")).unwrap();
        }
    }
    // Parts that exist all the same (written by an earlier version, or by hand): merge
    // refuses to write OUT over the input the shards read.
    all_shards(&wd, 1);
    for f in ["", ".summary.json"] {
        std::fs::rename(
            wd.path(&format!("out.csv.part-00000-of-00001{f}")),
            wd.path(&format!("tx.csv.part-00000-of-00001{f}")),
        )
        .unwrap();
    }
    wd.run(&["merge", "tx.csv", "-q"])
        .expect_code(2)
        .expect_stderr_contains("OUT tx.csv is tx.csv, a file the shards read");
    assert_eq!(wd.read("tx.csv"), input);
    assert_eq!(wd.read("rules.toml"), rules);
}
