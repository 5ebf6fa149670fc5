//! The worker protocol: how the supervisor and a `txguard worker` process talk, over the
//! worker's stdin (requests) and stdout (replies).
//!
//! Every message is one frame: `[length: u32 LE][kind: u8][payload]`, where `length`
//! counts the kind byte and the payload. Integers are little-endian; strings are a `u32`
//! byte length then UTF-8; values and outcomes carry a one-byte tag. A batch sends each
//! row's id as the hash its random draws are keyed by, and each sent column either as
//! tagged values (int, float, bool, string, unit) or, for the input columns the lanes
//! keep (`model::RawFields`), as kept fields: every row's field lengths, then all their
//! bytes in one block (version 5; version 4 sent ids and tagged raw text per field), which
//! the worker turns into values with `typing::kept_value` (so the supervisor's lanes build
//! no value, and no field is parsed twice). The supervisor opens
//! with `Setup` (magic + version + what the worker needs to rebuild the evaluator), the
//! worker answers `Ready` (magic + version) and then one `Outcomes` frame or more per
//! `Batch`. The version is also checked before any frame, on the worker's command line
//! (`txguard worker --protocol N`); any mismatch is an error, never a guess.
//!
//! Decoding never trusts a length: every read is bounds-checked, counts never size an
//! allocation beyond the bytes actually present (a batch's rows are as wide as the
//! setup's columns, and a batch of another width is refused), and a frame longer than the
//! direction's limit is refused before it is read.

mod frame;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::time::Duration;

use rhai::Dynamic;

use crate::model::{ColumnType, Columns, DETAIL_MAX_BYTES, Outcome, RawFields, Row};
use crate::typing::{self, StringCache};

use frame::{Cursor, put_bytes, put_duration, put_str, put_u32, put_u64};
pub use frame::{FrameError, ProtocolError, begin_frame, end_frame, read_frame};

/// The protocol version; bump it with any change to a frame's layout.
pub const VERSION: u32 = 5;
/// Opens `Setup` and `Ready`: a worker that is not a txguard worker is told apart at once.
pub const MAGIC: [u8; 4] = *b"TXGW";

/// Largest frame the supervisor sends with the default `--max-record-size` (64 MiB). A
/// batch request is split by the supervisor until its frame fits (`supervisor`), so this
/// bounds what a worker holds, whatever the batch size; it must hold one row of the
/// largest record the input allows plus its encoding's few bytes per field: a row that
/// still does not fit is an `error`. Workers' hard memory limit makes room for it
/// (`budget::worker_data_limit`).
pub const MAX_TO_WORKER: usize = 80 << 20;

/// The largest frame the supervisor sends, and its workers read (`txguard worker
/// --max-frame`), when a record may be `max_record` bytes: a quarter more than the record
/// (a read field is at most its bytes, or 8 for a number, plus a 4-byte length), never
/// less than `MAX_TO_WORKER` nor more than a frame's u32 length says. With a raised
/// `--max-record-size` a row as large as the thread executor takes is then evaluated by
/// workers too (up to 4 GiB).
pub fn max_to_worker(max_record: usize) -> usize {
    MAX_TO_WORKER
        .max(max_record.saturating_add(max_record / 4))
        .min(u32::MAX as usize)
}
/// Largest frame a worker sends. Its frames are bounded by construction: an `Outcomes`
/// frame closes once past `OUTCOMES_CHUNK`, and one outcome is at most a capped detail
/// (`model::DETAIL_MAX_BYTES`, re-capped by `put_outcome`); a `Fatal` message is cut at
/// `FATAL_MAX_BYTES`. No rule output can make a frame reach this.
pub const MAX_FROM_WORKER: usize = 1 << 20;
/// Longest message of a `Fatal` frame.
pub const FATAL_MAX_BYTES: usize = 64 << 10;
/// A worker closes an `Outcomes` frame once its payload passes this size.
pub const OUTCOMES_CHUNK: usize = 16 << 10;

