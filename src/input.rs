//! Stage 1 of a run: the transactions CSV, streamed into typed rows. Types come from the
//! rules file's `[columns]`; a row that does not fit is a `BadRow` naming its line, column
//! and value, which the caller's `--bad-rows` policy turns into a failure or a reject.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use csv::ByteRecord;

use rhai::Dynamic;

use crate::model::{BadRow, ColumnType, Columns, Row, is_identifier};
use crate::rules::RuleSet;

/// How a field of the input maps to the rule-visible columns.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// A column rules can read, at this index of `Columns`.
    Column(usize),
    /// A column whose header is not an identifier: kept in the input, invisible to rules.
    Hidden,
}

/// Reads the transactions CSV one record at a time, reusing one record buffer.
pub struct InputReader {
    reader: csv::Reader<Tail<Box<dyn Read + Send>>>,
    /// The name errors use: the path as given, or `<stdin>`.
    name: String,
    fields: Vec<Field>,
    header: Vec<String>,
    id_field: usize,
    columns: Columns,
    /// Per column: whether some rule reads it. Unread string columns are checked but not
    /// kept (no allocation per value: the reader is the pipeline's busiest stage).
    kept: Vec<bool>,
    record: ByteRecord,
    /// Size of the input when known (a regular file), for the progress bar.
    pub total_bytes: Option<u64>,
}

