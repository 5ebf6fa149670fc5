//! When a worker reads the clock: the start time it writes into its progress slot before
//! each evaluation, from which the supervisor computes that evaluation's deadline.
//!
//! A native evaluation (`rules::native`) takes nanoseconds and cannot block, so a run of
//! them may share one reading instead of paying a system call each. Each one shared makes
//! the reading older, so the sharing is bounded by the work done since the reading (the
//! size of the native programs run, not their count: one blocklist of thousands of items
//! is as much work as a thousand small rules), and an evaluation Rhai runs always gets a
//! fresh reading, as does the one after it. A stale start would move the deadline the
//! supervisor enforces earlier, and an evaluation could be killed as `timeout` before
//! its limit.

/// Native program nodes that may be evaluated on one clock reading: microseconds of work,
/// far inside the 20 ms the supervisor allows a running worker past a limit.
pub const NATIVE_NODES_PER_READING: usize = 256;

/// The clock of one batch's evaluations.
pub struct StartClock {
    now: u64,
    /// Native nodes evaluated since `now` was read; `None` when the next evaluation must
    /// read the clock (nothing since the reading may be assumed short).
    since_reading: Option<usize>,
}

impl StartClock {
    /// A clock that reads afresh at the first evaluation.
    pub fn new() -> StartClock {
        StartClock {
            now: 0,
            since_reading: None,
        }
    }

    /// The start time of the next evaluation, whose native program has `native_size`
    /// nodes (`None`: Rhai evaluates it); `read` reads the clock.
    pub fn start(&mut self, native_size: Option<usize>, read: impl FnOnce() -> u64) -> u64 {
        match (native_size, self.since_reading) {
            (Some(size), Some(done)) if done + size <= NATIVE_NODES_PER_READING => {
                self.since_reading = Some(done + size);
            }
            _ => self.read_now(native_size, read),
        }
        self.now
    }

    /// A reading taken outside `start` (after a write that may have waited), for an
    /// evaluation of `native_size` about to start.
    pub fn read_now(&mut self, native_size: Option<usize>, read: impl FnOnce() -> u64) {
        self.now = read();
        self.since_reading = native_size.filter(|&size| size <= NATIVE_NODES_PER_READING);
    }

    /// After an evaluation: unless it ran natively (a native program can fall back to
    /// Rhai, which may take any time), the next evaluation reads the clock.
    pub fn ended(&mut self, native: bool) {
        if !native {
            self.forget();
        }
    }

    /// Something that may have waited (a write out) happened since the reading: the
    /// next evaluation reads the clock.
    pub fn forget(&mut self) {
        self.since_reading = None;
    }

    /// The last reading.
    pub fn now(&self) -> u64 {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Runs evaluations of the given native sizes (`None`: Rhai), each ending as given,
    /// and returns which ones read the clock.
    fn readings(evaluations: &[(Option<usize>, bool)]) -> Vec<bool> {
        let mut clock = StartClock::new();
        let time = Cell::new(0);
        evaluations
            .iter()
            .map(|&(size, native)| {
                let read = Cell::new(false);
                clock.start(size, || {
                    read.set(true);
                    time.set(time.get() + 1);
                    time.get()
                });
                clock.ended(native);
                read.get()
            })
            .collect()
    }

    #[test]
    fn a_rhai_evaluation_after_native_ones_reads_the_clock() {
        let native = (Some(3), true);
        let rhai = (None, false);
        assert_eq!(
            readings(&[native, native, rhai, native, native]),
            [true, false, true, true, false]
        );
    }

    #[test]
    fn native_evaluations_share_a_reading_up_to_a_bound_on_their_work() {
        let small = (Some(4), true);
        let mut run = vec![small; 2 * NATIVE_NODES_PER_READING / 4 + 1];
        let got = readings(&run);
        let read_at: Vec<usize> = (0..got.len()).filter(|&i| got[i]).collect();
        let per = NATIVE_NODES_PER_READING / 4;
        assert_eq!(read_at, [0, per, 2 * per]);
        // A big blocklist reads every time, and so does the evaluation after it.
        run = vec![
            (Some(10_000), true),
            small,
            (Some(10_000), true),
            small,
            small,
        ];
        assert_eq!(readings(&run), [true, true, true, true, false]);
    }

    #[test]
    fn a_native_program_that_fell_back_to_rhai_makes_the_next_one_read() {
        // (A value of another type than its column's: `Evaluator::evaluate` ran Rhai.)
        assert_eq!(
            readings(&[(Some(3), true), (Some(3), false), (Some(3), true)]),
            [true, false, true]
        );
    }
}
