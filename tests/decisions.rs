//! Scores, reasons, `[decision]`, `--decisions`, `--explain` and what `check` says about
//! them: exact files on a small hand-made input.

use crate::workdir::Workdir;

const RULES: &str = r#"
[columns]
id = "int"
amount = "float"

[[rule]]
id = 1
name = "big"
when = "amount > 100.0"
score = 40
reason = "amount {amount} from {country}"

[[rule]]
id = 2
name = "iran"
when = 'country == "IR"'
score = 60

[[rule.example]]
row = { id = 1, amount = 500.0, country = "IR" }
expect = true
decision = "block"

[[rule]]
id = 3
name = "broken"
when = 'if amount < 2.0 { throw "no, x" } false'

[decision]
thresholds = { review = 50, block = 100 }
error_score = 7
"#;

const TX: &str = "id,amount,country,note\n1,500.0,IR,x\n2,5.5,IR,y\n3,200,\"F,R\",z\n4,1,FR,w\n";

fn workdir(name: &str) -> Workdir {
    let wd = Workdir::new(name);
    wd.rules(RULES);
    wd.create("tx.csv", TX);
    wd
}

#[test]
fn scores_decisions_reasons_and_explanations_are_exact_in_both_executors() {
    let wd = workdir("decisions");
    for executor in ["threads", "processes"] {
        for jobs in ["1", "2"] {
            let run = wd.txguard_run(&[
                "-o",
                "out.csv",
                "--decisions",
                "dec.csv",
                "--explain",
                "--executor",
                executor,
                "-j",
                jobs,
                "--summary",
                "s.json",
                "--fail-on",
                "block",
            ]);
            run.expect_code(3)
                .expect_stderr_contains("  decisions: 2 pass, 1 review, 1 block\n")
                .expect_stderr_contains("a result named by --fail-on occurred: 1 block");
            assert_eq!(
                wd.read("out.csv"),
                "transaction_id,rule_id,result,detail\n\
                 1,1,true,amount 500.0 from IR; amount=500.0\n\
                 1,2,true,\"country=\"\"IR\"\"\"\n\
                 1,3,false,\n\
                 2,1,false,\n\
                 2,2,true,\"country=\"\"IR\"\"\"\n\
                 2,3,false,\n\
                 3,1,true,\"amount 200.0 from F,R; amount=200.0\"\n\
                 3,2,false,\n\
                 3,3,false,\n\
                 4,1,false,\n\
                 4,2,false,\n\
                 4,3,error,\"Runtime error: no, x (line 1, position 19)\"\n"
            );
            assert_eq!(
                wd.read("dec.csv"),
                "transaction_id,score,decision,reasons\n\
                 1,100,block,1:amount 500.0 from IR | 2:iran\n\
                 2,60,review,2:iran\n\
                 3,40,pass,\"1:amount 200.0 from F,R\"\n\
                 4,7,pass,\n"
            );
            let summary = wd.json("s.json");
            assert_eq!(
                summary["decisions"],
                serde_json::json!([
                    {"decision": "pass", "transactions": 2},
                    {"decision": "review", "transactions": 1},
                    {"decision": "block", "transactions": 1},
                ])
            );
        }
    }
    // A reason may name a column no script reads: it is kept for the reason.
    wd.rules(RULES.replace("from {country}", "({note})"));
    wd.txguard_run(&["-o", "out.csv", "-q"]).expect_success();
    assert!(wd.read("out.csv").contains("\n1,1,true,amount 500.0 (x)\n"));
    wd.rules(RULES);
    // Without --explain, `detail` holds the reason alone.
    wd.txguard_run(&["-o", "out.csv", "-q"]).expect_success();
    assert!(
        wd.read("out.csv")
            .contains("\n1,1,true,amount 500.0 from IR\n1,2,true,\n")
    );
    // The decisions on standard output, the results in a file.
    let run = wd.txguard_run(&["-o", "out.csv", "--decisions", "-", "-q"]);
    run.expect_success();
    assert!(
        run.stdout()
            .starts_with("transaction_id,score,decision,reasons\n1,100,block,")
    );
}

