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
    wd.run(&["check", "rules.toml", "--input", "tx.csv"])
        .expect_code_in(&[0, 1]);
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
