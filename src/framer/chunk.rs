//! [`Chunk`]: the unit of work a framer hands out, whole records over one buffer, and
//! [`Records`], its records in input order with their start lines and flaws.

use super::{Flaw, Position};

/// A record of a chunk: where it starts and its bytes (terminator excluded), or its flaw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub start: Position,
    pub body: Result<&'a [u8], Flaw>,
}

/// Where one record lies in its chunk's bytes; empty for a flawed record.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) line: u64,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Whole records, in input order, cut from the input at a record start once past
/// `Config::chunk_size` bytes.
#[derive(Debug, Default)]
pub struct Chunk {
    pub(super) offset: u64,
    pub(super) end_offset: u64,
    /// The input from `offset` to `end_offset`; empty for the chunk of a skipped record.
    pub(super) bytes: Vec<u8>,
    pub(super) spans: Vec<Span>,
    /// (index in `spans`, flaw), by index: flaws are rare, so spans stay small without them.
    pub(super) flaws: Vec<(usize, Flaw)>,
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
