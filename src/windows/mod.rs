//! Per-key sliding windows (`[windows.NAME]`): the aggregate of a key's recent rows, kept
//! in O(1) amortised time per row. This module is the arithmetic only; the pipeline stage
//! that feeds it every row in input order is `crate::pipeline::windows`.
//!
//! For a row at time `t` whose key's newest time so far (this row included) is `N`, the
//! window holds the rows read so far with the same key, matching `where`, and a time in
//! `(N − span, t]`, and the row itself when it matches. On input sorted by time within
//! each key, `N = t`: the exact sliding window `(t − span, t]`. A row later in the input
//! but earlier in time than `N` sees the rows still kept (younger than `N − span`) up to
//! its own time; one at or before `N − span` (older than the horizon) sees only itself.
//!
//! In-order rows cost O(1) amortised: rows leave from the front as the horizon moves,
//! sums are running sums, min and max monotonic deques, distinct a counted multiset. A row
//! out of time order costs O(rows kept for its key). State is the rows inside the spans
//! plus one small record per key seen.
//!
//! Sums of an int column are exact (128-bit). Sums of a float column are running
//! compensated (Neumaier) sums, reset to exactly 0 whenever the window empties: the value
//! depends only on the input (same bytes, same value on every executor and `-j`), and is
//! within a few units in the last place of the exact sum.

pub mod time;

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use ahash::RandomState;

use rhai::{Dynamic, INT, ImmutableString};

use crate::rules::lists_windows::Function;

/// A value of a key, `of` column or aggregate: the column types, comparable and hashable.
#[derive(Debug, Clone)]
pub enum Val {
    Unit,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(ImmutableString),
}

impl Val {
    pub fn from_dynamic(d: &Dynamic) -> Val {
        if let Ok(i) = d.as_int() {
            Val::Int(i)
        } else if let Ok(f) = d.as_float() {
            // -0.0 is 0.0, as Rhai's `==` says: one distinct value, one key.
            Val::Float(if f == 0.0 { 0.0 } else { f })
        } else if let Ok(b) = d.as_bool() {
            Val::Bool(b)
        } else if let Ok(s) = d.as_immutable_string_ref() {
            Val::Str(s.clone())
        } else {
            Val::Unit
        }
    }

    pub fn to_dynamic(&self) -> Dynamic {
        match self {
            Val::Unit => Dynamic::UNIT,
            Val::Int(i) => Dynamic::from_int(*i),
            Val::Float(f) => Dynamic::from_float(*f),
            Val::Bool(b) => Dynamic::from_bool(*b),
            Val::Str(s) => Dynamic::from(s.clone()),
        }
    }

    fn total_cmp(&self, other: &Val) -> Ordering {
        match (self, other) {
            (Val::Int(a), Val::Int(b)) => a.cmp(b),
            (Val::Float(a), Val::Float(b)) => a.total_cmp(b),
            (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
            (Val::Str(a), Val::Str(b)) => a.as_str().cmp(b.as_str()),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Val::Unit => 0,
            Val::Bool(_) => 1,
            Val::Int(_) => 2,
            Val::Float(_) => 3,
            Val::Str(_) => 4,
        }
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Val) -> bool {
        match (self, other) {
            // Keys typed from the same interned text share one allocation: equal without
            // reading the bytes (a cache miss per lookup otherwise).
            (Val::Str(a), Val::Str(b)) => a.ptr_eq(b) || a.as_str() == b.as_str(),
            _ => self.total_cmp(other) == Ordering::Equal,
        }
    }
}

impl Eq for Val {}

impl Hash for Val {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Val::Unit => {}
            Val::Int(i) => i.hash(state),
            Val::Float(f) => f.to_bits().hash(state),
            Val::Bool(b) => b.hash(state),
            Val::Str(s) => s.as_str().hash(state),
        }
    }
}

/// A running compensated sum (Neumaier), or an exact one for ints. Infinities (a float
/// column may hold `inf`) are counted apart: added to the running sum they would leave
/// NaN behind once they left the window (inf − inf).
#[derive(Debug, Clone, Default)]
struct Sum {
    ints: i128,
    s: f64,
    c: f64,
    /// How many +inf and -inf values are in.
    infinities: [i64; 2],
}

