//! `[windows.*]`, `[lists.*]` and `--history`: window values against a brute-force
//! reference written here, identical results on every executor and `-j`, and the errors.

use crate::workdir::Workdir;

const SPAN: i64 = 600;

/// One generated row: (account, seconds, amount, merchant).
type Tx = (String, i64, f64, String);

/// Rows with bursts (several at one time), a few rows back in time, quoted keys.
fn transactions(n: usize, seed: u64) -> Vec<Tx> {
    let mut x = seed;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    let accounts = ["A1", "B,2", "C \"3\"", "D4"];
    let merchants = ["shop", "bar", "casino", "fuel"];
    let mut t = 1000;
    (0..n)
        .map(|_| {
            t += [0, 0, 0, 1, 7, 60, 300][next(7) as usize];
            let back = if next(12) == 0 { next(900) as i64 } else { 0 };
            let amount = (next(20_000) as f64) / 100.0;
            (
                accounts[next(4) as usize].to_string(),
                t - back,
                amount,
                merchants[next(4) as usize].to_string(),
            )
        })
        .collect()
}

fn quoted(field: &str) -> String {
    if field.contains([',', '"']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// RFC 3339, in a few spellings of the same instant (2026-01-01 plus `s` seconds).
fn time(s: i64, style: usize) -> String {
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    match style % 3 {
        0 => format!("2026-01-01T{h:02}:{m:02}:{sec:02}Z"),
        1 => format!("2026-01-01 {h:02}:{m:02}:{sec:02}.000+00:00"),
        _ => format!("2026-01-01T{:02}:{m:02}:{sec:02}+01:00", h + 1),
    }
}

/// The CSV (CRLF line ends), ids starting at `first_id`.
fn csv(rows: &[Tx], first_id: usize) -> String {
    let mut out = String::from("id,account,timestamp,amount,merchant\r\n");
    for (i, (account, t, amount, merchant)) in rows.iter().enumerate() {
        out.push_str(&format!(
            "{},{},{},{amount:.2},{merchant}\r\n",
            first_id + i,
            quoted(account),
            time(*t, i)
        ));
    }
    out
}

const FUNCTIONS: [(&str, Option<&str>); 8] = [
    ("count", None),
    ("sum", Some("amount")),
    ("min", Some("amount")),
    ("max", Some("amount")),
    ("avg", Some("amount")),
    ("distinct", Some("merchant")),
    ("min", Some("merchant")),
    ("max", Some("merchant")),
];

/// Windows `w0..w15`: every function, without then with `where = "amount >= 50.0"`; one
/// rule that reports every value (as an error's message).
fn rules() -> String {
    let mut text = String::from("[columns]\nid = \"int\"\namount = \"float\"\n");
    let mut names = Vec::new();
    for filtered in [false, true] {
        for (function, of) in FUNCTIONS {
            let name = format!("w{}", names.len());
            text.push_str(&format!(
                "[windows.{name}]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"{SPAN}s\"\nfunction = \"{function}\"\n"
            ));
            if let Some(of) = of {
                text.push_str(&format!("of = \"{of}\"\n"));
            }
            if filtered {
                text.push_str("where = \"amount >= 50.0\"\n");
            }
            names.push(name);
        }
    }
    let shown: Vec<String> = names.iter().map(|n| format!("${{{n}}}")).collect();
    text.push_str(&format!(
        "[[rule]]\nid = 1\nname = \"values\"\nwhen = 'throw `{}`'\n",
        shown.join("|")
    ));
    text
}

/// The definition, row by row over every earlier row: the window of row `i` holds the
/// rows before it with its key, matching the filter, and a time in `(N − span, t]`
/// (`N`: the key's newest time so far), and row `i` itself when it matches.
fn reference(rows: &[Tx]) -> Vec<Vec<String>> {
    (0..rows.len())
        .map(|i| {
            let (key, t, amount, _) = &rows[i];
            let newest = rows[..=i]
                .iter()
                .filter(|r| &r.0 == key)
                .map(|r| r.1)
                .max()
                .unwrap();
            let mut values = Vec::new();
            for filtered in [false, true] {
                let matches = |r: &Tx| !filtered || r.2 >= 50.0;
                let mut seen: Vec<&Tx> = rows[..i]
                    .iter()
                    .filter(|r| &r.0 == key && matches(r) && r.1 > newest - SPAN && r.1 <= *t)
                    .collect();
                if matches(&rows[i]) {
                    seen.push(&rows[i]);
                }
                let _ = amount;
                let amounts: Vec<f64> = seen.iter().map(|r| r.2).collect();
                let mut merchants: Vec<&str> = seen.iter().map(|r| r.3.as_str()).collect();
                merchants.sort();
                let float = |f: f64| format!("{f}");
                for (function, of) in FUNCTIONS {
                    let n = seen.len();
                    values.push(match (function, of) {
                        ("count", _) => n.to_string(),
                        ("sum", _) => float(amounts.iter().sum()),
                        ("avg", _) if n == 0 => String::new(),
                        ("avg", _) => float(amounts.iter().sum::<f64>() / n as f64),
                        ("distinct", _) => {
                            let mut m = merchants.clone();
                            m.dedup();
                            m.len().to_string()
                        }
                        (_, _) if n == 0 => String::new(),
                        ("min", Some("amount")) => {
                            float(amounts.iter().cloned().fold(f64::MAX, f64::min))
                        }
                        ("max", Some("amount")) => {
                            float(amounts.iter().cloned().fold(f64::MIN, f64::max))
                        }
                        ("min", _) => merchants[0].to_string(),
                        _ => merchants[n - 1].to_string(),
                    });
                }
            }
            values
        })
        .collect()
}

/// The values each row's rule reported, from a results CSV.
fn reported(results: &str) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_reader(results.as_bytes());
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            assert_eq!(&r[2], "error", "{r:?}");
            let detail = r[3]
                .strip_prefix("Runtime error: ")
                .and_then(|d| d.strip_suffix(" (line 1, position 1)"))
                .unwrap_or_else(|| panic!("{:?}", &r[3]));
            detail.split('|').map(str::to_string).collect()
        })
        .collect()
}

