//! `txguard diff --labels FILE`: which transactions are fraudulent (`transaction_id,label`),
//! read once before the run; the lanes note which labels the input used, so that labels
//! naming no transaction are reported rather than dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

/// Transaction labels (`--labels`): id → fraudulent or not, and which labels some
/// transaction of the input had (a label naming none is said, not dropped silently).
#[derive(Debug, Default)]
pub struct Labels {
    /// id → position in `fraud` and `seen`.
    ids: HashMap<String, usize>,
    fraud: Vec<bool>,
    /// Set by the lanes when a transaction of the input has the label.
    seen: Vec<AtomicBool>,
}

impl Labels {
    /// Adds a label; false when `id` has one already.
    fn insert(&mut self, id: String, fraud: bool) -> bool {
        if self.ids.contains_key(&id) {
            return false;
        }
        self.ids.insert(id, self.fraud.len());
        self.fraud.push(fraud);
        self.seen.push(AtomicBool::new(false));
        true
    }

    /// The label of transaction `id`, noted as used.
    pub(super) fn get(&self, id: &str) -> Option<bool> {
        let i = *self.ids.get(id)?;
        self.seen[i].store(true, Ordering::Relaxed);
        Some(self.fraud[i])
    }

    /// Labels that no transaction of the input had (read once the run is over).
    pub fn unmatched(&self) -> u64 {
        self.seen
            .iter()
            .filter(|s| !s.load(Ordering::Relaxed))
            .count() as u64
    }
}

/// Reads `--labels` (`transaction_id,label`, label `true`/`false`, also `1`/`0`): every
/// problem names the file and line.
pub fn read_labels(path: &std::path::Path) -> Result<Labels> {
    use anyhow::Context;
    let shown = crate::output::paths::show(path);
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read --labels {shown}"))?;
    // Read whole (the labels are all kept anyway), so that errors name each record's own
    // line (`csv_lines`); the header first, so that a file that is no labels file (a
    // binary one with line ends, `/dev/urandom`) is refused before it fills memory.
    let mut lines = ShortLines {
        inner: file,
        run: 0,
    };
    let mut body = Vec::new();
    let headers = loop {
        // Twice what is read so far each time: a header after many blank lines is parsed
        // again a few times, not once a chunk.
        let ahead = body.len().max(64 << 10) as u64;
        let read =
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut lines, ahead), &mut body)
                .with_context(|| format!("cannot read --labels {shown}"))?;
        let mut reader = csv::ReaderBuilder::new().from_reader(&body[..]);
        let header = reader
            .byte_headers()
            .with_context(|| format!("cannot read --labels {shown}"))?;
        // Blank lines and no header past a line's worth of bytes: no labels file (an endless
        // `yes ""` would otherwise be read into memory for ever).
        if header.is_empty() && body.len() > MAX_LABELS_LINE {
            anyhow::bail!(
                "--labels {shown}: no header in its first {}",
                crate::size::display_size(MAX_LABELS_LINE)
            );
        }
        // Complete once bytes follow it, or the file has ended.
        if !header.is_empty() && reader.position().byte() < body.len() as u64 || read == 0 {
            break reader
                .headers()
                .with_context(|| format!("cannot read --labels {shown}"))?
                .clone();
        }
    };
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let (Some(id), Some(label)) = (column("transaction_id"), column("label")) else {
        anyhow::bail!("--labels {shown}: the header must name `transaction_id` and `label`");
    };
    // Sized for the rest when it is a file: not grown by doubling, copied at each step.
    let size = lines.inner.metadata().map_or(0, |m| m.len()) as usize;
    body.reserve(size.saturating_sub(body.len()));
    std::io::Read::read_to_end(&mut lines, &mut body)
        .with_context(|| format!("cannot read --labels {shown}"))?;
    // Flexible, and UTF-8 checked here: the csv crate's own errors for a short row or
    // invalid UTF-8 name the line where its reading began (`csv_lines`), not the row's.
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(&body[..]);
    reader
        .byte_headers()
        .with_context(|| format!("cannot read --labels {shown}"))?;
    let mut labels = Labels::default();
    let mut record = csv::ByteRecord::new();
    let mut line_of = crate::csv_lines::Lines::new(&body);
    while reader
        .read_byte_record(&mut record)
        .with_context(|| format!("cannot read --labels {shown}"))?
    {
        let start = line_of.record(record.position(), reader.position().byte());
        let line = start.line;
        // The csv crate ends a quote left open at the end of the file there (`1,"true`
        // was a label), as in a list.
        if start.leaves_a_quote_open() {
            anyhow::bail!("--labels {shown}:{line}: quote opened here is never closed");
        }
        if record.len() != headers.len() {
            anyhow::bail!(
                "--labels {shown}:{line}: expected {} fields, found {}",
                headers.len(),
                record.len()
            );
        }
        if record.iter().any(|f| std::str::from_utf8(f).is_err()) {
            anyhow::bail!("--labels {shown}:{line}: not valid UTF-8");
        }
        let field = |at: usize| std::str::from_utf8(&record[at]).unwrap_or_default();
        let (tx, value) = (field(id), field(label));
        let fraud = match value {
            "true" | "1" => true,
            "false" | "0" => false,
            other => anyhow::bail!(
                "--labels {shown}:{line}: column \"label\": {other:?} is not true or false"
            ),
        };
        let tx = tx.to_string();
        if !labels.insert(tx.clone(), fraud) {
            anyhow::bail!("--labels {shown}:{line}: transaction {tx:?} is labelled twice");
        }
    }
    Ok(labels)
}

/// The longest line a labels file may have (an id and a word): a file without line
/// ends (`/dev/zero`, a binary file named by mistake) is refused instead of filling
/// memory with one endless record.
pub const MAX_LABELS_LINE: usize = 1 << 20;

/// A reader that fails once a line runs past `MAX_LABELS_LINE` bytes (checked per read,
/// so within a read's length of it).
struct ShortLines<R> {
    inner: R,
    /// Bytes since the last line end.
    run: usize,
}

impl<R: std::io::Read> std::io::Read for ShortLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = &buf[..n];
        self.run = match read.iter().rposition(|&b| b == b'\n' || b == b'\r') {
            Some(end) => n - end - 1,
            None => self.run + n,
        };
        if self.run > MAX_LABELS_LINE {
            return Err(std::io::Error::other(format!(
                "a line longer than {} (not a labels file?)",
                crate::size::display_size(MAX_LABELS_LINE)
            )));
        }
        Ok(n)
    }
}
