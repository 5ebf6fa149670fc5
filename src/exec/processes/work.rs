//! The bookkeeping of one batch in a process lane: which evaluations have an outcome
//! (`Work`, filled by index in any order, so a retry can neither lose nor duplicate one),
//! and where the answers to a request go (`InFlight`, along its ranges, in order).

use std::ops::Range;

use crate::model::Outcome;

/// The outcomes of one batch, filled by index in any order.
pub struct Work {
    pub outcomes: Vec<Option<Outcome>>,
    pub missing: usize,
    /// Evaluations that were in flight when a worker died: a second death is an error.
    pub struck: Vec<u64>,
}

impl Work {
    pub fn new(total: usize) -> Work {
        Work {
            outcomes: vec![None; total],
            missing: total,
            struck: Vec::new(),
        }
    }

    pub fn is_missing(&self, index: u64) -> bool {
        self.outcomes
            .get(index as usize)
            .is_some_and(Option::is_none)
    }

    pub fn set(&mut self, index: u64, outcome: Outcome) {
        let slot = &mut self.outcomes[index as usize];
        if slot.is_none() {
            self.missing -= 1;
            *slot = Some(outcome);
        }
    }

    pub fn first_missing(&self) -> Option<u64> {
        self.missing_from(0)
    }

    pub fn next_missing_after(&self, index: u64) -> Option<u64> {
        self.missing_from(index as usize + 1)
    }

    pub fn missing_from(&self, from: usize) -> Option<u64> {
        let rest = self.outcomes.get(from..)?;
        rest.iter()
            .position(Option::is_none)
            .map(|i| (from + i) as u64)
    }

    /// The evaluations still without an outcome, as ordered ranges, from the first row
    /// that has one to at most `max_rows` rows further (`rules` evaluations a row).
    pub fn missing_ranges(&self, rules: usize, max_rows: usize) -> Vec<Range<u64>> {
        let Some(first) = self.first_missing() else {
            return Vec::new();
        };
        let first_row = first as usize / rules;
        let end = first_row
            .saturating_add(max_rows)
            .saturating_mul(rules)
            .min(self.outcomes.len());
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for i in first as usize..end {
            if self.outcomes[i].is_none() {
                let i = i as u64;
                match ranges.last_mut() {
                    Some(r) if r.end == i => r.end += 1,
                    _ => ranges.push(i..i + 1),
                }
            }
        }
        ranges
    }
}

/// A request sent to a worker, and how far its answers have come.
pub struct InFlight {
    pub id: u64,
    pub ranges: Vec<Range<u64>>,
    /// The range, and the index in it, the next outcome is for.
    pub range: usize,
    pub next: u64,
}

impl InFlight {
    pub fn new(id: u64, ranges: Vec<Range<u64>>) -> InFlight {
        let next = ranges[0].start;
        InFlight {
            id,
            ranges,
            range: 0,
            next,
        }
    }

    pub fn is_answered(&self) -> bool {
        self.range == self.ranges.len()
    }

    /// Places outcomes that must continue exactly where the last ones stopped.
    pub fn accept(
        &mut self,
        request: u64,
        first: u64,
        outcomes: Vec<Outcome>,
        work: &mut Work,
    ) -> Result<(), String> {
        if request != self.id {
            return Err(format!(
                "answered request {request} while request {} is in flight",
                self.id
            ));
        }
        if first != self.next || self.is_answered() {
            return Err(format!(
                "sent outcomes from evaluation {first}, expected {}",
                self.next
            ));
        }
        for outcome in outcomes {
            if self.is_answered() {
                return Err("sent more outcomes than evaluations asked for".into());
            }
            work.set(self.next, outcome);
            self.next += 1;
            if self.next == self.ranges[self.range].end {
                self.range += 1;
                if let Some(r) = self.ranges.get(self.range) {
                    self.next = r.start;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_evaluations_become_ordered_ranges() {
        let mut work = Work::new(10);
        assert_eq!(work.missing_ranges(1, usize::MAX), vec![0..10]);
        for i in [0, 1, 4, 9] {
            work.set(i, Outcome::True);
        }
        assert_eq!(work.missing_ranges(1, usize::MAX), vec![2..4, 5..9]);
        // Rows of 2 evaluations; at most 2 rows from the first one missing (row 1).
        assert_eq!(work.missing_ranges(2, 2), vec![2..4, 5..6]);
        assert_eq!(work.missing_ranges(2, 0), vec![]);
        assert_eq!(work.first_missing(), Some(2));
        assert_eq!(work.next_missing_after(4), Some(5));
        assert_eq!(work.next_missing_after(9), None);
        work.set(4, Outcome::False); // already set: the first outcome stays
        assert_eq!(work.outcomes[4], Some(Outcome::True));
        assert_eq!(work.missing, 6);
    }

    #[test]
    fn outcomes_are_placed_along_the_ranges_and_must_continue_where_they_stopped() {
        let mut work = Work::new(10);
        for i in [0, 1, 4, 9] {
            work.set(i, Outcome::True);
        }
        let mut request = InFlight::new(7, work.missing_ranges(1, usize::MAX));
        request
            .accept(7, 2, vec![Outcome::False; 3], &mut work)
            .unwrap();
        assert_eq!(request.next, 6, "2, 3, then 5: index 4 is not asked for");
        assert_eq!(
            work.outcomes[2..6],
            [
                Some(Outcome::False),
                Some(Outcome::False),
                Some(Outcome::True),
                Some(Outcome::False)
            ]
        );
        assert!(
            request
                .accept(7, 2, vec![Outcome::False], &mut work)
                .is_err(),
            "not where it stopped"
        );
        assert!(
            request
                .accept(8, 6, vec![Outcome::False], &mut work)
                .is_err(),
            "another request"
        );
        request
            .accept(7, 6, vec![Outcome::True; 3], &mut work)
            .unwrap();
        assert!(request.is_answered());
        assert!(
            request
                .accept(7, 9, vec![Outcome::False], &mut work)
                .is_err(),
            "more than asked"
        );
        assert_eq!(work.missing, 0);
    }
}
