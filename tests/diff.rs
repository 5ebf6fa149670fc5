//! `txguard diff`: exact changes on a hand-made input, a file against itself, and the
//! same answer as two `run`s compared, in both executors.

use std::collections::BTreeMap;

use crate::workdir::Workdir;

const OLD: &str = r#"
[columns]
amount = "float"

[[rule]]
id = 1
name = "big"
when = "amount > 100.0"
score = 40

[[rule]]
id = 2
name = "iran"
when = 'country == "IR"'
score = 60

[[rule]]
id = 4
name = "flip"
when = "coin_flip()"

[decision]
thresholds = { review = 50, block = 100 }
"#;

fn new_rules() -> String {
    OLD.replace("amount > 100.0", "amount > 300.0").replace(
        "[decision]",
        "[[rule]]\nid = 3\nname = \"fr\"\nwhen = 'country == \"FR\"'\nscore = 50\n\n[decision]",
    )
}

const TX: &str = "id,amount,country\n1,500.0,IR\n2,5.5,IR\n3,200,FR\n4,1,FR\n";

#[test]
fn changes_counts_and_labels_are_exact() {
    let wd = Workdir::new("diff");
    wd.create("old.toml", OLD);
    wd.create("new.toml", new_rules());
    wd.create("tx.csv", TX);
    wd.create(
        "labels.csv",
        "transaction_id,label\n1,true\n2,false\n3,true\n",
    );
    for executor in ["threads", "processes"] {
        let run = wd.run(&[
            "diff",
            "old.toml",
            "new.toml",
            "tx.csv",
            "-o",
            "changes.csv",
            "--labels",
            "labels.csv",
            "--summary",
            "s.json",
            "--executor",
            executor,
            "-j",
            "2",
        ]);
        run.expect_success()
            .expect_stderr_contains("       1  big           2          1          1\n")
            .expect_stderr_contains("       3  fr            -          2          4\n")
            .expect_stderr_contains("changed: 5 pairs in 4 transactions");
        assert_eq!(
            wd.read("changes.csv"),
            "transaction_id,rule_id,old,new\n\
             1,3,,false\n\
             2,3,,false\n\
             3,1,true,false\n\
             3,3,,true\n\
             3,,pass,review\n\
             4,3,,true\n\
             4,,pass,review\n"
        );
        let s = wd.json("s.json");
        assert_eq!(s["pairs_changed"], 5);
        assert_eq!(s["transactions_changed"], 4);
        assert_eq!(
            s["decisions"]["matrix"],
            serde_json::json!([[0, 2, 0], [0, 1, 0], [0, 0, 1]])
        );
        assert_eq!(s["rules"][0]["scores_new"]["recall"], 0.5);
        assert_eq!(s["rules"][0]["scores_old"]["f1"], 1.0);
        assert_eq!(s["labelled"]["transactions"], 3);
    }
    wd.run(&[
        "diff",
        "old.toml",
        "new.toml",
        "tx.csv",
        "-o",
        "changes.csv",
        "--fail-on-change",
        "-q",
    ])
    .expect_code(3);
}

#[test]
fn a_file_against_itself_changes_nothing() {
    let wd = Workdir::new("diff-self");
    wd.create("old.toml", OLD);
    wd.generate("tx.csv", 300, 5);
    for executor in ["threads", "processes"] {
        let run = wd.run(&[
            "diff",
            "old.toml",
            "old.toml",
            "tx.csv",
            "--fail-on-change",
            "--executor",
            executor,
        ]);
        run.expect_success()
            .expect_stdout("transaction_id,rule_id,old,new\n")
            .expect_stderr_contains("changed: 0 pairs in 0 transactions");
    }
}

/// (transaction, rule) → result, from a results file.
fn results(text: &str) -> BTreeMap<(String, String), String> {
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ',').collect();
            ((f[0].to_string(), f[1].to_string()), f[2].to_string())
        })
        .collect()
}

