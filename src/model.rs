//! The data model every stage shares: typed rows and their columns, batches, the outcome
//! of one evaluation, and bad rows. It imports no stage, so stages meet here instead of
//! importing each other for a type.

use std::time::Duration;

use rhai::Dynamic;

/// The declared type of an input column (`[columns]`); undeclared columns are strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int,
    Float,
    Bool,
    String,
}

impl ColumnType {
    pub fn parse(name: &str) -> Option<ColumnType> {
        Some(match name {
            "int" => ColumnType::Int,
            "float" => ColumnType::Float,
            "bool" => ColumnType::Bool,
            "string" => ColumnType::String,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::Bool => "bool",
            ColumnType::String => "string",
        }
    }

    /// Parses one CSV field as this type; the error is the message's tail, e.g.
    /// `is not a float`.
    pub fn value(self, field: &[u8]) -> Result<Dynamic, &'static str> {
        let text = std::str::from_utf8(field).map_err(|_| "is not valid UTF-8")?;
        self.value_of(text)
    }

    /// Parses one CSV field as this type, building nothing (`value` is this, made a
    /// `Dynamic`): the same checks, the same numbers.
    pub fn parse_field(self, field: &[u8]) -> Result<Parsed<'_>, &'static str> {
        let text = std::str::from_utf8(field).map_err(|_| "is not valid UTF-8")?;
        self.parse_text(text)
    }

    /// `parse_field` of a field already known to be UTF-8: every other parse is this one.
    pub fn parse_text(self, text: &str) -> Result<Parsed<'_>, &'static str> {
        Ok(match self {
            ColumnType::String => Parsed::Str(text),
            ColumnType::Int => Parsed::Int(parse_int(text)?),
            ColumnType::Float => Parsed::Float(parse_float(text)?),
            ColumnType::Bool => Parsed::Bool(parse_bool(text)?),
        })
    }

    /// `value` of a field already known to be UTF-8.
    pub fn value_of(self, text: &str) -> Result<Dynamic, &'static str> {
        Ok(match self.parse_text(text)? {
            Parsed::Int(i) => Dynamic::from_int(i),
            Parsed::Float(f) => Dynamic::from_float(f),
            Parsed::Bool(b) => Dynamic::from_bool(b),
            Parsed::Str(text) => Dynamic::from(text.to_string()),
        })
    }

    /// Whether `value_of` accepts `text` (the same parsers), without building the value:
    /// how a field no rule reads is checked.
    pub fn check(self, text: &str) -> Result<(), &'static str> {
        self.parse_text(text).map(drop)
    }
}

fn parse_int(text: &str) -> Result<rhai::INT, &'static str> {
    text.parse().map_err(|_| "is not an int")
}

fn parse_float(text: &str) -> Result<rhai::FLOAT, &'static str> {
    match text.parse::<rhai::FLOAT>() {
        Ok(f) if !f.is_nan() => Ok(f),
        _ => Err("is not a float"),
    }
}

fn parse_bool(text: &str) -> Result<bool, &'static str> {
    match text {
        "true" | "TRUE" | "True" => Ok(true),
        "false" | "FALSE" | "False" => Ok(false),
        _ => Err("is not a bool (true or false)"),
    }
}

/// A field parsed as its column's type (`ColumnType::parse_field`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parsed<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'a str),
}

/// The columns a rule can see, in the order rows store their values: every input column
/// whose header is an identifier, with its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    pub names: Vec<String>,
    pub types: Vec<ColumnType>,
}

impl Columns {
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// True for names a rule can use as a variable (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "_"
}

/// One typed transaction, as every executor sees it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The `id` field as written in the input; written back to the results as is.
    pub id: String,
    /// One value per `Columns` entry.
    pub values: Vec<Dynamic>,
}

/// A batch of rows, tagged with its place in the input so the writer can restore order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub seq: u64,
    pub rows: Vec<Row>,
    /// The fields of some columns as the input has them, when the executor asked for them
    /// (`exec::Executor::raw_fields`); else empty.
    pub raw: RawFields,
}

/// The fields of some columns of a batch's rows, checked: a string as its bytes, unquoted,
/// exactly as the input has them; an int or a float as its parsed value's 8 little-endian
/// bytes, a bool as one byte; an empty field of a nullable column as no bytes
/// (`typing::keep_field`). The process executor ships these to its workers, which build
/// the values there (`typing::kept_value`), so the lanes build no value of their own and
/// nothing is parsed twice (`typing::Typer::with_raw_fields`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFields {
    /// The columns (indexes into `Columns`) kept, in increasing order.
    pub columns: Vec<usize>,
    /// Every kept field, row after row, each row's in `columns` order.
    pub bytes: Vec<u8>,
    /// Where each field ends in `bytes`: `columns.len()` a row.
    pub ends: Vec<usize>,
    /// The column of each row's first value: 0 when the lane built every value, the
    /// first window's column when it built none (rows then hold the windows' values only).
    pub first_value: usize,
}

impl RawFields {
    /// Forgets every row, keeping the columns and the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Appends the next field of the row being filled.
    #[inline]
    pub fn push(&mut self, field: &[u8]) {
        self.bytes.extend_from_slice(field);
        self.ends.push(self.bytes.len());
    }

