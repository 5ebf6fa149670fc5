//! `txguard check` and `txguard generate`.

use crate::workdir::Workdir;

#[test]
fn check_passes_the_sample_rules_and_reports_every_problem_at_once() {
    let wd = Workdir::new("check");
    // In place: its lists are files beside it.
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/data/rules.toml");
    wd.run(&["check", sample])
        .expect_success()
        .expect_stderr_contains("data/rules.toml: 11 rules compile; 21 examples pass");

    wd.create(
        "bad.toml",
        "[[rule]]\nid = 1\nname = \"a\"\nwhen = \"amount > 10.0\"\n\
         [[rule.example]]\nrow = { amount = 5.0 }\nexpect = true\n\
         [[rule.example]]\nrow = { amount = 50.0 }\nexpect = true\n\
         [[rule]]\nid = 2\nname = \"b\"\nwhen = \"loop {}\"\ntimeout = \"20ms\"\n\
         [[rule.example]]\nrow = {}\nexpect = false\n",
    );
    let run = wd.run(&["check", "bad.toml"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr(),
        "txguard: error: bad.toml has 2 errors:\n  \
         bad.toml:5: rule 1 \"a\": example 1: expected true, got false\n  \
         bad.toml:16: rule 2 \"b\": example 1: expected false, got timeout (exceeded 20ms)\n"
    );
}

#[test]
fn generate_is_byte_identical_for_a_seed_and_has_the_contract_columns() {
    let wd = Workdir::new("generate");
    let a = wd.run(&["generate", "-n", "1000", "--seed", "3"]);
    let b = wd.run(&["generate", "-n", "1000", "--seed", "3"]);
    let c = wd.run(&["generate", "-n", "1000", "--seed", "4"]);
    a.expect_success();
    assert_eq!(a.output.stdout, b.output.stdout);
    assert_ne!(a.output.stdout, c.output.stdout);
    let text = a.stdout();
    assert!(
        text.starts_with("id,timestamp,account,amount,currency,country,merchant\n1,2026-01-01T")
    );
    assert_eq!(text.lines().count(), 1001);
    wd.run(&["generate", "-n", "1000", "--seed", "3", "-o", "tx.csv"])
        .expect_success();
    assert_eq!(wd.read("tx.csv"), text);
}