impl InputReader {
    /// Opens `path` (`-` = stdin) and reads its header. Fails when the file cannot be read,
    /// is not CSV, or has no `id` column.
    pub fn open(path: &Path, rules: &RuleSet) -> Result<InputReader> {
        let (source, name, total_bytes): (Box<dyn Read + Send>, String, Option<u64>) =
            if path == Path::new("-") {
                (Box::new(io::stdin()), "<stdin>".to_string(), None)
            } else {
                let file = File::open(path)
                    .with_context(|| format!("cannot open input {}", path.display()))?;
                let meta = file
                    .metadata()
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len());
                (Box::new(file), path.display().to_string(), meta)
            };
        InputReader::from_reader(source, name, total_bytes, rules)
    }

    /// Like `open`, over any reader; `name` is what messages call it.
    pub fn from_reader(
        source: Box<dyn Read + Send>,
        name: String,
        total_bytes: Option<u64>,
        rules: &RuleSet,
    ) -> Result<InputReader> {
        // Records end at '\n' only, and a '\r' before it is stripped here: with the csv
        // crate's CRLF default, the line numbers it reports are off by one after the first
        // CRLF or blank line, and error messages must name the right line.
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .terminator(csv::Terminator::Any(b'\n'))
            .buffer_capacity(256 * 1024)
            .from_reader(Tail::new(source));
        let mut record = ByteRecord::new();
        let has_header = reader
            .read_byte_record(&mut record)
            .with_context(|| format!("cannot read {name}"))?;
        if !has_header {
            bail!("{name}: empty input: expected a header row with an `id` column");
        }
        strip_cr(&mut record);
        let mut header = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) => header.push(text.to_string()),
                Err(_) => bail!(
                    "{name}:1: header field {} is not valid UTF-8: not a CSV of transactions",
                    i + 1
                ),
            }
        }
        let Some(id_field) = header.iter().position(|h| h == "id") else {
            bail!(
                "{name}:1: no `id` column in the header ({})",
                summarize_header(&header)
            );
        };
        let mut columns = Columns {
            names: Vec::new(),
            types: Vec::new(),
        };
        let mut fields = Vec::with_capacity(header.len());
        for (i, h) in header.iter().enumerate() {
            if header[..i].contains(h) {
                bail!("{name}:1: column {h:?} appears twice in the header");
            }
            if is_identifier(h) {
                fields.push(Field::Column(columns.names.len()));
                columns.names.push(h.clone());
                columns.types.push(rules.column_type(h));
            } else {
                fields.push(Field::Hidden);
            }
        }
        let kept = rules.columns_read(&columns);
        Ok(InputReader {
            reader,
            name,
            fields,
            header,
            id_field,
            columns,
            kept,
            record,
            total_bytes,
        })
    }

    /// The columns rules can read, in the order rows hold their values.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of the input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The next row, a bad row, or `None` at the end of the input. `Err` is an I/O error.
    pub fn next_row(&mut self) -> Result<Option<Result<Row, BadRow>>> {
        loop {
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .with_context(|| format!("cannot read {}", self.name))?;
            if !more {
                return Ok(None);
            }
            let line = self.start_line();
            strip_cr(&mut self.record);
            if self.record.len() == 1 && self.record[0].is_empty() {
                continue; // a blank line (CRLF): not a row
            }
            return Ok(Some(self.type_record(line)));
        }
    }

    /// The line where the record just read starts: the reader's line after the record,
    /// less the record's own newlines (the csv crate's start positions count blank lines
    /// skipped before a record as part of it).
    fn start_line(&self) -> u64 {
        let end = self.reader.position();
        let embedded: usize = self
            .record
            .iter()
            .map(|f| f.iter().filter(|&&b| b == b'\n').count())
            .sum();
        let tail = self.reader.get_ref();
        let unterminated = tail.at_eof && end.byte() == tail.bytes && !tail.last_was_newline;
        end.line() - u64::from(!unterminated) - embedded as u64
    }

    /// Types the record just read; `line` is where it starts, for a bad row's message.
    fn type_record(&self, line: u64) -> Result<Row, BadRow> {
        let record = &self.record;
        let bad = |reason: String| BadRow {
            line,
            reason,
            raw: raw_record(record),
        };
        if record.len() != self.fields.len() {
            return Err(bad(format!(
                "expected {} fields, found {}",
                self.fields.len(),
                record.len()
            )));
        }
        let id = &record[self.id_field];
        if id.is_empty() {
            return Err(bad("column \"id\" is empty".to_string()));
        }
        let mut values = Vec::with_capacity(self.columns.names.len());
        for (i, (field, value)) in self.fields.iter().zip(record.iter()).enumerate() {
            if let Field::Column(c) = field {
                let kind = self.columns.types[*c];
                let typed = if !self.kept[*c] && kind == ColumnType::String {
                    std::str::from_utf8(value)
                        .map(|_| Dynamic::UNIT)
                        .map_err(|_| "is not valid UTF-8")
                } else {
                    kind.value(value)
                };
                match typed {
                    Ok(v) => values.push(v),
                    Err(why) => {
                        return Err(bad(format!(
                            "column {:?}: {:?} {why}",
                            self.header[i],
                            String::from_utf8_lossy(value)
                        )));
                    }
                }
            }
        }
        // The id is valid UTF-8: it is an identifier column and was typed above.
        let id = String::from_utf8_lossy(id).into_owned();
        Ok(Row { id, values })
    }
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

/// Drops the '\r' of a CRLF line ending from the last field of a record.
fn strip_cr(record: &mut ByteRecord) {
    let Some(last) = record.iter().next_back() else {
        return;
    };
    if last.last() == Some(&b'\r') {
        let mut fixed = ByteRecord::with_capacity(record.as_slice().len(), record.len());
        let n = record.len();
        for (i, field) in record.iter().enumerate() {
            fixed.push_field(if i + 1 == n {
                &field[..field.len() - 1]
            } else {
                field
            });
        }
        fixed.set_position(record.position().cloned());
        *record = fixed;
    }
}

/// Wraps the input to know how it ended: whether the last record has a newline after it.
struct Tail<R> {
    inner: R,
    bytes: u64,
    at_eof: bool,
    last_was_newline: bool,
}

