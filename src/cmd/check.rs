//! `txguard check RULES [--input FILE]`: compile every rule, run every
//! `[[rule.example]]`, and report every problem of the file at once (exit 1), or a
//! one-line all-clear (exit 0).
//!
//! One pass finds everything: the file's own errors (duplicate ids, bad timeouts) do not
//! stop the rules from being compiled, and a rule that does not compile does not stop the
//! others' examples from running. Examples run under the rules' limits (time, memory) on
//! a thread with the lanes' stack, so a hostile example ends as its `timeout` or `error`.
//!
//! Without an input, a variable that is neither declared nor defined by its rule is taken
//! for a string column. With `--input`, the input's header decides: every variable must
//! be a column, and every rule is evaluated on the first `SAMPLE_ROWS` rows, any `error`
//! or `timeout` reported by rule.

use anyhow::{Context, Result};
use rhai::Dynamic;

use crate::cli::CheckArgs;
use crate::exec::LANE_STACK_BYTES;
use crate::exit;
use crate::input::InputReader;
use crate::model::{BadRow, ColumnType, Columns, Kind, Outcome, Row};
use crate::rules::{
    self, Evaluator, Example, Rule, RuleSet, RulesError, RulesErrors, engine, random_key_hash,
};

/// Rows of `--input` every rule is evaluated on.
const SAMPLE_ROWS: usize = 100;

pub fn run(args: &CheckArgs) -> Result<i32> {
    // Evaluations need the lanes' stack (see `LANE_STACK_BYTES`), not the main thread's.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("check".into())
            .stack_size(LANE_STACK_BYTES)
            .spawn_scoped(scope, || check(args))
            .context("cannot start the check thread")?
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the check thread panicked")))
    })
}

