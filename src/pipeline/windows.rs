//! The windows stage: one sequential pass, in input order, between framing and the lanes.
//! It runs on the reader thread, chunk by chunk: it types each record with the same
//! `Typer` the lanes use (so it agrees with them on which records are rows and which are
//! bad), but builds values only for the columns windows read (key, time, `of`, `where`),
//! evaluates the `where` filters, and feeds each row to every window (`crate::windows`).
//! The values it computes travel with the chunk (`ChunkWindows`); a lane appends them to
//! each row it types, after the input columns, so every executor sees them like columns.
//! Results therefore depend neither on the executor nor on `-j`.

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use rhai::Dynamic;

use crate::framer::{self, Chunk, Fields};
use crate::input::InputReader;
use crate::model::{BadRow, ColumnType, Outcome, Parsed, Row, WindowStats};
use crate::rules::lists_windows::{self, Derived, Function, WindowDecl};
use crate::rules::{Evaluator, RuleSet, random_key_hash};
use crate::typing::{Schema, Typer};
use crate::windows::time::parse_rfc3339;
use crate::windows::{Keys, Kind, Value, Window};

/// What the stage found for one record of a chunk.
#[derive(Debug, Clone)]
pub enum Slot {
    /// Not a row (the header, a blank line) or a row the typer rejects itself.
    None,
    /// A row: its window values start at this index of `ChunkWindows::values`.
    Values(usize),
    /// A row whose key, time or filter is bad: the reason, as the bad row gives it.
    Bad(String),
}

/// The window values of one chunk's records, by record index.
#[derive(Debug, Default)]
pub struct ChunkWindows {
    pub slots: Vec<Slot>,
    pub values: Vec<Dynamic>,
    /// Windows per row.
    pub width: usize,
}

impl ChunkWindows {
    /// Appends record `index`'s window values to `row`; its bad-row reason if it has one.
    pub fn append(&self, index: usize, row: &mut Row) -> Result<(), String> {
        match self.slots.get(index) {
            Some(Slot::Values(at)) => {
                row.values
                    .extend_from_slice(&self.values[*at..*at + self.width]);
                Ok(())
            }
            Some(Slot::Bad(reason)) => Err(reason.clone()),
            // The stage typed it as a row: this cannot differ, but never goes unseen.
            _ => Err("internal error: no window values for this row".into()),
        }
    }
}

/// A chunk on its way to the lanes, with its window values when the rules have windows.
pub struct Framed {
    pub chunk: Chunk,
    pub windows: Option<Arc<ChunkWindows>>,
}

/// Where a window reads its row: fields of the record, by index, and their types.
struct Spec {
    name: String,
    /// The key's field.
    key: usize,
    key_name: String,
    /// The time's field, and whether an empty time is `()` (a `string?` column).
    time: usize,
    time_nullable: bool,
    time_name: String,
    /// An earlier window reading the same time column: its parsed time is this one's.
    same_time: Option<usize>,
    /// Its key column's numbering, in `Queue::keys`.
    numbering: usize,
    /// The `of` column's field, its type, and whether an empty value is `()`.
    of: Option<(usize, ColumnType, bool)>,
    /// Its rule index in the filter evaluator.
    filter: Option<usize>,
}

/// A row's `of` value while it waits in `Fed`: a text is a range of `Fed::texts` (the
/// field may live in the splitter's scratch buffer, reused by the next record).
#[derive(Debug, Clone, Copy)]
enum Waiting {
    None,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(usize, usize),
}

/// A chunk's good rows as the windows take them, row after row: per row, a key number per
/// key column, and per window a time, whether `where` holds, and the `of` value.
#[derive(Default)]
struct Fed {
    rows: usize,
    ids: Vec<usize>,
    times: Vec<i64>,
    matching: Vec<bool>,
    of: Vec<Waiting>,
    texts: String,
}

/// How many rows ahead the windows' state is fetched into the cache: far enough to hide
/// a memory access behind the rows in between, near enough to still be there.
const AHEAD: usize = 16;

/// The stage's per-row work on a record's fields: checks key and time, evaluates the
/// filters, numbers the keys, and queues the row for the windows (`Fed`).
struct Queue {
    specs: Vec<Spec>,
    /// Per key column some window reads: (its field, its type, its keys' numbering).
    keys: Vec<(usize, ColumnType, Keys)>,
    /// Per window: this row's time, and whether it counts.
    times: Vec<i64>,
    matching: Vec<bool>,
    /// The chunk's good rows, checked and numbered, waiting for the windows.
    fed: Fed,
}

