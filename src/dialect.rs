//! The CSV configuration of a transactions input (xsv's `Config` idea): its delimiter
//! (`-d`, else a tab for `.tsv`/`.tab` names, else a comma), the name of its id column
//! (`--id-column`) and the longest record. One `CsvConfig` is built from the command line
//! and handed to every command that reads transactions (`run`, `check --input`), so they
//! all read a file the same way.

use std::path::Path;

use crate::framer::{self, Splitter};

/// How to read a transactions CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvConfig {
    /// `-d`/`--delimiter` as given; `None`: decided by the file's name.
    pub delimiter: Option<u8>,
    /// The column holding the transaction id (`--id-column`, default `id`). Results call
    /// it `transaction_id` whatever its name here.
    pub id_column: String,
    /// The longest record, in bytes (`--max-record-size`).
    pub max_record: usize,
}

impl Default for CsvConfig {
    fn default() -> CsvConfig {
        CsvConfig {
            delimiter: None,
            id_column: "id".to_string(),
            max_record: framer::Config::default().max_record(),
        }
    }
}

/// Delimiters people use, tried for the "did you mean" hint.
const COMMON: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Suffixes of compressed files, looked through to find the name's own extension.
const COMPRESSED: [&str; 2] = ["gz", "zst"];

impl CsvConfig {
    /// The delimiter of the input at `path`: `-d` when given, else a tab for a name
    /// ending in `.tsv` or `.tab` (also under `.gz`/`.zst`), else a comma.
    pub fn delimiter_for(&self, path: &Path) -> u8 {
        if let Some(d) = self.delimiter {
            return d;
        }
        let mut path = path.to_path_buf();
        let lower = |p: &Path| {
            p.extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
        };
        if lower(&path).is_some_and(|e| COMPRESSED.contains(&e.as_str())) {
            path.set_extension("");
        }
        match lower(&path).as_deref() {
            Some("tsv" | "tab") => b'\t',
            _ => b',',
        }
    }

    /// How the framer reads the input at `path`.
    pub fn framing(&self, path: &Path) -> framer::Config {
        framer::Config::default()
            .with_max_record(self.max_record)
            .with_delimiter(self.delimiter_for(path))
            .expect("delimiters are checked when parsed")
    }
}

/// Parses `-d`: one ASCII character, or `\t` / `tab` for a tab. A quote, CR, LF or a
/// character of several bytes cannot separate fields.
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    let byte = match text {
        "\\t" | "tab" | "TAB" => b'\t',
        _ => match text.as_bytes() {
            [b] if b.is_ascii() => *b,
            _ => {
                return Err(format!(
                    "{text:?} is not one ASCII character (write a tab as '\\t')"
                ));
            }
        },
    };
    match byte {
        b'"' | b'\r' | b'\n' => Err(format!(
            "{text:?} cannot separate fields: it is a quote or a line terminator"
        )),
        _ => Ok(byte),
    }
}

/// A delimiter as a person types it on the command line: `';'`, `'\t'`.
pub fn show_delimiter(delimiter: u8) -> String {
    match delimiter {
        b'\t' => "'\\t'".to_string(),
        b'\'' => "\"'\"".to_string(),
        d => format!("'{}'", d as char),
    }
}

/// When `header` split by `used` has no `id_column` but a common delimiter would give
/// one: that delimiter, for "did you mean `--delimiter ';'`?".
pub fn hint(header: &[u8], used: u8, id_column: &str) -> Option<u8> {
    let has_id = |delimiter: u8| {
        let config = framer::Config::default().with_delimiter(delimiter).ok()?;
        let mut splitter = Splitter::new(&config);
        let found = splitter
            .split(header)
            .iter()
            .any(|f| f == id_column.as_bytes());
        Some(found)
    };
    if has_id(used) == Some(true) {
        return None;
    }
    COMMON
        .into_iter()
        .filter(|&d| d != used)
        .find(|&d| has_id(d) == Some(true))
}

