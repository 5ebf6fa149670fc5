//! `run --shard` then `merge` is a single run: edge-case inputs × N ∈ {1, 2, 3, 7, 16},
//! each shard run with the environment exactly as a Kubernetes Indexed Job or a Slurm
//! array sets it (`--shard auto`), merged, and compared byte for byte (results, rejects)
//! with one run of the whole input, summaries' counts equal. And the streaming options
//! for engines that pipe chunks through txguard: `--columns`, `--no-output-header`.

use crate::workdir::{RESULTS_HEADER, Run, Workdir, rule};

/// Every variable an engine might set, cleared from each shard's environment first so
/// that the test's own environment (a CI job under Slurm) cannot leak in.
const ENGINE_VARS: &[&str] = &[
    "TXGUARD_SHARD",
    "TXGUARD_SHARD_COUNT",
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_JOB_ID",
];

/// Columns id, amount, note; a seeded rule, so a shard must use the run's seed.
fn rules() -> String {
    let body = [
        rule(1, "amount > 10.0"),
        rule(2, "coin_flip()"),
        rule(3, "note.len() > 3"),
    ]
    .concat();
    format!("[columns]\nid = \"int\"\namount = \"float\"\nnote = \"string\"\n\n{body}")
}

/// (name, input): CRLF, BOM, no final newline, blank lines, quoted commas, quoted
/// newlines (LF, CRLF and CR), a 3-row file, a bad row, a header alone, an empty body.
fn inputs() -> Vec<(&'static str, String)> {
    let mut many = String::from("id,amount,note\n");
    for i in 1..=60 {
        match i % 5 {
            0 => many.push_str(&format!("{i},{}.5,\"multi\nline, \"\"quoted\"\"\"\n", i)),
            1 => many.push_str(&format!("{i},{},\"a,b\"\r\n", i * 3)),
            2 => many.push_str(&format!("\n{i},{},plain\n", i % 17)),
            3 => many.push_str(&format!("{i},{},\"cr\rinside\"\n", i * 2)),
            _ => many.push_str(&format!("{i},{},x\n", i)),
        }
    }
    vec![
        (
            "crlf",
            "id,amount,note\r\n1,5,a\r\n2,20,bb\r\n3,7,cccc\r\n".into(),
        ),
        (
            "bom",
            "\u{feff}id,amount,note\n1,50,\"x\"\n2,2,yyyy\n3,3,z\n".into(),
        ),
        (
            "no_final_newline",
            "id,amount,note\n1,1,a\n2,22,b\n3,3,ccccc".into(),
        ),
        (
            "blank_lines",
            "\n\nid,amount,note\n\n1,11,a\n\n\n2,2,b\n\n3,33,c\n\n".into(),
        ),
        (
            "quoted_commas",
            "id,amount,note\n1,12,\"a,b,c\"\n2,\"15\",\"x\"\n3,4,\",\"\n".into(),
        ),
        (
            "quoted_newlines",
            "id,amount,note\n1,12,\"line\n2,3,looks like a row\n\"\n2,30,\"\r\n\"\n3,3,\"\n\n\"\n"
                .into(),
        ),
        (
            "three_rows",
            "id,amount,note\n1,100,a\n2,0,b\n3,10.5,note\n".into(),
        ),
        ("mixed", many),
        ("header_only", "id,amount,note\n".into()),
        (
            "bad_rows",
            "id,amount,note\n1,1,a\nx,2,b\n3,\"3\n\",c\n4,4\n5,5,\"open\n".into(),
        ),
    ]
}

/// How an engine tells shard `index` of `count` which one it is.
#[derive(Clone, Copy, Debug)]
enum Engine {
    /// An Indexed Job's pod: `JOB_COMPLETION_INDEX`, and N from the manifest's env.
    Kubernetes,
    /// An array task: `SLURM_ARRAY_*` (the count included, which must not be used), and N
    /// from the sbatch script's export.
    Slurm,
    /// Anything else: `TXGUARD_SHARD=I/N`.
    Txguard,
}

