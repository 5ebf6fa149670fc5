//! Exact record boundaries at byte offsets, for cutting shards.

use std::io::{self, Read, Seek, SeekFrom};

use memchr::memchr;

use super::scanner::{Quote, Scanner, Step, read_more};
use super::{BOM, Config, Position, QUOTE};

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