// Frame kinds. Requests have the high bit clear, replies have it set.
pub const KIND_SETUP: u8 = 0x01;
pub const KIND_BATCH: u8 = 0x02;
pub const KIND_READY: u8 = 0x81;
pub const KIND_OUTCOMES: u8 = 0x82;
pub const KIND_FATAL: u8 = 0x83;

// Value tags.
const VALUE_UNIT: u8 = 0;
const VALUE_INT: u8 = 1;
const VALUE_FLOAT: u8 = 2;
const VALUE_FALSE: u8 = 3;
const VALUE_TRUE: u8 = 4;
const VALUE_STRING: u8 = 5;

// Outcome tags.
const OUTCOME_TRUE: u8 = 0;
const OUTCOME_FALSE: u8 = 1;
const OUTCOME_ERROR: u8 = 2;
const OUTCOME_TIMEOUT: u8 = 3;

/// What a worker needs to rebuild the run's evaluator: the first frame it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The rules file's text, parsed by the worker as the supervisor parsed it.
    pub rules_text: String,
    pub default_timeout: Duration,
    /// Bytes one evaluation may hold: the supervisor's resolved limit (flag or file).
    pub memory_limit: u64,
    pub columns: Columns,
    pub seed: u64,
    /// The bytes of every `[lists.*]` file, in declaration order (since version 3): read
    /// once by the supervisor, parsed by each worker as the supervisor parsed them.
    pub list_files: Vec<Vec<u8>>,
}

pub fn encode_setup(out: &mut Vec<u8>, setup: &Setup) {
    let at = begin_frame(out, KIND_SETUP);
    out.extend_from_slice(&MAGIC);
    put_u32(out, VERSION);
    put_str(out, &setup.rules_text);
    put_duration(out, setup.default_timeout);
    put_u64(out, setup.memory_limit);
    put_u64(out, setup.seed);
    put_u32(out, setup.columns.names.len() as u32);
    for (name, kind) in setup.columns.names.iter().zip(&setup.columns.types) {
        put_str(out, name);
        out.push(match kind {
            ColumnType::Int => 0,
            ColumnType::Float => 1,
            ColumnType::Bool => 2,
            ColumnType::String => 3,
        });
    }
    put_u32(out, setup.list_files.len() as u32);
    for file in &setup.list_files {
        put_u64(out, file.len() as u64);
        out.extend_from_slice(file);
    }
    end_frame(out, at);
}

pub fn decode_setup(payload: &[u8]) -> Result<Setup, ProtocolError> {
    let mut c = Cursor { buf: payload };
    c.magic()?;
    let theirs = c.u32("version")?;
    if theirs != VERSION {
        return Err(ProtocolError::Version {
            ours: VERSION,
            theirs,
        });
    }
    let rules_text = c.str("rules text")?.to_string();
    let default_timeout = c.duration("default timeout")?;
    let memory_limit = c.u64("memory limit")?;
    let seed = c.u64("seed")?;
    let n = c.count("columns", 5)?;
    let mut columns = Columns {
        names: Vec::with_capacity(n),
        types: Vec::with_capacity(n),
    };
    for _ in 0..n {
        columns.names.push(c.str("column name")?.to_string());
        columns.types.push(match c.u8("column type")? {
            0 => ColumnType::Int,
            1 => ColumnType::Float,
            2 => ColumnType::Bool,
            3 => ColumnType::String,
            tag => {
                return Err(ProtocolError::UnknownTag {
                    what: "column type",
                    tag,
                });
            }
        });
    }
    let n = c.count("list files", 8)?;
    let mut list_files = Vec::with_capacity(n);
    for _ in 0..n {
        let len = usize::try_from(c.u64("list file length")?).unwrap_or(usize::MAX);
        list_files.push(c.take(len, "list file")?.to_vec());
    }
    c.finish("setup")?;
    Ok(Setup {
        rules_text,
        default_timeout,
        memory_limit,
        columns,
        seed,
        list_files,
    })
}

