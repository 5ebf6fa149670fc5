//! `txguard rockets`: every mode launches every rocket of the seeded plan exactly once,
//! each line whole; the seed reproduces the plan; `-q`, bad flags and a closed stdout
//! behave as the contract says. Tiny time scales keep the whole set to a few seconds.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use txguard::rockets::Plan;

use crate::workdir::Workdir;

const MODES: [&str; 4] = ["sequential", "rayon", "threads", "processes"];

/// The lines the plan must print, one run's worth, sorted: for each rocket its countdown
/// `c-1...` down to `0...`, then `Rocket launched: NAME`.
fn expected_lines(seed: u64, count: usize) -> Vec<String> {
    let plan = Plan::new(seed, count);
    let mut lines = Vec::new();
    for rocket in &plan.rockets {
        for i in (0..rocket.countdown).rev() {
            lines.push(format!("{i}..."));
        }
        lines.push(format!("Rocket launched: {}", rocket.name));
    }
    lines.sort();
    lines
}

/// A line is whole when it is exactly one of the two forms: nothing glued, nothing cut.
fn is_whole_line(line: &str) -> bool {
    let countdown = line.len() == 4 && line.as_bytes()[0].is_ascii_digit() && &line[1..] == "...";
    let launch = line.strip_prefix("Rocket launched: ").is_some_and(|name| {
        name.len() == 4 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    countdown || launch
}

fn sorted_lines(stdout: &str) -> Vec<String> {
    let mut lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn rockets(wd: &Workdir, mode: &str, count: usize, seed: u64, extra: &[&str]) -> String {
    let count = count.to_string();
    let seed = seed.to_string();
    let mut args = vec![
        "rockets",
        "-n",
        &count,
        "--seed",
        &seed,
        "--mode",
        mode,
        "--time-scale",
        "0.001",
    ];
    args.extend_from_slice(extra);
    let run = wd.run(&args);
    run.expect_success();
    assert!(
        run.stdout().ends_with('\n') || run.stdout().is_empty(),
        "last line cut"
    );
    run.stdout()
}

#[test]
fn every_mode_prints_every_line_of_the_plan_exactly_once_and_whole() {
    let wd = Workdir::new("rockets-once");
    let expected = expected_lines(7, 150);
    for mode in MODES {
        let stdout = rockets(&wd, mode, 150, 7, &[]);
        let malformed: Vec<&str> = stdout.lines().filter(|l| !is_whole_line(l)).collect();
        assert!(
            malformed.is_empty(),
            "{mode}: malformed lines {malformed:?}"
        );
        assert_eq!(
            sorted_lines(&stdout),
            expected,
            "{mode}: lines differ from the plan"
        );
    }
}

#[test]
fn thousands_of_threads_and_processes_print_no_line_twice_or_torn() {
    // Enough rockets at once that torn or lost lines would show, as they did in the
    // original program's threads mode.
    let wd = Workdir::new("rockets-many");
    let expected = expected_lines(99, 2_000);
    for mode in ["threads", "processes"] {
        let stdout = rockets(&wd, mode, 2_000, 99, &[]);
        assert!(stdout.lines().all(is_whole_line), "{mode}: a torn line");
        assert_eq!(sorted_lines(&stdout), expected, "{mode}");
    }
}

#[test]
fn sequential_mode_prints_the_plan_in_order_and_repeats_it_exactly() {
    let wd = Workdir::new("rockets-seq");
    let plan = Plan::new(3, 40);
    let mut want = String::new();
    for rocket in &plan.rockets {
        for i in (0..rocket.countdown).rev() {
            want.push_str(&format!("{i}...\n"));
        }
        want.push_str(&format!("Rocket launched: {}\n", rocket.name));
    }
    assert_eq!(rockets(&wd, "sequential", 40, 3, &[]), want);
    assert_eq!(rockets(&wd, "sequential", 40, 3, &[]), want);
}

#[test]
fn a_run_without_seed_prints_the_seed_that_repeats_it() {
    let wd = Workdir::new("rockets-seed");
    let first = wd.run(&[
        "rockets",
        "-n",
        "60",
        "--mode",
        "threads",
        "--time-scale",
        "0.001",
    ]);
    first.expect_success();
    let stderr = first.stderr();
    let seed = stderr
        .split("seed ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed in the summary: {stderr}"));
    let again = rockets(&wd, "rayon", 60, seed.parse().expect("a numeric seed"), &[]);
    assert_eq!(sorted_lines(&again), sorted_lines(&first.stdout()));
    assert_eq!(
        sorted_lines(&again),
        expected_lines(seed.parse().expect("seed"), 60)
    );
}

#[test]
fn different_seeds_fly_different_rockets() {
    let wd = Workdir::new("rockets-seeds");
    assert_ne!(
        sorted_lines(&rockets(&wd, "threads", 30, 1, &[])),
        sorted_lines(&rockets(&wd, "threads", 30, 2, &[]))
    );
}

#[test]
fn the_spin_workload_launches_every_rocket_in_every_mode() {
    let wd = Workdir::new("rockets-spin");
    let expected = expected_lines(5, 40);
    for mode in MODES {
        let stdout = rockets(&wd, mode, 40, 5, &["--workload", "spin"]);
        assert_eq!(sorted_lines(&stdout), expected, "{mode}");
    }
}

#[test]
fn quiet_prints_no_rocket_lines_but_still_the_summary() {
    let wd = Workdir::new("rockets-quiet");
    for mode in MODES {
        let run = wd.run(&[
            "rockets",
            "-n",
            "50",
            "--seed",
            "4",
            "--mode",
            mode,
            "--time-scale",
            "0.001",
            "-q",
        ]);
        run.expect_success()
            .expect_stderr_contains("rockets: 50 of 50 launched")
            .expect_stderr_contains(&format!("mode {mode}"))
            .expect_stderr_contains("seed 4")
            .expect_stderr_contains("efficiency")
            .expect_stderr_contains("rockets/s");
        assert_eq!(run.stdout(), "", "{mode}");
    }
}

#[test]
fn jobs_cap_the_pool_and_the_children_alive() {
    let wd = Workdir::new("rockets-jobs");
    let expected = expected_lines(8, 60);
    for mode in ["rayon", "processes"] {
        let stdout = rockets(&wd, mode, 60, 8, &["-j", "3"]);
        assert_eq!(sorted_lines(&stdout), expected, "{mode}");
    }
    wd.run(&[
        "rockets",
        "-n",
        "5",
        "--mode",
        "processes",
        "-j",
        "1",
        "--time-scale",
        "0",
        "-q",
    ])
    .expect_success()
    .expect_stderr_contains("jobs 1");
}

#[test]
fn zero_rockets_is_an_empty_successful_run() {
    let wd = Workdir::new("rockets-zero");
    for mode in MODES {
        let run = wd.run(&["rockets", "-n", "0", "--mode", mode]);
        run.expect_success()
            .expect_stderr_contains("rockets: 0 of 0 launched");
        assert_eq!(run.stdout(), "");
    }
}

#[test]
fn bad_command_lines_exit_2() {
    let wd = Workdir::new("rockets-usage");
    for args in [
        &["rockets", "--mode", "fibers"][..],
        &["rockets", "--time-scale", "-1"],
        &["rockets", "--time-scale", "fast"],
        &["rockets", "--workload", "idle"],
        &["rockets", "-j", "0"],
        &["rockets", "-n", "-5"],
        &["rockets", "--seed", "x"],
        &["rockets", "--time-scale", "1e300"],
        &[
            "rocket",
            "--name",
            "abcd",
            "--delay",
            "-1",
            "--countdown",
            "1",
            "--step",
            "0",
            "--workload",
            "sleep",
        ],
    ] {
        wd.run(args).expect_code(2);
    }
}

#[test]
fn the_hidden_rocket_child_flies_one_rocket() {
    let wd = Workdir::new("rockets-child");
    let run = wd.run(&[
        "rocket",
        "--name",
        "ab12",
        "--delay",
        "0.001",
        "--countdown",
        "3",
        "--step",
        "0.001",
        "--workload",
        "sleep",
    ]);
    run.expect_success();
    assert_eq!(run.stdout(), "2...\n1...\n0...\nRocket launched: ab12\n");
}

/// Reads one line of `rockets`' output, hangs up, and expects a quiet, prompt exit.
fn hang_up_after_one_line(wd: &Workdir, args: &[&str]) {
    let mut child = wd
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn txguard");
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdout.read_line(&mut first).expect("read a line");
    assert!(is_whole_line(first.trim_end()), "{first:?}");
    drop(stdout);
    let start = Instant::now();
    let output = child.wait_with_output().expect("wait");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "did not stop after the reader left"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("panic"),
        "{args:?}: {stderr}"
    );
}

#[test]
fn a_reader_that_hangs_up_ends_the_run_quietly() {
    let wd = Workdir::new("rockets-pipe");
    hang_up_after_one_line(
        &wd,
        &[
            "rockets",
            "-n",
            "200000",
            "--mode",
            "sequential",
            "--time-scale",
            "0",
        ],
    );
    hang_up_after_one_line(
        &wd,
        &[
            "rockets",
            "-n",
            "20000",
            "--mode",
            "threads",
            "--time-scale",
            "0.0001",
        ],
    );
    hang_up_after_one_line(
        &wd,
        &[
            "rockets",
            "-n",
            "3000",
            "--mode",
            "processes",
            "--time-scale",
            "0.001",
        ],
    );
}

/// Runs `txguard ARGS` as user `nobody` allowed only `nproc` processes and threads, when
/// this test runs as root with util-linux at hand (it cannot lower the limit otherwise:
/// root ignores RLIMIT_NPROC). Returns None when that is not possible here.
fn run_with_few_processes(nproc: u32, args: &[&str]) -> Option<std::process::Output> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["setpriv", "prlimit"].iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !root || !tools {
        eprintln!("skipped: needs root and util-linux's setpriv and prlimit");
        return None;
    }
    let output = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg("prlimit")
        .arg(format!("--nproc={nproc}"))
        .arg(env!("CARGO_BIN_EXE_txguard"))
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv");
    Some(output)
}