    /// Takes back the fields pushed since the row began with `fields` fields done.
    pub fn truncate_fields(&mut self, fields: usize) {
        self.ends.truncate(fields);
        self.bytes.truncate(self.start(fields));
    }

    /// Where field `i` (counting every row's) starts in `bytes`: where the one before it
    /// ends. `i` may be `fields()`: the end of the last field.
    pub fn start(&self, i: usize) -> usize {
        i.checked_sub(1).map_or(0, |j| self.ends[j])
    }

    /// Fields pushed so far (all rows).
    pub fn fields(&self) -> usize {
        self.ends.len()
    }

    /// Field `k` of row `row` (`k` counts in `columns`).
    pub fn field(&self, row: usize, k: usize) -> &[u8] {
        let i = row * self.columns.len() + k;
        &self.bytes[self.start(i)..self.ends[i]]
    }
}

/// A row that cannot be evaluated, with everything needed to report or reject it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// Line of the input where the row starts.
    pub line: u64,
    /// e.g. `column "amount": "12x" is not a float`.
    pub reason: String,
    /// The row's fields, re-encoded as one CSV record.
    pub raw: Vec<u8>,
}

/// What one evaluation gave. Every (valid transaction, rule) pair gets exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    True,
    False,
    /// The script failed, or returned something that is not a bool; carries the message.
    Error(String),
    /// The evaluation passed its deadline; carries the limit.
    Timeout(Duration),
}

/// The four result kinds, in the order summaries list them. Also what a rule's example
/// expects (`txguard check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    True = 0,
    False = 1,
    Error = 2,
    Timeout = 3,
}

impl Kind {
    /// The word written in the `result` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::True => "true",
            Kind::False => "false",
            Kind::Error => "error",
            Kind::Timeout => "timeout",
        }
    }

    /// The kind a word of the results (or an example's `expect`) names.
    pub fn parse(word: &str) -> Option<Kind> {
        Some(match word {
            "true" => Kind::True,
            "false" => Kind::False,
            "error" => Kind::Error,
            "timeout" => Kind::Timeout,
            _ => return None,
        })
    }
}

/// Longest `detail` of a result, in bytes: a longer message is cut (at a character
/// boundary) to this size and ends with `…`. Results are read by people and by grep, and
/// a rule may throw a map of a million entries: 1 KiB keeps the cause and bounds the file.
pub const DETAIL_MAX_BYTES: usize = 1024;

/// A `fmt::Write` that collects at most `limit` bytes and then stops the formatting (an
/// `fmt::Error`), so that displaying a huge or deeply nested value costs no more than the
/// cap. With `one_line` it keeps a message on one line for a result's `detail`: every run
/// of whitespace, newlines included, becomes one space (leading and trailing whitespace
/// goes), and every other control character (C0, DEL, C1: NUL, ESC...) is written as a
/// visible escape, `\u{1b}`, so that no raw control byte reaches the results.
pub(crate) struct Capped {
    pub(crate) text: String,
    limit: usize,
    one_line: bool,
    /// A space is owed before the next non-space character.
    space: bool,
    /// The limit was passed: `text` holds more than `limit` bytes, the rest was dropped.
    pub(crate) cut: bool,
}

impl Capped {
    pub(crate) fn new(limit: usize, one_line: bool) -> Capped {
        Capped {
            text: String::new(),
            limit,
            one_line,
            space: false,
            cut: false,
        }
    }

    fn push(&mut self, c: char) -> std::fmt::Result {
        self.text.push(c);
        if self.text.len() > self.limit {
            self.cut = true;
            // Stops the formatting machinery: nothing more is rendered.
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}

impl std::fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.cut {
            return Err(std::fmt::Error);
        }
        if !self.one_line {
            if self.text.len() + s.len() > self.limit {
                self.cut = true;
                return Err(std::fmt::Error);
            }
            self.text.push_str(s);
            return Ok(());
        }
        for c in s.chars() {
            if c.is_whitespace() {
                self.space = !self.text.is_empty();
                continue;
            }
            if self.space {
                self.push(' ')?;
                self.space = false;
            }
            if c.is_control() {
                for e in c.escape_unicode() {
                    self.push(e)?;
                }
            } else {
                self.push(c)?;
            }
        }
        Ok(())
    }
}

/// `message` as a result's detail: one line, at most `DETAIL_MAX_BYTES` bytes and then `…`,
/// control characters escaped (see `Capped`).
pub fn detail(message: impl std::fmt::Display) -> String {
    use std::fmt::Write;
    let mut out = Capped::new(DETAIL_MAX_BYTES, true);
    // An error here is either our own cut or a Display impl failing: keep what we have.
    let _ = write!(out, "{message}");
    // A cut text is over the cap: a one-line `Capped` pushes before it checks.
    let mut text = out.text;
    cap_detail(&mut text);
    text
}

