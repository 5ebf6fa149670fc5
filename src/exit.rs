//! Exit codes, as fixed by the contract, the error types that decide them (`Usage`,
//! `Locked`, `Interrupted`, a reader that went away), and the one place errors become
//! codes. It imports no other module of the crate: every stage may raise these errors.

use std::io;

/// The run completed; timeouts and errors are results, not failures.
pub const SUCCESS: i32 = 0;
/// The run failed: bad rules, bad input under `--bad-rows fail`, an I/O error.
pub const FAILURE: i32 = 1;
/// Bad command line (clap exits with it on its own).
pub const USAGE: i32 = 2;
/// The run completed, but a result named by `--fail-on` occurred.
pub const FAIL_ON: i32 = 3;
/// Another run holds the lock on this output file (`EX_TEMPFAIL`: try again later).
pub const LOCKED: i32 = 75;
/// Interrupted by SIGINT (128 + 2).
pub const SIGINT: i32 = 130;
/// Interrupted by SIGTERM (128 + 15).
pub const SIGTERM: i32 = 143;
/// Interrupted by SIGHUP, a closed terminal (128 + 1).
pub const SIGHUP: i32 = 129;

/// Every exit code with what it means in one line: `txguard --help`, `txguard help run`
/// and the man page list these (the README's table says more of each, and a test keeps
/// the two in step).
pub const CODES: &[(i32, &str)] = &[
    (
        SUCCESS,
        "completed (timeouts and errors are results, not failures)",
    ),
    (
        FAILURE,
        "failed: bad rules, a bad row under --bad-rows fail, an I/O error",
    ),
    (
        USAGE,
        "bad command line, or an output that cannot be written (nothing created)",
    ),
    (
        FAIL_ON,
        "completed, but a result named by --fail-on occurred",
    ),
    (
        LOCKED,
        "another run holds the lock on this output; nothing done",
    ),
    (
        SIGHUP,
        "interrupted by SIGHUP (a closed terminal); no output file written",
    ),
    (
        SIGINT,
        "interrupted by SIGINT (Ctrl-C); no output file written",
    ),
    (SIGTERM, "interrupted by SIGTERM; no output file written"),
];

/// `CODES` as help text: a heading, then one code a line.
pub fn codes_help() -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, meaning) in CODES {
        text.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    text.pop();
    text
}

/// The run was stopped by a signal; carries the signal number.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted by {}; no output file written",
            signal_name(self.0)
        )
    }
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`.
pub fn signal_name(signal: i32) -> &'static str {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
impl std::error::Error for Interrupted {}

/// A usage error found after clap parsed the line (e.g. two flags that conflict in meaning).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

/// The reader of the streamed results (or of `generate`'s output) went away: the one
/// failure that ends a run quietly with exit 0. Only the writer of that stream adds it
/// (`mark_reader_gone`); a broken pipe on any other output (rejects, summary, stderr) is
/// an ordinary failure, exit 1.
#[derive(Debug)]
pub struct ReaderGone;

impl std::fmt::Display for ReaderGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the reader of the results went away")
    }
}
impl std::error::Error for ReaderGone {}

/// Whether an error's chain holds a write into a pipe whose reader went away.
pub fn has_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<csv::Error>()
                .is_some_and(|e| matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::BrokenPipe))
    })
}

/// Marks an error of the streamed results' writer as `ReaderGone` when it is a broken
/// pipe; any other error is returned as it was.
pub fn mark_reader_gone(err: anyhow::Error) -> anyhow::Error {
    if has_broken_pipe(&err) {
        err.context(ReaderGone)
    } else {
        err
    }
}

/// True when the reader of the streamed results went away (`txguard run | head`): not
/// for a broken pipe on any other output.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    // anyhow looks through every layer of context for it.
    err.downcast_ref::<ReaderGone>().is_some()
}

/// Another run holds the lock on this output (exit 75).
#[derive(Debug)]
pub struct Locked {
    /// The lock file, as messages show it.
    pub lock: String,
}

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another txguard run holds the lock {}; try again when it has finished",
            self.lock
        )
    }
}
impl std::error::Error for Locked {}

/// The exit code an error stands for.
pub fn code_of(err: &anyhow::Error) -> i32 {
    if let Some(Interrupted(signal)) = err.downcast_ref::<Interrupted>() {
        128 + signal
    } else if is_broken_pipe(err) {
        SUCCESS
    } else if err.downcast_ref::<Locked>().is_some() {
        LOCKED
    } else if err.downcast_ref::<Usage>().is_some() {
        USAGE
    } else {
        FAILURE
    }
}

/// Prints the error on stderr and returns the exit code it stands for (the caller has
/// removed unfinished outputs: `cleanup::remove_unfinished`). `quiet` (`run -q`): exactly one line, whatever the error (a report of
/// several problems is cut to its first and a count of the others). A standard error
/// that cannot be written changes nothing: the exit code says what happened.
pub fn report(err: &anyhow::Error, quiet: bool) -> i32 {
    let text = if err.downcast_ref::<Interrupted>().is_some() {
        format!("txguard: {err}")
    } else {
        format!("txguard: error: {err:#}")
    };
    // (A reader of our output that went away wanted no more: exit quietly.)
    if !is_broken_pipe(err) {
        if quiet {
            say(&one_line(&text));
        } else {
            say(&text);
        }
    }
    code_of(err)
}

/// Prints one message (a line, or several) on standard error, ignoring a standard error
/// that cannot be written (closed, a pipe nobody reads): never a panic.
pub fn say(text: &str) {
    use std::io::Write;
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stderr.write_all(b"\n");
    }
    let _ = stderr.flush();
}

/// A message of several lines (a headline ending in `:`, then one problem a line) as one
/// line: the headline, the first problem, and how many more there are.
fn one_line(text: &str) -> String {
    let mut lines = text.lines();
    let headline = lines.next().unwrap_or_default();
    let rest: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
    match rest.as_slice() {
        [] => headline.to_string(),
        [only] => format!("{headline} {only}"),
        [first, more @ ..] => format!(
            "{headline} {first} (and {} more; run without -q to see every one)",
            more.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn several_lines_become_one() {
        assert_eq!(one_line("txguard: error: x"), "txguard: error: x");
        assert_eq!(
            one_line("txguard: error: r.toml has 1 error:\n  r.toml:4: bad"),
            "txguard: error: r.toml has 1 error: r.toml:4: bad"
        );
        assert_eq!(
            one_line(
                "txguard: error: r.toml has 3 errors:\n  r.toml:4: a\n  r.toml:9: b\n  r.toml:12: c"
            ),
            "txguard: error: r.toml has 3 errors: r.toml:4: a (and 2 more; run without -q to see every one)"
        );
    }
}
