//! Whether standard output can take the data stream. A process started with fd 1 closed
//! (`cmd >&-`) would otherwise "succeed" while writing nothing: Rust's runtime reopens a
//! closed fd 0, 1 or 2 on `/dev/null` before `main`, and its `Stdout` ignores `EBADF`.
//!
//! What the runtime put there cannot be told from a `/dev/null` the caller chose
//! (`>/dev/null`, `1<>/dev/null`, a daemon's descriptors): both are `/dev/null`, opened
//! read-write or not. So the binary looks at fd 1 *before* the runtime starts: a function
//! in `.init_array` (run by the C library before `main`, so before Rust's own start-up)
//! calls `record_stdout_at_start`. Only a descriptor that was closed then is "closed".

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Result, bail};

const UNKNOWN: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;

/// What fd 1 was when the process started (before the runtime touched it).
static AT_START: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Records whether fd 1 is open. Called from the binary's `.init_array` entry, before
/// Rust's runtime could replace a closed fd 1; async-signal-safe and allocation-free.
pub fn record_stdout_at_start() {
    // SAFETY: fd 1 is only inspected (F_GETFD), never closed or kept.
    let fd = unsafe { BorrowedFd::borrow_raw(1) };
    let state = if rustix::io::fcntl_getfd(fd).is_ok() {
        OPEN
    } else {
        CLOSED
    };
    AT_START.store(state, Ordering::Relaxed);
}

/// Fails when standard output is closed now, or was closed when the process started (the
/// runtime then put `/dev/null` there). A `/dev/null` the caller chose is fine.
pub fn check_stdout_open() -> Result<()> {
    let stdout = io::stdout();
    let fd = stdout.as_fd();
    if rustix::io::fcntl_getfd(fd).is_err() || AT_START.load(Ordering::Relaxed) == CLOSED {
        bail!(
            "standard output is closed, so the data written there would be lost: \
             open it, or name a file with -o"
        );
    }
    Ok(())
}