/// A batch of work: evaluate, in order, every evaluation index of `ranges`. Index
/// `i * rules + j` is rule `j` on row `i` of the supervisor's batch; `rows[0]` is row
/// `row_base` of it (rows before the first index needed are not sent).
#[derive(Debug, Clone)]
pub struct BatchRequest {
    /// Unique per lane; a worker writes it in its progress slot and every reply.
    pub request: u64,
    pub rules: u32,
    pub row_base: u64,
    pub ranges: Vec<Range<u64>>,
    /// The rows' values; their ids stay empty: a worker needs only `id_hashes`.
    pub rows: Vec<Row>,
    /// Per row, `rules::random_key_hash` of its id, the key of its random draws.
    pub id_hashes: Vec<u64>,
}

/// How a sent column's values travel in a `Batch` frame.
const FORM_KEPT: u8 = 0;
const FORM_VALUE: u8 = 1;

/// Encodes a `Batch` frame. Only the columns with `sent[c]` are in it (listed once with
/// their form, then their values); the others arrive as unit: the supervisor leaves out
/// the columns no rule reads (the worker binds only those a rule names). Each row's id
/// goes as its `rules::random_key_hash` (all a worker needs of it). A sent column that
/// `raw` holds goes as its kept field (`rows[i]` is row `row_base + i` of `raw`): every
/// row's kept-field lengths, then their bytes in one block, copied at once where every
/// kept column is sent; any other as its value (`rows[i].values` starts at column
/// `raw.first_value`), tagged, row after row. Fails only on a row value that no column
/// type produces, a row of another width, a sent column with neither value nor field, or
/// raw fields that lack a row.
#[allow(clippy::too_many_arguments)]
pub fn encode_batch(
    out: &mut Vec<u8>,
    request: u64,
    rules: u32,
    row_base: u64,
    ranges: &[Range<u64>],
    rows: &[Row],
    raw: &RawFields,
    sent: &[bool],
) -> Result<(), ProtocolError> {
    // Per column: where `raw` holds it. One pass over each (not a search of `raw.columns`
    // per column): inputs of 100,000 columns exist, and requests of a few rows too.
    let mut slots: Vec<Option<usize>> = vec![None; sent.len()];
    for (k, &c) in raw.columns.iter().enumerate() {
        if let Some(slot) = slots.get_mut(c) {
            *slot = Some(k);
        }
    }
    let first_raw = usize::try_from(row_base).unwrap_or(usize::MAX);
    let width = raw.columns.len();
    if width > 0
        && first_raw
            .checked_add(rows.len())
            .and_then(|end| end.checked_mul(width))
            .is_none_or(|fields| fields > raw.fields())
    {
        return Err(ProtocolError::Invalid(format!(
            "raw fields of {} rows, not of rows {row_base}..{}",
            raw.fields() / width,
            first_raw.saturating_add(rows.len())
        )));
    }
    let columns = sent.len();
    // The sent columns: kept (`k` in `raw.columns`) or not.
    let sent: Vec<(usize, Option<usize>)> = (0..columns)
        .filter(|&c| sent[c])
        .map(|c| (c, slots[c]))
        .collect();
    let kept: Vec<usize> = sent.iter().filter_map(|&(_, k)| k).collect();
    for row in rows {
        if raw.first_value + row.values.len() != columns {
            return Err(ProtocolError::Invalid(format!(
                "row {:?} has {} values from column {}, not {columns} columns",
                row.id,
                row.values.len(),
                raw.first_value
            )));
        }
    }
    let at = begin_frame(out, KIND_BATCH);
    put_u64(out, request);
    put_u32(out, rules);
    put_u64(out, row_base);
    put_u32(out, ranges.len() as u32);
    for r in ranges {
        put_u64(out, r.start);
        put_u64(out, r.end);
    }
    put_u32(out, columns as u32);
    put_u32(out, sent.len() as u32);
    for &(c, k) in &sent {
        put_u32(out, c as u32);
        out.push(if k.is_some() { FORM_KEPT } else { FORM_VALUE });
    }
    put_u32(out, rows.len() as u32);
    let fields = first_raw * width..(first_raw + rows.len()) * width;
    // A frame's length is a u32: rows whose kept fields alone pass it (possible only with
    // a `--max-record-size` of gigabytes) are refused as too large, as the supervisor
    // refuses a frame past `max_to_worker`, not encoded into a length that wraps.
    let kept_bytes = raw.start(fields.end) - raw.start(fields.start);
    if !kept.is_empty() && kept_bytes > u32::MAX as usize {
        out.truncate(at);
        return Err(ProtocolError::Oversize {
            length: kept_bytes,
            max: u32::MAX as usize,
        });
    }
    out.reserve(rows.len() * 8 + fields.len() * 4 + 4);
    for row in rows {
        put_u64(out, crate::rules::random_key_hash(&row.id));
    }
    if !kept.is_empty() {
        let every = kept.len() == width;
        let mut is_kept = vec![false; width];
        for &k in &kept {
            is_kept[k] = true;
        }
        let mut start = raw.start(fields.start);
        for (i, &end) in raw.ends[fields.clone()].iter().enumerate() {
            if every || is_kept[i % width] {
                let len = u32::try_from(end - start).expect("fields are far below 4 GiB");
                out.extend_from_slice(&len.to_le_bytes());
            }
            start = end;
        }
        if every {
            // The rows' kept fields, as `raw` holds them: one copy.
            put_bytes(
                out,
                &raw.bytes[raw.start(fields.start)..raw.start(fields.end)],
            );
        } else {
            let len_at = out.len();
            put_u32(out, 0);
            for row in 0..rows.len() {
                for &k in &kept {
                    out.extend_from_slice(raw.field(first_raw + row, k));
                }
            }
            let len = u32::try_from(out.len() - len_at - 4).expect("frames are far below 4 GiB");
            out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        }
    }
    for row in rows {
        for &(c, k) in &sent {
            if k.is_some() {
                continue;
            }
            let Some(value) = c
                .checked_sub(raw.first_value)
                .and_then(|v| row.values.get(v))
            else {
                return Err(ProtocolError::Invalid(format!(
                    "column {c} of row {:?} has neither a value nor a raw field",
                    row.id
                )));
            };
            put_value(out, value)?;
        }
    }
    let length = out.len() - at - 4;
    if length > u32::MAX as usize {
        out.truncate(at);
        return Err(ProtocolError::Oversize {
            length,
            max: u32::MAX as usize,
        });
    }
    end_frame(out, at);
    Ok(())
}

