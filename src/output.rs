//! Stage 3 of a run: where results go. A regular file is written to a temporary file
//! beside its real target (through symlinks: `paths`), synced, and renamed into place only
//! when complete, with the directory synced after; a failed or interrupted run leaves the
//! earlier file as it was. Several outputs of one run are finished first and renamed
//! together at the end (`commit_all`). Stdout, pipes and devices are written straight.
//! The lock on `TARGET.lock` (`lock`) keeps two runs from writing the same output.

mod lock;
pub mod paths;
mod stdio;
mod writeback;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

pub use lock::OutputLock;
pub use stdio::{check_stdout_open, record_stdout_at_start};

use crate::exit::Usage;
use crate::model::{BadRow, Tally};
use paths::{Problem, Resolved};

/// Where one output stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output (`-` or no `-o`).
    Stdout,
    /// Standard error (rejects when the results go to stdout).
    Stderr,
    /// A path that is not a regular file (a pipe, `/dev/null`, `/dev/stdout`): written
    /// straight.
    Straight(PathBuf),
    /// A path to a regular file, or to a name where one will be created (through
    /// symlinks): written atomically.
    File(PathBuf),
}

impl Destination {
    /// Classifies an output argument: `None`, `-` and names of this process's stdout
    /// (`/dev/stdout`) are stdout. A path that cannot be resolved is a `File`, whose
    /// `check` says why it cannot be written.
    pub fn of(path: Option<&Path>) -> Destination {
        match path {
            None => Destination::Stdout,
            Some(p) if p == Path::new("-") => Destination::Stdout,
            Some(p) => match paths::resolve(p) {
                Ok(Resolved::Stdout) => Destination::Stdout,
                Ok(Resolved::Stderr) => Destination::Stderr,
                Ok(Resolved::Straight) => Destination::Straight(p.to_path_buf()),
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

    /// The path as given, for a destination that has one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Destination::File(p) | Destination::Straight(p) => Some(p),
            _ => None,
        }
    }

    /// Checks, before any work, that this destination can be written: its directory
    /// exists and takes new files, it is not a directory, its name (with its temporary
    /// file's, and with its lock file's when `locked`) fits and is none of txguard's own.
    /// A `Usage` error (exit 2) naming `flag` and the path otherwise.
    pub fn check(&self, flag: &str, locked: bool) -> Result<()> {
        if let Destination::File(p) = self {
            paths::check_writable(p, locked)
                .map_err(|problem| Usage(format!("{flag} {}: {problem}", paths::show(p))))?;
        }
        Ok(())
    }

    /// What messages call this destination.
    fn label(&self) -> String {
        match self {
            Destination::Stdout => "standard output".into(),
            Destination::Stderr => "standard error".into(),
            Destination::Straight(p) | Destination::File(p) => paths::show(p),
        }
    }
}

/// What a sink writes into.
enum Inner {
    Stdout(io::Stdout),
    Stderr(io::Stderr),
    /// A device or pipe opened by name.
    File(File),
    /// The temporary file of a regular file: handed to the disk as it grows.
    Temp(writeback::Writeback),
}

impl Write for Inner {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Inner::Stdout(w) => w.write(buf),
            Inner::Stderr(w) => w.write(buf),
            Inner::File(w) => w.write(buf),
            Inner::Temp(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Inner::Stdout(w) => w.flush(),
            Inner::Stderr(w) => w.flush(),
            Inner::File(w) => w.flush(),
            Inner::Temp(w) => w.flush(),
        }
    }
}

/// A temporary file and the file it will replace.
struct Pending {
    temp: tempfile::TempPath,
    target: PathBuf,
}

/// A byte sink that becomes visible at its destination only on `commit`.
pub struct Sink {
    writer: BufWriter<Inner>,
    /// For a regular file: the temporary file beside it, removed if never committed.
    pending: Option<Pending>,
    label: String,
}

impl Sink {
    /// Whether this sink streams (stdout, a pipe, a device) rather than filling a
    /// temporary file: what it is given should reach its reader as it is produced.
    pub fn streams(&self) -> bool {
        self.pending.is_none()
    }

