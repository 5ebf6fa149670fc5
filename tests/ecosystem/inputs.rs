//! Several inputs: `txguard run a.csv b.csv …` evaluates them in argument order into
//! one output; headers must have the same columns (any order); errors and rejects name
//! the file; the summary lists every input.

use crate::workdir::{RESULTS_HEADER, Workdir, rule, rules_with_columns};

fn setup(name: &str) -> Workdir {
    let wd = Workdir::new(name);
    wd.rules(rules_with_columns(&format!(
        "{}{}",
        rule(1, "amount > 10.0"),
        rule(2, "note == \"x\"")
    )));
    wd.create("a.csv", "id,amount,note\n1,50,x\n2,5,y\n");
    // The same columns in another order, and a bad row.
    wd.create("b.tsv", "note\tid\tamount\nx\t3\t70\ny\t4\t\nz\t5\t1\n");
    wd
}

#[test]
fn inputs_are_evaluated_in_argument_order_into_one_output() {
    let wd = setup("inputs");
    let ab = format!(
        "{RESULTS_HEADER}1,1,true,\n1,2,true,\n2,1,false,\n2,2,false,\n\
         3,1,true,\n3,2,true,\n5,1,false,\n5,2,false,\n"
    );
    for executor in ["threads", "processes"] {
        wd.run(&[
            "run",
            "a.csv",
            "b.tsv",
            "--rules",
            "rules.toml",
            "-o",
            "out.csv",
            "--bad-rows",
            "skip",
            "--summary",
            "s.json",
            "--executor",
            executor,
            "-j",
            "2",
        ])
        .expect_success();
        assert_eq!(wd.read("out.csv"), ab, "{executor}");
        assert_eq!(
            wd.read("out.csv.rejects.csv"),
            "input,line,reason,raw\nb.tsv,3,\"column \"\"amount\"\": \"\"\"\" is not a float\",\"y,4,\"\n"
        );
    }
    let summary = wd.json("s.json");
    assert_eq!(summary["transactions"], 4);
    assert_eq!(summary["bad_rows"], 1);
    assert_eq!(summary["input"], "a.csv");
    assert_eq!(
        summary["input_bytes"],
        28 + 33,
        "the sizes of a.csv and b.tsv"
    );
    assert_eq!(
        summary["inputs"],
        serde_json::json!([
            {"path": "a.csv", "bytes": 28, "transactions": 2, "bad_rows": 0},
            {"path": "b.tsv", "bytes": 33, "transactions": 2, "bad_rows": 1},
        ])
    );
    // The other order, and standard input among them; the table lists every input.
    let run = wd.run_with_stdin(
        &[
            "run",
            "b.tsv",
            "-",
            "--rules",
            "rules.toml",
            "--bad-rows",
            "skip",
            "--rejects",
            "r.csv",
        ],
        "id,amount,note\n1,50,x\n",
    );
    run.expect_success().expect_stdout(&format!(
        "{RESULTS_HEADER}3,1,true,\n3,2,true,\n5,1,false,\n5,2,false,\n1,1,true,\n1,2,true,\n"
    ));
    assert!(
        run.stderr().ends_with(
            "  bad rows: 1\n  b.tsv: 2 transactions, 1 bad rows\n  -: 1 transactions, 0 bad rows\n"
        ),
        "{}",
        run.stderr()
    );
}

