//! The native path against Rhai: generated scripts of the subset and generated rows
//! (edge values included) give the same `Outcome` both ways, random draws included; the
//! benchmark's rules take the native path; anything outside the subset stays Rhai's.

use std::time::Duration;

use rhai::Dynamic;

use crate::model::{ColumnType, Columns, Outcome, Row};
use crate::rules::engine::Evaluator;
use crate::rules::{file, random};

/// A seeded generator (SplitMix64): every failure replays from its seed.
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(1);
        (random::mix(self.0) % n as u64) as usize
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

/// The columns of the generated rows: two of each type, and the id.
fn columns() -> Columns {
    let spec = [
        ("id", ColumnType::Int),
        ("i", ColumnType::Int),
        ("j", ColumnType::Int),
        ("f", ColumnType::Float),
        ("g", ColumnType::Float),
        ("s", ColumnType::String),
        ("t", ColumnType::String),
        ("b", ColumnType::Bool),
        ("c", ColumnType::Bool),
    ];
    Columns {
        names: spec.iter().map(|(n, _)| n.to_string()).collect(),
        types: spec.iter().map(|(_, t)| *t).collect(),
    }
}

const INTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "42",
    "10000",
    "9223372036854775807",
    "-9223372036854775808",
    "9007199254740993",
    "-9007199254740993",
    "9007199254740992",
];
const FLOATS: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "inf",
    "-inf",
    "1e308",
    "1.7976931348623157e308",
    "5e-324",
    "-5e-324",
    "1e-300",
    "10000",
    "10000.000000000002",
    "9999.999999999998",
    "10000.00000001",
    "1e16",
    "0.5",
    "-2.5",
    "0.1",
    "0.30000000000000004",
    "42",
    "9007199254740993",
    "9.223372036854776e18",
];
const STRINGS: &[&str] = &[
    "",
    "IR",
    "ir",
    "IR ",
    "KP",
    "Zürich",
    "é",
    "e\u{301}",
    "ACME, Inc.",
    "a\"b",
    "\u{0}",
    "😀",
    "\u{10ffff}",
];
/// Literals as a script writes them (all parse to values of `INTS`/`FLOATS`/`STRINGS`
/// or near them).
const INT_LITERALS: &[&str] = &[
    "0",
    "1",
    "-1",
    "42",
    "10000",
    "9223372036854775807",
    "-9223372036854775807",
    "9007199254740993",
    "1_000",
];
const FLOAT_LITERALS: &[&str] = &[
    "0.0",
    "-0.0",
    "10000.0",
    "0.5",
    "-2.5",
    "0.1",
    "1e16",
    "1.0e-300",
    "1.7976931348623157e308",
    "9007199254740992.0",
    "42.0",
    "0.01",
];
const STRING_LITERALS: &[&str] = &[
    "\"\"",
    "\"IR\"",
    "\"KP\"",
    "\"Zürich\"",
    "\"é\"",
    "\"ACME, Inc.\"",
    "\"a\\\"b\"",
    "\"😀\"",
    "\"\\u10ffff\"",
];
const OPS: &[&str] = &["==", "!=", "<", "<=", ">", ">="];

impl Gen {
    fn numeric(&mut self) -> String {
        match self.below(6) {
            0 => self.pick(&["i", "j", "id"]).to_string(),
            1 => self.pick(&["f", "g"]).to_string(),
            2 => self.pick(INT_LITERALS).to_string(),
            3 => self.pick(FLOAT_LITERALS).to_string(),
            4 => "random()".to_string(),
            _ => self.pick(&["i", "f"]).to_string(),
        }
    }

    fn string(&mut self) -> String {
        match self.below(3) {
            0 => self.pick(STRING_LITERALS).to_string(),
            _ => self.pick(&["s", "t"]).to_string(),
        }
    }

    fn boolean(&mut self, depth: usize) -> String {
        let leaf = depth == 0;
        match self.below(if leaf { 6 } else { 11 }) {
            0 => format!("{} {} {}", self.numeric(), self.pick(OPS), self.numeric()),
            1 => format!("{} {} {}", self.string(), self.pick(OPS), self.string()),
            2 => "coin_flip()".into(),
            3 => self.pick(&["b", "c"]).into(),
            4 => self.pick(&["true", "false"]).into(),
            5 => self.membership(),
            6 => format!("!({})", self.boolean(depth - 1)),
            7 | 8 => {
                let op = self.pick(&["&&", "||"]);
                let n = 2 + self.below(2);
                let parts: Vec<String> = (0..n).map(|_| self.boolean(depth - 1)).collect();
                format!("({})", parts.join(&format!(" {op} ")))
            }
            9 => format!(
                "({}) {} ({})",
                self.boolean(depth - 1),
                self.pick(OPS),
                self.boolean(depth - 1)
            ),
            _ => format!("!{}", self.pick(&["b", "coin_flip()", "true"])),
        }
    }

