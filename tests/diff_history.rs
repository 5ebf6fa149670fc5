//! `txguard diff --history`: a backtest of a window rule on a daily batch sees the windows
//! its run saw (yesterday's rows first), so it equals the two runs, each with the same
//! `--history`, compared.

use crate::workdir::Workdir;

/// Two windows over six accounts, one filtered; OLD and NEW differ in rule 2's threshold.
fn rules(threshold: u32) -> String {
    format!(
        "[columns]\nid = \"int\"\namount = \"float\"\n\
         [windows.n_1h]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"count\"\n\
         [windows.big_2h]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"2h\"\nfunction = \"sum\"\n\
         of = \"amount\"\nwhere = \"amount >= 50.0\"\n\
         [[rule]]\nid = 1\nname = \"many\"\nwhen = \"n_1h >= 10\"\n\
         [[rule]]\nid = 2\nname = \"much\"\nwhen = \"big_2h > {threshold}.0\"\n"
    )
}

/// `n` rows from id `first` on, a minute apart from minute `first`, over six accounts.
fn rows(first: usize, n: usize) -> String {
    let mut csv = String::from("id,timestamp,account,amount\n");
    for id in first..first + n {
        let (h, m) = (id / 60, id % 60);
        let account = ["A", "B", "C", "D", "E", "F"][(id + id / 7) % 6];
        let amount = (id * 37) % 100;
        csv.push_str(&format!(
            "{id},2026-03-01T{h:02}:{m:02}:00Z,{account},{amount}.5\n"
        ));
    }
    csv
}

/// The changes two results files show, as `diff` writes them (rules 1 then 2).
fn changes(old: &str, new: &str) -> String {
    let mut out = String::from("transaction_id,rule_id,old,new\n");
    for (a, b) in old.lines().zip(new.lines()).skip(1) {
        let (a, b): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
        assert_eq!(a[..2], b[..2]);
        if a[2] != b[2] {
            out.push_str(&format!("{},{},{},{}\n", a[0], a[1], a[2], b[2]));
        }
    }
    out
}

#[test]
fn a_diff_with_history_equals_two_runs_with_it_compared() {
    let wd = Workdir::new("diff-history");
    wd.create("old.toml", rules(700));
    wd.create("new.toml", rules(800));
    wd.create("yesterday.csv", rows(0, 300));
    wd.create("today.csv", rows(300, 400));
    for (rules, out) in [("old.toml", "a.csv"), ("new.toml", "b.csv")] {
        wd.run(&[
            "run",
            "today.csv",
            "--rules",
            rules,
            "--history",
            "yesterday.csv",
            "-o",
            out,
            "-q",
        ])
        .expect_success();
    }
    let expected = changes(&wd.read("a.csv"), &wd.read("b.csv"));
    assert!(
        expected.lines().count() > 20,
        "the change should show: {expected}"
    );
    for (executor, jobs) in [("threads", "3"), ("processes", "2")] {
        let diff = wd.run(&[
            "diff",
            "old.toml",
            "new.toml",
            "today.csv",
            "--history",
            "yesterday.csv",
            "-o",
            "c.csv",
            "--summary",
            "s.json",
            "--executor",
            executor,
            "-j",
            jobs,
        ]);
        diff.expect_success()
            .expect_stderr_contains("  bad rows: 0\n  windows: at most ");
        diff.expect_stderr_contains(
            "\n  history: 300 rows read into the windows, 0 bad rows skipped\n",
        );
        assert_eq!(wd.read("c.csv"), expected, "{executor}");
        let summary = wd.json("s.json");
        assert_eq!(summary["windows"]["history_rows"], 300);
        assert_eq!(summary["windows"]["keys"], 6);
        assert_eq!(summary["transactions"], 400);
    }
    // Without the history, the first hours of today see fewer rows: other changes.
    wd.run(&[
        "diff",
        "old.toml",
        "new.toml",
        "today.csv",
        "-o",
        "d.csv",
        "-q",
    ])
    .expect_success();
    assert_ne!(wd.read("d.csv"), expected);
    let summary_without = wd.run(&[
        "diff",
        "old.toml",
        "new.toml",
        "today.csv",
        "--summary",
        "s.json",
        "-q",
    ]);
    summary_without.expect_success();
    assert_eq!(wd.json("s.json")["windows"]["history_rows"], 0);
}