fn check(args: &CheckArgs) -> Result<i32> {
    let text = rules::read_text(&args.rules)?;
    let fail = |errors: Vec<RulesError>| RulesErrors {
        path: args.rules.clone(),
        errors,
    };
    let (set, mut problems) = rules::file::parse_lenient(&text, args.timeout);
    let Some(mut set) = set else {
        return Err(fail(problems).into());
    };
    set.or_memory_limit(args.memory_limit);
    // Lists: every file read and checked (columns, types, duplicate keys); a list that
    // fails is bound empty, so the rules are still compiled and their examples run.
    problems.extend(check_lists(&mut set, &args.rules));
    problems.extend(check_window_filters(&set));
    let mut syntax_ok = Vec::with_capacity(set.rules.len());
    for rule in &set.rules {
        let errors = engine::check_syntax(&only(&set, rule));
        syntax_ok.push(errors.is_empty());
        problems.extend(errors);
    }

    let input = match &args.input {
        Some(path) => Some(InputReader::open_csv(
            path,
            &set,
            &args
                .csv
                .config(crate::dialect::CsvConfig::default().max_record),
            true,
        )?),
        None => None,
    };
    let columns = match &input {
        Some(input) => input.columns().clone(),
        None => columns_of(&set, &syntax_ok),
    };
    // One evaluator per rule that compiles, so that one rule's error hides no other's.
    let mut evaluators: Vec<Option<Evaluator>> = Vec::with_capacity(set.rules.len());
    for (rule, ok) in set.rules.iter().zip(&syntax_ok) {
        evaluators.push(if *ok {
            match Evaluator::new(&only(&set, rule), &columns, args.seed) {
                Ok(evaluator) => Some(evaluator),
                Err(errors) => {
                    problems.extend(errors);
                    None
                }
            }
        } else {
            None
        });
    }

    let mut examples = 0;
    for (rule, evaluator) in set.rules.iter().zip(&mut evaluators) {
        for (n, example) in rule.examples.iter().enumerate() {
            examples += 1;
            let Some(evaluator) = evaluator.as_mut() else {
                continue;
            };
            let problem = |message: String| RulesError {
                line: Some(example.line),
                rule: Some(rule.label()),
                message: format!("example {}: {message}", n + 1),
                undefined_variable: None,
            };
            let row = match example_row(example, &columns, &set) {
                Ok(row) => row,
                Err(message) => {
                    problems.push(problem(message));
                    continue;
                }
            };
            // An example that gives a list's contents runs with them instead of the file's.
            let mut own = match example_lists(&set, rule, example, &columns, args.seed) {
                Ok(own) => own,
                Err(message) => {
                    problems.push(problem(message));
                    continue;
                }
            };
            let evaluator = own.as_mut().unwrap_or(evaluator);
            let got = evaluator.evaluate(0, &row, random_key_hash(&row.id));
            if let Some(expect) = example.expect
                && got.kind() != expect
            {
                problems.push(problem(format!(
                    "expected {}, got {}",
                    expect.as_str(),
                    describe(&got)
                )));
            }
        }
    }
    // Examples stating a decision: every rule evaluated on their row, scores added up.
    if let Some(decision) = &set.decision
        && evaluators.iter().all(Option::is_some)
    {
        for rule in &set.rules {
            for (n, example) in rule.examples.iter().enumerate() {
                let Some((line, want)) = &example.decision else {
                    continue;
                };
                // A name that is no decision was reported with the file's errors.
                if decision.index(want).is_none() {
                    continue;
                }
                let Ok(row) = example_row(example, &columns, &set) else {
                    continue;
                };
                let hash = random_key_hash(&row.id);
                let outcomes: Vec<Outcome> = evaluators
                    .iter_mut()
                    .flatten()
                    .map(|e| e.evaluate(0, &row, hash))
                    .collect();
                let scores: Vec<i64> = set.rules.iter().map(|r| r.score).collect();
                let score = decision.score(&scores, &outcomes);
                let got = decision.names()[decision.decide(score)];
                if got != want {
                    problems.push(RulesError {
                        line: Some(*line),
                        rule: Some(rule.label()),
                        message: format!(
                            "example {}: expected decision {want}, got {got} (score {score})",
                            n + 1
                        ),
                        undefined_variable: None,
                    });
                }
            }
        }
    }
    // Every `{name}` of a reason must be a variable of the input: bound as `run` binds them.
    if let Err(errors) = crate::format::rule_details(&set, &columns, false) {
        problems.extend(errors);
    }
    let mut sampled = 0;
    let sample_of = input.as_ref().map(|input| input.name().to_string());
    if let (Some(input), Some(name)) = (input, &sample_of) {
        let first = if set.derived.windows.is_empty() {
            input.first_rows(SAMPLE_ROWS)
        } else {
            crate::pipeline::windows::first_rows(input, &set, SAMPLE_ROWS, args.seed)
        };
        // A `where` that does not compile against the input's columns is an error of the
        // rules file, said with the others (once: its syntax errors are said already).
        match first.map_err(|e| e.downcast::<crate::pipeline::windows::FilterErrors>()) {
            Ok((rows, bad)) => {
                sampled = sample_input(name, &rows, &bad, &set, &mut evaluators, &mut problems);
            }
            Err(Ok(filters)) => {
                for error in filters.0 {
                    let said = error.to_string();
                    if !problems.iter().any(|p| p.to_string() == said) {
                        problems.push(error);
                    }
                }
            }
            Err(Err(e)) => return Err(e),
        }
    }
    if !problems.is_empty() {
        // In file order: a file's problems read top to bottom.
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        return Err(fail(problems).into());
    }
    let sample = match &sample_of {
        Some(name) => format!("; {sampled} rows of {name} evaluate"),
        None => String::new(),
    };
    exit::say(&format!(
        "{}: {} rules compile; {examples} examples pass{sample}",
        crate::output::paths::show(&args.rules),
        set.rules.len()
    ));
    for line in coverage(&set) {
        exit::say(&line);
    }
    Ok(exit::SUCCESS)
}

