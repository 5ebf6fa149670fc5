//! `cargo bench --bench throughput`: rule-evaluation throughput of the real binary on a
//! seeded generated input (1,000,000 rows, seed 2), against the parse-and-write floor
//! (the same input framed, typed, reordered and written with no rule evaluated), for
//! threads -j 1, threads -j N and processes -j N, and against DuckDB running the same
//! three rules (`duckdb_rules.py`, when a Python with the `duckdb` module is found). Then
//! heavier rules (cpu8) at -j 1 and -j N, to show how evaluation scales; then the
//! original program's hanging rules (seedlike, 200 rows, 2 lanes) with both executors,
//! against their floor (hangs × 200 ms / lanes). Every executor's results must be
//! byte-identical (DuckDB's equal to txguard's without the `detail` column), in every
//! round, or the bench fails.
//!
//! Each variant runs `ROUNDS` times, the variants taking turns, and the fastest round
//! counts: these machines are noisy, the fastest round is the one least disturbed by the
//! rest of the machine, and taking turns lets a disturbance hit every variant alike.
//!
//! DuckDB: `TXGUARD_BENCH_PYTHON` names the Python (default: `.venv/bin/python` of this
//! checkout if present, else `python3`); `TXGUARD_BENCH_DUCKDB` the script (default:
//! `/work/shared/bench/duckdb_rules.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ROWS: u64 = 1_000_000;
const CPU8_ROWS: u64 = 200_000;
/// Transactions of the seedlike part: 40 of them hang to the 200 ms limit.
const SEEDLIKE_ROWS: u64 = 200;
/// Lanes of the seedlike part, as the issue's target states it.
const SEEDLIKE_JOBS: u64 = 2;
const ROUNDS: usize = 3;
/// `simple3.rules.toml` of the shared bench inputs: the rules `duckdb_rules.py` runs.
const SIMPLE3: &str = r#"[columns]
id = "int"
amount = "float"

[[rule]]
id = 1
name = "large"
when = "amount > 10000.0"

[[rule]]
id = 2
name = "iran"
when = 'country == "IR"'

[[rule]]
id = 3
name = "acme"
when = 'merchant == "ACME, Inc."'
"#;
/// `cpu8.rules.toml` of the shared bench inputs: more work per rule.
const CPU8: &str = r#"[columns]
currency = "string"
id = "int"
amount = "float"

[[rule]]
id = 1
name = "large_coin"
when = "amount > 10000.0 && coin_flip()"

[[rule]]
id = 2
name = "blocklist"
when = 'country in ["IR", "KP", "SY", "CU", "RU", "BY"]'

[[rule]]
id = 3
name = "merchant_prefix"
when = 'merchant.starts_with("casino") || merchant.contains("crypto")'

[[rule]]
id = 4
name = "round_amount"
when = 'amount >= 1000.0 && amount % 100.0 == 0.0'

[[rule]]
id = 5
name = "score"
when = '''
let s = 0.0;
for i in 0..20 { s += amount * 0.001 * i; }
s > 5000.0
'''

[[rule]]
id = 6
name = "random_audit"
when = "random() < 0.01"

[[rule]]
id = 7
name = "account_pattern"
when = 'account.len() > 3 && account.sub_string(0, 3) == "ACC"'

[[rule]]
id = 8
name = "currency_mismatch"
when = '(country == "DE" && currency != "EUR") || (country == "US" && currency != "USD")'
"#;

/// `seedlike.rules.toml` of the shared bench inputs: the original program's workload, rule
/// 2 looping forever on every fifth id, 200 ms limit.
const SEEDLIKE: &str = r#"[columns]
id = "int"
amount = "float"

[defaults]
timeout = "200ms"

[[rule]]
id = 1
name = "r1"
when = "amount > 10000.0 && coin_flip()"

[[rule]]
id = 2
name = "r2_hangs_every_fifth"
when = '''
if id % 5 == 0 { loop { } }
amount > 10000.0 && coin_flip()
'''

[[rule]]
id = 3
name = "r3"
when = "amount > 10000.0 && coin_flip()"
"#;