#[test]
fn a_diff_history_is_checked_as_a_run_checks_it() {
    let wd = Workdir::new("diff-history-errors");
    wd.create("old.toml", rules(700));
    wd.create("new.toml", rules(800));
    let yesterday = rows(0, 30);
    wd.create("yesterday.csv", &yesterday);
    wd.create("today.csv", rows(30, 10));
    // Rules without windows have nothing for a history to fill.
    wd.create(
        "plain.toml",
        "[[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n",
    );
    wd.run(&[
        "diff",
        "plain.toml",
        "plain.toml",
        "today.csv",
        "--history",
        "yesterday.csv",
    ])
    .expect_code(2)
    .expect_stderr_contains("--history yesterday.csv: the rules declare no [windows.*]");
    // The input, or an output, as a history: refused, the file untouched.
    for extra in [["--history", "today.csv"], ["-o", "yesterday.csv"]] {
        let mut args = vec!["diff", "old.toml", "new.toml", "today.csv", "-q"];
        if extra[0] == "-o" {
            args.extend(["--history", "yesterday.csv"]);
        }
        args.extend(extra);
        wd.run(&args)
            .expect_code(2)
            .expect_stderr_contains("every file of a run must be distinct");
        assert_eq!(wd.read("yesterday.csv"), yesterday);
    }
    // A bad history row fails the diff, or is skipped and counted.
    let bad = yesterday.replace("2026-03-01T00:07:00Z", "yesterday");
    wd.create("bad.csv", &bad);
    let with_bad_history = |policy: &str| {
        wd.run(&[
            "diff",
            "old.toml",
            "new.toml",
            "today.csv",
            "--history",
            "bad.csv",
            "--bad-rows",
            policy,
            "-o",
            "c.csv",
        ])
    };
    with_bad_history("fail")
        .expect_code(1)
        .expect_stderr_contains("bad.csv:9");
    assert!(!wd.exists("c.csv"));
    with_bad_history("skip")
        .expect_success()
        .expect_stderr_contains("  history: 29 rows read into the windows, 1 bad rows skipped\n");
}

/// A history that is OLD_RULES or `--labels` was read as rows (exit 1, "no `id` column"),
/// and one that is NEW_RULES was refused as `--rules`, a flag `diff` does not have: each
/// is refused by the name the diff gives it, under any spelling, the file untouched.
#[test]
fn a_diff_history_that_is_a_rules_or_labels_file_is_refused_by_its_name() {
    let wd = Workdir::new("diff-history-is-a-read-file");
    wd.create("old.toml", rules(700));
    wd.create("new.toml", rules(800));
    wd.create("today.csv", rows(30, 10));
    wd.create("labels.csv", "transaction_id,label\n30,true\n");
    wd.mkdir("sub");
    for (history, flag, shown) in [
        ("old.toml", "OLD_RULES", "old.toml"),
        ("./sub/../old.toml", "OLD_RULES", "old.toml"),
        ("new.toml", "NEW_RULES", "new.toml"),
        ("labels.csv", "--labels", "labels.csv"),
    ] {
        wd.run(&[
            "diff",
            "old.toml",
            "new.toml",
            "today.csv",
            "--labels",
            "labels.csv",
            "--history",
            history,
            "-o",
            "c.csv",
        ])
        .expect_code(2)
        .expect_stderr(&format!(
            "txguard: error: --history and {flag} name the same file: {shown}; \
             every file of a diff must be distinct\n"
        ));
        assert!(!wd.exists("c.csv"));
    }
    assert_eq!(wd.read("old.toml"), rules(700));
}
