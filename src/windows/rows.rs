//! A key's kept rows in one window: (time, value) pairs in time order, the oldest first.
//! Most keys keep a handful (a customer's payments in the last hour), so the first few
//! live inside the key's own state, in the cache line the window reads anyway; only a
//! key with more spills them to a ring buffer on the heap. A row pushed then costs no
//! second cache miss for most keys (the windows stage is bound by those misses).

use std::collections::VecDeque;

/// Rows kept inline before spilling to the heap: 5 × 16 bytes, with the tag, fit the
/// state's second cache line.
const INLINE: usize = 5;

type Kept = (i64, u64);

#[derive(Debug, Clone)]
pub enum Rows {
    Inline { len: u8, rows: [Kept; INLINE] },
    Heap(VecDeque<Kept>),
}

impl Default for Rows {
    fn default() -> Rows {
        Rows::Inline {
            len: 0,
            rows: [(0, 0); INLINE],
        }
    }
}

impl Rows {
    /// Spilled rows only: asks for the oldest and the newest row (the ends a push reads
    /// and writes) to be brought into the cache. Inline rows are in the state's own lines.
    pub fn prefetch_ends(&self) {
        if let Rows::Heap(ring) = self {
            for end in [ring.front(), ring.back()].into_iter().flatten() {
                super::prefetch(std::ptr::from_ref(end).cast());
            }
        }
    }

    /// The rows as up to two slices, oldest first (a ring's two halves).
    pub fn as_slices(&self) -> (&[Kept], &[Kept]) {
        match self {
            Rows::Inline { len, rows } => (&rows[..usize::from(*len)], &[]),
            Rows::Heap(ring) => ring.as_slices(),
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Rows::Inline { len, .. } => usize::from(*len),
            Rows::Heap(ring) => ring.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn front(&self) -> Option<&Kept> {
        match self {
            Rows::Inline { len: 0, .. } => None,
            Rows::Inline { rows, .. } => Some(&rows[0]),
            Rows::Heap(ring) => ring.front(),
        }
    }

    #[cfg(test)]
    pub fn back(&self) -> Option<&Kept> {
        match self {
            Rows::Inline { len: 0, .. } => None,
            Rows::Inline { len, rows } => Some(&rows[usize::from(*len) - 1]),
            Rows::Heap(ring) => ring.back(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Kept> {
        let (a, b) = self.as_slices();
        a.iter().chain(b)
    }

    /// The first `upto` rows.
    pub fn prefix(&self, upto: usize) -> impl Iterator<Item = &Kept> {
        self.iter().take(upto)
    }

    /// The rows after the first `from` (at most `len`).
    pub fn suffix(&self, from: usize) -> impl Iterator<Item = &Kept> {
        let (a, b) = self.as_slices();
        let (a, b) = match a.get(from..) {
            Some(rest) => (rest, b),
            None => (&a[..0], &b[from - a.len()..]),
        };
        a.iter().chain(b)
    }

    /// Appends the newest row (the in-order path: every row of an input sorted by time).
    #[inline]
    pub fn push_back(&mut self, row: Kept) {
        match self {
            Rows::Inline { len, rows } if usize::from(*len) < INLINE => {
                rows[usize::from(*len)] = row;
                *len += 1;
            }
            Rows::Heap(ring) => ring.push_back(row),
            Rows::Inline { len, .. } => {
                let at = usize::from(*len);
                self.insert(at, row);
            }
        }
    }

    /// Inserts `row` at `at` (0 ≤ `at` ≤ len), spilling to the heap when inline is full.
    pub fn insert(&mut self, at: usize, row: Kept) {
        match self {
            Rows::Inline { len, rows } if usize::from(*len) < INLINE => {
                let n = usize::from(*len);
                rows.copy_within(at..n, at + 1);
                rows[at] = row;
                *len += 1;
            }
            Rows::Inline { len, rows } => {
                let mut ring = VecDeque::with_capacity(2 * INLINE);
                ring.extend(&rows[..usize::from(*len)]);
                ring.insert(at, row);
                *self = Rows::Heap(ring);
            }
            Rows::Heap(ring) => ring.insert(at, row),
        }
    }

    /// Takes out the oldest row. A ring buffer that empties is freed: the key's rows live
    /// inline again (a key that went quiet holds no heap memory).
    #[inline]
    pub fn pop_front(&mut self) -> Option<Kept> {
        match self {
            Rows::Inline { len: 0, .. } => None,
            Rows::Inline { len, rows } => {
                let first = rows[0];
                // All the slots, not the first `len`: a copy of fixed size is a few moves,
                // one of variable size a call to memmove (the slots past `len` are unused).
                rows.copy_within(1..INLINE, 0);
                *len -= 1;
                Some(first)
            }
            Rows::Heap(ring) => {
                let first = ring.pop_front();
                if ring.is_empty() {
                    *self = Rows::default();
                }
                first
            }
        }
    }

    /// The index of the first row for which `before` is false (rows sorted by it).
    pub fn partition_point(&self, before: impl Fn(&Kept) -> bool) -> usize {
        let (a, b) = self.as_slices();
        let in_a = a.partition_point(&before);
        if in_a < a.len() {
            in_a
        } else {
            a.len() + b.partition_point(before)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same operations on `Rows` and on a `VecDeque` give the same rows, whether they
    /// fit inline or spill to the heap and come back.
    #[test]
    fn rows_behave_as_a_deque_inline_spilled_and_back() {
        let mut x = 7u64;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % n
        };
        let (mut rows, mut deque) = (Rows::default(), VecDeque::new());
        let mut spilled = 0;
        for step in 0..20_000i64 {
            match next(10) {
                0..=3 => {
                    let row = (step, next(100));
                    rows.push_back(row);
                    deque.push_back(row);
                }
                4 => {
                    // A late row: at its place in time order.
                    let t = next(step as u64 + 1) as i64;
                    let at = deque.partition_point(|r: &Kept| r.0 <= t);
                    assert_eq!(rows.partition_point(|r| r.0 <= t), at);
                    rows.insert(at, (t, 1));
                    deque.insert(at, (t, 1));
                }
                _ => assert_eq!(rows.pop_front(), deque.pop_front()),
            }
            spilled += usize::from(matches!(rows, Rows::Heap(_)));
            assert_eq!(rows.len(), deque.len());
            assert_eq!(rows.front(), deque.front());
            assert_eq!(rows.back(), deque.back());
            assert!(rows.iter().eq(deque.iter()));
            let from = next(deque.len() as u64 + 1) as usize;
            assert!(rows.suffix(from).eq(deque.range(from..)));
            let cut = next(20_000) as i64;
            assert_eq!(
                rows.partition_point(|r| r.0 < cut),
                deque.partition_point(|r| r.0 < cut)
            );
            if deque.is_empty() {
                assert!(
                    matches!(rows, Rows::Inline { .. }),
                    "an empty ring is freed"
                );
            }
        }
        assert!(spilled > 1000, "the test spills: {spilled}");
    }
}
