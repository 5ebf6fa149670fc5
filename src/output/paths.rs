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
/// Suffix of the lock file beside an output.
pub const LOCK_SUFFIX: &str = ".lock";

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
    /// The directory exists but this process may not create files in it (the OS error
    /// says why: permission denied, a read-only file system).
    CannotCreateIn(PathBuf, io::Error),
    /// The directory is sticky and the file belongs to another user: it cannot be
    /// replaced (renamed over) by us.
    StickyDirectory(PathBuf),
    /// The path ends in `/` or `/.`: it names a directory.
    TrailingSlash,
    /// The file's name, its temporary file's or its lock file's does not fit the
    /// directory's limit on name length.
    NameTooLong {
        what: &'static str,
        max: usize,
    },
    /// The name is one txguard gives its own lock or temporary files.
    ReservedName(&'static str),
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
                show(dir)
            ),
            Problem::NotADirectory(dir) => write!(f, "{} is not a directory", show(dir)),
            Problem::CannotCreateIn(dir, e) => {
                write!(f, "cannot create files in the directory {}: {e}", show(dir))
            }
            Problem::StickyDirectory(dir) => write!(
                f,
                "cannot replace it: it belongs to another user and its directory {} is \
                 sticky (only the owner may replace it)",
                show(dir)
            ),
            Problem::TrailingSlash => {
                f.write_str("ends with a slash, so it names a directory; name a file")
            }
            Problem::NameTooLong { what, max } => write!(
                f,
                "file name too long: {what} would exceed the directory's limit of {max} bytes"
            ),
            Problem::ReservedName(what) => write!(
                f,
                "is named like {what}, which txguard creates and removes itself; \
                 choose another name"
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

/// `resolve`, and for a file to be replaced: its name is a file's name that fits with
/// its temporary file's (and, when `locked`, its lock file's) and is none of txguard's
/// own, and its directory lets us create the temporary file and rename it over the
/// file. What the configuration checks before any work.
pub fn check_writable(path: &Path, locked: bool) -> Result<Resolved, Problem> {
    if names_a_directory(path) {
        return Err(Problem::TrailingSlash);
    }
    let resolved = resolve(path)?;
    if let Resolved::Replace { target, .. } = &resolved {
        for name in [path, target.as_path()] {
            if let Some(what) = reserved(name) {
                return Err(Problem::ReservedName(what));
            }
        }
        let dir = directory_of(target);
        let max = name_max(&dir);
        let len = target.file_name().map_or(0, |n| n.len());
        if len > max {
            return Err(Problem::NameTooLong {
                what: "the name",
                max,
            });
        }
        if locked && len + LOCK_SUFFIX.len() > max {
            return Err(Problem::NameTooLong {
                what: "its lock file's name (NAME.lock)",
                max,
            });
        }
        check_replaceable(target)?;
    }
    Ok(resolved)
}

/// Whether `target` (a canonical path) can be replaced now: its directory takes new
/// files, and, when it is sticky, the file (if it exists) is ours or the directory's.
/// Checked before any work and again right before the first rename of a commit.
pub fn check_replaceable(target: &Path) -> Result<(), Problem> {
    use rustix::fs::Access;
    let dir = directory_of(target);
    if let Err(e) = rustix::fs::access(&dir, Access::WRITE_OK | Access::EXEC_OK) {
        return Err(Problem::CannotCreateIn(dir, e.into()));
    }
    let dir_meta = fs::metadata(&dir).map_err(Problem::Io)?;
    if dir_meta.mode() & 0o1000 != 0
        && let Ok(meta) = fs::symlink_metadata(target)
    {
        let euid = rustix::process::geteuid();
        if !euid.is_root() && euid.as_raw() != meta.uid() && euid.as_raw() != dir_meta.uid() {
            return Err(Problem::StickyDirectory(dir));
        }
    }
    Ok(())
}

/// A path ending in `/` or `/.` (or `.`, `..`) names a directory, whatever exists there.
fn names_a_directory(path: &Path) -> bool {
    let bytes = path.as_os_str().as_encoded_bytes();
    bytes.ends_with(b"/")
        || bytes.ends_with(b"/.")
        || bytes.ends_with(b"/..")
        || bytes == b"."
        || bytes == b".."
}

/// What a name is reserved for, when it is one txguard gives its own files: `NAME.lock`
/// (the lock of an output `NAME`) or `.NAME.XXXXXX.tmp` (a temporary file).
pub fn reserved(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_string_lossy();
    if name.ends_with(LOCK_SUFFIX) {
        return Some("a lock file (NAME.lock)");
    }
    let temp = name
        .strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(_, random)| {
            random.len() == TEMP_RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    temp.then_some("a temporary file (.NAME.XXXXXX.tmp)")
}

/// The longest file name the directory takes (`NAME_MAX`, 255 when it cannot be asked).
pub fn name_max(dir: &Path) -> usize {
    rustix::fs::statvfs(dir)
        .ok()
        .and_then(|s| usize::try_from(s.f_namemax).ok())
        .filter(|&n| n > 0)
        .unwrap_or(255)
}

/// Escapes control characters (a newline, a tab, an escape) in a path shown in a
/// message, so that a message stays on one line and cannot move the cursor.
pub fn show(path: &Path) -> String {
    let text = path.display().to_string();
    if !text.chars().any(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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

/// The prefix of the temporary files of `target`: `.NAME.` (hidden, beside it). When
/// `.NAME.XXXXXX.tmp` would not fit the directory's name limit, NAME is cut and a hash of
/// the whole name added (`.NAMEPART~0123abcd.`), so it stays recognisable and distinct.
pub fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let max = name_max(&directory_of(target));
    let fixed = 2 + TEMP_RANDOM_LEN + TEMP_SUFFIX.len();
    if name.len() + fixed <= max {
        return format!(".{name}.");
    }
    // FNV-1a: stable across runs and builds, which the sweep of stale files relies on.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let tag = format!("~{:08x}", hash as u32);
    let mut keep = max.saturating_sub(fixed + tag.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(".{}{tag}.", &name[..keep])
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
        let long = format!("/tmp/{}", "x".repeat(250));
        let prefix = temp_prefix(Path::new(&long));
        assert!(
            prefix.len() + TEMP_RANDOM_LEN + TEMP_SUFFIX.len() <= 255,
            "{prefix}"
        );
        assert!(is_temp_of(&format!("{prefix}abc123.tmp"), Path::new(&long)));
    }

    #[test]
    fn names_of_locks_and_temporary_files_are_reserved() {
        assert!(reserved(Path::new("out.csv.lock")).is_some());
        assert!(reserved(Path::new("d/.o.csv.summ01.tmp")).is_some());
        assert!(reserved(Path::new(".o.csv.summ0.tmp")).is_none());
        assert!(reserved(Path::new("out.csv")).is_none());
        assert!(names_a_directory(Path::new("newdir/")));
        assert!(names_a_directory(Path::new("a/.")));
        assert!(!names_a_directory(Path::new("a/.x")));
        assert_eq!(show(Path::new("a\nb")), "a\\nb");
    }
}
