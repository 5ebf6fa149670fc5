//! Record framing: finds where the records of a CSV (RFC 4180) byte stream start and end,
//! without parsing them.
//!
//! Why a framer: parsing fields and typing values is the expensive part of reading, and it
//! can run on every core only if one thread first cuts the input into pieces that each hold
//! whole records. Finding record boundaries needs just the quote state, which a `memchr`
//! scan over `"`, `\n` and `\r` tracks at memory speed, so one framing thread can feed many
//! parsing lanes. The same boundary logic cuts byte ranges for shards on several machines:
//! a record belongs to the range where it starts (as in Hadoop's `LineRecordReader`), and
//! [`record_start_at_or_after`] finds those starts exactly.
//!
//! Three pieces, sharing one definition of the format:
//! - [`Framer`]: a `Read` → [`Chunk`]s of whole records, each with its first line number.
//! - [`Splitter`]: one framed record → its fields, equal to what the `csv` crate reads.
//! - [`record_start_at_or_after`]: the exact record boundary at or after a byte offset.
//!
//! The format, as `csv-core` reads it with its default CRLF terminator:
//! - A record ends at `\n`, `\r\n` or a lone `\r`, outside quotes. Empty records (blank
//!   lines) are skipped. A UTF-8 BOM at the start of the input is skipped.
//! - A `"` opens quoting only as the first byte of a field. Inside quotes, `""` is a quote
//!   and any other `"` closes the quoting; anything may be quoted, terminators included.
//! - A `"` anywhere else is an ordinary byte: `ab"c` is the field `ab"c`, and text after a
//!   closing quote joins the field up to the next delimiter, quotes included: `"ab"c"d` is
//!   `abc"d`. Such input is malformed, but the `csv` crate reads it that way, and matching
//!   it keeps results the same whichever reader a run uses.
//! - Where `csv-core` and this module differ, on purpose: a quote still open at the end of
//!   the input makes the record a [`Flaw::UnclosedQuote`] (`csv-core` silently swallows the
//!   rest of the file into one field), and a record over [`Config::max_record`] bytes is a
//!   [`Flaw::TooLong`] that is skipped without being held in memory.
//!
//! Lines are counted as a text editor does (`\n`, `\r\n` and a lone `\r` each end a line,
//! inside quotes too), so every record knows the line where it starts and messages can
//! point at it.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::mem;

use memchr::{memchr, memchr3, memrchr2};

const QUOTE: u8 = b'"';
const BOM: &[u8] = b"\xEF\xBB\xBF";
const MIB: usize = 1024 * 1024;
/// Bytes asked of the source per read: few system calls, and a small tail to carry over
/// into the next buffer when a chunk is cut.
const READ_SIZE: usize = 64 * 1024;
/// Buffers kept by [`Framer::recycle`]: enough for the chunks in flight in a pipeline,
/// bounded so a burst does not pin memory forever.
const POOL_LIMIT: usize = 16;

/// How records are framed: the delimiter and the sizes that bound memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    delimiter: u8,
    chunk_size: usize,
    max_record: usize,
    read_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            delimiter: b',',
            chunk_size: MIB,
            max_record: 64 * MIB,
            read_size: READ_SIZE,
        }
    }
}

impl Config {
    /// The field delimiter. A quote or a line terminator cannot be one: the format would be
    /// ambiguous.
    pub fn with_delimiter(self, delimiter: u8) -> Result<Config, InvalidDelimiter> {
        if matches!(delimiter, QUOTE | b'\r' | b'\n') {
            return Err(InvalidDelimiter(delimiter));
        }
        Ok(Config { delimiter, ..self })
    }

    /// The size past which a chunk is cut, at the next record start (default 1 MiB).
    pub fn with_chunk_size(self, bytes: usize) -> Config {
        Config {
            chunk_size: bytes.max(1),
            ..self
        }
    }

    /// The longest record held in memory (default 64 MiB); longer ones are skipped and
    /// reported as [`Flaw::TooLong`].
    pub fn with_max_record(self, bytes: usize) -> Config {
        Config {
            max_record: bytes,
            ..self
        }
    }

    /// Small reads make tests cross every buffer boundary.
    #[cfg(test)]
    fn with_read_size(self, bytes: usize) -> Config {
        Config {
            read_size: bytes.max(1),
            ..self
        }
    }

    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    pub fn max_record(&self) -> usize {
        self.max_record
    }
}

/// A delimiter the format cannot use: `"`, `\r` or `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidDelimiter(pub u8);

impl fmt::Display for InvalidDelimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the delimiter cannot be {:?}: it is a quote or a line terminator",
            char::from(self.0)
        )
    }
}

impl std::error::Error for InvalidDelimiter {}

/// A place in the input: a byte offset and the (1-based) line it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub offset: u64,
    pub line: u64,
}

impl Position {
    /// The start of the input.
    pub const START: Position = Position { offset: 0, line: 1 };
}

/// Why a record cannot be parsed. Its bytes are not kept; its start line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// A quote is still open at the end of the input: the record runs to the end.
    UnclosedQuote,
    /// The record is `len` bytes long (without its terminator), over `Config::max_record`.
    TooLong { len: u64 },
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flaw::UnclosedQuote => write!(f, "quote opened here is never closed"),
            Flaw::TooLong { len } => {
                write!(f, "record of {len} bytes is over the record size limit")
            }
        }
    }
}

/// A record of a chunk: where it starts and its bytes (terminator excluded), or its flaw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub start: Position,
    pub body: Result<&'a [u8], Flaw>,
}

/// Where one record lies in its chunk's bytes; empty for a flawed record.
#[derive(Debug, Clone, Copy)]
struct Span {
    line: u64,
    start: usize,
    end: usize,
}

/// Whole records, in input order, cut from the input at a record start once past
/// `Config::chunk_size` bytes.
#[derive(Debug, Default)]
pub struct Chunk {
    offset: u64,
    end_offset: u64,
    /// The input from `offset` to `end_offset`; empty for the chunk of a skipped record.
    bytes: Vec<u8>,
    spans: Vec<Span>,
    /// (index in `spans`, flaw), by index: flaws are rare, so spans stay small without them.
    flaws: Vec<(usize, Flaw)>,
}

impl Chunk {
    /// Input offset where the first record starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Input offset just past the last record (before its terminator).
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// Line where the first record starts.
    pub fn first_line(&self) -> u64 {
        self.spans.first().map_or(0, |s| s.line)
    }

    /// Number of records, flawed ones included: never 0 for a chunk from a `Framer`.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The input bytes the records lie in: `input[offset..end_offset]`, except that the
    /// chunk of a record too long to hold has none.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Keeps the first `n` records only (a shard keeps the header of the input's first
    /// chunk, and frames its own records from its range).
    pub fn keep_first(&mut self, n: usize) {
        if n >= self.spans.len() {
            return;
        }
        self.spans.truncate(n);
        self.flaws.retain(|(i, _)| *i < n);
        let end = self.spans.last().map_or(0, |s| s.end);
        if !self.bytes.is_empty() {
            self.bytes.truncate(end);
        }
        self.end_offset = self.offset + end as u64;
    }

    pub fn records(&self) -> Records<'_> {
        Records {
            chunk: self,
            next: 0,
            flaws: &self.flaws,
        }
    }
}

impl<'a> IntoIterator for &'a Chunk {
    type Item = Record<'a>;
    type IntoIter = Records<'a>;

    fn into_iter(self) -> Records<'a> {
        self.records()
    }
}