/// The stage's state: windows, their filters, a typer for the input's records.
pub struct WindowStage {
    typer: Typer,
    /// Splits a record again when a filter needs the typed row too.
    splitter: framer::Splitter,
    queue: Queue,
    windows: Vec<Window>,
    filters: Option<Evaluator>,
    rows: Vec<Row>,
    bad: Vec<BadRow>,
    stats: WindowStats,
    rows_now: usize,
}

impl WindowStage {
    /// The stage for `set`'s windows over the input whose header is `header`; `None` when
    /// the rules declare no window. Fails on a window naming a column the input lacks,
    /// a time column not of strings, a sum/avg of a column that is no number, or a
    /// `where` that does not compile against the input's columns.
    pub fn new(
        set: &RuleSet,
        header: Fields<'_>,
        input: &str,
        id_column: &str,
        config: &framer::Config,
        seed: u64,
    ) -> Result<Option<WindowStage>> {
        let decls = &set.derived.windows;
        if decls.is_empty() {
            return Ok(None);
        }
        let filter_rules = lists_windows::filter_rules(decls, set.max_timeout());
        let only_lists = Derived {
            lists: set.derived.lists.clone(),
            loaded: set.derived.loaded.clone(),
            windows: Vec::new(),
        };
        // The typer checks every record as the lanes do, and builds values only for the
        // columns the filters read (the key, time and `of` fields are read as bytes).
        let schema_set = RuleSet {
            columns: set.columns.clone(),
            nullable: set.nullable.clone(),
            rules: filter_rules.clone(),
            memory_limit: set.memory_limit,
            decision: None,
            derived: Arc::new(only_lists.clone()),
        };
        let schema = Schema::from_header_with_id(header, input, &schema_set, id_column)?;
        let columns = schema.columns().clone();
        let column = |w: &WindowDecl, what: &str, name: &str| -> Result<(usize, usize)> {
            let at = columns.index(name).ok_or_else(|| {
                anyhow!(
                    "[windows.{}] (rules line {}): {what} column {name:?} is not a column of {input} (columns: {})",
                    w.name,
                    w.line,
                    columns.names.join(", ")
                )
            })?;
            let field = schema
                .field_of(at)
                .ok_or_else(|| anyhow!("internal error: column {name:?} has no field"))?;
            Ok((at, field))
        };
        let mut specs: Vec<Spec> = Vec::with_capacity(decls.len());
        let mut windows = Vec::with_capacity(decls.len());
        let mut keys: Vec<(usize, ColumnType, Keys)> = Vec::new();
        for (i, w) in decls.iter().enumerate() {
            let (key_column, key) = column(w, "key", &w.key)?;
            let (time_column, time) = column(w, "time", &w.time)?;
            if columns.types[time_column] != ColumnType::String {
                bail!(
                    "[windows.{}] (rules line {}): time column {:?} is declared {}: it must hold RFC 3339 times (a string column)",
                    w.name,
                    w.line,
                    w.time,
                    columns.types[time_column].name()
                );
            }
            let of = match &w.of {
                Some(of) => {
                    let (at, field) = column(w, "of", of)?;
                    let kind = columns.types[at];
                    if matches!(w.function, Function::Sum | Function::Avg)
                        && !matches!(kind, ColumnType::Int | ColumnType::Float)
                    {
                        bail!(
                            "[windows.{}] (rules line {}): cannot add up column {of:?} of type {}: declare it int or float in [columns]",
                            w.name,
                            w.line,
                            kind.name()
                        );
                    }
                    Some((field, kind, set.is_nullable(of)))
                }
                None => None,
            };
            let numbering = match keys.iter().position(|(f, _, _)| *f == key) {
                Some(at) => at,
                None => {
                    keys.push((key, columns.types[key_column], Keys::default()));
                    keys.len() - 1
                }
            };
            specs.push(Spec {
                name: w.name.clone(),
                numbering,
                key,
                key_name: w.key.clone(),
                time,
                time_nullable: set.is_nullable(&w.time),
                time_name: w.time.clone(),
                same_time: specs.iter().position(|s| s.time == time),
                of,
                filter: filter_rules.iter().position(|f| f.id == i as i64),
            });
            let kind = match of.map(|(_, kind, _)| kind) {
                Some(ColumnType::Float) => Kind::Float,
                Some(ColumnType::Bool) => Kind::Bool,
                Some(ColumnType::String) => Kind::Text,
                Some(ColumnType::Int) | None => Kind::Int,
            };
            windows.push(Window::new(w.function, w.span_nanos, kind));
        }
        let filters = if filter_rules.is_empty() {
            None
        } else {
            let filter_set = RuleSet {
                columns: set.columns.clone(),
                nullable: set.nullable.clone(),
                rules: filter_rules,
                memory_limit: set.memory_limit,
                decision: None,
                derived: Arc::new(only_lists),
            };
            let rules = &filter_set.rules;
            Some(
                Evaluator::new(&filter_set, &columns, seed).map_err(|errors| {
                    let errors: Vec<_> = errors
                        .into_iter()
                        .map(|e| lists_windows::filter_error(e, rules))
                        .collect();
                    anyhow!(
                        "a window's `where` does not compile: {}",
                        crate::rules::one_line(&errors)
                    )
                })?,
            )
        };
        Ok(Some(WindowStage {
            typer: Typer::new(Arc::new(schema), config),
            splitter: framer::Splitter::new(config),
            queue: Queue {
                specs,
                keys,
                times: Vec::new(),
                matching: Vec::new(),
                fed: Fed::default(),
            },
            windows,
            filters,
            rows: Vec::new(),
            bad: Vec::new(),
            stats: WindowStats::default(),
            rows_now: 0,
        }))
    }