/// Example coverage: the rules with no example expecting `true`, and those with none
/// expecting `false` (one line each, none when every rule has both).
fn coverage(set: &RuleSet) -> Vec<String> {
    let lacking = |kind: Kind| -> Vec<String> {
        set.rules
            .iter()
            .filter(|r| !r.examples.iter().any(|e| e.expect == Some(kind)))
            .map(|r| format!("{} {:?}", r.id, r.name))
            .collect()
    };
    let mut lines = Vec::new();
    for kind in [Kind::True, Kind::False] {
        let rules = lacking(kind);
        if !rules.is_empty() {
            lines.push(format!(
                "coverage: {} of {} rules have no example expecting {}: {}",
                rules.len(),
                set.rules.len(),
                kind.as_str(),
                rules.join(", ")
            ));
        }
    }
    lines
}

/// A rule set of `rule` alone (with the file's columns and limits).
fn only(set: &RuleSet, rule: &Rule) -> RuleSet {
    RuleSet {
        columns: set.columns.clone(),
        nullable: set.nullable.clone(),
        rules: vec![rule.clone()],
        memory_limit: set.memory_limit,
        decision: None,
        derived: set.derived.clone(),
    }
}

/// Evaluates every compiled rule on the first `SAMPLE_ROWS` rows of the input; each rule
/// that gives `error` or `timeout` is one problem (how many, and the first). A bad row is
/// a problem too. Returns the rows evaluated.
fn sample_input(
    name: &str,
    rows: &[Row],
    bad: &[BadRow],
    set: &RuleSet,
    evaluators: &mut [Option<Evaluator>],
    problems: &mut Vec<RulesError>,
) -> usize {
    for bad in bad {
        problems.push(RulesError::file(format!(
            "{name}:{}: {}",
            bad.line, bad.reason
        )));
    }
    for (rule, evaluator) in set.rules.iter().zip(evaluators) {
        let Some(evaluator) = evaluator.as_mut() else {
            continue;
        };
        let mut failed = 0;
        let mut first = None;
        for row in rows {
            let got = evaluator.evaluate(0, row, random_key_hash(&row.id));
            if matches!(got.kind(), Kind::Error | Kind::Timeout) {
                failed += 1;
                first.get_or_insert_with(|| format!("id {}: {}", row.id, describe(&got)));
            }
        }
        if let Some(first) = first {
            problems.push(RulesError {
                line: Some(rule.line),
                rule: Some(rule.label()),
                message: format!(
                    "{failed} of the first {} rows of {name} give error or timeout (first: {first})",
                    rows.len(),
                ),
                undefined_variable: None,
            });
        }
    }
    rows.len()
}

/// The columns the rules may read without an input at hand: the declared ones, those the
/// examples name, and any other variable the rules read (it must then be a string column
/// of the input; `run` checks that against the real header). Only rules whose syntax is
/// right (`syntax_ok`) are looked at.
fn columns_of(set: &RuleSet, syntax_ok: &[bool]) -> Columns {
    let mut columns = declared_columns(set);
    let mut add = |name: &str, kind: ColumnType| {
        if columns.index(name).is_none() {
            columns.names.push(name.to_string());
            columns.types.push(kind);
        }
    };
    // Windows are variables of their own type; examples give their values.
    for w in &set.derived.windows {
        add(&w.name, set.derived.window_type(w, &set.columns));
    }
    for rule in &set.rules {
        for example in &rule.examples {
            for (key, value) in &example.row {
                if set.derived.lists.iter().any(|l| &l.name == key) {
                    continue;
                }
                // An undeclared column takes the type its example value has.
                let kind = set.columns.get(key).copied().unwrap_or(match value {
                    toml::Value::Integer(_) => ColumnType::Int,
                    toml::Value::Float(_) => ColumnType::Float,
                    toml::Value::Boolean(_) => ColumnType::Bool,
                    _ => ColumnType::String,
                });
                add(key, kind);
            }
        }
    }
    let compiled = RuleSet {
        columns: set.columns.clone(),
        nullable: set.nullable.clone(),
        rules: set
            .rules
            .iter()
            .zip(syntax_ok)
            .filter(|(_, ok)| **ok)
            .map(|(rule, _)| rule.clone())
            .collect(),
        memory_limit: set.memory_limit,
        decision: None,
        derived: set.derived.clone(),
    };
    // A reason's variables are columns too (taken for strings when undeclared).
    for rule in &set.rules {
        for name in rule.reason.iter().flat_map(|t| t.variables()) {
            add(name, set.column_type(name));
        }
    }
    compile_with_unknowns_as_strings(&compiled, &mut columns, |_| false);
    columns
}

