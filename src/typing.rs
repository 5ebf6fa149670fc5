//! Framed records → typed rows, on the lanes. The header gives a `Schema` (which field is
//! which column, of which type, read by some rule or not); a lane's `Typer` splits each
//! record of its share of a chunk into fields and types them. Values are built only for
//! the columns some rule reads (`RuleSet::columns_read`); the others are checked and
//! dropped. Rows and their buffers are reused from task to task, and short strings come
//! from a small per-column cache, so typing a row allocates nothing once warm.
//!
//! For the process executor a lane only checks the fields and keeps the read columns'
//! fields (`Typer::with_raw_fields`): strings as their bytes, numbers as the values its
//! check parsed (`keep_field`); its workers build the values from those with `kept_value`,
//! which gives what `field_value`, the function a thread lane types with, gives.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Result, bail};
use rhai::{Dynamic, ImmutableString};

use crate::framer::{self, Fields, Flaw, Record, Splitter};
use crate::model::{BadRow, Batch, ColumnType, Columns, Parsed, RawFields, Row, is_identifier};
use crate::rules::RuleSet;
use crate::size::display_size;

/// How a field of the input maps to the rule-visible columns.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// A column rules can see, at this index of `Columns`.
    Column(usize),
    /// A column whose header is not an identifier: kept in the input, invisible to rules.
    Hidden,
}

/// What the header says about every record.
#[derive(Debug, Clone)]
pub struct Schema {
    header: Vec<String>,
    fields: Vec<Field>,
    id_field: usize,
    columns: Columns,
    /// Per column: whether some rule reads it, so its value must be built.
    read: Vec<bool>,
    /// Per column: whether an empty value is `()` (declared `"float?"`), not a bad row.
    nullable: Vec<bool>,
    /// Fields come in the columns' order (always, but for an input aligned to another):
    /// values are then pushed, not put in place.
    in_order: bool,
    /// How many values typing builds: the input's columns, the first of `columns` (the
    /// windows' values follow them, appended after typing).
    input_columns: usize,
    /// Per input column: the field that holds it.
    field_of: Vec<usize>,
}

impl Schema {
    /// Reads the header's fields; `name` is what messages call the input. Fails on a
    /// field that is not UTF-8, a name that appears twice, or no `id` column.
    pub fn from_header(fields: Fields<'_>, name: &str, rules: &RuleSet) -> Result<Schema> {
        Schema::from_header_with_id(fields, name, rules, "id")
    }

