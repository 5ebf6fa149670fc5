//! [`Splitter`]: one framed record into its fields, as the `csv` crate reads them.

use memchr::memchr;

use super::{Config, QUOTE};

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

    /// The fields of `record`, one record as a [`Chunk`](super::Chunk) gives it (no
    /// terminator). The result equals the `csv` crate's for the same record: quoted fields
    /// are unquoted and unescaped (`""` → `"`), in `scratch` when they must change,
    /// borrowed otherwise.
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
