//! Issue 10: hostile rules. Every abuse of the sandbox must end as one `error` or `timeout`
//! result for the (transaction, rule) pair that committed it, with a short one-line reason,
//! and change nothing else: exit 0, every other result byte-identical to a run without
//! the hostile rule, no temporary file left behind, memory within the budget, no hang.
//!
//! Each case runs in both executors (`-j 2`) through `sh -c 'ulimit -v …'`, so that a
//! failure cannot take the machine's memory with it, and the cases that may allocate a lot
//! run one at a time (`HEAVY`). Timing bounds are "did not hang" bounds only.
//!
//! Also `txguard check`: examples are bounded in time, every problem of a file is reported
//! in one pass, `--input` checks the rules against a real header, and variables shared by
//! several rules are inferred as columns once.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use crate::workdir::Workdir;

/// Address-space limit of every txguard run here (`ulimit -v`, KiB): about 3.8 GiB.
const ULIMIT_KIB: u64 = 4_000_000;
/// A run that takes longer is hung: it is killed and the test fails.
const HANG: Duration = Duration::from_secs(180);
/// The documented default memory budget of one evaluation.
const BUDGET_MIB: u64 = 256;
const JOBS: u64 = 2;
/// What a run needs besides its evaluations' budgets (the runtime, debug build).
const RSS_MARGIN_MIB: u64 = 256;
/// The contract's longest `detail`: 1 KiB, then an ellipsis.
const DETAIL_CAP: usize = 1024;
const EXECUTORS: [&str; 2] = ["threads", "processes"];

/// Runs that may allocate gigabytes (today) or start a thousand processes go one at a
/// time, so two of them never add up on a shared machine.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

const INPUT: &str = "id,amount,country\n1,50.0,FR\n2,20000.0,IR\n3,7.5,US\n4,9999.0,KP\n";
/// The transaction on which the hostile rule misbehaves; on the others it returns true.
const HOSTILE_TX: &str = "2";
const HOSTILE_RULE: &str = "3";

/// Four rules; rule 3 runs `hostile` on transaction 2 (and is `true` elsewhere). Rule 4
/// comes after it, so the lane that ran the hostile evaluation must still be sound.
fn rules_file(hostile: &str, timeout: Option<&str>) -> String {
    let timeout = timeout.map_or(String::new(), |t| format!("timeout = \"{t}\"\n"));
    format!(
        "[columns]\nid = \"int\"\namount = \"float\"\n\n\
         [[rule]]\nid = 1\nname = \"large\"\nwhen = 'amount > 1000.0'\n\n\
         [[rule]]\nid = 2\nname = \"blocklisted\"\nwhen = 'country in [\"IR\", \"KP\"]'\n\n\
         [[rule]]\nid = 3\nname = \"hostile\"\nwhen = '''\nif id != {HOSTILE_TX} {{ return true; }}\n{hostile}\n'''\n{timeout}\n\
         [[rule]]\nid = 4\nname = \"small_or_lucky\"\nwhen = 'coin_flip() || amount < 10.0'\n"
    )
}

/// A finished txguard run under the memory ulimit.
struct Guarded {
    command: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
    /// Largest resident set of txguard or any of its workers, in KiB (`/usr/bin/time`).
    peak_rss_kib: Option<u64>,
}

impl Guarded {
    fn describe(&self) -> String {
        let stdout: String = self.stdout.chars().take(4000).collect();
        let stderr: String = self.stderr.chars().take(4000).collect();
        format!(
            "command: {}\nstatus: {:?}, took {:?}, peak RSS {:?} KiB\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            self.command, self.code, self.took, self.peak_rss_kib
        )
    }
}

/// A temporary file outside the workdir (which must hold only what txguard leaves).
fn scratch() -> File {
    tempfile::tempfile().expect("create a scratch file")
}

fn read_back(mut file: File) -> String {
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    text
}

