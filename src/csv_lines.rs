//! The line a record read by the `csv` crate is on, for error messages. The crate's record
//! position is where its reading began: before the blank lines it skips ahead of the
//! record and, after a CRLF line end, before that line's `\n`, which it reads as the start
//! of the next record. Said as is, an error after blank lines named an earlier line, and
//! every error of a CRLF file the line above its own.

/// Where the record that `reader` has just read from `body` (at `position`, the record's
/// own `position()`) begins: its line (1-based) and the byte of `body` its first field
/// starts at. `end` is `reader.position().byte()` after the read.
pub fn record_start<'a>(body: &'a [u8], position: Option<&csv::Position>, end: u64) -> Start<'a> {
    let start = position.map_or(0, csv::Position::byte) as usize;
    let end = (end as usize).min(body.len());
    let raw = body.get(start..end).unwrap_or_default();
    let blank = raw
        .iter()
        .position(|b| !matches!(b, b'\n' | b'\r'))
        .unwrap_or(raw.len());
    let skipped = raw[..blank].iter().filter(|&&b| b == b'\n').count() as u64;
    Start {
        line: position.map_or(0, csv::Position::line) + skipped,
        raw: &raw[blank..],
        at_end: end >= body.len(),
    }
}

/// A record's line and bytes (see `record_start`).
pub struct Start<'a> {
    pub line: u64,
    /// The record's bytes, from its first field to the end of its line end.
    pub raw: &'a [u8],
    /// Whether the record reached the end of `body`.
    pub at_end: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record's line as a user counts them, with LF, CRLF and blank lines of both.
    #[test]
    fn lines_are_the_records_own_after_blank_lines_and_crlf() {
        for (body, lines) in [
            (&b"h\na\n\n\nb\nc\n"[..], [2, 5, 6]),
            (b"h\r\na\r\n\r\n\r\nb\r\nc\r\n", [2, 5, 6]),
            (b"h\n\"a\nx\"\n\nb\nc", [2, 5, 6]),
        ] {
            let mut reader = csv::ReaderBuilder::new().from_reader(body);
            let mut record = csv::ByteRecord::new();
            let mut seen = Vec::new();
            while reader.read_byte_record(&mut record).unwrap() {
                let start = record_start(body, record.position(), reader.position().byte());
                // The record's own bytes: its first field, quoted or not.
                assert!(matches!(start.raw.first(), Some(b'"' | b'a' | b'b' | b'c')));
                seen.push(start.line);
            }
            assert_eq!(seen, lines, "{:?}", String::from_utf8_lossy(body));
        }
    }
}
