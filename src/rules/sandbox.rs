//! The sandbox every rule runs in: a Rhai engine built from a minimal package set, with
//! its limits (`limits`), the functions rules get (`coin_flip`, `random`, `sleep_ms`, and
//! `sort`/`dedup` that pass a callback's errors on), and the progress callback that
//! enforces deadlines, cancellation and the memory budget. `engine` compiles and
//! evaluates rules in it.
//!
//! No `eval`, no modules (`no_module`: `import` does not parse), no `curry` and no
//! capturing closures (`no_closure`), `print`/`debug` go nowhere (stdout may be the data
//! stream), Rhai's blocking `sleep` is replaced by the contract's `sleep_ms`. Deadlines
//! are cooperative: the progress callback looks at the clock every 1024 operations, and
//! `sleep_ms` looks at it when it returns. Memory is bounded per evaluation by
//! `crate::budget`, asked on every operation. Every limit is listed in `limits` and in
//! the README's sandbox section.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FnPtr, ImmutableString, Map, NativeCallContext, Position,
};

use super::random;
use crate::budget;
use crate::model::Capped;

/// How many operations pass between two looks at the clock. A power of two: the check is a
/// mask. At ~100M operations/s this is ~10 µs, and costs a few percent of a simple rule.
const CLOCK_EVERY: u64 = 1024;
/// Operations allowed per second of the longest time limit before the backstop stops a
/// script as an error. Far above what Rhai can run in that time: the deadline is the real
/// limit; this only matters if the clock check is ever defeated.
const BACKSTOP_OPS_PER_SECOND: u64 = 1_000_000_000;

pub(super) const TERMINATED_BY_DEADLINE: &str = "deadline";
const TERMINATED_BY_CANCEL: &str = "cancelled";
pub(super) const TERMINATED_BY_MEMORY: &str = "memory";
pub(super) const TERMINATED_BY_STRING: &str = "string";

/// The sandbox's size limits (the README's sandbox section lists them; change both).
pub mod limits {
    /// Longest string, in bytes. Rhai checks it where strings are built, and also bounds
    /// the total of the strings inside one array or map, but not map keys: a map holds up to
    /// `MAP_ENTRIES` keys of this size, which Rhai renders with up to 6 bytes a byte
    /// (`\u{7f}`) when a rendering it cannot be stopped in (an interpolation whose
    /// `to_string` was cut short by the budget) falls back to displaying the whole value.
    /// 16 KiB keeps that worst case (~100 MB) under the memory budget.
    pub const STRING_BYTES: usize = 16 << 10;
    /// Most elements of an array, counting the elements of nested arrays: so also the
    /// deepest nesting of arrays (`a = [a]` 20,000 times is 20,000 elements).
    pub const ARRAY_ELEMENTS: usize = 10_000;
    /// Most entries of a map, counting those of nested maps (so also its deepest nesting).
    pub const MAP_ENTRIES: usize = 1_000;
    /// Deepest call chain of script functions (`fn f(n) { f(n - 1) }`).
    pub const CALL_LEVELS: usize = 64;
    /// Deepest expression nesting of a script, and of a function body, when compiled.
    pub const EXPR_DEPTH: (usize, usize) = (64, 32);
}

/// Set once when a run is being abandoned (a signal): every evaluator built with it stops
/// its running script at the next clock check instead of running to its deadline. The
/// executor that owns it sets it (`Executor::shutdown`).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the engine's callbacks need to know about the evaluation running on this thread.
/// A thread runs one evaluation at a time, and Rhai calls back on that same thread.
#[derive(Clone, Copy)]
pub(super) struct Current {
    pub(super) deadline: Option<Instant>,
    /// `sleep_ms` past the deadline sleeps only until it (see `Options`).
    pub(super) cut_sleep: bool,
    /// Random stream of (seed, transaction, rule), and how many draws it has given.
    pub(super) key: u64,
    pub(super) draws: u64,
    /// A rendering into a string (`to_string`, `to_debug`, `print`, `debug`, string
    /// interpolation, `"" + value`) stopped at `limits::STRING_BYTES`: the progress callback
    /// ends the evaluation with `TERMINATED_BY_STRING` at the next operation.
    pub(super) too_large: bool,
}

thread_local! {
    pub(super) static CURRENT: Cell<Current> = const {
        Cell::new(Current { deadline: None, cut_sleep: true, key: 0, draws: 0, too_large: false })
    };
}

fn next_draw() -> u64 {
    CURRENT.with(|c| {
        let mut cur = c.get();
        let bits = random::draw(cur.key, cur.draws);
        cur.draws += 1;
        c.set(cur);
        bits
    })
}