/// Names under which exports commonly hold the transaction id, for the
/// "did you mean `--id-column txn_id`?" hint.
const ID_NAMES: [&str; 6] = [
    "transaction_id",
    "txn_id",
    "tx_id",
    "transactionid",
    "txnid",
    "id",
];

/// When the header has no `id_column` but a column commonly holding transaction ids
/// (`transaction_id`, `txn_id`, `ID`): its name, for "did you mean `--id-column …`?".
pub fn id_hint<'a>(header: impl IntoIterator<Item = &'a [u8]>, id_column: &str) -> Option<String> {
    let names: Vec<&str> = header
        .into_iter()
        .filter_map(|f| std::str::from_utf8(f).ok())
        .collect();
    if names.contains(&id_column) {
        return None;
    }
    ID_NAMES.iter().find_map(|wanted| {
        names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(wanted))
            .map(|n| n.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delimiter_comes_from_the_flag_else_from_the_name() {
        let auto = CsvConfig::default();
        assert_eq!(auto.delimiter_for(Path::new("tx.csv")), b',');
        assert_eq!(auto.delimiter_for(Path::new("tx.TSV")), b'\t');
        assert_eq!(auto.delimiter_for(Path::new("dir.tsv/tx.tab")), b'\t');
        assert_eq!(auto.delimiter_for(Path::new("tx.tsv.gz")), b'\t');
        assert_eq!(auto.delimiter_for(Path::new("tx.tab.zst")), b'\t');
        assert_eq!(auto.delimiter_for(Path::new("tx.gz")), b',');
        assert_eq!(auto.delimiter_for(Path::new("-")), b',');
        let semi = CsvConfig {
            delimiter: Some(b';'),
            ..CsvConfig::default()
        };
        assert_eq!(semi.delimiter_for(Path::new("tx.tsv")), b';');
    }

    #[test]
    fn delimiters_parse_as_one_ascii_character() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("\\t"), Ok(b'\t'));
        assert_eq!(parse_delimiter("\t"), Ok(b'\t'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter("\"").unwrap_err().contains("quote"));
        assert!(parse_delimiter(";;").unwrap_err().contains("one ASCII"));
        assert!(parse_delimiter("§").unwrap_err().contains("one ASCII"));
        assert!(parse_delimiter("").is_err());
        assert_eq!(show_delimiter(b'\t'), "'\\t'");
        assert_eq!(show_delimiter(b';'), "';'");
    }

    #[test]
    fn the_id_hint_names_a_column_that_commonly_holds_ids() {
        let h = |fields: &[&str], id: &str| id_hint(fields.iter().map(|f| f.as_bytes()), id);
        assert_eq!(h(&["txn_id", "amount"], "id"), Some("txn_id".into()));
        assert_eq!(
            h(&["Transaction_ID", "amount"], "id"),
            Some("Transaction_ID".into())
        );
        assert_eq!(h(&["ID", "amount"], "id"), Some("ID".into()));
        assert_eq!(h(&["id", "amount"], "txn_id"), Some("id".into()));
        assert_eq!(h(&["id", "amount"], "id"), None);
        assert_eq!(h(&["name", "amount"], "id"), None);
    }

    #[test]
    fn the_hint_names_a_delimiter_that_gives_the_id_column() {
        assert_eq!(hint(b"id;amount;note", b',', "id"), Some(b';'));
        assert_eq!(hint(b"txn_id\tamount", b',', "txn_id"), Some(b'\t'));
        assert_eq!(hint(b"\"id\"|x", b',', "id"), Some(b'|'));
        assert_eq!(hint(b"id,amount", b';', "id"), Some(b','));
        assert_eq!(hint(b"id,amount", b',', "id"), None, "nothing to fix");
        assert_eq!(hint(b"name;amount", b',', "id"), None);
    }
}
