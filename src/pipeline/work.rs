//! The work queue the lanes share: chunks in input order, handed out as tasks of a few
//! records each, sized when taken (`Sizer`), so lanes share even a single chunk and the
//! last tasks of a run are as short as its rows allow. Tasks are numbered in input order;
//! the writer puts their results back in that order.
//!
//! The queue also holds the reader (`read::Reader`): a lane that finds no chunk left
//! frames the next one itself, and a lane between tasks reads ahead while the budget has
//! room, so the lanes never wait on a reader thread that is not running.

use std::collections::VecDeque;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use anyhow::anyhow;

use crate::framer::Chunk;
use crate::pipeline::budget::{self, ByteBudget};
use crate::pipeline::lane::panic_message;
use crate::pipeline::read::{Read1, Reader};

/// Records `records` of `chunk`, the `seq`-th task of the run.
pub struct Task {
    pub seq: u64,
    pub chunk: Arc<Chunk>,
    pub records: Range<usize>,
    /// Bytes the writer gives back to the budget once this task is written: the chunk's
    /// cost for its last task, else 0.
    pub release: usize,
}

/// What a lane gets from the queue.
pub enum Taken {
    Task(Task),
    /// Reading the input failed after every task before `seq`: the writer reports it in
    /// that task's place, after the rows read before it.
    Failed {
        seq: u64,
        error: anyhow::Error,
    },
}

pub struct WorkQueue {
    state: Mutex<State>,
    /// A read ended (a chunk, the end, a failure) or the run was closed.
    arrived: Condvar,
    /// Chunks to keep framed ahead of the one being handed out.
    ahead: usize,
}

/// How far the input has been read.
enum Input {
    Open,
    /// Read to its end (or the budget closed).
    Done,
    /// Reading failed: handed out once as `Taken::Failed`, after every chunk read.
    Failed(anyhow::Error),
}

struct State {
    current: Option<Arc<Chunk>>,
    /// The next record of `current` to hand out.
    next: usize,
    /// Records to pass over at the start of the next chunk: the header, in the first.
    skip: usize,
    seq: u64,
    /// Chunks framed (and let in by the budget) but not handed out yet.
    ready: VecDeque<Chunk>,
    /// `None` while a lane reads.
    reader: Option<Reader>,
    bytes_read: u64,
    input: Input,
    closed: bool,
}

