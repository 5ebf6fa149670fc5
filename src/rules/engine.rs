//! The sandboxed Rhai engine: compiles every rule once per evaluator, and evaluates one
//! (row, rule) pair into exactly one `Outcome`. Both executors call `Evaluator::evaluate`;
//! that single path is why their results are byte-identical.
//!
//! Sandbox: no `eval`, no modules (`no_module`: `import` does not parse), `print`/`debug`
//! go nowhere (stdout may be the data stream), Rhai's blocking `sleep` is replaced by the
//! contract's `sleep_ms`, and strings, arrays, maps, call depth and operations are bounded.
//! Deadlines are cooperative: `on_progress` looks at the clock every 1024 operations.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{AST, Dynamic, Engine, EvalAltResult, ParseErrorType, Scope};

use super::random;
use super::{RuleSet, RulesError};
use crate::model::{ColumnType, Columns, Outcome, Row};

/// How many operations pass between two looks at the clock. A power of two: the check is a
/// mask. At ~100M operations/s this is ~10 µs, and costs a few percent of a simple rule.
const CLOCK_EVERY: u64 = 1024;
/// Operations allowed per second of the longest time limit before the backstop stops a
/// script as an error. Far above what Rhai can run in that time: the deadline is the real
/// limit; this only matters if the clock check is ever defeated.
const BACKSTOP_OPS_PER_SECOND: u64 = 1_000_000_000;

const TERMINATED_BY_DEADLINE: &str = "deadline";
const TERMINATED_BY_CANCEL: &str = "cancelled";

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
struct Current {
    deadline: Option<Instant>,
    /// Random stream of (seed, transaction, rule), and how many draws it has given.
    key: u64,
    draws: u64,
}

thread_local! {
    static CURRENT: Cell<Current> = const { Cell::new(Current { deadline: None, key: 0, draws: 0 }) };
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

/// Builds the sandboxed engine. `strict` makes a variable that is not in the compile
/// scope (the input's columns) a compile error; without it only syntax is checked.
fn build_engine(strict: bool, max_timeout: Duration, cancel: Cancel) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.disable_symbol("eval");
    engine.set_strict_variables(strict);
    engine.set_fail_on_invalid_map_property(true);
    engine.set_max_string_size(1 << 20);
    engine.set_max_array_size(100_000);
    engine.set_max_map_size(100_000);
    engine.set_max_call_levels(64);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_variables(10_000);
    engine.set_max_functions(1_000);
    let seconds = max_timeout.as_secs_f64().ceil().max(1.0) as u64;
    engine.set_max_operations(seconds.saturating_mul(BACKSTOP_OPS_PER_SECOND));
    engine.on_progress(move |ops| {
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
    engine.register_fn("sleep_ms", |ms: i64| {
        // Models a slow outside call: it blocks and does not look at the deadline.
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms as u64));
        }
    });
    // Registered functions shadow the standard package's: Rhai's own `sleep` is gone.
    let no_sleep = || -> Result<(), Box<EvalAltResult>> {
        Err("sleep() is not available to rules; use sleep_ms(milliseconds)".into())
    };
    engine.register_fn("sleep", move |_: i64| no_sleep());
    engine.register_fn("sleep", move |_: f64| no_sleep());
    engine
}

/// Compiles every rule for syntax only (before the input's columns are known), returning
/// every error found.
pub fn check_syntax(set: &RuleSet) -> Vec<RulesError> {
    let engine = build_engine(false, set.max_timeout(), Cancel::default());
    set.rules
        .iter()
        .filter_map(|rule| {
            engine
                .compile(&rule.script)
                .err()
                .map(|e| compile_error(rule, &e, None))
        })
        .collect()
}

fn compile_error(
    rule: &super::Rule,
    err: &rhai::ParseError,
    columns: Option<&Columns>,
) -> RulesError {
    let pos = err.position();
    let undefined_variable = match err.err_type() {
        ParseErrorType::VariableUndefined(name) => Some(name.clone()),
        _ => None,
    };
    let message = match (err.err_type(), columns) {
        (ParseErrorType::VariableUndefined(name), Some(columns)) => format!(
            "variable {name:?} is neither a column of the input nor defined by the rule (columns: {})",
            columns.names.join(", ")
        ),
        (kind, _) => kind.to_string(),
    };
    let at = match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("when: line {l}, column {c}: "),
        (Some(l), None) => format!("when: line {l}: "),
        _ => "when: ".to_string(),
    };
    RulesError {
        line: Some(rule.line),
        rule: Some(rule.label()),
        message: format!("{at}{message}"),
        undefined_variable,
    }
}

