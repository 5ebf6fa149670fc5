//! `txguard`: parse the command line, run the command, turn the outcome into an exit code.

/// Run by the C library before `main`, hence before Rust's runtime reopens a closed
/// stdout on `/dev/null`: records whether fd 1 was closed (see `output::check_stdout_open`).
// SAFETY: an `.init_array` entry is called by the C runtime with no arguments, before
// `main`, as an `extern "C" fn()`; `record_stdout` has exactly that type and only makes one
// fcntl(2) call and an atomic store (no allocation, no Rust runtime needed).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_STDOUT: extern "C" fn() = record_stdout;

#[cfg(target_os = "linux")]
extern "C" fn record_stdout() {
    txguard::output::record_stdout_at_start();
}

fn main() {
    let cli = txguard::cli::parse();
    let quiet = cli.command.quiet();
    let result = txguard::cmd::dispatch(cli.command);
    // Whoever ends the process holds this lock: a signal's watchdog never prints over
    // (or exits under) the main thread's report.
    let _exiting = txguard::cleanup::exit_lock();
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            txguard::cleanup::remove_unfinished();
            txguard::exit::report(&err, quiet)
        }
    };
    std::process::exit(code);
}
