//! Whether standard output can take the data stream. A process started with fd 1 closed
//! (`cmd >&-`) would otherwise "succeed" while writing nothing: Rust's runtime reopens a
//! closed fd 1 on `/dev/null` at startup (read-write), and its `Stdout` ignores `EBADF`.

use std::io;
use std::os::fd::AsFd;

use anyhow::{Result, bail};
use rustix::fs::{FileType, OFlags};

/// Fails when standard output is closed, or is the `/dev/null` the runtime put in place
/// of a closed one.
pub fn check_stdout_open() -> Result<()> {
    let stdout = io::stdout();
    let fd = stdout.as_fd();
    if rustix::io::fcntl_getfd(fd).is_err() || is_runtime_dev_null(fd) {
        bail!(
            "standard output is closed, so the data written there would be lost: \
             open it, or name a file with -o"
        );
    }
    Ok(())
}

/// `/dev/null` opened read-write: what the runtime does for a closed fd. A shell's
/// `>/dev/null` opens it write-only, which stays allowed (the caller asked for it).
fn is_runtime_dev_null(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let Ok(stat) = rustix::fs::fstat(fd) else {
        return false;
    };
    let is_dev_null = FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice
        && rustix::fs::major(stat.st_rdev) == 1
        && rustix::fs::minor(stat.st_rdev) == 3;
    let read_write =
        rustix::fs::fcntl_getfl(fd).is_ok_and(|flags| flags & OFlags::ACCMODE == OFlags::RDWR);
    is_dev_null && read_write
}