impl WorkQueue {
    /// Chunks come from `reader`; the first `skip` records of the first one are not rows.
    /// `jobs` lanes share the queue: with more than one, chunks are framed ahead.
    pub fn new(reader: Reader, skip: usize, jobs: usize) -> WorkQueue {
        WorkQueue {
            state: Mutex::new(State {
                current: None,
                next: 0,
                skip,
                seq: 0,
                ready: VecDeque::new(),
                bytes_read: reader.bytes_read(),
                reader: Some(reader),
                input: Input::Open,
                closed: false,
            }),
            arrived: Condvar::new(),
            ahead: jobs.saturating_sub(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next task, of at most `records` records (at least 1, except for a chunk that
    /// holds only the header); `None` once every chunk has been handed out or the queue
    /// is closed. With no chunk framed, the caller frames the next one (waiting for room
    /// in `budget`), or waits for the lane that does.
    pub fn take(&self, records: usize, budget: &ByteBudget) -> Option<Taken> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(task) = state.hand_out(records) {
                return Some(Taken::Task(task));
            }
            if let Some(chunk) = state.ready.pop_front() {
                state.next = std::mem::take(&mut state.skip).min(chunk.len());
                state.current = Some(Arc::new(chunk));
                continue;
            }
            match std::mem::replace(&mut state.input, Input::Done) {
                Input::Done => return None,
                Input::Failed(error) => {
                    let seq = state.seq;
                    state.seq += 1;
                    return Some(Taken::Failed { seq, error });
                }
                Input::Open => state.input = Input::Open,
            }
            state = match state.reader.take() {
                Some(reader) => self.read(state, reader, budget, true),
                None => self.arrived.wait(state).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }

    /// Frames chunks ahead while fewer than `ahead` wait and the budget has room without
    /// waiting (a lane between tasks: it holds nothing the writer waits for, but should
    /// not stop working either). Returns at once when another lane reads.
    pub fn read_ahead(&self, budget: &ByteBudget) {
        let mut state = self.lock();
        while !state.closed && matches!(state.input, Input::Open) && state.ready.len() < self.ahead
        {
            let Some(reader) = state.reader.take() else {
                return;
            };
            let before = state.ready.len();
            state = self.read(state, reader, budget, false);
            if state.ready.len() == before {
                return;
            }
        }
    }

    /// Reads one chunk with the queue unlocked (the other lanes go on taking tasks), and
    /// puts the reader back.
    fn read<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
        mut reader: Reader,
        budget: &ByteBudget,
        wait: bool,
    ) -> MutexGuard<'a, State> {
        drop(state);
        // A panic (a bug, say in a decoder) fails the run in its place, like a read error:
        // unwinding would lose the reader, the other lanes waiting for it forever (and a
        // lone lane ending the run as if the input were done).
        let read = panic::catch_unwind(AssertUnwindSafe(|| reader.next(budget, wait)))
            .unwrap_or_else(|panic| {
                Err(anyhow!(
                    "internal error: reading the input panicked: {}",
                    panic_message(&*panic)
                ))
            });
        let mut state = self.lock();
        state.bytes_read = reader.bytes_read();
        state.reader = Some(reader);
        match read {
            Ok(Read1::Chunk(chunk)) => state.ready.push_back(chunk),
            Ok(Read1::Full) => {}
            Ok(Read1::End) => state.input = Input::Done,
            Err(error) => state.input = Input::Failed(error),
        }
        self.arrived.notify_all();
        state
    }

    /// The run is over: lanes waiting for a chunk give up, and none is handed out.
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }

    /// Whether the input was read to its end and every record of it handed out.
    pub fn drained(&self) -> bool {
        let state = self.lock();
        matches!(state.input, Input::Done) && state.ready.is_empty() && state.current.is_none()
    }

    /// Tasks handed out so far (a read failure counts as one).
    pub fn tasks(&self) -> u64 {
        self.lock().seq
    }

    /// Bytes read from the input so far (its source's, for a compressed input).
    pub fn bytes_read(&self) -> u64 {
        self.lock().bytes_read
    }
}

impl State {
    /// The next task of the current chunk, if it has records left.
    fn hand_out(&mut self, records: usize) -> Option<Task> {
        let chunk = Arc::clone(self.current.as_ref()?);
        let start = self.next;
        let end = start.saturating_add(records.max(1)).min(chunk.len());
        let last = end == chunk.len();
        self.next = end;
        if last {
            self.current = None;
        }
        let seq = self.seq;
        self.seq += 1;
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
    use crate::progress::Progress;
    use std::io::Cursor;
    use std::sync::mpsc;

    fn queue(input: &[u8], chunk_size: usize, jobs: usize) -> WorkQueue {
        let mut framer: Framer<Box<dyn std::io::Read + Send>> = Framer::new(
            Box::new(Cursor::new(input.to_vec())),
            Config::default().with_chunk_size(chunk_size),
        );
        let first = framer.next_chunk().unwrap().unwrap();
        let (_, recycled) = mpsc::channel();
        let progress = Progress::new(crate::config::ProgressWhen::Never, None);
        let reader = Reader::new(framer, first, 1, "t.csv".into(), None, progress, recycled);
        WorkQueue::new(reader, 1, jobs)
    }

    #[test]
    fn tasks_cover_every_record_once_in_order_and_release_each_chunk_once() {
        let input = b"h\n1\n2\n3\n4\n5\n";
        let costs: usize = Framer::new(Cursor::new(input), Config::default().with_chunk_size(4))
            .map(|chunk| budget::cost(&chunk.unwrap()))
            .sum();
        for jobs in [1, 3] {
            let queue = queue(input, 4, jobs);
            let budget = ByteBudget::new(1 << 20);
            let (mut seen, mut released, mut seqs) = (Vec::new(), 0, Vec::new());
            loop {
                // Reading ahead between tasks changes nothing that is handed out.
                queue.read_ahead(&budget);
                let Some(Taken::Task(task)) = queue.take(3, &budget) else {
                    break;
                };
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
            assert_eq!(released, costs, "-j {jobs}");
            assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
            assert_eq!(queue.tasks(), seqs.len() as u64);
            assert_eq!(queue.bytes_read(), input.len() as u64);
        }
    }

    #[test]
    fn reading_ahead_stops_at_a_full_budget_and_loses_no_chunk() {
        let input = b"h\n1\n2\n3\n4\n5\n6\n7\n8\n";
        let queue = queue(input, 4, 8);
        // Room for two small chunks: reading ahead frames a third and keeps it.
        let budget = ByteBudget::new(8);
        queue.read_ahead(&budget);
        assert_eq!(queue.lock().ready.len(), 2);
        let mut seen = Vec::new();
        while let Some(Taken::Task(task)) = queue.take(1, &budget) {
            let records = task.chunk.records().skip(task.records.start);
            seen.extend(records.take(task.records.len()).map(|r| r.body.unwrap()[0]));
            // Written at once: the chunk's bytes go back.
            budget.written(task.release, None);
            queue.read_ahead(&budget);
        }
        assert_eq!(seen, b"12345678");
    }

    #[test]
    fn a_closed_queue_hands_out_nothing() {
        let queue = queue(b"h\n1\n", 4, 2);
        queue.close();
        assert!(queue.take(1, &ByteBudget::new(100)).is_none());
    }
}
