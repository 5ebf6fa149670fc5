//! Several inputs in one run (`txguard run a.csv b.csv …`): they are evaluated one after
//! another, in argument order, into one output. Their headers must have the same columns
//! (in any order): each input's schema is aligned to the first's, so the same compiled
//! rules read the same values. Headers that can be read twice (regular files) are checked
//! before any work; the others (standard input, a FIFO) when their turn comes.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::dialect::CsvConfig;
use crate::input::InputReader;
use crate::rules::RuleSet;
use crate::typing::Schema;

/// What the summary says of one input.
#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    /// The input as given (`-` is standard input).
    pub path: String,
    /// Bytes read from it (compressed bytes, for a compressed input).
    pub bytes: u64,
    /// Valid transactions evaluated from it.
    pub transactions: u64,
    /// Its rows rejected under `--bad-rows skip`.
    pub bad_rows: u64,
}

impl InputSummary {
    /// One input not read yet.
    pub fn of(path: &Path) -> InputSummary {
        InputSummary {
            path: path.display().to_string(),
            bytes: 0,
            transactions: 0,
            bad_rows: 0,
        }
    }
}

/// The first input's header, which the others are aligned to.
#[derive(Debug, Clone)]
pub struct Reference {
    schema: Schema,
    name: String,
}

impl Reference {
    pub fn of(first: &InputReader) -> Reference {
        Reference {
            schema: first.schema.clone(),
            name: first.name.clone(),
        }
    }
}

/// Aligns `input` to the run's first input: an error names both and the columns that
/// differ.
pub fn align(input: &mut InputReader, first: &Reference) -> Result<()> {
    input.schema = input
        .schema
        .aligned_to(&first.schema, &input.name, &first.name)?;
    Ok(())
}

/// Checks, before any work, that every input after the first exists and is no
/// directory, and that those whose header can be read twice (regular files) have the
/// first's columns: one input at a time is opened, its header read and compared, and
/// closed again. With `--columns` (`columns`), no input has a header row: each is opened
/// as the run will open it, not with its first record read as a header.
pub fn check_headers(
    rest: &[impl AsRef<Path>],
    first: &Reference,
    rules: &RuleSet,
    csv: &CsvConfig,
    columns: Option<&Vec<String>>,
) -> Result<()> {
    for path in rest {
        let path = path.as_ref();
        if path == Path::new("-") {
            continue;
        }
        // A missing input is found now, not after the ones before it were evaluated.
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot open input {}", path.display()))?;
        // So is a directory, which every read of it would refuse.
        if meta.is_dir() {
            bail!(
                "cannot read {}: {}",
                path.display(),
                std::io::Error::from(std::io::ErrorKind::IsADirectory)
            );
        }
        if meta.is_file() {
            let layout = crate::input::Layout {
                columns: columns.cloned(),
                shard: None,
            };
            let mut input = InputReader::open_layout(path, rules, csv, true, &layout)?;
            align(&mut input, first)?;
        }
    }
    Ok(())
}
