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
//! sums are running sums, min and max monotonic deques, distinct a counted multiset (a
//! key's few rows themselves while it keeps at most `FEW`, one table per window beyond).
//! A row out of time order costs a binary search and O(rows kept for its key at or before
//! its time), so an input sorted newest first stays cheap (min and max included); a sum,
//! average or distinct takes the fewer of the rows up to its time and those after it, a
//! min or max starts from the best of the rows up to the previous late row's time (so an
//! input sorted oldest first behind one row dated ahead stays cheap too). State
//! is the rows kept (16 bytes each: time and value, a text as its number in the window's
//! `Texts`) plus one 128-byte record per key seen and window, which holds the key's first
//! few rows itself; a key's record stays to the end of the run.
//!
//! Sums of an int column are exact (128-bit). Sums of a float column are running
//! compensated (Neumaier) sums, reset to exactly 0 whenever the window empties: the value
//! depends only on the input (same bytes, same value on every executor and `-j`), and is
//! within a few units in the last place of the exact sum (see `Sum` for values past
//! `f64::MAX` together, and the README for values far larger than the window's others).

pub mod keys;
mod rows;
pub mod time;
mod values;

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};

use rows::Rows;
use std::hash::{Hash, Hasher};

use ahash::RandomState;

use rhai::{Dynamic, INT, ImmutableString};

pub use keys::{Keys, Texts};
pub use values::Values;

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

    /// `d` as it is, bit for bit (`from_dynamic` makes -0.0 one value with 0.0, as keys
    /// and distinct values must be; an aggregate's value is kept as computed).
    pub fn exactly(d: &Dynamic) -> Val {
        match d.as_float() {
            Ok(f) => Val::Float(f),
            Err(_) => Val::from_dynamic(d),
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
    /// Whether `s` and `c` hold the sum times `SCALED`: finite values that add up past
    /// `f64::MAX` (two of 1e308) made the running sum inf and its compensation -inf, a
    /// NaN that stayed until the window emptied, long after those values had left.
    scaled: bool,
}

/// The factor of a scaled sum: a power of two, so scaling a value is exact (for any value
/// above 1e-288), and a scaled sum cannot overflow.
const SCALED: f64 = 1.0 / 18_446_744_073_709_551_616.0;

impl Sum {
    fn add(&mut self, v: &Val, sign: f64) {
        match v {
            Val::Int(i) => self.add_int(*i, sign),
            Val::Float(x) => self.add_float(*x, sign),
            _ => {}
        }
    }

    fn add_int(&mut self, i: i64, sign: f64) {
        self.ints += i128::from(i) * sign as i128;
    }

    fn add_float(&mut self, x: f64, sign: f64) {
        if x.is_infinite() {
            self.infinities[usize::from(x < 0.0)] += sign as i64;
            return;
        }
        let x = if self.scaled {
            sign * x * SCALED
        } else {
            sign * x
        };
        let t = self.s + x;
        if t.is_infinite() {
            // Finite values past `f64::MAX`: from here until the window empties, the sum
            // is kept scaled down (exactly), and only its value may be inf.
            self.scaled = true;
            self.s *= SCALED;
            self.c *= SCALED;
            return self.add_float(x, 1.0);
        }
        if self.s.abs() >= x.abs() {
            self.c += (self.s - t) + x;
        } else {
            self.c += (x - t) + self.s;
        }
        self.s = t;
    }

    fn value(&self) -> f64 {
        match self.infinities {
            [0, 0] if self.scaled => (self.s + self.c) / SCALED,
            [0, 0] => self.ints as f64 + (self.s + self.c),
            [_, 0] => f64::INFINITY,
            [0, _] => f64::NEG_INFINITY,
            _ => f64::NAN,
        }
    }
}

/// The type of the column a window aggregates (`of`), which says how its values are kept
/// in 8 bytes: an int or a float as its bits (-0.0 as 0.0), a bool as 0 or 1, a string
/// as its number in the window's `Texts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Bool,
    Text,
}

/// A row's `of` value as the stage hands it to a window.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// No `of` column (count), or a row no aggregate but count reads.
    None,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A text and its hash (`keys::hash` of its bytes).
    Text(&'a str, u64),
}