/// The records of a chunk, in input order.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    chunk: &'a Chunk,
    next: usize,
    flaws: &'a [(usize, Flaw)],
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let span = *self.chunk.spans.get(self.next)?;
        let body = match self.flaws.split_first() {
            Some((&(i, flaw), rest)) if i == self.next => {
                self.flaws = rest;
                Err(flaw)
            }
            _ => Ok(&self.chunk.bytes[span.start..span.end]),
        };
        self.next += 1;
        let start = Position {
            offset: self.chunk.offset + span.start as u64,
            line: span.line,
        };
        Some(Record { start, body })
    }

    /// Skips in constant time (plus the flaws passed): lanes take a chunk's records in
    /// sub-ranges with `skip`, which calls this.
    fn nth(&mut self, n: usize) -> Option<Record<'a>> {
        self.next = self.next.saturating_add(n).min(self.chunk.spans.len());
        let passed = self.flaws.partition_point(|&(i, _)| i < self.next);
        self.flaws = &self.flaws[passed..];
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.chunk.spans.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Records<'_> {}

/// Quote state between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Out,
    In,
    /// The last byte was a `"` inside quotes: the next byte tells an escaped quote (`""`)
    /// from a closing one, and it may be in the next read.
    MaybeClosed,
}

/// A record whose end the scanner has seen.
#[derive(Debug, Clone, Copy)]
struct Found {
    start: Position,
    /// Offset of its terminator, or of the end of the input.
    end: u64,
    unclosed: bool,
}

enum Step {
    /// A record ended; the scanner consumed this many bytes, its terminator's first byte
    /// included.
    Found(Found, usize),
    /// Every byte given was consumed without a record ending.
    Exhausted,
}

/// The quote-aware state machine every piece of this module frames with. It sees the input
/// in consecutive slices of any size and carries across them all it needs, so a boundary
/// between reads can fall anywhere, even inside `\r\n` or `""`.
#[derive(Debug, Clone)]
struct Scanner {
    delimiter: u8,
    quote: Quote,
    /// The byte before the next one: it tells the `\n` of a `\r\n` and a quote that opens a
    /// field when the byte before is in the previous slice.
    prev: u8,
    /// Line of the next byte.
    line: u64,
    /// Where the record being scanned starts: just past the last terminator (blank lines
    /// move it on).
    start: Position,
}

impl Scanner {
    /// A scanner at a record start. The byte before `at` must not be a `\r` followed by a
    /// `\n` at `at`: a record never starts inside a `\r\n`.
    fn new(delimiter: u8, at: Position) -> Scanner {
        Scanner {
            delimiter,
            quote: Quote::Out,
            // Neither a `\r` nor a delimiter: nothing before a record start is either.
            prev: b'\n',
            line: at.line,
            start: at,
        }
    }

    /// Scans `hay` (the input from offset `base`) up to the end of the current record.
    fn step(&mut self, hay: &[u8], base: u64) -> Step {
        let mut i = 0;
        while i < hay.len() {
            match self.quote {
                Quote::MaybeClosed => {
                    if hay[i] == QUOTE {
                        self.quote = Quote::In;
                        i += 1;
                    } else {
                        self.quote = Quote::Out;
                    }
                }
                Quote::In => i = self.skip_quoted(hay, i),
                Quote::Out => {
                    let Some(k) = memchr3(QUOTE, b'\n', b'\r', &hay[i..]) else {
                        break;
                    };
                    let j = i + k;
                    i = j + 1;
                    if let Some(found) = self.special_unquoted(hay, j, base + j as u64) {
                        self.prev = hay[j];
                        return Step::Found(found, i);
                    }
                }
            }
        }
        if let Some(&last) = hay.last() {
            self.prev = last;
        }
        Step::Exhausted
    }

    /// Inside quotes from `hay[i]`: counts lines up to the next `"`, or to the end.
    /// Returns where to go on.
    fn skip_quoted(&mut self, hay: &[u8], i: usize) -> usize {
        let Some(k) = memchr3(QUOTE, b'\n', b'\r', &hay[i..]) else {
            return hay.len();
        };
        let j = i + k;
        match hay[j] {
            QUOTE => self.quote = Quote::MaybeClosed,
            b'\n' if self.byte_before(hay, j) == b'\r' => {}
            _ => self.line += 1,
        }
        j + 1
    }

    /// Handles a `"`, `\n` or `\r` outside quotes, at `hay[j]` (input offset `at`); returns
    /// the record it ends, if any.
    fn special_unquoted(&mut self, hay: &[u8], j: usize, at: u64) -> Option<Found> {
        let before = self.byte_before(hay, j);
        match hay[j] {
            QUOTE => {
                // Outside quotes here, the byte before was outside too (leaving quotes
                // takes a `"`), so a delimiter there did end a field.
                if at == self.start.offset || before == self.delimiter {
                    self.quote = Quote::In;
                }
                None
            }
            // The `\n` of a `\r\n`: the `\r` ended the record and the line.
            b'\n' if before == b'\r' => {
                self.start.offset = at + 1;
                None
            }
            _ => {
                self.line += 1;
                let start = self.start;
                self.start = Position {
                    offset: at + 1,
                    line: self.line,
                };
                let blank = at == start.offset;
                (!blank).then_some(Found {
                    start,
                    end: at,
                    unclosed: false,
                })
            }
        }
    }

    /// Moves over `hay` (the input from offset `base`), which holds no `"`, from outside
    /// quotes: the state `step` would reach, found by counting terminators instead of
    /// stopping at each. Without a quote nothing can be quoted, so every terminator ends a
    /// record (or a blank line): the next record starts after the last one, on the line
    /// after all of them. This is the "fast count" that makes a far shard's boundary cheap.
    fn fast_forward(&mut self, hay: &[u8], base: u64) {
        debug_assert!(self.quote == Quote::Out && memchr(QUOTE, hay).is_none());
        let Some(&last) = hay.last() else {
            return;
        };
        // Byte counts the compiler vectorizes; u8 lanes summed per block of 255 bytes.
        let (mut cr, mut lf) = (0u64, 0u64);
        for block in hay.chunks(255) {
            let (mut c, mut l) = (0u8, 0u8);
            for &b in block {
                c += u8::from(b == b'\r');
                l += u8::from(b == b'\n');
            }
            cr += u64::from(c);
            lf += u64::from(l);
        }
        // A `\r\n` ends one line, not two (its `\r` may be the last byte before `hay`).
        let mut crlf = 0;
        if lf > 0 && (cr > 0 || self.prev == b'\r') {
            crlf = u64::from(self.prev == b'\r' && hay[0] == b'\n')
                + hay
                    .windows(2)
                    .filter(|w| w[0] == b'\r' && w[1] == b'\n')
                    .count() as u64;
        }
        self.line += cr + lf - crlf;
        if let Some(j) = memrchr2(b'\n', b'\r', hay) {
            self.start = Position {
                offset: base + j as u64 + 1,
                line: self.line,
            };
        }
        self.prev = last;
    }

    fn byte_before(&self, hay: &[u8], j: usize) -> u8 {
        if j == 0 { self.prev } else { hay[j - 1] }
    }

    /// The record the end of the input (at offset `eof`) ends, if one is open.
    fn finish(&mut self, eof: u64) -> Option<Found> {
        let start = self.start;
        let unclosed = self.quote == Quote::In;
        self.quote = Quote::Out;
        self.start.offset = eof;
        (start.offset < eof).then_some(Found {
            start,
            end: eof,
            unclosed,
        })
    }
}

/// Reads more of `source` onto the end of `buf`: up to `size` bytes, fewer only at the end
/// of the input. Returns the number of bytes read. `read_to_end` fills spare capacity
/// without zeroing it first where the source allows, and retries interrupted reads.
fn read_more<R: Read>(source: &mut R, buf: &mut Vec<u8>, size: usize) -> io::Result<usize> {
    buf.reserve(size);
    source.take(size as u64).read_to_end(buf)
}

/// The records being gathered into the next chunk.
#[derive(Debug)]
struct Pending {
    offset: u64,
    /// End of the last record.
    end: u64,
    /// Whether the bytes are in the framer's buffer (from its index 0): not for the chunk
    /// of a record too long to hold.
    held: bool,
    spans: Vec<Span>,
    flaws: Vec<(usize, Flaw)>,
}

