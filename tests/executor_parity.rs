//! Property test: the process executor, whose lanes only check fields and ship the read
//! columns' bytes to workers that type them there, writes byte for byte what the thread
//! executor writes — results, rejects, decisions' reasons — on generated inputs with odd
//! quoting, CRLF, empty nullable fields, bad rows, and a second input whose columns come
//! in another order.

use proptest::prelude::*;

use crate::workdir::{Workdir, rule};

/// Reads every kind of column; two are nullable; reasons format values in `detail`
/// (so the lanes build values too), and a rule gives an error on some rows.
const RULES: &str = r#"
[columns]
id = "int"
amount = "float?"
flag = "bool"
n = "int?"

[[rule]]
id = 1
name = "large"
when = "amount != () && amount > 100.0"

[[rule]]
id = 2
name = "country"
when = 'country == "IR" || country.contains(",") || country.len() > 6'

[[rule]]
id = 3
name = "flagged"
when = "flag && (n == () || n > 2)"

[[rule]]
id = 4
name = "divides"
when = "100 / n > 10"
"#;

/// The same rules with a reason that formats two columns into `detail`.
fn rules_with_reason() -> String {
    RULES.replace(
        "name = \"country\"\n",
        "name = \"country\"\nreason = \"{country} with {amount}\"\n",
    )
}

/// One field of `country`: plain, quoted with separators, quotes, line ends, non-ASCII.
fn country() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("IR".to_string()),
        Just(String::new()),
        Just("\"\"".to_string()),
        Just("\"a,b\"".to_string()),
        Just("\"say \"\"hi\"\"\"".to_string()),
        Just("\"two\r\nlines\"".to_string()),
        Just("\"one\nline\"".to_string()),
        Just("Zürich 東京".to_string()),
        "[A-Z]{2,9}",
    ]
}

/// A record after the header (fields id, note, amount, country, flag, n), sometimes bad.
fn record(id: u32) -> impl Strategy<Value = String> {
    let amount = prop_oneof![
        Just(String::new()),
        Just("-0.0".to_string()),
        Just("1e3".to_string()),
        Just("12x".to_string()),
        "[0-9]{1,4}(\\.[0-9]{1,2})?",
    ];
    let n = prop_oneof![Just(String::new()), Just("0".to_string()), "[0-9]{1,2}"];
    let flag = prop_oneof![Just("true"), Just("false"), Just("TRUE"), Just("maybe")];
    let shape = prop_oneof![8 => Just(0u8), 1 => Just(1), 1 => Just(2), 1 => Just(3)];
    (amount, country(), flag, n, shape).prop_map(move |(amount, country, flag, n, shape)| {
        match shape {
            // A field too many, an empty id, or invalid UTF-8 in a column no rule reads.
            1 => format!("{id},x,{amount},{country},{flag},{n},extra"),
            2 => format!(",x,{amount},{country},{flag},{n}"),
            3 => {
                format!("{id},\u{fffd}x,{amount},{country},{flag},{n}").replace('\u{fffd}', "\u{1}")
            }
            _ => format!("{id},note {id},{amount},{country},{flag},{n}"),
        }
    })
}

fn input() -> impl Strategy<Value = (Vec<String>, bool)> {
    (1..40u32)
        .prop_flat_map(|rows| (1..=rows).map(record).collect::<Vec<_>>())
        .prop_flat_map(|records| (Just(records), any::<bool>()))
}

/// Joins records under `header` with `\n` or `\r\n`; an invalid UTF-8 byte replaces the
/// marker `\u{1}` (a bad row: the `note` column is typed, though no rule reads it).
fn csv(header: &str, records: &[String], crlf: bool) -> Vec<u8> {
    let end = if crlf { "\r\n" } else { "\n" };
    let mut text = format!("{header}{end}");
    for r in records {
        text.push_str(r);
        text.push_str(end);
    }
    text.into_bytes()
        .into_iter()
        .map(|b| if b == 1 { 0xff } else { b })
        .collect()
}

