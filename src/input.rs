//! Stage 1 of a run: the transactions CSV, opened and framed. Opening reads the header
//! (the first record) into a `Schema`; the records after it stay framed bytes, in chunks,
//! for the lanes to split and type (`typing`). A record that cannot be a row is a `BadRow`
//! naming its line, which the `--bad-rows` policy turns into a failure or a reject.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::framer::{self, Chunk, Framer, Position, Splitter, record_start_at_or_after};
use std::sync::Arc;

use crate::exit::Usage;
use crate::model::{BadRow, Columns, Row};
use crate::rules::RuleSet;
use crate::shard::{ShardBounds, ShardSpec};
use crate::typing::{Schema, Typer, flaw_reason};

/// The records of a chunk a sample reads: past the header, up to the sample's size.
pub type Sample<'s, 'c> =
    std::iter::Take<&'s mut std::iter::Peekable<std::iter::Skip<crate::framer::Records<'c>>>>;

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
    /// Records of `first` that are not rows: 1 (the header), or 0 when the input has no
    /// header row (`--columns`). A shard's `first` holds the header alone.
    pub(crate) header_records: usize,
    /// `--columns`: the names given for the header row the input has not got.
    pub(crate) column_names: Option<Vec<String>>,
    /// Under `--shard`: the range this run owns, and the input it found it in.
    pub shard: Option<ShardBounds>,
}