/// Cuts a CSV byte stream into [`Chunk`]s of whole records, each record with its start
/// line. Memory stays within about `chunk_size + max_record` bytes plus the chunks the
/// caller holds, whatever the input: a record too long is skipped as it streams by.
pub struct Framer<R> {
    source: R,
    config: Config,
    scanner: Scanner,
    /// The input from offset `base` on: the pending chunk's bytes (from index 0), the record
    /// being scanned, bytes not yet scanned.
    buf: Vec<u8>,
    base: u64,
    /// How much of `buf` the scanner has seen.
    scanned: usize,
    pending: Option<Pending>,
    ready: VecDeque<Chunk>,
    /// The record being scanned is too long: its bytes are dropped as they are read.
    skipping: bool,
    /// Records starting at or after this offset are not framed.
    end: u64,
    /// The first record too long to hold ends the input (see [`Framer::stop_at_too_long`]).
    stop_at_too_long: bool,
    /// No record is framed yet, from the start of the input: the header. Too long, it ends
    /// the input whatever the mode, since the header cannot be skipped.
    header: bool,
    bom_check: bool,
    done: bool,
    spare_bytes: Vec<Vec<u8>>,
    spare_spans: Vec<Vec<Span>>,
}

impl<R: Read> Framer<R> {
    /// Frames a whole input, from its first byte: a leading BOM is skipped.
    pub fn new(source: R, config: Config) -> Framer<R> {
        Framer::resume(source, Position::START, config)
    }

    /// Frames the input from `at`, where `source` is positioned: a record start as
    /// [`record_start_at_or_after`] or a [`Record`] gives it (with the line there).
    pub fn resume(source: R, at: Position, config: Config) -> Framer<R> {
        Framer {
            source,
            config,
            scanner: Scanner::new(config.delimiter, at),
            buf: Vec::new(),
            base: at.offset,
            scanned: 0,
            pending: None,
            ready: VecDeque::new(),
            skipping: false,
            end: u64::MAX,
            stop_at_too_long: false,
            header: false,
            bom_check: at.offset == 0,
            done: false,
            spare_bytes: Vec::new(),
            spare_spans: Vec::new(),
        }
    }

    /// Frames only the records that start before offset `end`: a shard's byte range
    /// `[at, end)` owns exactly the records starting in it. The record straddling `end`
    /// is read to its end.
    pub fn until(self, end: u64) -> Framer<R> {
        Framer { end, ..self }
    }

    /// Ends the input at the first record over `Config::max_record`, as soon as it is
    /// known to be too long: that record is the last, a [`Flaw::TooLong`] whose `len` is
    /// the bytes read of it so far. For callers that stop at the first flawed record: an
    /// input that never ends a record (`/dev/zero`) then ends too, instead of being skipped
    /// forever.
    pub fn stop_at_too_long(self) -> Framer<R> {
        Framer {
            stop_at_too_long: true,
            ..self
        }
    }

    /// Ends the input at a first record (a header) over `Config::max_record`, as
    /// [`Framer::stop_at_too_long`] does for any record: a caller that cannot go on without
    /// the header stops there whatever it does with later records, and an input that never
    /// ends its first record (`/dev/zero`) is not read forever.
    pub fn stop_at_too_long_header(self) -> Framer<R> {
        Framer {
            header: true,
            ..self
        }
    }

    /// The next chunk, `None` at the end of the input. `Err` is an I/O error of the source.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        while self.ready.is_empty() && !self.done {
            self.advance()?;
        }
        Ok(self.ready.pop_front())
    }

    /// Gives a chunk's buffers back for the chunks to come.
    pub fn recycle(&mut self, chunk: Chunk) {
        // A buffer grown for a long record is let go: kept, it would pin that memory.
        let usual = self.config.chunk_size + 2 * self.config.read_size;
        let capacity = chunk.bytes.capacity();
        if self.spare_bytes.len() < POOL_LIMIT && capacity > 0 && capacity <= 2 * usual {
            self.spare_bytes.push(chunk.bytes);
        }
        if self.spare_spans.len() < POOL_LIMIT {
            let mut spans = chunk.spans;
            spans.clear();
            self.spare_spans.push(spans);
        }
    }

    /// Input offset read up to so far (for progress).
    pub fn offset_read(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn advance(&mut self) -> io::Result<()> {
        if mem::take(&mut self.bom_check) {
            self.skip_bom()?;
        }
        if self.scanner.start.offset >= self.end {
            self.finish(self.scanner.start.offset);
            return Ok(());
        }
        let at = self.base + self.scanned as u64;
        match self.scanner.step(&self.buf[self.scanned..], at) {
            Step::Found(found, n) => {
                self.scanned += n;
                self.on_record(found);
            }
            Step::Exhausted => {
                self.scanned = self.buf.len();
                if self.scanner.start.offset < self.end {
                    self.make_room();
                    if !self.done
                        && read_more(&mut self.source, &mut self.buf, self.config.read_size)? == 0
                    {
                        self.at_eof();
                    }
                }
            }
        }
        Ok(())
    }

    fn skip_bom(&mut self) -> io::Result<()> {
        while self.buf.len() < BOM.len() {
            if read_more(&mut self.source, &mut self.buf, self.config.read_size)? == 0 {
                break;
            }
        }
        if self.buf.starts_with(BOM) {
            self.scanned = BOM.len();
            self.scanner.start.offset += BOM.len() as u64;
        }
        Ok(())
    }

    fn on_record(&mut self, found: Found) {
        if found.start.offset >= self.end {
            return self.finish(found.start.offset);
        }
        self.header = false;
        let held = !mem::take(&mut self.skipping);
        let len = found.end - found.start.offset;
        let flaw = if found.unclosed {
            Some(Flaw::UnclosedQuote)
        } else if len > self.config.max_record as u64 {
            Some(Flaw::TooLong { len })
        } else {
            None
        };
        let start = found.start.offset;
        if let Some(p) = &self.pending
            && (!p.held || !held || self.is_full(p, start))
        {
            self.cut(start);
        }
        if self.pending.is_none() {
            if held {
                self.drop_before(start);
            }
            let spans = self.spare_spans.pop().unwrap_or_default();
            self.pending = Some(Pending {
                offset: start,
                end: start,
                held,
                spans,
                flaws: Vec::new(),
            });
        }
        let p = self
            .pending
            .as_mut()
            .expect("a pending chunk was just made");
        let rel = (start - p.offset) as usize;
        let span_end = if flaw.is_some() {
            rel
        } else {
            rel + len as usize
        };
        if let Some(flaw) = flaw {
            p.flaws.push((p.spans.len(), flaw));
        }
        p.spans.push(Span {
            line: found.start.line,
            start: rel,
            end: span_end,
        });
        p.end = found.end;
    }

    /// Whether the pending chunk is big enough to cut before a record starting at `next`.
    fn is_full(&self, p: &Pending, next: u64) -> bool {
        next - p.offset >= self.config.chunk_size as u64
    }

    /// Called when the buffer is scanned to its end, before reading more: keeps memory
    /// bounded whatever the input.
    fn make_room(&mut self) {
        let start = self.scanner.start.offset;
        let scanned_to = self.base + self.scanned as u64;
        let too_long = scanned_to - start > self.config.max_record as u64;
        if too_long && (self.stop_at_too_long || self.header) && !self.skipping {
            let found = Found {
                start: self.scanner.start,
                end: scanned_to,
                unclosed: false,
            };
            self.on_record(found);
            return self.finish(scanned_to);
        }
        if self.skipping || too_long {
            return self.skip_scanned();
        }
        match &self.pending {
            // A full chunk followed by a long record or many blank lines: cut it now rather
            // than hold them.
            Some(p) if self.is_full(p, start) => self.cut(start),
            // Nothing gathered: blank lines before `start` need not be kept.
            None => self.drop_before(start),
            Some(_) => {}
        }
    }

    /// The record being scanned is too long to hold: the chunk before it is finished, and
    /// what was read of it is dropped.
    fn skip_scanned(&mut self) {
        let scanned_to = self.base + self.scanned as u64;
        match self.pending.take() {
            Some(p) if p.held => {
                let fresh = self.fresh_buffer();
                let mut bytes = mem::replace(&mut self.buf, fresh);
                bytes.truncate((p.end - self.base) as usize);
                self.emit(p, bytes);
            }
            Some(p) => {
                self.emit(p, Vec::new());
                self.buf.clear();
            }
            None => self.buf.clear(),
        }
        self.base = scanned_to;
        self.scanned = 0;
        self.skipping = true;
    }

    fn at_eof(&mut self) {
        let eof = self.base + self.buf.len() as u64;
        if let Some(found) = self.scanner.finish(eof) {
            self.on_record(found);
        }
        if !self.done {
            self.finish(eof);
        }
    }

    fn finish(&mut self, at: u64) {
        self.cut(at);
        self.done = true;
    }

    /// Turns the pending records into a chunk; the record starting at `next` (or the end)
    /// will begin the next one.
    fn cut(&mut self, next: u64) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let bytes = if p.held {
            self.split_buffer(p.end, next)
        } else {
            Vec::new()
        };
        self.emit(p, bytes);
    }

    /// Hands out the buffer up to offset `end`, keeping the bytes from offset `next` on in a
    /// fresh buffer: only the tail is copied.
    fn split_buffer(&mut self, end: u64, next: u64) -> Vec<u8> {
        let (end_at, next_at) = (self.index(end), self.index(next));
        let mut rest = self.fresh_buffer();
        rest.extend_from_slice(&self.buf[next_at..]);
        let mut bytes = mem::replace(&mut self.buf, rest);
        bytes.truncate(end_at);
        self.base = next;
        self.scanned -= next_at;
        bytes
    }

    /// Drops the buffered bytes before offset `at`.
    fn drop_before(&mut self, at: u64) {
        let n = self.index(at);
        if n > 0 {
            self.buf.drain(..n);
            self.base = at;
            self.scanned -= n;
        }
    }

    fn index(&self, at: u64) -> usize {
        debug_assert!(at >= self.base && at - self.base <= self.buf.len() as u64);
        (at - self.base) as usize
    }

    fn emit(&mut self, p: Pending, bytes: Vec<u8>) {
        self.ready.push_back(Chunk {
            offset: p.offset,
            end_offset: p.end,
            bytes,
            spans: p.spans,
            flaws: p.flaws,
        });
    }

    fn fresh_buffer(&mut self) -> Vec<u8> {
        let mut buf = self.spare_bytes.pop().unwrap_or_default();
        buf.clear();
        buf.reserve(self.config.chunk_size + 2 * self.config.read_size);
        buf
    }
}