/// Runs `txguard ARGS` in the workdir under `ulimit -v ULIMIT_KIB` (and `/usr/bin/time`,
/// when there is one, for its peak RSS), killing its whole process group if it hangs.
fn guarded(wd: &Workdir, args: &[&str]) -> Guarded {
    let txguard = env!("CARGO_BIN_EXE_txguard");
    let time = Path::new("/usr/bin/time");
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {ULIMIT_KIB}; exec \"$0\" \"$@\""));
    if time.exists() {
        cmd.arg(time).args(["-f", "%M", "-o"]).arg(rss_file.path());
        cmd.arg(txguard);
    } else {
        cmd.arg(txguard);
    }
    let (stdout, stderr) = (scratch(), scratch());
    cmd.args(args)
        .current_dir(wd.root())
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
        .process_group(0);
    let command = format!("(in {}) txguard {}", wd.root().display(), args.join(" "));
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn sh");
    let status = child.wait_timeout(HANG).unwrap();
    let took = started.elapsed();
    let Some(status) = status else {
        // SAFETY: plain kill(2) of the process group we created.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = child.wait();
        panic!(
            "{command} hung for {HANG:?}\nstderr:\n{}",
            read_back(stderr)
        );
    };
    let peak_rss_kib = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|text| text.lines().rev().find_map(|l| l.trim().parse().ok()));
    Guarded {
        command,
        code: status.code(),
        stdout: read_back(stdout),
        stderr: read_back(stderr),
        took,
        peak_rss_kib,
    }
}

/// `txguard run` of the rules file on the input, `-j 2`, results to `out`.
fn run_rules(wd: &Workdir, executor: &str, rules: &str, out: &str) -> Guarded {
    guarded(
        wd,
        &[
            "run",
            "tx.csv",
            "--rules",
            rules,
            "-o",
            out,
            "--executor",
            executor,
            "-j",
            &JOBS.to_string(),
            "--seed",
            "7",
            // Far above what any case needs: on a loaded machine a 3 s default could turn a
            // case about memory or results into a timeout (cases about time set their own).
            "--timeout",
            "60s",
            "-q",
        ],
    )
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Result4 {
    tx: String,
    rule: String,
    result: String,
    detail: String,
}

fn parse_results(text: &str) -> Vec<Result4> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| {
            let r = r.expect("results are valid CSV");
            Result4 {
                tx: r[0].to_string(),
                rule: r[1].to_string(),
                result: r[2].to_string(),
                detail: r[3].to_string(),
            }
        })
        .collect()
}

/// Whether `detail` keeps the contract's shape: one line, at most 1 KiB and an ellipsis.
fn detail_problem(detail: &str) -> Option<String> {
    if detail.contains(['\n', '\r']) {
        return Some(format!("detail spans several lines: {:?}", clip(detail)));
    }
    if detail.contains(char::is_control) {
        return Some(format!(
            "raw control characters in detail: {:?}",
            clip(detail)
        ));
    }
    if detail.len() > DETAIL_CAP + '…'.len_utf8() {
        return Some(format!(
            "detail is {} bytes, more than {DETAIL_CAP} and an ellipsis: {:?}",
            detail.len(),
            clip(detail)
        ));
    }
    None
}

fn clip(text: &str) -> String {
    let head: String = text.chars().take(200).collect();
    if head.len() < text.len() {
        format!("{head}… ({} bytes)", text.len())
    } else {
        head
    }
}

/// Anything in the directory besides `expected` and the empty `OUTPUT.lock` files the
/// contract allows to stay (the lock is the kernel's, the file only its handle).
fn leftovers(wd: &Workdir, expected: &[&str]) -> Option<String> {
    let extra: BTreeSet<String> = wd
        .listing()
        .into_iter()
        .filter(|name| !expected.contains(&name.as_str()))
        .filter(|name| {
            let is_lock = name
                .strip_suffix(".lock")
                .is_some_and(|output| expected.contains(&output));
            !(is_lock && std::fs::metadata(wd.path(name)).is_ok_and(|m| m.len() == 0))
        })
        .collect();
    (!extra.is_empty()).then(|| format!("files left in the directory: {extra:?}"))
}