#[test]
fn diff_equals_two_runs_compared() {
    let wd = Workdir::new("diff-runs");
    wd.create("old.toml", OLD);
    // NEW also scores differently, so that decisions change where no result does.
    wd.create("new.toml", new_rules().replace("score = 60", "score = 70"));
    wd.generate("tx.csv", 400, 9);
    for (rules, out, decisions) in [
        ("old.toml", "a.csv", "da.csv"),
        ("new.toml", "b.csv", "db.csv"),
    ] {
        wd.run(&[
            "run",
            "tx.csv",
            "--rules",
            rules,
            "-o",
            out,
            "--decisions",
            decisions,
            "--seed",
            "3",
            "-q",
        ])
        .expect_success();
    }
    let (a, b) = (results(&wd.read("a.csv")), results(&wd.read("b.csv")));
    // transaction → decision, from a decisions file.
    let decided = |name: &str| -> BTreeMap<String, String> {
        wd.read(name)
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.splitn(4, ',').collect();
                (f[0].to_string(), f[2].to_string())
            })
            .collect()
    };
    let (da, db) = (decided("da.csv"), decided("db.csv"));
    let ids = wd.first_column("tx.csv");
    let mut expected = String::from("transaction_id,rule_id,old,new\n");
    for id in &ids {
        for rule in ["1", "2", "4", "3"] {
            let key = (id.clone(), rule.to_string());
            let (x, y) = (
                a.get(&key).cloned().unwrap_or_default(),
                b.get(&key).cloned().unwrap_or_default(),
            );
            if x != y {
                expected.push_str(&format!("{id},{rule},{x},{y}\n"));
            }
        }
        if da[id] != db[id] {
            expected.push_str(&format!("{id},,{},{}\n", da[id], db[id]));
        }
    }
    assert!(
        expected.contains(",,pass,review\n"),
        "decisions should change: {expected}"
    );
    assert!(
        expected.lines().count() > 100,
        "the change should show: {expected}"
    );
    for (executor, jobs) in [("threads", "3"), ("processes", "2")] {
        wd.run(&[
            "diff",
            "old.toml",
            "new.toml",
            "tx.csv",
            "-o",
            "c.csv",
            "--seed",
            "3",
            "--executor",
            executor,
            "-j",
            jobs,
            "-q",
        ])
        .expect_success();
        assert_eq!(wd.read("c.csv"), expected, "{executor}");
    }
}

#[test]
fn bad_rows_follow_the_policy_and_outputs_stay_intact() {
    let wd = Workdir::new("diff-bad");
    wd.create("old.toml", OLD);
    wd.create("new.toml", new_rules());
    wd.create(
        "tx.csv",
        "id,amount,country\n1,500.0,IR\n2,x,IR\n3,200,FR\n",
    );
    wd.create("changes.csv", "earlier\n");
    wd.run(&[
        "diff",
        "old.toml",
        "new.toml",
        "tx.csv",
        "-o",
        "changes.csv",
    ])
    .expect_code(1)
    .expect_stderr_contains("tx.csv:3: column \"amount\": \"x\" is not a float");
    assert_eq!(wd.read("changes.csv"), "earlier\n");
    wd.run(&[
        "diff",
        "old.toml",
        "new.toml",
        "tx.csv",
        "-o",
        "changes.csv",
        "--bad-rows",
        "skip",
        "-q",
    ])
    .expect_success();
    assert_eq!(
        wd.read("changes.csv.rejects.csv"),
        "line,reason,raw\n3,\"column \"\"amount\"\": \"\"x\"\" is not a float\",\"2,x,IR\"\n"
    );
    assert!(
        wd.read("changes.csv")
            .starts_with("transaction_id,rule_id,old,new\n1,3,,false\n")
    );
}

#[test]
fn labels_naming_no_transaction_are_said_and_f1_is_zero_when_nothing_is_found() {
    let wd = Workdir::new("diff-labels");
    wd.create("old.toml", OLD);
    wd.create("new.toml", new_rules());
    wd.create("tx.csv", TX);
    // Only transaction 3 is in the input; 99 and x are not: said, not dropped silently.
    wd.create(
        "labels.csv",
        "transaction_id,label\n3,true\n99,true\nx,false\n",
    );
    wd.run(&[
        "diff",
        "old.toml",
        "new.toml",
        "tx.csv",
        "-o",
        "changes.csv",
        "--labels",
        "labels.csv",
        "--summary",
        "s.json",
    ])
    .expect_success()
    .expect_stderr_contains(
        "  labels: 1 transactions labelled, 1 of them true\n  \
         labels: 2 name no transaction of the input (left out)\n",
    )
    // Rule 2 fires on no labelled transaction while 3 is to be found: no precision,
    // recall 0 and F1 0 (2TP / (2TP + FP + FN)), not undefined.
    .expect_stderr_contains("       2  iran       -  0.000  0.000       -  0.000  0.000");
    let s = wd.json("s.json");
    assert_eq!(s["labelled"]["unmatched_labels"], 2);
    let iran = &s["rules"][1]["scores_old"];
    assert_eq!(iran["precision"], serde_json::Value::Null);
    assert_eq!(iran["recall"], 0.0);
    assert_eq!(iran["f1"], 0.0);
    // NEW_RULES as an output is refused by its own name (diff has no --rules).
    wd.run(&["diff", "old.toml", "new.toml", "tx.csv", "-o", "new.toml"])
        .expect_code(2)
        .expect_stderr("txguard: error: NEW_RULES new.toml is also an output; every file of a diff must be distinct\n");
    assert!(wd.read("new.toml").contains("[[rule]]"));
    // A NEW that `run` refuses (a reason naming no column) is refused by diff too.
    wd.create(
        "new.toml",
        new_rules().replace("score = 50", "score = 50\nreason = \"{land}\""),
    );
    wd.run(&["diff", "old.toml", "new.toml", "tx.csv", "-q"])
        .expect_code(1)
        .expect_stderr_contains("rule 3 \"fr\": reason: {land} is not a variable of the input");
}

