//! What must be undone or finished on any way out of the process: the list of temporary
//! output files not yet committed, and the lock held by whoever ends the process. It
//! sits below every stage (it imports none), so outputs, the signal watchdog and `main`
//! can all reach it without importing each other.

use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// Temporary files of outputs not yet committed. A failed or interrupted run may leave a
/// sink on a thread it does not wait for; whoever ends the process removes whatever is
/// still listed here first (`main`, or the signal watchdog).
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Held while outputs are renamed into place, and by whoever ends the process; `true`
/// once every output was committed (a signal then no longer means "nothing written").
static EXIT: Mutex<bool> = Mutex::new(false);

/// The list of unfinished temporary files, locked: hold it while creating a temporary
/// file and listing it, so a watchdog removing the listed files never misses one created
/// an instant before.
pub fn unfinished() -> MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every temporary output file that was never committed.
pub fn remove_unfinished() {
    drop(remove_unfinished_before_exit());
}

/// What the signal watchdog does before it exits while the main thread goes on: removes
/// every temporary output file not committed, and keeps the list locked until the exit.
/// A temporary file is created and listed under this lock (`output::create_temporary`),
/// so none is created after the removal (the main thread writing the summary of the run
/// the signal stopped), to be left behind by the exit.
pub fn remove_unfinished_before_exit() -> MutexGuard<'static, Vec<PathBuf>> {
    let mut listed = unfinished();
    for path in listed.drain(..) {
        let _ = fs::remove_file(path);
    }
    listed
}

/// Locks `EXIT` (a panic elsewhere never keeps the process from ending).
pub fn exit_lock() -> MutexGuard<'static, bool> {
    EXIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