/// What a hostile case must give for the hostile pair.
struct Expect<'a> {
    /// Result kinds allowed for the hostile pair.
    kinds: &'a [&'a str],
    /// The hostile pair's detail must be cut to the cap (its full text is longer).
    capped: bool,
    /// Longest acceptable run (a "did not hang" bound), when tighter than `HANG`.
    within: Option<Duration>,
    /// The sandbox may instead refuse the rule before any row (exit 1, naming the rule):
    /// for constructs it could reasonably take out of the language (closures that capture
    /// variables, `curry`), whose values Rhai's size limits do not see.
    refusable: bool,
}

const ERROR_OR_TIMEOUT: Expect = Expect {
    kinds: &["error", "timeout"],
    capped: false,
    within: None,
    refusable: false,
};
const ERROR_OR_TIMEOUT_OR_REFUSED: Expect = Expect {
    refusable: true,
    ..ERROR_OR_TIMEOUT
};
const ERROR: Expect = Expect {
    kinds: &["error"],
    ..ERROR_OR_TIMEOUT
};

/// Runs the hostile case in both executors and checks everything the issue asks; panics
/// with every problem found in either executor.
fn hostile(name: &str, script: &str, timeout: Option<&str>, expect: Expect) {
    let mut problems = Vec::new();
    for executor in EXECUTORS {
        let wd = Workdir::new(&format!("hostile-{name}-{executor}"));
        wd.create("tx.csv", INPUT);
        wd.create("rules.toml", rules_file(script, timeout));
        wd.create("base.toml", rules_file("true", timeout));
        let base = run_rules(&wd, executor, "base.toml", "base.csv");
        assert_eq!(base.code, Some(0), "baseline failed\n{}", base.describe());
        let run = run_rules(&wd, executor, "rules.toml", "out.csv");
        let mut problem = |what: String| problems.push(format!("[{executor}] {what}"));
        if expect.refusable && run.code == Some(1) {
            if !run.stderr.contains("rule 3 \"hostile\"") {
                problem(format!(
                    "refused, but not naming the rule\n{}",
                    run.describe()
                ));
            }
            let kept = [
                "base.csv",
                "base.toml",
                "rules.toml",
                "tx.csv",
                "out.csv.lock",
            ];
            if let Some(p) = leftovers(&wd, &kept) {
                problem(p);
            }
            continue;
        }
        if run.code != Some(0) {
            problem(format!("exit {:?}, not 0\n{}", run.code, run.describe()));
            continue;
        }
        let text = wd.read("out.csv");
        let got = parse_results(&text);
        let want = parse_results(&wd.read("base.csv"));
        if text.lines().count() != 1 + want.len() {
            problem(format!(
                "{} lines for {} results: a detail spans lines\n{}",
                text.lines().count(),
                want.len(),
                clip(&text)
            ));
        }
        if got.len() != want.len() {
            problem(format!("{} results, not {}", got.len(), want.len()));
        }
        for (g, w) in got.iter().zip(&want) {
            if (g.tx.as_str(), g.rule.as_str()) == (HOSTILE_TX, HOSTILE_RULE) {
                if !expect.kinds.contains(&g.result.as_str()) {
                    problem(format!(
                        "the hostile pair gave {} ({:?}), not one of {:?}",
                        g.result,
                        clip(&g.detail),
                        expect.kinds
                    ));
                }
                if g.detail.trim().is_empty() {
                    problem("the hostile pair's detail is empty".into());
                }
                if let Some(p) = detail_problem(&g.detail) {
                    problem(p);
                }
                if expect.capped && !(g.detail.ends_with('…') || g.detail.ends_with("...")) {
                    problem(format!(
                        "a long detail must end with an ellipsis: {:?}",
                        clip(&g.detail)
                    ));
                }
            } else if g != w {
                problem(format!("{g:?} differs from the run without it: {w:?}"));
            }
        }
        if let Some(p) = leftovers(
            &wd,
            &["base.csv", "base.toml", "out.csv", "rules.toml", "tx.csv"],
        ) {
            problem(p);
        }
        let bound_kib = (BUDGET_MIB * JOBS + RSS_MARGIN_MIB) * 1024;
        if let Some(peak) = run.peak_rss_kib
            && peak > bound_kib
        {
            problem(format!(
                "peak RSS {} MiB, over {} MiB (budget × jobs + margin)",
                peak / 1024,
                bound_kib / 1024
            ));
        }
        if let Some(within) = expect.within
            && run.took > within
        {
            problem(format!("took {:?}, more than {within:?}", run.took));
        }
    }
    assert!(
        problems.is_empty(),
        "hostile case {name:?}:\n{}",
        problems.join("\n")
    );
}