/// How an evaluator's evaluations behave, where the executors differ.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stops running scripts at their next check once set (`Executor::shutdown`).
    pub cancel: Cancel,
    /// A `sleep_ms` that would end past the evaluation's deadline sleeps only until the
    /// deadline. True where nothing else can stop a sleeping evaluation (a thread lane,
    /// `txguard check`); false in a worker process, where `sleep_ms` models a blocked
    /// outside call that only the supervisor's kill can stop (the result is the same:
    /// `timeout`).
    pub cut_sleep: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cancel: Cancel::default(),
            cut_sleep: true,
        }
    }
}

pub(super) fn terminated(token: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(token.into(), Position::NONE).into()
}

/// `sleep_ms(n)`: blocks n milliseconds (a slow outside call), or only until the deadline
/// where sleeps are cut; returning past the deadline ends the evaluation as a timeout at
/// once, so a loop of short sleeps overruns its limit by at most one sleep.
fn sleep_ms(ms: i64) -> Result<(), Box<EvalAltResult>> {
    let current = CURRENT.with(Cell::get);
    if ms > 0 {
        let mut nap = Duration::from_millis(ms as u64);
        if let (true, Some(deadline)) = (current.cut_sleep, current.deadline) {
            nap = nap.min(deadline.saturating_duration_since(Instant::now()));
        }
        std::thread::sleep(nap);
    }
    match current.deadline {
        Some(deadline) if Instant::now() >= deadline => Err(terminated(TERMINATED_BY_DEADLINE)),
        _ => Ok(()),
    }
}

/// `array.sort(comparer)` / `sort_by`, replacing Rhai's, which discards an error raised by
/// the comparer (`.ok()`, then an arbitrary order) and so turned `a.sort(|x, y| 1 / 0)` into
/// a `true` result. The first error stops the comparisons and is the call's error. A
/// comparer returning something other than an integer or a bool is an error too.
fn sort_by(
    ctx: NativeCallContext,
    array: &mut Array,
    comparer: FnPtr,
) -> Result<(), Box<EvalAltResult>> {
    use std::cmp::Ordering;
    if array.len() <= 1 {
        return Ok(());
    }
    let mut failed: Option<Box<EvalAltResult>> = None;
    // `slice::sort_by` may panic when the comparer is not a total order.
    let sorted = catch_unwind(AssertUnwindSafe(|| {
        array.sort_by(|x, y| {
            if failed.is_some() {
                return Ordering::Equal;
            }
            let verdict = comparer
                .call_raw(&ctx, None, [x.clone(), y.clone()])
                .and_then(|v| match (v.as_int(), v.as_bool()) {
                    (Ok(n), _) => Ok(n.cmp(&0)),
                    (_, Ok(before)) => Ok(if before {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }),
                    _ => Err(format!(
                        "the sort comparer returned {}, not an integer or a bool",
                        v.type_name()
                    )
                    .into()),
                });
            verdict.unwrap_or_else(|e| {
                failed = Some(e);
                Ordering::Equal
            })
        });
    }));
    if let Some(e) = failed {
        return Err(e);
    }
    sorted.map_err(|_| "the sort comparer is not a consistent order".into())
}

/// `array.dedup(comparer)`, replacing Rhai's, which takes a comparer's error (or a result
/// that is not a bool) for `false`.
fn dedup_by(
    ctx: NativeCallContext,
    array: &mut Array,
    comparer: FnPtr,
) -> Result<(), Box<EvalAltResult>> {
    let mut failed: Option<Box<EvalAltResult>> = None;
    array.dedup_by(|x, y| {
        if failed.is_some() {
            return false;
        }
        let verdict = comparer
            .call_raw(&ctx, None, [y.clone(), x.clone()])
            .and_then(|v| {
                v.as_bool().map_err(|type_name| {
                    format!("the dedup comparer returned {type_name}, not a bool").into()
                })
            });
        verdict.unwrap_or_else(|e| {
            failed = Some(e);
            false
        })
    });
    failed.map_or(Ok(()), Err)
}

/// Whether a rendering on this thread stopped at the string limit (see `Current`).
pub(super) fn string_too_large() -> bool {
    CURRENT.with(|c| c.get().too_large)
}