    /// Goes on with `next`, the stage built for the next input of the run (its header may
    /// order the columns differently): the windows' state carries over, so several inputs
    /// in a row are one input to the windows, as `--history` files are.
    pub fn continue_with(&mut self, mut next: WindowStage) {
        // Both were built from the same rules: the same windows, key columns numbered alike.
        std::mem::swap(&mut next.windows, &mut self.windows);
        for ((_, _, mine), (_, _, theirs)) in self.queue.keys.iter_mut().zip(&mut next.queue.keys) {
            std::mem::swap(mine, theirs);
        }
        next.stats = self.stats;
        next.rows_now = self.rows_now;
        *self = next;
    }

    /// The stage for `input`'s header (see `new`).
    pub fn for_input(set: &RuleSet, input: &InputReader, seed: u64) -> Result<Option<WindowStage>> {
        // No windows: nothing to read (an empty `--columns` input has no first record).
        if set.derived.windows.is_empty() {
            return Ok(None);
        }
        let mut splitter = framer::Splitter::new(&input.config);
        let named;
        let header = match &input.column_names {
            // `--columns`: the first record is a row; the names stand for the header.
            Some(names) => {
                named = names_as_header(names, input.config.delimiter());
                &named[..]
            }
            None => header_record(input)?,
        };
        WindowStage::new(
            set,
            splitter.split(header),
            &input.name,
            input.schema.id_column(),
            &input.config,
            seed,
        )
    }

    pub fn stats(&self) -> WindowStats {
        WindowStats {
            keys: self.queue.keys.iter().map(|(_, _, k)| k.len() as u64).sum(),
            ..self.stats
        }
    }

    /// Counts a history file's rows fed and bad rows skipped, for the summary.
    pub fn count_history(&mut self, rows: u64, bad: u64) {
        self.stats.history_rows += rows;
        self.stats.history_bad_rows += bad;
    }