/// A 1 MB string `s`, the usual ammunition.
macro_rules! mb_string {
    ($rest:literal) => {
        concat!("let s = \"x\"; s.pad(16000, \"x\");\n", $rest)
    };
}

// --- Memory -------------------------------------------------------------------------

#[test]
fn a_map_of_1mb_strings_is_stopped_by_the_memory_budget() {
    let _heavy = heavy();
    hostile(
        "map-1mb-strings",
        mb_string!("let m = #{}; for i in 0..100000 { m[\"k\" + i] = s + i; } true"),
        None,
        ERROR_OR_TIMEOUT,
    );
}

#[test]
fn array_growth_by_index_assignment_is_stopped_by_the_memory_budget() {
    let _heavy = heavy();
    // Rhai checks no container size on `a[i] = …`: only the budget sees this.
    hostile(
        "array-index-assignment",
        mb_string!("let a = []; a.pad(100000, 0); for i in 0..100000 { a[i] = s + i; } true"),
        None,
        ERROR_OR_TIMEOUT,
    );
}

#[test]
fn closures_capturing_big_strings_are_stopped_by_the_memory_budget() {
    let _heavy = heavy();
    // Function pointers are invisible to Rhai's size limits.
    hostile(
        "closure-captures",
        mb_string!("let all = []; for i in 0..100000 { let t = s + i; all.push(|| t); } true"),
        None,
        ERROR_OR_TIMEOUT_OR_REFUSED,
    );
}

#[test]
fn curried_function_pointers_doubling_each_step_are_stopped_by_the_memory_budget() {
    let _heavy = heavy();
    // Each step copies everything so far: one operation may allocate gigabytes.
    hostile(
        "curry-doubling",
        "let f = Fn(\"x\"); for i in 0..64 { f = f.curry(f); } true",
        None,
        ERROR_OR_TIMEOUT_OR_REFUSED,
    );
}

#[test]
fn map_values_growth_is_stopped_by_the_memory_budget() {
    let _heavy = heavy();
    hostile(
        "map-values",
        mb_string!(
            "fn x(v) { v }\nlet m = #{}; let all = [];\n\
             for i in 0..100000 { m[\"k\" + i] = Fn(\"x\").curry(s + i); all = m.values(); }\ntrue"
        ),
        None,
        ERROR_OR_TIMEOUT_OR_REFUSED,
    );
}

#[test]
fn a_10mb_string_built_with_pad_is_an_error() {
    hostile(
        "pad-10mb",
        "let s = \"x\"; s.pad(10000000, \"x\"); true",
        None,
        ERROR,
    );
}

#[test]
fn rendering_a_map_of_long_escaped_keys_is_bounded_in_memory_and_time() {
    let _heavy = heavy();
    // Map keys escape Rhai's size limits and `to_debug` writes `\x7f` as 6 bytes: with
    // 1 MiB strings one `to_debug` built a 1.5 GB string (1.76 GB RSS, 15.9 s) before Rhai
    // looked at its length. Every rendering path: `to_debug`, interpolation, `+`, `print`.
    for (name, render) in [
        ("to-debug", "let t = m.to_debug();"),
        ("interpolation", "let t = `${m}`;"),
        ("plus", "let t = \"\" + m;"),
        ("print", "print(m); debug([m]);"),
    ] {
        hostile(
            &format!("render-{name}"),
            &format!(
                "let s = \"\\x7f\"; s.pad(16000, \"\\x7f\"); let m = #{{}};\n\
                 for i in 0..999 {{ let k = s.sub_string(0, 16000 - i); m[k] = 1; }}\n\
                 {render} true"
            ),
            None,
            Expect {
                within: Some(Duration::from_secs(10)),
                ..ERROR
            },
        );
    }
}