#[test]
fn running_out_of_processes_slows_the_launch_but_does_not_fail_it() {
    // Rockets live long enough (time scale 0.1: about 0.45 s each) that far more than 60
    // are alive at once even when a loaded machine starts only ~100 a second; at 0.02 a
    // slow start rate kept fewer than 60 alive, and nothing ran out.
    for mode in ["threads", "processes"] {
        let args = [
            "rockets",
            "-n",
            "300",
            "--mode",
            mode,
            "--time-scale",
            "0.1",
            "--seed",
            "6",
            "-q",
        ];
        let Some(output) = run_with_few_processes(60, &args) else {
            return;
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{mode}: {stderr}");
        assert!(
            stderr.contains("rockets: 300 of 300 launched"),
            "{mode}: {stderr}"
        );
        assert!(
            stderr.contains("starts retried after running out of resources"),
            "{mode}: {stderr}"
        );
    }
}

#[test]
fn processes_mode_needs_almost_no_file_descriptors() {
    // The original program died of "too many open files"; children here hold none of
    // ours, and a wait or start that finds none free is retried, not fatal.
    let available = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("skipped: needs util-linux's prlimit");
        return;
    }
    let wd = Workdir::new("rockets-nofile");
    let output = std::process::Command::new("prlimit")
        .arg("--nofile=7")
        .arg(env!("CARGO_BIN_EXE_txguard"))
        .args([
            "rockets",
            "-n",
            "200",
            "--mode",
            "processes",
            "--time-scale",
            "0.01",
            "--seed",
            "9",
        ])
        .current_dir(wd.root())
        .stdin(Stdio::null())
        .output()
        .expect("run prlimit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("rockets: 200 of 200 launched"), "{stderr}");
    assert_eq!(
        sorted_lines(&String::from_utf8_lossy(&output.stdout)),
        expected_lines(9, 200)
    );
}