    /// Like `from_header`, with the transaction ids in the column `id_column`.
    pub fn from_header_with_id(
        fields: Fields<'_>,
        name: &str,
        rules: &RuleSet,
        id_column: &str,
    ) -> Result<Schema> {
        let mut header = Vec::with_capacity(fields.len());
        for (i, field) in fields.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) => header.push(text.to_string()),
                Err(_) => bail!(
                    "{name}:1: header field {} is not valid UTF-8: not a CSV of transactions",
                    i + 1
                ),
            }
        }
        let Some(id_field) = header.iter().position(|h| h == id_column) else {
            bail!(
                "{name}:1: no `{id_column}` column in the header ({})",
                summarize_header(&header)
            );
        };
        // A set, not a scan of the names before: headers of 100,000 columns exist.
        let mut seen = HashSet::with_capacity(header.len());
        let mut columns = Columns {
            names: Vec::new(),
            types: Vec::new(),
        };
        let mut kinds = Vec::with_capacity(header.len());
        for h in &header {
            if !seen.insert(h.as_str()) {
                bail!("{name}:1: column {h:?} appears twice in the header");
            }
            if is_identifier(h) && rules.derived.names(h) {
                bail!(
                    "{name}:1: column {h:?} clashes with [lists.{h}] or [windows.{h}] of the rules: rename one of them"
                );
            }
            if is_identifier(h) {
                kinds.push(Field::Column(columns.names.len()));
                columns.names.push(h.clone());
                columns.types.push(rules.column_type(h));
            } else {
                kinds.push(Field::Hidden);
            }
        }
        let input_columns = columns.names.len();
        let field_of = field_of_columns(&kinds, input_columns);
        // Window values follow the input's columns (`pipeline::windows`).
        for w in &rules.derived.windows {
            columns.names.push(w.name.clone());
            columns
                .types
                .push(rules.derived.window_type(w, &rules.columns));
        }
        let read = rules.columns_read(&columns);
        let nullable = columns.names.iter().map(|n| rules.is_nullable(n)).collect();
        Ok(Schema {
            header,
            fields: kinds,
            id_field,
            columns,
            read,
            nullable,
            in_order: true,
            input_columns,
            field_of,
        })
    }

    /// The name of the id column (`--id-column`), as the header spells it.
    pub fn id_column(&self) -> &str {
        &self.header[self.id_field]
    }

    /// The field of a record that holds column `column` (of `columns()`), if any.
    pub fn field_of(&self, column: usize) -> Option<usize> {
        // Every input column comes from a field; the windows' columns (after them) do not.
        self.field_of.get(column).copied()
    }

    /// The columns rules can see, in the order rows hold their values.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// This header's schema with the columns of `first` (another input of the same run),
    /// in `first`'s order: rows of both then hold the same values at the same places, for
    /// the same compiled rules. The two headers must have the same names, in any order;
    /// else the error names what one has and the other lacks. `name` and `first_name`
    /// are what messages call the two inputs.
    pub fn aligned_to(&self, first: &Schema, name: &str, first_name: &str) -> Result<Schema> {
        let mine: HashSet<&str> = self.header.iter().map(String::as_str).collect();
        let theirs: HashSet<&str> = first.header.iter().map(String::as_str).collect();
        if mine != theirs {
            let list = |names: Vec<&String>| {
                let shown: Vec<String> = names.iter().take(8).map(|n| format!("{n:?}")).collect();
                let more = names.len().saturating_sub(8);
                if more > 0 {
                    format!("{}, … {more} more", shown.join(", "))
                } else {
                    shown.join(", ")
                }
            };
            let missing: Vec<&String> = first
                .header
                .iter()
                .filter(|h| !mine.contains(h.as_str()))
                .collect();
            let extra: Vec<&String> = self
                .header
                .iter()
                .filter(|h| !theirs.contains(h.as_str()))
                .collect();
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!("it lacks {}", list(missing)));
            }
            if !extra.is_empty() {
                why.push(format!("it has {} too", list(extra)));
            }
            bail!(
                "{name}:1: the header has other columns than {first_name}'s: {} \
                 (inputs of one run need the same columns, in any order)",
                why.join("; ")
            );
        }
        let fields: Vec<Field> = self
            .header
            .iter()
            .map(|h| match first.columns.index(h) {
                Some(c) => Field::Column(c),
                None => Field::Hidden,
            })
            .collect();
        let columns_in_field_order = fields.iter().filter_map(|f| match f {
            Field::Column(c) => Some(*c),
            Field::Hidden => None,
        });
        let in_order = columns_in_field_order.eq(0..first.input_columns);
        let field_of = field_of_columns(&fields, first.input_columns);
        Ok(Schema {
            header: self.header.clone(),
            fields,
            id_field: self.id_field,
            columns: first.columns.clone(),
            read: first.read.clone(),
            nullable: first.nullable.clone(),
            in_order,
            input_columns: first.input_columns,
            field_of,
        })
    }
}

/// Per input column, the index of the field that holds it.
fn field_of_columns(fields: &[Field], input_columns: usize) -> Vec<usize> {
    let mut field_of = vec![0; input_columns];
    for (i, field) in fields.iter().enumerate() {
        if let Field::Column(c) = *field {
            field_of[c] = i;
        }
    }
    field_of
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

/// The reason a flawed record gives, in rejects and messages.
pub fn flaw_reason(flaw: Flaw, max_record: usize) -> String {
    match flaw {
        Flaw::UnclosedQuote => flaw.to_string(),
        Flaw::TooLong { .. } => format!("record is larger than {}", display_size(max_record)),
    }
}

/// Strings up to this length are cached; longer ones are rarely repeated.
const CACHED_LEN: usize = 32;
/// Slots per cached column: a direct-mapped table, so memory is bounded whatever the data.
const CACHE_SLOTS: usize = 256;

/// Recent values of one string column. Columns such as a country or a merchant category
/// take few values: handing out a shared string saves an allocation per field. (Worker
/// processes use it too, for the strings of the rows they are sent.)
#[derive(Debug, Clone)]
pub(crate) struct StringCache {
    slots: Vec<Option<ImmutableString>>,
}

impl StringCache {
    pub(crate) fn new() -> StringCache {
        StringCache {
            slots: vec![None; CACHE_SLOTS],
        }
    }

    pub(crate) fn get(&mut self, text: &str) -> ImmutableString {
        if text.len() > CACHED_LEN {
            return ImmutableString::from(text);
        }
        // FNV-1a: short keys, and no need to resist chosen collisions (a miss only costs
        // an allocation).
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let slot = &mut self.slots[(hash as usize) % CACHE_SLOTS];
        match slot {
            Some(s) if s.as_str() == text => s.clone(),
            _ => slot.insert(ImmutableString::from(text)).clone(),
        }
    }
}

/// The value of one field of a column of type `kind`, or why it is not one (the message's
/// tail, e.g. `is not a float`): `()` for an empty field of a `nullable` column; else the
/// typed value when `keep` (a string from `cache` when there is one), or `()` once the
/// field is checked. Thread lanes and process workers build every value they evaluate
/// with this one function, so both executors see equal values.
pub(crate) fn field_value(
    kind: ColumnType,
    nullable: bool,
    keep: bool,
    cache: Option<&mut StringCache>,
    field: &[u8],
) -> Result<Dynamic, &'static str> {
    if field.is_empty() && nullable {
        return Ok(Dynamic::UNIT);
    }
    let text = std::str::from_utf8(field).map_err(|_| "is not valid UTF-8")?;
    Ok(match (kind, cache) {
        (ColumnType::String, _) if !keep => Dynamic::UNIT,
        (ColumnType::String, Some(cache)) => Dynamic::from(cache.get(text)),
        (ColumnType::String, None) => Dynamic::from(ImmutableString::from(text)),
        (kind, _) if keep => kind.value_of(text)?,
        (kind, _) => {
            kind.check(text)?;
            Dynamic::UNIT
        }
    })
}

