//! Compiles every rule once per evaluator, in the sandbox (`sandbox`), and evaluates one
//! (row, rule) pair into exactly one `Outcome`. Both executors call `Evaluator::evaluate`;
//! that single path is why their results are byte-identical. A rule in the common subset
//! is also compiled natively (`native`), and `evaluate` runs that instead of Rhai.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, ParseErrorType, Scope};

use super::sandbox::{
    CURRENT, Cancel, Current, Options, TERMINATED_BY_DEADLINE, TERMINATED_BY_MEMORY,
    TERMINATED_BY_STRING, build_engine, terminated,
};
use super::{RuleSet, RulesError};
use super::{native, random, sandbox};
use crate::budget;
use crate::model::{ColumnType, Columns, Outcome, Row};

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
    // A variable the rule defines (`let b`) but reads where it is not visible: inside an
    // anonymous function, which cannot capture (the engine is built without closures, see
    // `build_engine`). Not a column to infer, and the message says why.
    let captured = |name: &str| {
        let words: Vec<&str> = identifiers(&rule.script).collect();
        words
            .windows(2)
            .any(|w| matches!(w[0], "let" | "const") && w[1] == name)
    };
    let undefined_variable = match err.err_type() {
        ParseErrorType::VariableUndefined(name) if !captured(name) => Some(name.clone()),
        _ => None,
    };
    let at_curry = pos
        .line()
        .and_then(|l| rule.script.lines().nth(l - 1))
        .zip(pos.position())
        .and_then(|(line, col)| line.get(col.saturating_sub(1)..))
        .is_some_and(|rest| rest.starts_with("curry"));
    let message = match (err.err_type(), columns) {
        (ParseErrorType::VariableUndefined(name), _) if captured(name) => format!(
            "variable {name:?} is not visible here: anonymous functions cannot capture \
             variables in rules (pass it as a parameter)"
        ),
        (ParseErrorType::VariableUndefined(name), Some(columns)) => format!(
            "variable {name:?} is neither a column of the input nor defined by the rule (columns: {})",
            columns.names.join(", ")
        ),
        _ if at_curry => {
            "`curry` is not available to rules (a function pointer cannot carry values)".into()
        }
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
    /// Variables of `scope` that stay (lists), before the bindings.
    base: usize,
    bindings: Vec<Binding>,
    /// The script compiled natively, when it is in the subset `native` compiles.
    native: Option<native::Program>,
}

