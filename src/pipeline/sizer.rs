//! How many records a lane takes next: enough that per-task costs vanish, few enough that
//! no lane sits on a long task while the others have run out of work. Sized by measured
//! cost: tasks start at one record and grow (at most 4× a step) toward `TARGET` of work;
//! rows that hang or sleep shrink them at once, and fast rows let them grow again only
//! after about `FORGET` records.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Work per task worth aiming at: a task costs a few microseconds to hand out and write
/// back, and at the end of a run lanes finish within about this of each other.
const TARGET: Duration = Duration::from_millis(20);

/// Records over which a faster measure takes over the estimate. Rows that hang now and
/// then (every fifth, say) must keep tasks at one record: two hangs in one task near the
/// end of a run keep its lane busy after the others have finished. When the estimate
/// followed every faster task halfway, the four fast rows between two hangs brought it
/// down 16-fold, and on 16 lanes, 4,000 rows with 800 hangs of 200 ms ended at 10.21 s
/// instead of 10.02 s (`--batch-size 1`; the floor is 10 s).
const FORGET: f64 = 64.0;

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
    /// did them in `took`. A slower measure moves the estimate halfway to it at once; a
    /// faster one by `records / (records + FORGET)` of the way, so that it takes about
    /// `FORGET` fast records, not one fast task, to forget a slow row. Growth is relative
    /// to what was asked, so the short task at each chunk's end does not start the growth
    /// over.
    pub fn observe(&self, asked: usize, records: usize, took: Duration) {
        if records == 0 {
            return;
        }
        let measured = took.as_secs_f64().max(1e-9) / records as f64;
        let old = f64::from_bits(self.per_record.load(Ordering::Relaxed));
        let new = if old <= 0.0 {
            measured
        } else if measured >= old {
            (old + measured) / 2.0
        } else {
            let weight = records as f64 / (records as f64 + FORGET);
            old + (measured - old) * weight
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

    #[test]
    fn rows_that_hang_now_and_then_keep_tasks_at_one_record() {
        // Every fifth row hangs for 200 ms, the others take 10 µs: a task of two records
        // or more may hold two hangs.
        let sizer = Sizer::new(1024);
        sizer.observe(1, 1, Duration::from_millis(200));
        for row in 1..=1000 {
            assert_eq!(sizer.records(), 1, "row {row}");
            let took = if row % 5 == 0 {
                Duration::from_millis(200)
            } else {
                Duration::from_micros(10)
            };
            sizer.observe(1, 1, took);
        }
    }

    #[test]
    fn fast_rows_after_a_slow_one_grow_tasks_again_after_a_few_hundred_records() {
        let sizer = Sizer::new(1024);
        sizer.observe(1, 1, Duration::from_micros(10));
        sizer.observe(1, 1, Duration::from_millis(200));
        let (mut ones, mut records) = (0, 0);
        while sizer.records() < 1024 {
            let n = sizer.records();
            ones += usize::from(n == 1);
            records += n;
            sizer.observe(n, n, Duration::from_micros(10) * n as u32);
        }
        // From 100 ms a record down to 10 µs: ln(10,000) × FORGET ≈ 590 records.
        assert!(
            (FORGET as usize..600).contains(&ones),
            "{ones} tasks of one record"
        );
        assert!(records < 3000, "{records} records before full tasks again");
    }
}
