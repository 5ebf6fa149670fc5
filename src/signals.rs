//! SIGINT, SIGTERM (and SIGHUP, a closed terminal): the first one asks the run to stop
//! (checked by the pipeline), so the temporary output is removed and workers are stopped
//! before exiting 128 + the signal (130, 143, 129). A second one, if the first is somehow
//! not honoured, terminates at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Which signal asked us to stop, if any.
#[derive(Clone)]
pub struct StopFlag(Arc<AtomicUsize>);

impl StopFlag {
    /// Installs the handlers.
    pub fn install() -> Result<StopFlag> {
        let flag = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            // Handlers run in registration order: the first signal finds `armed` false and
            // only sets the flags; a second one finds it true and exits at once.
            let install = || -> std::io::Result<()> {
                signal_hook::flag::register_conditional_shutdown(
                    signal,
                    128 + signal,
                    Arc::clone(&armed),
                )?;
                signal_hook::flag::register(signal, Arc::clone(&armed))?;
                signal_hook::flag::register_usize(signal, Arc::clone(&flag), signal as usize)?;
                Ok(())
            };
            install().with_context(|| format!("cannot install a handler for signal {signal}"))?;
        }
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