#[test]
fn control_characters_in_a_detail_are_escaped() {
    hostile(
        "control-characters",
        "throw \"nul\\x00esc\\x1b[31mdel\\x7fend\";",
        None,
        ERROR,
    );
}

// --- Stack ----------------------------------------------------------------------------

#[test]
fn deeply_nested_arrays_are_an_error_not_a_stack_overflow() {
    let _heavy = heavy();
    hostile(
        "nested-arrays",
        "let a = []; for i in 0..20000 { a = [a]; } true",
        None,
        ERROR_OR_TIMEOUT,
    );
}

#[test]
fn deeply_nested_closures_are_not_a_stack_overflow() {
    let _heavy = heavy();
    // Nested in linear time, invisible to Rhai's size limits, under 256 MiB of heap at a
    // million levels: only a depth limit (or no capturing closures) stops the recursive
    // drop at the end of the evaluation from overflowing any stack.
    hostile(
        "nested-closures",
        "let a = 0; for i in 0..1000000 { let b = a; a = || b; } true",
        None,
        ERROR_OR_TIMEOUT_OR_REFUSED,
    );
}

#[test]
fn deep_recursion_of_script_functions_is_an_error() {
    hostile(
        "recursion",
        "fn f(n) { if n > 0 { 1 + f(n - 1) } else { 0 } }\nf(100000) > 0",
        None,
        ERROR,
    );
}

// --- Results ----------------------------------------------------------------------------

#[test]
fn a_thrown_huge_map_gives_a_capped_one_line_detail() {
    hostile(
        "throw-huge-map",
        // 900 entries: within the map size limit (1,000), 20 KB when displayed.
        "let m = #{}; for i in 0..900 { m[\"key \" + i] = \"value number \" + i; } throw m;",
        None,
        Expect {
            capped: true,
            ..ERROR
        },
    );
}

#[test]
fn a_huge_multi_line_non_bool_result_gives_a_capped_one_line_detail() {
    hostile(
        "multi-line-result",
        "let s = \"first line\\nsecond line\\r\\nthird\\n\"; s.pad(16000, \"y\"); s",
        None,
        Expect {
            capped: true,
            ..ERROR
        },
    );
}

// --- Time -----------------------------------------------------------------------------

#[test]
fn sleeping_in_a_loop_is_a_timeout_near_its_deadline_in_both_executors() {
    // With a 100 ms limit, the thread executor held its thread 3.46 s: the deadline was only
    // looked at every 1024 operations, 10 ms of sleep each.
    hostile(
        "sleep-loop",
        "loop { sleep_ms(10) }",
        Some("100ms"),
        Expect {
            kinds: &["timeout"],
            within: Some(Duration::from_millis(2500)),
            ..ERROR_OR_TIMEOUT
        },
    );
}

#[test]
fn an_error_in_a_sort_comparator_is_an_error_not_swallowed() {
    hostile(
        "sort-comparator",
        "let a = [3, 1, 2]; a.sort(|x, y| 1 / 0); true",
        None,
        ERROR,
    );
}

// --- Sandbox ------------------------------------------------------------------------------

