//! The work queue the lanes share: chunks in input order, handed out as tasks of a few
//! records each, sized when taken (`Sizer`), so lanes share even a single chunk and the
//! last tasks of a run are as short as its rows allow. Tasks are numbered in input order;
//! the writer puts their results back in that order.

use std::ops::Range;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use crate::framer::Chunk;
use crate::pipeline::budget;

/// Records `records` of `chunk`, the `seq`-th task of the run.
pub struct Task {
    pub seq: u64,
    pub chunk: Arc<Chunk>,
    pub records: Range<usize>,
    /// Bytes the writer gives back to the budget once this task is written: the chunk's
    /// cost for its last task, else 0.
    pub release: usize,
}

pub struct WorkQueue {
    state: Mutex<State>,
}

struct State {
    chunks: Receiver<Chunk>,
    current: Option<Arc<Chunk>>,
    /// The next record of `current` to hand out.
    next: usize,
    /// Records to pass over at the start of the next chunk: the header, in the first.
    skip: usize,
    seq: u64,
}

impl WorkQueue {
    /// Chunks arrive on `chunks`; the first `skip` records of the first one are not rows.
    pub fn new(chunks: Receiver<Chunk>, skip: usize) -> WorkQueue {
        WorkQueue {
            state: Mutex::new(State {
                chunks,
                current: None,
                next: 0,
                skip,
                seq: 0,
            }),
        }
    }

    /// The next task, of at most `records` records (at least 1, except for a chunk that
    /// holds only the header); `None` once every chunk has been handed out.
    pub fn take(&self, records: usize) -> Option<Task> {
        let mut state = self.state.lock().ok()?;
        let chunk = match &state.current {
            Some(chunk) => Arc::clone(chunk),
            None => {
                // Lanes wait here for the reader, one at a time: they would all wait anyway.
                let chunk = Arc::new(state.chunks.recv().ok()?);
                state.current = Some(Arc::clone(&chunk));
                state.next = std::mem::take(&mut state.skip).min(chunk.len());
                chunk
            }
        };
        let start = state.next;
        let end = start.saturating_add(records.max(1)).min(chunk.len());
        let last = end == chunk.len();
        state.next = end;
        if last {
            state.current = None;
        }
        let seq = state.seq;
        state.seq += 1;
        Some(Task {
            seq,
            release: if last { budget::cost(&chunk) } else { 0 },
            chunk,
            records: start..end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer::{Config, Framer};
    use std::io::Cursor;
    use std::sync::mpsc;

    #[test]
    fn tasks_cover_every_record_once_in_order_and_release_each_chunk_once() {
        let input = b"h\n1\n2\n3\n4\n5\n".to_vec();
        let framer = Framer::new(Cursor::new(input), Config::default().with_chunk_size(4));
        let (tx, rx) = mpsc::channel();
        let mut costs = 0;
        for chunk in framer {
            let chunk = chunk.unwrap();
            costs += budget::cost(&chunk);
            tx.send(chunk).unwrap();
        }
        drop(tx);
        let queue = WorkQueue::new(rx, 1);
        let (mut seen, mut released, mut seqs) = (Vec::new(), 0, Vec::new());
        while let Some(task) = queue.take(3) {
            let records = task.chunk.records().skip(task.records.start);
            seen.extend(
                records
                    .take(task.records.len())
                    .map(|r| r.body.unwrap().to_vec()),
            );
            released += task.release;
            seqs.push(task.seq);
        }
        assert_eq!(seen, [b"1", b"2", b"3", b"4", b"5"].map(|b| b.to_vec()));
        assert_eq!(released, costs);
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }
}