fn shard_env(engine: Engine, index: u32, count: u32) -> Vec<(&'static str, String)> {
    match engine {
        Engine::Kubernetes => vec![
            ("JOB_COMPLETION_INDEX", index.to_string()),
            ("TXGUARD_SHARD_COUNT", count.to_string()),
        ],
        Engine::Slurm => vec![
            ("SLURM_ARRAY_JOB_ID", "4242".into()),
            ("SLURM_ARRAY_TASK_ID", index.to_string()),
            ("SLURM_ARRAY_TASK_MIN", "0".into()),
            ("SLURM_ARRAY_TASK_MAX", (count - 1).to_string()),
            // A rerun of one task: the count Slurm gives is not N.
            ("SLURM_ARRAY_TASK_COUNT", "1".into()),
            ("TXGUARD_SHARD_COUNT", count.to_string()),
        ],
        Engine::Txguard => vec![("TXGUARD_SHARD", format!("{index}/{count}"))],
    }
}

fn run_shard(wd: &Workdir, engine: Engine, index: u32, count: u32, extra: &[&str]) -> Run {
    let mut args = vec![
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "--shard",
        "auto",
        "-q",
        "--seed",
        "7",
        "-j",
        "1",
    ];
    args.extend_from_slice(extra);
    let mut cmd = wd.command(&args);
    for var in ENGINE_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(shard_env(engine, index, count));
    wd.output_of(&mut cmd)
}

/// The counts of a summary, without what differs between runs (times, executor, jobs).
fn counts(summary: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "input_bytes": summary["input_bytes"],
        "rules_sha256": summary["rules_sha256"],
        "transactions": summary["transactions"],
        "bad_rows": summary["bad_rows"],
        "evaluations": summary["evaluations"],
        "rules": summary["rules"],
        "exit_code": summary["exit_code"],
    })
}

#[test]
fn shards_merged_are_byte_identical_to_a_single_run() {
    let engines = [Engine::Kubernetes, Engine::Slurm, Engine::Txguard];
    let mut case = 0;
    for (name, input) in inputs() {
        // An input with bad rows fails under `fail`, whole or in shards: `skip` only.
        let policies: &[&str] = if name == "bad_rows" {
            &["skip"]
        } else {
            &["fail", "skip"]
        };
        for &bad_rows in policies {
            let wd = Workdir::new(&format!("shards-{name}-{bad_rows}"));
            wd.create("tx.csv", &input);
            wd.rules(rules());
            let policy = ["--bad-rows", bad_rows];
            wd.txguard_run(
                &[
                    "-o",
                    "single.csv",
                    "--summary",
                    "single.json",
                    "-q",
                    "--seed",
                    "7",
                ]
                .iter()
                .chain(&policy)
                .copied()
                .collect::<Vec<_>>(),
            )
            .expect_success();
            let single = wd.read_bytes("single.csv");
            for count in [1, 2, 3, 7, 16] {
                let engine = engines[case % engines.len()];
                case += 1;
                for index in 0..count {
                    run_shard(&wd, engine, index, count, &policy).expect_success();
                }
                wd.run(&[
                    "merge",
                    "out.csv",
                    "--summary",
                    "merged.json",
                    "-q",
                    "--remove-parts",
                ])
                .expect_success();
                let label = format!("{name}, --bad-rows {bad_rows}, N = {count}, {engine:?}");
                assert!(
                    wd.read_bytes("out.csv") == single,
                    "{label}: merged results differ\nmerged:\n{}\nsingle:\n{}",
                    wd.read("out.csv"),
                    wd.read("single.csv")
                );
                if bad_rows == "skip" {
                    assert_eq!(
                        wd.read("out.csv.rejects.csv"),
                        wd.read("single.csv.rejects.csv"),
                        "{label}: rejects"
                    );
                }
                assert_eq!(
                    counts(&wd.json("merged.json")),
                    counts(&wd.json("single.json")),
                    "{label}: summaries"
                );
                assert!(
                    !wd.listing()
                        .iter()
                        .any(|f| f.contains(".part-") && !f.ends_with(".lock")),
                    "{label}: --remove-parts left {:?}",
                    wd.listing()
                );
            }
        }
    }
}

