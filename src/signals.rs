//! SIGINT, SIGTERM (and SIGHUP, a closed terminal): the first one asks the run to stop
//! (checked by the pipeline and every wait loop), so the temporary outputs are removed and
//! workers are stopped before exiting 128 + the signal (130, 143, 129).
//!
//! Some waits are in the kernel and cannot look at a flag: opening a FIFO nobody reads,
//! a write into a full pipe. A watchdog thread therefore waits for the signals too: if the
//! process has not exited `GRACE` after the first one, or at once on a second one, it
//! removes the temporary files itself, says so, and exits 128 + the signal. It never cuts
//! a commit in half: renaming outputs into place holds `EXIT`, and once they are all
//! committed a signal can no longer mean "nothing written", so the watchdog leaves the
//! end of the run to the main thread. (Both live in `cleanup`.)

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long the main thread has to end the run itself after the first signal.
const GRACE: Duration = Duration::from_millis(500);

/// Which signal asked us to stop, if any.
#[derive(Clone)]
pub struct StopFlag(Arc<AtomicUsize>);

impl StopFlag {
    /// Installs the handlers and starts the watchdog.
    pub fn install() -> Result<StopFlag> {
        let flag = Arc::new(AtomicUsize::new(0));
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            signal_hook::flag::register_usize(signal, Arc::clone(&flag), signal as usize)
                .with_context(|| format!("cannot install a handler for signal {signal}"))?;
        }
        let mut signals =
            Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut first = None;
                for signal in signals.forever() {
                    if first.is_some() {
                        exit_after(signal);
                    }
                    first = Some(signal);
                    std::thread::spawn(move || {
                        std::thread::sleep(GRACE);
                        exit_after(signal);
                    });
                }
            })
            .context("cannot start the signal watchdog")?;
        Ok(StopFlag(flag))
    }

    /// A flag no signal will set (tests, library use).
    pub fn never() -> StopFlag {
        StopFlag(Arc::new(AtomicUsize::new(0)))
    }

    /// The signal number that asked us to stop.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s as i32),
        }
    }
}

/// Ends a process the main thread did not end in time: removes every registered
/// temporary file, prints the line the main thread would have, exits 128 + `signal`.
/// Not while outputs are being committed; not at all once they were.
fn exit_after(signal: i32) {
    let committed = crate::cleanup::exit_lock();
    if *committed {
        // The main thread ends the run, and says the signal came too late.
        drop(committed);
        return;
    }
    // Held until the exit: a temporary file the main thread would create meanwhile
    // could not be removed.
    let unfinished = crate::cleanup::remove_unfinished_before_exit();
    // Tests create an output here, as the main thread ending the run may.
    #[cfg(test)]
    tests::after_removal();
    crate::progress::clear_shown();
    let message = crate::exit::Interrupted(signal).to_string();
    let _ = writeln!(std::io::stderr(), "txguard: {message}");
    // The locks stay held: nothing may be committed, nor created, any more.
    std::mem::forget(unfinished);
    std::mem::forget(committed);
    std::process::exit(128 + signal);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use crate::output::{Destination, Sink};

    /// The watchdog (`exit_after`) removed the unfinished files, and waits for `CREATED`.
    static REMOVED: AtomicBool = AtomicBool::new(false);
    /// The main thread went on to create an output meanwhile.
    static CREATED: AtomicBool = AtomicBool::new(false);

    /// Called by `exit_after` once the unfinished files are removed: lets the test's main
    /// thread create its output before the exit (at most a few seconds: the watchdog
    /// may keep it from creating any).
    pub(super) fn after_removal() {
        REMOVED.store(true, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_secs(3);
        while !CREATED.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A second signal while the main thread was ending the run: the watchdog removed the
    /// temporary files, the main thread then created the summary's, and the exit left it
    /// behind (`.summary.json.XXXXXX.tmp`). The child is this test binary, re-run on this
    /// test, in a directory of its own.
    #[test]
    fn a_temporary_file_created_while_the_watchdog_exits_is_not_left_behind() {
        const CHILD: &str = "TXGUARD_SIGNALS_TEST_CHILD";
        if let Some(dir) = std::env::var_os(CHILD) {
            let dir = std::path::PathBuf::from(dir);
            let _results = Sink::create(&Destination::File(dir.join("results.csv"))).unwrap();
            std::thread::spawn(|| exit_after(SIGINT));
            while !REMOVED.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _summary = Sink::create(&Destination::File(dir.join("summary.json")));
            CREATED.store(true, Ordering::SeqCst);
            // The watchdog exits meanwhile.
            std::thread::sleep(Duration::from_secs(60));
            std::process::exit(0);
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "signals::tests::a_temporary_file_created_while_the_watchdog_exits_is_not_left_behind",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{stderr}");
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }
}