/// Shortest time limit a native evaluation is used for. A native evaluation takes
/// nanoseconds and cannot loop, so it reads no clock; a rule with a limit this short (a
/// limit of microseconds) is left to Rhai, whose own speed decides whether it times out.
const NATIVE_MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// A private engine and compiled rules for one thread or worker process. Not shared:
/// one `Engine` + `AST` per thread scales with cores where a shared one does not.
pub struct Evaluator {
    engine: Engine,
    rules: Vec<CompiledRule>,
    seed: u64,
    /// Bytes one evaluation may hold (`RuleSet::memory_limit`).
    memory_limit: usize,
    cut_sleep: bool,
    /// Evaluations done natively so far (the rest ran in Rhai).
    native_evaluations: u64,
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
        let options = Options {
            cancel,
            ..Options::default()
        };
        Evaluator::with_options(set, columns, seed, options)
    }

    /// `new`, with the executor's `Options`.
    pub fn with_options(
        set: &RuleSet,
        columns: &Columns,
        seed: u64,
        options: Options,
    ) -> Result<Evaluator, Vec<RulesError>> {
        let mut engine = build_engine(true, set.max_timeout(), options.cancel);
        crate::lists::register(&mut engine);
        let lists = super::lists_windows::bound_lists(&set.derived)?;
        let mut all_columns = Scope::new();
        for (name, list) in &lists {
            all_columns.push_constant_dynamic(name.as_str(), list.clone());
        }
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
            // Lists first, as constants: they stay across evaluations (a shared handle,
            // never copied); only the bindings after them are rewound.
            let words: Vec<&str> = identifiers(&rule.script).collect();
            for (name, list) in lists.iter().filter(|(n, _)| words.contains(&n.as_str())) {
                scope.push_constant_dynamic(name.as_str(), list.clone());
            }
            let base = scope.len();
            for b in &bindings {
                scope.push_dynamic(b.name.as_str(), Dynamic::UNIT);
            }
            let native = (rule.timeout >= NATIVE_MIN_TIMEOUT)
                .then(|| native::compile(&ast, columns))
                .flatten();
            rules.push(CompiledRule {
                id: rule.id,
                timeout: rule.timeout,
                ast,
                scope,
                base,
                bindings,
                native,
            });
        }
        if errors.is_empty() {
            Ok(Evaluator {
                engine,
                rules,
                seed,
                memory_limit: set.memory_limit(),
                cut_sleep: options.cut_sleep,
                native_evaluations: 0,
            })
        } else {
            Err(errors)
        }
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Whether rule number `rule` is evaluated natively (see `native`), not by Rhai.
    #[cfg(test)]
    pub(crate) fn is_native(&self, rule: usize) -> bool {
        self.rules[rule].native.is_some()
    }

    /// The size of rule number `rule`'s native program (`native::Program::size`), or
    /// `None` when Rhai runs it: the most work one native evaluation of it can be.
    pub fn native_size(&self, rule: usize) -> Option<usize> {
        self.rules[rule].native.as_ref().map(native::Program::size)
    }

    /// How many evaluations were done natively so far.
    pub fn native_evaluations(&self) -> u64 {
        self.native_evaluations
    }

    /// Leaves every rule to Rhai: the reference the native path is tested against.
    #[cfg(test)]
    pub(super) fn without_native(&mut self) {
        for rule in &mut self.rules {
            rule.native = None;
        }
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
        // The common subset, natively: the same outcome as Rhai's below (`native` says
        // why), without its scope, clock, budget or unwinding, none of which it needs.
        if let Some(program) = &rule.native {
            let (seed, id) = (self.seed, rule.id);
            if let Some(result) = program.evaluate(&row.values, || random::key(seed, id_hash, id)) {
                self.native_evaluations += 1;
                return if result {
                    Outcome::True
                } else {
                    Outcome::False
                };
            }
        }
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
                cut_sleep: self.cut_sleep,
                key: random::key(self.seed, id_hash, rule.id),
                draws: 0,
                too_large: false,
            })
        });
        let memory_limit = self.memory_limit;
        let result = {
            // Ends with the evaluation, also when it panics; the value it returns is
            // still counted, so an evaluation that ends holding too much is caught below.
            let _budget = budget::scoped(memory_limit);
            catch_unwind(AssertUnwindSafe(|| {
                let value = engine.eval_ast_with_scope::<Dynamic>(&mut rule.scope, &rule.ast);
                if budget::exceeded() {
                    return Err(terminated(TERMINATED_BY_MEMORY));
                }
                if sandbox::string_too_large() {
                    return Err(terminated(TERMINATED_BY_STRING));
                }
                value
            }))
        };
        rule.scope.rewind(rule.base + rule.bindings.len());
        let outcome = match result {
            Ok(Ok(value)) => match value.as_bool() {
                Ok(true) => Outcome::True,
                Ok(false) => Outcome::False,
                // `detail` stops formatting a huge value at the cap.
                Err(type_name) => {
                    Outcome::error(format_args!("returned {type_name} ({value}), not a bool"))
                }
            },
            Ok(Err(err)) => match innermost(&err) {
                EvalAltResult::ErrorTerminated(token, _)
                    if token.to_string() == TERMINATED_BY_DEADLINE =>
                {
                    Outcome::Timeout(rule.timeout)
                }
                EvalAltResult::ErrorTerminated(token, _)
                    if token.to_string() == TERMINATED_BY_MEMORY =>
                {
                    Outcome::Error(budget::exceeded_message(memory_limit))
                }
                EvalAltResult::ErrorTerminated(token, _)
                    if token.to_string() == TERMINATED_BY_STRING =>
                {
                    Outcome::Error(format!(
                        "string too large (over {} bytes)",
                        sandbox::limits::STRING_BYTES
                    ))
                }
                EvalAltResult::ErrorTooManyOperations(_) => {
                    Outcome::error("stopped by the operations backstop")
                }
                _ => Outcome::error(&err),
            },
            Err(panic) => Outcome::error(format_args!(
                "evaluation panicked: {}",
                panic_message(&*panic)
            )),
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

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// The columns `script` reads, each once, in the order it first names them, with their
/// indices in `columns`: the names the evaluator binds (`identifiers`).
pub fn read_by(script: &str, columns: &Columns) -> Vec<(String, usize)> {
    let mut read: Vec<(String, usize)> = Vec::new();
    for word in identifiers(script) {
        if let Some(column) = columns.index(word)
            && !read.iter().any(|(_, c)| *c == column)
        {
            read.push((word.to_string(), column));
        }
    }
    read
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

    #[test]
    fn an_evaluation_past_its_memory_budget_is_an_error_and_the_next_one_is_fine() {
        let script = "if amount > 1.0 { let s = \"x\"; s.pad(16000, \"x\"); let m = #{}; \
                      for i in 0..1000 { m[\"k\" + i] = s + i; } } true";
        let mut set = file::parse(
            &format!("[[rule]]\nid = 1\nname = \"r\"\nwhen = '''{script}'''\n"),
            Duration::from_secs(30),
        )
        .unwrap();
        set.memory_limit = Some(8 << 20);
        let mut ev = Evaluator::new(&set, &columns(), 0).unwrap();
        assert_eq!(
            ev.evaluate(0, &row(1, 5.0, "FR"), 0),
            Outcome::Error("memory limit exceeded (8 MiB)".into())
        );
        assert_eq!(ev.evaluate(0, &row(2, 0.5, "FR"), 0), Outcome::True);
    }

    #[test]
    fn an_error_inside_a_sort_or_dedup_callback_is_the_evaluations_error() {
        let r = row(1, 1.0, "FR");
        for script in [
            "let a = [3, 1, 2]; a.sort(|x, y| 1 / 0); true",
            "let a = [3, 1, 2]; a.sort_by(|x, y| 1 / 0); true",
            "let a = [1, 1, 2]; a.dedup(|x, y| 1 / 0); true",
        ] {
            match one(script, &r) {
                Outcome::Error(m) => assert!(m.contains("Division by zero"), "{script}: {m}"),
                other => panic!("{script}: {other:?}"),
            }
        }
        assert_eq!(
            one(
                "let a = [3, 1, 2]; a.sort(|x, y| x - y); a == [1, 2, 3]",
                &r
            ),
            Outcome::True
        );
        assert_eq!(
            one(
                "let a = [3, 1, 2]; a.sort(|x, y| x > y); a == [3, 2, 1]",
                &r
            ),
            Outcome::True
        );
    }

    #[test]
    fn sleeping_in_a_loop_stops_at_the_deadline_within_one_sleep() {
        let started = Instant::now();
        assert_eq!(
            one("loop { sleep_ms(10) }", &row(1, 1.0, "FR")),
            Outcome::Timeout(Duration::from_millis(200))
        );
        assert_eq!(
            one("sleep_ms(60000); true", &row(1, 1.0, "FR")),
            Outcome::Timeout(Duration::from_millis(200))
        );
        // Two evaluations of 200 ms, not a minute: generous for a loaded machine.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn nesting_is_bounded_by_the_size_limits_and_function_pointers_carry_nothing() {
        std::thread::Builder::new()
            .stack_size(crate::exec::LANE_STACK_BYTES)
            .spawn(|| {
                let r = row(1, 1.0, "FR");
                // Each step checks the size of the whole value: quadratic, slow in debug.
                let slow = |script: &str| {
                    let rules = format!(
                        "[[rule]]\nid = 1\nname = \"r\"\nwhen = '''{script}'''\ntimeout = \"5m\"\n"
                    );
                    evaluator(&rules).evaluate(0, &r, 0)
                };
                // (Nested arrays, 10,000 deep before they fail, take seconds in a debug
                // build: tests/hostile.rs has them, in both executors.)
                match slow("let a = #{}; for i in 0..2000 { a = #{x: a}; } true") {
                    Outcome::Error(m) => assert!(m.contains("Size of object map"), "{m}"),
                    other => panic!("{other:?}"),
                }
            })
            .unwrap()
            .join()
            .unwrap();
        let refused = |script: &str| {
            let set = file::parse(
                &format!("[[rule]]\nid = 1\nname = \"r\"\nwhen = '''{script}'''\n"),
                Duration::from_secs(1),
            )
            .unwrap();
            Evaluator::new(&set, &columns(), 0).err().unwrap()[0]
                .message
                .clone()
        };
        let m = refused("let f = Fn(\"x\"); f = f.curry(f); true");
        assert!(m.contains("`curry` is not available"), "{m}");
        let m = refused("let b = 1; let f = || b; true");
        assert!(m.contains("anonymous functions cannot capture"), "{m}");
    }

    #[test]
    fn huge_results_and_thrown_values_give_a_capped_one_line_detail() {
        let r = row(1, 1.0, "FR");
        for script in [
            "let m = #{}; for i in 0..900 { m[\"k\" + i] = \"v\\n\" + i; } throw m;",
            "let s = \"a\\nb\"; s.pad(16000, \"y\"); s",
        ] {
            let Outcome::Error(m) = one(script, &r) else {
                panic!("{script}")
            };
            assert!(
                m.ends_with('…') && m.len() <= 1027 && !m.contains('\n'),
                "{m}"
            );
        }
    }
}