fn put_value(out: &mut Vec<u8>, value: &Dynamic) -> Result<(), ProtocolError> {
    // `is_*` tests the tag; a failed `as_*` would build a type name first.
    if value.is_string()
        && let Ok(s) = value.as_immutable_string_ref()
    {
        if s.len() > u32::MAX as usize {
            return Err(ProtocolError::Oversize {
                length: s.len(),
                max: u32::MAX as usize,
            });
        }
        out.push(VALUE_STRING);
        put_str(out, s.as_str());
    } else if value.is_int()
        && let Ok(i) = value.as_int()
    {
        out.push(VALUE_INT);
        put_u64(out, i as u64);
    } else if value.is_float()
        && let Ok(f) = value.as_float()
    {
        out.push(VALUE_FLOAT);
        put_u64(out, f.to_bits());
    } else if value.is_bool()
        && let Ok(b) = value.as_bool()
    {
        out.push(if b { VALUE_TRUE } else { VALUE_FALSE });
    } else if value.is_unit() {
        out.push(VALUE_UNIT);
    } else {
        return Err(ProtocolError::Invalid(format!(
            "a row value of type {} cannot be sent",
            value.type_name()
        )));
    }
    Ok(())
}

/// Decodes `Batch` frames for a worker, batch after batch: the rows (their value vectors)
/// of a batch given back with `recycle` are filled again, and a repeated short string (a
/// country, a currency) is shared, not allocated again, per column. Batches must have the
/// columns it was made `for_columns`, whose types give their kept fields' values; a
/// default decoder refuses every batch.
#[derive(Default)]
pub struct BatchDecoder {
    spare: Vec<Row>,
    spare_hashes: Vec<u64>,
    strings: Vec<StringCache>,
    /// Per column: its type and whether an empty field is `()`.
    types: Vec<(ColumnType, bool)>,
    /// The columns the last batch sent: spare rows hold unit in every other one.
    sent: Vec<usize>,
}