impl Value<'_> {
    fn to_val(self) -> Val {
        match self {
            Value::None => Val::Unit,
            Value::Int(i) => Val::Int(i),
            // -0.0 is 0.0, as Rhai's `==` says: one distinct value.
            Value::Float(f) => Val::Float(if f == 0.0 { 0.0 } else { f }),
            Value::Bool(b) => Val::Bool(b),
            Value::Text(s, _) => Val::Str(s.into()),
        }
    }
}

/// One key's running aggregates, by function: the float sum's `s` and `c` (bits) and its
/// infinities (+ in the low 32 bits, − in the next 31) and whether it is scaled (the top
/// bit), or the int sum (low, high), or the
/// number of distinct values and whether they are counted in `Window::distinct` (1) or
/// found among the key's few rows (0).
#[derive(Debug, Clone, Copy, Default)]
struct Agg([u64; 3]);

/// In the high half of a float sum's third word: the sum is scaled (`Sum::scaled`).
const SCALED_BIT: u32 = 1 << 31;

/// One key's state in one window: 128 bytes, two adjacent cache lines (fetched together),
/// whatever the function, holding its first few rows itself (`Rows`).
#[derive(Debug, Default)]
#[repr(C, align(128))]
struct KeyState {
    /// The key's newest time so far.
    newest: i64,
    agg: Agg,
    /// (time, value) of the matching rows kept, sorted by time (stable: input order
    /// among equal times).
    rows: Rows,
}

const _: () = assert!(std::mem::size_of::<KeyState>() == 128);

/// Up to this many rows, a key's distinct values are found among its rows (most keys:
/// no table lookup); beyond, they are counted in the window's table.
const FEW: usize = 8;

/// A window's state over every key (by `Keys` number), and its size.
#[derive(Debug)]
pub struct Window {
    function: Function,
    kind: Kind,
    span: i64,
    keys: Vec<KeyState>,
    /// Min or max only, by key: candidates, a subsequence of the key's rows monotonic in
    /// value.
    extremes: Vec<VecDeque<(i64, u64)>>,
    /// Min or max only, by key that had late rows: the best of its first `n` kept rows, as
    /// `(n, value)`, until a row leaves its front. After one row dated ahead of its key's
    /// others, every later row of the key is late, and each scanned every kept row up to
    /// its time (quadratic: 50,000 rows of one account, 2.2 s for a max).
    prefix_best: HashMap<usize, (usize, u64), RandomState>,
    /// Distinct only: (key, value) → how many of the key's kept rows hold the value.
    distinct: HashMap<(u32, u64), u32, RandomState>,
    /// The texts the kept rows hold (a string `of` column).
    texts: Texts,
    /// Rows kept over every key.
    rows: usize,
}

impl Window {
    /// A window computing `function` over `span_nanos`, of a column of type `kind` (any
    /// kind for count).
    pub fn new(function: Function, span_nanos: i64, kind: Kind) -> Window {
        Window {
            function,
            kind,
            span: span_nanos.max(1),
            keys: Vec::new(),
            extremes: Vec::new(),
            prefix_best: HashMap::default(),
            distinct: HashMap::default(),
            texts: Texts::default(),
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
            // Both lines: the second holds most of the inline rows.
            let at: *const i8 = std::ptr::from_ref(state).cast();
            prefetch(at);
            prefetch(at.wrapping_add(64));
        }
    }

    /// Asks for `key`'s spilled rows' ends to be brought into the cache (after `prefetch`
    /// brought its state: this reads it).
    pub fn prefetch_rows(&self, key: usize) {
        if let Some(state) = self.keys.get(key) {
            state.rows.prefetch_ends();
        }
    }

    /// Adds a row of key number `key` (`Keys::id`; `matching`: its `where` holds and it
    /// has an `of` value; `value`: that value, of the window's kind) and returns the
    /// window's value for it.
    pub fn push(&mut self, key: usize, time: i64, matching: bool, value: Value<'_>) -> Dynamic {
        let mut out = Values::default();
        self.push_into(key, time, matching, value, &mut out);
        out.dynamic(0)
    }

