//! The worker protocol: how the supervisor and a `txguard worker` process talk, over the
//! worker's stdin (requests) and stdout (replies).
//!
//! Every message is one frame: `[length: u32 LE][kind: u8][payload]`, where `length`
//! counts the kind byte and the payload. Integers are little-endian; strings are a `u32`
//! byte length then UTF-8; values and outcomes carry a one-byte tag. The supervisor opens
//! with `Setup` (magic + version + what the worker needs to rebuild the evaluator), the
//! worker answers `Ready` (magic + version) and then one `Outcomes` frame or more per
//! `Batch`. The version is also checked before any frame, on the worker's command line
//! (`txguard worker --protocol N`); any mismatch is an error, never a guess.
//!
//! Decoding never trusts a length: every read is bounds-checked, counts never size an
//! allocation beyond the bytes actually present, and a frame longer than the direction's
//! limit is refused before it is read.

use std::fmt;
use std::io::{self, Read};
use std::ops::Range;
use std::time::Duration;

use rhai::Dynamic;

use crate::outcome::Outcome;
use crate::rules::{ColumnType, Columns, Row};

/// The protocol version; bump it with any change to a frame's layout.
pub const VERSION: u32 = 1;
/// Opens `Setup` and `Ready`: a worker that is not a txguard worker is told apart at once.
pub const MAGIC: [u8; 4] = *b"TXGW";

/// Largest frame the supervisor sends (a batch of rows; `--batch-size` is at most 10^6).
pub const MAX_TO_WORKER: usize = 1 << 30;
/// Largest frame a worker sends (outcome chunks are ~16 KiB; one error message may be
/// as long as the longest Rhai string, 1 MiB).
pub const MAX_FROM_WORKER: usize = 64 << 20;
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

