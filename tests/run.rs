//! `txguard run` with the thread executor, end to end: hostile but valid CSV, bad rows in
//! both policies, rules-file errors, looping / failing / non-bool rules, stdout hygiene,
//! determinism across job counts, broken pipes.

use crate::workdir::{RESULTS_HEADER, Workdir, rule, rules_with_columns};

#[test]
fn hostile_but_valid_csv_is_read_exactly() {
    let wd = Workdir::new("hostile");
    // BOM, CRLF, a quoted comma, doubled quotes, a quoted newline, unicode, a header that is
    // not an identifier (invisible to rules but kept), a blank line, no final newline.
    wd.create(
        "tx.csv",
        "\u{feff}id,amount,\"note, free\",city\r\n\
         1,20000.5,\"a, b\",Zürich\r\n\
         2,5,\"say \"\"hi\"\"\",東京\r\n\
         \r\n\
         3,7,\"two\r\nlines\",\"São Paulo\"\r\n\
         \"4\",10001,,Kraków",
    );
    wd.rules(rules_with_columns(
        &(rule(1, "amount > 10000.0") + &*rule(2, r#"city == "東京" || city.len() == 9"#)),
    ));
    wd.txguard_run(&["-o", "out.csv", "-q"]).expect_success();
    assert_eq!(
        wd.read("out.csv"),
        format!(
            "{RESULTS_HEADER}1,1,true,\n1,2,false,\n2,1,false,\n2,2,true,\n3,1,false,\n3,2,true,\n4,1,true,\n4,2,false,\n"
        )
    );
}

#[test]
fn each_kind_of_bad_row_stops_the_run_with_file_line_column_and_value() {
    let cases = [
        (
            "1,12x,FR\n",
            "tx.csv:3: column \"amount\": \"12x\" is not a float",
        ),
        ("x1,5,FR\n", "tx.csv:3: column \"id\": \"x1\" is not an int"),
        (",5,FR\n", "tx.csv:3: column \"id\" is empty"),
        ("1,5\n", "tx.csv:3: expected 3 fields, found 2"),
        ("1,5,FR,extra\n", "tx.csv:3: expected 3 fields, found 4"),
        (
            "1,5,\"F\nR\"\n9,x,FR\n",
            "tx.csv:5: column \"amount\": \"x\" is not a float",
        ),
    ];
    for (bad, message) in cases {
        let wd = Workdir::new("bad-fail");
        wd.create("tx.csv", format!("id,amount,country\n1,5,FR\n{bad}"));
        wd.rules(rules_with_columns(&rule(1, "amount > 1.0")));
        wd.create("out.csv", "yesterday's results\n");
        wd.txguard_run(&["-o", "out.csv"])
            .expect_code(1)
            .expect_stderr_contains(message);
        assert_eq!(
            wd.read("out.csv"),
            "yesterday's results\n",
            "the earlier output is intact"
        );
        assert_eq!(
            wd.listing(),
            ["out.csv", "out.csv.lock", "rules.toml", "tx.csv"],
            "no temporary file left"
        );
    }
}

#[test]
fn invalid_utf8_in_a_string_column_is_a_bad_row() {
    let wd = Workdir::new("bad-utf8");
    wd.create("tx.csv", b"id,amount,country\n1,5,F\xffR\n2,5,FR\n");
    wd.rules(rules_with_columns(&rule(1, "country == \"FR\"")));
    wd.txguard_run(&["-o", "out.csv"])
        .expect_code(1)
        .expect_stderr_contains("tx.csv:2: column \"country\": \"F\u{fffd}R\" is not valid UTF-8");
    assert!(!wd.exists("out.csv"));
}

#[test]
fn skipped_bad_rows_go_to_the_rejects_file_and_are_counted() {
    let wd = Workdir::new("bad-skip");
    wd.create(
        "tx.csv",
        "id,amount,country\n1,5,FR\n2,12x,FR\n,5,FR\n3,\"1,5\"\n4,20000,IR\n5,1,FR,x\n",
    );
    wd.rules(rules_with_columns(&rule(1, "amount > 10000.0")));
    let run = wd.txguard_run(&["-o", "out.csv", "--bad-rows", "skip"]);
    run.expect_success().expect_stderr_contains("bad rows: 4");
    assert_eq!(
        wd.read("out.csv"),
        format!("{RESULTS_HEADER}1,1,false,\n4,1,true,\n")
    );
    assert_eq!(
        wd.read("out.csv.rejects.csv"),
        "line,reason,raw\n\
         3,\"column \"\"amount\"\": \"\"12x\"\" is not a float\",\"2,12x,FR\"\n\
         4,\"column \"\"id\"\" is empty\",\",5,FR\"\n\
         5,\"expected 3 fields, found 2\",\"3,\"\"1,5\"\"\"\n\
         7,\"expected 3 fields, found 4\",\"5,1,FR,x\"\n"
    );
}

#[test]
fn skip_with_output_on_stdout_sends_rejects_to_stderr_or_the_named_file() {
    let wd = Workdir::new("bad-skip-stdout");
    wd.create("tx.csv", "id,amount\n1,5\n2,oops\n");
    wd.rules(rules_with_columns(&rule(1, "amount > 1.0")));
    let run = wd.txguard_run(&["--bad-rows", "skip", "-q"]);
    run.expect_success()
        .expect_stderr_contains("line,reason,raw\n3,");
    assert_eq!(run.stdout(), format!("{RESULTS_HEADER}1,1,true,\n"));
    wd.txguard_run(&["--bad-rows", "skip", "-q", "--rejects", "rej.csv"])
        .expect_success();
    assert_eq!(
        wd.read("rej.csv"),
        "line,reason,raw\n3,\"column \"\"amount\"\": \"\"oops\"\" is not a float\",\"2,oops\"\n"
    );
}

#[test]
fn a_file_that_is_not_a_transactions_csv_always_fails() {
    let wd = Workdir::new("not-csv");
    wd.rules(rules_with_columns(&rule(1, "true")));
    wd.create("noid.csv", "name,amount\nx,1\n");
    wd.run(&[
        "run",
        "noid.csv",
        "--rules",
        "rules.toml",
        "--bad-rows",
        "skip",
    ])
    .expect_code(1)
    .expect_stderr_contains("noid.csv:1: no `id` column in the header");
    wd.create("binary.csv", [0xffu8, 0xfe, 0x00, 0x01, b'\n', 0x80]);
    wd.run(&["run", "binary.csv", "--rules", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains("not valid UTF-8");
    wd.create("empty.csv", "");
    wd.run(&["run", "empty.csv", "--rules", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains("empty input");
    wd.run(&["run", "missing.csv", "--rules", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains("cannot open input missing.csv");
}

#[test]
fn rules_file_errors_are_all_reported_before_the_input_is_read() {
    let wd = Workdir::new("rules-errors");
    wd.rules(
        "[columns]\namount = \"decimal\"\n\n[[rule]]\nid = 1\nname = \"a\"\nwhen = \"amount >\"\n\n[[rule]]\nid = 1\nname = \"b\"\nwhen = \"true\"\n",
    );
    // The input does not exist: the rules' errors must come first, alone.
    let run = wd.run(&[
        "run",
        "missing.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
    ]);
    run.expect_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("rules.toml has 2 errors"), "{stderr}");
    assert!(
        stderr.contains("rules.toml:2: column \"amount\": unknown type \"decimal\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("rules.toml:10: rule 1 \"b\": duplicate id 1 (first used on line 4)"),
        "{stderr}"
    );
    assert!(!stderr.contains("missing.csv"), "{stderr}");
    assert!(!wd.exists("out.csv"));

    wd.rules(rules_with_columns(
        &(rule(1, "amount >") + &*rule(2, "true") + &*rule(3, "1 +* 2")),
    ));
    let run = wd.run(&["run", "missing.csv", "--rules", "rules.toml"]);
    run.expect_code(1)
        .expect_stderr_contains(
            "rules.toml:8: rule 1 \"rule1\": when: line 1, column 9: Script is incomplete",
        )
        .expect_stderr_contains(
            "rules.toml:18: rule 3 \"rule3\": when: line 1, column 4: Unexpected '*'",
        );

    wd.rules("[[rule]]\nid = 1\nname = \"a\"\nwhen = \"true\"\nwhen_not = 1\n");
    wd.run(&["run", "missing.csv", "--rules", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains("rules.toml:5: unknown field `when_not`");
    wd.rules("[[rule]\n");
    wd.run(&["run", "missing.csv", "--rules", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains("rules.toml:1:");
}

#[test]
fn a_rule_reading_a_column_the_input_lacks_fails_before_any_row_is_evaluated() {
    let wd = Workdir::new("unknown-var");
    wd.create("tx.csv", "id,amount\n1,5\n");
    wd.rules(rules_with_columns(
        &(rule(1, "amount > 1.0") + &*rule(2, "amout > 1.0")),
    ));
    wd.txguard_run(&["-o", "out.csv"])
        .expect_code(1)
        .expect_stderr_contains(
            "rules.toml:13: rule 2 \"rule2\": when: line 1, column 1: variable \"amout\" is neither a column of the input nor defined by the rule (columns: id, amount)",
        );
    assert!(!wd.exists("out.csv"));
}

#[test]
fn loops_runtime_errors_and_non_bools_are_results_with_details() {
    let wd = Workdir::new("outcomes");
    wd.create("tx.csv", "id,amount\n1,5\n2,20000\n");
    let body = rule(1, "if id == 2 { loop {} } true")
        + "timeout = \"50ms\"\n\n"
        + &*rule(
            2,
            "if id == 1 { throw \"no score for this merchant\" } false",
        )
        + &*rule(3, "amount")
        + &*rule(4, "let m = #{}; m.missing > 1");
    wd.rules(rules_with_columns(&body));
    wd.txguard_run(&["-o", "out.csv", "-q"]).expect_success();
    assert_eq!(
        wd.read("out.csv"),
        format!(
            "{RESULTS_HEADER}\
             1,1,true,\n\
             1,2,error,\"Runtime error: no score for this merchant (line 1, position 14)\"\n\
             1,3,error,\"returned f64 (5.0), not a bool\"\n\
             1,4,error,\"Property not found: missing (line 1, position 16)\"\n\
             2,1,timeout,exceeded 50ms\n\
             2,2,false,\n\
             2,3,error,\"returned f64 (20000.0), not a bool\"\n\
             2,4,error,\"Property not found: missing (line 1, position 16)\"\n"
        )
    );
}

#[test]
fn print_in_a_rule_never_reaches_the_data_stream() {
    let wd = Workdir::new("print");
    wd.create("tx.csv", "id,amount\n1,5\n");
    wd.rules(rules_with_columns(&rule(
        1,
        "print(\"hello\"); debug(\"dbg\"); true",
    )));
    let run = wd.txguard_run(&["-o", "-", "-q"]);
    run.expect_success();
    assert_eq!(run.stdout(), format!("{RESULTS_HEADER}1,1,true,\n"));
    assert_eq!(run.stderr(), "");
}

#[test]
fn results_are_identical_for_every_job_count_and_batch_size() {
    let wd = Workdir::new("determinism");
    wd.generate("tx.csv", 20000, 9);
    let body = rule(1, "amount > 100.0 && coin_flip()")
        + &*rule(2, "random() < 0.3")
        + &*rule(
            3,
            "if id % 7 == 0 { throw \"seven\" } coin_flip() && coin_flip()",
        )
        + &*rule(4, "country == \"US\"");
    wd.rules(rules_with_columns(&body));
    let mut outputs = Vec::new();
    for (jobs, batch) in [("1", "1024"), ("4", "1024"), ("2", "7"), ("3", "5000")] {
        let out = format!("out-{jobs}-{batch}.csv");
        wd.txguard_run(&[
            "-o",
            &out,
            "-j",
            jobs,
            "--batch-size",
            batch,
            "--seed",
            "5",
            "-q",
        ])
        .expect_success();
        outputs.push(wd.read(&out));
    }
    assert_eq!(outputs[0].lines().count(), 1 + 20000 * 4);
    for other in &outputs[1..] {
        assert!(outputs[0] == *other, "outputs differ between job counts");
    }
    let trues = outputs[0].lines().filter(|l| l.ends_with(",true,")).count();
    assert!(
        trues > 1000,
        "coin flips and random() give a mix of results ({trues} true)"
    );
    wd.txguard_run(&["-o", "other-seed.csv", "--seed", "6", "-q"])
        .expect_success();
    assert_ne!(
        wd.read("other-seed.csv"),
        outputs[0],
        "another seed, other flips"
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_run_quietly() {
    let wd = Workdir::new("broken-pipe");
    wd.generate("tx.csv", 200000, 0);
    wd.rules(rules_with_columns(&rule(1, "amount > 1.0")));
    let (first, run) = wd.first_line_then_close(
        std::time::Duration::from_secs(60),
        &["run", "tx.csv", "--rules", "rules.toml", "-q"],
    );
    assert_eq!(first, RESULTS_HEADER);
    run.expect_success().expect_stderr("");
}

/// `--fail-on` answers for what the reader was sent: a gate reading `| head` must not pass
/// a hit it was shown (exit 3), nor fail on one it was not (exit 0).
#[test]
fn a_reader_going_away_after_a_fail_on_hit_gets_exit_3() {
    let wd = Workdir::new("broken-pipe-fail-on");
    wd.generate("tx.csv", 200000, 0);
    let last = wd.first_column("tx.csv").pop().unwrap();
    for (errs_on, code) in [("1".to_string(), 3), (last, 0)] {
        wd.rules(rules_with_columns(&rule(
            1,
            &format!("if id == {errs_on} {{ throw \"x\" }} true"),
        )));
        // The header and the first row's result: the first task (one row) was written.
        let (lines, run) = wd.lines_then_close(
            std::time::Duration::from_secs(60),
            2,
            &[
                "run",
                "tx.csv",
                "--rules",
                "rules.toml",
                "--fail-on",
                "error",
                "--summary",
                "s.json",
                "-q",
            ],
        );
        assert!(lines.starts_with(RESULTS_HEADER), "{lines}");
        run.expect_code(code);
        assert_eq!(wd.json("s.json")["exit_code"], code);
        if code == 3 {
            run.expect_stderr(
                "txguard: exit 3: a result named by --fail-on occurred: 1 error (--fail-on error)\n",
            );
        } else {
            run.expect_stderr("");
        }
    }
}

#[test]
fn standard_input_can_be_the_input() {
    let wd = Workdir::new("stdin");
    wd.rules(rules_with_columns(&rule(1, "amount > 1.0")));
    let run = wd.run_with_stdin(
        &["run", "-", "--rules", "rules.toml", "-q"],
        "id,amount\n1,5\n2,0.5\n",
    );
    run.expect_success();
    assert_eq!(
        run.stdout(),
        format!("{RESULTS_HEADER}1,1,true,\n2,1,false,\n")
    );
}

#[test]
fn the_summary_counts_every_result_kind_per_rule() {
    let wd = Workdir::new("summary");
    wd.create("tx.csv", "id,amount\n1,5\n2,20000\n3,1\n");
    wd.rules(rules_with_columns(
        &(rule(7, "amount > 10.0") + &*rule(8, "if id == 3 { throw \"x\" } true")),
    ));
    let run = wd.txguard_run(&["-o", "out.csv"]);
    run.expect_success()
        .expect_stderr_contains("txguard: 3 transactions × 2 rules = 6 results")
        .expect_stderr_contains("       7  rule7          1          2          0          0")
        .expect_stderr_contains("       8  rule8          2          0          1          0")
        .expect_stderr_contains("bad rows: 0");
}

#[test]
fn bad_command_lines_exit_2() {
    let wd = Workdir::new("usage");
    wd.run(&["run", "tx.csv"]).expect_code(2);
    wd.run(&["run", "tx.csv", "--rules", "r.toml", "--executor", "fibers"])
        .expect_code(2);
    wd.run(&["run", "tx.csv", "--rules", "r.toml", "--timeout", "soon"])
        .expect_code(2);
    wd.run(&["run", "tx.csv", "--rules", "r.toml", "-j", "0"])
        .expect_code(2);
    wd.run(&["frobnicate"]).expect_code(2);
    wd.create("tx.csv", "id\n1\n");
    wd.create(
        "r.toml",
        "[[rule]]\nid = 1\nname = \"a\"\nwhen = \"true\"\n",
    );
    wd.run(&[
        "run",
        "tx.csv",
        "--rules",
        "r.toml",
        "-o",
        "out.csv",
        "--bad-rows",
        "skip",
        "--rejects",
        "./out.csv",
    ])
    .expect_code(2)
    .expect_stderr_contains("--output and --rejects name the same file");
    wd.run(&["run", "tx.csv", "--rules", "r.toml", "-o", "tx.csv"])
        .expect_code(2)
        .expect_stderr_contains("INPUT and --output");
    assert_eq!(wd.read("tx.csv"), "id\n1\n");
    wd.run(&[
        "run",
        "tx.csv",
        "--rules",
        "r.toml",
        "-o",
        "/dev/null",
        "--summary",
        "/dev/null",
        "-q",
    ])
    .expect_success();
}

#[test]
fn the_progress_bar_shows_counts_only_when_asked_off_a_terminal() {
    let wd = Workdir::new("progress");
    wd.generate("tx.csv", 20000, 0);
    wd.rules(rules_with_columns(&rule(1, "amount > 1.0")));
    let run = wd.txguard_run(&["-o", "out.csv", "-q", "--progress", "always"]);
    run.expect_success()
        .expect_stderr_contains(" tx/s, ")
        .expect_stderr_contains(" error, ")
        .expect_stderr_contains(" timeout, ETA ");
    let run = wd.txguard_run(&["-o", "out.csv", "-q"]);
    assert_eq!(
        run.stderr(),
        "",
        "auto: no bar when stderr is not a terminal"
    );
}

#[test]
fn results_waiting_behind_a_slow_row_hold_no_more_than_the_byte_budget() {
    // Lanes went on while the first row slept, and the writer held every result behind
    // it: 509 MB for a million rows, where the budget allows a few MiB in flight.
    let Ok(time) = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M", "true"])
        .output()
    else {
        println!("skipped: no /usr/bin/time to measure the peak memory with");
        return;
    };
    if !time.status.success() {
        println!("skipped: /usr/bin/time -f %M does not work here");
        return;
    }
    let wd = Workdir::new("slow-row-memory");
    let rows = 60_000;
    let mut csv = String::from("id\n");
    for i in 1..=rows {
        csv.push_str(&format!("{i}\n"));
    }
    wd.create("tx.csv", csv);
    // About 3.7 KB of results a row (each detail is cut at 1 KiB): 220 MB in all.
    let mut rules = String::from(
        "[[rule]]\nid = 1\nname = \"slow\"\ntimeout = \"30s\"\n\
         when = '''if id == \"1\" { sleep_ms(6000) } true'''\n\n",
    );
    for id in 2..=5 {
        rules.push_str(&rule(id, &format!("throw \"{}\"", "e".repeat(900))));
    }
    wd.rules(rules);
    let run = wd.output_within(
        std::time::Duration::from_secs(300),
        &mut wd.sh(
            "/usr/bin/time -f 'peak %M' \"$TXGUARD\" run tx.csv --rules rules.toml \
             -o out.csv -j 3 -q",
        ),
    );
    run.expect_success();
    let stderr = run.stderr();
    let peak_kib: u64 = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("peak "))
        .next_back()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory\n{}", run.describe()));
    assert!(
        peak_kib < 150 * 1024,
        "peak RSS {peak_kib} KiB\n{}",
        run.describe()
    );
    let out = wd.read_bytes("out.csv");
    let lines = out.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines, 1 + 5 * rows, "every result is written");
}

#[test]
fn a_rules_file_without_end_is_refused_not_read_into_memory() {
    // `--rules` read its file whole, whatever its size: `--rules /dev/zero`, or the
    // input named in its place (`run rules.toml --rules tx.csv`), filled memory until the
    // kernel killed the run.
    let wd = Workdir::new("endless-rules");
    wd.create("tx.csv", "id\n1\n");
    let limit = std::time::Duration::from_secs(60);
    let message = "/dev/zero: cannot read: larger than 64 MiB: not a rules file\n";
    wd.run_within(
        limit,
        &["run", "tx.csv", "--rules", "/dev/zero", "-o", "out.csv"],
    )
    .expect_code(1)
    .expect_stderr(&format!(
        "txguard: error: /dev/zero has 1 error:\n  {message}"
    ));
    wd.run_within(limit, &["check", "/dev/zero"])
        .expect_code(1)
        .expect_stderr(&format!(
            "txguard: error: /dev/zero has 1 error:\n  {message}"
        ));
    assert!(!wd.exists("out.csv"));
}

#[test]
fn a_run_is_its_lanes_with_no_reader_or_writer_thread() {
    // `-j N` is N threads: the lanes frame the input and write the results themselves. A
    // reader thread and a writer beside them made a `-j 1` run use more than one core.
    use std::io::Write;
    for jobs in [1usize, 3] {
        let wd = Workdir::new("threads");
        wd.rules(rules_with_columns(&rule(1, "amount > 10.0")));
        let mut cmd = wd.command(&[
            "run",
            "-",
            "--rules",
            "rules.toml",
            "-o",
            "out.csv",
            "-j",
            &jobs.to_string(),
            "-q",
        ]);
        cmd.stdin(std::process::Stdio::piped());
        let mut running = wd.spawn(&mut cmd);
        let mut stdin = running.take_stdin().expect("stdin");
        // Some chunks (of 1 MiB), so that the lanes start; then the input stays open and
        // every thread of the run waits for it.
        let rows: String = (0..300_000)
            .map(|i| format!("{i},{}.5\n", i % 50))
            .collect();
        stdin.write_all(b"id,amount\n").unwrap();
        stdin.write_all(rows.as_bytes()).unwrap();
        let pid = running.pid();
        let mut expected: Vec<String> = (0..jobs).map(|i| format!("lane-{i}")).collect();
        expected.push("signals".into());
        let threads = || {
            let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .flatten()
                .filter(|task| task.file_name().to_str() != Some(&pid.to_string()))
                .map(|task| {
                    let comm = std::fs::read_to_string(task.path().join("comm")).unwrap();
                    comm.trim_end().to_string()
                })
                .collect();
            names.sort();
            names
        };
        // The input is opened on a thread of its own, which ends once the run starts.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            crate::workdir::wait_until_blocked(pid);
            let seen = threads();
            if seen == expected || std::time::Instant::now() > until {
                assert_eq!(
                    seen, expected,
                    "-j {jobs}: the threads besides the main one"
                );
                break;
            }
        }
        drop(stdin);
        running
            .finish_within(std::time::Duration::from_secs(120))
            .expect_success();
        assert_eq!(wd.read("out.csv").lines().count(), 300_001, "-j {jobs}");
    }
}