    /// `push`, the value appended to `out` (the caller builds the `Dynamic` later, on a
    /// lane: see `Values`).
    pub fn push_into(
        &mut self,
        key: usize,
        time: i64,
        matching: bool,
        value: Value<'_>,
        out: &mut Values,
    ) {
        if key >= self.keys.len() {
            self.keys.resize_with(key + 1, || KeyState {
                newest: i64::MIN,
                ..KeyState::default()
            });
            if matches!(self.function, Function::Min | Function::Max) {
                self.extremes.resize_with(key + 1, VecDeque::new);
            }
        }
        if time >= self.keys[key].newest {
            self.keys[key].newest = time;
            self.evict(key, time.saturating_sub(self.span));
            if matching {
                let code = self.hold(value);
                self.remember(key, code);
                if matches!(self.function, Function::Min | Function::Max) {
                    self.push_extreme(key, time, code);
                }
                self.keys[key].rows.push_back((time, code));
                self.rows += 1;
            }
            if self.function == Function::Distinct {
                self.settle(key);
            }
            self.current(key, out);
        } else {
            let late = self.late(key, time, matching, value);
            out.val(Val::exactly(&late));
        }
    }

    /// `value` as the window keeps it (a text held once more).
    #[inline]
    fn hold(&mut self, value: Value<'_>) -> u64 {
        if self.function == Function::Count {
            return 0;
        }
        match value {
            Value::None => 0,
            Value::Int(i) => i as u64,
            Value::Float(f) => (if f == 0.0 { 0.0 } else { f }).to_bits(),
            Value::Bool(b) => u64::from(b),
            Value::Text(s, hash) => self.texts.hold(s, hash),
        }
    }

    /// A kept value as a `Val`.
    fn val(&self, code: u64) -> Val {
        match self.kind {
            Kind::Int => Val::Int(code as i64),
            Kind::Float => Val::Float(f64::from_bits(code)),
            Kind::Bool => Val::Bool(code != 0),
            Kind::Text => Val::Str(self.texts.text(code).clone()),
        }
    }

    /// The order of two kept values (min and max).
    fn compare(&self, a: u64, b: u64) -> Ordering {
        match self.kind {
            Kind::Int => (a as i64).cmp(&(b as i64)),
            Kind::Float => f64::from_bits(a).total_cmp(&f64::from_bits(b)),
            Kind::Bool => a.cmp(&b),
            Kind::Text => self.texts.text(a).as_str().cmp(self.texts.text(b).as_str()),
        }
    }

    fn sum(&self, key: usize) -> Sum {
        let [a, b, c] = self.keys[key].agg.0;
        match self.kind {
            Kind::Int => Sum {
                ints: (u128::from(a) | u128::from(b) << 64) as i128,
                ..Sum::default()
            },
            _ => Sum {
                s: f64::from_bits(a),
                c: f64::from_bits(b),
                infinities: [
                    i64::from(c as u32),
                    i64::from((c >> 32) as u32 & !SCALED_BIT),
                ],
                scaled: c >> 32 & u64::from(SCALED_BIT) != 0,
                ..Sum::default()
            },
        }
    }

    fn set_sum(&mut self, key: usize, sum: &Sum) {
        let scaled = if sum.scaled { SCALED_BIT } else { 0 };
        self.keys[key].agg.0 = match self.kind {
            Kind::Int => [sum.ints as u64, (sum.ints as u128 >> 64) as u64, 0],
            _ => [
                sum.s.to_bits(),
                sum.c.to_bits(),
                u64::from(sum.infinities[0] as u32)
                    | u64::from(sum.infinities[1] as u32 & !SCALED_BIT | scaled) << 32,
            ],
        };
    }

    /// Adds a kept value to `key`'s aggregates.
    #[inline(always)]
    fn remember(&mut self, key: usize, code: u64) {
        self.account(key, code, 1.0);
    }

    /// Takes a value that leaves `key`'s rows out of its aggregates (a text held once less).
    #[inline(always)]
    fn forget(&mut self, key: usize, code: u64) {
        self.account(key, code, -1.0);
        if self.kind == Kind::Text && self.function != Function::Count {
            self.texts.release(code);
        }
    }

