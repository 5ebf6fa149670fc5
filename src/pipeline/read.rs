//! The reader role: frame the next chunk of whole records and take its bytes from the
//! budget. No thread of its own: a lane that has no task in hand takes the role, so that
//! `-j N` runs on N threads (splitting and typing happen on the lanes, per task).

use std::io::Read;
use std::sync::mpsc::Receiver;

use anyhow::{Context, Result};

use crate::decompress::Consumed;
use crate::framer::{Chunk, Framer};
use crate::pipeline::budget::{self, ByteBudget};
use crate::progress::Progress;

/// What one turn of the reader gave.
pub enum Read1 {
    /// A chunk, its bytes taken from the budget.
    Chunk(Chunk),
    /// The budget is full (only when asked not to wait): nothing was taken.
    Full,
    /// The input is done, or the budget was closed (the run is over).
    End,
}

/// The input being read, and what it has read so far.
pub struct Reader {
    framer: Framer<Box<dyn Read + Send>>,
    /// The chunk the input was opened with (it holds the header), until it is sent.
    first: Option<Chunk>,
    /// A chunk framed but not yet let in by the budget (a read that would not wait).
    held: Option<Chunk>,
    /// Records of the first chunk that are no rows: 1 (the header), or 0 (`--columns`).
    header_records: usize,
    /// The input's name, for messages.
    name: String,
    /// A compressed input counts the compressed bytes taken from its source.
    consumed: Option<Consumed>,
    progress: Progress,
    /// Chunks the lanes are done with, their buffers reused.
    recycled: Receiver<Chunk>,
}

impl Reader {
    pub fn new(
        framer: Framer<Box<dyn Read + Send>>,
        first: Chunk,
        header_records: usize,
        name: String,
        consumed: Option<Consumed>,
        progress: Progress,
        recycled: Receiver<Chunk>,
    ) -> Reader {
        Reader {
            framer,
            first: Some(first),
            held: None,
            header_records,
            name,
            consumed,
            progress,
            recycled,
        }
    }

    /// Bytes read from the source so far (compressed bytes for a compressed input).
    pub fn bytes_read(&self) -> u64 {
        self.consumed
            .as_ref()
            .map_or_else(|| self.framer.offset_read(), Consumed::get)
    }

    /// Frames the next chunk and takes its cost from `budget`, waiting for room when
    /// `wait`, else giving `Full` (the chunk is kept for the next turn).
    pub fn next(&mut self, budget: &ByteBudget, wait: bool) -> Result<Read1> {
        let chunk = match (self.held.take(), self.first.is_some()) {
            (Some(chunk), _) => chunk,
            (None, true) => match self.first.take() {
                Some(chunk) => chunk,
                None => return Ok(Read1::End),
            },
            (None, false) => {
                for chunk in self.recycled.try_iter() {
                    self.framer.recycle(chunk);
                }
                match self
                    .framer
                    .next_chunk()
                    .with_context(|| format!("cannot read {}", self.name))?
                {
                    Some(chunk) => chunk,
                    None => return Ok(Read1::End),
                }
            }
        };
        let cost = budget::cost(&chunk);
        let admitted = if wait {
            budget.acquire(cost)
        } else {
            match budget.try_acquire(cost) {
                Some(admitted) => admitted,
                None => {
                    self.held = Some(chunk);
                    return Ok(Read1::Full);
                }
            }
        };
        if !admitted {
            return Ok(Read1::End);
        }
        // The first chunk's first record is the header, unless the input has none
        // (`--columns`: then the first chunk may also be empty, an empty input).
        let header = std::mem::take(&mut self.header_records).min(chunk.len());
        self.progress
            .read((chunk.len() - header) as u64, self.bytes_read());
        Ok(Read1::Chunk(chunk))
    }
}