impl<R: Read> Tail<R> {
    fn new(inner: R) -> Tail<R> {
        Tail {
            inner,
            bytes: 0,
            at_eof: false,
            last_was_newline: false,
        }
    }
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.at_eof = true;
        } else {
            self.bytes += n as u64;
            self.last_was_newline = buf[n - 1] == b'\n';
        }
        Ok(n)
    }
}

fn raw_record(record: &ByteRecord) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = writer.write_byte_record(record);
    let mut raw = writer.into_inner().unwrap_or_default();
    raw.pop();
    raw
}

fn summarize_header(header: &[String]) -> String {
    let shown: Vec<String> = header.iter().take(8).map(|h| format!("{h:?}")).collect();
    let more = if header.len() > 8 {
        format!(", … {} more", header.len() - 8)
    } else {
        String::new()
    };
    format!("found {}{more}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn rules() -> RuleSet {
        let text = "[columns]\nid = \"int\"\namount = \"float\"\n[[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n";
        crate::rules::file::parse(text, Duration::from_secs(1)).unwrap()
    }

    fn reader(csv: &str) -> Result<InputReader> {
        InputReader::from_reader(
            Box::new(io::Cursor::new(csv.as_bytes().to_vec())),
            "tx.csv".into(),
            None,
            &rules(),
        )
    }

    fn all(csv: &str) -> Vec<Result<Row, BadRow>> {
        let mut r = reader(csv).unwrap();
        std::iter::from_fn(|| r.next_row().unwrap()).collect()
    }

    #[test]
    fn bom_crlf_quotes_and_hidden_columns_are_read() {
        let rows =
            all("\u{feff}id,amount,\"note, free\"\r\n1,2.5,\"a, \"\"b\"\"\nc\"\r\n2,3,x\r\n");
        let row = rows[0].as_ref().unwrap();
        assert_eq!(row.id, "1");
        assert_eq!(
            row.values.len(),
            2,
            "the non-identifier column is not a variable"
        );
        assert_eq!(rows[1].as_ref().unwrap().id, "2");
    }

    #[test]
    fn line_numbers_survive_crlf_blank_lines_and_a_missing_final_newline() {
        // Every amount is bad, so every record reports the line where it starts.
        let lines = |csv: &str| {
            all(csv)
                .iter()
                .map(|r| r.as_ref().unwrap_err().line)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines("id,amount\r\n1,x\r\n\r\n2,\"x\"\r\n4,\"x\r\ny\"\r\n5,x"),
            [2, 4, 5, 7]
        );
        assert_eq!(lines("id,amount\n1,x\n\n\n2,\"x\ny\"\n3,x\n"), [2, 5, 7]);
        assert_eq!(lines("id,amount\n1,\"2\n\""), [2]);
        let rows = all("id,amount\r\n1,\"2.5\"\r\n");
        assert_eq!(
            rows[0].as_ref().unwrap().values[1].as_float(),
            Ok(2.5),
            "quoted last field before CRLF"
        );
    }

    #[test]
    fn bad_rows_name_line_column_and_value() {
        let rows = all("id,amount\n1,12x\n,5\n3\n4,1,9\n");
        let reasons: Vec<String> = rows
            .iter()
            .map(|r| r.as_ref().unwrap_err().to_owned())
            .map(|b| format!("{}: {}", b.line, b.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "2: column \"amount\": \"12x\" is not a float",
                "3: column \"id\" is empty",
                "4: expected 2 fields, found 1",
                "5: expected 2 fields, found 3",
            ]
        );
        assert_eq!(rows[0].as_ref().unwrap_err().raw, b"1,12x");
    }

    #[test]
    fn a_file_without_an_id_column_or_header_fails() {
        let err = reader("name,amount\nx,1\n").err().unwrap().to_string();
        assert_eq!(
            err,
            "tx.csv:1: no `id` column in the header (found \"name\", \"amount\")"
        );
        assert!(
            reader("")
                .err()
                .unwrap()
                .to_string()
                .contains("empty input")
        );
        let _ = HashMap::<u8, u8>::new();
    }
}