    /// Adds (`sign` 1) or takes out (-1) a kept value. Inlined into the push: a count (or
    /// min, max) does nothing here, a sum a few adds; only a distinct calls out.
    #[inline(always)]
    fn account(&mut self, key: usize, code: u64, sign: f64) {
        match self.function {
            Function::Count | Function::Min | Function::Max => {}
            Function::Sum | Function::Avg => {
                let mut sum = self.sum(key);
                match self.kind {
                    Kind::Int => sum.add_int(code as i64, sign),
                    _ => sum.add_float(f64::from_bits(code), sign),
                }
                self.set_sum(key, &sum);
            }
            Function::Distinct => self.account_distinct(key, code, sign > 0.0),
        }
    }

    fn account_distinct(&mut self, key: usize, code: u64, added: bool) {
        let state = &mut self.keys[key];
        if state.agg.0[1] == 0 {
            // A few rows: the key's own rows say whether the value is new (added, the row
            // is not in yet) or gone (taken out, it is out already).
            if !state.rows.iter().any(|&(_, c)| c == code) {
                if added {
                    state.agg.0[0] += 1;
                } else {
                    state.agg.0[0] -= 1;
                }
            }
            return;
        }
        let pair = (key as u32, code);
        if added {
            let n = self.distinct.entry(pair).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.keys[key].agg.0[0] += 1;
            }
        } else if let Some(n) = self.distinct.get_mut(&pair) {
            *n -= 1;
            if *n == 0 {
                self.distinct.remove(&pair);
                self.keys[key].agg.0[0] -= 1;
            }
        }
    }

    /// Distinct only: moves `key`'s values into the shared table once it keeps more than
    /// `FEW` rows (its own rows are then too many to scan), and out again once it keeps
    /// `FEW / 4` or fewer (the gap: a key near the bound does not move back and forth).
    #[inline]
    fn settle(&mut self, key: usize) {
        // Only a distinct keeps its values' table flag in `agg`: a sum keeps its
        // compensation there, which this would clear or set (a late row is settled whatever
        // the function).
        if self.function != Function::Distinct {
            return;
        }
        let state = &self.keys[key];
        let (n, in_table) = (state.rows.len(), state.agg.0[1] != 0);
        // Checked here, inlined into every push; the moves, rare, are out of line.
        if (!in_table && n > FEW) || (in_table && n <= FEW / 4) {
            self.move_distinct(key);
        }
    }

    #[inline(never)]
    fn move_distinct(&mut self, key: usize) {
        let state = &mut self.keys[key];
        let (n, in_table) = (state.rows.len(), state.agg.0[1] != 0);
        if !in_table && n > FEW {
            for &(_, code) in state.rows.iter() {
                *self.distinct.entry((key as u32, code)).or_insert(0) += 1;
            }
            state.agg.0[1] = 1;
        } else if in_table && n <= FEW / 4 {
            for &(_, code) in state.rows.iter() {
                self.distinct.remove(&(key as u32, code));
            }
            state.agg.0[1] = 0;
        }
    }

    /// Drops `key`'s rows at or before `horizon`.
    fn evict(&mut self, key: usize, horizon: i64) {
        let mut left = false;
        while let Some(&(t, code)) = self.keys[key].rows.front() {
            if t > horizon {
                break;
            }
            self.keys[key].rows.pop_front();
            self.rows -= 1;
            self.forget(key, code);
            left = true;
        }
        if left && !self.prefix_best.is_empty() {
            // Its first rows are others now.
            self.prefix_best.remove(&key);
        }
        if let Some(extremes) = self.extremes.get_mut(key) {
            while extremes.front().is_some_and(|(t, _)| *t <= horizon) {
                extremes.pop_front();
            }
        }
        let state = &mut self.keys[key];
        if state.rows.is_empty() {
            // Exactly 0 again: no rounding carried from rows long gone.
            state.agg = Agg::default();
            // The rows' ring is freed as it empties (`Rows`); the candidates' too.
            if let Some(extremes) = self.extremes.get_mut(key)
                && extremes.capacity() > 64
            {
                *extremes = VecDeque::new();
            }
        }
    }

    fn push_extreme(&mut self, key: usize, time: i64, code: u64) {
        let mut extremes = std::mem::take(&mut self.extremes[key]);
        self.push_candidate(&mut extremes, time, code);
        self.extremes[key] = extremes;
    }

    /// Pushes a kept value onto `extremes` (min or max candidates), dropping those it beats.
    fn push_candidate(&self, extremes: &mut VecDeque<(i64, u64)>, time: i64, code: u64) {
        let max = self.function == Function::Max;
        while let Some(&(_, back)) = extremes.back() {
            let worse = match self.compare(back, code) {
                Ordering::Less => max,
                Ordering::Greater => !max,
                Ordering::Equal => false,
            };
            if !worse {
                break;
            }
            extremes.pop_back();
        }
        extremes.push_back((time, code));
    }

    /// Whether kept value `a` is beaten by `b` (min or max; an equal value is not).
    fn beaten(&self, a: u64, b: u64) -> bool {
        match self.compare(a, b) {
            Ordering::Less => self.function == Function::Max,
            Ordering::Greater => self.function == Function::Min,
            Ordering::Equal => false,
        }
    }

    /// Inserts a late kept value (at `time`, after the kept rows of equal time) into
    /// `extremes`, in O(log n + candidates it beats): rebuilding them from every kept row
    /// made each late row O(rows kept), and an input sorted newest first quadratic (100,000
    /// rows of one account: 33 s for a max, 0.06 s for a sum). The candidates are the rows
    /// that no later row beats, so the first one later than `time` is the best of the later
    /// rows: the value is a candidate unless that one beats it, and then the candidates
    /// just before it that it beats are none any more.
    fn insert_candidate(&self, extremes: &mut VecDeque<(i64, u64)>, time: i64, code: u64) {
        let at = extremes.partition_point(|&(t, _)| t <= time);
        if extremes
            .get(at)
            .is_some_and(|&(_, later)| self.beaten(code, later))
        {
            return;
        }
        let mut from = at;
        while from > 0 && self.beaten(extremes[from - 1].1, code) {
            from -= 1;
        }
        extremes.drain(from..at);
        extremes.insert(from, (time, code));
    }

    /// The aggregate of every kept row of `key` (all at or before its newest time),
    /// appended to `out`.
    #[inline]
    fn current(&self, key: usize, out: &mut Values) {
        let state = &self.keys[key];
        let n = state.rows.len();
        match self.function {
            Function::Count => out.int(n as INT),
            Function::Distinct => out.int(state.agg.0[0] as INT),
            Function::Sum => out.float(if n == 0 { 0.0 } else { self.sum(key).value() }),
            Function::Avg if n == 0 => out.unit(),
            Function::Avg => out.float(self.sum(key).value() / n as f64),
            Function::Min | Function::Max => match self.extremes[key].front() {
                Some(&(_, code)) => out.val(self.val(code)),
                None => out.unit(),
            },
        }
    }

    /// A row earlier than the key's newest time: kept if younger than the horizon; its
    /// value is computed over the kept rows up to its time. O(rows kept for the key).
    fn late(&mut self, key: usize, time: i64, matching: bool, value: Value<'_>) -> Dynamic {
        let horizon = self.keys[key].newest.saturating_sub(self.span);
        let upto = self.keys[key].rows.partition_point(|(t, _)| *t <= time);
        if matching {
            if time <= horizon {
                // Older than the horizon: every kept row is younger (after it in time), so
                // the row sees itself only.
                return aggregate(self.function, std::iter::once(&value.to_val()));
            }
            let code = self.hold(value);
            self.remember(key, code);
            self.keys[key].rows.insert(upto, (time, code));
            self.rows += 1;
            self.settle(key);
            if matches!(self.function, Function::Min | Function::Max) {
                let mut extremes = std::mem::take(&mut self.extremes[key]);
                self.insert_candidate(&mut extremes, time, code);
                self.extremes[key] = extremes;
                // Inserted among the first `n` rows (or just after them): the first
                // `n + 1` rows are those and this one.
                if let Some(&(n, best)) = self.prefix_best.get(&key)
                    && upto <= n
                {
                    let best = if self.beaten(best, code) { code } else { best };
                    self.prefix_best.insert(key, (n + 1, best));
                }
            }
        }
        let upto = upto + usize::from(matching);
        if matches!(self.function, Function::Min | Function::Max) {
            return self.best_kept(key, upto);
        }
        self.aggregate_kept(key, upto)
    }

    /// Min or max of `key`'s first `upto` kept rows, as `aggregate_kept` (the first of the
    /// best values wins), from the best of a shorter prefix when known, which it then
    /// becomes: rows arriving in time order behind one row dated ahead cost O(1) each.
    fn best_kept(&mut self, key: usize, upto: usize) -> Dynamic {
        let (from, mut best) = match self.prefix_best.get(&key) {
            Some(&(n, best)) if n <= upto => (n, Some(best)),
            _ => (0, None),
        };
        for &(_, code) in self.keys[key].rows.suffix(from).take(upto - from) {
            if best.is_none_or(|b| self.beaten(b, code)) {
                best = Some(code);
            }
        }
        match best {
            Some(code) => {
                self.prefix_best.insert(key, (upto, code));
                self.val(code).to_dynamic()
            }
            None => Dynamic::UNIT,
        }
    }

    /// The aggregate of `key`'s first `upto` kept rows: `aggregate` of their values, in
    /// order, computed on the kept numbers (no value built per row: the late path is
    /// O(rows kept for the key) with a small constant).
    fn aggregate_kept(&self, key: usize, upto: usize) -> Dynamic {
        if let Some(value) = self.aggregate_kept_from_the_end(key, upto) {
            return value;
        }
        let codes = self.keys[key].rows.prefix(upto).map(|&(_, code)| code);
        match self.function {
            Function::Count => Dynamic::from_int(upto as INT),
            Function::Sum | Function::Avg => {
                let mut sum = Sum::default();
                for code in codes {
                    match self.kind {
                        Kind::Int => sum.add_int(code as i64, 1.0),
                        _ => sum.add_float(f64::from_bits(code), 1.0),
                    }
                }
                match self.function {
                    Function::Sum => Dynamic::from_float(sum.value()),
                    _ if upto == 0 => Dynamic::UNIT,
                    _ => Dynamic::from_float(sum.value() / upto as f64),
                }
            }
            Function::Min | Function::Max => {
                // As `aggregate`: the first of the best values wins.
                let better = if self.function == Function::Max {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                let mut best: Option<u64> = None;
                for code in codes {
                    if best.is_none_or(|b| self.compare(code, b) == better) {
                        best = Some(code);
                    }
                }
                best.map_or(Dynamic::UNIT, |code| self.val(code).to_dynamic())
            }
            Function::Distinct => {
                // Equal values are equal numbers (a text has one while held).
                let mut seen: HashSet<u64, RandomState> = HashSet::default();
                seen.extend(codes);
                Dynamic::from_int(seen.len() as INT)
            }
        }
    }
}