/// How the input is laid out and which part of it a run reads.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// `--columns`: the input has no header row; these are its columns' names.
    pub columns: Option<Vec<String>>,
    /// `--shard`: only the records starting in this shard's byte range.
    pub shard: Option<ShardSpec>,
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
        InputReader::open_layout(path, rules, csv, stop_at_too_long, &Layout::default())
    }

    /// Like `open_csv`, for an input laid out as `layout` says: without a header row
    /// (`--columns`), or only one shard of it (`--shard`).
    pub fn open_layout(
        path: &Path,
        rules: &RuleSet,
        csv: &crate::dialect::CsvConfig,
        stop_at_too_long: bool,
        layout: &Layout,
    ) -> Result<InputReader> {
        let config = csv.framing(path);
        if let Some(spec) = layout.shard {
            return open_shard(path, rules, csv, stop_at_too_long, layout, spec);
        }
        let (source, name, total_bytes) = source(path)?;
        let (source, compression, consumed) = crate::decompress::open(source, &name)?;
        let mut reader = match &layout.columns {
            None => InputReader::from_reader_with(
                source,
                name,
                total_bytes,
                rules,
                config,
                &csv.id_column,
                stop_at_too_long,
            )?,
            Some(columns) => {
                let mut framer = Framer::new(source, config);
                if stop_at_too_long {
                    framer = framer.stop_at_too_long();
                }
                let first = framer
                    .next_chunk()
                    .with_context(|| format!("cannot read {name}"))?
                    // An empty input is no error without a header to expect: no rows.
                    .unwrap_or_default();
                InputReader {
                    framer,
                    config,
                    first,
                    schema: schema_of_columns(columns, &config, &csv.id_column, rules)?,
                    name,
                    total_bytes,
                    consumed: None,
                    header_records: 0,
                    column_names: Some(columns.clone()),
                    shard: None,
                }
            }
        };
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
            header_records: 1,
            column_names: None,
            shard: None,
        })
    }

    /// The columns rules can read, in the order rows hold their values.
    pub fn columns(&self) -> &Columns {
        self.schema.columns()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Types the first `limit` rows, and the bad rows met on the way, at most `limit` of
    /// them (`txguard check --input`): what the run's lanes do, on a sample, in the calling
    /// thread.
    pub fn first_rows(self, limit: usize) -> Result<(Vec<Row>, Vec<BadRow>)> {
        self.first_rows_typed(limit, |typer, records, rows, bad| {
            typer.type_records(records, rows, bad);
        })
    }

    /// `first_rows`, each chunk's records typed by `type_records(typer, records, rows,
    /// bad)` (with windows, the stage types them in order and adds their values).
    pub fn first_rows_typed(
        self,
        limit: usize,
        mut type_records: impl FnMut(&mut Typer, Sample<'_, '_>, &mut Vec<Row>, &mut Vec<BadRow>),
    ) -> Result<(Vec<Row>, Vec<BadRow>)> {
        let InputReader {
            mut framer,
            config,
            first,
            name,
            schema,
            header_records,
            ..
        } = self;
        let mut typer = Typer::new(Arc::new(schema), &config);
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        // The header, if any, is the first record of the first chunk.
        let (mut chunk, mut skip) = (Some(first), header_records);
        while let Some(current) = chunk.take() {
            // The chunk's records in order, each taken once: bad rows among the first
            // `limit` records leave the next records of this chunk to sample, not those of
            // the next chunk (the sample is the input's first rows, and windows see them
            // all).
            // At most `limit` bad rows too: an input of bad rows (a wrong delimiter) is not
            // read, nor reported, to its end.
            let mut records = current.records().skip(skip).peekable();
            while rows.len() < limit && bad.len() < limit && records.peek().is_some() {
                let mut typed = Vec::new();
                let wanted = (limit - rows.len()).min(limit - bad.len());
                type_records(
                    &mut typer,
                    records.by_ref().take(wanted),
                    &mut typed,
                    &mut bad,
                );
                rows.append(&mut typed);
            }
            if rows.len() >= limit || bad.len() >= limit {
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

/// Checks `--columns` before anything is opened (`Usage`, exit 2): names that can stand
/// as a header row, one of them `id`, none twice.
pub fn check_columns(columns: &[String], id_column: &str) -> Result<(), Usage> {
    let mut seen = std::collections::HashSet::new();
    for name in columns {
        if name.is_empty() || name.contains(['"', '\r', '\n']) {
            return Err(Usage(format!(
                "--columns: {name:?} cannot be a column name (empty, or holding a quote or \
                 a line break)"
            )));
        }
        if !seen.insert(name) {
            return Err(Usage(format!("--columns: {name:?} is named twice")));
        }
    }
    if !seen.contains(&id_column.to_string()) {
        return Err(Usage(format!(
            "--columns: no `{id_column}` column (the transaction id) among {}",
            columns.join(",")
        )));
    }
    Ok(())
}

/// The schema `--columns` gives an input without a header row: as if the names were its
/// header (the names were checked by `config`: an `id`, no duplicates, no quote or line
/// break).
fn schema_of_columns(
    columns: &[String],
    config: &framer::Config,
    id_column: &str,
    rules: &RuleSet,
) -> Result<Schema> {
    let record = columns.join(&(config.delimiter() as char).to_string());
    Schema::from_header_with_id(
        Splitter::new(config).split(record.as_bytes()),
        "--columns",
        rules,
        id_column,
    )
}

/// Opens shard `spec` of the input at `path`: reads the header from the start of the file
/// (unless `--columns`), finds the body and the shard's exact range in it, and frames only
/// the records starting in that range, with their lines in the whole file.
fn open_shard(
    path: &Path,
    rules: &RuleSet,
    csv: &crate::dialect::CsvConfig,
    stop_at_too_long: bool,
    layout: &Layout,
    spec: ShardSpec,
) -> Result<InputReader> {
    let name = path.display().to_string();
    let not_seekable = || {
        Usage(format!(
            "--shard: INPUT {name} is not a regular file: a shard seeks to its byte range of \
             the input, which standard input, a pipe or a device cannot do; give a file path"
        ))
    };
    if path == Path::new("-") {
        return Err(Usage(
            "--shard: INPUT is standard input: a shard seeks to its byte range of the input, \
             which standard input cannot do; give a file path"
                .into(),
        )
        .into());
    }
    let open = || File::open(path).with_context(|| format!("cannot open input {name}"));
    let file = open()?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {name}"))?;
    if !meta.is_file() {
        return Err(not_seekable().into());
    }
    // A compressed input has no byte ranges to seek to: its records are not in its bytes.
    let (_, compression, _) = crate::decompress::open(Box::new(open()?), &name)?;
    if compression != crate::decompress::Compression::None {
        return Err(Usage(format!(
            "--shard: INPUT {name} is {compression:?}-compressed: a shard seeks to its byte \
             range of the input, which a compressed stream cannot do; decompress it first"
        ))
        .into());
    }
    let config = csv.framing(path);
    let input_size = meta.len();
    let input_mtime = meta
        .modified()
        .with_context(|| format!("cannot read the modification time of {name}"))?;
    let mut scan = open()?;
    let scan_err = || format!("cannot read {name}");
    let (mut first, schema, header_records, body) = match &layout.columns {
        Some(columns) => {
            let body = record_start_at_or_after(&mut scan, Position::START, 0, &config)
                .with_context(scan_err)?;
            let schema = schema_of_columns(columns, &config, &csv.id_column, rules)?;
            (Chunk::default(), schema, 0, body)
        }
        None => {
            let header = InputReader::from_reader_with(
                Box::new(file),
                name.clone(),
                Some(input_size),
                rules,
                config,
                &csv.id_column,
                stop_at_too_long,
            )?;
            let mut first = header.first;
            let header_start = first.offset();
            first.keep_first(1);
            // The body starts at the first record after the header's first byte.
            let body =
                record_start_at_or_after(&mut scan, Position::START, header_start + 1, &config)
                    .with_context(scan_err)?;
            (first, header.schema, 1, body)
        }
    };
    let (from, to) = spec.byte_range(body.offset, input_size);
    let start = record_start_at_or_after(&mut scan, body, from, &config).with_context(scan_err)?;
    let next = if spec.index + 1 == spec.count {
        input_size
    } else {
        record_start_at_or_after(&mut scan, start, to, &config)
            .with_context(scan_err)?
            .offset
    };
    let mut source = open()?;
    source
        .seek(SeekFrom::Start(start.offset))
        .with_context(scan_err)?;
    let source: Box<dyn Read + Send> = Box::new(source);
    let mut framer = Framer::resume(source, start, config).until(next);
    if stop_at_too_long {
        framer = framer.stop_at_too_long();
    }
    if header_records == 0 {
        // No header chunk to start with: the shard's first records are.
        first = framer
            .next_chunk()
            .with_context(scan_err)?
            .unwrap_or_default();
    }
    Ok(InputReader {
        framer,
        config,
        first,
        name,
        schema,
        total_bytes: Some(next),
        consumed: None,
        header_records,
        column_names: layout.columns.clone(),
        shard: Some(ShardBounds {
            input_size,
            input_mtime,
            body_offset: body.offset,
            first: start,
            next,
        }),
    })
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