impl BatchDecoder {
    /// A decoder that types kept fields of `columns`; `nullable[c]`: whether an empty field
    /// of column `c` is `()` (as `typing::Schema` decides it, from the same rules).
    pub fn for_columns(columns: &Columns, nullable: &[bool]) -> BatchDecoder {
        BatchDecoder {
            types: columns
                .types
                .iter()
                .enumerate()
                .map(|(c, &kind)| (kind, nullable.get(c).copied().unwrap_or(false)))
                .collect(),
            ..BatchDecoder::default()
        }
    }

    /// Decodes a `Batch` payload and checks that its ranges are ordered, non-empty and
    /// within the rows it carries.
    pub fn decode(&mut self, payload: &[u8]) -> Result<BatchRequest, ProtocolError> {
        let mut c = Cursor { buf: payload };
        let request = c.u64("request")?;
        let rules = c.u32("rule count")?;
        let row_base = c.u64("row base")?;
        let n = c.count("ranges", 16)?;
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            let start = c.u64("range")?;
            let end = c.u64("range")?;
            ranges.push(start..end);
        }
        let columns = c.u32("column count")? as usize;
        // Rows are as wide as the setup's columns: a frame's count never sizes them.
        if columns != self.types.len() {
            return Err(ProtocolError::Invalid(format!(
                "a batch of {columns} columns, but the setup has {}",
                self.types.len()
            )));
        }
        let sent_n = c.count("sent columns", 5)?;
        let mut sent = Vec::with_capacity(sent_n);
        // Per sent column: whether it comes as kept fields.
        let mut forms = Vec::with_capacity(sent_n);
        for _ in 0..sent_n {
            let column = c.u32("sent column")? as usize;
            if column >= columns || sent.last().is_some_and(|&last| column <= last) {
                return Err(ProtocolError::Invalid(format!(
                    "sent column {column} is out of order or not below {columns}"
                )));
            }
            sent.push(column);
            forms.push(match c.u8("column form")? {
                FORM_KEPT => true,
                FORM_VALUE => false,
                tag => {
                    return Err(ProtocolError::UnknownTag {
                        what: "column form",
                        tag,
                    });
                }
            });
        }
        let kept_n = forms.iter().filter(|&&k| k).count();
        // A row is at least its id's hash.
        let rows_n = c.count("rows", 8)?;
        let hashes = c.take(rows_n * 8, "id hashes")?;
        let (mut lengths, mut kept) = (Cursor { buf: &[] }, Cursor { buf: &[] });
        if kept_n > 0 {
            lengths.buf = c.take(
                rows_n.saturating_mul(kept_n).saturating_mul(4),
                "kept field lengths",
            )?;
            kept.buf = c.bytes("kept fields")?;
        }
        if self.strings.len() < columns {
            self.strings.resize_with(columns, StringCache::new);
        }
        if sent != self.sent {
            // Columns sent before may not be now: they must be unit again.
            for row in &mut self.spare {
                row.values.clear();
            }
            self.sent = sent;
        }
        // Per sent column, what its values need, looked up once a batch, not once a value.
        let plan: Vec<(usize, bool, ColumnType, bool)> = self
            .sent
            .iter()
            .zip(&forms)
            .map(|(&column, &is_kept)| {
                let (kind, nullable) = self.types[column];
                (column, is_kept, kind, nullable)
            })
            .collect();
        // The last batch's rows, filled again (their values' buffers are kept).
        let mut rows = std::mem::take(&mut self.spare);
        rows.resize_with(rows_n, || Row {
            id: String::new(),
            values: Vec::new(),
        });
        let mut id_hashes = std::mem::take(&mut self.spare_hashes);
        id_hashes.clear();
        id_hashes.extend(
            hashes
                .chunks_exact(8)
                .map(|h| u64::from_le_bytes(h.try_into().expect("8 bytes"))),
        );
        for (i, row) in rows.iter_mut().enumerate() {
            if row.values.len() != columns {
                row.values.clear();
                row.values.resize(columns, Dynamic::UNIT);
            }
            for &(column, is_kept, kind, nullable) in &plan {
                let strings = &mut self.strings[column];
                row.values[column] = if is_kept {
                    let len = lengths.u32("kept field length")? as usize;
                    let field = kept.take(len, "kept field")?;
                    match typing::kept_value(kind, nullable, strings, field) {
                        Ok(value) => value,
                        Err(why) => {
                            return Err(ProtocolError::Invalid(format!(
                                "row {i}, column {}: kept field {:?} {why}",
                                column + 1,
                                String::from_utf8_lossy(field)
                            )));
                        }
                    }
                } else {
                    get_value(&mut c, strings).map_err(|e| match e {
                        ProtocolError::Invalid(why) => {
                            ProtocolError::Invalid(format!("row {i}, column {}: {why}", column + 1))
                        }
                        other => other,
                    })?
                };
            }
        }
        lengths.finish("kept field lengths")?;
        kept.finish("kept fields")?;
        c.finish("batch")?;
        check_ranges(&ranges, row_base, rules, rows.len())?;
        Ok(BatchRequest {
            request,
            rules,
            row_base,
            ranges,
            rows,
            id_hashes,
        })
    }

    /// Takes back a decoded batch's rows, to fill with the next batch.
    pub fn recycle(&mut self, batch: BatchRequest) {
        self.spare = batch.rows;
        self.spare_hashes = batch.id_hashes;
    }
}

