//! `txguard check RULES`: compile every rule, run every `[[rule.example]]`, and report
//! every problem at once (exit 1), or a one-line all-clear (exit 0).

use anyhow::Result;
use rhai::Dynamic;

use crate::cli::CheckArgs;
use crate::exit;
use crate::model::{ColumnType, Columns, Outcome, Row};
use crate::rules::{self, Evaluator, Example, RuleSet, RulesError, RulesErrors, random_key_hash};

pub fn run(args: &CheckArgs) -> Result<i32> {
    let set = rules::load(&args.rules, args.timeout)?.set;
    let columns = columns_of(&set);
    let mut evaluator =
        Evaluator::new(&set, &columns, args.seed).map_err(|errors| RulesErrors {
            path: args.rules.clone(),
            errors,
        })?;

    let mut problems = Vec::new();
    let mut examples = 0;
    for (index, rule) in set.rules.iter().enumerate() {
        for (n, example) in rule.examples.iter().enumerate() {
            examples += 1;
            let problem = |message: String| RulesError {
                line: Some(example.line),
                rule: Some(rule.label()),
                message: format!("example {}: {message}", n + 1),
                undefined_variable: None,
            };
            let row = match example_row(example, &columns) {
                Ok(row) => row,
                Err(message) => {
                    problems.push(problem(message));
                    continue;
                }
            };
            let got = evaluator.evaluate(index, &row, random_key_hash(&row.id));
            if got.kind() != example.expect {
                problems.push(problem(format!(
                    "expected {}, got {}",
                    example.expect.as_str(),
                    describe(&got)
                )));
            }
        }
    }
    if !problems.is_empty() {
        return Err(RulesErrors {
            path: args.rules.clone(),
            errors: problems,
        }
        .into());
    }
    exit::say(&format!(
        "{}: {} rules compile; {examples} examples pass",
        crate::output::paths::show(&args.rules),
        set.rules.len()
    ));
    Ok(exit::SUCCESS)
}

/// The columns the rules may read without an input at hand: the declared ones, those the
/// examples name, and any other variable the rules read (it must then be a string column
/// of the input; `run` checks that against the real header).
fn columns_of(set: &RuleSet) -> Columns {
    let mut columns = Columns {
        names: Vec::new(),
        types: Vec::new(),
    };
    let mut add = |name: &str, kind: ColumnType| {
        if columns.index(name).is_none() {
            columns.names.push(name.to_string());
            columns.types.push(kind);
        }
    };
    let mut declared: Vec<_> = set.columns.iter().collect();
    declared.sort_by_key(|(name, _)| *name);
    for (name, kind) in declared {
        add(name, *kind);
    }
    for rule in &set.rules {
        for example in &rule.examples {
            for (key, value) in &example.row {
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
    // Compile until no variable is unknown, adding each unknown one as a string column.
    loop {
        let Err(errors) = Evaluator::new(set, &columns, 0) else {
            return columns;
        };
        let unknown: Vec<String> = errors
            .iter()
            .filter_map(|e| e.undefined_variable.clone())
            .collect();
        if unknown.is_empty() {
            return columns;
        }
        for name in unknown {
            if columns.index(&name).is_some() {
                return columns;
            }
            columns.names.push(name);
            columns.types.push(ColumnType::String);
        }
    }
}

/// The row an example describes, typed like the input would be.
fn example_row(example: &Example, columns: &Columns) -> Result<Row, String> {
    let mut values = Vec::with_capacity(columns.names.len());
    for (name, kind) in columns.names.iter().zip(&columns.types) {
        let value = match example.row.get(name) {
            None => Dynamic::UNIT,
            Some(v) => typed(v, *kind)
                .ok_or_else(|| format!("column {name:?}: {v} is not a {}", kind.name()))?,
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

fn typed(value: &toml::Value, kind: ColumnType) -> Option<Dynamic> {
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