    pub fn create(dest: &Destination) -> Result<Sink> {
        let label = dest.label();
        let (inner, pending) = match dest {
            Destination::Stdout => {
                check_stdout_open()?;
                (Inner::Stdout(io::stdout()), None)
            }
            Destination::Stderr => (Inner::Stderr(io::stderr()), None),
            Destination::Straight(p) => (Inner::File(open_straight(p)?), None),
            Destination::File(p) => match paths::resolve(p) {
                // No longer a regular file since it was classified: written in place.
                Ok(Resolved::Straight | Resolved::Stdout | Resolved::Stderr) => {
                    (Inner::File(open_straight(p)?), None)
                }
                Ok(Resolved::Replace { target, existing }) => {
                    let (file, pending) = create_temporary(p, target, existing.as_ref())?;
                    (Inner::Temp(writeback::Writeback::new(file)), Some(pending))
                }
                Err(problem) => return Err(anyhow!("cannot write {label}: {problem}")),
            },
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

    /// Flushes, and for a file syncs its temporary file to disk: everything but the
    /// rename, which `Finished::commit` does.
    pub fn finish(self) -> Result<Finished> {
        let label = self.label;
        let mut inner = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {label}"))?;
        // Standard output has a buffer of its own.
        inner
            .flush()
            .with_context(|| format!("cannot write {label}"))?;
        if let Inner::Temp(temp) = &inner {
            temp.file()
                .sync_all()
                .with_context(|| format!("cannot write {label}"))?;
        }
        Ok(Finished {
            pending: self.pending,
            label,
        })
    }

    /// Finishes and commits this one output.
    pub fn commit(self) -> Result<()> {
        commit_all(vec![self.finish()?], None)
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

/// Opens a FIFO, device or descriptor for writing, as it is. Appending: a regular file
/// reached through `/dev/stdout` (`>> log`) is not overwritten from its start.
fn open_straight(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for writing", paths::show(path)))
}

/// The temporary file of `target`, in its directory (so the rename is atomic), with the
/// earlier file's mode and owner when there is one, else `0666 & !umask` like any new
/// file. Errors name the user's path, never the temporary name.
fn create_temporary(
    shown: &Path,
    target: PathBuf,
    existing: Option<&fs::Metadata>,
) -> Result<(File, Pending)> {
    let dir = paths::directory_of(&target);
    // Created and listed under one lock: a signal's watchdog that removes the listed
    // files never misses one created an instant before.
    let mut unfinished = crate::cleanup::unfinished();
    let temp = tempfile::Builder::new()
        .prefix(&paths::temp_prefix(&target))
        .suffix(paths::TEMP_SUFFIX)
        .rand_bytes(paths::TEMP_RANDOM_LEN)
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(&dir)
        .map_err(|e| {
            anyhow!(
                "cannot create {}: {}",
                paths::show(shown),
                Problem::Io(without_path(e))
            )
        })?;
    let (file, temp) = temp.into_parts();
    unfinished.push(temp.to_path_buf());
    drop(unfinished);
    if let Some(meta) = existing {
        keep_owner_and_mode(&file, meta).with_context(|| {
            format!("cannot give {} its earlier permissions", paths::show(shown))
        })?;
    }
    Ok((file, Pending { temp, target }))
}

/// Gives the new file the earlier one's owner (where we may: root can, others can keep
/// the group when they belong to it) and mode. The owner first: chown clears set-id bits.
fn keep_owner_and_mode(file: &File, meta: &fs::Metadata) -> io::Result<()> {
    let (uid, gid) = (meta.uid(), meta.gid());
    if rustix::process::geteuid().is_root() {
        rustix::fs::fchown(
            file,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )?;
    } else if file.metadata()?.gid() != gid {
        let _ = rustix::fs::fchown(file, None, Some(rustix::fs::Gid::from_raw(gid)));
    }
    file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
}

/// tempfile's errors name the temporary file; messages name the user's path instead.
fn without_path(e: io::Error) -> io::Error {
    let os = e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.source())
            .and_then(|source| source.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error)
    });
    match os {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::from(e.kind()),
    }
}

/// An output written and synced, waiting for its rename. Dropped uncommitted, its
/// temporary file is removed.
pub struct Finished {
    pending: Option<Pending>,
    label: String,
}

impl Finished {
    /// What messages call this output.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The temporary file holding the finished bytes, until the commit renames it (none
    /// for stdout, pipes and devices).
    pub fn temp_path(&self) -> Option<&Path> {
        self.pending.as_ref().map(|p| p.temp.as_ref())
    }

    /// Whether committing renames a file (stdout, pipes and devices have nothing to do).
    fn renames(&self) -> bool {
        self.pending.is_some()
    }