#[test]
fn eval_and_import_are_rules_errors_before_any_row_in_both_commands() {
    for (name, script, message) in [
        (
            "eval",
            "eval(\"true\")",
            "reserved keyword 'eval' is disabled",
        ),
        (
            "import",
            "import \"x\" as y; true",
            "'import' is a reserved keyword",
        ),
    ] {
        for executor in EXECUTORS {
            let wd = Workdir::new(&format!("sandbox-{name}-{executor}"));
            wd.create("tx.csv", INPUT);
            wd.create("rules.toml", rules_file(script, None));
            let run = run_rules(&wd, executor, "rules.toml", "out.csv");
            assert_eq!(run.code, Some(1), "{}", run.describe());
            assert!(
                run.stderr.contains("rule 3 \"hostile\"") && run.stderr.contains(message),
                "{}",
                run.describe()
            );
            assert!(
                !wd.exists("out.csv"),
                "no results when the rules are refused"
            );
            let check = guarded(&wd, &["check", "rules.toml"]);
            assert_eq!(check.code, Some(1), "{}", check.describe());
            assert!(check.stderr.contains(message), "{}", check.describe());
        }
    }
}

#[test]
fn print_and_debug_go_nowhere_and_change_no_result() {
    for executor in EXECUTORS {
        let wd = Workdir::new(&format!("sandbox-print-{executor}"));
        wd.create("tx.csv", INPUT);
        wd.create(
            "rules.toml",
            rules_file(
                "print(\"PRINTED\"); debug(\"DEBUGGED\"); let p = \"x\"; p.pad(16000, \"y\"); print(p); true",
                None,
            ),
        );
        wd.create("base.toml", rules_file("true", None));
        let args = |rules: &'static str| {
            [
                "run",
                "tx.csv",
                "--rules",
                rules,
                "--executor",
                executor,
                "-j",
                "2",
                "--seed",
                "7",
                "-q",
            ]
        };
        let base = guarded(&wd, &args("base.toml"));
        let run = guarded(&wd, &args("rules.toml"));
        assert_eq!(run.code, Some(0), "{}", run.describe());
        assert_eq!(run.stdout, base.stdout, "{}", run.describe());
        assert!(
            !run.stdout.contains("PRINTED") && !run.stderr.contains("PRINTED"),
            "{}",
            run.describe()
        );
        assert!(!run.stderr.contains("DEBUGGED"), "{}", run.describe());
        assert!(
            run.stdout
                .starts_with("transaction_id,rule_id,result,detail\n")
        );
        assert_eq!(run.stdout.lines().count(), 17);
    }
}

// --- Processes ------------------------------------------------------------------------

