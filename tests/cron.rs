//! Cron-grade behaviour: the output lock, signals, `--fail-on`, `--summary` JSON,
//! silence under `-q`, and write failures that leave earlier outputs intact.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::workdir::{TRUE_RULE, Workdir, send};

fn slow_rules(wd: &Workdir) {
    wd.rules(
        "[columns]\nid = \"int\"\n\n[[rule]]\nid = 1\nname = \"slow\"\nwhen = \"sleep_ms(20); true\"\n",
    );
}

#[test]
fn a_second_run_on_the_same_output_exits_75_naming_the_lock() {
    let wd = Workdir::new("lock");
    wd.create("tx.csv", "id\n1\n");
    wd.rules(TRUE_RULE);
    wd.create("out.csv", "earlier\n");
    // Held by a child process, never by this test process: a descriptor of ours, however
    // close-on-exec, is copied into every child another test forks meanwhile, and the lock
    // lives on in that child until it execs, after we let go.
    let lock = wd.hold_lock("out.csv.lock");
    let run = wd.txguard_run(&["-o", "out.csv", "--summary", "s.json"]);
    run.expect_code(75)
        .expect_stderr_contains("another txguard run holds the lock out.csv.lock");
    assert_eq!(wd.read("out.csv"), "earlier\n");
    assert!(
        !wd.exists("s.json"),
        "a locked-out run leaves the summary to the run that holds the lock"
    );
    drop(lock);
    // The lock dies with its holder: no stale lock to clean up.
    wd.txguard_run(&["-o", "out.csv", "-q"]).expect_success();
    assert_eq!(
        wd.read("out.csv"),
        "transaction_id,rule_id,result,detail\n1,1,true,\n"
    );
}