/// The same records with their fields in the order of `country,n,id,amount,note,flag`.
fn reordered(records: &[String]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            // Split on commas outside quotes.
            let mut fields = vec![String::new()];
            let mut quoted = false;
            for c in r.chars() {
                match c {
                    '"' => {
                        quoted = !quoted;
                        fields.last_mut().unwrap().push(c);
                    }
                    ',' if !quoted => fields.push(String::new()),
                    _ => fields.last_mut().unwrap().push(c),
                }
            }
            if fields.len() != 6 {
                return r.clone();
            }
            [3, 5, 0, 2, 1, 4]
                .iter()
                .map(|&i| fields[i].as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn processes_write_what_threads_write_on_odd_inputs(
        (records, crlf) in input(),
        reason in any::<bool>(),
    ) {
        let wd = Workdir::new("parity");
        wd.create("a.csv", csv("id,note,amount,country,flag,n", &records, crlf));
        wd.create("b.csv", csv("country,n,id,amount,note,flag", &reordered(&records), !crlf));
        wd.create("rules.toml", if reason { rules_with_reason() } else { RULES.to_string() });
        let mut outputs = Vec::new();
        for (executor, jobs) in [("threads", "2"), ("processes", "1"), ("processes", "3")] {
            let out = format!("{executor}-{jobs}.csv");
            let run = wd.run(&[
                "run", "a.csv", "b.csv", "--rules", "rules.toml", "-o", &out,
                "--bad-rows", "skip", "--executor", executor, "-j", jobs,
                "--batch-size", "5", "--seed", "3",
            ]);
            prop_assert_eq!(run.code(), Some(0), "{}", run.stderr());
            outputs.push((
                executor,
                wd.read_bytes(&out),
                wd.read_bytes(&format!("{out}.rejects.csv")),
            ));
        }
        let (_, results, rejects) = &outputs[0];
        prop_assert!(results.starts_with(b"transaction_id,rule_id,result,detail\n"));
        for (executor, r, j) in &outputs[1..] {
            prop_assert!(r == results, "{} results differ:\n{}\n---\n{}", executor,
                String::from_utf8_lossy(r), String::from_utf8_lossy(results));
            prop_assert!(j == rejects, "{} rejects differ", executor);
        }
    }
}

/// `in.csv` with `rules.toml` under `--max-record-size 100MiB`, on each executor: rule 1 is
/// `true` for row 1 and `false` for row 2.
fn true_then_false_on_both_executors(wd: &Workdir) {
    for executor in ["threads", "processes"] {
        wd.run(&[
            "run",
            "in.csv",
            "--rules",
            "rules.toml",
            "--executor",
            executor,
            "-j",
            "1",
            "--max-record-size",
            "100MiB",
            "-q",
        ])
        .expect_success()
        .expect_stdout("transaction_id,rule_id,result,detail\n1,1,true,\n2,1,false,\n");
    }
}

/// A read int column whose field is 81 MiB of leading zeros (allowed by a larger
/// `--max-record-size`) holds one small value: the process executor evaluates it as the
/// thread executor does, instead of finding the row too large for a worker's frame.
#[test]
fn a_huge_number_field_is_evaluated_by_workers_as_by_threads() {
    let wd = Workdir::new("parity_long_number");
    let mut csv = b"id,qty\n1,".to_vec();
    csv.resize(csv.len() + (81 << 20), b'0');
    csv.extend_from_slice(b"7\n2,5\n");
    wd.create("in.csv", csv);
    wd.rules(format!(
        "[columns]\nqty = \"int\"\n\n{}",
        rule(1, "qty == 7")
    ));
    true_then_false_on_both_executors(&wd);
}

/// A read string field of 90 MiB (allowed by a larger `--max-record-size`) is more than a
/// worker's default 80 MiB frame: the frame limit follows the record size, so the process
/// executor evaluates the row as the thread executor does, not as an `error`.
#[test]
fn a_huge_string_field_is_evaluated_by_workers_as_by_threads() {
    let wd = Workdir::new("parity_long_string");
    let mut csv = b"id,note\n1,".to_vec();
    csv.resize(csv.len() + (90 << 20), b'x');
    csv.extend_from_slice(b"\n2,short\n");
    wd.create("in.csv", csv);
    wd.rules(rule(1, "note.len() > 1000"));
    true_then_false_on_both_executors(&wd);
}
