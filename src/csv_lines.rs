//! The line a record read by the `csv` crate is on, for error messages. The crate's record
//! position is where its reading began: before the blank lines it skips ahead of the
//! record and, after a CRLF line end, before that line's `\n`, which it reads as the start
//! of the next record; and it counts only `\n`. Said as is, an error after blank lines
//! named an earlier line, every error of a CRLF file the line above its own, and every
//! error of a file with lone-CR line ends line 1. Lines are counted here instead, as an
//! editor shows them: `\n`, `\r\n` and a lone `\r` each end one.

/// Lines of `body` counted up to each record's first byte, records taken in order (one
/// pass over the body for all of them).
pub struct Lines<'a> {
    body: &'a [u8],
    /// Bytes before `at` are counted: `line` is the line byte `at` is on.
    at: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    pub fn new(body: &'a [u8]) -> Lines<'a> {
        Lines {
            body,
            at: 0,
            line: 1,
        }
    }

    /// The record just read from `body`: `position` is the record's own `position()`, `end`
    /// the reader's `position().byte()` after the read. Records must come in file order.
    pub fn record(&mut self, position: Option<&csv::Position>, end: u64) -> Start<'a> {
        let body = self.body;
        let end = (end as usize).min(body.len());
        let start = (position.map_or(0, csv::Position::byte) as usize).min(end);
        let raw = &body[start..end];
        let blank = raw
            .iter()
            .position(|b| !matches!(b, b'\n' | b'\r'))
            .unwrap_or(raw.len());
        // The record's first byte is no line end (or the end of the body), so no `\r\n`
        // is split between two counts.
        let first = (start + blank).max(self.at);
        self.line += line_ends(body, self.at, first);
        self.at = first;
        Start {
            line: self.line,
            raw: &raw[blank..],
            at_end: end >= body.len(),
        }
    }
}

/// Line ends in `body[from..to]`: each `\n`, and each `\r` not followed by `\n`.
fn line_ends(body: &[u8], from: usize, to: usize) -> u64 {
    let mut n = 0;
    for i in from..to {
        match body[i] {
            b'\n' => n += 1,
            b'\r' if body.get(i + 1) != Some(&b'\n') => n += 1,
            _ => {}
        }
    }
    n
}

/// A record's line and bytes (see `Lines::record`).
pub struct Start<'a> {
    /// The line its first field starts on (1-based).
    pub line: u64,
    /// The record's bytes, from its first field to the end of its line end.
    pub raw: &'a [u8],
    /// Whether the record reached the end of the body.
    at_end: bool,
}

impl Start<'_> {
    /// Whether the record runs to the end of the body inside a quoted field. The csv
    /// crate ends a quote left open there: one field holding every line after it, the
    /// records in those lines lost without a word. Only the record that reached the end
    /// can hold one, so only it is scanned again.
    pub fn leaves_a_quote_open(&self) -> bool {
        self.at_end && ends_in_quotes(self.raw)
    }
}

/// Whether a record that starts `tail` (and everything after it) ends inside a quoted
/// field: a quote opened at a field's start and never closed. The scan stops at the
/// record's end (its first line break outside quotes).
fn ends_in_quotes(tail: &[u8]) -> bool {
    let (mut quoted, mut field_start) = (false, true);
    let mut i = 0;
    while i < tail.len() {
        let b = tail[i];
        if quoted {
            if b == b'"' {
                if tail.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    quoted = false;
                }
            }
            field_start = false;
        } else if b == b'"' && field_start {
            quoted = true;
            field_start = false;
        } else if matches!(b, b'\n' | b'\r') {
            return false;
        } else {
            field_start = b == b',';
        }
        i += 1;
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record's line as a user counts them, with LF, CRLF, lone CR, mixed line ends,
    /// blank lines, and a quoted field spanning lines.
    #[test]
    fn lines_are_the_records_own_whatever_the_line_ends() {
        for (body, expected) in [
            (&b"h\na\n\n\nb\nc\n"[..], [2, 5, 6]),
            (b"h\r\na\r\n\r\n\r\nb\r\nc\r\n", [2, 5, 6]),
            (b"h\ra\r\r\rb\rc", [2, 5, 6]),
            (b"h\r\na\r\r\n\nb\rc\n", [2, 5, 6]),
            (b"h\n\"a\nx\"\n\nb\nc", [2, 5, 6]),
            (b"h\r\n\"a\r\nx\"\r\n\rb\nc", [2, 5, 6]),
        ] {
            let mut reader = csv::ReaderBuilder::new().from_reader(body);
            let mut record = csv::ByteRecord::new();
            let mut lines = Lines::new(body);
            reader.byte_headers().unwrap();
            let header = lines.record(Some(&csv::Position::new()), reader.position().byte());
            assert_eq!(header.line, 1);
            let mut seen = Vec::new();
            while reader.read_byte_record(&mut record).unwrap() {
                let start = lines.record(record.position(), reader.position().byte());
                // The record's own bytes: its first field, quoted or not.
                assert!(matches!(start.raw.first(), Some(b'"' | b'a' | b'b' | b'c')));
                seen.push(start.line);
            }
            assert_eq!(seen, expected, "{:?}", String::from_utf8_lossy(body));
        }
    }
}
