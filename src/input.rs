//! Stage 1 of a run: the transactions CSV, opened and framed. Opening reads the header
//! (the first record) into a `Schema`; the records after it stay framed bytes, in chunks,
//! for the lanes to split and type (`typing`). A record that cannot be a row is a `BadRow`
//! naming its line, which the `--bad-rows` policy turns into a failure or a reject.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::framer::{self, Chunk, Framer, Splitter};
use std::sync::Arc;

use crate::model::{BadRow, Columns, Row};
use crate::rules::RuleSet;
use crate::typing::{Schema, Typer, flaw_reason};

/// The input once its header is read: the framer, the chunk holding the header and the
/// records after it, and the schema the header gives. The pipeline takes it apart.
pub struct InputReader {
    pub(crate) framer: Framer<Box<dyn Read + Send>>,
    pub(crate) config: framer::Config,
    /// Its first record is the header: the records to type start at index 1.
    pub(crate) first: Chunk,
    /// The name errors use: the path as given, or `<stdin>`.
    pub(crate) name: String,
    pub(crate) schema: Schema,
    /// Size of the input when known (a regular file), for the progress bar.
    pub total_bytes: Option<u64>,
    /// Bytes read from a compressed source (`decompress`): what progress and the summary
    /// count for it, rather than the decompressed bytes framed.
    pub(crate) consumed: Option<crate::decompress::Consumed>,
}

impl InputReader {
    /// Opens `path` (`-` = stdin) as it is (no decompression: commands use `open_csv`)
    /// and reads its header. Fails when the file cannot be read, is not CSV, or has no
    /// `id` column. With `stop_at_too_long` (`--bad-rows fail`), the
    /// input ends at the first record longer than `config.max_record()`: the run stops
    /// there anyway, and an input that never ends a record (`/dev/zero`) ends too.
    pub fn open(
        path: &Path,
        rules: &RuleSet,
        config: framer::Config,
        stop_at_too_long: bool,
    ) -> Result<InputReader> {
        let (source, name, total_bytes) = source(path)?;
        InputReader::from_reader(source, name, total_bytes, rules, config, stop_at_too_long)
    }

    /// Opens `path` (`-` = stdin) as `csv` says (delimiter, id column, longest record),
    /// decompressing a gzip or zstd stream, and reads its header.
    pub fn open_csv(
        path: &Path,
        rules: &RuleSet,
        csv: &crate::dialect::CsvConfig,
        stop_at_too_long: bool,
    ) -> Result<InputReader> {
        let (source, name, total_bytes) = source(path)?;
        let (source, compression, consumed) = crate::decompress::open(source, &name)?;
        let mut reader = InputReader::from_reader_with(
            source,
            name,
            total_bytes,
            rules,
            csv.framing(path),
            &csv.id_column,
            stop_at_too_long,
        )?;
        if compression != crate::decompress::Compression::None {
            reader.consumed = Some(consumed);
        }
        Ok(reader)
    }

    /// Bytes read from the source so far: compressed bytes for a compressed input.
    pub fn bytes_read(&self) -> u64 {
        self.consumed.as_ref().map_or_else(
            || self.framer.offset_read(),
            crate::decompress::Consumed::get,
        )
    }

    /// Like `open`, over any reader; `name` is what messages call it.
    pub fn from_reader(
        source: Box<dyn Read + Send>,
        name: String,
        total_bytes: Option<u64>,
        rules: &RuleSet,
        config: framer::Config,
        stop_at_too_long: bool,
    ) -> Result<InputReader> {
        InputReader::from_reader_with(
            source,
            name,
            total_bytes,
            rules,
            config,
            "id",
            stop_at_too_long,
        )
    }

