//! Compressed inputs: gzip and zstd, recognised by their first bytes (files and standard
//! input alike); `input_bytes` counts the compressed bytes read.

use crate::workdir::{Workdir, gzip, rule, rules_with_columns};

#[test]
fn gzip_and_zstd_files_and_stdin_give_the_results_of_the_plain_file() {
    let wd = Workdir::new("compressed");
    wd.generate("tx.csv", 3000, 7);
    wd.rules(rules_with_columns(&rule(1, "amount > 500.0")));
    let plain = wd.read_bytes("tx.csv");
    let expected = wd.txguard_run(&["-q"]).expect_success().stdout();
    assert_eq!(expected.lines().count(), 3001);

    let gz = gzip(&plain);
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    // Names do not matter: the first bytes do.
    for (name, bytes) in [
        ("tx.csv.gz", &gz),
        ("tx.csv.zst", &zst),
        ("gz-without-suffix", &gz),
    ] {
        wd.create(name, bytes);
        let run = wd.run(&[
            "run",
            name,
            "--rules",
            "rules.toml",
            "-q",
            "--summary",
            "s.json",
        ]);
        run.expect_success();
        assert_eq!(run.stdout(), expected, "{name}");
        let summary = wd.json("s.json");
        assert_eq!(
            summary["input_bytes"],
            bytes.len() as u64,
            "{name}: compressed bytes"
        );
        assert_eq!(summary["transactions"], 3000);
    }
    for bytes in [&gz, &zst] {
        wd.run_with_stdin(&["run", "-", "--rules", "rules.toml", "-q"], bytes)
            .expect_success()
            .expect_stdout(&expected);
    }
    wd.run(&["check", "rules.toml", "--input", "tx.csv.zst"])
        .expect_success();
}

#[test]
fn a_gzipped_tsv_is_read_with_tabs_and_concatenated_members_are_read_whole() {
    let wd = Workdir::new("tsv-gz");
    wd.rules(rules_with_columns(&rule(1, "amount > 10.0")));
    let mut both = gzip(b"id\tamount\n1\t50\n");
    both.extend(gzip(b"2\t5\n"));
    wd.create("tx.tsv.gz", &both);
    wd.run(&["run", "tx.tsv.gz", "--rules", "rules.toml", "-q"])
        .expect_success()
        .expect_stdout("transaction_id,rule_id,result,detail\n1,1,true,\n2,1,false,\n");
}

#[test]
fn corrupt_or_unsupported_compressed_input_fails_naming_the_file() {
    let wd = Workdir::new("corrupt");
    wd.rules(rules_with_columns(&rule(1, "amount > 10.0")));
    wd.create("out.csv", "earlier\n");
    let mut gz = gzip(&b"id,amount\n1,50\n".repeat(2000));
    gz.truncate(gz.len() / 2);
    wd.create("tx.csv.gz", &gz);
    wd.run(&[
        "run",
        "tx.csv.gz",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "-q",
    ])
    .expect_code(1)
    .expect_stderr_contains("txguard: error: cannot read tx.csv.gz");
    assert_eq!(wd.read("out.csv"), "earlier\n", "nothing committed");
    wd.create("tx.csv.bz2", b"BZh91AY&SY\x00\x00");
    wd.run(&["run", "tx.csv.bz2", "--rules", "rules.toml", "-q"])
        .expect_code(1)
        .expect_stderr_contains("tx.csv.bz2 is compressed with bzip2, which txguard does not read");
}
