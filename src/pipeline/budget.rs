//! Memory in flight is bounded by bytes, not rows: the reader takes a chunk's size from
//! the budget before handing the chunk on, and the writer gives it back once the chunk's
//! last results are written. Rows of 1 MB and rows of 60 bytes then hold the same memory.

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

    pub fn release(&self, bytes: usize) {
        let mut state = self.lock();
        state.used = state.used.saturating_sub(bytes);
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
        budget.release(60);
        thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "40 bytes are still in flight");
        budget.release(40);
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
}
