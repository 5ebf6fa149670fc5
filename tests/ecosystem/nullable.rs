//! Nullable columns: a type with a `?` makes an empty value `()` in the rules; without
//! the `?` an empty value is still a bad row.

use crate::workdir::{RESULTS_HEADER, Workdir};

const RULES: &str = r#"
[columns]
id = "int"
amount = "float?"
count = "int?"
flagged = "bool?"
note = "string?"
strict = "float"

[[rule]]
id = 1
name = "big"
when = "(amount ?? 0.0) > 10.0"

[[rule]]
id = 2
name = "what_is_missing"
when = '''
let missing = [];
if amount == () { missing.push("amount") }
if count == () { missing.push("count") }
if flagged == () { missing.push("flagged") }
if note == () { missing.push("note") }
if missing.is_empty() { return count > 1 && flagged && note == "n" && strict > 0.0 }
throw missing
'''

[[rule]]
id = 3
name = "no_default"
# Rhai compares () with a number as false: `??` says what is meant.
when = "amount > 10.0"

[[rule.example]]
row = { id = 1, strict = 1.0 }
expect = false
"#;

#[test]
fn empty_values_of_question_mark_types_are_unit_in_the_rules() {
    let wd = Workdir::new("nullable");
    wd.rules(RULES);
    wd.create(
        "tx.csv",
        "id,amount,count,flagged,note,strict\n\
         1,50,2,true,n,1.5\n\
         2,,,,,1.5\n\
         3,5,,false,,1\n",
    );
    let run = wd.txguard_run(&["-q"]);
    run.expect_success();
    assert_eq!(
        run.stdout(),
        format!(
            "{RESULTS_HEADER}\
             1,1,true,\n1,2,true,\n1,3,true,\n\
             2,1,false,\n2,2,error,\"Runtime error: [\"\"amount\"\", \"\"count\"\", \"\"flagged\"\", \"\"note\"\"] (line 7, position 1)\"\n\
             2,3,false,\n\
             3,1,false,\n3,2,error,\"Runtime error: [\"\"count\"\", \"\"note\"\"] (line 7, position 1)\"\n3,3,false,\n"
        )
    );
    // `check --input` types the rows the same way: rule 2 throws on the two rows with
    // missing values, and says so.
    wd.run(&["check", "rules.toml", "--input", "tx.csv"])
        .expect_code(1)
        .expect_stderr(
            "txguard: error: rules.toml has 1 error:\n  rules.toml:18: rule 2 \"what_is_missing\": \
             2 of the first 3 rows of tx.csv give error or timeout (first: id 2: error (Runtime \
             error: [\"amount\", \"count\", \"flagged\", \"note\"] (line 7, position 1)))\n",
        );
}

#[test]
fn an_empty_string_in_an_example_is_unit_in_a_question_mark_column() {
    let wd = Workdir::new("nullable-example");
    // As in the input, `""` in a `?` column is `()`: for `string?` too, and only there.
    wd.rules(
        r#"[columns]
id = "int"
amount = "float?"
note = "string?"
name = "string"

[[rule]]
id = 1
name = "missing"
when = "amount == () && note == () && name == \"\""

[[rule.example]]
row = { id = 1, amount = "", note = "", name = "" }
expect = true

[[rule.example]]
row = { id = 2, note = "", name = "" }
expect = true
"#,
    );
    wd.run(&["check", "rules.toml"])
        .expect_success()
        .expect_stderr(
            "rules.toml: 1 rules compile; 2 examples pass\n\
             coverage: 1 of 1 rules have no example expecting false: 1 \"missing\"\n",
        );
    wd.create("tx.csv", "id,amount,note,name\n1,,,\n");
    wd.txguard_run(&["-q"])
        .expect_success()
        .expect_stdout(&format!("{RESULTS_HEADER}1,1,true,\n"));
}

#[test]
fn without_a_question_mark_an_empty_value_is_still_a_bad_row() {
    let wd = Workdir::new("not-nullable");
    wd.rules(RULES);
    wd.create("tx.csv", "id,amount,count,flagged,note,strict\n1,,,,,\n");
    wd.txguard_run(&["-q"]).expect_code(1).expect_stderr(
        "txguard: error: results on standard output are incomplete: \
         tx.csv:2: column \"strict\": \"\" is not a float\n",
    );
    wd.rules(RULES.replace("\"float?\"", "\"float??\""));
    wd.txguard_run(&["-q"])
        .expect_code(1)
        .expect_stderr_contains("unknown type \"float??\"");
}
