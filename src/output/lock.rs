//! The lock that keeps two runs from writing the same output: an exclusive `flock` on
//! `TARGET.lock`, beside the real file (a symlink and its target share one lock). The
//! kernel releases it when its holder ends, however it ends, so there is never a stale
//! lock; the run that holds it is also the one that may sweep away temporary files left
//! by a run that was killed (SIGKILL, a power cut) before it could remove them.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use super::paths::{self, Resolved};
use crate::exit::Locked;

/// An exclusive lock on `TARGET.lock`, held until dropped (or the process dies).
pub struct OutputLock {
    _files: Vec<File>,
}

impl OutputLock {
    /// Takes the lock for `output`, or fails at once with `Locked` (exit 75). Then removes
    /// the stale temporary files of every file in `covered` (the outputs this lock
    /// guards: no other run can be writing them now).
    pub fn acquire(output: &Path, covered: &[&Path]) -> Result<OutputLock> {
        let mut files = vec![OutputLock::take(output)?];
        // Every other file the run may sweep is locked too (the default rejects file): a
        // run whose own output is that file must not sweep this run's live temporary.
        for path in covered.iter().filter(|p| **p != output) {
            files.push(OutputLock::take(path)?);
        }
        for path in covered {
            if let Ok(target) = canonical_target(path) {
                remove_stale_temporaries(&target);
            }
        }
        Ok(OutputLock { _files: files })
    }

    /// Opens and locks `OUTPUT.lock` beside the canonical target of `output`.
    fn take(output: &Path) -> Result<File> {
        let target = canonical_target(output)?;
        let lock = paths::with_suffix(&target, paths::LOCK_SUFFIX);
        // Messages name the lock as people would find it: beside the output they named,
        // unless that name is a link (then beside the link's target).
        let shown = if output.is_symlink() {
            lock.clone()
        } else {
            paths::with_suffix(output, paths::LOCK_SUFFIX)
        };
        // O_NOFOLLOW: a lock name planted as a symlink must not make us create or
        // truncate a file elsewhere. O_NONBLOCK: one planted as a FIFO must not block the
        // open (it is refused below). std adds O_CLOEXEC, so worker processes never
        // inherit the lock.
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(flags.bits() as i32)
            .open(&lock)
            .map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    anyhow!(
                        "the lock file {} is a symbolic link, which txguard does not follow; \
                         remove it and run again",
                        paths::show(&shown)
                    )
                } else if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
                    not_a_regular_file(&shown)
                } else {
                    anyhow::Error::new(e)
                        .context(format!("cannot open the lock file {}", paths::show(&shown)))
                }
            })?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(not_a_regular_file(&shown));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Locked {
                    lock: paths::show(&shown),
                }
                .into());
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", paths::show(&shown)));
            }
        }
        Ok(file)
    }
}

fn not_a_regular_file(shown: &Path) -> anyhow::Error {
    anyhow!(
        "the lock file {} is not a regular file (a FIFO, a device?); remove it and run again",
        paths::show(shown)
    )
}

fn canonical_target(output: &Path) -> Result<PathBuf> {
    match paths::resolve(output) {
        Ok(Resolved::Replace { target, .. }) => Ok(target),
        Ok(Resolved::Straight | Resolved::Stdout | Resolved::Stderr) => Err(anyhow!(
            "{} is not a regular file: there is nothing to lock",
            paths::show(output)
        )),
        Err(problem) => Err(anyhow!("{}: {problem}", paths::show(output))),
    }
}

/// Removes `.NAME.XXXXXX.tmp` files beside `target`: only a run killed before it could
/// clean up leaves them, and only the lock holder may know that none is in use. Best
/// effort: a file that cannot be removed is left as it is.
fn remove_stale_temporaries(target: &Path) {
    let dir = paths::directory_of(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && paths::is_temp_of(&name.to_string_lossy(), target) {
            let _ = fs::remove_file(entry.path());
        }
    }
}