impl Window {
    /// `aggregate_kept` from the key's running aggregate, less its rows after the first
    /// `upto`, when those are fewer (a sum, an average, or a distinct counted in the
    /// table); `None` otherwise. One row dated ahead of its key's others (a clock off by
    /// days) made each later row of the key late, and each cost O(rows kept): 50,000 rows
    /// of one account in a 30-day span, after one row 29 days ahead, took 1.5 s for a sum
    /// and 3.6 s for a distinct, against 0.04 s for a count.
    fn aggregate_kept_from_the_end(&self, key: usize, upto: usize) -> Option<Dynamic> {
        let rows = &self.keys[key].rows;
        if rows.len() - upto >= upto {
            return None;
        }
        let after = rows.suffix(upto).map(|&(_, code)| code);
        match self.function {
            Function::Sum | Function::Avg => {
                // As the rows leaving the window are taken out of the running sum.
                let mut sum = self.sum(key);
                for code in after {
                    match self.kind {
                        Kind::Int => sum.add_int(code as i64, -1.0),
                        _ => sum.add_float(f64::from_bits(code), -1.0),
                    }
                }
                Some(Dynamic::from_float(match self.function {
                    Function::Sum => sum.value(),
                    _ => sum.value() / upto as f64,
                }))
            }
            Function::Distinct if self.keys[key].agg.0[1] != 0 => {
                // A value held by the later rows only is no value of the first `upto`.
                let mut later: HashMap<u64, u32, RandomState> = HashMap::default();
                for code in after {
                    *later.entry(code).or_insert(0) += 1;
                }
                let only_later = later
                    .iter()
                    .filter(|&(&code, &n)| self.distinct.get(&(key as u32, code)) == Some(&n))
                    .count();
                Some(Dynamic::from_int(
                    (self.keys[key].agg.0[0] as usize - only_later) as INT,
                ))
            }
            _ => None,
        }
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
        reference_of(function, span, rows, Val::Int)
    }