    /// Renames the temporary file onto its target; returns the directory to sync.
    fn rename(self) -> Result<Option<PathBuf>> {
        let Some(Pending { temp, target }) = self.pending else {
            return Ok(None);
        };
        let label = self.label;
        let path = temp.to_path_buf();
        temp.persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot rename the finished output into place at {label}"))?;
        crate::cleanup::unfinished().retain(|p| *p != path);
        Ok(Some(paths::directory_of(&target)))
    }
}

/// Commits outputs that were all finished, in the order given (`run` puts the rejects
/// first, then the results, the summary last: a reader who sees the new summary sees
/// every other new file). Renaming several files is not one atomic operation, so:
///
/// - with `stop`, a signal that arrived before the first rename commits nothing (the
///   error is `Interrupted`); one that arrives once renaming began cannot stop it (the
///   caller says so afterwards);
/// - every target is checked to be replaceable before the first rename, so a failure
///   found then commits nothing;
/// - a rename that still fails stops there: the error says which outputs were
///   committed and which were left as they were (their temporary files are removed).
///
/// Each directory is synced after its renames so that they survive a power cut.
pub fn commit_all(outputs: Vec<Finished>, stop: Option<&crate::signals::StopFlag>) -> Result<()> {
    let mut committed_flag = crate::cleanup::exit_lock();
    if let Some(signal) = stop.and_then(crate::signals::StopFlag::signal) {
        return Err(crate::exit::Interrupted(signal).into());
    }
    // Past this point a signal no longer means "nothing written": the watchdog leaves
    // the end of the run to the main thread.
    *committed_flag = true;
    for output in &outputs {
        if let Some(Pending { target, .. }) = &output.pending {
            paths::check_replaceable(target).map_err(|problem| {
                anyhow!(
                    "cannot commit {}: {problem}; no output was committed",
                    output.label
                )
            })?;
        }
    }
    let mut committed: Vec<String> = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut outputs = outputs.into_iter();
    while let Some(output) = outputs.next() {
        let label = output.label.clone();
        let renames = output.renames();
        match output.rename() {
            Ok(dir) => {
                if renames {
                    committed.push(label);
                }
                if let Some(dir) = dir
                    && !dirs.contains(&dir)
                {
                    dirs.push(dir);
                }
            }
            Err(err) => {
                let mut left: Vec<String> = vec![label];
                left.extend(outputs.filter(Finished::renames).map(|o| o.label));
                let committed = if committed.is_empty() {
                    "none".to_string()
                } else {
                    committed.join(", ")
                };
                return Err(err.context(format!(
                    "the outputs were committed only in part: committed: {committed}; \
                     not committed (left as they were): {}",
                    left.join(", ")
                )));
            }
        }
    }
    for dir in dirs {
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync the directory {}", paths::show(&dir)))?;
    }
    Ok(())
}

/// The results CSV: `transaction_id,rule_id,result,detail`, one row per (row, rule). The
/// lanes format the lines (`format::ResultsFormat`); this only writes them, in order, and
/// counts what it wrote.
pub struct ResultsWriter {
    sink: Sink,
    written: Written,
}

/// What a results writer has written so far: complete rows, and per rule (file order)
/// the counts of true, false, error, timeout. What a summary reports when the output
/// broke off (`| head`) before the pipeline could hand back its own tally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    pub counts: Vec<[u64; 4]>,
    /// The format's own counters of those rows (the decisions: `Tally::extra`).
    pub extra: Vec<u64>,
}

impl Written {
    /// What was written, as a run's counts: what the summary of a run cut short (its reader
    /// went away) reports. Bytes and bad rows are the caller's to add.
    pub fn tally(&self) -> Tally {
        Tally {
            rows: self.rows,
            counts: self.counts.clone(),
            extra: self.extra.clone(),
            ..Tally::default()
        }
    }
}

impl ResultsWriter {
    /// Starts the results with their header; `rules` is how many rules each row has.
    pub fn new(sink: Sink, rules: usize) -> Result<ResultsWriter> {
        ResultsWriter::with_header(sink, rules, b"transaction_id,rule_id,result,detail\n")
    }

    /// `new`, for lines of another shape (`txguard diff`'s changes), with their header.
    pub fn with_header(mut sink: Sink, rules: usize, header: &[u8]) -> Result<ResultsWriter> {
        sink.write_all(header)
            .with_context(|| format!("cannot write {}", sink.label()))
            .map_err(crate::exit::mark_reader_gone)?;
        Ok(ResultsWriter {
            sink,
            written: Written {
                rows: 0,
                counts: vec![[0; 4]; rules],
                extra: Vec::new(),
            },
        })
    }

