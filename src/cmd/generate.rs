//! `txguard generate`: synthetic transactions to a file (atomically) or stdout. Like
//! `run`, the destination is checked before anything is written (exit 2), and SIGINT /
//! SIGTERM stop it with no temporary file left (exit 130 / 143). A file output takes the
//! same lock as `run -o` (exit 75 when another run holds it), so that no run sweeps away
//! generate's temporary file as stale.

use std::io::{self, Write};

use anyhow::{Context, Result};

use crate::cli::GenerateArgs;
use crate::exit::{self, Interrupted};
use crate::generate::write_transactions;
use crate::output::{Destination, OutputLock, Sink, commit_all};
use crate::signals::StopFlag;

pub fn run(args: &GenerateArgs) -> Result<i32> {
    let dest = Destination::of(args.output.as_deref());
    dest.check("--output", true)?;
    let stop = StopFlag::install()?;
    let _lock = dest
        .file()
        .map(|out| OutputLock::acquire(out, &[out]))
        .transpose()?;
    let mut sink = Sink::create(&dest)?;
    let written = write_transactions(
        &mut Stoppable {
            inner: &mut sink,
            stop: &stop,
        },
        args.count,
        args.seed,
    );
    if let Some(signal) = stop.signal() {
        // The temporary file is registered: `main` removes it (`cleanup`).
        return Err(Interrupted(signal).into());
    }
    // A reader of generate's output that went away (`| head`) wanted no more: exit 0.
    written
        .with_context(|| format!("cannot write {}", sink.label()))
        .map_err(exit::mark_reader_gone)?;
    let finished = sink.finish().map_err(exit::mark_reader_gone)?;
    commit_all(vec![finished], Some(&stop))?;
    Ok(exit::SUCCESS)
}

/// A writer that fails once a stop signal has arrived, so a long write ends promptly.
struct Stoppable<'a, W> {
    inner: &'a mut W,
    stop: &'a StopFlag,
}

impl<W: Write> Write for Stoppable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stop.signal().is_some() {
            // Not `ErrorKind::Interrupted`: `write_all` would retry that forever.
            return Err(io::Error::other("stopped by a signal"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