/// Cuts `text`, already on one line with no raw control character, to a detail's cap as
/// `detail` does (at a character boundary, then `…`), leaving its spaces as they are: an
/// `--explain` value must show the data exactly, `a  b` is not `a b`.
pub fn cap_detail(text: &mut String) {
    if text.len() > DETAIL_MAX_BYTES {
        let mut end = DETAIL_MAX_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.truncate(text.trim_end().len());
        text.push('…');
    }
}

impl Outcome {
    /// An `Error` outcome whose message is cut to a detail's shape (see `detail`).
    pub fn error(message: impl std::fmt::Display) -> Outcome {
        Outcome::Error(detail(message))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Outcome::True => Kind::True,
            Outcome::False => Kind::False,
            Outcome::Error(_) => Kind::Error,
            Outcome::Timeout(_) => Kind::Timeout,
        }
    }

    /// Writes the `detail` column: empty for a bool, the message, or `exceeded 500ms`.
    pub fn write_detail(&self, out: &mut String) {
        match self {
            Outcome::True | Outcome::False => {}
            Outcome::Error(message) => out.push_str(message),
            Outcome::Timeout(limit) => {
                out.push_str("exceeded ");
                out.push_str(&humantime::format_duration(*limit).to_string());
            }
        }
    }
}

/// What a run counted (the pipeline counts; the summary reports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Valid rows evaluated.
    pub rows: u64,
    /// Rows rejected under `--bad-rows skip`.
    pub bad_rows: u64,
    /// Bytes of input read.
    pub bytes: u64,
    /// Per rule (file order): counts of true, false, error, timeout.
    pub counts: Vec<[u64; 4]>,
    /// The format's own counters (`format::ResultsFormat::counters`): decisions, a diff's.
    pub extra: Vec<u64>,
    /// The windows' peak state, when the rules have `[windows.*]`.
    pub windows: Option<WindowStats>,
}

/// The peak state of the windows over a run (history included), for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WindowStats {
    /// Most rows held inside the spans at once, over every window.
    pub peak_rows: u64,
    /// Keys held at the end (a small record per key seen), over every window.
    pub keys: u64,
    /// Rows of `--history` files read into the windows.
    pub history_rows: u64,
    /// Bad rows of `--history` files skipped under `--bad-rows skip`.
    pub history_bad_rows: u64,
}

/// Worker-process counters of the process executor, reported in the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerCounts {
    /// Worker processes started, replacements included.
    pub started: u64,
    /// Workers killed because an evaluation passed its deadline.
    pub killed: u64,
    /// Workers that died on their own (crash, signal from outside, OOM).
    pub died: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_as_their_declared_type_or_say_why_not() {
        assert_eq!(ColumnType::Int.value(b"-42").unwrap().as_int(), Ok(-42));
        assert_eq!(
            ColumnType::Float.value(b"1e3").unwrap().as_float(),
            Ok(1000.0)
        );
        assert_eq!(ColumnType::Bool.value(b"TRUE").unwrap().as_bool(), Ok(true));
        assert_eq!(
            ColumnType::Float.value(b"12x").unwrap_err(),
            "is not a float"
        );
        assert_eq!(
            ColumnType::Float.value(b"NaN").unwrap_err(),
            "is not a float"
        );
        assert_eq!(ColumnType::Int.value(b"").unwrap_err(), "is not an int");
        assert_eq!(ColumnType::Int.value(b"1.5").unwrap_err(), "is not an int");
        assert_eq!(
            ColumnType::String.value(b"\xff").unwrap_err(),
            "is not valid UTF-8"
        );
        assert_eq!(
            ColumnType::String
                .value("Zürich".as_bytes())
                .unwrap()
                .into_string()
                .unwrap(),
            "Zürich"
        );
    }

    #[test]
    fn identifiers_are_ascii_words() {
        assert!(is_identifier("amount"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("two words"));
        assert!(!is_identifier("montant€"));
        assert!(!is_identifier("_"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn timeout_detail_names_the_limit_as_users_write_it() {
        let mut s = String::new();
        Outcome::Timeout(Duration::from_millis(500)).write_detail(&mut s);
        assert_eq!(s, "exceeded 500ms");
        s.clear();
        Outcome::Timeout(Duration::from_secs(3)).write_detail(&mut s);
        assert_eq!(s, "exceeded 3s");
    }

    #[test]
    fn details_are_one_line_and_cut_at_the_cap_with_an_ellipsis() {
        assert_eq!(detail("  a\n\r\n b\tc  "), "a b c");
        assert_eq!(detail("short"), "short");
        let long = "é".repeat(2000);
        let cut = detail(&long);
        assert!(cut.ends_with('…'));
        assert!(
            cut.len() <= DETAIL_MAX_BYTES + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.len() > DETAIL_MAX_BYTES - 2);
        let exact = "x".repeat(DETAIL_MAX_BYTES);
        assert_eq!(detail(&exact), exact, "exactly the cap is not cut");
        assert_eq!(
            Outcome::error(format_args!("{}", "y\n".repeat(5000))),
            Outcome::Error(format!("{}…", "y ".repeat(512).trim_end()))
        );
    }

    #[test]
    fn kinds_read_back_as_the_results_write_them() {
        for kind in [Kind::True, Kind::False, Kind::Error, Kind::Timeout] {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("maybe"), None);
    }
}