    /// Results without their header row (`--no-output-header`).
    pub fn without_header(sink: Sink, rules: usize) -> ResultsWriter {
        ResultsWriter {
            sink,
            written: Written {
                rows: 0,
                extra: Vec::new(),
                counts: vec![[0; 4]; rules],
            },
        }
    }

    /// Writes the result lines of `rows` complete rows, formatted by
    /// `format::ResultsFormat`; `counts` are their outcomes per rule.
    pub fn write_formatted(&mut self, lines: &[u8], rows: u64, counts: &[[u64; 4]]) -> Result<()> {
        // A stream is flushed after every task: its reader (`| head`, a dashboard) sees
        // results as they are produced, and learns a reader went away without waiting for
        // a full buffer. A file's bytes only matter once it is renamed into place.
        let streams = self.sink.streams();
        self.sink
            .write_all(lines)
            .and_then(|()| if streams { self.sink.flush() } else { Ok(()) })
            .with_context(|| format!("cannot write {}", self.sink.label()))
            .map_err(crate::exit::mark_reader_gone)?;
        self.written.rows += rows;
        for (total, counts) in self.written.counts.iter_mut().zip(counts) {
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        Ok(())
    }

    /// Adds the format's own counters of the rows just written (`write_formatted`).
    pub fn count_extra(&mut self, counters: &[u64]) {
        let extra = &mut self.written.extra;
        if extra.len() < counters.len() {
            extra.resize(counters.len(), 0);
        }
        for (total, c) in extra.iter_mut().zip(counters) {
            *total += c;
        }
    }

    /// What was written so far (complete rows).
    pub fn written(&self) -> &Written {
        &self.written
    }

    /// Flushes and syncs, leaving the rename to `Finished::commit`.
    pub fn finish(self) -> Result<Finished> {
        self.sink.finish().map_err(crate::exit::mark_reader_gone)
    }

    /// Flushes and, for a file, renames it into place.
    pub fn commit(self) -> Result<()> {
        commit_all(vec![self.finish()?], None)
    }
}

/// The rejects CSV of `--bad-rows skip`: `line,reason,raw`. Always written (header only
/// when nothing was rejected), so yesterday's rejects never sit beside today's results.
pub struct RejectsWriter {
    csv: csv::Writer<Sink>,
    /// Several inputs: the input the next rows come from, written first (`input,line,…`).
    input: Option<String>,
    /// Rows written so far.
    rows: u64,
}

impl RejectsWriter {
    pub fn new(sink: Sink) -> Result<RejectsWriter> {
        let label = sink.label().to_string();
        let mut csv = csv::Writer::from_writer(sink);
        csv.write_record(["line", "reason", "raw"])
            .with_context(|| format!("cannot write {label}"))?;
        Ok(RejectsWriter {
            csv,
            input: None,
            rows: 0,
        })
    }

    /// The rejects of a run over several inputs: `input,line,reason,raw`, the input as
    /// `set_input` last said.
    pub fn with_inputs(sink: Sink) -> Result<RejectsWriter> {
        let label = sink.label().to_string();
        let mut csv = csv::Writer::from_writer(sink);
        csv.write_record(["input", "line", "reason", "raw"])
            .with_context(|| format!("cannot write {label}"))?;
        Ok(RejectsWriter {
            csv,
            input: Some(String::new()),
            rows: 0,
        })
    }

    /// The input the rows written next come from (`with_inputs` only).
    pub fn set_input(&mut self, name: &str) {
        if let Some(input) = &mut self.input {
            name.clone_into(input);
        }
    }

    pub fn write(&mut self, bad: &BadRow) -> Result<()> {
        let line = bad.line.to_string();
        let written = match &self.input {
            None => self
                .csv
                .write_record([line.as_bytes(), bad.reason.as_bytes(), &bad.raw]),
            Some(input) => self.csv.write_record([
                input.as_bytes(),
                line.as_bytes(),
                bad.reason.as_bytes(),
                &bad.raw,
            ]),
        };
        written.with_context(|| format!("cannot write {}", self.csv.get_ref().label()))?;
        self.rows += 1;
        Ok(())
    }

    /// How many rows were written: a run cut short counts its bad rows with it.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes and syncs, leaving the rename to `Finished::commit`.
    pub fn finish(self) -> Result<Finished> {
        let label = self.csv.get_ref().label().to_string();
        let sink = self
            .csv
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {label}"))?;
        sink.finish()
    }

    pub fn commit(self) -> Result<()> {
        commit_all(vec![self.finish()?], None)
    }
}