/// A variable a rule reads, and the row value it is bound to.
struct Binding {
    name: String,
    column: usize,
}

struct CompiledRule {
    id: i64,
    timeout: Duration,
    ast: AST,
    /// Holds only the columns this rule reads, set before each evaluation; rewound after it,
    /// so nothing a script defines leaks into the next evaluation.
    scope: Scope<'static>,
    bindings: Vec<Binding>,
}

/// A private engine and compiled rules for one thread or worker process. Not shared:
/// one `Engine` + `AST` per thread scales with cores where a shared one does not.
pub struct Evaluator {
    engine: Engine,
    rules: Vec<CompiledRule>,
    seed: u64,
}

impl Evaluator {
    /// Compiles every rule against the input's columns; any variable that is neither a
    /// column nor the rule's own is an error here, before a row is evaluated.
    pub fn new(set: &RuleSet, columns: &Columns, seed: u64) -> Result<Evaluator, Vec<RulesError>> {
        Evaluator::cancellable(set, columns, seed, Cancel::default())
    }

    /// `new`, with evaluations that stop at their next clock check once `cancel` is set.
    pub fn cancellable(
        set: &RuleSet,
        columns: &Columns,
        seed: u64,
        cancel: Cancel,
    ) -> Result<Evaluator, Vec<RulesError>> {
        let engine = build_engine(true, set.max_timeout(), cancel);
        let mut all_columns = Scope::new();
        for (name, kind) in columns.names.iter().zip(&columns.types) {
            all_columns.push_dynamic(name.as_str(), placeholder(*kind));
        }
        let mut rules = Vec::with_capacity(set.rules.len());
        let mut errors = Vec::new();
        for rule in &set.rules {
            let ast = match engine.compile_with_scope(&all_columns, &rule.script) {
                Ok(ast) => ast,
                Err(e) => {
                    errors.push(compile_error(rule, &e, Some(columns)));
                    continue;
                }
            };
            let bindings: Vec<Binding> = identifiers(&rule.script)
                .filter_map(|word| columns.index(word).map(|column| (word, column)))
                .fold(Vec::new(), |mut acc, (word, column)| {
                    if !acc.iter().any(|b: &Binding| b.column == column) {
                        acc.push(Binding {
                            name: word.to_string(),
                            column,
                        });
                    }
                    acc
                });
            let mut scope = Scope::new();
            for b in &bindings {
                scope.push_dynamic(b.name.as_str(), Dynamic::UNIT);
            }
            rules.push(CompiledRule {
                id: rule.id,
                timeout: rule.timeout,
                ast,
                scope,
                bindings,
            });
        }
        if errors.is_empty() {
            Ok(Evaluator {
                engine,
                rules,
                seed,
            })
        } else {
            Err(errors)
        }
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Evaluates every rule on `row`, in rules order, appending one outcome per rule.
    pub fn evaluate_row(&mut self, row: &Row, out: &mut Vec<Outcome>) {
        let id_hash = random::hash_id(&row.id);
        for rule in 0..self.rules.len() {
            out.push(self.evaluate(rule, row, id_hash));
        }
    }

    /// Evaluates rule number `rule` (rules-file order) on `row`: the one place a rule runs.
    /// `id_hash` is `random::hash_id(&row.id)`, computed once per row by the caller.
    pub fn evaluate(&mut self, rule: usize, row: &Row, id_hash: u64) -> Outcome {
        let engine = &self.engine;
        let rule = &mut self.rules[rule];
        for b in &rule.bindings {
            if let Some(slot) = rule.scope.get_mut(&b.name) {
                *slot = row.values[b.column].clone();
            }
        }
        let started = Instant::now();
        let deadline = started + rule.timeout;
        CURRENT.with(|c| {
            c.set(Current {
                deadline: Some(deadline),
                key: random::key(self.seed, id_hash, rule.id),
                draws: 0,
            })
        });
        let result = catch_unwind(AssertUnwindSafe(|| {
            engine.eval_ast_with_scope::<Dynamic>(&mut rule.scope, &rule.ast)
        }));
        rule.scope.rewind(rule.bindings.len());
        let outcome = match result {
            Ok(Ok(value)) => match value.as_bool() {
                Ok(true) => Outcome::True,
                Ok(false) => Outcome::False,
                Err(type_name) => {
                    Outcome::Error(format!("returned {type_name} ({value}), not a bool"))
                }
            },
            Ok(Err(err)) => match innermost(&err) {
                EvalAltResult::ErrorTerminated(token, _)
                    if token.to_string() == TERMINATED_BY_DEADLINE =>
                {
                    Outcome::Timeout(rule.timeout)
                }
                EvalAltResult::ErrorTooManyOperations(_) => {
                    Outcome::Error("stopped by the operations backstop".to_string())
                }
                _ => Outcome::Error(one_line(&err.to_string())),
            },
            Err(panic) => {
                Outcome::Error(format!("evaluation panicked: {}", panic_message(&*panic)))
            }
        };
        // A script that blocked outside the interpreter (sleep_ms) cannot be stopped by the
        // clock check; it still passed its deadline, and says so, as the process executor's
        // kill would.
        if Instant::now() >= deadline && !matches!(outcome, Outcome::Timeout(_)) {
            return Outcome::Timeout(rule.timeout);
        }
        outcome
    }
}

/// A value of the right type for compiling against a column (only its presence matters).
fn placeholder(kind: ColumnType) -> Dynamic {
    match kind {
        ColumnType::Int => Dynamic::from_int(0),
        ColumnType::Float => Dynamic::from_float(0.0),
        ColumnType::Bool => Dynamic::FALSE,
        ColumnType::String => Dynamic::from(String::new()),
    }
}

/// The error inside any function-call wrappers, where the cause (a deadline) is told.
fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => innermost(inner),
        other => other,
    }
}