#[test]
fn errors_and_rejects_of_a_shard_name_the_files_real_lines() {
    let wd = Workdir::new("shard-lines");
    // Line 6 holds a quoted newline; the bad row (id 4) starts on line 7, in shard 1/2.
    wd.create(
        "tx.csv",
        "id,amount,note\n1,1,a\n2,2,b\n\n3,3,\"x\ny\"\n4,oops,c\n5,5,d\n6,6,e\n",
    );
    wd.rules(rules());
    let shard = |i: u32, extra: &[&str]| run_shard(&wd, Engine::Txguard, i, 2, extra);
    shard(1, &[])
        .expect_code(1)
        .expect_stderr_contains("tx.csv:7: ");
    assert_eq!(
        wd.json("out.csv.part-00001-of-00002.summary.json")["exit_code"],
        1,
        "a failed shard says so in its summary"
    );
    shard(1, &["--bad-rows", "skip"]).expect_success();
    assert_eq!(
        wd.first_column("out.csv.part-00001-of-00002.rejects.csv"),
        ["7"]
    );
    let facts = &wd.json("out.csv.part-00001-of-00002.summary.json")["shard"];
    assert_eq!(facts["first_record_line"], 7, "{facts}");
    // The last shard ends at the end of the input.
    assert_eq!(facts["next_shard_offset"], 59, "{facts}");
    assert_eq!(facts["input_size"], 59, "{facts}");
    assert_eq!(facts["seed"], 7);
    assert_eq!(facts["options"]["bad_rows"], "skip");
}

#[test]
fn a_rerun_index_replaces_its_part() {
    let wd = Workdir::new("shard-rerun");
    wd.create("tx.csv", "id,amount,note\n1,1,a\n2,20,b\n3,30,c\n");
    wd.rules(rules());
    for _ in 0..2 {
        run_shard(&wd, Engine::Kubernetes, 1, 2, &[]).expect_success();
    }
    run_shard(&wd, Engine::Kubernetes, 0, 2, &[]).expect_success();
    wd.run(&["merge", "out.csv", "-q"]).expect_success();
    wd.txguard_run(&["-o", "single.csv", "-q", "--seed", "7"])
        .expect_success();
    assert_eq!(wd.read("out.csv"), wd.read("single.csv"));
}

#[test]
fn shard_flags_that_cannot_work_are_refused_with_exit_2() {
    let wd = Workdir::new("shard-usage");
    wd.create("tx.csv", "id,amount,note\n1,1,a\n");
    wd.rules(rules());
    let refused = |args: &[&str], needle: &str| {
        let mut cmd = wd.command(args);
        for var in ENGINE_VARS {
            cmd.env_remove(var);
        }
        wd.output_of(&mut cmd)
            .expect_code(2)
            .expect_stderr_contains(needle);
    };
    let base = ["run", "tx.csv", "--rules", "rules.toml"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(extra).copied().collect()
    };
    refused(
        &with(&["-o", "o.csv", "--shard", "0/2", "--fail-on", "error"]),
        "--fail-on cannot be used with --shard",
    );
    refused(&with(&["--shard", "0/2"]), "needs -o OUT");
    refused(&with(&["-o", "o.csv", "--shard", "2/2"]), "must be below N");
    refused(
        &with(&["-o", "o.csv", "--shard", "auto"]),
        "TXGUARD_SHARD=I/N",
    );
    refused(
        &with(&["-o", "o.csv", "--shard", "0/2", "--summary", "s.json"]),
        "--summary cannot be used with --shard",
    );
    refused(
        &with(&["-o", "o.csv", "--shard", "0/2", "--no-output-header"]),
        "--no-output-header cannot be used with --shard",
    );
    refused(
        &[
            "run",
            "-",
            "--rules",
            "rules.toml",
            "-o",
            "o.csv",
            "--shard",
            "0/2",
        ],
        "standard input",
    );
    let mut cmd = wd.command(&with(&["-o", "o.csv", "--shard", "auto"]));
    for var in ENGINE_VARS {
        cmd.env_remove(var);
    }
    cmd.env("JOB_COMPLETION_INDEX", "3");
    wd.output_of(&mut cmd)
        .expect_code(2)
        .expect_stderr_contains("JOB_COMPLETION_INDEX=3")
        .expect_stderr_contains("TXGUARD_SHARD_COUNT is not set");
    // One plain file: not several inputs, not a compressed stream.
    wd.create("tx2.csv", "id,amount,note\n2,2,b\n");
    refused(
        &[
            "run",
            "tx.csv",
            "tx2.csv",
            "--rules",
            "rules.toml",
            "-o",
            "o.csv",
            "--shard",
            "0/2",
        ],
        "takes one input, not 2",
    );
    assert!(wd.sh("gzip -k tx.csv").status().unwrap().success());
    refused(
        &[
            "run",
            "tx.csv.gz",
            "--rules",
            "rules.toml",
            "-o",
            "o.csv",
            "--shard",
            "0/2",
        ],
        "Gzip-compressed",
    );
    // Windows need every earlier row, which a shard has not got.
    wd.create(
        "windows.toml",
        "[windows.n]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\n\
         function = \"count\"\n[[rule]]\nid = 1\nname = \"r\"\nwhen = \"n > 1\"\n",
    );
    wd.create("w.csv", "id,account,timestamp\n1,A,2026-01-01T00:00:00Z\n");
    refused(
        &[
            "run",
            "w.csv",
            "--rules",
            "windows.toml",
            "-o",
            "o.csv",
            "--shard",
            "0/2",
        ],
        "the rules declare [windows.*]",
    );
    // A FIFO cannot seek.
    wd.sh("mkfifo fifo.csv").status().unwrap();
    refused(
        &[
            "run",
            "fifo.csv",
            "--rules",
            "rules.toml",
            "-o",
            "o.csv",
            "--shard",
            "0/2",
        ],
        "not a regular file",
    );
    assert!(!wd.exists("o.csv") && !wd.exists("o.csv.part-00000-of-00002"));
}