/// Keeps a field of a read column in `kept` for a worker, checked as `field_value` checks
/// it (the same errors, in the same order): an empty field of a `nullable` column as no
/// bytes; an int or a float as its value's 8 little-endian bytes (the worker parses no
/// text: the lane's parse, which the check needs anyway, is the only one); a bool as one
/// byte; a string as its bytes. `kept_value` turns them back into `field_value`'s value.
pub(crate) fn keep_field(
    kept: &mut RawFields,
    kind: ColumnType,
    nullable: bool,
    field: &[u8],
) -> Result<(), &'static str> {
    if field.is_empty() && nullable {
        kept.push(&[]);
        return Ok(());
    }
    match kind.parse_field(field)? {
        Parsed::Int(i) => kept.push(&i.to_le_bytes()),
        Parsed::Float(f) => kept.push(&f.to_bits().to_le_bytes()),
        Parsed::Bool(b) => kept.push(&[u8::from(b)]),
        Parsed::Str(s) => kept.push(s.as_bytes()),
    }
    Ok(())
}

/// The value of a field `keep_field` kept (`kept`: its bytes): the value `field_value`
/// builds from the field itself (a string from `cache`). An error only for bytes
/// `keep_field` never writes (a worker's decoder reports it as a protocol error).
// Inlined into the worker's decoder: its result then never makes a round trip through
// memory (the value was loaded back from the stack right after each call: a stall).
#[inline(always)]
pub(crate) fn kept_value(
    kind: ColumnType,
    nullable: bool,
    cache: &mut StringCache,
    kept: &[u8],
) -> Result<Dynamic, &'static str> {
    if kept.is_empty() && nullable {
        return Ok(Dynamic::UNIT);
    }
    let eight = || <[u8; 8]>::try_from(kept).map_err(|_| "is not 8 bytes");
    Ok(match kind {
        ColumnType::Int => Dynamic::from_int(i64::from_le_bytes(eight()?)),
        ColumnType::Float => Dynamic::from_float(f64::from_bits(u64::from_le_bytes(eight()?))),
        ColumnType::Bool => match kept {
            [0] => Dynamic::from_bool(false),
            [1] => Dynamic::from_bool(true),
            _ => return Err("is not a kept bool"),
        },
        ColumnType::String => {
            Dynamic::from(cache.get(std::str::from_utf8(kept).map_err(|_| "is not valid UTF-8")?))
        }
    })
}

/// One lane's typing state: a splitter, rows to reuse, string caches.
pub struct Typer {
    schema: Arc<Schema>,
    splitter: Splitter,
    max_record: usize,
    /// Rows of earlier tasks, their buffers kept for the next ones.
    spare: Vec<Row>,
    /// Per column: a cache for read string columns.
    strings: Vec<Option<StringCache>>,
    /// Set by `with_raw_fields`.
    raw: Option<RawMode>,
}

/// What a typer for the process executor keeps (`Typer::with_raw_fields`).
struct RawMode {
    /// The input columns some rule reads, whose fields are kept as bytes.
    columns: Vec<usize>,
    /// Whether the rows get the input columns' values too (else they hold only the
    /// windows' values: `RawFields::first_value`).
    values: bool,
}

impl Typer {
    pub fn new(schema: Arc<Schema>, config: &framer::Config) -> Typer {
        let strings = (0..schema.columns.names.len())
            .map(|c| {
                (schema.read[c] && schema.columns.types[c] == ColumnType::String)
                    .then(StringCache::new)
            })
            .collect();
        Typer {
            schema,
            splitter: Splitter::new(config),
            max_record: config.max_record(),
            spare: Vec::new(),
            strings,
            raw: None,
        }
    }

    /// A typer for the process executor: `type_batch` still checks every field (a bad
    /// row is found and reported here, as with threads), but keeps the fields of the
    /// input columns some rule reads in the batch's `RawFields` (`keep_field`), for the
    /// workers to make values of; their values are built here only when `values` (the
    /// results' format reads them: reasons, `--explain`); else rows hold only the
    /// windows' values, appended as always (`RawFields::first_value`).
    pub fn with_raw_fields(mut self, values: bool) -> Typer {
        let schema = &*self.schema;
        let columns = (0..schema.input_columns)
            .filter(|&c| schema.read[c])
            .collect();
        if !values {
            self.strings.iter_mut().for_each(|cache| *cache = None);
        }
        self.raw = Some(RawMode { columns, values });
        self
    }