struct Variant {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    /// Where its results are, and how they compare: `None` for the floor (all `false`).
    output: Option<(&'static str, Compare)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Compare {
    Exact,
    /// DuckDB writes no `detail` column.
    WithoutDetail,
}

struct Measured {
    label: String,
    wall: Duration,
    output: Option<(Vec<u8>, Compare)>,
}

fn timed(program: &Path, args: &[String], dir: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let wall = started.elapsed();
    if out.status.success() {
        Ok(wall)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn txguard() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_txguard"))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A Python that can `import duckdb`, and the script, or why not.
fn duckdb() -> Result<(PathBuf, PathBuf), String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let python = std::env::var_os("TXGUARD_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or(if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        });
    let script = std::env::var_os("TXGUARD_BENCH_DUCKDB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/bench/duckdb_rules.py"));
    if !script.exists() {
        return Err(format!("{} not found", script.display()));
    }
    let import = Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !import.status.success() {
        return Err(format!(
            "{} cannot import duckdb (pip install duckdb into .venv)",
            python.display()
        ));
    }
    Ok((python, script))
}

/// Runs every variant `rounds` times, round-robin (so a disturbance of the machine hits
/// every variant alike and the ratios stay fair); the fastest round of each counts.
/// Every round of a variant must write the same results, or the bench fails.
fn measure(dir: &Path, variants: &[Variant], rounds: usize) -> Vec<Measured> {
    let mut best: Vec<Option<Duration>> = vec![None; variants.len()];
    let mut failures: Vec<Option<String>> = vec![None; variants.len()];
    let mut outputs: Vec<Option<(Vec<u8>, Compare)>> = vec![None; variants.len()];
    for _ in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            if failures[i].is_some() {
                continue;
            }
            match timed(&v.program, &v.args, dir) {
                Ok(wall) => best[i] = Some(best[i].map_or(wall, |b| b.min(wall))),
                Err(e) => {
                    failures[i] = Some(e);
                    continue;
                }
            }
            // Read now: the next variant writes the same file.
            if let Some((file, compare)) = v.output {
                let bytes = std::fs::read(dir.join(file)).expect("read results");
                if outputs[i]
                    .as_ref()
                    .is_some_and(|(earlier, _)| *earlier != bytes)
                {
                    eprintln!("  RESULTS DIFFER between two rounds of {}", v.label);
                    std::process::exit(1);
                }
                outputs[i] = Some((bytes, compare));
            }
        }
    }
    let mut measured = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        match (best[i], failures[i].take()) {
            (Some(wall), None) => measured.push(Measured {
                label: v.label.clone(),
                wall,
                output: outputs[i].take(),
            }),
            (_, Some(e)) => println!("  {:<18} not measured: {e}", v.label),
            (None, None) => unreachable!("rounds > 0"),
        }
    }
    measured
}

fn print_table(measured: &[Measured], rows: u64, rules: u64, input_mb: f64) {
    let floor = measured
        .iter()
        .find(|m| m.label.starts_with("floor"))
        .map(|m| m.wall);
    println!(
        "  {:<18} {:>9} {:>12} {:>14} {:>9} {:>13}",
        "variant", "wall", "tx/s", "evaluations/s", "MB/s", "wall / floor"
    );
    for m in measured {
        let secs = m.wall.as_secs_f64();
        let ratio = floor.map_or("-".to_string(), |f| {
            format!("{:.2}x", secs / f.as_secs_f64())
        });
        println!(
            "  {:<18} {:>8.3}s {:>12.0} {:>14.0} {:>9.1} {:>13}",
            m.label,
            secs,
            rows as f64 / secs,
            (rules * rows) as f64 / secs,
            input_mb / secs,
            ratio
        );
    }
}

fn wall_of(measured: &[Measured], prefix: &str) -> Option<f64> {
    measured
        .iter()
        .find(|m| m.label.starts_with(prefix))
        .map(|m| m.wall.as_secs_f64())
}

/// Whether every compared output is the same; exits the bench when not.
fn check_identical(measured: &[Measured]) {
    let strip = |bytes: &[u8]| -> Vec<u8> {
        // `a,b,c,` → `a,b,c`, the header's `,detail` too: DuckDB has no detail column.
        let text = String::from_utf8_lossy(bytes).replace(",detail\n", "\n");
        text.replace(",\n", "\n").into_bytes()
    };
    let outputs: Vec<(&str, Vec<u8>, Compare)> = measured
        .iter()
        .filter_map(|m| {
            m.output
                .as_ref()
                .map(|(o, c)| (m.label.as_str(), o.clone(), *c))
        })
        .collect();
    let Some((_, reference, _)) = outputs.iter().find(|(_, _, c)| *c == Compare::Exact) else {
        return;
    };
    let mut names = Vec::new();
    for (label, output, compare) in &outputs {
        let same = match compare {
            Compare::Exact => output == reference,
            Compare::WithoutDetail => *output == strip(reference),
        };
        if !same {
            eprintln!("  RESULTS DIFFER: {label}");
            std::process::exit(1);
        }
        names.push(*label);
    }
    println!("  results identical across: {}", names.join(", "));
}

