//! The reader stage, on its own thread: it only frames. Chunks of whole records go to the
//! lanes as soon as the byte budget lets them; splitting and typing happen on the lanes.

use std::io::Read;
use std::sync::mpsc::{Receiver, Sender};

use anyhow::{Context, Result};

use crate::decompress::Consumed;

use crate::framer::{Chunk, Framer};
use crate::pipeline::budget::{self, ByteBudget};
use crate::progress::Progress;

/// The input being read: its name for messages, and the count of bytes taken from its
/// source when it is compressed (`decompress`).
pub struct Source<'a> {
    pub name: &'a str,
    pub consumed: Option<&'a Consumed>,
    /// Records of the first chunk that are no rows: 1 (the header), or 0 (`--columns`).
    pub header_records: usize,
}

/// Sends `first`, then every chunk the framer cuts; returns the bytes read (from the
/// source: compressed bytes for a compressed input). Chunks the lanes are done with come
/// back on `recycled`, their buffers reused.
pub fn read_chunks(
    mut framer: Framer<Box<dyn Read + Send>>,
    first: Chunk,
    Source {
        name,
        consumed,
        header_records,
    }: Source<'_>,
    budget: &ByteBudget,
    chunks: &Sender<Chunk>,
    recycled: &Receiver<Chunk>,
    progress: &Progress,
) -> Result<u64> {
    // A compressed input counts the compressed bytes taken from its source.
    let read = |framer: &Framer<_>| consumed.map_or_else(|| framer.offset_read(), Consumed::get);
    let mut next = Some(first);
    let mut first_chunk = true;
    loop {
        let chunk = match next.take() {
            Some(chunk) => chunk,
            None => {
                for chunk in recycled.try_iter() {
                    framer.recycle(chunk);
                }
                match framer
                    .next_chunk()
                    .with_context(|| format!("cannot read {name}"))?
                {
                    Some(chunk) => chunk,
                    None => break,
                }
            }
        };
        if !budget.acquire(budget::cost(&chunk)) {
            break;
        }
        // The first chunk's first record is the header, unless the input has none
        // (`--columns`: then the first chunk may also be empty, an empty input).
        let header = if std::mem::take(&mut first_chunk) {
            header_records.min(chunk.len())
        } else {
            0
        };
        progress.read((chunk.len() - header) as u64, read(&framer));
        if chunks.send(chunk).is_err() {
            break;
        }
    }
    Ok(read(&framer))
}