/// Decodes one tagged value.
fn get_value(c: &mut Cursor<'_>, strings: &mut StringCache) -> Result<Dynamic, ProtocolError> {
    Ok(match c.u8("value tag")? {
        VALUE_UNIT => Dynamic::UNIT,
        VALUE_INT => Dynamic::from_int(c.u64("int value")? as i64),
        VALUE_FLOAT => Dynamic::from_float(f64::from_bits(c.u64("float value")?)),
        VALUE_FALSE => Dynamic::FALSE,
        VALUE_TRUE => Dynamic::TRUE,
        VALUE_STRING => Dynamic::from(strings.get(c.str("string value")?)),
        tag => return Err(ProtocolError::UnknownTag { what: "value", tag }),
    })
}

/// Checks that `ranges` are ordered, non-empty and within rows `row_base..+rows`.
fn check_ranges(
    ranges: &[Range<u64>],
    row_base: u64,
    rules: u32,
    rows: usize,
) -> Result<(), ProtocolError> {
    let first = row_base.checked_mul(u64::from(rules));
    let last = row_base
        .checked_add(rows as u64)
        .and_then(|r| r.checked_mul(u64::from(rules)));
    let (Some(first), Some(last)) = (first, last) else {
        return Err(ProtocolError::Invalid("batch indexes overflow".into()));
    };
    let mut previous_end = first;
    for r in ranges {
        if r.start >= r.end || r.start < previous_end || r.end > last {
            return Err(ProtocolError::Invalid(format!(
                "range {}..{} is empty, out of order, or outside rows {}..{}",
                r.start,
                r.end,
                row_base,
                row_base + rows as u64
            )));
        }
        previous_end = r.end;
    }
    Ok(())
}