    /// Types `records` into `rows` (replacing what it held) and their bad rows into `bad`,
    /// both in input order.
    pub fn type_records<'a>(
        &mut self,
        records: impl Iterator<Item = Record<'a>>,
        rows: &mut Vec<Row>,
        bad: &mut Vec<BadRow>,
    ) {
        self.type_records_then(records, rows, bad, |_, _, _| Ok(()));
    }

    /// `type_records`, and `then(k, body, row)` on each row typed (`k`: its index among
    /// `records`; `body`: its record's bytes): it may add values or make it a bad row (the
    /// windows' checks).
    pub fn type_records_then<'a>(
        &mut self,
        records: impl Iterator<Item = Record<'a>>,
        rows: &mut Vec<Row>,
        bad: &mut Vec<BadRow>,
        then: impl FnMut(usize, &[u8], &mut Row) -> Result<(), String>,
    ) {
        let mut raw = RawFields::default();
        self.fill(records, rows, &mut raw, bad, then);
    }

    /// `type_records_then` into `batch`: its rows, and its raw fields when this typer
    /// keeps them (`with_raw_fields`). What lanes call.
    pub fn type_batch<'a>(
        &mut self,
        records: impl Iterator<Item = Record<'a>>,
        batch: &mut Batch,
        bad: &mut Vec<BadRow>,
        then: impl FnMut(usize, &[u8], &mut Row) -> Result<(), String>,
    ) {
        batch.raw.clear();
        batch.raw.columns.clear();
        batch.raw.first_value = 0;
        if let Some(mode) = &self.raw {
            batch.raw.columns.extend_from_slice(&mode.columns);
            if !mode.values {
                batch.raw.first_value = self.schema.input_columns;
            }
        }
        self.fill(records, &mut batch.rows, &mut batch.raw, bad, then);
    }

    fn fill<'a>(
        &mut self,
        records: impl Iterator<Item = Record<'a>>,
        rows: &mut Vec<Row>,
        raw: &mut RawFields,
        bad: &mut Vec<BadRow>,
        mut then: impl FnMut(usize, &[u8], &mut Row) -> Result<(), String>,
    ) {
        self.spare.append(rows);
        for (k, record) in records.enumerate() {
            let line = record.start.line;
            let body = match record.body {
                Ok(body) => body,
                Err(flaw) => {
                    bad.push(BadRow {
                        line,
                        reason: flaw_reason(flaw, self.max_record),
                        raw: Vec::new(),
                    });
                    continue;
                }
            };
            let mut row = self.spare.pop().unwrap_or_else(|| Row {
                id: String::new(),
                values: Vec::new(),
            });
            let mark = raw.fields();
            match self.type_record(body, &mut row, raw) {
                Ok(true) => match then(k, body, &mut row) {
                    Ok(()) => rows.push(row),
                    Err(reason) => {
                        raw.truncate_fields(mark);
                        self.spare.push(row);
                        let mut raw = Vec::new();
                        crate::format::record(&mut raw, self.splitter.split(body).iter());
                        bad.push(BadRow { line, reason, raw });
                    }
                },
                Ok(false) => self.spare.push(row),
                Err((reason, bad_raw)) => {
                    // Fields kept before the bad one go too.
                    raw.truncate_fields(mark);
                    self.spare.push(row);
                    bad.push(BadRow {
                        line,
                        reason,
                        raw: bad_raw,
                    });
                }
            }
        }
    }

    /// Types one record into `row` (and its kept fields into `kept`, when raw): `Ok(false)`
    /// for a record that is no row (one empty field: a blank line as the csv crate sees
    /// it), `Err((reason, raw))` for a bad row.
    fn type_record(
        &mut self,
        body: &[u8],
        row: &mut Row,
        kept: &mut RawFields,
    ) -> Result<bool, (String, Vec<u8>)> {
        // Raw without values: every field is checked, no value is built.
        let build = self.raw.as_ref().is_none_or(|mode| mode.values);
        // Fields in column order and no value built: the read columns are kept as they
        // are checked, each parsed once. Else they are kept once the row is known good.
        let inline = !build && self.raw.is_some() && self.schema.in_order;
        let fields = self.splitter.split(body);
        let bad = |reason: String| {
            let mut raw = Vec::new();
            crate::format::record(&mut raw, fields.iter());
            (reason, raw)
        };
        let typed = type_fields(
            &self.schema,
            &mut self.strings,
            fields,
            row,
            build,
            inline.then_some(&mut *kept),
        )
        .map_err(bad)?;
        if let (true, Some(mode), false) = (typed, &self.raw, inline) {
            let schema = &*self.schema;
            for &c in &mode.columns {
                let field = fields.get(schema.field_of[c]).unwrap_or_default();
                // Checked above, so this cannot fail; if it did, the row is bad, not lost.
                keep_field(kept, schema.columns.types[c], schema.nullable[c], field).map_err(
                    |why| {
                        bad(format!(
                            "column {:?}: {:?} {why}",
                            schema.header[schema.field_of[c]],
                            String::from_utf8_lossy(field)
                        ))
                    },
                )?;
            }
        }
        Ok(typed)
    }

    /// Types one record's `body` into `row`, as `type_records` would: whether it is a row
    /// (false for no row and for a bad one; the windows' filters read rows the lanes'
    /// typer has accepted already).
    pub fn type_body(&mut self, body: &[u8], row: &mut Row) -> bool {
        let mut unused = RawFields::default();
        matches!(self.type_record(body, row, &mut unused), Ok(true))
    }
}