impl<R: Read> Iterator for Framer<R> {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<io::Result<Chunk>> {
        self.next_chunk().transpose()
    }
}

/// The first record start at or after `offset`, with its line; the end of the input when no
/// record starts there. Blank lines are not records: a start is where a record's first byte
/// is.
///
/// The quote state is known exactly because the scan starts at `from`, a known record start
/// ([`Position::START`], or the body start after the header), and runs to the answer: no
/// guessing from the bytes around `offset`, so a quoted newline never passes for a record
/// end. The scan is a `memchr` over quotes and terminators, at memory speed, and holds one
/// read buffer: a long record costs time, not memory.
///
/// Ranges `[b_i, b_{i+1})` with each `b_i` from this function (and the last one the end of
/// the input) own every record exactly once: frame each with
/// `Framer::resume(source, b_i, config).until(b_{i+1}.offset)`.
pub fn record_start_at_or_after<R: Read + Seek>(
    input: &mut R,
    from: Position,
    offset: u64,
    config: &Config,
) -> io::Result<Position> {
    input.seek(SeekFrom::Start(from.offset))?;
    let mut scanner = Scanner::new(config.delimiter, from);
    let mut buf = Vec::with_capacity(config.read_size);
    let mut base = from.offset;
    let mut pos = 0;
    if from.offset == 0 {
        while buf.len() < BOM.len() && read_more(input, &mut buf, config.read_size)? > 0 {}
        if buf.starts_with(BOM) {
            pos = BOM.len();
            scanner.start.offset = BOM.len() as u64;
        }
    }
    loop {
        // A whole read before `offset` without a quote: counted, not stepped through.
        if pos == 0
            && scanner.quote == Quote::Out
            && base + buf.len() as u64 <= offset
            && memchr(QUOTE, &buf).is_none()
        {
            scanner.fast_forward(&buf, base);
            pos = buf.len();
        }
        match scanner.step(&buf[pos..], base + pos as u64) {
            Step::Found(found, n) => {
                pos += n;
                if found.start.offset >= offset {
                    return Ok(found.start);
                }
            }
            Step::Exhausted => {
                // The scanner saw the byte at `start` without moving `start` on: a record
                // starts there.
                let scanned_to = base + buf.len() as u64;
                if scanner.start.offset >= offset && scanned_to > scanner.start.offset {
                    return Ok(scanner.start);
                }
                base = scanned_to;
                buf.clear();
                pos = 0;
                if read_more(input, &mut buf, config.read_size)? == 0 {
                    // A record open at the end started before `offset`, or it would have
                    // been returned above.
                    return Ok(Position {
                        offset: base,
                        line: scanner.line,
                    });
                }
            }
        }
    }
}

/// Splits framed records into fields, reusing its buffers from record to record.
#[derive(Debug, Clone)]
pub struct Splitter {
    delimiter: u8,
    /// Unescaped quoted fields of the current record.
    scratch: Vec<u8>,
    fields: Vec<FieldAt>,
}

/// Where a field's bytes are: most fields are a slice of the record itself.
#[derive(Debug, Clone, Copy)]
enum FieldAt {
    Record(usize, usize),
    Scratch(usize, usize),
}

impl Splitter {
    pub fn new(config: &Config) -> Splitter {
        Splitter {
            delimiter: config.delimiter,
            scratch: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// The fields of `record`, one record as a [`Chunk`] gives it (no terminator). The
    /// result equals the `csv` crate's for the same record: quoted fields are unquoted and
    /// unescaped (`""` → `"`), in `scratch` when they must change, borrowed otherwise.
    pub fn split<'a>(&'a mut self, record: &'a [u8]) -> Fields<'a> {
        self.scratch.clear();
        self.fields.clear();
        let mut pos = 0;
        loop {
            let (field, next) = if record.get(pos) == Some(&QUOTE) {
                self.quoted(record, pos + 1)
            } else {
                let end = self.field_end(record, pos);
                (FieldAt::Record(pos, end), end)
            };
            self.fields.push(field);
            if next >= record.len() {
                break;
            }
            pos = next + 1;
        }
        Fields {
            record,
            scratch: &self.scratch,
            fields: &self.fields,
        }
    }

    /// The delimiter ending the field that starts at `pos`, or the end of the record.
    fn field_end(&self, record: &[u8], pos: usize) -> usize {
        memchr(self.delimiter, &record[pos..]).map_or(record.len(), |k| pos + k)
    }

    /// The quoted field whose content starts at `pos`, and the delimiter (or end) after it.
    fn quoted(&mut self, record: &[u8], pos: usize) -> (FieldAt, usize) {
        // Most quoted fields have no `""` and end at their closing quote: borrow them.
        if let Some(k) = memchr(QUOTE, &record[pos..]) {
            let close = pos + k;
            if record.get(close + 1).is_none_or(|&b| b == self.delimiter) {
                return (FieldAt::Record(pos, close), close + 1);
            }
        }
        let from = self.scratch.len();
        let next = self.unescape(record, pos);
        (FieldAt::Scratch(from, self.scratch.len()), next)
    }

    /// Copies the quoted field whose content starts at `pos` into `scratch`, unescaped;
    /// returns the delimiter (or end) after it.
    fn unescape(&mut self, record: &[u8], mut pos: usize) -> usize {
        loop {
            let Some(k) = memchr(QUOTE, &record[pos..]) else {
                // Unclosed: the rest of the record, as the csv crate reads it.
                self.scratch.extend_from_slice(&record[pos..]);
                return record.len();
            };
            let close = pos + k;
            self.scratch.extend_from_slice(&record[pos..close]);
            match record.get(close + 1) {
                Some(&QUOTE) => {
                    self.scratch.push(QUOTE);
                    pos = close + 2;
                }
                Some(&b) if b != self.delimiter => {
                    // Text after the closing quote joins the field, quotes and all.
                    let end = self.field_end(record, close + 1);
                    self.scratch.extend_from_slice(&record[close + 1..end]);
                    return end;
                }
                _ => return close + 1,
            }
        }
    }
}

/// The fields of one record, borrowed from the record or the splitter's scratch buffer.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    record: &'a [u8],
    scratch: &'a [u8],
    fields: &'a [FieldAt],
}

impl<'a> Fields<'a> {
    /// Number of fields: at least 1.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.fields.get(i).map(|&f| self.resolve(f))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let this = *self;
        self.fields.iter().map(move |&f| this.resolve(f))
    }