impl Sum {
    fn add(&mut self, v: &Val, sign: f64) {
        match v {
            Val::Int(i) => self.ints += i128::from(*i) * sign as i128,
            Val::Float(x) if x.is_infinite() => {
                self.infinities[usize::from(*x < 0.0)] += sign as i64;
            }
            Val::Float(x) => {
                let x = sign * x;
                let t = self.s + x;
                if self.s.abs() >= x.abs() {
                    self.c += (self.s - t) + x;
                } else {
                    self.c += (x - t) + self.s;
                }
                self.s = t;
            }
            _ => {}
        }
    }

    fn value(&self) -> f64 {
        match self.infinities {
            [0, 0] => self.ints as f64 + (self.s + self.c),
            [_, 0] => f64::INFINITY,
            [0, _] => f64::NEG_INFINITY,
            _ => f64::NAN,
        }
    }
}

/// One key's rows inside the span, and their running aggregates. `repr(C)`, aligned to a
/// cache line: the fields every row reads (newest time, the rows' deque) share the first
/// line, so a count window reads one line of its state per row (it read two before).
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct KeyState {
    /// The key's newest time so far.
    newest: i64,
    /// (time, value) of the matching rows kept, sorted by time (stable: input order
    /// among equal times).
    rows: VecDeque<(i64, Val)>,
    sum: Sum,
    /// Min or max candidates: a subsequence of `rows`, monotonic in value.
    extremes: VecDeque<(i64, Val)>,
    /// Value → how many kept rows hold it.
    distinct: HashMap<Val, u32, RandomState>,
}

/// Numbers the keys of one key column, so that windows over the same key share one hash
/// lookup per row and keep their states in plain vectors.
#[derive(Debug, Default)]
pub struct Keys {
    /// A fast keyed hash (not SipHash): numbers are given in order of first appearance,
    /// so results never depend on the hasher.
    ids: HashMap<KeyText, u32, RandomState>,
}

/// A key as the numbering stores it: a short string inline, so that comparing keys reads
/// the table only, not a string elsewhere in memory.
#[derive(Debug, PartialEq, Eq, Hash)]
enum KeyText {
    Short(u8, [u8; 22]),
    Other(Val),
}

impl KeyText {
    fn of(key: Val) -> KeyText {
        if let Val::Str(s) = &key
            && s.len() <= 22
        {
            let mut bytes = [0u8; 22];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            return KeyText::Short(s.len() as u8, bytes);
        }
        KeyText::Other(key)
    }
}