    /// Computes the window values of `chunk`'s records from `skip` on (the first `skip`
    /// are no rows: the header), in order. Bad rows the typer finds itself are left to the
    /// lanes (they type the same way); the stage only adds bad keys, times and filters.
    ///
    /// Two passes: the first checks every record (and numbers the keys, in input order)
    /// with no value built but for the filters; the second feeds the good rows to the
    /// windows in input order, asking for the state of the rows a few ahead, so that its
    /// memory accesses overlap instead of waiting one after the other (random keys: the
    /// state is rarely in the cache).
    pub fn process(&mut self, chunk: &Chunk, skip: usize) -> ChunkWindows {
        let width = self.windows.len();
        let mut out = ChunkWindows {
            slots: Vec::with_capacity(chunk.len()),
            values: Vec::with_capacity(chunk.len() * width),
            width,
        };
        for (i, record) in chunk.records().enumerate() {
            let body = match record.body {
                Ok(body) if i >= skip => body,
                // The header, or a flawed record (the lanes report it).
                _ => {
                    out.slots.push(Slot::None);
                    continue;
                }
            };
            let at = self.queue.fed.rows * width;
            let queued = match &mut self.filters {
                // No filter: the record is checked, and its fields read as bytes.
                None => match self.typer.check_record(body) {
                    None => None,
                    Some(fields) => Some(self.queue.row(fields, None)),
                },
                // Filters read a typed row.
                Some(filters) => {
                    self.rows.clear();
                    self.bad.clear();
                    self.typer
                        .type_records(std::iter::once(record), &mut self.rows, &mut self.bad);
                    match self.rows.first() {
                        None => None,
                        Some(row) => {
                            let fields = self.splitter.split(body);
                            Some(self.queue.row(fields, Some((filters, row))))
                        }
                    }
                }
            };
            out.slots.push(match queued {
                None => Slot::None,
                Some(Ok(())) => Slot::Values(at),
                Some(Err(reason)) => Slot::Bad(reason),
            });
        }
        self.feed(&mut out.values);
        out
    }

    /// Feeds the chunk's good rows (`fed`) to the windows, in order, appending their values.
    fn feed(&mut self, values: &mut Vec<Dynamic>) {
        let Queue {
            specs, keys, fed, ..
        } = &mut self.queue;
        let (width, numberings) = (self.windows.len(), keys.len());
        for r in 0..fed.rows {
            // The state of the row AHEAD rows on, then (fetched by now) the oldest row of
            // the one half as far.
            if r + AHEAD < fed.rows {
                let ahead = &fed.ids[(r + AHEAD) * numberings..];
                for (spec, window) in specs.iter().zip(&self.windows) {
                    window.prefetch(ahead[spec.numbering]);
                }
            }
            if r + AHEAD / 2 < fed.rows {
                let ahead = &fed.ids[(r + AHEAD / 2) * numberings..];
                for (spec, window) in specs.iter().zip(&self.windows) {
                    window.prefetch_rows(ahead[spec.numbering]);
                }
            }
            for (n, (spec, window)) in specs.iter().zip(&mut self.windows).enumerate() {
                let at = r * width + n;
                let before = window.rows();
                let key = fed.ids[r * numberings + spec.numbering];
                let value = match fed.of[at] {
                    Waiting::None => Value::None,
                    Waiting::Int(i) => Value::Int(i),
                    Waiting::Float(f) => Value::Float(f),
                    Waiting::Bool(b) => Value::Bool(b),
                    Waiting::Text(from, to) => Value::Text(&fed.texts[from..to]),
                };
                values.push(window.push(key, fed.times[at], fed.matching[at], value));
                self.rows_now = self.rows_now + window.rows() - before;
            }
            self.stats.peak_rows = self.stats.peak_rows.max(self.rows_now as u64);
        }
        fed.rows = 0;
        fed.ids.clear();
        fed.times.clear();
        fed.matching.clear();
        fed.of.clear();
        fed.texts.clear();
    }

    /// Feeds every row of `history` to the windows (its values are dropped); returns its
    /// bad rows, in order. The stage must be the one for its header (`for_input`).
    pub fn feed_history(&mut self, history: InputReader) -> Result<(u64, Vec<BadRow>)> {
        let InputReader {
            mut framer,
            first,
            name,
            ..
        } = history;
        let mut bad = Vec::new();
        let mut fed = 0;
        let (mut chunk, mut skip) = (Some(first), 1);
        while let Some(current) = chunk.take() {
            let windows = self.process(&current, skip);
            // The typer's own bad rows: type the chunk's rows as a lane would.
            let mut rows = Vec::new();
            for (i, record) in current.records().enumerate().skip(skip) {
                let line = record.start.line;
                match &windows.slots[i] {
                    Slot::Bad(reason) => bad.push(BadRow {
                        line,
                        reason: reason.clone(),
                        raw: Vec::new(),
                    }),
                    Slot::Values(_) => fed += 1,
                    Slot::None => {
                        let mut found = Vec::new();
                        self.typer
                            .type_records(std::iter::once(record), &mut rows, &mut found);
                        bad.append(&mut found);
                        rows.clear();
                    }
                }
            }
            skip = 0;
            framer.recycle(current);
            chunk = framer
                .next_chunk()
                .map_err(|e| anyhow!("cannot read {name}: {e}"))?;
        }
        Ok((fed, bad))
    }
}