    /// Like `from_reader`, with the transaction ids in the column `id_column`.
    pub fn from_reader_with(
        source: Box<dyn Read + Send>,
        name: String,
        total_bytes: Option<u64>,
        rules: &RuleSet,
        config: framer::Config,
        id_column: &str,
        stop_at_too_long: bool,
    ) -> Result<InputReader> {
        // The header cannot be skipped: too long, it ends the run in every mode.
        let mut framer = Framer::new(source, config).stop_at_too_long_header();
        if stop_at_too_long {
            framer = framer.stop_at_too_long();
        }
        let Some(first) = framer
            .next_chunk()
            .with_context(|| format!("cannot read {name}"))?
        else {
            bail!("{name}: empty input: expected a header row with an `id` column");
        };
        let header = first.records().next().expect("a framed chunk has records");
        let body = match header.body {
            Ok(body) => body,
            Err(flaw) => bail!(
                "{name}:{}: header: {}",
                header.start.line,
                flaw_reason(flaw, config.max_record())
            ),
        };
        let schema = Schema::from_header_with_id(
            Splitter::new(&config).split(body),
            &name,
            rules,
            id_column,
        )
        .map_err(|err| {
            // Another delimiter, or another id column, would have worked: say which.
            match crate::dialect::suggestion(body, config.delimiter(), id_column) {
                Some(flags) => anyhow::anyhow!("{err}; did you mean `{flags}`?"),
                None => err,
            }
        })?;
        Ok(InputReader {
            framer,
            config,
            first,
            name,
            schema,
            total_bytes,
            consumed: None,
        })
    }

    /// The columns rules can read, in the order rows hold their values.
    pub fn columns(&self) -> &Columns {
        self.schema.columns()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Types the first `limit` rows, and the bad rows met on the way (`txguard check
    /// --input`): what the run's lanes do, on a sample, in the calling thread.
    pub fn first_rows(self, limit: usize) -> Result<(Vec<Row>, Vec<BadRow>)> {
        let InputReader {
            mut framer,
            config,
            first,
            name,
            schema,
            ..
        } = self;
        let mut typer = Typer::new(Arc::new(schema), &config);
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        // The header is the first record of the first chunk.
        let (mut chunk, mut skip) = (Some(first), 1);
        while let Some(current) = chunk.take() {
            let mut typed = Vec::new();
            let wanted = limit - rows.len();
            typer.type_records(
                current.records().skip(skip).take(wanted),
                &mut typed,
                &mut bad,
            );
            rows.append(&mut typed);
            if rows.len() >= limit {
                break;
            }
            skip = 0;
            chunk = framer
                .next_chunk()
                .with_context(|| format!("cannot read {name}"))?;
        }
        Ok((rows, bad))
    }
}

/// The bytes of the input at `path` (`-` = stdin), the name messages call it, and its
/// size when it is a regular file.
fn source(path: &Path) -> Result<(Box<dyn Read + Send>, String, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(io::stdin()), "<stdin>".to_string(), None));
    }
    let file = File::open(path).with_context(|| format!("cannot open input {}", path.display()))?;
    let meta = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    Ok((Box::new(file), path.display().to_string(), meta))
}

/// The message that stops a run under `--bad-rows fail`: `tx.csv:17: column ...`.
#[derive(Debug)]
pub struct BadRowError {
    pub input: String,
    pub row: BadRow,
}

impl fmt::Display for BadRowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.input, self.row.line, self.row.reason)
    }
}

impl std::error::Error for BadRowError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rules() -> RuleSet {
        let text = "[columns]\nid = \"int\"\namount = \"float\"\n[[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n";
        crate::rules::file::parse(text, Duration::from_secs(1)).unwrap()
    }

    fn reader(csv: &str, config: framer::Config) -> Result<InputReader> {
        InputReader::from_reader(
            Box::new(io::Cursor::new(csv.as_bytes().to_vec())),
            "tx.csv".into(),
            None,
            &rules(),
            config,
            true,
        )
    }

    #[test]
    fn the_header_gives_the_columns_and_records_stay_framed() {
        let r = reader(
            "\u{feff}id,amount,\"note, free\"\r\n1,2\r\n",
            Default::default(),
        )
        .unwrap();
        assert_eq!(r.columns().names, ["id", "amount"]);
        assert_eq!(r.first.len(), 2, "the header and one record");
    }

    #[test]
    fn inputs_without_a_usable_header_fail_naming_the_input() {
        let err = |csv: &str, config| reader(csv, config).err().unwrap().to_string();
        assert_eq!(
            err("name,amount\nx,1\n", Default::default()),
            "tx.csv:1: no `id` column in the header (found \"name\", \"amount\")"
        );
        assert!(err("", Default::default()).contains("empty input"));
        assert!(err("\r\n\n", Default::default()).contains("empty input"));
        assert_eq!(
            err("\nid,\"amount\n", Default::default()),
            "tx.csv:2: header: quote opened here is never closed"
        );
        let long = format!("id,{}\n1,2\n", "x".repeat(5000));
        assert_eq!(
            err(&long, framer::Config::default().with_max_record(4096)),
            "tx.csv:1: header: record is larger than 4 KiB"
        );
    }
}