impl Keys {
    /// The number of `key` (0, 1, 2, … in order of first appearance).
    pub fn id(&mut self, key: Val) -> usize {
        let next = self.ids.len() as u32;
        *self.ids.entry(KeyText::of(key)).or_insert(next) as usize
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A window's state over every key (by `Keys` number), and its size.
#[derive(Debug)]
pub struct Window {
    function: Function,
    span: i64,
    keys: Vec<KeyState>,
    /// Rows kept over every key.
    rows: usize,
}

impl Window {
    pub fn new(function: Function, span_nanos: i64) -> Window {
        Window {
            function,
            span: span_nanos.max(1),
            keys: Vec::new(),
            rows: 0,
        }
    }

    /// Rows kept now, over every key.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Keys seen.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Asks for `key`'s state to be brought into the cache: a row that will be pushed soon
    /// then finds it there. A hint only; nothing changes.
    pub fn prefetch(&self, key: usize) {
        if let Some(state) = self.keys.get(key) {
            prefetch(std::ptr::from_ref(state).cast());
        }
    }

    /// Asks for the oldest kept row of `key` to be brought into the cache (reads `key`'s
    /// state: call it after `prefetch` had time to fetch that).
    pub fn prefetch_rows(&self, key: usize) {
        if let Some(front) = self.keys.get(key).and_then(|state| state.rows.front()) {
            prefetch(std::ptr::from_ref(front).cast());
        }
    }

    /// Adds a row of key number `key` (`Keys::id`; `matching`: its `where` holds;
    /// `value`: its `of` value, `Unit` for count) and returns the window's value for it.
    pub fn push(&mut self, key: usize, time: i64, matching: bool, value: Val) -> Dynamic {
        let function = self.function;
        let span = self.span;
        if key >= self.keys.len() {
            self.keys.resize_with(key + 1, || KeyState {
                newest: i64::MIN,
                ..KeyState::default()
            });
        }
        let state = &mut self.keys[key];
        let before = state.rows.len();
        let result = if time >= state.newest {
            state.newest = time;
            state.evict(time.saturating_sub(span), function);
            if matching {
                state.push_back(time, value, function);
            }
            state.current(function)
        } else {
            state.late(time, span, matching, value, function)
        };
        self.rows = self.rows + state.rows.len() - before;
        result
    }
}

/// A hint to the processor to fetch the cache line at `at`.
#[inline(always)]
fn prefetch(at: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and writes nothing, whatever the address; `at` is
    // moreover the address of a live value.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

impl KeyState {
    fn is_max(function: Function) -> bool {
        function == Function::Max
    }

    /// Drops the rows at or before `horizon`.
    fn evict(&mut self, horizon: i64, function: Function) {
        while let Some((t, _)) = self.rows.front() {
            if *t > horizon {
                break;
            }
            let (_, v) = self.rows.pop_front().expect("a front row");
            self.forget(&v, function);
        }
        while self.extremes.front().is_some_and(|(t, _)| *t <= horizon) {
            self.extremes.pop_front();
        }
        if self.rows.is_empty() {
            // Exactly 0 again: no rounding carried from rows long gone.
            self.sum = Sum::default();
            if self.rows.capacity() > 64 {
                self.rows = VecDeque::new();
                self.extremes = VecDeque::new();
            }
        }
    }

    fn forget(&mut self, v: &Val, function: Function) {
        match function {
            Function::Sum | Function::Avg => self.sum.add(v, -1.0),
            Function::Distinct => {
                if let Some(n) = self.distinct.get_mut(v) {
                    *n -= 1;
                    if *n == 0 {
                        self.distinct.remove(v);
                    }
                }
            }
            _ => {}
        }
    }

    fn remember(&mut self, v: &Val, function: Function) {
        match function {
            Function::Sum | Function::Avg => self.sum.add(v, 1.0),
            Function::Distinct => *self.distinct.entry(v.clone()).or_insert(0) += 1,
            _ => {}
        }
    }

    fn push_extreme(extremes: &mut VecDeque<(i64, Val)>, time: i64, v: &Val, max: bool) {
        while let Some((_, back)) = extremes.back() {
            let worse = if max {
                back.total_cmp(v) == Ordering::Less
            } else {
                back.total_cmp(v) == Ordering::Greater
            };
            if !worse {
                break;
            }
            extremes.pop_back();
        }
        extremes.push_back((time, v.clone()));
    }

    fn push_back(&mut self, time: i64, v: Val, function: Function) {
        self.remember(&v, function);
        if matches!(function, Function::Min | Function::Max) {
            Self::push_extreme(&mut self.extremes, time, &v, Self::is_max(function));
        }
        self.rows.push_back((time, v));
    }

    /// The aggregate of every kept row (all at or before the newest time).
    fn current(&self, function: Function) -> Dynamic {
        let n = self.rows.len();
        match function {
            Function::Count => Dynamic::from_int(n as INT),
            Function::Distinct => Dynamic::from_int(self.distinct.len() as INT),
            Function::Sum => Dynamic::from_float(if n == 0 { 0.0 } else { self.sum.value() }),
            Function::Avg if n == 0 => Dynamic::UNIT,
            Function::Avg => Dynamic::from_float(self.sum.value() / n as f64),
            Function::Min | Function::Max => self
                .extremes
                .front()
                .map_or(Dynamic::UNIT, |(_, v)| v.to_dynamic()),
        }
    }

    /// A row earlier than the key's newest time: kept if younger than the horizon; its
    /// value is computed over the kept rows up to its time.
    fn late(
        &mut self,
        time: i64,
        span: i64,
        matching: bool,
        v: Val,
        function: Function,
    ) -> Dynamic {
        let horizon = self.newest.saturating_sub(span);
        let upto = self.rows.partition_point(|(t, _)| *t <= time);
        let mut own = None;
        if matching {
            if time > horizon {
                self.remember(&v, function);
                self.rows.insert(upto, (time, v));
                if matches!(function, Function::Min | Function::Max) {
                    let max = Self::is_max(function);
                    self.extremes.clear();
                    for (t, v) in &self.rows {
                        Self::push_extreme(&mut self.extremes, *t, v, max);
                    }
                }
            } else {
                own = Some(v);
            }
        }
        let upto = if matching && own.is_none() {
            upto + 1
        } else {
            upto
        };
        let seen = self.rows.range(..upto).map(|(_, v)| v).chain(own.as_ref());
        aggregate(function, seen)
    }
}

/// The aggregate of `values`, in order: the late rows' path, and the reference for tests.
pub fn aggregate<'a>(function: Function, values: impl Iterator<Item = &'a Val>) -> Dynamic {
    let mut n = 0usize;
    let mut sum = Sum::default();
    let mut best: Option<&Val> = None;
    let mut distinct = std::collections::HashSet::new();
    for v in values {
        n += 1;
        match function {
            Function::Sum | Function::Avg => sum.add(v, 1.0),
            Function::Min => {
                if best.is_none_or(|b| v.total_cmp(b) == Ordering::Less) {
                    best = Some(v);
                }
            }
            Function::Max => {
                if best.is_none_or(|b| v.total_cmp(b) == Ordering::Greater) {
                    best = Some(v);
                }
            }
            Function::Distinct => {
                distinct.insert(v);
            }
            Function::Count => {}
        }
    }
    match function {
        Function::Count => Dynamic::from_int(n as INT),
        Function::Distinct => Dynamic::from_int(distinct.len() as INT),
        Function::Sum => Dynamic::from_float(sum.value()),
        Function::Avg if n == 0 => Dynamic::UNIT,
        Function::Avg => Dynamic::from_float(sum.value() / n as f64),
        Function::Min | Function::Max => best.map_or(Dynamic::UNIT, Val::to_dynamic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    /// The definition, row by row, over every earlier row: O(n²).
    fn reference(function: Function, span: i64, rows: &[(i64, i64, bool, i64)]) -> Vec<String> {
        (0..rows.len())
            .map(|i| {
                let (key, t, m, v) = rows[i];
                let newest = rows[..=i]
                    .iter()
                    .filter(|r| r.0 == key)
                    .map(|r| r.1)
                    .max()
                    .unwrap();
                let mut seen: Vec<Val> = rows[..i]
                    .iter()
                    .filter(|r| r.0 == key && r.2 && r.1 > newest - span && r.1 <= t)
                    .map(|r| Val::Int(r.3))
                    .collect();
                if m {
                    seen.push(Val::Int(v));
                }
                aggregate(function, seen.iter()).to_string()
            })
            .collect()
    }

    #[test]
    fn every_function_matches_the_definition_also_out_of_order() {
        // A small LCG: bursts of equal times, a few rows back in time, three keys.
        let mut x: u64 = 7;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % n
        };
        let mut rows = Vec::new();
        let mut t = 0i64;
        for _ in 0..600 {
            t += [0, 0, 1, 5, 30][next(5) as usize] * S;
            let back = if next(10) == 0 {
                next(40) as i64 * S
            } else {
                0
            };
            rows.push((next(3) as i64, t - back, next(4) != 0, next(20) as i64 - 5));
        }
        for function in [
            Function::Count,
            Function::Sum,
            Function::Min,
            Function::Max,
            Function::Avg,
            Function::Distinct,
        ] {
            let mut w = Window::new(function, 20 * S);
            let got: Vec<String> = rows
                .iter()
                .map(|&(k, t, m, v)| w.push(k as usize, t, m, Val::Int(v)).to_string())
                .collect();
            assert_eq!(got, reference(function, 20 * S, &rows), "{function:?}");
        }
    }

    #[test]
    fn an_infinity_leaves_the_sum_as_it_found_it() {
        let mut w = Window::new(Function::Sum, 10 * S);
        let sums: Vec<String> = [(0, 1.5), (1, f64::INFINITY), (2, 2.0), (12, 4.0), (13, 1.0)]
            .iter()
            .map(|&(t, v)| w.push(0, t * S, true, Val::Float(v)).to_string())
            .collect();
        // At 12 s the rows of 0 to 2 s are out (2 s is exactly the span old): 4.0, not NaN.
        assert_eq!(sums, ["1.5", "inf", "inf", "4.0", "5.0"]);
    }

    #[test]
    fn state_is_the_rows_inside_the_span() {
        let mut w = Window::new(Function::Count, 10 * S);
        for i in 0..1000 {
            let _ = w.push((i % 7) as usize, i * S, true, Val::Unit);
        }
        // Each key keeps the rows younger than its own newest time minus the span: rows
        // 7 s apart, so two per key.
        assert_eq!(w.keys(), 7);
        assert_eq!(w.rows(), 14);
    }
}