#[test]
fn files_without_scores_reasons_or_decision_give_todays_output() {
    let wd = Workdir::new("no-decisions");
    wd.rules("[columns]\namount = \"float\"\n[[rule]]\nid = 1\nname = \"big\"\nwhen = \"amount > 100.0\"\n");
    wd.create("tx.csv", TX);
    let run = wd.txguard_run(&["-o", "out.csv", "--summary", "s.json"]);
    run.expect_success().expect_stderr_lacks("decisions");
    assert_eq!(
        wd.read("out.csv"),
        "transaction_id,rule_id,result,detail\n1,1,true,\n2,1,false,\n3,1,true,\n4,1,false,\n"
    );
    assert!(wd.json("s.json").get("decisions").is_none());
    // --decisions needs [decision]; --fail-on a decision the file lacks is a usage error.
    wd.txguard_run(&["-o", "out.csv", "--decisions", "d.csv"])
        .expect_code(2)
        .expect_stderr_contains("--decisions: rules.toml has no [decision] table");
    wd.txguard_run(&[
        "-o",
        "out.csv",
        "--fail-on",
        "review",
        "--summary",
        "t.json",
    ])
    .expect_code(2)
    .expect_stderr_contains("--fail-on review: neither a result");
    assert!(!wd.exists("d.csv") && !wd.exists("t.json"));
    // A failed run leaves an earlier decisions file as it was.
    let wd2 = workdir("decisions-atomic");
    wd2.create("dec.csv", "earlier\n");
    wd2.create("tx.csv", format!("{TX}5,x,IR,v\n"));
    wd2.txguard_run(&["-o", "out.csv", "--decisions", "dec.csv"])
        .expect_code(1)
        .expect_stderr_contains("tx.csv:6: column \"amount\": \"x\" is not a float");
    assert_eq!(wd2.read("dec.csv"), "earlier\n");
    assert!(!wd2.exists("out.csv"));
    // Two outputs on standard output, or --decisions on the results file: refused.
    wd.txguard_run(&["--decisions", "-"]).expect_code(2);
    wd.txguard_run(&["-o", "out.csv", "--decisions", "out.csv"])
        .expect_code(2)
        .expect_stderr_contains("--output and --decisions name the same file");
}

