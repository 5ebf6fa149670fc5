//! The bookkeeping of one batch in a process lane: which evaluations have an outcome
//! (`Work`, filled by index in any order, so a retry can neither lose nor duplicate one),
//! and where the answers to a request go (`InFlight`, along its ranges, in order).

use std::ops::Range;

use crate::exec::protocol::{CODE_DETAIL, CODE_FALSE, CODE_TRUE, Outcomes};
use crate::model::Outcome;

/// The code of an evaluation without an outcome yet (beside `protocol::CODE_*`).
const MISSING: u8 = u8::MAX;

/// The outcomes of one batch, filled by index in any order: a byte a piece (`true` and
/// `false` are most of them), errors and timeouts beside them with their index.
pub struct Work {
    codes: Vec<u8>,
    /// The outcome of each index whose code is `CODE_DETAIL`, in the order they came.
    details: Vec<(u64, Outcome)>,
    pub missing: usize,
    /// Evaluations that were in flight when a worker died: a second death is an error.
    pub struck: Vec<u64>,
}

impl Work {
    pub fn new(total: usize) -> Work {
        Work {
            codes: vec![MISSING; total],
            details: Vec::new(),
            missing: total,
            struck: Vec::new(),
        }
    }

    pub fn is_missing(&self, index: u64) -> bool {
        self.codes.get(index as usize) == Some(&MISSING)
    }

    /// Records the outcome of `index`, unless it has one already (the first one stays).
    pub fn set(&mut self, index: u64, outcome: Outcome) {
        let code = match outcome {
            Outcome::True => CODE_TRUE,
            Outcome::False => CODE_FALSE,
            _ => CODE_DETAIL,
        };
        if self.set_code(index, code) && code == CODE_DETAIL {
            self.details.push((index, outcome));
        }
    }

    /// `set` of a code; true if `index` had none (then a `CODE_DETAIL` needs its detail).
    fn set_code(&mut self, index: u64, code: u8) -> bool {
        let slot = &mut self.codes[index as usize];
        if *slot != MISSING {
            return false;
        }
        *slot = code;
        self.missing -= 1;
        true
    }

    pub fn first_missing(&self) -> Option<u64> {
        self.missing_from(0)
    }

    pub fn next_missing_after(&self, index: u64) -> Option<u64> {
        self.missing_from(index as usize + 1)
    }

    pub fn missing_from(&self, from: usize) -> Option<u64> {
        let rest = self.codes.get(from..)?;
        memchr::memchr(MISSING, rest).map(|i| (from + i) as u64)
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
            .min(self.codes.len());
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let mut i = first as usize;
        while let Some(start) = memchr::memchr(MISSING, &self.codes[i..end]).map(|k| i + k) {
            let stop = self.codes[start..end]
                .iter()
                .position(|&c| c != MISSING)
                .map_or(end, |k| start + k);
            ranges.push(start as u64..stop as u64);
            i = stop;
        }
        ranges
    }

    /// Appends every outcome to `out`, in index order; all must be there.
    pub fn finish(mut self, out: &mut Vec<Outcome>) {
        assert_eq!(self.missing, 0, "every evaluation has an outcome");
        self.details.sort_unstable_by_key(|&(index, _)| index);
        let mut details = self.details.into_iter().map(|(_, outcome)| outcome);
        out.reserve(self.codes.len());
        out.extend(self.codes.iter().map(|&code| match code {
            CODE_TRUE => Outcome::True,
            CODE_FALSE => Outcome::False,
            _ => details.next().expect("a detail per CODE_DETAIL"),
        }));
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
        outcomes: Outcomes,
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
        let mut details = outcomes.details.into_iter();
        let mut codes = &outcomes.codes[..];
        while !codes.is_empty() {
            let Some(range) = self.ranges.get(self.range) else {
                return Err("sent more outcomes than evaluations asked for".into());
            };
            // As many as this range still takes, at once.
            let take = usize::try_from(range.end - self.next)
                .unwrap_or(usize::MAX)
                .min(codes.len());
            for (&code, index) in codes[..take].iter().zip(self.next..) {
                if code == CODE_DETAIL {
                    let detail = details.next().ok_or("sent a code without its outcome")?;
                    work.set(index, detail);
                } else if code == CODE_TRUE || code == CODE_FALSE {
                    work.set_code(index, code);
                } else {
                    return Err(format!("sent outcome code {code}"));
                }
            }
            codes = &codes[take..];
            self.next += take as u64;
            if self.next == range.end {
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

    fn codes(work: &Work) -> Vec<u8> {
        work.codes.clone()
    }

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
        assert_eq!(work.codes[4], CODE_TRUE);
        assert_eq!(work.missing, 6);
        assert_eq!(work.missing_ranges(3, usize::MAX), vec![2..4, 5..9]);
        assert_eq!(
            work.missing_ranges(3, 1),
            vec![2..3],
            "row 0 only: indexes 0..3"
        );
    }

    #[test]
    fn outcomes_are_placed_along_the_ranges_and_must_continue_where_they_stopped() {
        let mut work = Work::new(10);
        for i in [0, 1, 4, 9] {
            work.set(i, Outcome::True);
        }
        let mut request = InFlight::new(7, work.missing_ranges(1, usize::MAX));
        let timeout = Outcome::Timeout(std::time::Duration::from_secs(1));
        request
            .accept(
                7,
                2,
                [Outcome::False, Outcome::Error("e".into()), timeout.clone()]
                    .into_iter()
                    .collect(),
                &mut work,
            )
            .unwrap();
        assert_eq!(request.next, 6, "2, 3, then 5: index 4 is not asked for");
        assert_eq!(
            codes(&work)[2..6],
            [CODE_FALSE, CODE_DETAIL, CODE_TRUE, CODE_DETAIL]
        );
        assert!(
            request
                .accept(7, 2, std::iter::once(Outcome::False).collect(), &mut work)
                .is_err(),
            "not where it stopped"
        );
        assert!(
            request
                .accept(8, 6, std::iter::once(Outcome::False).collect(), &mut work)
                .is_err(),
            "another request"
        );
        request
            .accept(
                7,
                6,
                vec![Outcome::True; 3].into_iter().collect(),
                &mut work,
            )
            .unwrap();
        assert!(request.is_answered());
        assert!(
            request
                .accept(7, 9, std::iter::once(Outcome::False).collect(), &mut work)
                .is_err(),
            "more than asked"
        );
        assert_eq!(work.missing, 0);
        let mut out = Vec::new();
        work.finish(&mut out);
        assert_eq!(
            out,
            [
                Outcome::True,
                Outcome::True,
                Outcome::False,
                Outcome::Error("e".into()),
                Outcome::True,
                timeout,
                Outcome::True,
                Outcome::True,
                Outcome::True,
                Outcome::True
            ]
        );
    }

    #[test]
    fn outcomes_past_the_request_or_without_their_detail_are_refused() {
        let mut work = Work::new(4);
        let mut request = InFlight::new(1, work.missing_ranges(1, usize::MAX));
        let lying = Outcomes {
            codes: vec![CODE_DETAIL],
            details: Vec::new(),
        };
        assert!(request.accept(1, 0, lying, &mut work).is_err());
        let unknown = Outcomes {
            codes: vec![7],
            details: Vec::new(),
        };
        assert!(request.accept(1, 0, unknown, &mut work).is_err());
        let five = vec![Outcome::True; 5].into_iter().collect();
        assert!(request.accept(1, 0, five, &mut work).is_err());
    }
}