impl Queue {
    /// Checks the key and time `fields` of a row (one the typer accepts), evaluates the
    /// filters on its typed `row` (when some window has one) and queues it for the
    /// windows (`fed`); or the reason the row is bad (then no window sees it).
    fn row(
        &mut self,
        fields: Fields<'_>,
        filters: Option<(&mut Evaluator, &Row)>,
    ) -> Result<(), String> {
        // Check everything before any window changes: a bad row counts nowhere.
        self.times.clear();
        for spec in &self.specs {
            // An empty key is missing: a `string` column gives "", a nullable one `()`.
            if fields.get(spec.key).unwrap_or_default().is_empty() {
                return Err(format!(
                    "column {:?}: \"\" is empty (the key of [windows.{}])",
                    spec.key_name, spec.name
                ));
            }
            if let Some(earlier) = spec.same_time {
                // Parsed once per row, however many windows read the column.
                self.times.push(self.times[earlier]);
                continue;
            }
            let time = fields.get(spec.time).unwrap_or_default();
            // A nullable (`string?`) time column gives `()` for an empty time.
            if time.is_empty() && spec.time_nullable {
                return Err(format!(
                    "column {:?}: \"\" is empty (the time of [windows.{}])",
                    spec.time_name, spec.name
                ));
            }
            let t = parse_rfc3339(time).map_err(|why| {
                format!(
                    "column {:?}: {:?} {why} (the time of [windows.{}])",
                    spec.time_name,
                    String::from_utf8_lossy(time),
                    spec.name
                )
            })?;
            self.times.push(t);
        }
        self.matching.clear();
        match filters {
            None => self.matching.resize(self.specs.len(), true),
            Some((filters, row)) => {
                let id_hash = random_key_hash(&row.id);
                for spec in &self.specs {
                    let matching = match spec.filter {
                        Some(f) => match filters.evaluate(f, row, id_hash) {
                            Outcome::True => true,
                            Outcome::False => false,
                            other => {
                                let mut detail = String::new();
                                other.write_detail(&mut detail);
                                return Err(format!(
                                    "[windows.{}] where: {} ({detail})",
                                    spec.name,
                                    other.kind().as_str()
                                ));
                            }
                        },
                        None => true,
                    };
                    self.matching.push(matching);
                }
            }
        }
        let fed = &mut self.fed;
        for (field, kind, keys) in &mut self.keys {
            let key = fields.get(*field).unwrap_or_default();
            let id = match kind {
                ColumnType::String => keys.id(key),
                _ => keys.id(&canonical(*kind, key)),
            };
            fed.ids.push(id);
        }
        fed.times.extend_from_slice(&self.times);
        for (mut matching, spec) in self.matching.iter().copied().zip(&self.specs) {
            let value = match spec.of {
                None => Waiting::None,
                Some((field, kind, nullable)) => {
                    let value = fields.get(field).unwrap_or_default();
                    if value.is_empty() && nullable {
                        // An empty value of a nullable `of` column is no value: like a
                        // row that does not match `where`, it counts in no sum, avg, min,
                        // max or distinct (only in count).
                        matching = false;
                        Waiting::None
                    } else {
                        waiting(kind, value, &mut fed.texts)
                    }
                }
            };
            fed.matching.push(matching);
            fed.of.push(value);
        }
        fed.rows += 1;
        Ok(())
    }
}

/// A key of a column of type `kind` (not string) as the bytes its numbering takes: the
/// value's bits, so that `7` and `+7`, or `0.0` and `-0.0`, are one key as they are one
/// value (`==`) to the rules.
fn canonical(kind: ColumnType, field: &[u8]) -> [u8; 8] {
    // The typer accepted the field: it parses.
    match kind.parse_field(field) {
        Ok(Parsed::Int(i)) => i.to_le_bytes(),
        // -0.0 is 0.0, as Rhai's `==` says.
        Ok(Parsed::Float(f)) => (if f == 0.0 { 0.0 } else { f }).to_bits().to_le_bytes(),
        Ok(Parsed::Bool(b)) => u64::from(b).to_le_bytes(),
        _ => [0xff; 8],
    }
}

