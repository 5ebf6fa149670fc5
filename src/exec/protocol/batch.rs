//! The `Batch` frame: rows to evaluate, their kept fields or values, and the evaluation
//! ranges; encoded by the supervisor's lanes, decoded by `BatchDecoder` in a worker.

use std::ops::Range;

use rhai::Dynamic;

use crate::model::{ColumnType, Columns, RawFields, Row};
use crate::typing::{self, StringCache};

use super::frame::{Cursor, put_bytes, put_str, put_u32, put_u64};
use super::*;

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