/// A frame or payload that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The payload ended `need` bytes early while reading `what`.
    Truncated {
        what: &'static str,
    },
    /// The stream ended inside a frame.
    TruncatedFrame {
        expected: usize,
        got: usize,
    },
    /// A frame longer than this direction allows.
    Oversize {
        length: usize,
        max: usize,
    },
    /// A zero length: not even a kind byte.
    Empty,
    UnknownKind(u8),
    UnknownTag {
        what: &'static str,
        tag: u8,
    },
    BadMagic([u8; 4]),
    Version {
        ours: u32,
        theirs: u32,
    },
    /// Anything else that is well-formed bytes but not a valid message.
    Invalid(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Truncated { what } => write!(f, "frame ends in the middle of {what}"),
            ProtocolError::TruncatedFrame { expected, got } => {
                write!(f, "stream ends inside a frame ({got} of {expected} bytes)")
            }
            ProtocolError::Oversize { length, max } => {
                write!(f, "frame of {length} bytes exceeds the limit of {max}")
            }
            ProtocolError::Empty => write!(f, "frame of length 0"),
            ProtocolError::UnknownKind(kind) => write!(f, "unknown frame kind 0x{kind:02x}"),
            ProtocolError::UnknownTag { what, tag } => write!(f, "unknown {what} tag 0x{tag:02x}"),
            ProtocolError::BadMagic(magic) => {
                write!(f, "bad magic {magic:02x?} (not a txguard worker?)")
            }
            ProtocolError::Version { ours, theirs } => {
                write!(
                    f,
                    "protocol version mismatch: expected {ours}, got {theirs}"
                )
            }
            ProtocolError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why reading a frame failed.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    Protocol(ProtocolError),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "read error: {e}"),
            FrameError::Protocol(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<ProtocolError> for FrameError {
    fn from(e: ProtocolError) -> FrameError {
        FrameError::Protocol(e)
    }
}

/// Reads one frame into `payload` (the kind byte excluded) and returns its kind, or `None`
/// at a clean end of stream (between frames). Memory grows with the bytes that actually
/// arrive, never with the length a frame claims.
pub fn read_frame(
    r: &mut impl Read,
    max: usize,
    payload: &mut Vec<u8>,
) -> Result<Option<u8>, FrameError> {
    let mut header = [0u8; 5];
    let got = read_full(r, &mut header).map_err(FrameError::Io)?;
    if got == 0 {
        return Ok(None);
    }
    if got < header.len() {
        return Err(ProtocolError::TruncatedFrame {
            expected: header.len(),
            got,
        }
        .into());
    }
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length == 0 {
        return Err(ProtocolError::Empty.into());
    }
    if length > max {
        return Err(ProtocolError::Oversize { length, max }.into());
    }
    let kind = header[4];
    let want = length - 1;
    payload.clear();
    const STEP: usize = 256 << 10;
    while payload.len() < want {
        let start = payload.len();
        let take = (want - start).min(STEP);
        payload.resize(start + take, 0);
        let n = read_full(r, &mut payload[start..]).map_err(FrameError::Io)?;
        payload.truncate(start + n);
        if n < take {
            return Err(ProtocolError::TruncatedFrame {
                expected: length + 4,
                got: 5 + payload.len(),
            }
            .into());
        }
    }
    Ok(Some(kind))
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Starts a frame of `kind` at the end of `out`; `end_frame` writes its length.
pub fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

/// Patches the length of the frame begun at `at`.
pub fn end_frame(out: &mut [u8], at: usize) {
    let length = u32::try_from(out.len() - at - 4).expect("frames are far below 4 GiB");
    out[at..at + 4].copy_from_slice(&length.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(
        out,
        u32::try_from(s.len()).expect("strings are far below 4 GiB"),
    );
    out.extend_from_slice(s.as_bytes());
}

fn put_duration(out: &mut Vec<u8>, d: Duration) {
    put_u64(out, d.as_secs());
    put_u32(out, d.subsec_nanos());
}

/// A bounds-checked reader over one payload.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::Truncated { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, ProtocolError> {
        let len = self.u32(what)? as usize;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map_err(|_| ProtocolError::Invalid(format!("{what} is not valid UTF-8")))
    }

    fn duration(&mut self, what: &'static str) -> Result<Duration, ProtocolError> {
        let secs = self.u64(what)?;
        let nanos = self.u32(what)?;
        if nanos >= 1_000_000_000 {
            return Err(ProtocolError::Invalid(format!(
                "{what}: {nanos} nanoseconds is not below one second"
            )));
        }
        Ok(Duration::new(secs, nanos))
    }

    fn magic(&mut self) -> Result<(), ProtocolError> {
        let b = self.take(4, "magic")?;
        let magic = [b[0], b[1], b[2], b[3]];
        if magic == MAGIC {
            Ok(())
        } else {
            Err(ProtocolError::BadMagic(magic))
        }
    }

    /// A count of items at least `min_size` bytes each: checked against what is left, so
    /// a lying count cannot make the caller allocate.
    fn count(&mut self, what: &'static str, min_size: usize) -> Result<usize, ProtocolError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.buf.len() {
            return Err(ProtocolError::Truncated { what });
        }
        Ok(n)
    }

    fn finish(&self, what: &'static str) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Invalid(format!(
                "{} unexpected bytes after {what}",
                self.buf.len()
            )))
        }
    }
}

/// What a worker needs to rebuild the run's evaluator: the first frame it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The rules file's text, parsed by the worker as the supervisor parsed it.
    pub rules_text: String,
    pub default_timeout: Duration,
    pub columns: Columns,
    pub seed: u64,
}

