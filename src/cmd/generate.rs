//! `txguard generate`: synthetic transactions to a file (atomically) or stdout.

use anyhow::{Context, Result};

use crate::cli::GenerateArgs;
use crate::exit;
use crate::generate::write_transactions;
use crate::output::{Destination, Sink};

pub fn run(args: &GenerateArgs) -> Result<i32> {
    let mut sink = Sink::create(&Destination::of(args.output.as_deref()))?;
    write_transactions(&mut sink, args.count, args.seed)
        .with_context(|| format!("cannot write {}", sink.label()))?;
    sink.commit()?;
    Ok(exit::SUCCESS)
}