#[test]
fn headers_that_disagree_are_named_before_any_work() {
    let wd = setup("inputs-disagree");
    wd.create("c.csv", "id,amt,note,extra\n9,1,x,e\n");
    wd.create("out.csv", "earlier\n");
    wd.run(&[
        "run",
        "a.csv",
        "c.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "-q",
    ])
    .expect_code(1)
    .expect_stderr(
        "txguard: error: c.csv:1: the header has other columns than a.csv's: it lacks \
             \"amount\"; it has \"amt\", \"extra\" too (inputs of one run need the same \
             columns, in any order)\n",
    );
    assert_eq!(wd.read("out.csv"), "earlier\n");
    // From standard input, found when its turn comes; nothing is committed either.
    wd.run_with_stdin(
        &[
            "run",
            "a.csv",
            "-",
            "--rules",
            "rules.toml",
            "-o",
            "out.csv",
            "-q",
        ],
        "id,note\n1,x\n",
    )
    .expect_code(1)
    .expect_stderr_contains(
        "<stdin>:1: the header has other columns than a.csv's: it lacks \"amount\"",
    );
    assert_eq!(wd.read("out.csv"), "earlier\n");
    // A bad row of the second input names it.
    wd.run(&[
        "run",
        "a.csv",
        "b.tsv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "-q",
    ])
    .expect_code(1)
    .expect_stderr("txguard: error: b.tsv:3: column \"amount\": \"\" is not a float\n");
    // The same file twice, standard input twice, or a missing one: refused.
    wd.run(&["run", "a.csv", "./a.csv", "--rules", "rules.toml", "-q"])
        .expect_code(2)
        .expect_stderr_contains("INPUT 1 and INPUT 2 name the same file");
    wd.run(&["run", "-", "-", "--rules", "rules.toml", "-q"])
        .expect_code(2)
        .expect_stderr_contains("INPUT 1 (standard input) and INPUT 2 (standard input)");
    // A file that is standard input too is the same file, and named as given.
    let mut same = wd.command(&["run", "a.csv", "-", "--rules", "rules.toml", "-q"]);
    same.stdin(std::fs::File::open(wd.path("a.csv")).unwrap());
    wd.output_of(&mut same).expect_code(2).expect_stderr(
        "txguard: error: INPUT 1 and INPUT 2 (standard input) name the same file: standard \
         input; every file of a run must be distinct\n",
    );
    wd.run(&[
        "run",
        "a.csv",
        "missing.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "-q",
    ])
    .expect_code(1)
    .expect_stderr_contains("cannot open input missing.csv");
    // Found before any work: nothing was streamed.
    wd.run(&["run", "a.csv", "missing.csv", "--rules", "rules.toml", "-q"])
        .expect_code(1)
        .expect_stdout("")
        .expect_stderr(
            "txguard: error: cannot open input missing.csv: No such file or directory (os error 2)\n",
        );
    assert_eq!(wd.read("out.csv"), "earlier\n");
    // So is a directory among them, before the first input streams a single result.
    wd.mkdir("dir");
    wd.run(&["run", "a.csv", "dir", "--rules", "rules.toml", "-q"])
        .expect_code(1)
        .expect_stdout("")
        .expect_stderr("txguard: error: cannot read dir: is a directory\n");
}

#[test]
fn a_failed_runs_summary_counts_no_input() {
    // b.tsv's bad row fails the run after a.csv was read whole: the summary's totals are
    // zero, and so are a.csv's, not its 2 transactions beside `transactions: 0`.
    let wd = setup("inputs-failed-summary");
    wd.run(&[
        "run",
        "a.csv",
        "b.tsv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "--summary",
        "s.json",
    ])
    .expect_code(1);
    let summary = wd.json("s.json");
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["transactions"], 0);
    assert_eq!(summary["input_bytes"], 0);
    assert_eq!(
        summary["inputs"],
        serde_json::json!([
            {"path": "a.csv", "bytes": 0, "transactions": 0, "bad_rows": 0},
            {"path": "b.tsv", "bytes": 0, "transactions": 0, "bad_rows": 0},
        ])
    );
    assert!(!wd.exists("out.csv"));
}

#[test]
fn columns_hold_for_every_input() {
    // With --columns no input has a header row: the check of the other inputs' headers
    // took b's first row for its header ("no `id` column in the header") and refused
    // every run of several headerless inputs.
    let wd = setup("inputs-columns");
    wd.create("a.nh", "1,50,x\n2,5,y\n");
    wd.create("b.nh", "3,70,x\n4,1,z\n");
    let expected = format!(
        "{RESULTS_HEADER}1,1,true,\n1,2,true,\n2,1,false,\n2,2,false,\n\
         3,1,true,\n3,2,true,\n4,1,false,\n4,2,false,\n"
    );
    for executor in ["threads", "processes"] {
        wd.run(&[
            "run",
            "a.nh",
            "b.nh",
            "--columns",
            "id,amount,note",
            "--rules",
            "rules.toml",
            "-q",
            "--executor",
            executor,
        ])
        .expect_success()
        .expect_stdout(&expected);
    }
}