/// The declared columns (`[columns]`), by name.
fn declared_columns(set: &RuleSet) -> Columns {
    let mut declared: Vec<_> = set.columns.iter().collect();
    declared.sort_by_key(|(name, _)| *name);
    Columns {
        names: declared.iter().map(|(name, _)| (*name).clone()).collect(),
        types: declared.iter().map(|(_, kind)| **kind).collect(),
    }
}

/// Compiles `set` against `columns` until no new variable is unknown, adding each unknown
/// one that is not `reserved` as a string column (what an undeclared column of the input
/// is); returns the last compile's errors, none when it compiled. Rhai reports one unknown
/// variable per rule and compile, and several rules may report the same one: only a round
/// that adds nothing ends the search (each round adds at least one column, and the rules
/// name finitely many).
fn compile_with_unknowns_as_strings(
    set: &RuleSet,
    columns: &mut Columns,
    reserved: impl Fn(&str) -> bool,
) -> Vec<RulesError> {
    loop {
        let Err(errors) = Evaluator::new(set, columns, 0) else {
            return Vec::new();
        };
        let mut added = false;
        for name in errors
            .iter()
            .filter_map(|e| e.undefined_variable.as_deref())
        {
            if !reserved(name) && columns.index(name).is_none() {
                columns.names.push(name.to_string());
                columns.types.push(ColumnType::String);
                added = true;
            }
        }
        if !added {
            return errors;
        }
    }
}

/// The row an example describes, typed like the input would be: an empty string in a
/// column declared with a `?` is `()`, as an empty field of the input is.
fn example_row(example: &Example, columns: &Columns, set: &RuleSet) -> Result<Row, String> {
    let mut values = Vec::with_capacity(columns.names.len());
    for (name, kind) in columns.names.iter().zip(&columns.types) {
        let value = match example.row.get(name) {
            None => Dynamic::UNIT,
            Some(toml::Value::String(s)) if s.is_empty() && set.is_nullable(name) => Dynamic::UNIT,
            Some(v) => typed(v, *kind)
                .ok_or_else(|| format!("column {name:?}: {v} is not of type {}", kind.name()))?,
        };
        values.push(value);
    }
    let id = match example.row.get("id") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    Ok(Row { id, values })
}

pub(crate) fn typed(value: &toml::Value, kind: ColumnType) -> Option<Dynamic> {
    use toml::Value as V;
    Some(match (kind, value) {
        (ColumnType::Int, V::Integer(i)) => Dynamic::from_int(*i),
        (ColumnType::Float, V::Float(f)) => Dynamic::from_float(*f),
        (ColumnType::Float, V::Integer(i)) => Dynamic::from_float(*i as f64),
        (ColumnType::Bool, V::Boolean(b)) => Dynamic::from_bool(*b),
        (ColumnType::String, V::String(s)) => Dynamic::from(s.clone()),
        (ColumnType::String, V::Integer(i)) => Dynamic::from(i.to_string()),
        (ColumnType::String, V::Float(f)) => Dynamic::from(f.to_string()),
        (ColumnType::String, V::Boolean(b)) => Dynamic::from(b.to_string()),
        _ => return None,
    })
}

fn describe(got: &Outcome) -> String {
    let mut detail = String::new();
    got.write_detail(&mut detail);
    if detail.is_empty() {
        got.kind().as_str().to_string()
    } else {
        format!("{} ({detail})", got.kind().as_str())
    }
}

