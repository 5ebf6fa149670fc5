//! Where a path named on the command line really goes. An output is written *through*
//! symbolic links: the file replaced is the link's final target (the link stays a link),
//! and its temporary file is made in the target's directory so that the rename is atomic.
//! A path that is not a regular file (a FIFO, a device, a descriptor such as
//! `/dev/stdout`) is never replaced: it is written in place.
//!
//! The same resolution decides whether two names are the same file (`identity`), so
//! that the overlap check of the configuration and the writers agree.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How many symbolic links one path may pass through (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Length of the random part of a temporary file's name (`.NAME.XXXXXX.tmp`).
pub const TEMP_RANDOM_LEN: usize = 6;
/// Suffix of every temporary output file.
pub const TEMP_SUFFIX: &str = ".tmp";

/// What writing to a path means.
#[derive(Debug)]
pub enum Resolved {
    /// Not a regular file (a FIFO, a device, a descriptor reached through `/proc`, such as
    /// `/dev/stdout`): opened and written in place, never replaced.
    Straight,
    /// This process's own standard output or error, named through `/proc` (`/dev/stdout`,
    /// `/dev/fd/2`): written to the descriptor itself, sharing its offset with the shell
    /// (`>> log` appends) and counted as the stream it is.
    Stdout,
    Stderr,
    /// A regular file, or a name where one will be created: `target` is its canonical
    /// path (every link followed), `existing` its metadata when it exists.
    Replace {
        target: PathBuf,
        existing: Option<fs::Metadata>,
    },
}

/// Why a path cannot be an output. Displayed after the path it is about.
#[derive(Debug)]
pub enum Problem {
    /// The directory the file would be created in does not exist.
    MissingDirectory(PathBuf),
    /// A component that should be a directory is something else.
    NotADirectory(PathBuf),
    /// The directory exists but this process may not create files in it.
    ReadOnlyDirectory(PathBuf),
    /// The path names a directory, not a file.
    IsADirectory,
    /// A loop of symbolic links, or too long a chain.
    TooManyLinks,
    Io(io::Error),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingDirectory(dir) => write!(
                f,
                "the directory {} does not exist; create it first",
                dir.display()
            ),
            Problem::NotADirectory(dir) => write!(f, "{} is not a directory", dir.display()),
            Problem::ReadOnlyDirectory(dir) => write!(
                f,
                "cannot create files in the directory {}: permission denied",
                dir.display()
            ),
            Problem::IsADirectory => f.write_str("is a directory; name a file in it"),
            Problem::TooManyLinks => f.write_str("too many levels of symbolic links"),
            Problem::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Follows `path` through its symbolic links, one at a time, to what writing it means.
pub fn resolve(path: &Path) -> Result<Resolved, Problem> {
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        let meta = match fs::symlink_metadata(&current) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return not_yet_existing(&current),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                return Err(Problem::NotADirectory(directory_of(&current)));
            }
            Err(e) => return Err(Problem::Io(e)),
        };
        if meta.file_type().is_symlink() {
            let dir = directory_of(&current);
            // A link in /proc is a "magic" link to an open descriptor (`/dev/stdout` ends
            // at /proc/self/fd/1): its text may be `pipe:[1234]` or a deleted file, so it
            // is opened as it is, never resolved and replaced.
            if is_in_proc(&dir) {
                return match (fs::metadata(path), own_descriptor(&current)) {
                    (Ok(m), _) if m.is_dir() => Err(Problem::IsADirectory),
                    (_, Some(1)) => Ok(Resolved::Stdout),
                    (_, Some(2)) => Ok(Resolved::Stderr),
                    _ => Ok(Resolved::Straight),
                };
            }
            let link = fs::read_link(&current).map_err(Problem::Io)?;
            // A relative link is relative to the directory holding it; an absolute one
            // replaces the path (`join` does both).
            current = dir.join(link);
        } else if meta.is_dir() {
            return Err(Problem::IsADirectory);
        } else if meta.is_file() {
            let target = fs::canonicalize(&current).map_err(Problem::Io)?;
            return Ok(Resolved::Replace {
                target,
                existing: Some(meta),
            });
        } else {
            return Ok(Resolved::Straight);
        }
    }
    Err(Problem::TooManyLinks)
}

/// `resolve`, and for a file to be replaced: its directory must let us create the
/// temporary file beside it. What the configuration checks before any work.
pub fn check_writable(path: &Path) -> Result<Resolved, Problem> {
    let resolved = resolve(path)?;
    if let Resolved::Replace { target, .. } = &resolved {
        let dir = directory_of(target);
        use rustix::fs::Access;
        if rustix::fs::access(&dir, Access::WRITE_OK | Access::EXEC_OK).is_err() {
            return Err(Problem::ReadOnlyDirectory(dir));
        }
    }
    Ok(resolved)
}

/// A name that does not exist (yet): its directory must.
fn not_yet_existing(path: &Path) -> Result<Resolved, Problem> {
    let dir = directory_of(path);
    let Some(name) = path.file_name() else {
        return Err(Problem::IsADirectory);
    };
    match fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(Resolved::Replace {
            target: fs::canonicalize(&dir).map_err(Problem::Io)?.join(name),
            existing: None,
        }),
        Ok(_) => Err(Problem::NotADirectory(dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Problem::MissingDirectory(dir)),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
            Err(Problem::NotADirectory(dir))
        }
        Err(e) => Err(Problem::Io(e)),
    }
}

/// The directory holding `path` (`.` for a bare name).
pub fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn is_in_proc(dir: &Path) -> bool {
    fs::canonicalize(dir).is_ok_and(|d| d.starts_with("/proc"))
}

