//! `-d/--delimiter` (a tab by default for `.tsv`/`.tab`), the "did you mean" hint, and
//! `--id-column`, for `run` and `check --input` alike.

use crate::workdir::{RESULTS_HEADER, Workdir, rule, rules_with_columns};

fn setup(name: &str) -> Workdir {
    let wd = Workdir::new(name);
    wd.rules(rules_with_columns(&rule(1, "amount > 10.0")));
    wd
}

#[test]
fn a_semicolon_file_is_read_with_its_delimiter_and_otherwise_named_in_a_hint() {
    let wd = setup("semicolon");
    wd.create("tx.csv", "id;amount;note\n1;50;\"a;b\"\n2;5;x\n");
    let expected = format!("{RESULTS_HEADER}1,1,true,\n2,1,false,\n");
    for flag in [&["-d", ";"][..], &["--delimiter", ";"], &["--delimiter=;"]] {
        let mut args = vec!["-q"];
        args.extend_from_slice(flag);
        wd.txguard_run(&args)
            .expect_success()
            .expect_stdout(&expected);
    }
    wd.txguard_run(&["-q"]).expect_code(1).expect_stderr(
        "txguard: error: tx.csv:1: no `id` column in the header (found \"id;amount;note\"); \
         did you mean `--delimiter ';'`?\n",
    );
    wd.run(&["check", "rules.toml", "--input", "tx.csv"])
        .expect_code(1)
        .expect_stderr_contains("did you mean `--delimiter ';'`?");
    wd.run(&["check", "rules.toml", "--input", "tx.csv", "-d", ";"])
        .expect_success();
}

#[test]
fn tsv_and_tab_names_default_to_a_tab_and_the_flag_wins() {
    let wd = setup("tsv");
    let tsv = "id\tamount\tnote\n1\t50\ta,b\n";
    let expected = format!("{RESULTS_HEADER}1,1,true,\n");
    for name in ["tx.tsv", "tx.TAB"] {
        wd.create(name, tsv);
        wd.run(&["run", name, "--rules", "rules.toml", "-q"])
            .expect_success()
            .expect_stdout(&expected);
    }
    // Standard input has no name: a comma, unless told.
    wd.run_with_stdin(
        &["run", "-", "--rules", "rules.toml", "-q", "-d", "\\t"],
        tsv,
    )
    .expect_success()
    .expect_stdout(&expected);
    wd.run_with_stdin(&["run", "-", "--rules", "rules.toml", "-q"], tsv)
        .expect_code(1)
        .expect_stderr_contains("did you mean `--delimiter '\\t'`?");
    // A .tsv that is really comma-separated, told so.
    wd.create("comma.tsv", "id,amount\n1,50\n");
    wd.run(&["run", "comma.tsv", "--rules", "rules.toml", "-q", "-d", ","])
        .expect_success()
        .expect_stdout(&expected);
}

#[test]
fn delimiters_that_cannot_work_are_refused_on_the_command_line() {
    let wd = setup("bad-delimiter");
    wd.create("tx.csv", "id,amount\n1,5\n");
    for (bad, why) in [
        ("\"", "quote or a line terminator"),
        (";;", "not one ASCII character"),
        ("é", "not one ASCII character"),
    ] {
        wd.txguard_run(&["-d", bad])
            .expect_code(2)
            .expect_stderr_contains(why);
    }
}

#[test]
fn the_id_column_may_have_another_name_and_results_still_say_transaction_id() {
    let wd = Workdir::new("id-column");
    wd.rules(
        "[columns]\ntxn_id = \"int\"\namount = \"float\"\n\n\
         [[rule]]\nid = 1\nname = \"even\"\nwhen = \"txn_id % 2 == 0 && amount > 1.0\"\n",
    );
    wd.create("tx.csv", "amount,txn_id\n5,10\n5,11\n7,\n");
    wd.txguard_run(&[
        "--id-column",
        "txn_id",
        "-q",
        "--bad-rows",
        "skip",
        "--rejects",
        "rej.csv",
    ])
    .expect_success()
    .expect_stdout(&format!("{RESULTS_HEADER}10,1,true,\n11,1,false,\n"));
    assert_eq!(
        wd.read("rej.csv"),
        "line,reason,raw\n4,\"column \"\"txn_id\"\" is empty\",\"7,\"\n"
    );
    wd.txguard_run(&["-q"]).expect_code(1).expect_stderr(
        "txguard: error: tx.csv:1: no `id` column in the header (found \"amount\", \"txn_id\"); did you mean `--id-column txn_id`?\n",
    );
    // `check --input` reads the same way: the empty id is found, by its column's name.
    let check = [
        "check",
        "rules.toml",
        "--input",
        "tx.csv",
        "--id-column",
        "txn_id",
    ];
    wd.run(&check)
        .expect_code(1)
        .expect_stderr_contains("tx.csv:4: column \"txn_id\" is empty");
    wd.create("tx.csv", "amount,txn_id\n5,10\n");
    wd.run(&check).expect_success();
}