fn main() {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let dir = tempfile::tempdir().expect("temp dir");
    let root: PathBuf = dir.path().to_path_buf();
    std::fs::write(root.join("simple3.toml"), SIMPLE3).expect("write rules");
    std::fs::write(root.join("cpu8.toml"), CPU8).expect("write rules");
    std::fs::write(root.join("seedlike.toml"), SEEDLIKE).expect("write rules");
    for (rows, file) in [
        (ROWS, "tx.csv"),
        (CPU8_ROWS, "tx-cpu8.csv"),
        (SEEDLIKE_ROWS, "tx-seedlike.csv"),
    ] {
        let generate = strings(&[
            "generate",
            "-n",
            &rows.to_string(),
            "--seed",
            "2",
            "-o",
            file,
        ]);
        timed(&txguard(), &generate, &root).expect("generate the input");
    }
    let input_mb = std::fs::metadata(root.join("tx.csv")).expect("input").len() as f64 / 1e6;
    let n = jobs.to_string();
    let run = |input: &str, rules: &str, extra: &[&str]| -> Vec<String> {
        let mut args = strings(&["run", input, "--rules", rules, "-q", "-o", "out.csv"]);
        args.extend(strings(extra));
        args
    };
    let tx = |label: String, args: Vec<String>, compared: bool| Variant {
        label,
        program: txguard(),
        args,
        output: compared.then_some(("out.csv", Compare::Exact)),
    };

    let mut variants = vec![
        tx(
            format!("floor -j {n}"),
            run("tx.csv", "simple3.toml", &["--floor", "-j", &n]),
            false,
        ),
        tx(
            "threads -j 1".into(),
            run("tx.csv", "simple3.toml", &["-j", "1"]),
            true,
        ),
        tx(
            format!("threads -j {n}"),
            run("tx.csv", "simple3.toml", &["-j", &n]),
            true,
        ),
        tx(
            format!("processes -j {n}"),
            run(
                "tx.csv",
                "simple3.toml",
                &["--executor", "processes", "-j", &n],
            ),
            true,
        ),
    ];
    match duckdb() {
        Ok((python, script)) => variants.push(Variant {
            label: format!("duckdb {n} threads"),
            program: python,
            args: vec![
                script.display().to_string(),
                "tx.csv".into(),
                "duck.csv".into(),
                n.clone(),
            ],
            output: Some(("duck.csv", Compare::WithoutDetail)),
        }),
        Err(why) => println!("  (DuckDB not measured: {why})"),
    }
    println!(
        "throughput: {ROWS} rows ({input_mb:.1} MB) x 3 rules (simple3), best of {ROUNDS} interleaved rounds, {jobs} CPUs"
    );
    let measured = measure(&root, &variants, ROUNDS);
    print_table(&measured, ROWS, 3, input_mb);
    let one = wall_of(&measured, "threads -j 1");
    let many = wall_of(&measured, &format!("threads -j {n}"));
    if let (Some(one), Some(many)) = (one, many) {
        println!("  threads -j {n} speed-up over -j 1 = {:.2}", one / many);
    }
    if let (Some(many), Some(processes)) = (many, wall_of(&measured, "processes")) {
        println!("  processes tx/s / threads tx/s = {:.2}", many / processes);
    }
    if let (Some(many), Some(duck)) = (many, wall_of(&measured, "duckdb")) {
        println!(
            "  txguard -j {n} wall / DuckDB wall (with Python's start) = {:.2}",
            many / duck
        );
    }
    check_identical(&measured);

    let cpu8 = [
        tx(
            "cpu8 threads -j 1".into(),
            run("tx-cpu8.csv", "cpu8.toml", &["-j", "1"]),
            true,
        ),
        tx(
            format!("cpu8 threads -j {n}"),
            run("tx-cpu8.csv", "cpu8.toml", &["-j", &n]),
            true,
        ),
    ];
    println!(
        "\nheavier rules: {CPU8_ROWS} rows x 8 rules (cpu8), best of {ROUNDS} interleaved rounds"
    );
    let measured = measure(&root, &cpu8, ROUNDS);
    let cpu8_mb = std::fs::metadata(root.join("tx-cpu8.csv"))
        .expect("input")
        .len() as f64
        / 1e6;
    print_table(&measured, CPU8_ROWS, 8, cpu8_mb);
    if let (Some(one), Some(many)) = (
        wall_of(&measured, "cpu8 threads -j 1"),
        wall_of(&measured, &format!("cpu8 threads -j {n}")),
    ) {
        println!("  threads -j {n} speed-up over -j 1 = {:.2}", one / many);
    }
    check_identical(&measured);

    // Ids are 1..=SEEDLIKE_ROWS: every fifth hangs to its 200 ms limit.
    let hangs = SEEDLIKE_ROWS / 5;
    let floor = hangs as f64 * 0.2 / SEEDLIKE_JOBS as f64;
    let j = SEEDLIKE_JOBS.to_string();
    let seedlike = [
        tx(
            format!("seedlike threads -j {j}"),
            run("tx-seedlike.csv", "seedlike.toml", &["-j", &j]),
            true,
        ),
        tx(
            format!("seedlike processes -j {j}"),
            run(
                "tx-seedlike.csv",
                "seedlike.toml",
                &["--executor", "processes", "-j", &j],
            ),
            true,
        ),
    ];
    println!(
        "\nhanging rules: {SEEDLIKE_ROWS} rows x 3 rules (seedlike), {hangs} hangs of 200 ms on \
         {j} lanes: floor {floor:.2} s, target <= floor x 1.03 + 0.1 s = {:.2} s; one round",
        floor * 1.03 + 0.1
    );
    let measured = measure(&root, &seedlike, 1);
    for m in &measured {
        let secs = m.wall.as_secs_f64();
        println!(
            "  {:<26} {secs:>7.3}s  wall / floor = {:.3}",
            m.label,
            secs / floor
        );
    }
    check_identical(&measured);
}