#[test]
fn columns_and_no_output_header_stream_chunks_without_headers() {
    let wd = Workdir::new("columns");
    wd.create(
        "tx.csv",
        "id,amount,note\n1,5,a\n2,20,bbbb\n3,\"x\ny\",c\n4,11,\"d\ne\"\n",
    );
    wd.create(
        "body.csv",
        "1,5,a\n2,20,bbbb\n3,\"x\ny\",c\n4,11,\"d\ne\"\n",
    );
    wd.rules(rules());
    wd.txguard_run(&["-o", "single.csv", "-q", "--bad-rows", "skip"])
        .expect_success();
    let single = wd.read("single.csv");
    let body = single.strip_prefix(RESULTS_HEADER).unwrap();
    let stream_as = |input: &str, columns: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            input,
            "--rules",
            "rules.toml",
            "--columns",
            columns,
            "-q",
            "--bad-rows",
            "skip",
            "--rejects",
            "rejects.csv",
        ];
        args.extend_from_slice(extra);
        wd.run(&args)
    };
    let stream = |input: &str, extra: &[&str]| stream_as(input, "id,amount,note", extra);
    stream("body.csv", &["--no-output-header"]).expect_stdout(body);
    stream("body.csv", &[]).expect_stdout(&single);
    // Names typed with blanks around them (`--columns "id, amount"`) are the same names.
    stream_as("body.csv", " id, amount ,note", &[]).expect_stdout(&single);
    // Rejects name the chunk's own lines: line 3 of the body.
    assert_eq!(wd.first_column("rejects.csv"), ["3"]);
    // An empty chunk (an empty Spark partition): no rows, exit 0.
    wd.create("empty.csv", "");
    stream("empty.csv", &["--no-output-header"]).expect_stdout("");
    stream("empty.csv", &[]).expect_stdout(RESULTS_HEADER);
    // Shards of a headerless input merge into the single run too (with their own
    // rejects: --rejects is refused with --shard).
    for i in 0..3 {
        let shard = format!("{i}/3");
        wd.run(&[
            "run",
            "body.csv",
            "--rules",
            "rules.toml",
            "--columns",
            "id,amount,note",
            "-q",
            "--bad-rows",
            "skip",
            "-o",
            "parts.csv",
            "--shard",
            &shard,
        ])
        .expect_success();
    }
    wd.run(&["merge", "parts.csv", "-q"]).expect_success();
    assert_eq!(wd.read("parts.csv"), single);
    for (columns, needle) in [
        ("amount,note", "no `id` column (the transaction id)"),
        ("id,id", "named twice"),
        ("id,,x", "cannot be a column name"),
        ("id, ,x", "cannot be a column name"),
    ] {
        wd.run(&[
            "run",
            "body.csv",
            "--rules",
            "rules.toml",
            "--columns",
            columns,
        ])
        .expect_code(2)
        .expect_stderr_contains(needle);
    }
}

