//! The quote-aware state machine every piece of the framer scans with, and the one read
//! helper they share.

use std::io::{self, Read};

use memchr::{memchr, memchr3, memrchr2};

use super::{Position, QUOTE};

/// Quote state between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quote {
    Out,
    In,
    /// The last byte was a `"` inside quotes: the next byte tells an escaped quote (`""`)
    /// from a closing one, and it may be in the next read.
    MaybeClosed,
}

/// A record whose end the scanner has seen.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    pub(super) start: Position,
    /// Offset of its terminator, or of the end of the input.
    pub(super) end: u64,
    pub(super) unclosed: bool,
}

pub(super) enum Step {
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
pub(super) struct Scanner {
    pub(super) delimiter: u8,
    pub(super) quote: Quote,
    /// The byte before the next one: it tells the `\n` of a `\r\n` and a quote that opens a
    /// field when the byte before is in the previous slice.
    pub(super) prev: u8,
    /// Line of the next byte.
    pub(super) line: u64,
    /// Where the record being scanned starts: just past the last terminator (blank lines
    /// move it on).
    pub(super) start: Position,
}

impl Scanner {
    /// A scanner at a record start. The byte before `at` must not be a `\r` followed by a
    /// `\n` at `at`: a record never starts inside a `\r\n`.
    pub(super) fn new(delimiter: u8, at: Position) -> Scanner {
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
    pub(super) fn step(&mut self, hay: &[u8], base: u64) -> Step {
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
    pub(super) fn skip_quoted(&mut self, hay: &[u8], i: usize) -> usize {
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
    pub(super) fn special_unquoted(&mut self, hay: &[u8], j: usize, at: u64) -> Option<Found> {
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
    pub(super) fn fast_forward(&mut self, hay: &[u8], base: u64) {
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

    pub(super) fn byte_before(&self, hay: &[u8], j: usize) -> u8 {
        if j == 0 { self.prev } else { hay[j - 1] }
    }

    /// The record the end of the input (at offset `eof`) ends, if one is open.
    pub(super) fn finish(&mut self, eof: u64) -> Option<Found> {
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
pub(super) fn read_more<R: Read>(
    source: &mut R,
    buf: &mut Vec<u8>,
    size: usize,
) -> io::Result<usize> {
    buf.reserve(size);
    source.take(size as u64).read_to_end(buf)
}