/// Equal, floats within 1e-9 relative (sums are running sums: the last bits may differ).
fn same(got: &str, want: &str) -> bool {
    if got == want {
        return true;
    }
    match (got.parse::<f64>(), want.parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        _ => false,
    }
}

fn assert_matches_reference(results: &str, rows: &[Tx]) {
    let got = reported(results);
    let want = reference(rows);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len());
        for (k, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                same(a, b),
                "row {} window w{k}: got {a:?}, expected {b:?} ({:?})",
                i + 1,
                rows[i]
            );
        }
    }
}

#[test]
fn every_function_equals_a_brute_force_reference_on_every_executor() {
    let wd = Workdir::new("windows-reference");
    let rows = transactions(500, 11);
    wd.create("tx.csv", csv(&rows, 1));
    wd.rules(rules());
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "tx.csv", "--rules", "rules.toml", "-q"];
        args.extend_from_slice(extra);
        let run = wd.run(&args);
        run.expect_success();
        run.stdout()
    };
    let first = run(&["-j", "1"]);
    assert_matches_reference(&first, &rows);
    for extra in [
        &["-j", "2"][..],
        &["-j", "7"],
        // One-row tasks: each lane waits for its turn at the windows every row.
        &["-j", "7", "--batch-size", "1"],
        &["--executor", "processes", "-j", "2"],
        &["--executor", "processes", "-j", "7", "--batch-size", "3"],
    ] {
        assert_eq!(run(extra), first, "{extra:?}");
    }
}

#[test]
fn history_gives_the_results_of_the_concatenated_input_without_its_rows() {
    let wd = Workdir::new("windows-history");
    let rows = transactions(300, 5);
    let (old, new) = rows.split_at(120);
    let (older, old) = old.split_at(50);
    wd.create("all.csv", csv(&rows, 1));
    wd.create("older.csv", csv(older, 1));
    wd.create("old.csv", csv(old, 51));
    wd.create("new.csv", csv(new, 121));
    wd.rules(rules());
    let all = wd.run(&["run", "all.csv", "--rules", "rules.toml", "-q"]);
    let with_history = wd.run(&[
        "run",
        "new.csv",
        "--rules",
        "rules.toml",
        "--history",
        "older.csv",
        "--history",
        "old.csv",
        "--summary",
        "s.json",
        "-q",
    ]);
    with_history.expect_success();
    let kept: String = all
        .stdout()
        .lines()
        .enumerate()
        .filter(|(i, _)| *i == 0 || *i > 120)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert_eq!(with_history.stdout(), kept);
    let summary = wd.json("s.json");
    assert_eq!(summary["windows"]["history_rows"], 120);
    assert_eq!(summary["transactions"], 180);
    assert!(summary["windows"]["peak_rows"].as_u64().unwrap() > 0);
    assert_eq!(
        summary["windows"]["keys"], 4,
        "one numbering of the account column"
    );

    // A history with other columns, and history without windows, are refused.
    wd.create("other.csv", "id,account\n1,A\n");
    wd.run(&[
        "run",
        "new.csv",
        "--rules",
        "rules.toml",
        "--history",
        "other.csv",
    ])
    .expect_code(1)
    .expect_stderr_contains("other.csv:1: the header has other columns than new.csv's: it lacks");
    wd.create(
        "plain.toml",
        "[[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n",
    );
    wd.run(&[
        "run",
        "new.csv",
        "--rules",
        "plain.toml",
        "--history",
        "old.csv",
    ])
    .expect_code(2)
    .expect_stderr_contains("--history old.csv: the rules declare no [windows.*]");
}

pub(crate) const SIMPLE: &str = "[windows.n]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"count\"\n\
                      [[rule]]\nid = 1\nname = \"r\"\nwhen = \"n > 1\"\n";