/// What a worker says.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The evaluator is built; `rules` rules were compiled.
    Ready { version: u32, rules: u32, pid: u32 },
    /// Outcomes of consecutive evaluations of `request`, from index `first` on (along the
    /// request's ranges).
    Outcomes {
        request: u64,
        first: u64,
        outcomes: Outcomes,
    },
    /// The worker cannot go on (its rules do not compile, a bad request): the message.
    Fatal(String),
}

/// Outcomes in order, compactly: one code a piece (`CODE_*`), and beside the codes the
/// outcomes that carry more (errors, timeouts), in order. Most outcomes are `true` or
/// `false`: they cost a byte, not an `Outcome`, from the pipe to the batch's place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    pub codes: Vec<u8>,
    /// The outcome of each `CODE_DETAIL`, in order.
    pub details: Vec<Outcome>,
}

pub const CODE_TRUE: u8 = 0;
pub const CODE_FALSE: u8 = 1;
/// An error or a timeout: the next of `Outcomes::details`.
pub const CODE_DETAIL: u8 = 2;

impl Outcomes {
    pub fn push(&mut self, outcome: Outcome) {
        self.codes.push(match outcome {
            Outcome::True => CODE_TRUE,
            Outcome::False => CODE_FALSE,
            detail => {
                self.details.push(detail);
                CODE_DETAIL
            }
        });
    }

    /// The outcomes, in order.
    pub fn into_vec(self) -> Vec<Outcome> {
        let mut details = self.details.into_iter();
        self.codes
            .iter()
            .map(|&code| match code {
                CODE_TRUE => Outcome::True,
                CODE_FALSE => Outcome::False,
                _ => details.next().expect("a detail per CODE_DETAIL"),
            })
            .collect()
    }
}

impl FromIterator<Outcome> for Outcomes {
    fn from_iter<I: IntoIterator<Item = Outcome>>(iter: I) -> Outcomes {
        let mut outcomes = Outcomes::default();
        for outcome in iter {
            outcomes.push(outcome);
        }
        outcomes
    }
}

pub fn encode_ready(out: &mut Vec<u8>, rules: u32, pid: u32) {
    let at = begin_frame(out, KIND_READY);
    out.extend_from_slice(&MAGIC);
    put_u32(out, VERSION);
    put_u32(out, rules);
    put_u32(out, pid);
    end_frame(out, at);
}