    fn resolve(&self, f: FieldAt) -> &'a [u8] {
        match f {
            FieldAt::Record(a, b) => &self.record[a..b],
            FieldAt::Scratch(a, b) => &self.scratch[a..b],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    /// A record as the reference and the framer both describe it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Rec {
        start: Position,
        body: Result<Vec<u8>, Flaw>,
    }

    /// The format of the module doc, one byte at a time, with no buffers: the reference the
    /// memchr scanner and the framer's buffer handling are checked against.
    fn reference(input: &[u8], delimiter: u8, max_record: usize) -> Vec<Rec> {
        let end_line = |i: &mut usize, line: &mut u64| {
            let crlf = input[*i] == b'\r' && input.get(*i + 1) == Some(&b'\n');
            *i += if crlf { 2 } else { 1 };
            *line += 1;
        };
        let mut records = Vec::new();
        let mut i = if input.starts_with(BOM) { BOM.len() } else { 0 };
        let mut line = 1;
        while i < input.len() {
            if matches!(input[i], b'\r' | b'\n') {
                end_line(&mut i, &mut line); // a blank line
                continue;
            }
            let start = Position {
                offset: i as u64,
                line,
            };
            let (mut quoted, mut field_start) = (false, true);
            let end = loop {
                let Some(&b) = input.get(i) else {
                    break input.len();
                };
                match (quoted, b) {
                    (true, b'"') if input.get(i + 1) == Some(&b'"') => i += 2,
                    (true, b'"') => {
                        quoted = false;
                        i += 1;
                    }
                    (_, b'\r' | b'\n') if !quoted => {
                        let end = i;
                        end_line(&mut i, &mut line);
                        break end;
                    }
                    (true, b'\r' | b'\n') => end_line(&mut i, &mut line),
                    (true, _) => i += 1,
                    (false, b'"') if field_start => {
                        quoted = true;
                        field_start = false;
                        i += 1;
                    }
                    (false, _) => {
                        field_start = b == delimiter;
                        i += 1;
                    }
                }
            };
            let len = end - start.offset as usize;
            let body = if quoted {
                Err(Flaw::UnclosedQuote)
            } else if len > max_record {
                Err(Flaw::TooLong { len: len as u64 })
            } else {
                Ok(input[start.offset as usize..end].to_vec())
            };
            records.push(Rec { start, body });
        }
        records
    }

    /// The line an editor shows for `offset`.
    fn editor_line(input: &[u8], offset: usize) -> u64 {
        let prefix = &input[..offset];
        let breaks = prefix
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\r' || (b == b'\n' && (i == 0 || prefix[i - 1] != b'\r')))
            .count();
        1 + breaks as u64
    }

    /// Every record the framer gives, checking each chunk's promises on the way and
    /// recycling chunks as a pipeline would.
    fn collect<R: Read>(mut framer: Framer<R>, input: &[u8]) -> Vec<Rec> {
        let mut records = Vec::new();
        while let Some(chunk) = framer.next_chunk().unwrap() {
            check_chunk(&chunk, input);
            records.extend(chunk.records().map(|r| Rec {
                start: r.start,
                body: r.body.map(<[u8]>::to_vec),
            }));
            framer.recycle(chunk);
        }
        assert!(framer.next_chunk().unwrap().is_none(), "done stays done");
        records
    }

    fn check_chunk(chunk: &Chunk, input: &[u8]) {
        let records: Vec<Record> = chunk.records().collect();
        assert!(!records.is_empty(), "a chunk has records");
        assert_eq!(records.len(), chunk.len());
        assert_eq!(chunk.offset(), records[0].start.offset);
        assert_eq!(chunk.first_line(), records[0].start.line);
        if chunk.bytes().is_empty() {
            assert_eq!(records.len(), 1, "a skipped record has a chunk to itself");
            assert!(records[0].body.is_err());
        } else {
            let range = chunk.offset() as usize..chunk.end_offset() as usize;
            assert_eq!(chunk.bytes(), &input[range]);
        }
        for record in &records {
            if let Ok(body) = record.body {
                let at = record.start.offset as usize;
                assert_eq!(body, &input[at..at + body.len()]);
            }
        }
    }

    fn frame(input: &[u8], config: Config) -> Vec<Rec> {
        collect(Framer::new(Cursor::new(input), config), input)
    }

    /// The records a shard `[from, end)` owns.
    fn frame_range(input: &[u8], from: Position, end: u64, config: Config) -> Vec<Rec> {
        let mut source = Cursor::new(input);
        source.set_position(from.offset);
        collect(Framer::resume(source, from, config).until(end), input)
    }

    fn bodies(records: &[Rec]) -> Vec<(u64, String)> {
        records
            .iter()
            .map(|r| {
                let body = match &r.body {
                    Ok(b) => String::from_utf8_lossy(b).into_owned(),
                    Err(flaw) => format!("<{flaw}>"),
                };
                (r.start.line, body)
            })
            .collect()
    }

    fn lines_and_bodies(input: &str) -> Vec<(u64, String)> {
        let records = frame(input.as_bytes(), Config::default());
        assert_eq!(records, reference(input.as_bytes(), b',', 64 * MIB));
        bodies(&records)
    }

    fn owned(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
        pairs.iter().map(|&(l, s)| (l, s.to_string())).collect()
    }

    fn split(record: &[u8], delimiter: u8) -> Vec<Vec<u8>> {
        let config = Config::default().with_delimiter(delimiter).unwrap();
        let mut splitter = Splitter::new(&config);
        let fields = splitter.split(record);
        assert_eq!(fields.iter().len(), fields.len());
        assert!((0..fields.len()).all(|i| fields.get(i) == fields.iter().nth(i)));
        fields.iter().map(<[u8]>::to_vec).collect()
    }