/// `--columns` with rules that have `[windows.*]`: the names stand for the header for the
/// windows too (the first row is a row, with its window value), and an empty chunk is no
/// error (it panicked: the reader took its first record for a header).
#[test]
fn columns_feed_windows_as_a_header_row_would() {
    let wd = Workdir::new("columns-windows");
    let body = "1,5,2026-01-01T00:00:00Z,a\n2,6,2026-01-01T00:10:00Z,a\n\
                3,7,2026-01-01T00:20:00Z,b\n4,8,2026-01-01T00:30:00Z,a\n";
    wd.create("tx.csv", format!("id,amount,timestamp,account\n{body}"));
    wd.create("body.csv", body);
    wd.create("empty.csv", "");
    wd.rules(format!(
        "[columns]\nid = \"int\"\namount = \"float\"\n\n[windows.tx_1h]\nkey = \"account\"\n\
         time = \"timestamp\"\nspan = \"1h\"\nfunction = \"count\"\n\n{}{}",
        rule(1, "tx_1h > 1"),
        rule(2, "tx_1h > 2")
    ));
    let with_header = wd.txguard_run(&["-q"]);
    with_header.expect_stdout(
        "transaction_id,rule_id,result,detail\n1,1,false,\n1,2,false,\n2,1,true,\n\
         2,2,false,\n3,1,false,\n3,2,false,\n4,1,true,\n4,2,true,\n",
    );
    let columns = ["--columns", "id,amount,timestamp,account", "-q"];
    let run = |input: &str| {
        let mut args = vec!["run", input, "--rules", "rules.toml"];
        args.extend_from_slice(&columns);
        wd.run(&args)
    };
    run("body.csv").expect_stdout(&with_header.stdout());
    run("empty.csv").expect_stdout(RESULTS_HEADER);
}

/// `txguard merge OUT` replaces OUT (and OUT.rejects.csv under skip) with the parts'
/// results: a shard whose OUT is a list its rules read is refused, the list untouched.
#[test]
fn a_shard_whose_merged_output_is_a_list_of_its_rules_is_refused() {
    let wd = Workdir::new("shard-out-is-a-list");
    wd.mkdir("lists");
    let list = "country\nKP\n";
    wd.create("lists/blocked.csv", list);
    wd.rules(
        "[lists.blocked]\nfile = \"lists/blocked.csv\"\nkey = \"country\"\n\
         [[rule]]\nid = 1\nname = \"b\"\nwhen = \"country in blocked\"\n",
    );
    wd.create("tx.csv", "id,country\n1,KP\n2,FR\n");
    wd.create("lists/out.csv.rejects.csv", list);
    for (out, which) in [
        ("lists/blocked.csv", "-o OUT"),
        ("lists/out.csv", "OUT.rejects.csv"),
    ] {
        let listed = if which == "-o OUT" {
            "lists/blocked.csv"
        } else {
            "lists/out.csv.rejects.csv"
        };
        wd.rules(wd.read("rules.toml").replace("lists/blocked.csv", listed));
        wd.run(&[
            "run",
            "tx.csv",
            "--rules",
            "rules.toml",
            "--shard",
            "0/2",
            "-o",
            out,
            "--bad-rows",
            "skip",
            "-q",
        ])
        .expect_code(2)
        .expect_stderr(&format!(
            "txguard: error: [lists.blocked] and {which}, which `txguard merge` writes, name \
             the same file: {listed}; name another -o OUT\n"
        ));
        assert_eq!(wd.read(listed), list);
        assert!(!wd.exists(&format!("{out}.part-00000-of-00002")));
    }
}
