//! Property tests: arbitrary bytes as the transactions CSV and arbitrary text as the rules
//! file never crash txguard; it always ends with results or a clear error, and when it
//! runs, every input row is accounted for exactly once.

use proptest::prelude::*;

use crate::workdir::Workdir;

const RULES: &str = "[columns]\nid = \"int\"\namount = \"float\"\nflag = \"bool\"\n\n\
    [[rule]]\nid = 1\nname = \"a\"\nwhen = \"amount > 1.0\"\n\n\
    [[rule]]\nid = 2\nname = \"b\"\nwhen = \"flag || coin_flip()\"\n";

/// Bytes that stress a CSV reader: separators, quotes, line ends, a BOM, digits, words,
/// non-ASCII text and invalid UTF-8. A carriage return only comes before a line feed, so
/// the test's own count of records (the csv crate's defaults) agrees on what a line is.
fn csv_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just("\u{feff}".as_bytes().to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just("Zürich 東京".as_bytes().to_vec()),
        Just(b"true".to_vec()),
        Just(b"".to_vec()),
        "[0-9]{1,3}(\\.[0-9]{1,2})?".prop_map(String::into_bytes),
        "[a-z ]{1,4}".prop_map(String::into_bytes),
    ]
}

fn csv_body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(csv_piece(), 0..60).prop_map(|pieces| pieces.concat())
}

/// Records after the header, blank lines aside, as an independent reader counts them.
fn input_rows(bytes: &[u8]) -> Option<u64> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let mut count = 0;
    for record in reader.byte_records() {
        let record = record.ok()?;
        let start = record.position().map_or(0, |p| p.byte() as usize);
        // A lone `"` at the very end is a quote never closed, a bad row (the csv crate
        // reads it as an empty field, that is a blank line).
        let unclosed = bytes[start..]
            .iter()
            .skip_while(|&&b| b == b'\r' || b == b'\n')
            .eq(b"\"");
        if !(record.len() == 1 && record[0].is_empty()) || unclosed {
            count += 1;
        }
    }
    Some(count)
}

fn line_count(text: &str) -> u64 {
    csv::Reader::from_reader(text.as_bytes())
        .byte_records()
        .count() as u64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_csv_gives_results_or_a_clear_error_and_every_row_is_accounted_for(
        body in csv_body(),
        with_header in any::<bool>(),
    ) {
        let wd = Workdir::new("fuzz-csv");
        let mut input = if with_header { b"id,amount,flag\n".to_vec() } else { Vec::new() };
        input.extend_from_slice(&body);
        wd.create("tx.csv", &input);
        wd.create("rules.toml", RULES);
        let run = wd.run(&["run", "tx.csv", "--rules", "rules.toml", "-o", "out.csv", "--bad-rows", "skip", "--summary", "s.json", "-j", "2"]);
        let code = run.code();
        prop_assert!(code == Some(0) || code == Some(1), "exit {:?}: {}", code, run.stderr());
        prop_assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
        if code == Some(0) {
            let summary: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
            let valid = summary["transactions"].as_u64().unwrap();
            let rejected = summary["bad_rows"].as_u64().unwrap();
            prop_assert_eq!(line_count(&String::from_utf8_lossy(&std::fs::read(wd.path("out.csv")).unwrap())), valid * 2);
            prop_assert_eq!(line_count(&String::from_utf8_lossy(&std::fs::read(wd.path("out.csv.rejects.csv")).unwrap())), rejected);
            if let Some(rows) = input_rows(&input) {
                prop_assert_eq!(valid + rejected, rows, "every input row is a result or a reject");
            }
        } else {
            prop_assert!(run.stderr().starts_with("txguard: error: tx.csv"), "{}", run.stderr());
            prop_assert!(!wd.exists("out.csv"));
        }
    }

    #[test]
    fn arbitrary_rules_text_gives_results_or_a_clear_error(
        text in prop_oneof![
            ".{0,200}",
            "[a-z_ =\"\\[\\]\\n0-9.{}]{0,200}",
            // A well-formed file around an arbitrary script.
            "[a-z0-9 ()+*<>=!&|\"{};.%-]{0,60}".prop_map(|script| format!(
                "[[rule]]\nid = 1\nname = \"r\"\nwhen = '''{script}'''\n")),
        ],
    ) {
        let wd = Workdir::new("fuzz-rules");
        wd.create("tx.csv", "id,amount,flag\n1,5,true\n2,0.5,false\n");
        wd.create("rules.toml", &text);
        let run = wd.run(&["run", "tx.csv", "--rules", "rules.toml", "-o", "out.csv", "--timeout", "50ms"]);
        let code = run.code();
        prop_assert!(code == Some(0) || code == Some(1), "exit {:?}: {}", code, run.stderr());
        prop_assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
        if code == Some(0) {
            let out = wd.read("out.csv");
            prop_assert!(out.starts_with("transaction_id,rule_id,result,detail\n"));
            prop_assert_eq!(line_count(&out), 2 * (text.matches("[[rule]]").count() as u64));
        } else {
            prop_assert!(run.stderr().contains("txguard: error: rules.toml"), "{}", run.stderr());
            prop_assert!(!wd.exists("out.csv"));
        }
        let check = wd.run(&["check", "rules.toml", "--timeout", "50ms"]);
        prop_assert!(check.code() == Some(0) || check.code() == Some(1));
        prop_assert!(!check.stderr().contains("panicked"));
    }
}