    fn membership(&mut self) -> String {
        let n = self.below(5);
        let (value, items): (String, Vec<String>) = match self.below(4) {
            0 => (
                self.pick(&["s", "t"]).into(),
                (0..n).map(|_| self.pick(STRING_LITERALS).into()).collect(),
            ),
            1 => (
                self.pick(&["b", "c", "coin_flip()"]).into(),
                (0..n)
                    .map(|_| self.pick(&["true", "false"]).into())
                    .collect(),
            ),
            _ => (
                self.pick(&["i", "f", "id", "random()"]).into(),
                (0..n)
                    .map(|_| {
                        if self.below(2) == 0 {
                            self.pick(INT_LITERALS).into()
                        } else {
                            self.pick(FLOAT_LITERALS).into()
                        }
                    })
                    .collect(),
            ),
        };
        let op = self.pick(&["in", "in", "!in"]);
        format!("{value} {op} [{}]", items.join(", "))
    }

    fn row(&mut self, columns: &Columns) -> Row {
        let values: Vec<Dynamic> = columns
            .types
            .iter()
            .map(|kind| {
                let text = match kind {
                    ColumnType::Int => self.pick(INTS).to_string(),
                    ColumnType::Float => self.pick(FLOATS).to_string(),
                    ColumnType::String => self.pick(STRINGS).to_string(),
                    ColumnType::Bool => self.pick(&["true", "false"]).to_string(),
                };
                // As the typer builds them: only values a real input can give.
                kind.value(text.as_bytes()).unwrap()
            })
            .collect();
        Row {
            id: values[0].to_string(),
            values,
        }
    }
}

fn rules_file(scripts: &[String]) -> String {
    scripts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "[[rule]]\nid = {}\nname = \"r{i}\"\nwhen = '''{s}'''\n",
                i + 1
            )
        })
        .collect()
}

/// An evaluator of `scripts`, and the same with every rule left to Rhai.
fn both(scripts: &[String], columns: &Columns, seed: u64) -> (Evaluator, Evaluator) {
    let set = file::parse(&rules_file(scripts), Duration::from_secs(5)).unwrap();
    let native = Evaluator::new(&set, columns, seed).unwrap_or_else(|e| panic!("{e:?}"));
    let mut rhai = Evaluator::new(&set, columns, seed).unwrap();
    rhai.without_native();
    (native, rhai)
}