#[test]
fn a_reader_going_away_ends_a_diff_quietly_with_a_summary_of_what_was_written() {
    let wd = Workdir::new("diff-broken-pipe");
    wd.create("old.toml", OLD);
    wd.create("new.toml", new_rules());
    wd.generate("tx.csv", 100_000, 1);
    // Exit 0 commits the rejects too: the old ones stayed beside the new summary.
    wd.create("rejects.csv", "old\n");
    let (first, run) = wd.first_line_then_close(
        std::time::Duration::from_secs(60),
        &[
            "diff",
            "old.toml",
            "new.toml",
            "tx.csv",
            "--summary",
            "s.json",
            "--bad-rows",
            "skip",
            "--rejects",
            "rejects.csv",
        ],
    );
    assert_eq!(first, "transaction_id,rule_id,old,new\n");
    run.expect_code(0);
    let s = wd.json("s.json");
    let transactions = s["transactions"].as_u64().unwrap();
    assert!(transactions > 0 && transactions < 100_000, "{s}");
    assert_eq!(s["exit_code"], 0);
    // The decisions of exactly the transactions written.
    let decided: u64 = s["decisions"]["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(decided, transactions, "{s}");
    assert_eq!(wd.read("rejects.csv"), "line,reason,raw\n");
    assert_eq!(s["bad_rows"], 0, "{s}");
}

/// `--fail-on-change` answers for what the reader was sent: a gate reading `| head` must
/// not pass a change it was shown (exit 3; `run --fail-on` tests the other way round too).
#[test]
fn a_reader_going_away_after_a_change_gets_exit_3_under_fail_on_change() {
    let wd = Workdir::new("diff-broken-pipe-fail-on");
    wd.generate("tx.csv", 100_000, 1);
    wd.create("old.toml", crate::workdir::rule(1, "false"));
    // Every row a change: the pipe fills long before the end.
    wd.create("new.toml", crate::workdir::rule(1, "true"));
    let (lines, run) = wd.lines_then_close(
        std::time::Duration::from_secs(60),
        2,
        &[
            "diff",
            "old.toml",
            "new.toml",
            "tx.csv",
            "--fail-on-change",
            "--summary",
            "s.json",
            "-q",
        ],
    );
    assert_eq!(lines, "transaction_id,rule_id,old,new\n1,1,false,true\n");
    run.expect_code(3);
    let s = wd.json("s.json");
    assert_eq!(s["exit_code"], 3);
    let changed = s["pairs_changed"].as_u64().unwrap();
    assert!(changed > 0 && changed < 100_000, "{s}");
    run.expect_stderr(&format!(
        "txguard: exit 3: {changed} results changed in {changed} transactions (--fail-on-change)\n"
    ));
}

#[test]
fn windows_whose_where_reads_a_list_the_files_hold_differently_are_refused() {
    // The windows are computed once, with NEW's lists: a `where` reading a list that OLD
    // holds with other keys gave OLD the windows of NEW's list, so the diff reported no
    // change where `run OLD` and `run NEW` compared differ.
    let wd = Workdir::new("diff-windows-lists");
    wd.mkdir("old");
    wd.mkdir("new");
    wd.create("old/listed.csv", "country\nPL\n");
    wd.create("new/listed.csv", "country\nUS\n");
    let rules = "[lists.listed]\nfile = \"listed.csv\"\nkey = \"country\"\n\
                 [windows.n]\nkey = \"account\"\ntime = \"ts\"\nspan = \"1h\"\n\
                 function = \"count\"\nwhere = \"country in listed\"\n\
                 [[rule]]\nid = 1\nname = \"twice\"\nwhen = \"n >= 2\"\n";
    wd.create("old/rules.toml", rules);
    wd.create("new/rules.toml", rules);
    wd.create(
        "tx.csv",
        "id,account,ts,country\n1,A,2026-01-01T00:00:01Z,PL\n2,A,2026-01-01T00:00:02Z,PL\n\
         3,B,2026-01-01T00:00:03Z,US\n4,B,2026-01-01T00:00:04Z,US\n",
    );
    let run = |rules: &str| {
        wd.run(&["run", "tx.csv", "--rules", rules, "-q"])
            .expect_success()
            .stdout()
    };
    assert_eq!(
        run("old/rules.toml"),
        "transaction_id,rule_id,result,detail\n1,1,false,\n2,1,true,\n3,1,false,\n4,1,false,\n"
    );
    assert_eq!(
        run("new/rules.toml"),
        "transaction_id,rule_id,result,detail\n1,1,false,\n2,1,false,\n3,1,false,\n4,1,true,\n"
    );
    for (a, b) in [("old", "new"), ("new", "old")] {
        let (a, b) = (format!("{a}/rules.toml"), format!("{b}/rules.toml"));
        wd.run(&["diff", &a, &b, "tx.csv", "-o", "changes.csv", "-q"])
            .expect_code(2)
            .expect_stderr_contains("a [windows.*] `where` reads [lists.listed], which ");
        assert!(!wd.exists("changes.csv"));
    }
    // The same list contents in other bytes (a quoted key) are alike.
    wd.create("new/listed.csv", "country\n\"PL\"\n");
    wd.run(&[
        "diff",
        "old/rules.toml",
        "new/rules.toml",
        "tx.csv",
        "--fail-on-change",
        "-q",
    ])
    .expect_success()
    .expect_stdout("transaction_id,rule_id,old,new\n");
}

#[test]
fn control_characters_of_rule_names_never_reach_the_terminal() {
    // The diff table printed rule names raw: an escape sequence or a newline written in
    // the rules file reached the operator's terminal and broke the table's lines.
    let wd = Workdir::new("diff-control-names");
    let rules = "[[rule]]\nid = 1\nname = \"a\\u001b[2Jb\\nc\"\nwhen = \"true\"\n";
    wd.create("old.toml", rules);
    wd.create("new.toml", rules.replace("\"true\"", "\"false\""));
    wd.create("tx.csv", "id\n1\n");
    wd.create("labels.csv", "transaction_id,label\n1,true\n");
    let run = wd.run(&[
        "diff",
        "old.toml",
        "new.toml",
        "tx.csv",
        "--labels",
        "labels.csv",
        "-o",
        "changes.csv",
    ]);
    run.expect_success()
        .expect_stderr_contains("\n       1  a?[2Jb?c          1          0          1\n")
        .expect_stderr_contains(
            "\n       1  a?[2Jb?c   1.000  1.000  1.000       -  0.000  0.000\n",
        );
    assert!(
        !run.stderr().contains('\u{1b}'),
        "an escape reached stderr\n{}",
        run.describe()
    );
    assert_eq!(
        wd.read("changes.csv"),
        "transaction_id,rule_id,old,new\n1,1,true,false\n"
    );
}

#[test]
fn changes_streamed_into_a_device_that_fails_name_the_device() {
    // A failed write into a device named by `-o` was said to be on standard output.
    let wd = Workdir::new("diff-full-device");
    wd.create("old.toml", OLD);
    wd.create("new.toml", new_rules());
    wd.create("tx.csv", TX);
    let run = wd.run(&[
        "diff",
        "old.toml",
        "new.toml",
        "tx.csv",
        "-o",
        "/dev/full",
        "-q",
    ]);
    run.expect_code(1).expect_stderr(
        "txguard: error: the changes written to /dev/full are incomplete: cannot write \
         /dev/full: No space left on device (os error 28)\n",
    );
}

#[test]
fn a_labels_file_without_line_ends_is_refused_not_read_into_memory() {
    // `--labels` read one endless record from a file without line ends (`/dev/zero`)
    // until memory ran out (an abort, exit 134, or the machine's memory).
    let wd = Workdir::new("diff-endless-labels");
    wd.create("old.toml", OLD);
    wd.create("new.toml", new_rules());
    wd.create("tx.csv", TX);
    let args = [
        "diff",
        "old.toml",
        "new.toml",
        "tx.csv",
        "--labels",
        "/dev/zero",
        "-o",
        "changes.csv",
        "-q",
    ];
    wd.run_within(std::time::Duration::from_secs(60), &args)
        .expect_code(1)
        .expect_stderr(
            "txguard: error: cannot read --labels /dev/zero: a line longer than 1 MiB \
             (not a labels file?)\n",
        );
    assert!(!wd.exists("changes.csv"));
}

/// A bad label is named on its own line, after blank lines and in a CRLF or CR file: the
/// csv crate's record position is where its reading began, and said as is it named an
/// earlier line (line 2 for line 4 below), or line 1 in a CR file.
#[test]
fn a_bad_label_names_its_own_line_after_blank_lines_and_crlf() {
    let wd = Workdir::new("diff-label-lines");
    wd.create("old.toml", OLD);
    wd.create("new.toml", new_rules());
    wd.create("tx.csv", TX);
    let args = [
        "diff",
        "old.toml",
        "new.toml",
        "tx.csv",
        "--labels",
        "labels.csv",
        "-o",
        "changes.csv",
        "-q",
    ];
    for (labels, said) in [
        (
            &b"transaction_id,label\r\n1,true\r\n\r\n2,maybe\r\n"[..],
            "labels.csv:4: column \"label\": \"maybe\" is not true or false",
        ),
        (
            b"transaction_id,label\n1,true\n\n\n1,false\n",
            "labels.csv:5: transaction \"1\" is labelled twice",
        ),
        // Rows the csv crate itself would refuse, with a message of its own naming where
        // its reading began: a field too many or too few, invalid UTF-8.
        (
            b"transaction_id,label\r\n1,true\r\n\r\n2,false,x\r\n",
            "labels.csv:4: expected 2 fields, found 3",
        ),
        (
            b"transaction_id,label\n1,true\n\n\n2\n",
            "labels.csv:5: expected 2 fields, found 1",
        ),
        (
            b"transaction_id,label,note\r\n1,true,\r\n\r\n2,false,\xff\r\n",
            "labels.csv:4: not valid UTF-8",
        ),
        // Lone CR line ends, which the csv crate does not count.
        (
            b"transaction_id,label\r1,true\r\r2,maybe\r",
            "labels.csv:4: column \"label\": \"maybe\" is not true or false",
        ),
        // A quote left open at the end: the csv crate ends it there, so `2,"true` labelled
        // transaction 2 fraudulent without a word. Refused at its record's line, as a
        // list's is.
        (
            b"transaction_id,label\r1,false\r2,\"true",
            "labels.csv:3: quote opened here is never closed",
        ),
        (
            b"transaction_id,label\n\"1\n\",false\r\n\n\"2,true\n",
            "labels.csv:5: quote opened here is never closed",
        ),
    ] {
        wd.create("labels.csv", labels);
        wd.run(&args)
            .expect_code(1)
            .expect_stderr(&format!("txguard: error: --labels {said}\n"));
        assert!(!wd.exists("changes.csv"));
    }
    // Closed, the quote holds a label.
    wd.create("labels.csv", "transaction_id,label\r1,false\r2,\"true\"");
    wd.run(&args).expect_success();
}

/// An endless stream with line ends that is no labels file is refused at its header, as
/// before `--labels` was read whole: it was read until memory ran out (bounded here by
/// `ulimit -v`, an abort).
#[test]
fn an_endless_stream_that_is_no_labels_file_is_refused_at_its_header() {
    let wd = Workdir::new("diff-endless-stream-labels");
    wd.create("old.toml", OLD);
    wd.create("new.toml", new_rules());
    wd.create("tx.csv", TX);
    let mut sh = wd.sh(
        "ulimit -v 4000000; yes x | \"$TXGUARD\" diff old.toml new.toml tx.csv \
         --labels /dev/stdin -o changes.csv -q",
    );
    wd.output_within(std::time::Duration::from_secs(60), &mut sh)
        .expect_code(1)
        .expect_stderr(
            "txguard: error: --labels /dev/stdin: the header must name `transaction_id` and \
             `label`\n",
        );
    assert!(!wd.exists("changes.csv"));
    // Endless blank lines: no header within a line's worth of bytes.
    let mut sh = wd.sh(
        "ulimit -v 4000000; yes '' | \"$TXGUARD\" diff old.toml new.toml tx.csv \
         --labels /dev/stdin -o changes.csv -q",
    );
    wd.output_within(std::time::Duration::from_secs(60), &mut sh)
        .expect_code(1)
        .expect_stderr("txguard: error: --labels /dev/stdin: no header in its first 1 MiB\n");
    assert!(!wd.exists("changes.csv"));
}