/// Reads and checks every list of `set` (relative to `rules_path`), binding each one that
/// loads; one that does not is a problem, and is bound empty so that checking goes on.
fn check_lists(set: &mut RuleSet, rules_path: &std::path::Path) -> Vec<RulesError> {
    let mut problems = Vec::new();
    let mut loaded = Vec::with_capacity(set.derived.lists.len());
    for decl in &set.derived.lists {
        let path = crate::lists::path_of(decl, rules_path);
        // Each file parsed once, here, and the lists bound as parsed: parsing them again
        // to bind them doubled the time `check` took on a list of a million keys.
        let parsed = match crate::lists::read_capped(&path) {
            Ok(bytes) => crate::lists::parse(decl, &path.display().to_string(), &bytes)
                .map_err(|errors| problems.extend(errors.into_iter().map(rules::list_error))),
            Err(e) => {
                problems.push(rules::list_error(crate::lists::ListError {
                    list: decl.name.clone(),
                    decl_line: decl.line,
                    message: format!("cannot read {}: {e}", path.display()),
                }));
                Err(())
            }
        };
        let list = parsed.or_else(|()| {
            // A list that failed is bound empty (a header-only stand-in), so that the rules
            // and examples are still checked.
            let mut header = Vec::new();
            let names = std::iter::once(&decl.key).chain(decl.value.as_ref());
            crate::format::record(&mut header, names.map(|n| n.as_bytes()));
            header.push(b'\n');
            crate::lists::parse(decl, &decl.file, &header)
                .map_err(|errors| problems.extend(errors.into_iter().map(rules::list_error)))
        });
        match list {
            Ok(list) => loaded.push(std::sync::Arc::new(list)),
            Err(()) => return problems,
        }
    }
    rules::install_lists(set, loaded);
    problems
}

/// Every window's `where`, compiled for syntax, then as the run compiles it: with the
/// lists but no window (a `where` runs before the windows have values). A variable that is
/// neither declared nor a window is taken for a string column, as in the rules.
fn check_window_filters(set: &RuleSet) -> Vec<RulesError> {
    let rules = crate::rules::lists_windows::filter_rules(&set.derived.windows, set.max_timeout());
    let said = |errors: Vec<RulesError>| -> Vec<RulesError> {
        errors
            .into_iter()
            .map(|e| crate::rules::lists_windows::filter_error(e, &rules))
            .collect()
    };
    let filters = RuleSet {
        rules: rules.clone(),
        ..set.clone()
    };
    let syntax = engine::check_syntax(&filters);
    if !syntax.is_empty() || rules.is_empty() {
        return said(syntax);
    }
    let mut derived = (*set.derived).clone();
    derived.windows.clear();
    let filters = RuleSet {
        derived: std::sync::Arc::new(derived),
        ..filters
    };
    // A window's name is no column: the `where` that reads one is an error.
    let mut columns = declared_columns(set);
    said(compile_with_unknowns_as_strings(
        &filters,
        &mut columns,
        |name| set.derived.names(name),
    ))
}

/// For an example that gives some lists' contents (`row = { blocked = ["IR"] }`): an
/// evaluator of `rule` with those lists instead of the files'; `None` when it gives none.
fn example_lists(
    set: &RuleSet,
    rule: &Rule,
    example: &Example,
    columns: &Columns,
    seed: u64,
) -> Result<Option<Evaluator>, String> {
    let mut derived = (*set.derived).clone();
    let mut given = false;
    for (i, decl) in set.derived.lists.iter().enumerate() {
        if let Some(value) = example.row.get(&decl.name) {
            let list = crate::lists::List::from_toml(decl, value)?;
            derived.loaded[i] = std::sync::Arc::new(list);
            given = true;
        }
    }
    if !given {
        return Ok(None);
    }
    let mut own = only(set, rule);
    own.derived = std::sync::Arc::new(derived);
    Evaluator::new(&own, columns, seed)
        .map(Some)
        .map_err(|errors| rules::one_line(&errors))
}
