//! How many records a lane takes next: enough that per-task costs vanish, few enough that
//! no lane sits on a long task while the others have run out of work. Sized by measured
//! cost: tasks start at one record and grow (at most 4× a step) toward `TARGET` of work;
//! rows that hang or sleep shrink them at once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Work per task worth aiming at: a task costs a few microseconds to hand out and write
/// back, and at the end of a run lanes finish within about this of each other.
const TARGET: Duration = Duration::from_millis(20);

pub struct Sizer {
    /// Estimated seconds per record (f64 bits); 0 until a task has been measured.
    per_record: AtomicU64,
    /// Records asked for by the last task measured: growth is relative to it.
    last: AtomicUsize,
    max: usize,
}

impl Sizer {
    /// `max`: the most records in one task (`--batch-size`).
    pub fn new(max: usize) -> Sizer {
        Sizer {
            per_record: AtomicU64::new(0),
            last: AtomicUsize::new(1),
            max: max.max(1),
        }
    }

    /// Records for the next task.
    pub fn records(&self) -> usize {
        let per_record = f64::from_bits(self.per_record.load(Ordering::Relaxed));
        if per_record <= 0.0 {
            return 1;
        }
        let ideal = (TARGET.as_secs_f64() / per_record) as usize;
        let growth = self.last.load(Ordering::Relaxed).saturating_mul(4);
        ideal.min(growth).clamp(1, self.max)
    }

    /// A lane asked for `asked` records, got `records` (fewer at the end of a chunk) and
    /// did them in `took`. The estimate moves halfway to the new measure: one fast record
    /// after a slow one does not make the next task huge. Growth is relative to what was
    /// asked, so the short task at each chunk's end does not start the growth over.
    pub fn observe(&self, asked: usize, records: usize, took: Duration) {
        if records == 0 {
            return;
        }
        let measured = took.as_secs_f64().max(1e-9) / records as f64;
        let old = f64::from_bits(self.per_record.load(Ordering::Relaxed));
        let new = if old > 0.0 {
            (old + measured) / 2.0
        } else {
            measured
        };
        self.per_record.store(new.to_bits(), Ordering::Relaxed);
        self.last.store(asked.max(records), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_start_at_one_record_grow_for_fast_ones_and_shrink_for_slow_ones() {
        let sizer = Sizer::new(1024);
        assert_eq!(sizer.records(), 1);
        sizer.observe(1, 1, Duration::from_micros(1));
        assert_eq!(sizer.records(), 4, "at most 4x the last task");
        for _ in 0..10 {
            let n = sizer.records();
            sizer.observe(n, n, Duration::from_micros(n as u64));
        }
        assert_eq!(sizer.records(), 1024, "capped at --batch-size");
        sizer.observe(1024, 3, Duration::from_micros(3));
        assert_eq!(
            sizer.records(),
            1024,
            "a chunk's short last task is no new start"
        );
        sizer.observe(1024, 1024, Duration::from_millis(200) * 1024);
        assert!(sizer.records() <= 2, "hanging rows: a record or two");
        sizer.observe(1, 1, Duration::from_millis(200));
        assert_eq!(sizer.records(), 1);
        let small = Sizer::new(7);
        small.observe(1, 1, Duration::from_nanos(1));
        small.observe(4, 4, Duration::from_nanos(4));
        assert_eq!(small.records(), 7);
    }
}
