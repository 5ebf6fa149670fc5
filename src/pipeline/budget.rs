//! Memory in flight is bounded by bytes, not rows: the reader takes a chunk's size from
//! the budget before handing the chunk on, and the writer gives it back once the chunk's
//! last results are written (both are roles the lanes take, not threads). Rows of 1 MB and rows of 60 bytes then hold the same memory.
//!
//! Formatted results count too: a lane charges a finished task's output before handing it
//! to the writer, which gives it back once written. Behind one slow row, lanes stop when
//! the budget is full instead of piling up results the writer cannot write yet. The task
//! the writer waits for is never held back, so the run always moves on.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::framer::Chunk;

/// Bytes of input in flight, between the reader and the writer.
pub struct ByteBudget {
    limit: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    used: usize,
    closed: bool,
    /// The task the writer waits for: its output is let in whatever the budget holds.
    next: u64,
}

/// What a chunk costs: its bytes (a skipped record's chunk holds none, but counts).
pub fn cost(chunk: &Chunk) -> usize {
    chunk.bytes().len().max(1)
}

impl ByteBudget {
    pub fn new(limit: usize) -> ByteBudget {
        ByteBudget {
            limit,
            state: Mutex::new(State {
                used: 0,
                closed: false,
                next: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `bytes` fit, and takes them; false once the budget is closed. A chunk
    /// larger than the whole budget is let in alone, so that it cannot wait forever.
    pub fn acquire(&self, bytes: usize) -> bool {
        let mut state = self.lock();
        while !state.closed && state.used > 0 && state.used + bytes > self.limit {
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.closed {
            return false;
        }
        state.used += bytes;
        true
    }

    /// Takes `bytes` if they fit now (as `acquire` would without waiting): `Some(true)`
    /// taken, `Some(false)` the budget is closed, `None` no room.
    pub fn try_acquire(&self, bytes: usize) -> Option<bool> {
        let mut state = self.lock();
        if state.closed {
            return Some(false);
        }
        if state.used > 0 && state.used + bytes > self.limit {
            return None;
        }
        state.used += bytes;
        Some(true)
    }

    /// Waits until the `bytes` of task `seq`'s output fit, and takes them; false once the
    /// budget is closed. The task the writer waits for goes in at once: everything else
    /// in flight waits behind it, so holding it back could only deadlock.
    pub fn acquire_output(&self, seq: u64, bytes: usize) -> bool {
        let mut state = self.lock();
        while !state.closed
            && seq != state.next
            && state.used > 0
            && state.used + bytes > self.limit
        {
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.closed {
            return false;
        }
        state.used += bytes;
        true
    }

    /// The writer wrote tasks and gave back their `bytes`; it waits for task `next` now.
    pub fn written(&self, bytes: usize, next: Option<u64>) {
        let mut state = self.lock();
        state.used = state.used.saturating_sub(bytes);
        if let Some(next) = next {
            state.next = next;
        }
        self.freed.notify_all();
    }

    /// The run is over: whoever waits gives up.
    pub fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn a_full_budget_waits_for_a_release_and_lets_a_huge_chunk_in_alone() {
        let budget = Arc::new(ByteBudget::new(100));
        assert!(budget.acquire(60));
        assert!(budget.acquire(40));
        let waiter = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || budget.acquire(500))
        };
        thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "100 of 100 bytes are in flight");
        budget.written(60, None);
        thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "40 bytes are still in flight");
        budget.written(40, None);
        assert!(
            waiter.join().unwrap(),
            "alone, a chunk over the limit goes in"
        );
        let closed = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || budget.acquire(1))
        };
        budget.close();
        assert!(!closed.join().unwrap());
    }

    #[test]
    fn output_waits_for_room_except_the_task_the_writer_waits_for() {
        let budget = Arc::new(ByteBudget::new(100));
        assert!(budget.acquire(90));
        let later = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || budget.acquire_output(1, 50))
        };
        assert!(
            budget.acquire_output(0, 50),
            "task 0 is next: never held back"
        );
        thread::sleep(Duration::from_millis(20));
        assert!(!later.is_finished(), "140 of 100 bytes are in flight");
        // Task 0 written: task 1 is next, and goes in even over the limit.
        budget.written(50, Some(1));
        assert!(later.join().unwrap());
        let waiting = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || budget.acquire_output(5, 50))
        };
        budget.close();
        assert!(!waiting.join().unwrap());
    }
}
