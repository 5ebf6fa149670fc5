//! Stage 3 of a run: where results go. A regular file is written beside its final path
//! and renamed into place only when complete (a failed or interrupted run leaves the
//! earlier file as it was); stdout, pipes and devices are written straight. The lock on
//! `OUTPUT.lock` keeps two runs from writing the same output.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::model::BadRow;

/// Where one output stream goes.
pub enum Destination {
    /// Standard output (`-` or no `-o`).
    Stdout,
    /// Standard error (rejects when the results go to stdout).
    Stderr,
    /// A path that is not a regular file (a pipe, `/dev/null`): written straight.
    Straight(PathBuf),
    /// A regular file (or a path that does not exist yet): written atomically.
    File(PathBuf),
}

impl Destination {
    /// Classifies a `-o` argument: `None` and `-` are stdout.
    pub fn of(path: Option<&Path>) -> Destination {
        match path {
            None => Destination::Stdout,
            Some(p) if p == Path::new("-") => Destination::Stdout,
            Some(p) => match fs::metadata(p) {
                Ok(meta) if !meta.is_file() && !meta.is_dir() => {
                    Destination::Straight(p.to_path_buf())
                }
                _ => Destination::File(p.to_path_buf()),
            },
        }
    }

    /// The regular file this destination replaces, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Destination::File(p) => Some(p),
            _ => None,
        }
    }
}

/// Another run holds the lock on this output.
#[derive(Debug)]
pub struct Locked {
    pub lock_path: std::path::PathBuf,
}

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another txguard run holds the lock {}; try again when it has finished",
            self.lock_path.display()
        )
    }
}
impl std::error::Error for Locked {}

/// An exclusive lock on `OUTPUT.lock`, held until dropped (or the process dies: the
/// kernel releases it, so there is never a stale lock to clean up). Not inherited by
/// worker processes: std opens files close-on-exec.
pub struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Takes the lock for `output`, or fails at once with `Locked` (exit 75).
    pub fn acquire(output: &Path) -> Result<OutputLock> {
        let mut name = output.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(OutputLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Locked { lock_path: path }.into()),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// Temporary files of outputs not yet committed. A failed or interrupted run may leave a
/// sink on a thread it does not wait for (the reader holds the rejects); `exit::report`
/// removes whatever is still listed here before the process exits.
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every temporary output file that was never committed.
pub fn remove_unfinished() {
    for path in unfinished().drain(..) {
        let _ = fs::remove_file(path);
    }
}

/// A byte sink that becomes visible at its destination only on `commit`.
pub struct Sink {
    writer: BufWriter<Box<dyn Write + Send>>,
    /// For a regular file: the temporary file beside it, removed if never committed.
    pending: Option<(tempfile::TempPath, PathBuf)>,
    label: String,
}

impl Sink {
    pub fn create(dest: &Destination) -> Result<Sink> {
        let (inner, pending, label): (Box<dyn Write + Send>, _, String) = match dest {
            Destination::Stdout => (Box::new(io::stdout()), None, "standard output".into()),
            Destination::Stderr => (Box::new(io::stderr()), None, "standard error".into()),
            Destination::Straight(p) => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(p)
                    .with_context(|| format!("cannot open {} for writing", p.display()))?;
                (Box::new(f), None, p.display().to_string())
            }
            Destination::File(p) => {
                if p.is_dir() {
                    anyhow::bail!("cannot write {}: it is a directory", p.display());
                }
                let dir = match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let temp = tempfile::Builder::new()
                    .prefix(&format!(".{name}."))
                    .suffix(".tmp")
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                    .tempfile_in(dir)
                    .with_context(|| {
                        format!(
                            "cannot create a temporary file in {} for {}",
                            dir.display(),
                            p.display()
                        )
                    })?;
                let (file, path) = temp.into_parts();
                unfinished().push(path.to_path_buf());
                (
                    Box::new(file),
                    Some((path, p.clone())),
                    p.display().to_string(),
                )
            }
        };
        Ok(Sink {
            writer: BufWriter::with_capacity(256 * 1024, inner),
            pending,
            label,
        })
    }

    /// What error messages call this sink.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Flushes, syncs a file to disk, and renames it into place.
    pub fn commit(self) -> Result<()> {
        let label = self.label;
        let inner = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {label}"))?;
        if let Some((temp, dest)) = self.pending {
            unfinished().retain(|p| p.as_path() != &*temp);
            // The temporary file is a File behind the box; sync it through its path.
            drop(inner);
            File::open(&temp)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot write {label}"))?;
            temp.persist(&dest).map_err(|e| e.error).with_context(|| {
                format!(
                    "cannot rename the finished output into place at {}",
                    dest.display()
                )
            })?;
        }
        Ok(())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// The results CSV: `transaction_id,rule_id,result,detail`, one row per (row, rule). The
/// lanes format the lines (`format::ResultsFormat`); this only writes them, in order.
pub struct ResultsWriter {
    sink: Sink,
}

impl ResultsWriter {
    /// Starts the results with their header.
    pub fn new(mut sink: Sink) -> Result<ResultsWriter> {
        sink.write_all(b"transaction_id,rule_id,result,detail\n")
            .with_context(|| format!("cannot write {}", sink.label()))?;
        Ok(ResultsWriter { sink })
    }

    /// Writes result lines formatted by `format::ResultsFormat`.
    pub fn write_formatted(&mut self, lines: &[u8]) -> Result<()> {
        self.sink
            .write_all(lines)
            .with_context(|| format!("cannot write {}", self.sink.label()))
    }

    /// Flushes and, for a file, renames it into place.
    pub fn commit(self) -> Result<()> {
        self.sink.commit()
    }
}

/// The rejects CSV of `--bad-rows skip`: `line,reason,raw`. Always written (header only
/// when nothing was rejected), so yesterday's rejects never sit beside today's results.
pub struct RejectsWriter {
    csv: csv::Writer<Sink>,
}

impl RejectsWriter {
    pub fn new(sink: Sink) -> Result<RejectsWriter> {
        let label = sink.label().to_string();
        let mut csv = csv::Writer::from_writer(sink);
        csv.write_record(["line", "reason", "raw"])
            .with_context(|| format!("cannot write {label}"))?;
        Ok(RejectsWriter { csv })
    }

    pub fn write(&mut self, bad: &BadRow) -> Result<()> {
        let line = bad.line.to_string();
        self.csv
            .write_record([line.as_bytes(), bad.reason.as_bytes(), &bad.raw])
            .with_context(|| format!("cannot write rejects to {}", self.csv.get_ref().label()))
    }

    pub fn commit(self) -> Result<()> {
        let sink = self
            .csv
            .into_inner()
            .map_err(|e| e.into_error())
            .context("cannot write the rejects")?;
        sink.commit()
    }
}