#[test]
fn check_validates_thresholds_templates_example_decisions_and_reports_coverage() {
    let wd = workdir("check-decisions");
    wd.run(&["check", "rules.toml"])
        .expect_success()
        .expect_stderr(
            "rules.toml: 3 rules compile; 1 examples pass\n\
             coverage: 2 of 3 rules have no example expecting true: 1 \"big\", 3 \"broken\"\n\
             coverage: 3 of 3 rules have no example expecting false: 1 \"big\", 2 \"iran\", 3 \"broken\"\n",
        );
    let bad = RULES
        .replace(
            "review = 50, block = 100",
            "review = 100, pass = 150, block = 50",
        )
        .replace("{country}", "{land}")
        .replace("decision = \"block\"", "decision = \"deny\"");
    wd.rules(bad);
    wd.run(&["check", "rules.toml", "--input", "tx.csv"])
        .expect_code(1)
        .expect_stderr(
            "txguard: error: rules.toml has 5 errors:\n  \
             rules.toml:11: rule 1 \"big\": reason: {land} is not a variable of the input (columns: id, amount, country, note)\n  \
             rules.toml:22: rule 2 \"iran\": example 1: decision = \"deny\" is not a decision (decisions: pass, review)\n  \
             rules.toml:27: rule 3 \"broken\": 1 of the first 4 rows of tx.csv give error or timeout (first: id 4: error (Runtime error: no, x (line 1, position 19)))\n  \
             rules.toml:30: [decision] threshold \"pass\": \"pass\" is the decision below every threshold\n  \
             rules.toml:30: [decision] threshold \"block\" = 50 must be above the one before it (\"review\" = 100): thresholds increase in the order written\n",
        );
    wd.rules(RULES.replace("{amount}", "{amount"));
    wd.run(&["check", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains(
            "rules.toml:11: rule 1 \"big\": reason: character 8: {amount from {country} does not name a variable",
        );
    // An example whose decision does not come out.
    wd.rules(RULES.replace("decision = \"block\"", "decision = \"review\""));
    wd.run(&["check", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains("example 1: expected decision review, got block (score 100)");
}

#[test]
fn explained_values_keep_their_spaces_and_reasons_stay_one_line() {
    let wd = Workdir::new("decisions-hostile");
    wd.rules(
        "[[rule]]\nid = 1\nname = \"two\\nlines, \\\"quoted\\\"\"\nwhen = 'note != \"\"'\nscore = 5\n\
         [decision]\nthresholds = { review = 5 }\n",
    );
    // Two spaces, a tab and a newline in a value: --explain shows them as they are
    // (escaped, never collapsed); the name of a rule without `reason` is one line.
    wd.create("tx.csv", "id,note\n1,\"a  b\tc\nd\"\n");
    wd.txguard_run(&["-o", "out.csv", "--decisions", "dec.csv", "--explain"])
        .expect_success();
    assert_eq!(
        wd.read("out.csv"),
        "transaction_id,rule_id,result,detail\n1,1,true,\"note=\"\"a  b\\tc\\nd\"\"\"\n"
    );
    assert_eq!(
        wd.read("dec.csv"),
        "transaction_id,score,decision,reasons\n1,5,review,\"1:two lines, \"\"quoted\"\"\"\n"
    );
}

#[test]
fn a_failed_run_says_its_streamed_decisions_are_incomplete_and_what_fail_on_found() {
    let wd = workdir("decisions-streamed");
    wd.create("bad.csv", format!("{TX}5,x,IR,v\n"));
    wd.run(&[
        "run",
        "bad.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "--decisions",
        "-",
    ])
    .expect_code(1)
    .expect_stderr_contains(
        "decisions on standard output are incomplete: bad.csv:6: column \"amount\": \"x\" is not a float",
    );
    // A summary that cannot be written commits nothing; the message still counts the
    // decisions --fail-on found.
    wd.txguard_run(&[
        "-o",
        "out.csv",
        "--fail-on",
        "block,review",
        "--summary",
        "/dev/full",
        "-q",
    ])
    .expect_code(1)
    .expect_stderr_contains(
        "would have exited 3: a result named by --fail-on occurred: 1 block, 1 review (--fail-on block,review)",
    );
}

#[test]
fn a_decision_may_not_take_a_results_name() {
    let wd = workdir("decisions-names");
    // `--fail-on error` means the result: a decision named `error` could never be named.
    wd.rules(RULES.replace("review = 50, block = 100", "error = 50, block = 100"));
    wd.run(&["check", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains(
            "rules.toml:30: [decision] threshold \"error\": true, false, error and timeout are results, not decisions (`--fail-on error` could not tell them apart)",
        );
    wd.txguard_run(&["-o", "out.csv", "--fail-on", "error"])
        .expect_code(1)
        .expect_stderr_contains("threshold \"error\": true, false, error and timeout");
    assert!(!wd.exists("out.csv"));
}

#[test]
fn the_summary_after_a_broken_pipe_counts_the_decisions_written() {
    let wd = workdir("decisions-broken-pipe");
    wd.generate("tx.csv", 100_000, 0);
    let (_, run) = wd.first_line_then_close(
        std::time::Duration::from_secs(60),
        &[
            "run",
            "tx.csv",
            "--rules",
            "rules.toml",
            "--summary",
            "s.json",
            "-q",
        ],
    );
    run.expect_success();
    let json = wd.json("s.json");
    let transactions = json["transactions"].as_u64().unwrap();
    let decided: u64 = json["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["transactions"].as_u64().unwrap())
        .sum();
    assert!(transactions > 0 && transactions < 100_000, "{json}");
    assert_eq!(
        decided, transactions,
        "every transaction written has its decision: {json}"
    );
}