pub fn encode_setup(out: &mut Vec<u8>, setup: &Setup) {
    let at = begin_frame(out, KIND_SETUP);
    out.extend_from_slice(&MAGIC);
    put_u32(out, VERSION);
    put_str(out, &setup.rules_text);
    put_duration(out, setup.default_timeout);
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
    c.finish("setup")?;
    Ok(Setup {
        rules_text,
        default_timeout,
        columns,
        seed,
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
    pub rows: Vec<Row>,
}

/// Encodes a `Batch` frame. Fails only on a row value that no column type produces.
pub fn encode_batch(
    out: &mut Vec<u8>,
    request: u64,
    rules: u32,
    row_base: u64,
    ranges: &[Range<u64>],
    rows: &[Row],
) -> Result<(), ProtocolError> {
    let at = begin_frame(out, KIND_BATCH);
    put_u64(out, request);
    put_u32(out, rules);
    put_u64(out, row_base);
    put_u32(out, ranges.len() as u32);
    for r in ranges {
        put_u64(out, r.start);
        put_u64(out, r.end);
    }
    let columns = rows.first().map_or(0, |r| r.values.len());
    put_u32(out, columns as u32);
    put_u32(out, rows.len() as u32);
    for row in rows {
        if row.values.len() != columns {
            return Err(ProtocolError::Invalid(format!(
                "row {:?} has {} values, not {columns}",
                row.id,
                row.values.len()
            )));
        }
        put_str(out, &row.id);
        for value in &row.values {
            put_value(out, value)?;
        }
    }
    end_frame(out, at);
    Ok(())
}

fn put_value(out: &mut Vec<u8>, value: &Dynamic) -> Result<(), ProtocolError> {
    // `is_*` tests the tag; a failed `as_*` would build a type name first.
    if value.is_string()
        && let Ok(s) = value.as_immutable_string_ref()
    {
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

fn get_value(c: &mut Cursor<'_>) -> Result<Dynamic, ProtocolError> {
    Ok(match c.u8("value tag")? {
        VALUE_UNIT => Dynamic::UNIT,
        VALUE_INT => Dynamic::from_int(c.u64("int value")? as i64),
        VALUE_FLOAT => Dynamic::from_float(f64::from_bits(c.u64("float value")?)),
        VALUE_FALSE => Dynamic::FALSE,
        VALUE_TRUE => Dynamic::TRUE,
        VALUE_STRING => Dynamic::from(rhai::ImmutableString::from(c.str("string value")?)),
        tag => return Err(ProtocolError::UnknownTag { what: "value", tag }),
    })
}

/// Decodes a `Batch` payload and checks that its ranges are ordered, non-empty and
/// within the rows it carries.
pub fn decode_batch(payload: &[u8]) -> Result<BatchRequest, ProtocolError> {
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
    // A row is at least its id's length and one tag per value.
    let rows_n = c.count("rows", 4 + columns)?;
    let mut rows = Vec::with_capacity(rows_n);
    for _ in 0..rows_n {
        let id = c.str("row id")?.to_string();
        let mut values = Vec::with_capacity(columns);
        for _ in 0..columns {
            values.push(get_value(&mut c)?);
        }
        rows.push(Row {
            line: 0,
            id,
            values,
        });
    }
    c.finish("batch")?;
    let first = row_base.checked_mul(u64::from(rules));
    let last = row_base
        .checked_add(rows.len() as u64)
        .and_then(|r| r.checked_mul(u64::from(rules)));
    let (Some(first), Some(last)) = (first, last) else {
        return Err(ProtocolError::Invalid("batch indexes overflow".into()));
    };
    let mut previous_end = first;
    for r in &ranges {
        if r.start >= r.end || r.start < previous_end || r.end > last {
            return Err(ProtocolError::Invalid(format!(
                "range {}..{} is empty, out of order, or outside rows {}..{}",
                r.start,
                r.end,
                row_base,
                row_base + rows.len() as u64
            )));
        }
        previous_end = r.end;
    }
    Ok(BatchRequest {
        request,
        rules,
        row_base,
        ranges,
        rows,
    })
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
        outcomes: Vec<Outcome>,
    },
    /// The worker cannot go on (its rules do not compile, a bad request): the message.
    Fatal(String),
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
    put_str(out, message);
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
    pub fn push(&mut self, out: &mut Vec<u8>, index: u64, outcome: &Outcome) {
        let (at, count) = match self.open {
            Some(open) => open,
            None => {
                let at = begin_frame(out, KIND_OUTCOMES);
                put_u64(out, self.request);
                put_u64(out, index);
                put_u32(out, 0);
                (at, 0)
            }
        };
        put_outcome(out, outcome);
        self.open = Some((at, count + 1));
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
            put_str(out, message);
        }
        Outcome::Timeout(limit) => {
            out.push(OUTCOME_TIMEOUT);
            put_duration(out, *limit);
        }
    }
}

fn get_outcome(c: &mut Cursor<'_>) -> Result<Outcome, ProtocolError> {
    Ok(match c.u8("outcome tag")? {
        OUTCOME_TRUE => Outcome::True,
        OUTCOME_FALSE => Outcome::False,
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
            let mut outcomes = Vec::with_capacity(n);
            for _ in 0..n {
                outcomes.push(get_outcome(&mut c)?);
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

/// Decodes a frame the supervisor sent.
pub fn decode_request(kind: u8, payload: &[u8]) -> Result<Request, ProtocolError> {
    match kind {
        KIND_SETUP => decode_setup(payload).map(Request::Setup),
        KIND_BATCH => decode_batch(payload).map(Request::Batch),
        other => Err(ProtocolError::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Columns {
        Columns {
            names: vec![
                "id".into(),
                "amount".into(),
                "flag".into(),
                "country".into(),
            ],
            types: vec![
                ColumnType::Int,
                ColumnType::Float,
                ColumnType::Bool,
                ColumnType::String,
            ],
        }
    }

    fn rows() -> Vec<Row> {
        (0..3)
            .map(|i| Row {
                line: 2 + i,
                id: format!("{i:03}"),
                values: vec![
                    Dynamic::from_int(-(i as i64) * 1_000_000_007),
                    Dynamic::from_float(if i == 1 { -0.0 } else { 0.1 + i as f64 }),
                    Dynamic::from_bool(i % 2 == 0),
                    Dynamic::from(format!("Zürich, \"{i}\"\n")),
                ],
            })
            .collect()
    }

    /// Splits the one frame in `bytes` into kind and payload, through `read_frame`.
    fn frame(bytes: &[u8]) -> (u8, Vec<u8>) {
        let mut payload = Vec::new();
        let kind = read_frame(&mut &bytes[..], usize::MAX, &mut payload)
            .unwrap()
            .unwrap();
        (kind, payload)
    }

    fn same_row(a: &Row, b: &Row) -> bool {
        a.id == b.id
            && a.values.len() == b.values.len()
            && a.values.iter().zip(&b.values).all(|(x, y)| {
                x.type_name() == y.type_name()
                    && match (x.as_float(), y.as_float()) {
                        (Ok(f), Ok(g)) => f.to_bits() == g.to_bits(),
                        _ => x.to_string() == y.to_string(),
                    }
            })
    }

    #[test]
    fn setup_round_trips() {
        let setup = Setup {
            rules_text: "[[rule]]\nid = 1\nname = \"é\"\nwhen = 'true'\n".into(),
            default_timeout: Duration::new(3, 250_000_000),
            columns: columns(),
            seed: u64::MAX,
        };
        let mut out = Vec::new();
        encode_setup(&mut out, &setup);
        let (kind, payload) = frame(&out);
        match decode_request(kind, &payload).unwrap() {
            Request::Setup(back) => assert_eq!(back, setup),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn batches_round_trip_with_every_value_type() {
        let mut rows = rows();
        rows[2].values[2] = Dynamic::UNIT;
        let mut out = Vec::new();
        encode_batch(&mut out, 42, 3, 7, &[21..23, 24..30], &rows).unwrap();
        let (kind, payload) = frame(&out);
        let Request::Batch(back) = decode_request(kind, &payload).unwrap() else {
            panic!()
        };
        assert_eq!((back.request, back.rules, back.row_base), (42, 3, 7));
        assert_eq!(back.ranges, vec![21..23, 24..30]);
        assert_eq!(back.rows.len(), 3);
        for (a, b) in rows.iter().zip(&back.rows) {
            assert!(same_row(a, b), "{a:?} != {b:?}");
        }
        assert!(
            back.rows[1].values[1]
                .as_float()
                .unwrap()
                .is_sign_negative()
        );
    }

    #[test]
    fn batch_ranges_must_be_ordered_and_inside_the_rows() {
        let rows = rows();
        for bad in [vec![0..0], vec![3..5, 2..4], vec![0..10], vec![5..3]] {
            let mut out = Vec::new();
            encode_batch(&mut out, 1, 3, 0, &bad, &rows).unwrap();
            let (_, payload) = frame(&out);
            assert!(
                matches!(decode_batch(&payload), Err(ProtocolError::Invalid(_))),
                "{bad:?}"
            );
        }
        // Rows start at row_base: indexes before it are not in the batch.
        let mut out = Vec::new();
        encode_batch(&mut out, 1, 3, 2, &[5..7], &rows).unwrap();
        assert!(decode_batch(&frame(&out).1).is_err());
    }

    #[test]
    fn replies_round_trip_across_chunks() {
        let outcomes: Vec<Outcome> = (0..5000)
            .map(|i| match i % 4 {
                0 => Outcome::True,
                1 => Outcome::False,
                2 => Outcome::Error(format!("boom {i}: ünïcode")),
                _ => Outcome::Timeout(Duration::from_millis(i)),
            })
            .collect();
        let mut out = Vec::new();
        encode_ready(&mut out, 3, 1234);
        let mut enc = OutcomesEncoder::new(9);
        for (i, o) in outcomes.iter().enumerate() {
            enc.push(&mut out, 100 + i as u64, o);
        }
        enc.close(&mut out);
        assert!(enc.is_closed());
        encode_fatal(&mut out, "rules do not compile");

        let mut r = &out[..];
        let mut payload = Vec::new();
        let mut back = Vec::new();
        let mut frames = 0;
        let mut fatal = None;
        while let Some(kind) = read_frame(&mut r, MAX_FROM_WORKER, &mut payload).unwrap() {
            match decode_reply(kind, &payload).unwrap() {
                Reply::Ready {
                    version,
                    rules,
                    pid,
                } => assert_eq!((version, rules, pid), (VERSION, 3, 1234)),
                Reply::Outcomes {
                    request,
                    first,
                    outcomes,
                } => {
                    assert_eq!(request, 9);
                    assert_eq!(first, 100 + back.len() as u64);
                    back.extend(outcomes);
                    frames += 1;
                }
                Reply::Fatal(m) => fatal = Some(m),
            }
        }
        assert_eq!(back, outcomes);
        assert!(
            frames > 1,
            "5000 outcomes with messages span several chunks"
        );
        assert_eq!(fatal.as_deref(), Some("rules do not compile"));
    }

    #[test]
    fn truncated_frames_are_errors_at_every_cut() {
        let mut out = Vec::new();
        encode_batch(&mut out, 1, 2, 0, &[0..6], &rows()).unwrap();
        for cut in 1..out.len() {
            let mut payload = Vec::new();
            match read_frame(&mut &out[..cut], MAX_TO_WORKER, &mut payload) {
                Err(FrameError::Protocol(ProtocolError::TruncatedFrame { .. })) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // A payload cut short inside (with a length that agrees) is caught by the decoder.
        let (_, payload) = frame(&out);
        for cut in 0..payload.len() {
            assert!(decode_batch(&payload[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            read_frame(&mut &b""[..], 10, &mut Vec::new()).unwrap(),
            None
        );
    }

    #[test]
    fn oversize_and_empty_frames_are_refused_without_allocating() {
        let mut payload = Vec::new();
        let huge = [0xff, 0xff, 0xff, 0x7f, KIND_BATCH];
        assert!(matches!(
            read_frame(&mut &huge[..], MAX_TO_WORKER, &mut payload),
            Err(FrameError::Protocol(ProtocolError::Oversize { .. }))
        ));
        // Within the limit but the bytes are not there: memory follows what arrives.
        let lying = [0x00, 0x00, 0x00, 0x30, KIND_BATCH, 1, 2, 3];
        assert!(matches!(
            read_frame(&mut &lying[..], MAX_TO_WORKER, &mut payload),
            Err(FrameError::Protocol(ProtocolError::TruncatedFrame { .. }))
        ));
        assert!(payload.capacity() < 1 << 20, "{}", payload.capacity());
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 0, 1][..], 100, &mut payload),
            Err(FrameError::Protocol(ProtocolError::Empty))
        ));
        // A count that claims more items than bytes left.
        let mut out = Vec::new();
        let at = begin_frame(&mut out, KIND_OUTCOMES);
        put_u64(&mut out, 1);
        put_u64(&mut out, 0);
        put_u32(&mut out, u32::MAX);
        out.push(OUTCOME_TRUE);
        end_frame(&mut out, at);
        let (kind, payload) = frame(&out);
        assert!(matches!(
            decode_reply(kind, &payload),
            Err(ProtocolError::Truncated { .. })
        ));
    }

    #[test]
    fn unknown_kinds_tags_magic_and_versions_are_errors() {
        assert_eq!(
            decode_reply(0x7f, &[]),
            Err(ProtocolError::UnknownKind(0x7f))
        );
        assert!(matches!(
            decode_request(KIND_READY, &[]),
            Err(ProtocolError::UnknownKind(KIND_READY))
        ));

        let mut out = Vec::new();
        let mut enc = OutcomesEncoder::new(1);
        enc.push(&mut out, 0, &Outcome::True);
        enc.close(&mut out);
        let (kind, mut payload) = frame(&out);
        *payload.last_mut().unwrap() = 9;
        assert_eq!(
            decode_reply(kind, &payload),
            Err(ProtocolError::UnknownTag {
                what: "outcome",
                tag: 9
            })
        );

        let mut out = Vec::new();
        encode_ready(&mut out, 1, 1);
        let (kind, mut payload) = frame(&out);
        payload[4..8].copy_from_slice(&(VERSION + 1).to_le_bytes());
        assert_eq!(
            decode_reply(kind, &payload),
            Err(ProtocolError::Version {
                ours: VERSION,
                theirs: VERSION + 1
            })
        );
        payload[0] = b'X';
        assert!(matches!(
            decode_reply(kind, &payload),
            Err(ProtocolError::BadMagic(_))
        ));

        let mut out = Vec::new();
        encode_setup(
            &mut out,
            &Setup {
                rules_text: String::new(),
                default_timeout: Duration::ZERO,
                columns: columns(),
                seed: 0,
            },
        );
        let (kind, mut payload) = frame(&out);
        payload[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            decode_request(kind, &payload),
            Err(ProtocolError::Version { theirs: 0, .. })
        ));

        let mut out = Vec::new();
        let rows = rows();
        encode_batch(&mut out, 1, 1, 0, &[0..1], &rows[..1]).unwrap();
        let (_, mut payload) = frame(&out);
        // The first value tag follows the header (8+4+8+4+16+4+4) and the id ("000").
        let tag_at = 48 + 4 + 3;
        assert_eq!(payload[tag_at], VALUE_INT);
        payload[tag_at] = 0xee;
        assert_eq!(
            decode_batch(&payload).unwrap_err(),
            ProtocolError::UnknownTag {
                what: "value",
                tag: 0xee
            }
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap fuzz: every prefix and byte flip of valid frames either decodes or errs.
        let mut frames = Vec::new();
        encode_batch(&mut frames, 3, 2, 0, &[0..6], &rows()).unwrap();
        let mut enc = OutcomesEncoder::new(3);
        enc.push(&mut frames, 0, &Outcome::Error("x".into()));
        enc.push(&mut frames, 1, &Outcome::Timeout(Duration::from_secs(1)));
        enc.close(&mut frames);
        let mut state = 0x1234_5678_u64;
        for _ in 0..20_000 {
            state = crate::rules::random_key_hash(&state.to_string());
            let mut bytes = frames.clone();
            let at = (state as usize) % bytes.len();
            bytes[at] ^= (state >> 32) as u8 | 1;
            let mut r = &bytes[..];
            let mut payload = Vec::new();
            while let Ok(Some(kind)) = read_frame(&mut r, 1 << 20, &mut payload) {
                let _ = decode_reply(kind, &payload);
                let _ = decode_request(kind, &payload);
            }
        }
    }

    #[test]
    fn unsendable_values_are_an_error_not_a_panic() {
        let mut row = rows().remove(0);
        row.values[0] = Dynamic::from(vec![Dynamic::from_int(1)]);
        assert!(matches!(
            encode_batch(&mut Vec::new(), 1, 1, 0, &[0..1], &[row]),
            Err(ProtocolError::Invalid(_))
        ));
    }
}
