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
    crate::cleanup::remove_unfinished();
    crate::progress::clear_shown();
    let message = crate::exit::Interrupted(signal).to_string();
    let _ = writeln!(std::io::stderr(), "txguard: {message}");
    // The lock stays held: nothing may be committed any more.
    std::mem::forget(committed);
    std::process::exit(128 + signal);
}