pub fn encode_fatal(out: &mut Vec<u8>, message: &str) {
    let at = begin_frame(out, KIND_FATAL);
    let mut end = message.len().min(FATAL_MAX_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    put_str(out, &message[..end]);
    end_frame(out, at);
}

/// Builds `Outcomes` frames in a worker's output buffer: `push` each outcome, `close`
/// when the request ends; a frame is closed by itself once it passes `OUTCOMES_CHUNK`.
pub struct OutcomesEncoder {
    request: u64,
    /// Where the open frame starts in the buffer, and how many outcomes it holds.
    open: Option<(usize, u32)>,
}

impl OutcomesEncoder {
    pub fn new(request: u64) -> OutcomesEncoder {
        OutcomesEncoder {
            request,
            open: None,
        }
    }

    /// Appends the outcome of evaluation `index` (the next one of the request).
    #[inline]
    pub fn push(&mut self, out: &mut Vec<u8>, index: u64, outcome: &Outcome) {
        // The common case: a frame is open, the outcome is a byte.
        if let Some((at, count)) = &mut self.open {
            match outcome {
                Outcome::True => out.push(OUTCOME_TRUE),
                Outcome::False => out.push(OUTCOME_FALSE),
                other => put_outcome(out, other),
            }
            *count += 1;
            if out.len() - *at >= OUTCOMES_CHUNK {
                self.close(out);
            }
            return;
        }
        self.open_and_push(out, index, outcome);
    }

    /// `push` when no frame is open: opens one, from `index` on.
    fn open_and_push(&mut self, out: &mut Vec<u8>, index: u64, outcome: &Outcome) {
        let at = begin_frame(out, KIND_OUTCOMES);
        put_u64(out, self.request);
        put_u64(out, index);
        put_u32(out, 0);
        put_outcome(out, outcome);
        self.open = Some((at, 1));
        if out.len() - at >= OUTCOMES_CHUNK {
            self.close(out);
        }
    }

    /// Closes the open frame, if any.
    pub fn close(&mut self, out: &mut [u8]) {
        if let Some((at, count)) = self.open.take() {
            let count_at = at + 5 + 16;
            out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
            end_frame(out, at);
        }
    }

    /// True when a frame was closed and nothing is open: the buffer may be written out.
    pub fn is_closed(&self) -> bool {
        self.open.is_none()
    }
}

fn put_outcome(out: &mut Vec<u8>, outcome: &Outcome) {
    match outcome {
        Outcome::True => out.push(OUTCOME_TRUE),
        Outcome::False => out.push(OUTCOME_FALSE),
        Outcome::Error(message) => {
            out.push(OUTCOME_ERROR);
            // Evaluations already cap their details; this keeps the frame bound true
            // whatever builds an outcome.
            if message.len() > DETAIL_MAX_BYTES + '…'.len_utf8() {
                put_str(out, &crate::model::detail(message));
            } else {
                put_str(out, message);
            }
        }
        Outcome::Timeout(limit) => {
            out.push(OUTCOME_TIMEOUT);
            put_duration(out, *limit);
        }
    }
}

/// The outcome of tag `tag` that is neither `true` nor `false`.
fn get_detail(c: &mut Cursor<'_>, tag: u8) -> Result<Outcome, ProtocolError> {
    Ok(match tag {
        OUTCOME_ERROR => Outcome::Error(c.str("error message")?.to_string()),
        OUTCOME_TIMEOUT => Outcome::Timeout(c.duration("timeout")?),
        tag => {
            return Err(ProtocolError::UnknownTag {
                what: "outcome",
                tag,
            });
        }
    })
}

/// Decodes a frame a worker sent.
pub fn decode_reply(kind: u8, payload: &[u8]) -> Result<Reply, ProtocolError> {
    let mut c = Cursor { buf: payload };
    let reply = match kind {
        KIND_READY => {
            c.magic()?;
            let version = c.u32("version")?;
            if version != VERSION {
                return Err(ProtocolError::Version {
                    ours: VERSION,
                    theirs: version,
                });
            }
            Reply::Ready {
                version,
                rules: c.u32("rule count")?,
                pid: c.u32("pid")?,
            }
        }
        KIND_OUTCOMES => {
            let request = c.u64("request")?;
            let first = c.u64("first index")?;
            let n = c.count("outcomes", 1)?;
            let mut outcomes = Outcomes {
                codes: Vec::with_capacity(n),
                details: Vec::new(),
            };
            for _ in 0..n {
                match c.u8("outcome tag")? {
                    OUTCOME_TRUE => outcomes.codes.push(CODE_TRUE),
                    OUTCOME_FALSE => outcomes.codes.push(CODE_FALSE),
                    tag => outcomes.push(get_detail(&mut c, tag)?),
                }
            }
            Reply::Outcomes {
                request,
                first,
                outcomes,
            }
        }
        KIND_FATAL => Reply::Fatal(c.str("message")?.to_string()),
        other => return Err(ProtocolError::UnknownKind(other)),
    };
    c.finish("reply")?;
    Ok(reply)
}

/// What the supervisor asks.
#[derive(Debug, Clone)]
pub enum Request {
    Setup(Setup),
    Batch(BatchRequest),
}

/// Decodes a frame the supervisor sent, a batch with the worker's `decoder` (which knows
/// the setup's columns: the default one, before the setup, refuses every batch).
pub fn decode_request_with(
    kind: u8,
    payload: &[u8],
    decoder: &mut BatchDecoder,
) -> Result<Request, ProtocolError> {
    match kind {
        KIND_SETUP => decode_setup(payload).map(Request::Setup),
        KIND_BATCH => decoder.decode(payload).map(Request::Batch),
        other => Err(ProtocolError::UnknownKind(other)),
    }
}