/// The descriptor number when `link` is one of this process's own descriptors in
/// `/proc` (`/proc/self/fd/N`, `/proc/thread-self/fd/N`, `/proc/PID/task/TID/fd/N`).
fn own_descriptor(link: &Path) -> Option<u32> {
    let dir = fs::canonicalize(directory_of(link)).ok()?;
    let own = Path::new("/proc").join(std::process::id().to_string());
    let is_own = dir == own.join("fd")
        || (dir.starts_with(own.join("task")) && dir.file_name() == Some("fd".as_ref()));
    if !is_own {
        return None;
    }
    link.file_name()?.to_str()?.parse().ok()
}

/// What makes two names the same file: the same inode for files that exist, the same
/// canonical path for files that do not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Inode { dev: u64, ino: u64 },
    Name(PathBuf),
}

/// The identity of a regular file (or directory, or name to be created); `None` for
/// what is written in place (FIFOs, devices), which cannot be replaced by another output.
pub fn identity(path: &Path) -> Option<Identity> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() || meta.is_dir() => Some(Identity::Inode {
            dev: meta.dev(),
            ino: meta.ino(),
        }),
        Ok(_) => None,
        Err(_) => match resolve(path) {
            Ok(Resolved::Replace { target, .. }) => Some(Identity::Name(target)),
            _ => None,
        },
    }
}

/// `PATH` + `suffix`, e.g. the lock file `OUT.lock` or the rejects `OUT.rejects.csv`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The prefix of the temporary files of `target`: `.NAME.` (hidden, beside it).
pub fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

/// Whether `entry` (a file name in the target's directory) is one of `target`'s
/// temporary files: `.NAME.XXXXXX.tmp`, as `temp_prefix` and tempfile make them.
pub fn is_temp_of(entry: &str, target: &Path) -> bool {
    entry
        .strip_prefix(&temp_prefix(target))
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|random| {
            random.len() == TEMP_RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn target_of(path: &Path) -> PathBuf {
        match resolve(path) {
            Ok(Resolved::Replace { target, .. }) => target,
            other => panic!("{}: {other:?}", path.display()),
        }
    }

    #[test]
    fn a_regular_file_and_a_new_name_are_replaced_at_their_canonical_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::write(root.join("a.csv"), "x").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        assert_eq!(
            target_of(&dir.path().join("sub/../a.csv")),
            root.join("a.csv")
        );
        assert_eq!(
            target_of(&dir.path().join("sub/new.csv")),
            root.join("sub/new.csv")
        );
        assert!(matches!(
            resolve(&dir.path().join("a.csv")),
            Ok(Resolved::Replace {
                existing: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn links_are_followed_to_their_final_target_even_when_it_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(root.join("real")).unwrap();
        fs::write(root.join("real/out.csv"), "x").unwrap();
        symlink("real/out.csv", root.join("link.csv")).unwrap();
        symlink("link.csv", root.join("link2.csv")).unwrap();
        symlink("real/later.csv", root.join("dangling.csv")).unwrap();
        assert_eq!(
            target_of(&root.join("link2.csv")),
            root.join("real/out.csv")
        );
        assert_eq!(
            target_of(&root.join("dangling.csv")),
            root.join("real/later.csv")
        );
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert!(matches!(
            resolve(&root.join("loop1")),
            Err(Problem::TooManyLinks)
        ));
    }

    #[test]
    fn directories_and_missing_directories_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("file"), "x").unwrap();
        assert!(matches!(resolve(dir.path()), Err(Problem::IsADirectory)));
        let missing = dir.path().join("nodir/out.csv");
        match resolve(&missing) {
            Err(Problem::MissingDirectory(d)) => assert_eq!(d, dir.path().join("nodir")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve(&dir.path().join("file/out.csv")),
            Err(Problem::NotADirectory(_))
        ));
    }

    #[test]
    fn devices_and_descriptors_are_written_in_place() {
        assert!(matches!(
            resolve(Path::new("/dev/null")),
            Ok(Resolved::Straight)
        ));
        // Whatever standard output is here (a pipe, a file, a terminal), it is never
        // replaced through its name: it is the stream itself.
        assert!(matches!(
            resolve(Path::new("/dev/stdout")),
            Ok(Resolved::Stdout)
        ));
        assert!(matches!(
            resolve(Path::new("/proc/self/fd/2")),
            Ok(Resolved::Stderr)
        ));
        assert!(matches!(
            resolve(Path::new("/dev/fd/1")),
            Ok(Resolved::Stdout)
        ));
    }

    #[test]
    fn identities_agree_across_links_dot_dot_and_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("tx.csv"), "x").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        symlink("tx.csv", root.join("alias.csv")).unwrap();
        let tx = identity(&root.join("tx.csv"));
        assert!(tx.is_some());
        assert_eq!(identity(&root.join("alias.csv")), tx);
        assert_eq!(identity(&root.join("sub/../tx.csv")), tx);
        assert_eq!(
            identity(&root.join("new.csv")),
            identity(&root.join("sub/../new.csv"))
        );
        assert_ne!(identity(&root.join("new.csv")), tx);
        assert_eq!(identity(Path::new("/dev/null")), None);
    }

    #[test]
    fn temporary_names_are_recognised_exactly() {
        let target = Path::new("/x/out.csv");
        assert_eq!(temp_prefix(target), ".out.csv.");
        assert!(is_temp_of(".out.csv.abc123.tmp", target));
        assert!(!is_temp_of(".out.csv.abc12.tmp", target));
        assert!(!is_temp_of(".other.csv.abc123.tmp", target));
        assert!(!is_temp_of(".out.csv.rejects.csv.abc123.tmp", target));
        assert!(!is_temp_of("out.csv", target));
        assert_eq!(
            with_suffix(Path::new("a/out.csv"), ".lock"),
            Path::new("a/out.csv.lock")
        );
    }
}