/// An `of` field of a column of type `kind` (the typer accepted it) as it waits for its
/// window, parsed by the typer's own parser (the value the rules see); a text is copied
/// to `texts`.
fn waiting(kind: ColumnType, field: &[u8], texts: &mut String) -> Waiting {
    match kind.parse_field(field) {
        Ok(Parsed::Int(i)) => Waiting::Int(i),
        Ok(Parsed::Float(f)) => Waiting::Float(f),
        Ok(Parsed::Bool(b)) => Waiting::Bool(b),
        Ok(Parsed::Str(text)) => {
            let from = texts.len();
            texts.push_str(text);
            Waiting::Text(from, texts.len())
        }
        Err(_) => Waiting::None,
    }
}

/// `--columns` names as the header record they stand for: each quoted (a name holds no
/// quote nor line break, but may hold the delimiter), separated by `delimiter`.
fn names_as_header(names: &[String], delimiter: u8) -> Vec<u8> {
    let mut header = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            header.push(delimiter);
        }
        header.push(b'"');
        header.extend_from_slice(name.as_bytes());
        header.push(b'"');
    }
    header
}

/// The header record of an input (the first record of its first chunk).
pub fn header_record(input: &InputReader) -> Result<&[u8]> {
    input
        .first
        .records()
        .next()
        .and_then(|r| r.body.ok())
        .ok_or_else(|| anyhow!("{}: no header", input.name))
}

/// The first `limit` rows of `input` with their window values, and the bad rows met on
/// the way (`txguard check --input` with windows): the stage and a lane, in this thread.
pub fn first_rows(
    input: InputReader,
    set: &RuleSet,
    limit: usize,
    seed: u64,
) -> Result<(Vec<Row>, Vec<BadRow>)> {
    let stage = WindowStage::for_input(set, &input, seed)?;
    let mut stage = stage.ok_or_else(|| anyhow!("internal error: no windows"))?;
    let InputReader {
        mut framer,
        config,
        first,
        name,
        schema,
        ..
    } = input;
    let mut typer = Typer::new(Arc::new(schema), &config);
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    let (mut chunk, mut skip) = (Some(first), 1);
    while let Some(current) = chunk.take() {
        let windows = stage.process(&current, skip);
        let mut typed = Vec::new();
        let wanted = limit - rows.len();
        typer.type_records_then(
            current.records().skip(skip).take(wanted),
            &mut typed,
            &mut bad,
            |k, row| windows.append(skip + k, row),
        );
        rows.append(&mut typed);
        if rows.len() >= limit {
            break;
        }
        skip = 0;
        chunk = framer
            .next_chunk()
            .map_err(|e| anyhow!("cannot read {name}: {e}"))?;
    }
    Ok((rows, bad))
}