/// Results are CSV rows read by people and by grep: one line per message.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Every identifier-shaped word of a script (an over-approximation of the variables it
/// reads: binding a column the script does not read costs a clone, nothing more).
pub(crate) fn identifiers(script: &str) -> impl Iterator<Item = &str> {
    script
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file;

    fn columns() -> Columns {
        Columns {
            names: vec!["id".into(), "amount".into(), "country".into()],
            types: vec![ColumnType::Int, ColumnType::Float, ColumnType::String],
        }
    }

    fn row(id: i64, amount: f64, country: &str) -> Row {
        Row {
            id: id.to_string(),
            values: vec![
                Dynamic::from_int(id),
                Dynamic::from_float(amount),
                Dynamic::from(country.to_string()),
            ],
        }
    }

    fn evaluator(rules: &str) -> Evaluator {
        let set = file::parse(rules, Duration::from_millis(200)).unwrap();
        Evaluator::new(&set, &columns(), 0).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn one(script: &str, row: &Row) -> Outcome {
        let mut ev = evaluator(&format!(
            "[[rule]]\nid = 1\nname = \"r\"\nwhen = '''{script}'''\n"
        ));
        ev.evaluate(0, row, random::hash_id(&row.id))
    }

    #[test]
    fn bools_are_results_and_anything_else_is_an_error() {
        let r = row(1, 20000.0, "IR");
        assert_eq!(one("amount > 10000.0", &r), Outcome::True);
        assert_eq!(one("country == \"FR\"", &r), Outcome::False);
        assert_eq!(
            one("amount", &r),
            Outcome::Error("returned f64 (20000.0), not a bool".into())
        );
        match one("amount - \"x\" > 0.0", &r) {
            Outcome::Error(m) => assert!(m.contains("Function not found"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_loop_becomes_a_timeout_near_its_deadline() {
        let started = Instant::now();
        assert_eq!(
            one("loop {}", &row(1, 1.0, "FR")),
            Outcome::Timeout(Duration::from_millis(200))
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[test]
    fn a_loop_inside_a_function_is_a_timeout_too() {
        let r = row(1, 1.0, "FR");
        assert_eq!(
            one("fn spin() { loop {} } spin()", &r),
            Outcome::Timeout(Duration::from_millis(200))
        );
    }

    #[test]
    fn the_sandbox_refuses_eval_sleep_and_print_goes_nowhere() {
        let r = row(1, 1.0, "FR");
        match one("sleep(1); true", &r) {
            Outcome::Error(m) => assert!(m.contains("use sleep_ms"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(one("print(\"hi\"); debug(1); true", &r), Outcome::True);
        let set = file::parse(
            "[[rule]]\nid = 1\nname = \"r\"\nwhen = 'eval(\"true\")'\n",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(check_syntax(&set).len(), 1);
        let set = file::parse(
            "[[rule]]\nid = 1\nname = \"r\"\nwhen = 'import \"x\" as y; true'\n",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(check_syntax(&set).len(), 1);
    }

    #[test]
    fn huge_strings_are_stopped_by_the_size_limit() {
        match one("let s = \"x\"; loop { s += s; }", &row(1, 1.0, "FR")) {
            Outcome::Error(m) => assert!(m.contains("too large") || m.contains("Length"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn variables_defined_by_a_script_do_not_leak_into_the_next_evaluation() {
        let mut ev = evaluator(
            "[[rule]]\nid = 1\nname = \"r\"\nwhen = 'let seen = 1; amount = 0.0; amount == 0.0'\n",
        );
        let r = row(1, 5.0, "FR");
        assert_eq!(ev.evaluate(0, &r, 0), Outcome::True);
        assert_eq!(ev.evaluate(0, &r, 0), Outcome::True);
        let mut ev = evaluator("[[rule]]\nid = 1\nname = \"r\"\nwhen = 'amount == 5.0'\n");
        assert_eq!(ev.evaluate(0, &r, 0), Outcome::True);
    }

    #[test]
    fn unknown_variables_are_compile_errors_that_name_the_columns() {
        let set = file::parse(
            "[[rule]]\nid = 4\nname = \"typo\"\nwhen = 'amout > 1.0'\n",
            Duration::from_secs(1),
        )
        .unwrap();
        let errors = Evaluator::new(&set, &columns(), 0).err().unwrap();
        assert_eq!(
            errors[0].to_string(),
            "line 4: rule 4 \"typo\": when: line 1, column 1: variable \"amout\" is neither a column of the input nor defined by the rule (columns: id, amount, country)"
        );
    }

    #[test]
    fn coin_flips_are_a_pure_function_of_seed_transaction_and_rule() {
        let rules = "[[rule]]\nid = 1\nname = \"a\"\nwhen = 'coin_flip()'\n[[rule]]\nid = 2\nname = \"b\"\nwhen = 'random() < 0.5'\n";
        let set = file::parse(rules, Duration::from_secs(1)).unwrap();
        let flips = |seed| {
            let mut ev = Evaluator::new(&set, &columns(), seed).unwrap();
            let mut out = Vec::new();
            for i in 0..200 {
                ev.evaluate_row(&row(i, 1.0, "FR"), &mut out);
            }
            out
        };
        let a = flips(1);
        assert_eq!(a, flips(1));
        assert_ne!(a, flips(2));
        let heads = a.iter().filter(|o| **o == Outcome::True).count();
        assert!((150..250).contains(&heads), "{heads} of 400");
    }

    #[test]
    fn a_panic_inside_an_evaluation_is_an_error_result_and_the_evaluator_goes_on() {
        let mut ev = evaluator(
            "[[rule]]\nid = 1\nname = \"r\"\nwhen = 'if amount > 1.0 { native_bug() } true'\n",
        );
        ev.engine.register_fn("native_bug", || -> bool {
            panic!("index out of bounds in a native function")
        });
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = ev.evaluate(0, &row(1, 5.0, "FR"), 0);
        std::panic::set_hook(hook);
        assert_eq!(
            outcome,
            Outcome::Error("evaluation panicked: index out of bounds in a native function".into())
        );
        assert_eq!(ev.evaluate(0, &row(2, 0.5, "FR"), 0), Outcome::True);
    }

    #[test]
    fn sleep_past_the_deadline_is_a_timeout_even_though_it_cannot_be_interrupted() {
        assert_eq!(
            one("sleep_ms(300); true", &row(1, 1.0, "FR")),
            Outcome::Timeout(Duration::from_millis(200))
        );
        assert_eq!(one("sleep_ms(1); true", &row(1, 1.0, "FR")), Outcome::True);
    }
}
