//! `--executor processes`: real worker processes, supervised. Every test bounds its runs
//! with a generous "did not hang" limit; none asserts a timing beyond that.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use crate::workdir::Workdir;

/// Far above what any of these runs needs, even on a loaded machine.
const HANG: Duration = Duration::from_secs(120);

/// Rules exercising everything that must agree between executors: coin flips, random
/// draws, runtime errors, thrown errors, non-bool results, and a cooperative timeout.
/// Results must not depend on the machine's load: every evaluation that finishes has a
/// limit it never comes near (a minute; the hanging rule's half second is still 10^5
/// times what its finishing rows take), and the one that must time out always loops.
const MIXED_RULES: &str = r#"
[columns]
id = "int"
amount = "float"

[defaults]
timeout = "60s"

[[rule]]
id = 1
name = "large_coin"
when = "amount > 500.0 && coin_flip()"

[[rule]]
id = 2
name = "random_draws"
when = "random() < 0.25 || random() > 0.9"

[[rule]]
id = 3
name = "score_table"
when = '''
let score = #{ casino: 0.9, grocery: 0.1, fuel: 0.1, restaurant: 0.2 };
score[merchant] > 0.5
'''

[[rule]]
id = 4
name = "not_a_bool"
when = 'if country == "US" { amount } else { true }'

[[rule]]
id = 5
name = "hangs_now_and_then"
when = '''
if id % 300 == 0 { loop {} }
amount > 9000.0
'''
timeout = "500ms"

[[rule]]
id = 6
name = "throws"
when = '''
if id % 13 == 0 { throw "bad id " + id }
false
'''
"#;

/// A run that finished (or was killed as hung, which fails the test).
struct Bounded {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Starts `txguard ARGS` in the workdir with `env`, stderr to a file, stdout discarded.
fn start(wd: &Workdir, args: &[&str], env: &[(&str, &str)]) -> Child {
    let stderr = fs::File::create(wd.path("stderr.txt")).unwrap();
    let mut cmd = wd.command(args);
    cmd.stdout(Stdio::null()).stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn txguard")
}

/// Waits for `child` within `HANG`; kills it and fails the test if it hangs.
fn finish(wd: &Workdir, mut child: Child, args: &[&str], started: Instant) -> Bounded {
    let status = child.wait_timeout(HANG).unwrap();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "txguard {args:?} hung for {HANG:?}\nstderr:\n{}",
            wd.read("stderr.txt")
        );
    };
    Bounded {
        code: status.code(),
        stderr: wd.read("stderr.txt"),
        took: started.elapsed(),
    }
}

fn run_bounded(wd: &Workdir, args: &[&str], env: &[(&str, &str)]) -> Bounded {
    let started = Instant::now();
    let child = start(wd, args, env);
    finish(wd, child, args, started)
}

#[track_caller]
fn expect_code(run: &Bounded, code: i32) {
    assert_eq!(run.code, Some(code), "stderr:\n{}", run.stderr);
}

fn summary(wd: &Workdir, name: &str) -> serde_json::Value {
    serde_json::from_str(&wd.read(name)).unwrap()
}

fn threads_results(wd: &Workdir, input: &str, rules: &str, out: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        input,
        "--rules",
        rules,
        "-o",
        out,
        "-q",
        "--executor",
        "threads",
        "-j",
        "2",
    ];
    args.extend_from_slice(extra);
    expect_code(&run_bounded(wd, &args, &[]), 0);
    wd.read(out)
}