#[test]
fn generated_scripts_give_rhais_outcomes_natively_on_generated_rows() {
    let columns = columns();
    let mut natives = 0;
    for seed in 0..60u64 {
        let mut generator = Gen(seed << 32);
        // Every other script ends with a draw: a draw too many or too few anywhere before
        // it (an operand evaluated that `&&` or `||` should have skipped) shows in it.
        let scripts: Vec<String> = (0..8)
            .map(|k| match generator.boolean(3) {
                script if k % 2 == 1 => format!("({script}) != coin_flip()"),
                script => script,
            })
            .collect();
        let (mut native, mut rhai) = both(&scripts, &columns, seed);
        for (rule, script) in scripts.iter().enumerate() {
            assert!(native.is_native(rule), "seed {seed}: not native: {script}");
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..48 {
            let row = generator.row(&columns);
            a.clear();
            b.clear();
            native.evaluate_row(&row, &mut a);
            rhai.evaluate_row(&row, &mut b);
            for (rule, (x, y)) in a.iter().zip(&b).enumerate() {
                assert_eq!(
                    x, y,
                    "seed {seed}, script {:?}, row {:?}",
                    scripts[rule], row.values
                );
            }
        }
        natives += native.native_evaluations();
        assert_eq!(rhai.native_evaluations(), 0);
    }
    assert_eq!(natives, 60 * 8 * 48, "every evaluation was native");
}

#[test]
fn float_comparisons_are_rhais_fuzzy_ones_and_ints_compare_as_floats() {
    // Cases the generator may miss, each checked against Rhai and pinned.
    let columns = columns();
    let cases = [
        ("f > 10000.0", "10000.000000000002", false),
        ("f == 10000.0", "10000.000000000002", true),
        ("f > 10000.0", "inf", false),
        ("f >= 10000.0", "inf", false),
        ("f != 1.0", "inf", false),
        ("f == 0.0", "-0", true),
        ("f < 0.0", "-5e-324", false),
        ("i == 9007199254740992.0", "9007199254740993", true),
        ("f > 1", "1.0000000000000002", false),
    ];
    for (script, value, expected) in cases {
        let (mut native, mut rhai) = both(&[script.to_string()], &columns, 0);
        assert!(native.is_native(0), "{script}");
        let mut row = Gen(1).row(&columns);
        let column = if script.starts_with('i') { 1 } else { 3 };
        row.values[column] = columns.types[column].value(value.as_bytes()).unwrap();
        let want = if expected {
            Outcome::True
        } else {
            Outcome::False
        };
        assert_eq!(rhai.evaluate(0, &row, 0), want, "rhai: {script} on {value}");
        assert_eq!(
            native.evaluate(0, &row, 0),
            want,
            "native: {script} on {value}"
        );
    }
}

#[test]
fn the_benchmark_rules_are_evaluated_natively() {
    // simple3.rules.toml of the shared bench inputs (the throughput bench's workload), on
    // the columns `txguard generate` writes, and the sample rules' stateless ones.
    let simple3 = "[columns]\nid = \"int\"\namount = \"float\"\n\
        [[rule]]\nid = 1\nname = \"large\"\nwhen = \"amount > 10000.0\"\n\
        [[rule]]\nid = 2\nname = \"iran\"\nwhen = 'country == \"IR\"'\n\
        [[rule]]\nid = 3\nname = \"acme\"\nwhen = 'merchant == \"ACME, Inc.\"'\n\
        [[rule]]\nid = 4\nname = \"coin\"\nwhen = \"amount > 10000.0 && coin_flip()\"\n\
        [[rule]]\nid = 5\nname = \"blocklist\"\nwhen = 'country in [\"IR\", \"KP\", \"SY\"]'\n\
        [[rule]]\nid = 6\nname = \"audit\"\nwhen = \"random() < 0.01\"\n";
    let set = file::parse(simple3, Duration::from_secs(1)).unwrap();
    let header = crate::generate::HEADER.trim_end();
    let columns = Columns {
        names: header.split(',').map(String::from).collect(),
        types: header.split(',').map(|n| set.column_type(n)).collect(),
    };
    let mut ev = Evaluator::new(&set, &columns, 0).unwrap();
    for rule in 0..ev.rule_count() {
        assert!(ev.is_native(rule), "rule {} is not native", rule + 1);
    }
    let row = Row {
        id: "7".into(),
        values: vec![
            Dynamic::from_int(7),
            Dynamic::from("2026-01-01T00:00:00Z".to_string()),
            Dynamic::from("ACC000001".to_string()),
            Dynamic::from_float(20000.0),
            Dynamic::from("EUR".to_string()),
            Dynamic::from("IR".to_string()),
            Dynamic::from("ACME, Inc.".to_string()),
        ],
    };
    let mut out = Vec::new();
    ev.evaluate_row(&row, &mut out);
    assert_eq!(&out[..3], [Outcome::True, Outcome::True, Outcome::True]);
    assert_eq!(ev.native_evaluations(), 6);
}

#[test]
fn scripts_outside_the_subset_stay_with_rhai_and_say_what_rhai_says() {
    let columns = columns();
    let outside = [
        // Type pairs without a built-in operator: an error, or false, in Rhai.
        "s > 1",
        "s == 1",
        "i in [1, \"x\"]",
        "s in [\"a\", 1]",
        "s in \"IR KP\"",
        // Arithmetic, statements, functions, a variable that is no column.
        "i + 1 > 2",
        "let x = 1; x > 0",
        "fn coin_flip() { true } coin_flip()",
        "if b { true } else { false }",
        "i",
        "s.len() > 1",
        "sleep_ms(0); true",
    ];
    let scripts: Vec<String> = outside.iter().map(|s| s.to_string()).collect();
    let (native, _) = both(&scripts, &columns, 0);
    for (rule, script) in outside.iter().enumerate() {
        assert!(!native.is_native(rule), "{script}");
    }
    let (mut native, _) = both(&["s - 1 > 0".to_string()], &columns, 0);
    let row = Gen(3).row(&columns);
    match native.evaluate(0, &row, 0) {
        Outcome::Error(m) => assert!(m.starts_with("Function not found: -"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Under a millisecond, whether Rhai finishes in time decides: such a rule is Rhai's.
    let set = file::parse(
        "[[rule]]\nid = 1\nname = \"r\"\nwhen = 'b'\ntimeout = \"500us\"\n",
        Duration::from_secs(1),
    )
    .unwrap();
    let ev = Evaluator::new(&set, &columns, 0).unwrap();
    assert!(!ev.is_native(0));
}

#[test]
fn a_value_not_of_its_columns_type_sends_that_evaluation_to_rhai() {
    let columns = columns();
    let scripts = ["f > 1.0 || s == \"IR\"".to_string()];
    let (mut native, mut rhai) = both(&scripts, &columns, 0);
    let mut row = Gen(5).row(&columns);
    row.values[3] = Dynamic::UNIT;
    row.values[5] = Dynamic::from("IR".to_string());
    // Rhai compares `()` with a float as false, then reads `s`.
    assert_eq!(native.evaluate(0, &row, 0), Outcome::True);
    assert_eq!(rhai.evaluate(0, &row, 0), Outcome::True);
    assert_eq!(native.native_evaluations(), 0);
}

#[test]
fn a_trailing_semicolon_comments_and_parentheses_change_nothing_either_way() {
    let columns = columns();
    let scripts: Vec<String> = [
        "f > 1.0;",
        "  (f > 1.0) // large\n",
        "/* block */ ((b));",
        "coin_flip();",
        "s in [\"IR\", \"KP\"];;",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut native, mut rhai) = both(&scripts, &columns, 3);
    let mut generator = Gen(9);
    for _ in 0..32 {
        let row = generator.row(&columns);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        native.evaluate_row(&row, &mut a);
        rhai.evaluate_row(&row, &mut b);
        assert_eq!(a, b);
    }
    for (rule, script) in scripts.iter().enumerate() {
        assert!(native.is_native(rule), "{script:?}");
    }
}

#[test]
fn rows_typed_from_a_generated_input_take_the_native_path() {
    use crate::framer::{Config, Framer, Splitter};
    use crate::typing::{Schema, Typer};
    use std::sync::Arc;
    // The input `txguard generate` writes, typed as the lanes type it: the values the
    // typer builds are the ones the native path reads (no silent fallback to Rhai).
    let set = file::parse(
        "[columns]\nid = \"int\"\namount = \"float\"\n\
         [[rule]]\nid = 1\nname = \"a\"\nwhen = \"amount > 100.0 && coin_flip()\"\n\
         [[rule]]\nid = 2\nname = \"b\"\nwhen = 'country in [\"IR\", \"US\"] || merchant == \"fuel\"'\n\
         [[rule]]\nid = 3\nname = \"c\"\nwhen = \"id % 2 == 0\"\n",
        Duration::from_secs(1),
    )
    .unwrap();
    let mut csv = Vec::new();
    crate::generate::write_transactions(&mut csv, 500, 7).unwrap();
    let config = Config::default();
    let mut framer = Framer::new(&csv[..], config);
    let chunk = framer.next_chunk().unwrap().unwrap();
    let header = chunk.records().next().unwrap().body.unwrap();
    let schema = Schema::from_header(Splitter::new(&config).split(header), "tx.csv", &set).unwrap();
    let mut native = Evaluator::new(&set, schema.columns(), 0).unwrap();
    let mut rhai = Evaluator::new(&set, schema.columns(), 0).unwrap();
    rhai.without_native();
    assert!(native.is_native(0) && native.is_native(1) && !native.is_native(2));
    let mut typer = Typer::new(Arc::new(schema), &config);
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    typer.type_records(chunk.records().skip(1), &mut rows, &mut bad);
    assert_eq!((rows.len(), bad.len()), (500, 0));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for row in &rows {
        native.evaluate_row(row, &mut a);
        rhai.evaluate_row(row, &mut b);
    }
    assert_eq!(a, b);
    assert_eq!(native.native_evaluations(), 2 * 500);
    assert!(a.contains(&Outcome::True) && a.contains(&Outcome::False));
}

#[test]
fn odd_literals_a_column_named_random_and_missing_values_agree_with_rhai() {
    // Scripts a reviewer tried (negative and folded literals, overflow, ints beyond 2^53,
    // empty and mixed arrays, draws on both sides, bools ordered), natively or not, on
    // generated rows where one value in five is missing (`()`, a nullable column).
    let mut columns = columns();
    columns.names.push("random".into());
    columns.types.push(ColumnType::Int);
    let scripts: Vec<String> = [
        "i > -5",
        "i > - 5",
        "i > -(5)",
        "-i > 5",
        "f > 1e3",
        "f > 1_000.0",
        "f == 1e-3",
        "i == 9223372036854775807",
        "i < -9223372036854775807 - 1",
        "f > 9223372036854775807",
        "b == true",
        "b > false",
        "b >= c",
        "b == (i > 1)",
        "s > \"\"",
        "s <= \"Zürich\"",
        "s in []",
        "i in []",
        "i in [1, 2.0, 1e3]",
        "b in [true]",
        "f in [0.0, -0.0]",
        "!b && c",
        "!(b && c) || !c",
        "!!b",
        "!(!(b))",
        "true && 1 < 2",
        "1 < 2.0",
        "coin_flip(1)",
        "random() < 0.5 && coin_flip() || random() > 0.3",
        "i in [1, 2] == true",
        "(i > 1) == 1",
        "f == ()",
        "s == 'a'",
        "i > 1 && s",
        "switch i { 1 => true, _ => false }",
        "if b { c } else { !c }",
        "random > 3",
        "random() < 0.5 && random > 3",
        "i in [1, 2, 3] in [true]",
        "\"IR\" in [s, t]",
        "s in [\"IR\", \"IR\"]",
        "f > 0.0 && f < 1.0 || f == 1.0 && !b",
        "i == i",
        "f != f",
        "s == s",
        "b != b",
        "i in [i]",
        "true",
        "false",
        "!true",
        "1 == 1",
        "9223372036854775807 + 1 > 0",
        "i > 9223372036854775807.0",
        "f >= -1e308",
        "f < 1e400",
        "f > 1e-400",
        "i in [9007199254740993]",
        "f in [9007199254740993]",
        "i == 9007199254740993.0",
        "coin_flip() == coin_flip()",
        "random() > random()",
        "(random() < 0.5) in [true, false]",
        "random() in [0.5]",
        "coin_flip() in []",
        "!(i in [])",
        "b || i > 1 / 0",
        "b && f > 1.0",
        "s in [\"\", \"a\"] || t in []",
        "i != 1.5",
        "s !in [\"IR\", \"KP\"]",
        "contains([\"IR\"], s)",
        "f == 0",
        "id > 0 && i < 0",
        "(b || coin_flip()) && coin_flip()",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let set = file::parse(&rules_file(&scripts), Duration::from_secs(5)).unwrap();
    let mut native = Evaluator::new(&set, &columns, 7).unwrap_or_else(|e| panic!("{e:?}"));
    let mut rhai = Evaluator::new(&set, &columns, 7).unwrap();
    rhai.without_native();
    let with_rhai: Vec<&str> = (0..scripts.len())
        .filter(|&r| !native.is_native(r))
        .map(|r| scripts[r].as_str())
        .collect();
    assert_eq!(
        with_rhai,
        [
            "-i > 5",
            "coin_flip(1)",
            "(i > 1) == 1",
            "f == ()",
            "s == 'a'",
            "i > 1 && s",
            "switch i { 1 => true, _ => false }",
            "if b { c } else { !c }",
            "\"IR\" in [s, t]",
            "i in [i]",
            "9223372036854775807 + 1 > 0",
            "b || i > 1 / 0",
        ]
    );
    let mut generator = Gen(77);
    let mut bad = 0;

    for n in 0..400 {
        let mut row = generator.row(&columns);
        if n % 5 == 0 {
            let c = generator.below(columns.names.len());
            row.values[c] = Dynamic::UNIT;
        }
        for (rule, script) in scripts.iter().enumerate() {
            let id_hash = random::hash_id(&row.id);
            let a = native.evaluate(rule, &row, id_hash);
            let b = rhai.evaluate(rule, &row, id_hash);
            if a != b {
                bad += 1;
                eprintln!(
                    "{script:?}: {a:?} natively, {b:?} in Rhai, on {:?}",
                    row.values
                );
            }
        }
    }
    assert_eq!(bad, 0);
}
