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
//! Three pieces, sharing one definition of the format (the quote-aware `scanner`):
//! - [`Framer`] (`stream.rs`): a `Read` → [`Chunk`]s (`chunk.rs`) of whole records, each
//!   with its first line number.
//! - [`Splitter`] (`split.rs`): one framed record → its fields, equal to what the `csv`
//!   crate reads.
//! - [`record_start_at_or_after`] (`boundary.rs`): the exact record boundary at or after a
//!   byte offset.
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

mod boundary;
mod chunk;
mod scanner;
mod split;
mod stream;
#[cfg(test)]
mod tests;

use std::fmt;

pub use boundary::record_start_at_or_after;
pub use chunk::{Chunk, Record, Records};
pub use split::{Fields, Splitter};
pub use stream::Framer;

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
