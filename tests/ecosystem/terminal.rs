//! What a person sees on a terminal, driven under a pseudo-terminal (`script`): the
//! progress bar (transactions, tx/s, running error and timeout counts, ETA), cleared
//! before the summary and on Ctrl-C; the summary table within 80 columns with thousands
//! separators. Off a terminal there is no bar and no separator.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use crate::workdir::Workdir;

const RULES: &str = r#"
[columns]
id = "int"

[[rule]]
id = 1
name = "odd_ids_throw_an_error_in_this_rule_whose_name_is_far_too_long_for_a_table"
when = '''if id % 2 == 1 { throw "odd" } true'''

[[rule]]
id = 22
name = "slow"
timeout = "500ms"
when = '''if id % 100 == 0 { sleep_ms(60000) } false'''
"#;

/// `txguard ARGS` under a pseudo-terminal of 80 columns; stdin is a pipe to the
/// terminal (what is written there is typed).
fn under_pty(wd: &Workdir, args: &str) -> std::process::Child {
    let line = format!(
        "stty cols 80 rows 24; exec '{}' {args}",
        env!("CARGO_BIN_EXE_txguard")
    );
    Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .current_dir(wd.root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs")
}

/// The screen's lines as written: split at CR and LF, escape sequences taken out. A
/// line that held the bar and was cleared (`ESC [2K`) is followed by what came after it.
fn screen_lines(raw: &str) -> Vec<String> {
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        text.push(c);
    }
    text.split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The bar's frames: lines with `tx/s`.
fn frames(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.contains(" tx/s, ")).collect()
}

#[test]
fn the_bar_counts_transactions_errors_and_timeouts_and_the_table_fits_80_columns() {
    let wd = Workdir::new("terminal");
    wd.generate("tx.csv", 1200, 3);
    wd.rules(RULES);
    let child = under_pty(&wd, "run tx.csv --rules rules.toml -o out.csv -j 1");
    let out = child.wait_with_output().unwrap();
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{raw}");
    let lines = screen_lines(&raw);
    let bars = frames(&lines);
    assert!(!bars.is_empty(), "a bar was drawn: {raw:?}");
    for bar in &bars {
        assert!(bar.chars().count() <= 80, "the bar fits: {bar:?}");
        let (_, counts) = bar.split_once('%').expect("a percentage");
        let words: Vec<&str> = counts.split_whitespace().collect();
        assert!(
            matches!(
                words.as_slice(),
                [_, "tx,", _, "tx/s,", _, "error,", _, "timeout,", "ETA", _]
            ),
            "{bar:?}"
        );
    }
    // The run takes six seconds (12 timeouts of 500 ms, one lane); the bar redraws 5 times
    // a second: some frame saw errors and timeouts already. The limit is generous: a row
    // that does not sleep never comes near it, however loaded the machine.
    assert!(
        bars.iter()
            .any(|b| !b.contains(" 0 error") && !b.contains(" 0 timeout")),
        "{bars:#?}"
    );
    // The bar is cleared: the summary starts its own line, right after the last frame.
    let first_after = lines
        .iter()
        .position(|l| l.starts_with("txguard: "))
        .expect("a summary");
    assert!(
        lines[..first_after].iter().all(|l| l.contains(" tx/s, ")),
        "{lines:#?}"
    );
    let table: Vec<&String> = lines[first_after..].iter().collect();
    assert_eq!(
        table[0],
        "txguard: 1,200 transactions × 2 rules = 2,400 results"
    );
    assert!(table[1].starts_with("  in "), "{table:?}");
    assert!(table[1].ends_with("threads -j 1"), "{table:?}");
    assert_eq!(
        &table[2..],
        [
            "    rule  name                             true      false      error    timeout",
            "       1  odd_ids_throw_an_error_in…        600          0        600          0",
            "      22  slow                                0      1,188          0         12",
            "  bad rows: 0",
        ]
        .map(|l| l.to_string())
        .iter()
        .collect::<Vec<_>>()
    );
    for line in &table {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
}

#[test]
fn off_a_terminal_there_is_no_bar_and_no_separator() {
    let wd = Workdir::new("no-terminal");
    wd.generate("tx.csv", 1200, 3);
    wd.rules(RULES);
    let run = wd.txguard_run(&["-o", "out.csv", "-j", "2"]);
    run.expect_success();
    let stderr = run.stderr();
    assert!(!stderr.contains("tx/s, "), "{stderr}");
    assert!(
        stderr.starts_with("txguard: 1200 transactions × 2 rules = 2400 results\n  in "),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "      22  slow                                0       1188          0         12\n"
        ),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_clears_the_bar_before_the_last_line() {
    let wd = Workdir::new("ctrl-c");
    wd.generate("tx.csv", 2000, 3);
    wd.rules("[[rule]]\nid = 1\nname = \"slow\"\nwhen = \"sleep_ms(50); true\"\n");
    let mut child = under_pty(&wd, "run tx.csv --rules rules.toml -o out.csv -j 1");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    // Wait (a generous bound, no timing assumed) for a frame that counts a transaction.
    let started = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
        if frames(&screen_lines(&text))
            .iter()
            .any(|f| !f.contains("% 0 tx,"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no bar: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ctrl-C, typed on the terminal: the terminal sends SIGINT to the run.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("stopped within moments");
    reader.join().unwrap();
    drop(stdin);
    let raw = String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
    assert_eq!(status.code(), Some(130), "{raw:?}");
    // The last frame is cleared (CR, erase line) before the line saying why.
    let cleared = raw
        .rfind("\r\u{1b}[2Ktxguard: interrupted by SIGINT; no output file written")
        .expect("the bar cleared, then the message");
    assert!(!raw[cleared..].contains("tx/s"), "{raw:?}");
    assert!(!wd.exists("out.csv"));
}
