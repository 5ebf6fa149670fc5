//! Discoverability: completion scripts, man pages, exit codes in the help, and the
//! README's install step and cron recipe, each run as a user would run them.

use std::path::Path;
use std::process::Command;

use crate::workdir::Workdir;

const README: &str = include_str!("../../README.md");

#[test]
fn every_shell_gets_a_completion_script_without_internal_commands() {
    let wd = Workdir::new("completions");
    for (shell, marker) in [
        ("bash", "complete -F _txguard"),
        ("zsh", "#compdef txguard"),
        ("fish", "complete -c txguard"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[txguard]"),
    ] {
        let run = wd.run(&["completions", shell]);
        run.expect_success().expect_stderr("");
        let script = run.stdout();
        assert!(script.contains(marker), "{shell}: {script}");
        // fish writes `-l rules` where the others write `--rules`.
        let flag = |name: &str| {
            script.contains(&format!("--{name}")) || script.contains(&format!("-l {name} "))
        };
        assert!(flag("rules"), "{shell}: run's flags are there");
        assert!(flag("max-record-size"), "{shell}");
        for hidden in ["floor", "batch-size", "protocol", "countdown"] {
            assert!(!flag(hidden), "{shell} offers {hidden}");
        }
    }
    wd.run(&["completions", "tcsh"])
        .expect_code(2)
        .expect_stderr_contains("invalid value 'tcsh'");
}

#[test]
fn the_bash_script_completes_subcommands_and_flags_in_bash() {
    let wd = Workdir::new("bash-completion");
    let script = wd.run(&["completions", "bash"]).stdout();
    wd.create("txguard.bash", &script);
    // What bash does on TAB: set the words, call the function, read COMPREPLY.
    let complete = |words: &str, cword: usize| {
        let line = format!(
            "source ./txguard.bash; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _txguard txguard \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = Command::new("bash")
            .args(["--norc", "-c", &line])
            .current_dir(wd.root())
            .output()
            .expect("bash");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(complete("txguard r", 1), "rockets\nrun\n");
    assert_eq!(complete("txguard run --max", 2), "--max-record-size\n");
    assert_eq!(complete("txguard run x --executor p", 4), "processes\n");
    assert_eq!(complete("txguard w", 1), "\n", "worker is internal");
}

#[test]
fn man_prints_roff_pages_for_txguard_and_each_subcommand() {
    let wd = Workdir::new("man");
    let run = wd.run(&["man"]);
    run.expect_success().expect_stderr("");
    let page = run.stdout();
    assert!(page.contains(".TH txguard 1"), "{page}");
    assert!(page.contains("txguard\\-run(1)"), "{page}");
    assert!(!page.contains("worker"), "{page}");
    assert!(page.contains("  129  interrupted by SIGHUP"), "{page}");

    let page = wd.run(&["man", "run"]).stdout();
    assert!(
        page.contains(".TH txguard-run 1  \"txguard-run 0.1.0\""),
        "{page}"
    );
    assert!(page.contains("\\fBtxguard run\\fR"), "{page}");
    assert!(page.contains("\\-\\-rules"), "{page}");
    assert!(!page.contains("floor"), "{page}");
    assert!(page.contains("  129  interrupted by SIGHUP"), "{page}");
    for sub in ["check", "generate", "rockets", "completions", "man"] {
        let page = wd.run(&["man", sub]).stdout();
        assert!(page.contains(&format!(".TH txguard-{sub} 1")), "{page}");
    }
    wd.run(&["man", "worker"]).expect_code(2);
    // A reader that goes away early is no error.
    wd.output_of(
        wd.sh("\"$TXGUARD\" man run | head -c 10 >/dev/null; exit ${PIPESTATUS:-0}")
            .stdin(std::process::Stdio::null()),
    )
    .expect_success();
}

#[test]
fn the_help_of_txguard_and_of_run_lists_every_exit_code() {
    let wd = Workdir::new("help-codes");
    let codes = txguard::exit::codes_help();
    for args in [
        &["--help"][..],
        &["help", "run"],
        &["run", "--help"],
        &["run", "-h"],
    ] {
        let run = wd.run(args);
        run.expect_success();
        assert!(
            run.stdout().trim_end().ends_with(&codes),
            "{args:?}:\n{}",
            run.stdout()
        );
    }
    let help = wd.run(&["--help"]).stdout();
    for line in [
        "    0  completed",
        "    3  completed, but a result named by --fail-on occurred",
        "   75  another run holds the lock",
        "  129  interrupted by SIGHUP",
        "  130  interrupted by SIGINT",
        "  143  interrupted by SIGTERM",
    ] {
        assert!(help.contains(line), "{line:?} in\n{help}");
    }
}

#[test]
fn the_readme_exit_code_table_has_exactly_the_codes_of_the_help() {
    let table = README
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("an Exit codes section");
    let mut documented: Vec<i32> = table
        .lines()
        .skip_while(|l| !l.starts_with("| code"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| {
            l.split('|')
                .nth(1)
                .unwrap()
                .split('/')
                .map(|c| c.trim().parse::<i32>().unwrap())
        })
        .collect();
    documented.sort_unstable();
    let mut codes: Vec<i32> = txguard::exit::CODES.iter().map(|(c, _)| *c).collect();
    codes.sort_unstable();
    assert_eq!(documented, codes);
}

#[test]
fn the_readme_installs_txguard_before_calling_it_from_the_path() {
    let install = README
        .find("$ cargo install --path .")
        .expect("an install step");
    let first_call = README.find("$ txguard ").expect("a call of txguard");
    assert!(
        install < first_call,
        "install at {install}, first call at {first_call}"
    );
    assert!(
        README.find("\ntxguard run").is_none_or(|at| at > install),
        "the command list comes after the install step"
    );
}

/// The cron line of the README: the command after the five time fields.
fn cron_command() -> String {
    let block = README
        .split("```cron\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a cron block in the README");
    let lines: Vec<&str> = block
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('=') && !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one job: {lines:?}");
    let mut rest = lines[0];
    for _ in 0..5 {
        rest = rest.trim_start().split_once(char::is_whitespace).unwrap().1;
    }
    let command = rest.trim().to_string();
    assert!(!command.contains('%'), "cron turns % into a newline");
    command
}

/// Runs the README's cron line as cron would (`/bin/sh -c`, an empty environment but
/// cron's own variables, the home directory as working directory), with `/srv/risk` in
/// `root` and `/usr/local/bin/txguard` the binary under test.
fn run_cron_line(wd: &Workdir, root: &Path) -> crate::workdir::Run {
    let command = cron_command()
        .replace("/srv/risk", root.to_str().unwrap())
        .replace("/usr/local/bin/txguard", env!("CARGO_BIN_EXE_txguard"));
    let home = wd.mkdir("home");
    let mut cmd = Command::new("env");
    cmd.args(["-i", "PATH=/usr/bin:/bin", "SHELL=/bin/sh", "LOGNAME=risk"])
        .arg(format!("HOME={}", home.display()))
        .args(["/bin/sh", "-c", &command])
        .current_dir(&home);
    wd.output_of(&mut cmd)
}

#[test]
fn the_readme_cron_line_runs_under_crons_environment_and_stays_silent_on_the_sample() {
    let wd = Workdir::new("cron-recipe");
    let root = wd.mkdir("srv-risk");
    wd.mkdir("srv-risk/incoming");
    // The first 250 transactions of the sample: its error rule (8) and its hanging rule
    // (2) both fire, as every night, in a fraction of the time.
    let sample = include_str!("../../data/transactions.csv");
    let head: String = sample.lines().take(251).map(|l| format!("{l}\n")).collect();
    wd.create("srv-risk/incoming/tx.csv", &head);
    wd.create("srv-risk/rules.toml", include_str!("../../data/rules.toml"));
    // The sample's reference lists, beside the rules file as its `[lists.*]` name them.
    wd.mkdir("srv-risk/lists");
    wd.create(
        "srv-risk/lists/high_risk_countries.csv",
        include_str!("../../data/lists/high_risk_countries.csv"),
    );
    wd.create(
        "srv-risk/lists/merchant_risk.csv",
        include_str!("../../data/lists/merchant_risk.csv"),
    );

    // No output: cron mails nothing.
    run_cron_line(&wd, &root)
        .expect_success()
        .expect_stdout("")
        .expect_stderr("");
    let results = wd.read("srv-risk/out/results.csv");
    assert_eq!(
        results.lines().count(),
        1 + 250 * 11,
        "the sample has 11 rules"
    );
    let summary = wd.json("srv-risk/out/summary.json");
    let rules = summary["rules"].as_array().unwrap();
    assert_eq!(rules[1]["timeout"], 50, "every fifth id hangs: {summary}");
    assert!(rules[7]["error"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(
        wd.read("srv-risk/out/results.csv.rejects.csv"),
        "line,reason,raw\n"
    );

    // A night that goes wrong prints one line, which cron mails.
    wd.create(
        "srv-risk/rules.toml",
        "[[rule]]\nid = 1\nname = \"a\"\nwhen = \"1 +\"\n",
    );
    let run = run_cron_line(&wd, &root);
    run.expect_code(1).expect_stdout("");
    assert_eq!(run.stderr().lines().count(), 1, "{}", run.describe());
    assert_eq!(
        wd.read("srv-risk/out/results.csv"),
        results,
        "last night's stays"
    );
}

/// `(short, long)` of every flag a line of text declares: `-j, --jobs` or `--seed`.
fn flags_in(lines: impl Iterator<Item = String>) -> std::collections::BTreeSet<(String, String)> {
    lines
        .filter_map(|line| {
            let line = line.trim_start();
            let (short, rest) = match line.strip_prefix('-') {
                Some(r) if !r.starts_with('-') => {
                    let (s, rest) = r.split_once(", ")?;
                    (s.to_string(), rest)
                }
                _ => (String::new(), line),
            };
            let long = rest.strip_prefix("--")?;
            let name: String = long
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            Some((short, name))
        })
        .collect()
}

#[test]
fn the_readme_option_table_lists_exactly_the_flags_of_help_run() {
    let wd = Workdir::new("option-table");
    let help = wd.run(&["help", "run"]).stdout();
    let mut in_help = flags_in(help.lines().map(str::to_string));
    in_help.remove(&("h".to_string(), "help".to_string()));
    in_help.remove(&("V".to_string(), "version".to_string()));
    let table = README
        .split("Options of `run` people reach for:")
        .nth(1)
        .expect("the option table");
    let rows = table
        .lines()
        .skip_while(|l| !l.starts_with("| option"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_start_matches("| `").to_string());
    let in_readme = flags_in(rows);
    assert_eq!(in_readme, in_help);
}
