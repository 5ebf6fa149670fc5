//! [`Framer`]: a `Read` cut into [`Chunk`]s of whole records, in bounded memory.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::mem;

use super::chunk::Span;
use super::scanner::{Found, Scanner, Step, read_more};
use super::{BOM, Chunk, Config, Flaw, POOL_LIMIT, Position};

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
    /// [`record_start_at_or_after`](super::record_start_at_or_after) or a
    /// [`Record`](super::Record) gives it (with the line there).
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

    /// What the framer's buffer holds room for: tests check that it stays bounded.
    #[cfg(test)]
    pub(super) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
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