    /// `reference`, with each value `v` seen as `val(v)`.
    fn reference_of(
        function: Function,
        span: i64,
        rows: &[(i64, i64, bool, i64)],
        val: impl Fn(i64) -> Val,
    ) -> Vec<String> {
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
                    .map(|r| val(r.3))
                    .collect();
                if m {
                    seen.push(val(v));
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
            let mut w = Window::new(function, 20 * S, Kind::Int);
            let got: Vec<String> = rows
                .iter()
                .map(|&(k, t, m, v)| w.push(k as usize, t, m, Value::Int(v)).to_string())
                .collect();
            assert_eq!(got, reference(function, 20 * S, &rows), "{function:?}");
            // Floats (an infinity among them) and bools, through the late path's
            // aggregate of kept numbers too.
            let float = |v: i64| {
                if v == 7 {
                    f64::INFINITY
                } else {
                    v as f64 * 0.5
                }
            };
            let mut w = Window::new(function, 20 * S, Kind::Float);
            let got: Vec<String> = rows
                .iter()
                .map(|&(k, t, m, v)| w.push(k as usize, t, m, Value::Float(float(v))).to_string())
                .collect();
            let want = reference_of(function, 20 * S, &rows, |v| Val::Float(float(v)));
            assert_eq!(got, want, "{function:?} of floats");
            if !matches!(function, Function::Sum | Function::Avg) {
                let mut w = Window::new(function, 20 * S, Kind::Bool);
                let got: Vec<String> = rows
                    .iter()
                    .map(|&(k, t, m, v)| w.push(k as usize, t, m, Value::Bool(v > 2)).to_string())
                    .collect();
                let want = reference_of(function, 20 * S, &rows, |v| Val::Bool(v > 2));
                assert_eq!(got, want, "{function:?} of bools");
            }
            // Texts (interned while held), and a span long enough for a key to keep more
            // than `FEW` rows: distinct values move into the shared table and out again.
            // (A sum of texts is refused before any window is built.)
            let spans = if matches!(function, Function::Sum | Function::Avg) {
                vec![]
            } else {
                vec![20 * S, 300 * S]
            };
            for span in spans {
                let text = |v: i64| format!("v{v}");
                let mut w = Window::new(function, span, Kind::Text);
                let got: Vec<String> = rows
                    .iter()
                    .map(|&(k, t, m, v)| {
                        w.push(
                            k as usize,
                            t,
                            m,
                            Value::Text(&text(v), keys::hash(text(v).as_bytes())),
                        )
                        .to_string()
                    })
                    .collect();
                let want = reference_of(function, span, &rows, |v| Val::Str(text(v).into()));
                assert_eq!(got, want, "{function:?} of texts over {span}");
                assert!(
                    w.texts.len() <= w.rows(),
                    "texts held by no row are forgotten"
                );
            }
        }
    }