#[test]
fn a_thousand_worker_processes_for_two_rows_finish_quickly() {
    let _heavy = heavy();
    let wd = Workdir::new("processes-1000");
    wd.create("tx.csv", "id,amount,country\n1,50.0,FR\n2,20000.0,IR\n");
    wd.create("rules.toml", rules_file("true", None));
    let run = guarded(
        &wd,
        &[
            "run",
            "tx.csv",
            "--rules",
            "rules.toml",
            "-o",
            "out.csv",
            "--executor",
            "processes",
            "-j",
            "1000",
            "-q",
            "--summary",
            "summary.json",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(parse_results(&wd.read("out.csv")).len(), 8);
    // It took 43 s: a worker was started for every job, whether there was work for it or
    // not. Two rows are at most two tasks: only lanes that get one start a worker.
    let summary: serde_json::Value = serde_json::from_str(&wd.read("summary.json")).unwrap();
    let started = summary["workers"]["started"].as_u64().unwrap();
    assert!((1..=2).contains(&started), "{started}\n{}", run.describe());
    assert!(
        run.took < Duration::from_secs(120),
        "took {:?}\n{}",
        run.took,
        run.describe()
    );
}

// --- check ---------------------------------------------------------------------------

#[test]
fn check_stops_an_example_sleeping_past_its_limit_quickly() {
    let wd = Workdir::new("check-sleep");
    wd.create(
        "rules.toml",
        "[[rule]]\nid = 1\nname = \"slow_service\"\nwhen = 'sleep_ms(20000); true'\ntimeout = \"100ms\"\n\n\
         [[rule.example]]\nrow = { id = 1 }\nexpect = \"timeout\"\n",
    );
    let run = guarded(&wd, &["check", "rules.toml"]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(
        run.stderr.contains("1 rules compile; 1 examples pass"),
        "{}",
        run.describe()
    );
    assert!(
        run.took < Duration::from_secs(10),
        "took {:?}: the example slept its 20 s",
        run.took
    );
}

#[test]
fn check_reports_a_duplicate_id_a_syntax_error_and_a_failing_example_in_one_pass() {
    let wd = Workdir::new("check-all-at-once");
    wd.create(
        "rules.toml",
        "[columns]\namount = \"float\"\n\n\
         [[rule]]\nid = 1\nname = \"large\"\nwhen = 'amount > 10.0'\n\n\
         [[rule.example]]\nrow = { amount = 5.0 }\nexpect = true\n\n\
         [[rule]]\nid = 1\nname = \"same_id\"\nwhen = 'amount < 0.0'\n\n\
         [[rule]]\nid = 3\nname = \"broken\"\nwhen = 'amount >'\n",
    );
    let run = guarded(&wd, &["check", "rules.toml"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    for needle in [
        "duplicate id 1",
        "rule 3 \"broken\": when:",
        "rule 1 \"large\": example 1: expected true, got false",
    ] {
        assert!(
            run.stderr.contains(needle),
            "check must report {needle:?} in the same pass\n{}",
            run.describe()
        );
    }
}

#[test]
fn check_with_an_input_reports_a_rule_reading_a_column_the_input_lacks() {
    let wd = Workdir::new("check-input");
    wd.create("tx.csv", INPUT);
    wd.create(
        "rules.toml",
        "[[rule]]\nid = 1\nname = \"casino\"\nwhen = 'merchant == \"casino\"'\n\n\
         [[rule]]\nid = 2\nname = \"iran\"\nwhen = 'country == \"IR\"'\n",
    );
    // Without an input, `merchant` is taken for a string column: fine.
    let plain = guarded(&wd, &["check", "rules.toml"]);
    assert_eq!(plain.code, Some(0), "{}", plain.describe());
    let run = guarded(&wd, &["check", "rules.toml", "--input", "tx.csv"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stderr.contains("rule 1 \"casino\"")
            && run
                .stderr
                .contains("variable \"merchant\" is neither a column of the input"),
        "{}",
        run.describe()
    );
    assert!(
        !run.stderr.contains("rule 2"),
        "rule 2 reads only columns the input has\n{}",
        run.describe()
    );
}

#[test]
fn check_infers_a_variable_shared_by_two_rules_once_and_still_sees_the_others() {
    let wd = Workdir::new("check-shared-variable");
    wd.create(
        "rules.toml",
        "[[rule]]\nid = 1\nname = \"iran\"\nwhen = 'country == \"IR\"'\n\n\
         [[rule]]\nid = 2\nname = \"iran_in_dollars\"\nwhen = 'country == \"IR\" && currency == \"USD\"'\n\n\
         [[rule.example]]\nrow = { id = 1 }\nexpect = false\n",
    );
    let run = guarded(&wd, &["check", "rules.toml"]);
    assert!(
        !run.stderr.contains("neither a column"),
        "a spurious unknown variable\n{}",
        run.describe()
    );
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(
        run.stderr.contains("2 rules compile; 1 examples pass"),
        "{}",
        run.describe()
    );
}

#[test]
fn a_dedup_comparer_that_returns_no_bool_is_an_error() {
    for executor in ["threads", "processes"] {
        let wd = Workdir::new("dedup-not-bool");
        wd.create("tx.csv", "id,amount\n1,5\n");
        wd.create(
            "rules.toml",
            "[[rule]]\nid = 1\nname = \"d\"\nwhen = '''let a = [1, 1, 2]; a.dedup(|x, y| \"same\"); true'''\n",
        );
        wd.run(&[
            "run",
            "tx.csv",
            "--rules",
            "rules.toml",
            "-o",
            "out.csv",
            "-q",
            "--executor",
            executor,
        ])
        .expect_success();
        let out = wd.read("out.csv");
        assert!(
            out.contains("1,1,error,") && out.contains("not a bool"),
            "{executor}: {out}"
        );
    }
}
