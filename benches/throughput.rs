//! `cargo bench --bench throughput`: rule-evaluation throughput of the real binary on a
//! seeded generated input, against the parse-and-write floor (the same input read, typed,
//! reordered and written with no rule evaluated), for threads -j 1, threads -j N and
//! processes -j N. Every executor's results must be byte-identical, or the bench fails.
//!
//! Each variant runs `ROUNDS` times and the fastest round counts: these machines are noisy,
//! and the fastest round is the one least disturbed by the rest of the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ROWS: u64 = 500_000;
const ROUNDS: usize = 3;
const RULES: &str = r#"[columns]
id = "int"
amount = "float"

[[rule]]
id = 1
name = "large_amount"
when = "amount > 10000.0"

[[rule]]
id = 2
name = "iran"
when = 'country == "IR"'

[[rule]]
id = 3
name = "casino"
when = 'merchant == "casino"'
"#;

struct Variant {
    label: String,
    args: Vec<String>,
    /// The floor writes `false` everywhere: its output is not compared.
    compare: bool,
}

struct Measured {
    label: String,
    wall: Duration,
    output: Option<Vec<u8>>,
}

fn txguard(dir: &Path, args: &[String]) -> Result<Duration, String> {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_txguard"))
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run txguard: {e}"))?;
    let wall = started.elapsed();
    if out.status.success() {
        Ok(wall)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn main() {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let dir = tempfile::tempdir().expect("temp dir");
    let root: PathBuf = dir.path().to_path_buf();
    std::fs::write(root.join("rules.toml"), RULES).expect("write rules");
    let generate = [
        "generate",
        "-n",
        &ROWS.to_string(),
        "--seed",
        "42",
        "-o",
        "tx.csv",
    ]
    .map(String::from);
    txguard(&root, &generate).expect("generate the input");
    let input_mb = std::fs::metadata(root.join("tx.csv")).expect("input").len() as f64 / 1e6;

    let run = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "tx.csv",
            "--rules",
            "rules.toml",
            "-q",
            "-o",
            "out.csv",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let n = jobs.to_string();
    let variants = [
        Variant {
            label: format!("floor -j {n}"),
            args: run(&["--floor", "-j", &n]),
            compare: false,
        },
        Variant {
            label: "threads -j 1".into(),
            args: run(&["-j", "1"]),
            compare: true,
        },
        Variant {
            label: format!("threads -j {n}"),
            args: run(&["-j", &n]),
            compare: true,
        },
        Variant {
            label: format!("processes -j {n}"),
            args: run(&["--executor", "processes", "-j", &n]),
            compare: true,
        },
    ];

    println!(
        "throughput: {ROWS} rows ({input_mb:.1} MB) x 3 rules, best of {ROUNDS} rounds, {jobs} CPUs"
    );
    let mut measured: Vec<Measured> = Vec::new();
    for v in &variants {
        let mut best: Option<Duration> = None;
        let mut failure = None;
        for _ in 0..ROUNDS {
            match txguard(&root, &v.args) {
                Ok(wall) => best = Some(best.map_or(wall, |b| b.min(wall))),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        match (best, failure) {
            (Some(wall), None) => {
                let output = v
                    .compare
                    .then(|| std::fs::read(root.join("out.csv")).expect("read results"));
                measured.push(Measured {
                    label: v.label.clone(),
                    wall,
                    output,
                });
            }
            (_, Some(e)) => println!("  {:<16} not measured: {e}", v.label),
            (None, None) => unreachable!("ROUNDS > 0"),
        }
    }

    let floor = measured
        .iter()
        .find(|m| m.label.starts_with("floor"))
        .map(|m| m.wall);
    println!(
        "  {:<16} {:>9} {:>12} {:>14} {:>9} {:>13}",
        "variant", "wall", "tx/s", "evaluations/s", "MB/s", "wall / floor"
    );
    for m in &measured {
        let secs = m.wall.as_secs_f64();
        let ratio = floor.map_or("-".to_string(), |f| {
            format!("{:.2}x", secs / f.as_secs_f64())
        });
        println!(
            "  {:<16} {:>8.3}s {:>12.0} {:>14.0} {:>9.1} {:>13}",
            m.label,
            secs,
            ROWS as f64 / secs,
            3.0 * ROWS as f64 / secs,
            input_mb / secs,
            ratio
        );
    }
    let by_label = |prefix: &str| {
        measured
            .iter()
            .find(|m| m.label.starts_with(prefix))
            .map(|m| m.wall.as_secs_f64())
    };
    if let (Some(threads), Some(processes)) =
        (by_label(&format!("threads -j {n}")), by_label("processes"))
    {
        println!(
            "  processes tx/s / threads tx/s = {:.2}",
            threads / processes
        );
    }

    let outputs: Vec<&Measured> = measured.iter().filter(|m| m.output.is_some()).collect();
    let identical = outputs.windows(2).all(|w| w[0].output == w[1].output);
    let names: Vec<&str> = outputs.iter().map(|m| m.label.as_str()).collect();
    if identical {
        println!("  results identical across: {}", names.join(", "));
    } else {
        eprintln!("  RESULTS DIFFER between {}", names.join(", "));
        std::process::exit(1);
    }
}