    /// Every record as the csv crate reads the whole input.
    fn csv_records(input: &[u8], delimiter: u8) -> Vec<Vec<Vec<u8>>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(input);
        let mut record = csv::ByteRecord::new();
        let mut records = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            records.push(record.iter().map(<[u8]>::to_vec).collect());
        }
        records
    }

    fn strings(fields: &[Vec<u8>]) -> Vec<String> {
        fields
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }

    #[test]
    fn lf_crlf_and_lone_cr_each_end_a_record_and_a_line() {
        assert_eq!(
            lines_and_bodies("a,b\nc,d\r\ne\rf"),
            owned(&[(1, "a,b"), (2, "c,d"), (3, "e"), (4, "f")])
        );
        assert_eq!(
            lines_and_bodies("a\r\rb\n\rc\r\n\r\nd\r\n"),
            owned(&[(1, "a"), (3, "b"), (5, "c"), (7, "d")]),
            "blank lines are skipped but counted, \\n\\r is two line ends"
        );
        assert_eq!(lines_and_bodies("\n\r\n\r"), owned(&[]));
        assert_eq!(lines_and_bodies(""), owned(&[]));
    }

    #[test]
    fn quoted_terminators_stay_in_the_record_and_still_count_lines() {
        assert_eq!(
            lines_and_bodies("1,\"x\ny\"\n2,\"a\r\nb\rc\"\r\n3,\"\"\"\n\"\"\"\n4"),
            owned(&[
                (1, "1,\"x\ny\""),
                (3, "2,\"a\r\nb\rc\""),
                (6, "3,\"\"\"\n\"\"\""),
                (8, "4")
            ])
        );
        assert_eq!(
            lines_and_bodies("\"\"\n\"\",\n,\n"),
            owned(&[(1, "\"\""), (2, "\"\","), (3, ",")]),
            "an empty quoted field or a lone delimiter is a record, not a blank line"
        );
    }

    #[test]
    fn a_quote_opens_quoting_only_at_a_field_start() {
        // Mid-field and after a closing quote, a quote is a byte like any other: the
        // newline after it ends the record, as csv-core reads it.
        let input = "ab\"c\nd,e\"\n\"x\"y\"\n1,\"z\" \"w\n";
        assert_eq!(
            lines_and_bodies(input),
            owned(&[
                (1, "ab\"c"),
                (2, "d,e\""),
                (3, "\"x\"y\""),
                (4, "1,\"z\" \"w")
            ])
        );
        let fields: Vec<Vec<String>> = frame(input.as_bytes(), Config::default())
            .iter()
            .map(|r| strings(&split(r.body.as_ref().unwrap(), b',')))
            .collect();
        let csv: Vec<Vec<String>> = csv_records(input.as_bytes(), b',')
            .iter()
            .map(|r| strings(r))
            .collect();
        assert_eq!(fields, csv);
        assert_eq!(
            fields[2],
            ["xy\""],
            "text after a closing quote joins the field"
        );
        assert_eq!(fields[3], ["1", "z \"w"]);
    }

    #[test]
    fn a_bom_is_skipped_at_the_start_only() {
        let records = frame("\u{feff}\"a\",b\n\u{feff}c".as_bytes(), Config::default());
        assert_eq!(records[0].start, Position { offset: 3, line: 1 });
        assert_eq!(records[0].body.as_deref(), Ok(&b"\"a\",b"[..]));
        assert_eq!(records[1].body.as_deref(), Ok("\u{feff}c".as_bytes()));
        for read_size in 1..4 {
            let config = Config::default().with_read_size(read_size);
            assert_eq!(frame("\u{feff}".as_bytes(), config), []);
            assert_eq!(frame("\u{feff}\n\nx".as_bytes(), config)[0].start.line, 3);
            assert_eq!(
                frame(b"\xEF\xBB", config)[0].body.as_deref(),
                Ok(&b"\xEF\xBB"[..])
            );
        }
    }

    #[test]
    fn a_quote_open_at_the_end_is_a_flaw_at_the_line_where_its_record_starts() {
        let input = b"id,note\n1,ok\n2,\"never\nclosed\n3,x\n";
        let records = frame(input, Config::default());
        assert_eq!(records.len(), 3, "the rest of the input is the open record");
        assert_eq!(records[2].start.line, 3);
        assert_eq!(records[2].body, Err(Flaw::UnclosedQuote));
        let message = format!("tx.csv:{}: {}", records[2].start.line, Flaw::UnclosedQuote);
        assert_eq!(message, "tx.csv:3: quote opened here is never closed");
        // `""` is an escaped quote, not a close and a reopen.
        let records = frame(b"\"a\"\",b\nc", Config::default());
        assert_eq!(
            bodies(&records),
            [(1, "<quote opened here is never closed>".into())]
        );
        // Over the size limit too: still reported as the unclosed quote it is.
        let small = Config::default().with_max_record(4).with_read_size(2);
        assert_eq!(
            bodies(&frame(b"a\n\"bcdefgh\nij", small)),
            owned(&[(1, "a"), (2, "<quote opened here is never closed>")])
        );
    }

    #[test]
    fn a_record_over_the_limit_is_skipped_and_framing_goes_on() {
        let config = Config::default().with_max_record(5).with_read_size(3);
        let input = b"ab\n123456\r\ncdefg\n\"1\n2345\"\nh";
        let records = frame(input, config);
        assert_eq!(records, reference(input, b',', 5));
        assert_eq!(
            bodies(&records),
            owned(&[
                (1, "ab"),
                (2, "<record of 6 bytes is over the record size limit>"),
                (3, "cdefg"),
                (4, "<record of 8 bytes is over the record size limit>"),
                (6, "h"),
            ])
        );
    }

    #[test]
    fn a_record_without_end_does_not_grow_memory() {
        let config = Config::default()
            .with_max_record(1024)
            .with_chunk_size(4096)
            .with_read_size(4096);
        let len = 8 * MIB as u64;
        let source = b"a\n".chain(io::repeat(0).take(len)).chain(&b"\nb\n"[..]);
        let mut framer = Framer::new(source, config);
        let mut records = Vec::new();
        while let Some(chunk) = framer.next_chunk().unwrap() {
            assert!(framer.buf.capacity() < 64 * 1024, "memory stays bounded");
            records.extend(
                chunk
                    .records()
                    .map(|r| (r.start.line, r.body.map(|b| b.to_vec()))),
            );
        }
        assert_eq!(
            records,
            [
                (1, Ok(b"a".to_vec())),
                (2, Err(Flaw::TooLong { len })),
                (3, Ok(b"b".to_vec()))
            ]
        );
    }

    #[test]
    fn stop_at_too_long_ends_an_endless_record_as_soon_as_it_is_too_long() {
        let config = Config::default()
            .with_max_record(1024)
            .with_chunk_size(4096)
            .with_read_size(512);
        // Endless: `skip` would read it forever.
        let source = b"a\nb\n".chain(io::repeat(0));
        let mut framer = Framer::new(source, config).stop_at_too_long();
        let mut records = Vec::new();
        while let Some(chunk) = framer.next_chunk().unwrap() {
            records.extend(chunk.records().map(|r| (r.start.line, r.body.is_ok())));
        }
        assert_eq!(records, [(1, true), (2, true), (3, false)]);
    }

    #[test]
    fn an_endless_first_record_ends_the_input_even_when_skipping() {
        let config = Config::default()
            .with_max_record(1024)
            .with_chunk_size(4096)
            .with_read_size(512);
        // The header cannot be skipped: read on, `/dev/zero` was read forever.
        let mut framer = Framer::new(io::repeat(0), config).stop_at_too_long_header();
        let chunk = framer.next_chunk().unwrap().unwrap();
        let records: Vec<_> = chunk.records().map(|r| (r.start.line, r.body)).collect();
        assert!(
            matches!(records[..], [(1, Err(Flaw::TooLong { len }))] if len > 1024),
            "{records:?}"
        );
        assert!(framer.next_chunk().unwrap().is_none());
        // Later records too long are skipped as before.
        let input = format!("h\n{}\nb\n", "x".repeat(2000));
        let framer = Framer::new(Cursor::new(input.into_bytes()), config).stop_at_too_long_header();
        let lines: Vec<_> = framer
            .flat_map(|c| {
                let c = c.unwrap();
                c.records()
                    .map(|r| (r.start.line, r.body.is_ok()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(lines, [(1, true), (2, false), (3, true)]);
    }

    #[test]
    fn skipping_records_lands_on_the_right_record_and_flaw() {
        let input = b"a\nb\nc\n\"d\ne";
        let mut framer = Framer::new(Cursor::new(&input[..]), Config::default());
        let chunk = framer.next_chunk().unwrap().unwrap();
        let all: Vec<Record> = chunk.records().collect();
        for from in 0..=all.len() {
            for n in 0..=all.len() - from {
                let some: Vec<Record> = chunk.records().skip(from).take(n).collect();
                assert_eq!(some, all[from..from + n], "{from}+{n}");
            }
        }
        assert_eq!(all[3].body, Err(Flaw::UnclosedQuote));
        assert_eq!(chunk.records().nth(9), None);
    }

    #[test]
    fn chunks_are_cut_at_record_starts_past_the_chunk_size() {
        let input = b"aaaa\nbbbb\n\ncccc\ndddd";
        let mut framer = Framer::new(
            Cursor::new(&input[..]),
            Config::default().with_chunk_size(8),
        );
        let mut cuts = Vec::new();
        while let Some(chunk) = framer.next_chunk().unwrap() {
            check_chunk(&chunk, input);
            cuts.push((
                chunk.offset(),
                chunk.end_offset(),
                chunk.first_line(),
                chunk.len(),
            ));
        }
        assert_eq!(cuts, [(0, 9, 1, 2), (11, 20, 4, 2)]);
    }

    #[test]
    fn the_delimiter_decides_where_a_quote_can_open() {
        let semi = Config::default().with_delimiter(b';').unwrap();
        let input = b"a;\"b\nc\";x\n";
        assert_eq!(bodies(&frame(input, semi)), owned(&[(1, "a;\"b\nc\";x")]));
        assert_eq!(split(b"a;\"b\nc\";x", b';'), [&b"a"[..], b"b\nc", b"x"]);
        assert_eq!(
            bodies(&frame(input, Config::default())),
            owned(&[(1, "a;\"b"), (2, "c\";x")]),
            "with ',' the quote is mid-field"
        );
        for bad in [b'"', b'\r', b'\n'] {
            assert_eq!(
                Config::default().with_delimiter(bad),
                Err(InvalidDelimiter(bad))
            );
        }
    }

    #[test]
    fn fields_are_borrowed_unless_they_must_change() {
        let config = Config::default();
        let mut splitter = Splitter::new(&config);
        let record = b"a,\"b,c\",\"d\"\"e\",\"f\"g,,\"\"";
        let fields = splitter.split(record);
        let got: Vec<&[u8]> = fields.iter().collect();
        assert_eq!(got, [&b"a"[..], b"b,c", b"d\"e", b"fg", b"", b""]);
        let inside = |f: &[u8]| record.as_ptr_range().contains(&f.as_ptr());
        assert!(
            inside(got[0]) && inside(got[1]),
            "plain and simply quoted: zero-copy"
        );
        assert!(
            !inside(got[2]) && !inside(got[3]),
            "escaped or with a tail: unescaped copy"
        );
        assert_eq!(split(b"", b','), [b""]);
        assert_eq!(
            split(b"\"open,x", b','),
            [b"open,x"],
            "an unclosed quote runs to the end"
        );
    }

    /// Offsets to split at, checked three ways: each boundary is the first record start at
    /// or after its offset with the right line, and the ranges between boundaries own every
    /// record exactly once, in order, with the lines of the whole-input framing.
    fn check_splits(input: &[u8], from: Position, offsets: &[u64], config: Config) {
        let whole: Vec<Rec> = frame(input, config)
            .into_iter()
            .filter(|r| r.start.offset >= from.offset)
            .collect();
        let eof = Position {
            offset: input.len() as u64,
            line: editor_line(input, input.len()),
        };
        let mut bounds = vec![from];
        for &offset in offsets {
            let mut source = Cursor::new(input);
            let b = record_start_at_or_after(&mut source, from, offset, &config).unwrap();
            let first = whole.iter().map(|r| r.start).find(|s| s.offset >= offset);
            assert_eq!(b, first.unwrap_or(eof), "boundary at or after {offset}");
            bounds.push(b);
        }
        bounds.sort();
        bounds.push(eof);
        let mut owned = Vec::new();
        for pair in bounds.windows(2) {
            owned.extend(frame_range(input, pair[0], pair[1].offset, config));
        }
        assert_eq!(owned, whole, "splits at {offsets:?}");
    }

    const SMALL_INPUTS: &[&str] = &[
        "id,v\n1,\"a\nb\"\n2,\"c\r\nd\"\r\n\r\n3,x",
        "\u{feff}id\r\n\"1\r\n\"\r\n\r\n2\r\n",
        "id\ra\r\"b\rc\"\r\rd\r",
        "\n\nid,\"x\"\"\n\"\n,\n\"\"\n",
        "a\"b,\"c\nd\"e\n\"f\"\"\"\ng",
        "id\n\"unclosed\nquote\n",
        // Escaped quotes around a quoted CRLF, and no final newline.
        "id,n\r\n1,\"a\r\nb\"\r\n\r\n2,\"\"\"\n\"\"\"",
        // A BOM, blank lines before the header, a quoted record that looks like two.
        "\u{feff}\n\nid\n\"x\ny,\"\n\n\"\"\n",
    ];

    #[test]
    fn every_split_of_small_inputs_owns_each_record_once() {
        for input in SMALL_INPUTS {
            let input = input.as_bytes();
            for config in [
                Config::default(),
                Config::default().with_chunk_size(1).with_read_size(1),
                Config::default().with_max_record(3).with_read_size(2),
            ] {
                let whole = frame(input, config);
                assert_eq!(whole, reference(input, b',', config.max_record));
                let len = input.len() as u64;
                for a in 0..=len + 1 {
                    check_splits(input, Position::START, &[a], config);
                    for b in (a..=len).step_by(3) {
                        check_splits(input, Position::START, &[a, b], config);
                    }
                    // Framing up to any offset gives the records starting before it.
                    let before: Vec<Rec> = whole
                        .iter()
                        .filter(|r| r.start.offset < a)
                        .cloned()
                        .collect();
                    assert_eq!(frame_range(input, Position::START, a, config), before);
                }
                if let Some(body) = whole.get(1) {
                    for a in 0..=len {
                        check_splits(input, body.start, &[a], config);
                    }
                }
            }
        }
    }

    /// Bytes that matter to framing, and some that do not.
    const TOKENS: &[&[u8]] = &[
        b"a",
        b"bc",
        b",",
        b";",
        b"\"",
        b"\"\"",
        b"\r",
        b"\n",
        b"\r\n",
        b"\xEF\xBB\xBF",
        "é".as_bytes(),
        "😀".as_bytes(),
    ];

    fn any_input() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
    }

    /// A well-formed field, encoded with `,` as its delimiter: unquoted (quotes allowed
    /// past its first byte), or quoted with any content and maybe text after the closing
    /// quote.
    fn field() -> impl Strategy<Value = Vec<u8>> {
        let text = |chars: &'static [&'static str], n: std::ops::Range<usize>| {
            prop::collection::vec(prop::sample::select(chars), n).prop_map(|c| c.concat())
        };
        let plain = &["a", "Z", "0", " ", "é", "€", "😀", "'"][..];
        let any = &["a", "é", "😀", ",", ";", "\"", "\r", "\n", "\r\n", " "][..];
        let tail = &["a", "\"", " ", "é"][..];
        let unquoted = (text(plain, 0..4), text(tail, 0..3)).prop_map(|(a, b)| {
            let field = format!("{a}{b}");
            if field.starts_with('"') {
                format!("x{field}")
            } else {
                field
            }
        });
        let after = prop::option::of((text(plain, 1..3), text(tail, 0..2)));
        let quoted = (text(any, 0..6), after).prop_map(|(content, after)| {
            let after = after.map(|(a, b)| format!("{a}{b}")).unwrap_or_default();
            format!("\"{}\"{after}", content.replace('"', "\"\""))
        });
        prop_oneof![unquoted, quoted].prop_map(String::into_bytes)
    }

    fn record() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(field(), 1..5)
            .prop_map(|fields| fields.join(&b','))
            .prop_filter("an empty record is a blank line", |r| !r.is_empty())
    }

    /// A file of well-formed records (`,` delimited) with any terminators, blank lines, maybe a BOM and a
    /// final terminator; and where each record starts.
    fn file() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
        const LINE_ENDS: &[&[u8]] = &[b"\n", b"\r\n", b"\r"];
        let line_end = prop::sample::select(LINE_ENDS);
        let blanks = prop::collection::vec(line_end.clone(), 0..2);
        (
            any::<bool>(),
            prop::collection::vec((record(), line_end, blanks), 0..6),
            any::<bool>(),
        )
            .prop_map(|(bom, records, last_end)| {
                let mut input = if bom { BOM.to_vec() } else { Vec::new() };
                let mut starts = Vec::new();
                let n = records.len();
                for (i, (record, end, blanks)) in records.into_iter().enumerate() {
                    starts.push(input.len());
                    input.extend(record);
                    if i + 1 < n || last_end {
                        input.extend(end);
                        // A blank `\n` right after a `\r` would be its `\r\n`: not blank.
                        for blank in blanks {
                            if !(input.ends_with(b"\r") && blank == b"\n") {
                                input.extend(blank);
                            }
                        }
                    }
                }
                (input, starts)
            })
    }

    fn delimiter() -> impl Strategy<Value = u8> {
        prop::sample::select(&[b',', b';', b'\t'][..])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn framing_matches_the_reference_at_any_buffer_size(
            input in any_input(),
            delimiter in prop::sample::select(&[b',', b';'][..]),
            chunk_size in 1usize..40,
            read_size in 1usize..20,
            max_record in prop::sample::select(&[2usize, 7, 1000][..]),
        ) {
            let config = Config::default()
                .with_delimiter(delimiter).unwrap()
                .with_chunk_size(chunk_size)
                .with_read_size(read_size)
                .with_max_record(max_record);
            let records = frame(&input, config);
            prop_assert_eq!(&records, &reference(&input, delimiter, max_record));
            for r in &records {
                prop_assert_eq!(r.start.line, editor_line(&input, r.start.offset as usize));
            }
        }

        #[test]
        fn splitting_matches_the_csv_crate(delimiter in delimiter(), record in record()) {
            let record: Vec<u8> = record.iter().map(|&b| if b == b',' { delimiter } else { b }).collect();
            let csv = csv_records(&record, delimiter);
            prop_assert_eq!(csv.len(), 1);
            prop_assert_eq!(split(&record, delimiter), csv[0].clone());
        }

        #[test]
        fn framing_and_splitting_a_file_match_the_csv_crate(
            delimiter in delimiter(),
            (input, starts) in file(),
            read_size in 1usize..20,
            chunk_size in 1usize..60,
        ) {
            let input: Vec<u8> = input.iter().map(|&b| if b == b',' { delimiter } else { b }).collect();
            let config = Config::default()
                .with_delimiter(delimiter).unwrap()
                .with_read_size(read_size)
                .with_chunk_size(chunk_size);
            let records = frame(&input, config);
            let offsets: Vec<usize> = records.iter().map(|r| r.start.offset as usize).collect();
            prop_assert_eq!(offsets, starts);
            for r in &records {
                prop_assert_eq!(r.start.line, editor_line(&input, r.start.offset as usize));
            }
            let fields: Vec<Vec<Vec<u8>>> =
                records.iter().map(|r| split(r.body.as_ref().unwrap(), delimiter)).collect();
            prop_assert_eq!(fields, csv_records(&input, delimiter));
        }

        #[test]
        fn any_split_of_any_input_owns_each_record_once(
            input in any_input(),
            cuts in prop::collection::vec(0u64..200, 0..4),
            read_size in 1usize..10,
        ) {
            let config = Config::default().with_read_size(read_size).with_chunk_size(5);
            let offsets: Vec<u64> = cuts.iter().map(|c| c % (input.len() as u64 + 2)).collect();
            check_splits(&input, Position::START, &offsets, config);
        }
    }

    /// A ~100 MB transactions CSV where quotes are rare, as `txguard generate` writes them.
    fn transactions(bytes: usize) -> Vec<u8> {
        let mut out = b"id,timestamp,account,amount,currency,country,merchant\n".to_vec();
        let mut i = 0u64;
        while out.len() < bytes {
            i += 1;
            let merchant = if i.is_multiple_of(500) {
                format!("\"Shop {}, \"\"the best\"\"\"", i % 997)
            } else {
                format!("Shop {}", i % 997)
            };
            out.extend(
                format!(
                    "{i},2024-05-{:02}T{:02}:{:02}:{:02}Z,ACC{:06},{}.{:02},EUR,FR,{merchant}\n",
                    1 + i % 28,
                    i % 24,
                    i % 60,
                    (i * 7) % 60,
                    i % 100_000,
                    i % 10_000,
                    i % 100
                )
                .as_bytes(),
            );
        }
        out
    }

    /// Framing and parsing speed on a generated transactions file, against the csv crate
    /// (`TXGUARD_FRAMER_MB` sets the size, 100 MB by default).
    #[test]
    #[ignore = "a measurement: cargo test --release --lib framer::tests::throughput -- --ignored --nocapture"]
    fn throughput() {
        use std::time::Instant;
        let size_mb: usize = std::env::var("TXGUARD_FRAMER_MB").map_or(100, |v| v.parse().unwrap());
        let data = transactions(size_mb * 1_000_000);
        let mut file = tempfile::tempfile().unwrap();
        io::Write::write_all(&mut file, &data).unwrap();
        let open = || {
            let mut f = file.try_clone().unwrap();
            f.rewind().unwrap();
            f
        };
        let mb = data.len() as f64 / 1e6;
        let time = |what: &str, run: &mut dyn FnMut() -> usize| {
            let t = Instant::now();
            let records = run();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{what:<32} {:>6.0} MB/s  ({records} records, {secs:.3} s)",
                mb / secs
            );
            records
        };
        let frame = |source: &mut dyn Read| {
            let mut framer = Framer::new(source, Config::default());
            let mut records = 0;
            while let Some(chunk) = framer.next_chunk().unwrap() {
                records += chunk.len();
                framer.recycle(chunk);
            }
            records
        };
        let frame_and_split = |source: &mut dyn Read| {
            let mut framer = Framer::new(source, Config::default());
            let mut splitter = Splitter::new(&Config::default());
            let mut fields = 0;
            while let Some(chunk) = framer.next_chunk().unwrap() {
                for record in &chunk {
                    fields += splitter.split(record.body.unwrap()).len();
                }
                framer.recycle(chunk);
            }
            fields / 7
        };
        let csv = |source: &mut dyn Read| {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(source);
            let mut record = csv::ByteRecord::new();
            let mut records = 0;
            while reader.read_byte_record(&mut record).unwrap() {
                records += 1;
            }
            records
        };
        println!(
            "{mb:.0} MB, {} bytes a record",
            data.len() / data.iter().filter(|&&b| b == b'\n').count()
        );
        for _ in 0..2 {
            let n = time("framer (memory)", &mut || frame(&mut &data[..]));
            assert_eq!(n, time("framer (file)", &mut || frame(&mut open())));
            assert_eq!(
                n,
                time("framer + splitter (file)", &mut || frame_and_split(
                    &mut open()
                ))
            );
            assert_eq!(
                n,
                time("csv read_byte_record (memory)", &mut || csv(&mut &data[..]))
            );
            assert_eq!(
                n,
                time("csv read_byte_record (file)", &mut || csv(&mut open()))
            );
        }
    }
}
