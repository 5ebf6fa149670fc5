//! `txguard generate`: synthetic transactions to a file (atomically) or stdout. Like
//! `run`, the destination is checked before anything is written (exit 2), and SIGINT /
//! SIGTERM stop it with no temporary file left (exit 130 / 143).

use std::io::{self, Write};

use anyhow::{Context, Result};

use crate::cli::GenerateArgs;
use crate::exit::{self, Interrupted};
use crate::generate::write_transactions;
use crate::output::{Destination, Sink};
use crate::signals::StopFlag;

pub fn run(args: &GenerateArgs) -> Result<i32> {
    let dest = Destination::of(args.output.as_deref());
    dest.check("--output")?;
    let stop = StopFlag::install()?;
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
        // The temporary file is registered: `exit::report` removes it.
        return Err(Interrupted(signal).into());
    }
    written.with_context(|| format!("cannot write {}", sink.label()))?;
    sink.commit()?;
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