#[test]
fn bad_keys_and_times_are_bad_rows_naming_line_column_and_value() {
    let wd = Workdir::new("windows-bad");
    wd.rules(SIMPLE);
    wd.create(
        "tx.csv",
        "id,account,timestamp\n1,A,2026-01-01T00:00:00Z\n2,,2026-01-01T00:00:01Z\n\
         3,A,yesterday\n4,A,2026-01-01T00:00:02Z\n",
    );
    wd.run(&["run", "tx.csv", "--rules", "rules.toml", "-q"])
        .expect_code(1)
        .expect_stderr_contains(
            "tx.csv:3: column \"account\": \"\" is empty (the key of [windows.n])",
        );
    let run = wd.run(&[
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-q",
        "--bad-rows",
        "skip",
        "-o",
        "out.csv",
    ]);
    run.expect_success();
    assert_eq!(
        wd.read("out.csv.rejects.csv"),
        r#"line,reason,raw
3,"column ""account"": """" is empty (the key of [windows.n])","2,,2026-01-01T00:00:01Z"
4,"column ""timestamp"": ""yesterday"" is not an RFC 3339 time (e.g. 2026-01-01T00:00:03Z) (the time of [windows.n])","3,A,yesterday"
"#
    );
    // A `where` that fails makes a bad row too.
    wd.create(
        "w.toml",
        SIMPLE.replace(
            "function = \"count\"\n",
            "function = \"count\"\nwhere = 'if id == \"4\" { throw \"boom\" } true'\n",
        ),
    );
    wd.create("w.csv", "id,account,timestamp\n4,A,2026-01-01T00:00:00Z\n");
    wd.run(&["run", "w.csv", "--rules", "w.toml", "-q"])
        .expect_code(1)
        .expect_stderr_contains(
            "w.csv:2: [windows.n] where: error (Runtime error: boom (line 1, position 16)); it read id=\"4\"\n",
        );
    // It names the values the filter read, as a bad field is named by its value: here an
    // empty optional column, `()`, that the filter did not expect.
    wd.create(
        "n.toml",
        format!(
            "[columns]\nnote = \"string?\"\n{}",
            SIMPLE.replace(
                "function = \"count\"\n",
                "function = \"count\"\nwhere = \"note.len() > 2 && account != note\"\n",
            )
        ),
    );
    wd.create(
        "n.csv",
        "id,account,timestamp,note\n1,A,2026-01-01T00:00:00Z,abc\n2,A,2026-01-01T00:00:01Z,\n",
    );
    wd.run(&["run", "n.csv", "--rules", "n.toml", "-q"])
        .expect_code(1)
        .expect_stderr_contains(
            "n.csv:3: [windows.n] where: error (Function not found: len (()) (line 1, position 6)); it read note=() account=\"A\"\n",
        );

    // A bad history row fails the run naming the history file; under skip it is counted.
    wd.create(
        "good.csv",
        "id,account,timestamp\n9,A,2026-01-01T00:00:05Z\n",
    );
    wd.run(&[
        "run",
        "good.csv",
        "--rules",
        "rules.toml",
        "-q",
        "--history",
        "tx.csv",
    ])
    .expect_code(1)
    .expect_stderr_contains("tx.csv:3: column \"account\": \"\" is empty");
    wd.run(&[
        "run",
        "good.csv",
        "--rules",
        "rules.toml",
        "-q",
        "--history",
        "tx.csv",
        "--bad-rows",
        "skip",
        "-o",
        "h.csv",
        "--summary",
        "h.json",
    ])
    .expect_success();
    assert_eq!(
        wd.read("h.csv"),
        "transaction_id,rule_id,result,detail\n9,1,true,\n"
    );
    assert_eq!(wd.json("h.json")["windows"]["history_bad_rows"], 2);
    assert_eq!(wd.json("h.json")["windows"]["history_rows"], 2);
    assert_eq!(wd.read("h.csv.rejects.csv"), "line,reason,raw\n");

    // `check --input` evaluates the sample rows with their window values.
    wd.run(&["check", "rules.toml", "--input", "good.csv"])
        .expect_success()
        .expect_stderr_contains("1 rules compile; 0 examples pass; 1 rows of good.csv evaluate");

    // Bad rows count in no window: row 4 sees rows 1 and 4 only.
    assert_eq!(
        wd.read("out.csv"),
        "transaction_id,rule_id,result,detail\n1,1,false,\n4,1,true,\n"
    );
}

#[test]
fn lists_are_sets_and_typed_maps_read_relative_to_the_rules_file() {
    let wd = Workdir::new("lists");
    wd.mkdir("conf");
    wd.mkdir("conf/lists");
    wd.create(
        "conf/lists/blocked.csv",
        "country,why\r\nIR,sanctions\r\n\"K,P\",x\r\n",
    );
    wd.create("conf/lists/risk.csv", "merchant,risk\ncasino,90\nshop,10\n");
    let rules = "[columns]\nid = \"int\"\n\
                 [lists.blocked]\nfile = \"lists/blocked.csv\"\nkey = \"country\"\n\
                 [lists.risk]\nfile = \"lists/risk.csv\"\nkey = \"merchant\"\nvalue = \"risk\"\ntype = \"int\"\n\
                 [[rule]]\nid = 1\nname = \"blocked\"\nwhen = \"country in blocked\"\n\
                 [[rule]]\nid = 2\nname = \"risky\"\nwhen = \"(risk[merchant] ?? 0) > 50\"\n\
                 [[rule.example]]\nrow = { id = 1, merchant = \"x\", risk = { x = 60 } }\nexpect = true\n";
    wd.create("conf/rules.toml", rules);
    wd.create(
        "tx.csv",
        "id,country,merchant\n1,IR,shop\n2,\"K,P\",casino\n3,FR,bookshop\n",
    );
    wd.run(&["check", "conf/rules.toml"])
        .expect_success()
        .expect_stderr_contains("2 rules compile; 1 examples pass");
    let expected = "transaction_id,rule_id,result,detail\n1,1,true,\n1,2,false,\n\
                    2,1,true,\n2,2,true,\n3,1,false,\n3,2,false,\n";
    for executor in ["threads", "processes"] {
        let run = wd.run(&[
            "run",
            "tx.csv",
            "--rules",
            "conf/rules.toml",
            "-q",
            "--executor",
            executor,
            "--summary",
            "s.json",
        ]);
        run.expect_success().expect_stdout(expected);
    }
    // A changed list file changes the ruleset hash.
    let before = wd.json("s.json")["rules_sha256"].clone();
    wd.create("conf/lists/risk.csv", "merchant,risk\ncasino,90\nshop,11\n");
    wd.run(&[
        "run",
        "tx.csv",
        "--rules",
        "conf/rules.toml",
        "-q",
        "--summary",
        "s.json",
    ])
    .expect_success();
    assert_ne!(wd.json("s.json")["rules_sha256"], before);
}

#[test]
fn list_and_window_errors_name_the_place() {
    let wd = Workdir::new("lists-errors");
    wd.create("risk.csv", "merchant,risk\ncasino,high\nshop,1\nshop,2\n");
    let rules = "[columns]\nid = \"int\"\naccount = \"string\"\n\
                 [lists.risk]\nfile = \"risk.csv\"\nkey = \"merchant\"\nvalue = \"risk\"\ntype = \"int\"\n\
                 [lists.gone]\nfile = \"missing.csv\"\nkey = \"k\"\n\
                 [windows.account]\nkey = \"account\"\ntime = \"t\"\nspan = \"1h\"\nfunction = \"count\"\n\
                 [windows.risk]\nkey = \"account\"\ntime = \"t\"\nspan = \"0s\"\nfunction = \"sum\"\n\
                 [[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n";
    wd.rules(rules);
    let run = wd.run(&["check", "rules.toml"]);
    run.expect_code(1);
    let err = run.stderr();
    for needle in [
        "rules.toml:4: [lists.risk]: risk.csv:2: column \"risk\": \"high\" is not an int",
        "rules.toml:4: [lists.risk]: risk.csv:4: column \"merchant\": duplicate key \"shop\" (first on line 3)",
        "rules.toml:9: [lists.gone]: cannot read missing.csv:",
        "rules.toml:12: [windows.account]: the name clashes with the column \"account\" of [columns]",
        "rules.toml:17: [windows.risk]: the name clashes with [lists.risk] on line 4",
        "rules.toml:20: [windows.risk]: span \"0s\": ",
        "rules.toml:17: [windows.risk]: sum needs `of`",
    ] {
        assert!(err.contains(needle), "{needle:?} not in\n{err}");
    }
    // `run` refuses the same file before reading any input.
    wd.create("tx.csv", "id,account,t\n1,A,2026-01-01T00:00:00Z\n");
    wd.run(&["run", "tx.csv", "--rules", "rules.toml", "-q"])
        .expect_code(1)
        .expect_stderr_contains("[windows.account]: the name clashes");

    // A list file with a bad value fails the run, naming the file and line.
    wd.create(
        "r2.toml",
        "[lists.risk]\nfile = \"risk.csv\"\nkey = \"merchant\"\nvalue = \"risk\"\ntype = \"int\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n",
    );
    wd.run(&["run", "tx.csv", "--rules", "r2.toml", "-q"])
        .expect_code(1)
        .expect_stderr_contains(
            "r2.toml:1: [lists.risk]: risk.csv:2: column \"risk\": \"high\" is not an int",
        );

    // A window or list named like an input column clashes with it.
    wd.create("r3.toml", SIMPLE);
    wd.create(
        "tx3.csv",
        "id,account,timestamp,n\n1,A,2026-01-01T00:00:00Z,5\n",
    );
    wd.run(&["run", "tx3.csv", "--rules", "r3.toml", "-q"])
        .expect_code(1)
        .expect_stderr_contains("tx3.csv:1: column \"n\" clashes with [lists.n] or [windows.n]");
    // A window over a column the input lacks.
    wd.create("tx4.csv", "id,account,time\n1,A,2026-01-01T00:00:00Z\n");
    wd.run(&["run", "tx4.csv", "--rules", "r3.toml", "-q"])
        .expect_code(1)
        .expect_stderr_contains(
            "[windows.n] (rules line 1): time column \"timestamp\" is not a column of tx4.csv",
        );
}

/// Nullable (`?`) columns: an empty `of` value counts in no aggregate but `count`, an
/// empty key or time is a bad row like an empty string, and -0.0 is 0.0.
#[test]
fn empty_values_of_nullable_columns_count_nowhere_and_missing_keys_are_bad_rows() {
    let wd = Workdir::new("windows-nullable");
    let window = |name: &str, function: &str, of: &str| {
        format!(
            "[windows.{name}]\nkey = \"account\"\ntime = \"ts\"\nspan = \"1h\"\n\
             function = \"{function}\"\n{of}\n"
        )
    };
    let mut rules =
        String::from("[columns]\namount = \"float?\"\naccount = \"string?\"\nts = \"string?\"\n");
    rules += &window("n", "count", "");
    for f in ["avg", "min", "max", "distinct", "sum"] {
        rules += &window(f, f, "of = \"amount\"");
    }
    rules += "[[rule]]\nid = 1\nname = \"show\"\n\
              when = \"n > 0 && avg != -1 && min != -1 && max != -1 && distinct != -1 && sum != -1\"\n";
    wd.rules(rules);
    wd.create(
        "tx.csv",
        "id,account,ts,amount\n1,A,2026-01-01T00:00:00Z,\n2,A,2026-01-01T00:01:00Z,10\n\
         3,A,2026-01-01T00:02:00Z,\n4,A,2026-01-01T00:03:00Z,-0.0\n5,A,2026-01-01T00:04:00Z,0\n\
         6,,2026-01-01T00:05:00Z,1\n7,A,,1\n",
    );
    let run = wd.run(&[
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-q",
        "--explain",
        "--bad-rows",
        "skip",
        "--rejects",
        "rejects.csv",
    ]);
    run.expect_success().expect_stdout(
        "transaction_id,rule_id,result,detail\n\
         1,1,true,n=1 avg=() min=() max=() distinct=0 sum=0.0\n\
         2,1,true,n=2 avg=10.0 min=10.0 max=10.0 distinct=1 sum=10.0\n\
         3,1,true,n=3 avg=10.0 min=10.0 max=10.0 distinct=1 sum=10.0\n\
         4,1,true,n=4 avg=5.0 min=0.0 max=10.0 distinct=2 sum=10.0\n\
         5,1,true,n=5 avg=3.3333333333333335 min=0.0 max=10.0 distinct=2 sum=10.0\n",
    );
    assert_eq!(
        wd.read("rejects.csv"),
        "line,reason,raw\n\
         7,\"column \"\"account\"\": \"\"\"\" is empty (the key of [windows.n])\",\"6,,2026-01-01T00:05:00Z,1\"\n\
         8,\"column \"\"ts\"\": \"\"\"\" is empty (the time of [windows.n])\",\"7,A,,1\"\n"
    );
}

/// A `--history` file that is the input, an output or another `--history` would be
/// counted twice or replaced: refused like any two files of a run that are one.
#[test]
fn a_history_file_must_be_no_other_file_of_the_run() {
    let wd = Workdir::new("windows-history-files");
    wd.rules(SIMPLE);
    wd.create("tx.csv", "id,account,timestamp\n1,A,2026-01-01T00:00:00Z\n");
    wd.create(
        "old.csv",
        "id,account,timestamp\n0,A,2026-01-01T00:00:00Z\n",
    );
    for (extra, message) in [
        (
            &["--history", "tx.csv"][..],
            "INPUT and --history name the same file: tx.csv",
        ),
        (
            &["--history", "old.csv", "--history", "./old.csv"],
            "--history and --history name the same file: ./old.csv",
        ),
        (
            &["--history", "old.csv", "-o", "old.csv"],
            "--history and --output name the same file: old.csv",
        ),
        (
            &["--history", "rules.toml"],
            "--history and --rules name the same file: rules.toml",
        ),
    ] {
        let mut args = vec!["run", "tx.csv", "--rules", "rules.toml", "-q"];
        args.extend_from_slice(extra);
        wd.run(&args).expect_code(2).expect_stderr_contains(message);
    }
    assert_eq!(
        wd.read("old.csv"),
        "id,account,timestamp\n0,A,2026-01-01T00:00:00Z\n"
    );
}

/// A list or window named after a Rhai keyword could never be read by a rule.
#[test]
fn a_keyword_is_no_list_or_window_name() {
    let wd = Workdir::new("windows-keyword");
    wd.create("l.csv", "k\na\n");
    wd.rules(
        "[lists.true]\nfile = \"l.csv\"\nkey = \"k\"\n\
         [windows.this]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"count\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n",
    );
    wd.run(&["check", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains(
            "rules.toml:1: [lists.true]: \"true\" is a Rhai keyword: rules could not read it as a variable",
        )
        .expect_stderr_contains(
            "rules.toml:4: [windows.this]: \"this\" is a Rhai keyword: rules could not read it as a variable",
        );
}

/// A sum over a column that is no number is the rules file's error: `check` says so
/// without an input, as every run would refuse it (an undeclared column is a string).
#[test]
fn a_sum_of_a_string_column_is_an_error_of_the_rules_file() {
    let wd = Workdir::new("windows-sum-string");
    wd.rules(
        "[columns]\nnote = \"string\"\n\
         [windows.a]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"sum\"\nof = \"amount\"\n\
         [windows.b]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"avg\"\nof = \"note\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"a > 1.0 && b > 1.0\"\n",
    );
    wd.run(&["check", "rules.toml"])
        .expect_code(1)
        .expect_stderr_contains(
            "rules.toml:8: [windows.a]: cannot add up column \"amount\" of type string: declare it int or float in [columns]",
        )
        .expect_stderr_contains(
            "rules.toml:14: [windows.b]: cannot add up column \"note\" of type string: declare it int or float in [columns]",
        );
}

/// A `where` that does not compile is said as its window's, by `check` and `run` alike.
#[test]
fn a_where_that_does_not_compile_is_named_as_its_window() {
    let wd = Workdir::new("windows-where-syntax");
    wd.rules(
        "[columns]\namount = \"float\"\n\
         [windows.n]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"count\"\n\
         [windows.s]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"sum\"\n\
         of = \"amount\"\nwhere = \"amount >\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"s > n\"\n",
    );
    wd.create(
        "tx.csv",
        "id,account,timestamp,amount\n1,A,2026-01-01T00:00:00Z,1\n",
    );
    wd.run(&["check", "rules.toml"])
        .expect_code(1)
        .expect_stderr(
            "txguard: error: rules.toml has 1 error:\n  \
         rules.toml:8: [windows.s] where: line 1, column 9: Script is incomplete\n",
        );
    // `run` names the rules file as `check` does (it once said only "line 8").
    let said = "txguard: error: rules.toml has 1 error: \
         rules.toml:8: [windows.s] where: line 1, column 9: Script is incomplete\n";
    wd.run(&[
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-q",
        "-o",
        "out.csv",
    ])
    .expect_code(1)
    .expect_stderr(said);
    assert!(!wd.exists("out.csv"));
    // Found before any output is opened: standard output gets no header.
    wd.run(&["run", "tx.csv", "--rules", "rules.toml", "-q"])
        .expect_code(1)
        .expect_stdout("")
        .expect_stderr(said);
    // `diff` computes the windows once, from the proposed rules' file.
    wd.create("new.toml", wd.read("rules.toml"));
    let said_new = said.replace("rules.toml", "new.toml");
    wd.run(&[
        "diff",
        "rules.toml",
        "new.toml",
        "tx.csv",
        "-q",
        "-o",
        "diff.csv",
    ])
    .expect_code(1)
    .expect_stderr(&said_new);
    wd.run(&["diff", "rules.toml", "new.toml", "tx.csv", "-q"])
        .expect_code(1)
        .expect_stdout("")
        .expect_stderr(&said_new);
}

/// A `where` that compiles alone but not against the input's columns is said by
/// `check --input` as `check` says every error of the rules file, with the others: it
/// ended the check with a line naming no file, and every other problem went unsaid.
#[test]
fn check_input_says_a_where_that_does_not_compile_against_the_input_with_the_others() {
    let wd = Workdir::new("windows-where-input-check");
    wd.rules(
        "[columns]\namount = \"float\"\n\
         [windows.n]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"count\"\n\
         where = 'nosuch == \"x\"'\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"n > 0\"\n\
         [[rule.example]]\nrow = { amount = 1.0, n = 1 }\nexpect = false\n",
    );
    wd.create(
        "tx.csv",
        "id,account,timestamp,amount\n1,A,2026-01-01T00:00:00Z,1\n",
    );
    wd.run(&["check", "rules.toml", "--input", "tx.csv"])
        .expect_code(1)
        .expect_stderr(
            "txguard: error: rules.toml has 2 errors:\n  \
             rules.toml:3: [windows.n] where: line 1, column 1: variable \"nosuch\" is neither \
             a column of the input nor defined by the rule (columns: id, account, timestamp, \
             amount)\n  \
             rules.toml:13: rule 1 \"r\": example 1: expected false, got true\n",
        );
    // Broken for its syntax, a `where` is said once, not again for the input.
    wd.rules(
        "[columns]\namount = \"float\"\n\
         [windows.n]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"count\"\n\
         where = \"amount >\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"n > 0\"\n",
    );
    wd.run(&["check", "rules.toml", "--input", "tx.csv"])
        .expect_code(1)
        .expect_stderr(
            "txguard: error: rules.toml has 1 error:\n  \
             rules.toml:3: [windows.n] where: line 1, column 9: Script is incomplete\n",
        );
}

/// Several inputs are one input to the windows, whatever their column order: the results
/// are those of the concatenated file on every executor and `-j` (a second input's rows
/// once got their window values after as many empty values as there are windows).
#[test]
fn several_inputs_in_any_column_order_are_one_input_to_the_windows() {
    let wd = Workdir::new("windows-several-inputs");
    wd.rules(
        "[columns]\namount = \"float\"\n\
         [windows.n]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"count\"\n\
         [windows.top]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"1h\"\nfunction = \"max\"\nof = \"amount\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"n > 1 && top > 100.0\"\n",
    );
    wd.create(
        "a.csv",
        "id,account,timestamp,amount\n1,A,2026-01-01T00:00:00Z,150\n2,B,2026-01-01T00:10:00Z,5\n",
    );
    wd.create(
        "same.csv",
        "id,account,timestamp,amount\n3,A,2026-01-01T00:20:00Z,1\n4,B,2026-01-01T00:30:00Z,500\n",
    );
    wd.create(
        "other.csv",
        "amount,timestamp,account,id\n1,2026-01-01T00:20:00Z,A,3\n500,2026-01-01T00:30:00Z,B,4\n",
    );
    let expected = "transaction_id,rule_id,result,detail\n1,1,false,\n2,1,false,\n\
                    3,1,true,n=2 top=150.0\n4,1,true,n=2 top=500.0\n";
    for second in ["same.csv", "other.csv"] {
        for (executor, jobs) in [("threads", "1"), ("threads", "7"), ("processes", "2")] {
            wd.run(&[
                "run",
                "a.csv",
                second,
                "--rules",
                "rules.toml",
                "-q",
                "--explain",
                "--executor",
                executor,
                "-j",
                jobs,
            ])
            .expect_success()
            .expect_stdout(expected);
        }
    }
    // A history file too may order the columns its own way.
    wd.create(
        "a_other.csv",
        "timestamp,amount,id,account\n2026-01-01T00:00:00Z,150,1,A\n2026-01-01T00:10:00Z,5,2,B\n",
    );
    for history in ["a.csv", "a_other.csv"] {
        wd.run(&[
            "run",
            "same.csv",
            "--rules",
            "rules.toml",
            "-q",
            "--explain",
            "--history",
            history,
        ])
        .expect_success()
        .expect_stdout(
            "transaction_id,rule_id,result,detail\n3,1,true,n=2 top=150.0\n4,1,true,n=2 top=500.0\n",
        );
    }
}

/// The windows stage reads the input as the lanes do: another id column (`--id-column`)
/// and delimiter, for the input and its history.
#[test]
fn windows_read_an_input_with_another_id_column_and_delimiter() {
    let wd = Workdir::new("windows-id-column");
    wd.rules(
        "[windows.n]\nkey = \"account\"\ntime = \"ts\"\nspan = \"1h\"\nfunction = \"count\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"n > 1\"\n",
    );
    wd.create("old.csv", "txn;account;ts\n0;A;2026-01-01T00:00:00Z\n");
    wd.create(
        "tx.csv",
        "txn;account;ts\n1;A;2026-01-01T00:00:01Z\n2;B;2026-01-01T00:00:02Z\n",
    );
    wd.run(&[
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-q",
        "--explain",
        "-d",
        ";",
        "--id-column",
        "txn",
        "--history",
        "old.csv",
    ])
    .expect_success()
    .expect_stdout("transaction_id,rule_id,result,detail\n1,1,true,n=2\n2,1,false,\n");
}

#[test]
fn no_output_replaces_a_list_the_rules_read() {
    // `--decisions lists/blocked.csv` replaced the list the rules had just read (only the
    // input, history and rules files were checked against the outputs).
    let wd = Workdir::new("lists-not-outputs");
    wd.mkdir("lists");
    let list = "country\nKP\n";
    wd.create("lists/blocked.csv", list);
    wd.rules(
        "[lists.blocked]\nfile = \"lists/blocked.csv\"\nkey = \"country\"\n\
         [[rule]]\nid = 1\nname = \"b\"\nwhen = \"country in blocked\"\nscore = 100\n\
         [decision]\nthresholds = { block = 100 }\n",
    );
    wd.create("tx.csv", "id,country\n1,KP\n2,FR\n");
    let message = |flag: &str| {
        format!(
            "txguard: error: [lists.blocked] and {flag} name the same file: \
             lists/blocked.csv; every file of a run must be distinct\n"
        )
    };
    for (flag, extra) in [
        ("--decisions", vec!["-o", "out.csv", "--decisions"]),
        ("--output", vec!["-o"]),
        ("--summary", vec!["-o", "out.csv", "--summary"]),
    ] {
        let mut args = vec!["run", "tx.csv", "--rules", "rules.toml", "-q"];
        args.extend(extra);
        args.push("lists/blocked.csv");
        wd.run(&args).expect_code(2).expect_stderr(&message(flag));
        assert_eq!(wd.read("lists/blocked.csv"), list, "{flag}");
    }
    assert!(!wd.exists("out.csv"));
    // Nor in a diff, whichever file reads the list.
    wd.create("new.toml", wd.read("rules.toml"));
    wd.run(&[
        "diff",
        "rules.toml",
        "new.toml",
        "tx.csv",
        "-o",
        "lists/blocked.csv",
        "-q",
    ])
    .expect_code(2)
    .expect_stderr(&message("--output"));
    assert_eq!(wd.read("lists/blocked.csv"), list);
    // Another output beside it is fine.
    wd.run(&[
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-q",
        "-o",
        "lists/out.csv",
    ])
    .expect_success();
}

/// Keys are numbered by their bytes, numbers by their value's bits: `7`, `+7` and `007`
/// are one int key, `1e3`, `1000` and `1000.0` one float key, `-0`/`0` and `-0.0`/`0` one,
/// `inf`, `+inf` and `infinity` one; string keys past the 23 bytes kept inline still
/// differ by their last byte, and a quoted key is its unquoted text. Texts of an `of`
/// column are numbered while some kept row holds them: `b` and `c` are forgotten when
/// their rows leave (row 6), `b` numbered again at once and `a` after it left too (row 8).
/// The values are those of the stage before it read fields as bytes.
#[test]
fn keys_alike_as_values_are_one_key_and_texts_come_back_after_leaving() {
    let wd = Workdir::new("windows-keys-as-bytes");
    let window = |name: &str, key: &str, span: &str, function: &str, of: &str| {
        format!(
            "[windows.{name}]\nkey = \"{key}\"\ntime = \"ts\"\nspan = \"{span}\"\n\
             function = \"{function}\"\n{of}\n"
        )
    };
    let mut rules = String::from("[columns]\nn = \"int\"\nx = \"float\"\n");
    rules += &window("cn", "n", "1h", "count", "");
    rules += &window("cx", "x", "1h", "count", "");
    rules += &window("ck", "k", "1h", "count", "");
    rules += &window("dm", "k", "10m", "distinct", "of = \"m\"");
    rules += &window("mm", "k", "10m", "max", "of = \"m\"");
    rules += "[[rule]]\nid = 1\nname = \"show\"\n\
              when = 'cn > 0 && cx > 0 && ck > 0 && dm > 0 && mm != \"\"'\n";
    wd.rules(rules);
    let long = "K".repeat(23);
    wd.create(
        "tx.csv",
        format!(
            "id,n,x,k,m,ts\n\
             1,7,1e3,{long}1,b,2026-01-01T00:00:00Z\n\
             2,+7,1000,{long}2,a,2026-01-01T00:01:00Z\n\
             3,007,1000.0,{long}1,a,2026-01-01T00:02:00Z\n\
             4,-0,-0.0,{long},c,2026-01-01T00:03:00Z\n\
             5,0,0,\"{long}1\",c,2026-01-01T00:04:00Z\n\
             6,-7,inf,{long}1,b,2026-01-01T00:30:00Z\n\
             7,7,+inf,{long}2,\"b\",2026-01-01T00:31:00Z\n\
             8,7,infinity,{long}1,a,2026-01-01T00:32:00Z\n"
        ),
    );
    let expected = "transaction_id,rule_id,result,detail\n\
         1,1,true,\"cn=1 cx=1 ck=1 dm=1 mm=\"\"b\"\"\"\n\
         2,1,true,\"cn=2 cx=2 ck=1 dm=1 mm=\"\"a\"\"\"\n\
         3,1,true,\"cn=3 cx=3 ck=2 dm=2 mm=\"\"b\"\"\"\n\
         4,1,true,\"cn=1 cx=1 ck=1 dm=1 mm=\"\"c\"\"\"\n\
         5,1,true,\"cn=2 cx=2 ck=3 dm=3 mm=\"\"c\"\"\"\n\
         6,1,true,\"cn=1 cx=1 ck=4 dm=1 mm=\"\"b\"\"\"\n\
         7,1,true,\"cn=4 cx=2 ck=2 dm=1 mm=\"\"b\"\"\"\n\
         8,1,true,\"cn=5 cx=3 ck=5 dm=2 mm=\"\"b\"\"\"\n";
    for extra in [&["-j", "1"][..], &["--executor", "processes", "-j", "2"]] {
        let mut args = vec!["run", "tx.csv", "--rules", "rules.toml", "-q", "--explain"];
        args.extend_from_slice(extra);
        wd.run(&args).expect_success().expect_stdout(expected);
    }
}