/// A value rendered into a string by `write`, stopping at
/// `limits::STRING_BYTES`. Rhai's own renderings build the whole string first and check its
/// size after, so one `m.to_debug()` of a map with 250 keys of 1 MiB (keys escape Rhai's
/// size limits, and `to_debug` writes a `\x7f` as 6 bytes) allocated 1.5 GB in one
/// operation, past the memory budget and the deadline. Past the limit this returns an empty
/// string and marks the evaluation, which the progress callback ends at the next operation
/// as an error: an error returned from here would not do, since Rhai's string
/// interpolation and `+` then fall back to rendering the value in full.
fn render(write: impl FnOnce(&mut Capped) -> std::fmt::Result) -> ImmutableString {
    let mut out = Capped::new(limits::STRING_BYTES, false);
    let _ = write(&mut out);
    if out.cut {
        CURRENT.with(|c| {
            let mut cur = c.get();
            cur.too_large = true;
            c.set(cur);
        });
        return ImmutableString::new();
    }
    out.text.into()
}

/// Registers bounded `to_string`, `to_debug`, `print` and `debug` for the values whose
/// rendering can be large (arrays, maps, strings in debug form, anything else through
/// `Dynamic`), in place of the standard package's. String interpolation and `string +
/// value` call `to_string`, so they are bounded too. Arrays and maps render as Rhai's do
/// (`[1, "a"]`, `#{"k": 1}`), without a copy of the value.
fn register_renderers(engine: &mut Engine) {
    use std::fmt::Write;
    for name in ["to_string", "print", "to_debug", "debug"] {
        engine.register_fn(name, |a: &mut Array| render(|out| write!(out, "{a:?}")));
        engine.register_fn(name, |m: &mut Map| render(|out| write!(out, "#{m:?}")));
    }
    for name in ["to_string", "print"] {
        engine.register_fn(name, |v: &mut Dynamic| render(|out| write!(out, "{v}")));
    }
    for name in ["to_debug", "debug"] {
        engine.register_fn(name, |s: &str| render(|out| write!(out, "{s:?}")));
        engine.register_fn(name, |v: &mut Dynamic| render(|out| write!(out, "{v:?}")));
    }
}

/// Builds the sandboxed engine. `strict` makes a variable that is not in the compile
/// scope (the input's columns) a compile error; without it only syntax is checked.
pub(super) fn build_engine(strict: bool, max_timeout: Duration, cancel: Cancel) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.disable_symbol("eval");
    // Values hidden in function pointers escape Rhai's size limits, and so can nest without
    // bound (each level a native recursion when dropped or cloned): no `curry`, and no
    // capturing closures (the `no_closure` feature, in Cargo.toml). Arrays and maps nest
    // only as deep as their size limits allow (`limits`), which the lane stack covers.
    engine.disable_symbol("curry");
    engine.set_strict_variables(strict);
    engine.set_fail_on_invalid_map_property(true);
    engine.set_max_string_size(limits::STRING_BYTES);
    engine.set_max_array_size(limits::ARRAY_ELEMENTS);
    engine.set_max_map_size(limits::MAP_ENTRIES);
    engine.set_max_call_levels(limits::CALL_LEVELS);
    engine.set_max_expr_depths(limits::EXPR_DEPTH.0, limits::EXPR_DEPTH.1);
    engine.set_max_variables(10_000);
    engine.set_max_functions(1_000);
    let seconds = max_timeout.as_secs_f64().ceil().max(1.0) as u64;
    engine.set_max_operations(seconds.saturating_mul(BACKSTOP_OPS_PER_SECOND));
    engine.on_progress(move |ops| {
        // On every operation: one operation can allocate about as much as the script
        // already holds, so the budget must be looked at before the next one.
        if budget::exceeded() {
            return Some(TERMINATED_BY_MEMORY.into());
        }
        if string_too_large() {
            return Some(TERMINATED_BY_STRING.into());
        }
        if ops % CLOCK_EVERY != 0 {
            return None;
        }
        if cancel.is_cancelled() {
            return Some(TERMINATED_BY_CANCEL.into());
        }
        let deadline = CURRENT.with(|c| c.get().deadline);
        match deadline {
            Some(d) if Instant::now() >= d => Some(TERMINATED_BY_DEADLINE.into()),
            _ => None,
        }
    });
    engine.register_fn("coin_flip", || next_draw() >> 63 == 1);
    engine.register_fn("random", || random::unit(next_draw()));
    engine.register_fn("sleep_ms", sleep_ms);
    engine.register_fn("sort", sort_by);
    engine.register_fn("sort_by", sort_by);
    engine.register_fn("dedup", dedup_by);
    register_renderers(&mut engine);
    // Registered functions shadow the standard package's: Rhai's own `sleep` is gone.
    let no_sleep = || -> Result<(), Box<EvalAltResult>> {
        Err("sleep() is not available to rules; use sleep_ms(milliseconds)".into())
    };
    engine.register_fn("sleep", move |_: i64| no_sleep());
    engine.register_fn("sleep", move |_: f64| no_sleep());
    engine
}