    /// A late row is put among the min/max candidates where its time says: it drops the
    /// earlier candidates it beats (the next in-order row's max is 4, not 2).
    #[test]
    fn a_late_row_takes_the_place_of_the_candidates_it_beats() {
        let mut w = Window::new(Function::Max, 10 * S, Kind::Int);
        let got: Vec<String> = [(0, 2), (2, 1), (1, 4), (3, 0), (11, 0), (12, 0)]
            .iter()
            .map(|&(t, v)| w.push(0, t * S, true, Value::Int(v)).to_string())
            .collect();
        // At 11 s the rows of 0 s and 1 s have left (1 s is exactly the span old).
        assert_eq!(got, ["2", "2", "4", "4", "1", "0"]);
        let mut w = Window::new(Function::Min, 10 * S, Kind::Int);
        let got: Vec<String> = [(0, 2), (2, 5), (2, 3), (1, 1), (3, 9), (11, 9), (12, 9)]
            .iter()
            .map(|&(t, v)| w.push(0, t * S, true, Value::Int(v)).to_string())
            .collect();
        assert_eq!(got, ["2", "2", "2", "1", "1", "3", "9"]);
    }

    #[test]
    fn an_infinity_leaves_the_sum_as_it_found_it() {
        let mut w = Window::new(Function::Sum, 10 * S, Kind::Float);
        let sums: Vec<String> = [(0, 1.5), (1, f64::INFINITY), (2, 2.0), (12, 4.0), (13, 1.0)]
            .iter()
            .map(|&(t, v)| w.push(0, t * S, true, Value::Float(v)).to_string())
            .collect();
        // At 12 s the rows of 0 to 2 s are out (2 s is exactly the span old): 4.0, not NaN.
        assert_eq!(sums, ["1.5", "inf", "inf", "4.0", "5.0"]);
    }