/// `--shard` cannot split an input whose rules have `[windows]`: a key's rows would be
/// spread over shards, each seeing part of its history. A usage error (exit 2); the
/// command line calls it once the rules are read.
pub fn refuse_shard_with_windows(rules: &RuleSet, sharded: bool) -> Result<()> {
    if sharded && !rules.derived.windows.is_empty() {
        return Err(crate::exit::Usage(
            "--shard cannot be used with rules that declare [windows.*]: a window needs every \
             earlier row of its key (run unsharded, with --history for earlier batches)"
                .into(),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer::{Config, Framer};
    use std::io::Cursor;
    use std::time::Duration;

    const RULES: &str = r#"
[columns]
id = "int"
amount = "float"

[windows.tx_24h]
key = "account"
time = "timestamp"
span = "24h"
function = "count"

[windows.amount_1h]
key = "account"
time = "timestamp"
span = "1h"
function = "sum"
of = "amount"

[windows.merchants_1h]
key = "account"
time = "timestamp"
span = "1h"
function = "distinct"
of = "merchant"

[[rule]]
id = 1
name = "r"
when = "tx_24h > 10"
"#;

    /// `rows` generated transactions, as `txguard generate` writes them.
    fn input(rows: u64) -> Vec<u8> {
        let mut out = Vec::new();
        crate::generate::write_transactions(&mut out, rows, 7).unwrap();
        out
    }

    /// CPU time of this thread: the figure does not depend on what else the machine runs.
    fn cpu() -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    /// Runs the stage over `csv` as the reader thread does (framed chunks in, window values
    /// out, each chunk's values dropped once read, as the lanes drop them); (rows with
    /// values, the values of the first `keep` of them in row order, CPU time, wall time).
    fn run_stage(csv: Vec<u8>, keep: usize) -> (usize, Vec<Dynamic>, Duration, Duration) {
        let set = crate::rules::file::parse(RULES, Duration::from_secs(1)).unwrap();
        let config = Config::default();
        let mut framer = Framer::new(Cursor::new(csv), config);
        let mut chunks = Vec::new();
        while let Some(chunk) = framer.next_chunk().unwrap() {
            chunks.push(chunk);
        }
        let mut splitter = framer::Splitter::new(&config);
        let header = chunks[0].records().next().unwrap().body.unwrap().to_vec();
        let mut stage = WindowStage::new(&set, splitter.split(&header), "t.csv", "id", &config, 0)
            .unwrap()
            .unwrap();
        let mut rows = 0;
        let mut values = Vec::new();
        let (started, wall) = (cpu(), std::time::Instant::now());
        for (i, chunk) in chunks.iter().enumerate() {
            let w = stage.process(chunk, usize::from(i == 0));
            for slot in &w.slots {
                if let Slot::Values(at) = slot {
                    rows += 1;
                    if rows <= keep {
                        values.extend_from_slice(&w.values[*at..*at + w.width]);
                    }
                }
            }
        }
        let (took, wall) = (cpu() - started, wall.elapsed());
        (rows, values, took, wall)
    }

    /// The values of `RULES`' three windows for the first `limit` rows of a generated,
    /// time-sorted `csv`, the slow way: for each row, a scan of its key's earlier rows.
    fn slow_values(csv: &[u8], limit: usize) -> Vec<String> {
        let text = std::str::from_utf8(csv).unwrap();
        let mut by_key: std::collections::HashMap<&str, Vec<(i64, f64, &str)>> = Default::default();
        let mut out = Vec::new();
        const S: i64 = 1_000_000_000;
        for line in text.lines().skip(1).take(limit) {
            let f: Vec<&str> = line.split(',').collect();
            let t = parse_rfc3339(f[1].as_bytes()).unwrap();
            let earlier = by_key.entry(f[2]).or_default();
            earlier.push((t, f[3].parse().unwrap(), f[6]));
            let within = |span: i64| earlier.iter().filter(move |r| r.0 > t - span && r.0 <= t);
            out.push(within(86_400 * S).count().to_string());
            let amounts: Vec<crate::windows::Val> = within(3600 * S)
                .map(|r| crate::windows::Val::Float(r.1))
                .collect();
            out.push(crate::windows::aggregate(Function::Sum, amounts.iter()).to_string());
            let merchants: std::collections::HashSet<&str> =
                within(3600 * S).map(|r| r.2).collect();
            out.push(merchants.len().to_string());
        }
        out
    }

    #[test]
    fn shard_is_refused_with_windows_only() {
        let set = crate::rules::file::parse(RULES, Duration::from_secs(1)).unwrap();
        let err = refuse_shard_with_windows(&set, true).unwrap_err();
        assert!(err.downcast_ref::<crate::exit::Usage>().is_some());
        assert!(
            err.to_string()
                .starts_with("--shard cannot be used with rules that declare [windows.*]")
        );
        refuse_shard_with_windows(&set, false).unwrap();
        let plain = crate::rules::file::parse(
            "[[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n",
            Duration::from_secs(1),
        )
        .unwrap();
        refuse_shard_with_windows(&plain, true).unwrap();
    }

    /// The window values of `csv`'s records through `stage` (a stage for its header when
    /// `None`), and the stage.
    fn values_of(csv: &str, stage: Option<WindowStage>) -> (Vec<String>, WindowStage) {
        let set = crate::rules::file::parse(RULES, Duration::from_secs(1)).unwrap();
        let config = Config::default();
        let mut framer = Framer::new(Cursor::new(csv.as_bytes().to_vec()), config);
        let chunk = framer.next_chunk().unwrap().unwrap();
        let header = chunk.records().next().unwrap().body.unwrap().to_vec();
        let mut splitter = framer::Splitter::new(&config);
        let own = WindowStage::new(&set, splitter.split(&header), "t.csv", "id", &config, 0)
            .unwrap()
            .unwrap();
        let mut stage = match stage {
            None => own,
            Some(mut earlier) => {
                earlier.continue_with(own);
                earlier
            }
        };
        let w = stage.process(&chunk, 1);
        let shown = w.values.iter().map(ToString::to_string).collect();
        (shown, stage)
    }

    #[test]
    fn the_next_input_goes_on_with_the_windows_whatever_its_column_order() {
        let a = "id,account,timestamp,amount,merchant\n1,A,2026-01-01T00:00:00Z,5,x\n\
                 2,B,2026-01-01T00:10:00Z,7,y\n";
        let b = "merchant,amount,timestamp,id,account\ny,1,2026-01-01T00:20:00Z,3,A\n\
                 z,2,2026-01-01T00:30:00Z,4,B\n";
        let b_as_a = "id,account,timestamp,amount,merchant\n3,A,2026-01-01T00:20:00Z,1,y\n\
                      4,B,2026-01-01T00:30:00Z,2,z\n";
        let (_, first) = values_of(a, None);
        let (continued, stage) = values_of(b, Some(first));
        let (_, first) = values_of(a, None);
        let (expected, _) = values_of(b_as_a, Some(first));
        assert_eq!(continued, expected);
        // Account A: two rows in 24 h, 6.0 in the hour, merchants x and y.
        assert_eq!(continued[..3], ["2", "6.0", "2"]);
        assert_eq!(stage.stats().keys, 2);
    }

    #[test]
    fn every_row_gets_a_value_per_window() {
        let (rows, values, _, _) = run_stage(input(2000), usize::MAX);
        assert_eq!(rows, 2000);
        assert_eq!(values.len(), 6000);
    }

    /// Equal, floats within 1e-9 relative (sums are running sums: the last bits may differ).
    fn same(got: &Dynamic, want: &str) -> bool {
        let got = got.to_string();
        match (got.parse::<f64>(), want.parse::<f64>()) {
            _ if got == want => true,
            (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            _ => false,
        }
    }

    /// The throughput figure of the README: `cargo test --release --lib
    /// windows_stage_throughput -- --ignored --nocapture`. The input is `txguard generate`'s
    /// (time-sorted, 50,000 accounts, a few very active); the stage's values are checked
    /// against the slow path on the first rows. `STAGE_ONLY=1` stops after the stage's figure
    /// (to profile the stage alone: `perf record`).
    #[test]
    #[ignore]
    fn windows_stage_throughput() {
        let n = 2_000_000;
        let csv = input(n);
        let checked = 40_000;
        let (rows, values, took, wall) = run_stage(csv.clone(), checked);
        assert_eq!(rows as u64, n);
        let rate = |d: Duration| rows as f64 / d.as_secs_f64();
        println!(
            "windows stage, 3 windows: {rows} rows in {took:?} of CPU ({:.0} rows/s), {wall:?} wall ({:.0} rows/s)",
            rate(took),
            rate(wall)
        );
        if std::env::var_os("STAGE_ONLY").is_some() {
            return;
        }
        let slow = slow_values(&csv, checked);
        assert_eq!(values.len(), slow.len());
        for (i, (got, want)) in values.iter().zip(&slow).enumerate() {
            assert!(
                same(got, want),
                "row {}, window {}: {got} != {want}",
                i / 3 + 1,
                i % 3
            );
        }
        println!("the first {checked} rows' values equal the slow path's");
        // The aggregation alone (no field splitting or typing), on keys drawn as `txguard
        // generate` draws them (u^4 over 50,000 accounts), one row every 1.5 s.
        let mut windows: Vec<Window> = [
            (Function::Count, 86_400, Kind::Int),
            (Function::Sum, 3600, Kind::Float),
            (Function::Distinct, 3600, Kind::Int),
        ]
        .iter()
        .map(|&(f, s, kind)| Window::new(f, s * 1_000_000_000, kind))
        .collect();
        let accounts: Vec<String> = (0..50_000).map(|k| format!("ACC{k:06}")).collect();
        let mut keys = Keys::default();
        let started = cpu();
        let mut x = 1u64;
        for i in 0..n as i64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let account = (u.powi(4) * accounts.len() as f64) as usize;
            let key = keys.id(accounts[account].as_bytes());
            let t = i * 1_500_000_000;
            let _ = std::hint::black_box(windows[0].push(key, t, true, Value::None));
            let _ =
                std::hint::black_box(windows[1].push(key, t, true, Value::Float((x >> 50) as f64)));
            let _ =
                std::hint::black_box(windows[2].push(key, t, true, Value::Int((x >> 60) as i64)));
        }
        let took = cpu() - started;
        println!(
            "aggregation alone, 3 windows: {n} rows in {took:?} of CPU: {:.0} rows/s",
            n as f64 / took.as_secs_f64()
        );
    }
}