fn interrupted_run_leaves_nothing_behind(signal: i32, code: i32) {
    let wd = Workdir::new("signal");
    wd.generate("tx.csv", 2000, 0);
    slow_rules(&wd);
    wd.create("out.csv", "earlier\n");
    let child = wd
        .command(&[
            "run",
            "tx.csv",
            "--rules",
            "rules.toml",
            "-o",
            "out.csv",
            "-j",
            "2",
            "--bad-rows",
            "skip",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let sent = Instant::now();
    send(child.id(), signal);
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(sent.elapsed() < Duration::from_secs(5), "stopped promptly");
    assert!(String::from_utf8_lossy(&output.stderr).contains("interrupted by SIG"));
    assert_eq!(
        wd.read("out.csv"),
        "earlier\n",
        "the earlier output is as it was"
    );
    assert_eq!(
        wd.listing(),
        [
            "out.csv",
            "out.csv.lock",
            "out.csv.rejects.csv.lock",
            "rules.toml",
            "tx.csv"
        ],
        "no temporary files (the default rejects file has its own lock)"
    );
}

#[test]
fn sigint_stops_the_run_with_130_and_no_output() {
    interrupted_run_leaves_nothing_behind(libc::SIGINT, 130);
}

#[test]
fn sigterm_stops_the_run_with_143_and_no_output() {
    interrupted_run_leaves_nothing_behind(libc::SIGTERM, 143);
}

#[test]
fn sighup_from_a_closed_terminal_also_leaves_no_output() {
    interrupted_run_leaves_nothing_behind(libc::SIGHUP, 129);
}

#[test]
fn fail_on_exits_3_after_writing_everything() {
    let wd = Workdir::new("fail-on");
    wd.create("tx.csv", "id,amount\n1,5\n2,50\n");
    wd.rules(
        "[columns]\namount = \"float\"\n[[rule]]\nid = 1\nname = \"a\"\nwhen = \"amount > 10.0\"\n",
    );
    let out = "transaction_id,rule_id,result,detail\n1,1,false,\n2,1,true,\n";
    wd.txguard_run(&["-o", "out.csv", "--fail-on", "error,timeout"])
        .expect_success();
    let run = wd.txguard_run(&["-o", "out.csv", "--fail-on", "error,false"]);
    run.expect_code(3)
        .expect_stderr_contains("a result named by --fail-on occurred");
    assert_eq!(wd.read("out.csv"), out);
    wd.txguard_run(&["--fail-on", "maybe"]).expect_code(2);
}

#[test]
fn the_summary_json_says_what_happened() {
    let wd = Workdir::new("summary-json");
    wd.create("tx.csv", "id,amount\n1,5\n2,x\n3,50\n");
    wd.rules(
        "[columns]\namount = \"float\"\n[[rule]]\nid = 4\nname = \"big\"\nwhen = \"amount > 10.0\"\n\
         [[rule]]\nid = 5\nname = \"odd\"\nwhen = 'if id == \"3\" { throw \"x\" } true'\n",
    );
    wd.txguard_run(&[
        "-o",
        "out.csv",
        "--bad-rows",
        "skip",
        "--summary",
        "s.json",
        "-j",
        "3",
        "--fail-on",
        "error",
    ])
    .expect_code(3);
    let json: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
    assert_eq!(json["txguard_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["input"], "tx.csv");
    assert_eq!(json["input_bytes"], 23);
    assert_eq!(json["rules_file"], "rules.toml");
    let sha = json["rules_sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    assert!(sha.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(json["executor"], "threads");
    assert_eq!(json["jobs"], 3);
    assert_eq!(json["transactions"], 2);
    assert_eq!(json["bad_rows"], 1);
    assert_eq!(json["evaluations"], 4);
    assert_eq!(
        json["rules"],
        serde_json::json!([
            {"id": 4, "name": "big", "true": 1, "false": 1, "error": 0, "timeout": 0},
            {"id": 5, "name": "odd", "true": 1, "false": 0, "error": 1, "timeout": 0}
        ])
    );
    assert!(json["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(json["transactions_per_second"].as_f64().unwrap() > 0.0);
    assert!(json["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(json["finished_at"].as_str().unwrap() >= json["started_at"].as_str().unwrap());
    assert_eq!(json["exit_code"], 3);
    assert!(json.get("error").is_none());

    // A failed run still writes its summary, with the error and exit code.
    wd.txguard_run(&["-o", "out.csv", "--summary", "s.json"])
        .expect_code(1);
    let json: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
    assert_eq!(json["exit_code"], 1);
    assert_eq!(
        json["error"],
        "tx.csv:3: column \"amount\": \"x\" is not a float"
    );
}

#[test]
fn a_quiet_run_under_cron_prints_nothing() {
    let wd = Workdir::new("quiet");
    wd.generate("tx.csv", 500, 0);
    wd.rules(TRUE_RULE);
    let run = wd.txguard_run(&["-o", "out.csv", "-q"]);
    run.expect_success();
    assert_eq!(run.stdout(), "");
    assert_eq!(run.stderr(), "");
    // Without -q the summary is there, but never a progress bar off a terminal.
    let run = wd.txguard_run(&["-o", "out.csv"]);
    assert!(
        run.stderr().starts_with("txguard: 500 transactions"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_full_disk_fails_with_the_os_error_and_leaves_earlier_outputs() {
    let wd = Workdir::new("full");
    wd.generate("tx.csv", 20000, 0);
    wd.rules(TRUE_RULE);
    wd.txguard_run(&["-o", "/dev/full"])
        .expect_code(1)
        .expect_stderr_contains("No space left on device");
    wd.run(&["generate", "-n", "20000", "-o", "/dev/full"])
        .expect_code(1)
        .expect_stderr_contains("No space left on device");
    wd.create("s.json", "earlier\n");
    wd.txguard_run(&["-o", "/dev/full", "--summary", "s.json"])
        .expect_code(1);
    let json: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("No space left on device")
    );
}

/// Runs `f` with a 256 KiB tmpfs mounted at a fresh directory, if this process may mount
/// (root in CI and here); otherwise says so and returns false.
fn with_tiny_filesystem(f: impl FnOnce(&std::path::Path)) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return false;
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(dir.path())));
    let _ = std::process::Command::new("umount")
        .arg(dir.path())
        .status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    true
}

#[test]
fn a_file_on_a_full_filesystem_fails_with_the_os_error_and_the_earlier_file_stays() {
    let wd = Workdir::new("fullfs");
    // About 300 KiB of results, for 56 KiB of room.
    wd.generate("tx.csv", 20000, 0);
    wd.rules(TRUE_RULE);
    with_tiny_filesystem(|fs| {
        std::fs::write(fs.join("out.csv"), "earlier\n").unwrap();
        std::fs::write(fs.join("filler"), vec![0u8; 200 * 1024]).unwrap();
        let out = fs.join("out.csv");
        let run = wd.txguard_run(&["-o", out.to_str().unwrap()]);
        run.expect_code(1)
            .expect_stderr_contains("No space left on device (os error 28)");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier\n");
        let mut left: Vec<String> = std::fs::read_dir(fs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["filler", "out.csv", "out.csv.lock"],
            "the temporary file is gone"
        );
    });
}