    /// A late row of a sum keeps the running sum's compensation: settling it as a distinct
    /// (the table flag shares the compensation's word) cleared it, and the small values
    /// absorbed by a large one were lost; with more rows it set the flag and filled the
    /// distinct table of a window that is no distinct.
    #[test]
    fn a_late_row_leaves_a_sum_exact() {
        for function in [Function::Sum, Function::Avg] {
            let mut w = Window::new(function, 100 * S, Kind::Float);
            let mut push = |t: i64, v: f64| w.push(0, t * S, true, Value::Float(v)).to_string();
            // 1.0 added to 1e16 rounds away (the compensation keeps it): once late, once
            // in order, 1e16 + 2.0 exactly; without the first one, 1e16 (ties to even).
            push(3, 1e16);
            push(2, 1.0);
            let last = push(4, 1.0);
            let want = if function == Function::Sum {
                (1e16 + 2.0).to_string()
            } else {
                ((1e16 + 2.0) / 3.0).to_string()
            };
            assert_eq!(
                last.parse::<f64>().unwrap().to_string(),
                want,
                "{function:?}"
            );
            for t in 5..20 {
                push(t, 1.0);
                push(t - 4, 1.0);
            }
            assert!(w.distinct.is_empty(), "{function:?}: no distinct table");
        }
    }

    /// Finite values past `f64::MAX` make the sum inf (not NaN), in order and late, and
    /// leave nothing behind once they are out of the window.
    #[test]
    fn a_sum_past_the_largest_float_is_inf_while_its_rows_are_in() {
        let mut w = Window::new(Function::Sum, 10 * S, Kind::Float);
        let sums: Vec<String> = [(0, 1e308), (1, 1e308), (2, -1e308), (3, 0.5), (12, 1.0)]
            .iter()
            .map(|&(t, v)| w.push(0, t * S, true, Value::Float(v)).to_string())
            .collect();
        assert_eq!(sums, ["1e308", "inf", "1e308", "1e308", "1.5"]);
        // A late row over kept rows that overflow.
        let _ = w.push(1, 5 * S, true, Value::Float(-1e308));
        let _ = w.push(1, 6 * S, true, Value::Float(-1e308));
        assert_eq!(w.push(1, 4 * S, true, Value::Float(1.0)).to_string(), "1.0");
        assert_eq!(
            w.push(1, 6 * S, true, Value::Float(2.0)).to_string(),
            "-inf"
        );
        let values = [Val::Float(1e308), Val::Float(1e308), Val::Float(-1e308)];
        assert_eq!(
            aggregate(Function::Avg, values.iter()).to_string(),
            "3.333333333333333e307"
        );
    }

    #[test]
    fn state_is_the_rows_inside_the_span() {
        let mut w = Window::new(Function::Count, 10 * S, Kind::Int);
        for i in 0..1000 {
            let _ = w.push((i % 7) as usize, i * S, true, Value::None);
        }
        // Each key keeps the rows younger than its own newest time minus the span: rows
        // 7 s apart, so two per key.
        assert_eq!(w.keys(), 7);
        assert_eq!(w.rows(), 14);
    }
}