/// Types a record's `fields`: `Ok(false)` for a record that is no row, `Err(reason)` for a
/// bad row. The row gets its id, and its values when `build` (else it holds no input
/// column's value: raw fields carry them). Every field is checked either way, by the same
/// code. With `kept` (fields in column order, no value built), the read columns' fields
/// are checked by `keep_field` and kept there, in column order (the caller takes them
/// back on `Err`).
fn type_fields(
    schema: &Schema,
    strings: &mut [Option<StringCache>],
    fields: Fields<'_>,
    row: &mut Row,
    build: bool,
    mut kept: Option<&mut RawFields>,
) -> Result<bool, String> {
    if fields.len() == 1 && fields.get(0).is_some_and(<[u8]>::is_empty) {
        return Ok(false);
    }
    if fields.len() != schema.fields.len() {
        return Err(format!(
            "expected {} fields, found {}",
            schema.fields.len(),
            fields.len()
        ));
    }
    let id = fields.get(schema.id_field).unwrap_or_default();
    if id.is_empty() {
        return Err(format!(
            "column {:?} is empty",
            schema.header[schema.id_field]
        ));
    }
    // Each value at its column's place: the fields of an input aligned to another
    // (`Schema::aligned_to`) may come in another order.
    row.values.clear();
    if build && !schema.in_order {
        row.values.resize(schema.input_columns, Dynamic::UNIT);
    }
    for (i, (field, value)) in schema.fields.iter().zip(fields.iter()).enumerate() {
        let Field::Column(c) = *field else { continue };
        let bad = |why| {
            format!(
                "column {:?}: {:?} {why}",
                schema.header[i],
                String::from_utf8_lossy(value)
            )
        };
        if schema.read[c]
            && let Some(kept) = kept.as_deref_mut()
        {
            // Checked and kept, no value built.
            keep_field(kept, schema.columns.types[c], schema.nullable[c], value).map_err(bad)?;
            continue;
        }
        // Checked, not kept, where no rule reads it.
        let typed = field_value(
            schema.columns.types[c],
            schema.nullable[c],
            build && schema.read[c],
            strings[c].as_mut(),
            value,
        );
        match typed {
            Ok(v) if build => {
                if schema.in_order {
                    row.values.push(v);
                } else {
                    row.values[c] = v;
                }
            }
            // Checked only.
            Ok(_) => {}
            Err(why) => return Err(bad(why)),
        }
    }
    // The id is valid UTF-8: it is an identifier column and was typed above.
    row.id.clear();
    row.id.push_str(&String::from_utf8_lossy(id));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer::{Config, Framer};
    use std::io::Cursor;
    use std::time::Duration;

    fn rules() -> RuleSet {
        let text = "[columns]\nid = \"int\"\namount = \"float\"\nn = \"int\"\n\
                    [[rule]]\nid = 1\nname = \"r\"\nwhen = \"amount > 1.0 && country == \\\"IR\\\"\"\n";
        crate::rules::file::parse(text, Duration::from_secs(1)).unwrap()
    }

    /// Every record after the header of `csv`, typed: (rows, bad rows).
    fn typed(csv: impl AsRef<[u8]>, config: Config) -> (Vec<Row>, Vec<BadRow>) {
        let mut framer = Framer::new(Cursor::new(csv.as_ref().to_vec()), config);
        let mut chunks = Vec::new();
        while let Some(chunk) = framer.next_chunk().unwrap() {
            chunks.push(chunk);
        }
        let mut splitter = Splitter::new(&config);
        let header = chunks[0].records().next().unwrap().body.unwrap();
        let schema = Schema::from_header(splitter.split(header), "tx.csv", &rules()).unwrap();
        let mut typer = Typer::new(Arc::new(schema), &config);
        let (mut all, mut bad, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        for (i, chunk) in chunks.iter().enumerate() {
            // Two tasks per chunk, as lanes take them.
            let from = usize::from(i == 0);
            let half = from + (chunk.len() - from) / 2;
            for range in [from..half, half..chunk.len()] {
                let records = chunk.records().skip(range.start).take(range.len());
                typer.type_records(records, &mut rows, &mut bad);
                all.extend(rows.iter().cloned());
            }
        }
        (all, bad)
    }

    #[test]
    fn values_are_built_for_read_columns_only_and_typed() {
        let (rows, bad) = typed(
            "\u{feff}id,amount,country,n,note,\"x y\"\r\n1,2.5,IR,3,free,\"a, \"\"b\"\"\nc\"\r\n2,3,US,4,x,y\r\n",
            Config::default(),
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, "1");
        assert_eq!(rows[0].values.len(), 5, "`x y` is not a variable");
        assert_eq!(rows[0].values[1].as_float(), Ok(2.5));
        assert_eq!(rows[0].values[2].clone().into_string().unwrap(), "IR");
        assert!(rows[0].values[3].is_unit(), "n is checked, not read");
        assert!(rows[0].values[4].is_unit());
        assert_eq!(rows[1].values[2].clone().into_string().unwrap(), "US");
    }

    #[test]
    fn bad_rows_name_line_column_and_value_in_input_order() {
        // Small chunks: the bad rows fall in several chunks and tasks.
        let config = Config::default().with_chunk_size(8);
        let (rows, bad) = typed(
            &b"id,amount\n1,12x\n,5\n3\n\n4,1,9\n5,\"6\n7\"\n6,\xff\n7,1\n8,\"9"[..],
            config,
        );
        let reasons: Vec<String> = bad
            .iter()
            .map(|b| format!("{}: {}", b.line, b.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "2: column \"amount\": \"12x\" is not a float",
                "3: column \"id\" is empty",
                "4: expected 2 fields, found 1",
                "6: expected 2 fields, found 3",
                "7: column \"amount\": \"6\\n7\" is not a float",
                "9: column \"amount\": \"\u{fffd}\" is not valid UTF-8",
                "11: quote opened here is never closed",
            ]
        );
        assert_eq!(bad[0].raw, b"1,12x");
        assert_eq!(bad[4].raw, b"5,\"6\n7\"", "raw is the fields re-encoded");
        assert_eq!(bad[6].raw, b"", "a flawed record has no fields");
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["7"]);
    }

    #[test]
    fn a_too_long_record_names_the_limit() {
        let config = Config::default().with_max_record(1024);
        let csv = format!("id,amount\n1,{}\n2,3\n", "9".repeat(2000));
        let (rows, bad) = typed(&csv, config);
        assert_eq!(rows.len(), 1);
        assert_eq!(bad[0].line, 2);
        assert_eq!(bad[0].reason, "record is larger than 1 KiB");
    }

    #[test]
    fn headers_without_id_or_with_a_name_twice_are_refused() {
        let mut splitter = Splitter::new(&Config::default());
        let mut err = |header: &str| {
            Schema::from_header(splitter.split(header.as_bytes()), "tx.csv", &rules())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("name,amount"),
            "tx.csv:1: no `id` column in the header (found \"name\", \"amount\")"
        );
        assert_eq!(
            err("id,a,b,a,b"),
            "tx.csv:1: column \"a\" appears twice in the header"
        );
    }

    #[test]
    fn an_input_aligned_to_another_gives_its_values_in_the_first_ones_places() {
        let config = Config::default();
        let mut splitter = Splitter::new(&config);
        let rules = rules();
        let first =
            Schema::from_header(splitter.split(b"id,amount,country"), "a.csv", &rules).unwrap();
        let second =
            Schema::from_header(splitter.split(b"country,id,amount"), "b.csv", &rules).unwrap();
        let aligned = second.aligned_to(&first, "b.csv", "a.csv").unwrap();
        assert!(first.in_order && !aligned.in_order);
        assert_eq!(aligned.columns(), first.columns());
        let mut typer = Typer::new(Arc::new(aligned), &config);
        let mut framer = Framer::new(Cursor::new(b"IR,7,2.5\n".to_vec()), config);
        let chunk = framer.next_chunk().unwrap().unwrap();
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        typer.type_records(chunk.records(), &mut rows, &mut bad);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows[0].id, "7");
        assert_eq!(rows[0].values[1].as_float(), Ok(2.5));
        assert_eq!(rows[0].values[2].clone().into_string().unwrap(), "IR");
        // The same order is no realignment at all.
        let same = first.aligned_to(&first, "c.csv", "a.csv").unwrap();
        assert!(same.in_order);
        let other =
            Schema::from_header(splitter.split(b"id,amt,country,x"), "c.csv", &rules).unwrap();
        assert_eq!(
            other
                .aligned_to(&first, "c.csv", "a.csv")
                .unwrap_err()
                .to_string(),
            "c.csv:1: the header has other columns than a.csv's: it lacks \"amount\"; it has \
             \"amt\", \"x\" too (inputs of one run need the same columns, in any order)"
        );
    }

    /// Equal values: same type, same bits (a float's sign too), same text.
    fn same_value(a: &Dynamic, b: &Dynamic) -> bool {
        a.type_name() == b.type_name()
            && match (a.as_float(), b.as_float()) {
                (Ok(x), Ok(y)) => x.to_bits() == y.to_bits(),
                _ => a.to_string() == b.to_string(),
            }
    }

    #[test]
    fn raw_fields_type_into_the_values_a_thread_lane_builds() {
        let rules = crate::rules::file::parse(
            "[columns]\nid = \"int\"\namount = \"float?\"\nn = \"int\"\n\
             [[rule]]\nid = 1\nname = \"r\"\nwhen = \"amount > 1.0 && country == \\\"IR\\\" && n > 0\"\n",
            Duration::from_secs(1),
        )
        .unwrap();
        // Quoting, CRLF, an empty nullable field, an empty string, bad rows between.
        let csv = "id,note,amount,country,n\r\n\
                   1,x,2.5,IR,3\r\n\
                   2,\"a,\"\"b\"\"\r\nc\",,\"Zü,\"\"r\"\"\nich\",-4\r\n\
                   3,y,1x,IR,1\r\n\
                   4,z,-0.0,,0\n\
                   \n\
                   5,w,1e3,KP,2\n\
                   6,v,7,\"\",9";
        let config = Config::default().with_chunk_size(16);
        let mut framer = Framer::new(Cursor::new(csv.as_bytes().to_vec()), config);
        let mut chunks = Vec::new();
        while let Some(chunk) = framer.next_chunk().unwrap() {
            chunks.push(chunk);
        }
        let header = chunks[0].records().next().unwrap().body.unwrap();
        let mut splitter = Splitter::new(&config);
        let schema =
            Arc::new(Schema::from_header(splitter.split(header), "t.csv", &rules).unwrap());
        let columns = schema.columns().clone();
        let mut lanes = [
            Typer::new(Arc::clone(&schema), &config),
            Typer::new(Arc::clone(&schema), &config).with_raw_fields(false),
            Typer::new(Arc::clone(&schema), &config).with_raw_fields(true),
        ];
        let mut seen: [(Vec<Row>, Vec<BadRow>, Vec<RawFields>); 3] = Default::default();
        for (k, (lane, seen)) in lanes.iter_mut().zip(&mut seen).enumerate() {
            for (i, chunk) in chunks.iter().enumerate() {
                let mut batch = Batch::default();
                let from = usize::from(i == 0);
                lane.type_batch(
                    chunk.records().skip(from),
                    &mut batch,
                    &mut seen.1,
                    |_, _, _| Ok(()),
                );
                seen.0.extend(batch.rows.iter().cloned());
                assert_eq!(
                    batch.raw.first_value,
                    if k == 1 { columns.names.len() } else { 0 }
                );
                seen.2.push(batch.raw.clone());
            }
        }
        let [
            (rows, bad, _),
            (raw_rows, raw_bad, raws),
            (both_rows, _, both_raws),
        ] = seen;
        assert_eq!(bad, raw_bad, "the same bad rows, found the same way");
        assert_eq!(
            bad.iter().map(|b| b.line).collect::<Vec<_>>(),
            [6],
            "{bad:?}"
        );
        let ids: Vec<&str> = raw_rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "4", "5", "6"]);
        // Kept as they are checked, or once the row is known good (values built too): the
        // same fields.
        let fields = |raws: &[RawFields]| -> Vec<(Vec<u8>, Vec<usize>)> {
            raws.iter()
                .map(|r| (r.bytes.clone(), r.ends.clone()))
                .collect()
        };
        assert_eq!(fields(&raws), fields(&both_raws));
        // The fields kept: amount, country and n (read), unquoted, in column order;
        // numbers as their values' bytes.
        let read: Vec<usize> = ["amount", "country", "n"]
            .iter()
            .map(|n| columns.index(n).unwrap())
            .collect();
        let kept: Vec<Vec<Vec<u8>>> = raws
            .iter()
            .flat_map(|raw| {
                assert_eq!(raw.columns, read);
                (0..raw.fields() / raw.columns.len()).map(move |r| {
                    (0..raw.columns.len())
                        .map(|k| raw.field(r, k).to_vec())
                        .collect()
                })
            })
            .collect();
        assert_eq!(
            kept[1],
            [
                b"".to_vec(),
                "Zü,\"r\"\nich".as_bytes().to_vec(),
                (-4i64).to_le_bytes().to_vec()
            ]
        );
        assert_eq!(
            kept[2],
            [
                (-0.0f64).to_bits().to_le_bytes().to_vec(),
                Vec::new(),
                0i64.to_le_bytes().to_vec()
            ]
        );
        assert_eq!(kept.len(), rows.len());
        // Typed from the kept bytes, they are the values a thread lane built.
        let mut cache = StringCache::new();
        for ((row, raw_row), (both, fields)) in
            rows.iter().zip(&raw_rows).zip(both_rows.iter().zip(&kept))
        {
            assert_eq!(row.id, raw_row.id);
            assert!(raw_row.values.is_empty(), "no value built in the lane");
            for (c, field) in read.iter().zip(fields) {
                let worker =
                    kept_value(columns.types[*c], schema.nullable[*c], &mut cache, field).unwrap();
                assert!(
                    same_value(&worker, &row.values[*c]),
                    "{worker:?} {:?}",
                    row.values[*c]
                );
            }
            for (a, b) in row.values.iter().zip(&both.values) {
                assert!(same_value(a, b), "values kept too when asked: {a:?} {b:?}");
            }
        }
        assert!(rows[1].values[read[0]].is_unit(), "empty nullable amount");
        assert_eq!(rows[3].values[read[0]].as_float(), Ok(1000.0));
    }

    #[test]
    fn long_numbers_are_kept_as_their_values_and_type_into_the_same_values() {
        let rules = crate::rules::file::parse(
            "[columns]\nid = \"int\"\nq = \"int\"\nf = \"float?\"\n\
             [[rule]]\nid = 1\nname = \"r\"\nwhen = \"q > 0 && f != () && s != \\\"\\\"\"\n",
            Duration::from_secs(1),
        )
        .unwrap();
        let zeros = "0".repeat(5000);
        let digits = "9".repeat(400);
        // (q, f): leading zeros, a plus sign, a float of many digits, -0 and infinity
        // spelled long, an exponent with leading zeros; and a long string, kept as it is.
        let pairs = [
            (format!("{zeros}7"), format!("-0.{zeros}")),
            (
                format!("+{zeros}9223372036854775807"),
                format!("{digits}.5"),
            ),
            (
                format!("-{zeros}9223372036854775808"),
                format!("0.{zeros}1"),
            ),
            (zeros.clone(), format!("1e{zeros}309")),
            ("5".to_string(), format!("-{digits}e{digits}")),
            ("6".to_string(), format!("0.{digits}e-{zeros}300")),
        ];
        let mut csv = "id,q,f,s\n".to_string();
        let long_text = format!("\"{}\"\"\"", "x".repeat(100));
        for (i, (q, f)) in pairs.iter().enumerate() {
            csv.push_str(&format!("{i},{q},{f},{long_text}\n"));
        }
        let config = Config::default();
        let mut framer = Framer::new(Cursor::new(csv.into_bytes()), config);
        let chunk = framer.next_chunk().unwrap().unwrap();
        let mut splitter = Splitter::new(&config);
        let header = chunk.records().next().unwrap().body.unwrap();
        let schema =
            Arc::new(Schema::from_header(splitter.split(header), "t.csv", &rules).unwrap());
        let (mut thread_lane, mut raw_lane) = (
            Typer::new(Arc::clone(&schema), &config),
            Typer::new(Arc::clone(&schema), &config).with_raw_fields(false),
        );
        let (mut rows, mut raw, mut bad) = (Batch::default(), Batch::default(), Vec::new());
        thread_lane.type_batch(chunk.records().skip(1), &mut rows, &mut bad, |_, _, _| {
            Ok(())
        });
        raw_lane.type_batch(
            chunk.records().skip(1),
            &mut raw,
            &mut bad,
            |_, _, _| Ok(()),
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.rows.len(), pairs.len());
        let mut cache = StringCache::new();
        for (r, row) in rows.rows.iter().enumerate() {
            for (k, &c) in raw.raw.columns.iter().enumerate() {
                let field = raw.raw.field(r, k);
                let typed = kept_value(
                    schema.columns.types[c],
                    schema.nullable[c],
                    &mut cache,
                    field,
                )
                .unwrap();
                assert!(same_value(&typed, &row.values[c]), "{typed:?} {c}");
                let short = if schema.columns.types[c] == ColumnType::String {
                    field.len() == 101
                } else {
                    field.len() == 8
                };
                assert!(short, "{:?}", String::from_utf8_lossy(field));
            }
        }
        let f = |r: usize| rows.rows[r].values[2].as_float().unwrap();
        assert!(f(0) == 0.0 && f(0).is_sign_negative());
        assert_eq!(f(3), f64::INFINITY);
        assert_eq!(f(4), f64::NEG_INFINITY);
        assert_eq!(rows.rows[2].values[1].as_int(), Ok(i64::MIN));
    }

    #[test]
    fn the_string_cache_gives_equal_strings_and_survives_collisions() {
        let mut cache = StringCache::new();
        let words: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
        for _ in 0..2 {
            for w in &words {
                assert_eq!(cache.get(w).as_str(), w);
            }
        }
        let long = "x".repeat(100);
        assert_eq!(cache.get(&long).as_str(), long);
    }
}