/// Pids of `parent`'s children that are txguard workers.
fn worker_children(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let ppid: Option<u32> = rest.split(' ').nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(parent) && is_live_worker(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// True if `pid` is a running (not zombie) `txguard worker --protocol` process.
fn is_live_worker(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
    if state == Some('Z') || state == Some('X') {
        return false;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.windows(18).any(|w| w == b"worker\0--protocol\0")
}

/// Waits until `parent` has at least `n` workers; returns their pids.
fn wait_for_workers(parent: u32, n: usize) -> Vec<u32> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let pids = worker_children(parent);
        if pids.len() >= n {
            return pids;
        }
        assert!(
            Instant::now() < until,
            "txguard {parent} never had {n} workers (has {pids:?})"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

#[test]
fn processes_give_byte_identical_results_to_threads_for_any_jobs() {
    let wd = Workdir::new("proc-parity");
    wd.generate("tx.csv", 3000, 11);
    wd.rules(MIXED_RULES);
    let expected = threads_results(&wd, "tx.csv", "rules.toml", "threads.csv", &["--seed", "5"]);
    assert!(
        expected.contains(",error,"),
        "the rules give runtime errors"
    );
    assert!(
        expected.contains(",timeout,exceeded 500ms"),
        "the rules give timeouts"
    );
    assert!(
        expected.contains("returned f64"),
        "the rules give non-bool results"
    );
    for (jobs, batch) in [("1", "1024"), ("3", "100"), ("2", "7")] {
        let out = format!("processes-{jobs}-{batch}.csv");
        let summary_file = format!("summary-{jobs}.json");
        let args = [
            "run",
            "tx.csv",
            "--rules",
            "rules.toml",
            "-o",
            &out,
            "--seed",
            "5",
            "--executor",
            "processes",
            "-j",
            jobs,
            "--batch-size",
            batch,
            "--summary",
            &summary_file,
        ];
        let run = run_bounded(&wd, &args, &[]);
        expect_code(&run, 0);
        assert!(
            wd.read(&out) == expected,
            "-j {jobs} --batch-size {batch}: results differ from threads"
        );
        let workers = &summary(&wd, &summary_file)["workers"];
        assert_eq!(workers["died"], 0, "{workers}");
        // Lanes start a worker when their first batch arrives: at least one did.
        assert!(workers["started"].as_u64().unwrap() >= 1, "{workers}");
        assert!(run.stderr.contains("workers: "), "{}", run.stderr);
    }
}

#[test]
fn batches_larger_than_the_pipe_arrive_whole_and_in_order() {
    // Rows of 300 KB read by a rule: a batch of a few is several times the 1 MiB a
    // worker's stdin holds, so most of each request goes through the writer thread,
    // behind what went straight in, and small batches queue behind it.
    let wd = Workdir::new("proc-big-batches");
    let mut csv = String::from("id,amount,merchant\n");
    for i in 0..40 {
        let merchant = if i % 3 == 0 {
            format!("{}{}", "m".repeat(300_000), i)
        } else {
            format!("shop{i}")
        };
        csv.push_str(&format!("{i},{i}.5,{merchant}\n"));
    }
    wd.create("tx.csv", csv);
    wd.rules(
        r#"
[columns]
id = "int"
amount = "float"

[[rule]]
id = 1
name = "long_merchant"
when = 'merchant.len() > 1000 && merchant.ends_with("9")'

[[rule]]
id = 2
name = "big_amount"
when = "amount > 20.0"
"#,
    );
    let expected = threads_results(&wd, "tx.csv", "rules.toml", "threads.csv", &[]);
    let long_true: Vec<&str> = expected.lines().filter(|l| l.contains(",1,true")).collect();
    assert_eq!(long_true, ["9,1,true,", "39,1,true,"]);
    for batch in ["40", "3"] {
        let out = format!("processes-{batch}.csv");
        let args = [
            "run",
            "tx.csv",
            "--rules",
            "rules.toml",
            "-o",
            &out,
            "-q",
            "--executor",
            "processes",
            "-j",
            "2",
            "--batch-size",
            batch,
        ];
        expect_code(&run_bounded(&wd, &args, &[]), 0);
        assert!(
            wd.read(&out) == expected,
            "--batch-size {batch}: results differ from threads"
        );
    }
}

#[test]
fn sleep_far_beyond_the_timeout_is_killed_at_the_deadline() {
    let wd = Workdir::new("proc-sleep");
    wd.generate("tx.csv", 200, 3);
    wd.create(
        "rules.toml",
        r#"
[columns]
id = "int"
amount = "float"

[[rule]]
id = 1
name = "large"
when = "amount > 1000.0"

[[rule]]
id = 2
name = "slow_service"
when = '''
if id % 10 == 0 { sleep_ms(60000) }
coin_flip()
'''
timeout = "100ms"
"#,
    );
    let args = [
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "--executor",
        "processes",
        "-j",
        "2",
        "--summary",
        "summary.json",
    ];
    let run = run_bounded(&wd, &args, &[]);
    expect_code(&run, 0);
    // 20 blocked evaluations × 100 ms / 2 jobs = 1 s; a minute means nothing was killed.
    assert!(run.took < Duration::from_secs(50), "took {:?}", run.took);
    let out = wd.read("out.csv");
    let timeouts: Vec<&str> = out.lines().filter(|l| l.contains(",timeout,")).collect();
    let expected: Vec<String> = (1..=20)
        .map(|i| format!("{},2,timeout,exceeded 100ms", i * 10))
        .collect();
    assert_eq!(timeouts, expected);
    assert_eq!(out.lines().count(), 1 + 200 * 2);
    let workers = &summary(&wd, "summary.json")["workers"];
    assert!(workers["killed"].as_u64().unwrap() >= 20, "{workers}");
    assert_eq!(workers["died"], 0, "{workers}");
    assert!(
        run.stderr.contains("killed at a deadline"),
        "{}",
        run.stderr
    );
}

/// Rules slow enough (10 ms an evaluation) to leave time to kill a worker mid-run.
const SLOW_RULES: &str = r#"
[columns]
id = "int"
amount = "float"

[[rule]]
id = 1
name = "slow_coin"
when = "sleep_ms(10); coin_flip()"

[[rule]]
id = 2
name = "large"
when = "amount > 1000.0"
"#;

#[test]
fn a_worker_killed_from_outside_mid_run_changes_nothing_in_the_results() {
    let wd = Workdir::new("proc-kill-worker");
    wd.generate("tx.csv", 600, 8);
    wd.rules(SLOW_RULES);
    let expected = threads_results(&wd, "tx.csv", "rules.toml", "threads.csv", &[]);
    let args = [
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "--executor",
        "processes",
        "-j",
        "3",
        "--batch-size",
        "10",
        "--summary",
        "summary.json",
    ];
    let started = Instant::now();
    let child = start(&wd, &args, &[]);
    let workers = wait_for_workers(child.id(), 3);
    // 600 rows × 10 ms / 3 workers: about 2 s of work; kill one early on.
    thread::sleep(Duration::from_millis(300));
    kill9(workers[1]);
    let run = finish(&wd, child, &args, started);
    expect_code(&run, 0);
    assert!(
        wd.read("out.csv") == expected,
        "results differ from threads after a worker was killed"
    );
    let workers = &summary(&wd, "summary.json")["workers"];
    assert_eq!(workers["died"], 1, "{workers}");
    assert!(workers["started"].as_u64().unwrap() >= 4, "{workers}");
}

/// `MIXED_RULES` without its looping rule's loop and short limit, for a test about
/// crashes, not deadlines. Any evaluation that ends past its limit is a `timeout`, in both
/// executors: under a short limit, a plain `amount > 9000.0` whose thread or worker is
/// descheduled that long (a loaded machine) becomes a `timeout` in one run and stays
/// `false` in the other, and the results would differ by more than the crash.
fn mixed_rules_far_from_their_deadlines() -> String {
    let rules = MIXED_RULES
        .replace("if id % 300 == 0 { loop {} }\n", "")
        .replace("timeout = \"500ms\"\n", "");
    assert!(
        !rules.contains("loop {}") && !rules.contains("ms\""),
        "{rules}"
    );
    rules
}

#[test]
fn an_evaluation_that_kills_its_worker_twice_is_an_error_and_nothing_else_changes() {
    let wd = Workdir::new("proc-crash");
    wd.generate("tx.csv", 500, 2);
    wd.rules(mixed_rules_far_from_their_deadlines());
    let expected = threads_results(
        &wd,
        "tx.csv",
        "rules.toml",
        "threads.csv",
        &["--timeout", "10m"],
    );
    let args = [
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "--executor",
        "processes",
        "-j",
        "2",
        "--batch-size",
        "64",
        "--timeout",
        "10m",
        "--summary",
        "summary.json",
    ];
    let run = run_bounded(
        &wd,
        &args,
        &[("TXGUARD_TEST_WORKER_FAULT", "kill-on-id:123")],
    );
    expect_code(&run, 0);
    let out = wd.read("out.csv");
    let want: String = expected
        .lines()
        .map(|l| {
            if l.starts_with("123,1,") {
                "123,1,error,worker died: signal 9"
            } else {
                l
            }
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    assert!(
        out == want,
        "only (123, rule 1) may differ:\n{}",
        out.lines()
            .filter(|l| l.starts_with("123,"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let workers = &summary(&wd, "summary.json")["workers"];
    assert_eq!(workers["died"], 2, "retried once, then recorded: {workers}");
}

#[test]
fn killing_the_parent_leaves_no_worker_alive() {
    let wd = Workdir::new("proc-kill-parent");
    wd.generate("tx.csv", 100, 4);
    // Every worker blocks in a minute-long call, far from its 5-minute deadline and never
    // reading stdin: only PR_SET_PDEATHSIG can stop it within 2 s of its parent's death.
    wd.create(
        "rules.toml",
        "[[rule]]\nid = 1\nname = \"stuck\"\nwhen = 'sleep_ms(60000); true'\ntimeout = \"5m\"\n",
    );
    let args = [
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "--executor",
        "processes",
        "-j",
        "2",
    ];
    let mut child = start(&wd, &args, &[]);
    let workers = wait_for_workers(child.id(), 2);
    thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL: no handler, no cleanup, no stdin closed in time
    child.wait().unwrap();
    thread::sleep(Duration::from_secs(2));
    let alive: Vec<u32> = workers
        .iter()
        .copied()
        .filter(|&pid| is_live_worker(pid))
        .collect();
    assert!(alive.is_empty(), "workers {alive:?} outlived their parent");
    assert!(!wd.exists("out.csv"), "no output from a killed run");
}

fn expect_worker_fault_fails_clearly(fault: &str, message: &str) {
    let wd = Workdir::new(&format!("proc-fault-{fault}"));
    wd.generate("tx.csv", 300, 1);
    wd.rules(MIXED_RULES);
    let args = [
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "--executor",
        "processes",
        "-j",
        "2",
    ];
    let run = run_bounded(&wd, &args, &[("TXGUARD_TEST_WORKER_FAULT", fault)]);
    expect_code(&run, 1);
    assert!(
        run.stderr.contains("txguard: error: worker pid "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(message),
        "stderr lacks {message:?}:\n{}",
        run.stderr
    );
    assert!(run.took < Duration::from_secs(30), "took {:?}", run.took);
    assert!(!wd.exists("out.csv"));
}

#[test]
fn a_protocol_mismatch_is_a_clear_error_not_a_hang() {
    expect_worker_fault_fails_clearly(
        "protocol",
        "protocol version mismatch: the supervisor speaks version 5, this worker speaks version 6",
    );
}

#[test]
fn garbage_from_a_worker_is_a_clear_error_not_a_hang() {
    expect_worker_fault_fails_clearly(
        "garbage",
        "sent a malformed frame: frame of 1112686919 bytes exceeds the limit",
    );
}

#[test]
fn a_worker_that_exits_before_it_is_ready_is_a_clear_error() {
    expect_worker_fault_fails_clearly("exit", "exited with exit code 3 before it was ready");
}

#[test]
fn the_worker_subcommand_refuses_another_protocol_version() {
    let wd = Workdir::new("proc-worker-version");
    let run = wd.run(&["worker", "--protocol", "999"]);
    run.expect_code(2)
        .expect_stderr_contains("protocol version mismatch: the supervisor speaks version 999");
}

#[test]
fn a_worker_exits_quietly_when_its_input_ends() {
    let wd = Workdir::new("proc-worker-eof");
    let version = txguard::exec::protocol::VERSION.to_string();
    let run = wd.run_with_stdin(&["worker", "--protocol", &version], b"");
    run.expect_success();
    assert!(run.output.stdout.is_empty());
}

fn interrupted_process_run_stops_its_workers(signal: i32, code: i32) {
    let wd = Workdir::new("proc-signal");
    wd.generate("tx.csv", 200, 6);
    wd.create(
        "rules.toml",
        "[[rule]]\nid = 1\nname = \"slow\"\nwhen = 'sleep_ms(50); true'\n",
    );
    wd.create("out.csv", "earlier\n");
    let args = [
        "run",
        "tx.csv",
        "--rules",
        "rules.toml",
        "-o",
        "out.csv",
        "--executor",
        "processes",
        "-j",
        "2",
    ];
    let child = start(&wd, &args, &[]);
    let workers = wait_for_workers(child.id(), 2);
    // The lock on the output is the parent's alone: a worker that outlived it must not
    // keep the next run locked out.
    for pid in &workers {
        for fd in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
            let target = fs::read_link(fd.path()).unwrap_or_default();
            assert!(
                !target.to_string_lossy().ends_with("out.csv.lock"),
                "worker {pid} holds the lock"
            );
        }
    }
    thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on a child we started and have not reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let until = Instant::now() + Duration::from_secs(2);
    while workers.iter().any(|&pid| is_live_worker(pid)) && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    let alive: Vec<u32> = workers
        .iter()
        .copied()
        .filter(|&pid| is_live_worker(pid))
        .collect();
    assert!(
        alive.is_empty(),
        "workers {alive:?} outlived an interrupted run"
    );
    assert_eq!(wd.read("out.csv"), "earlier\n");
    assert!(wd.read("stderr.txt").contains("interrupted by SIG"));
    assert_eq!(
        wd.listing(),
        [
            "out.csv",
            "out.csv.lock",
            "rules.toml",
            "stderr.txt",
            "tx.csv"
        ],
        "no temporary files"
    );
}

#[test]
fn sigint_stops_workers_and_leaves_no_output() {
    interrupted_process_run_stops_its_workers(libc::SIGINT, 130);
}

#[test]
fn sigterm_stops_workers_and_leaves_no_output() {
    interrupted_process_run_stops_its_workers(libc::SIGTERM, 143);
}
