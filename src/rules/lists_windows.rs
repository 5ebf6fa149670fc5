//! The rules file's `[lists.NAME]` and `[windows.NAME]` tables: parsed into declarations
//! (`ListDecl`, `WindowDecl`) that name their variable, checked for clashes with the
//! file's columns and each other. The list files are read later (`crate::lists`), the
//! windows computed by the sequential stage (`crate::pipeline::windows`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::{Rule, RulesError};
use crate::lists::List;
use crate::model::{ColumnType, is_identifier};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawList {
    file: Spanned<String>,
    key: Spanned<String>,
    value: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    key: Spanned<String>,
    time: Spanned<String>,
    span: Spanned<String>,
    function: Spanned<String>,
    of: Option<Spanned<String>>,
    #[serde(rename = "where")]
    filter: Option<Spanned<String>>,
}

pub(super) type RawLists = BTreeMap<Spanned<String>, Spanned<RawList>>;
pub(super) type RawWindows = BTreeMap<Spanned<String>, Spanned<RawWindow>>;

/// A `[lists.NAME]`: a set of keys, or (with `value`) a map from key to a typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct ListDecl {
    pub name: String,
    /// As written: relative to the rules file's folder unless absolute.
    pub file: String,
    pub key: String,
    /// The value column of a map; `None` for a set.
    pub value: Option<String>,
    /// The type of a map's values (default string).
    pub kind: ColumnType,
    /// Line of the `[lists.NAME]` header.
    pub line: usize,
}

/// What a window computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Distinct,
}

impl Function {
    fn parse(word: &str) -> Option<Function> {
        Some(match word {
            "count" => Function::Count,
            "sum" => Function::Sum,
            "min" => Function::Min,
            "max" => Function::Max,
            "avg" => Function::Avg,
            "distinct" => Function::Distinct,
            _ => return None,
        })
    }

    /// The type of the window's variable, given the type of its `of` column.
    pub fn result_type(self, of: ColumnType) -> ColumnType {
        match self {
            Function::Count | Function::Distinct => ColumnType::Int,
            Function::Sum | Function::Avg => ColumnType::Float,
            Function::Min | Function::Max => of,
        }
    }
}

/// A `[windows.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowDecl {
    pub name: String,
    pub key: String,
    pub time: String,
    /// The span, in nanoseconds (> 0).
    pub span_nanos: i64,
    pub function: Function,
    /// The aggregated column (every function but `count`).
    pub of: Option<String>,
    /// The `where` filter: a Rhai expression on the row.
    pub filter: Option<String>,
    /// Line of the `[windows.NAME]` header.
    pub line: usize,
}

/// The lists and windows of a rules file, and the lists' contents once loaded.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    pub lists: Vec<ListDecl>,
    pub windows: Vec<WindowDecl>,
    /// Per list of `lists`, its contents: empty until `crate::lists::load_all` (a rules
    /// file only parsed, as `check` does before it reads the lists, binds none).
    pub loaded: Vec<Arc<List>>,
}

impl Derived {
    /// Whether `name` is a list or a window: a variable that is no input column.
    pub fn names(&self, name: &str) -> bool {
        self.lists.iter().any(|l| l.name == name) || self.windows.iter().any(|w| w.name == name)
    }

    /// The first list a window's `where` reads (over-approximated by its words) that
    /// `other` lacks or holds with other contents. `diff` computes the windows once, with
    /// one file's lists: both files must give their filters the same lists.
    pub fn filter_list_differing(&self, other: &Derived) -> Option<&str> {
        let contents = |d: &Derived, name: &str| {
            let i = d.lists.iter().position(|l| l.name == name)?;
            d.loaded.get(i).cloned()
        };
        let filters = self.windows.iter().filter_map(|w| w.filter.as_deref());
        filters
            .flat_map(super::engine::identifiers)
            .filter(|word| self.lists.iter().any(|l| l.name == *word))
            .find(|name| match (contents(self, name), contents(other, name)) {
                (Some(a), Some(b)) => !a.same_contents(&b),
                _ => true,
            })
    }

    /// The window's variable type: `of`'s declared type for min/max.
    pub fn window_type(&self, w: &WindowDecl, columns: &HashMap<String, ColumnType>) -> ColumnType {
        let of =
            w.of.as_ref()
                .and_then(|o| columns.get(o).copied())
                .unwrap_or(ColumnType::String);
        w.function.result_type(of)
    }
}

/// Whether rules can read `name` as a variable: an identifier that is no Rhai keyword
/// (`true`, `let`, `fn`, `this`, and those Rhai reserves). Rhai's parser decides, so the
/// answer follows its keyword list.
fn is_variable_name(name: &str) -> bool {
    rhai::Engine::new_raw()
        .compile(format!("let {name} = 0; {name}"))
        .is_ok()
}

/// Checks the raw tables; `line` maps a byte offset to its line. Errors name the table.
pub(super) fn parse(
    lists: RawLists,
    windows: RawWindows,
    columns: &HashMap<String, ColumnType>,
    line: &dyn Fn(usize) -> usize,
    errors: &mut Vec<RulesError>,
) -> Derived {
    let mut derived = Derived::default();
    let mut seen: HashMap<String, (usize, &'static str)> = HashMap::new();
    let err = |at: usize, message: String| RulesError {
        line: Some(at),
        rule: None,
        message,
        undefined_variable: None,
    };
    let mut name_ok = |name: &Spanned<String>,
                       table: &'static str,
                       errors: &mut Vec<RulesError>| {
        let at = line(name.span().start);
        let n = name.get_ref();
        if !is_identifier(n) {
            errors.push(err(
                at,
                format!("[{table}.{n}]: the name must be an identifier (letters, digits, _), as rules read it as a variable"),
            ));
        } else if !is_variable_name(n) {
            errors.push(err(
                at,
                format!(
                    "[{table}.{n}]: {n:?} is a Rhai keyword: rules could not read it as a variable"
                ),
            ));
        } else if columns.contains_key(n) {
            errors.push(err(
                at,
                format!("[{table}.{n}]: the name clashes with the column {n:?} of [columns]"),
            ));
        } else if let Some((first, other)) = seen.insert(n.clone(), (at, table)) {
            errors.push(err(
                at,
                format!("[{table}.{n}]: the name clashes with [{other}.{n}] on line {first}"),
            ));
        }
    };
    // In the order of the file: BTreeMap orders by name.
    let mut lists: Vec<_> = lists.into_iter().collect();
    lists.sort_by_key(|(name, _)| name.span().start);
    for (name, raw) in lists {
        name_ok(&name, "lists", errors);
        let at = line(name.span().start);
        let n = name.into_inner();
        let raw = raw.into_inner();
        let kind = match &raw.kind {
            None => ColumnType::String,
            Some(k) => ColumnType::parse(k.get_ref()).unwrap_or_else(|| {
                errors.push(err(
                    line(k.span().start),
                    format!(
                        "[lists.{n}]: unknown type {:?} (expected \"int\", \"float\", \"bool\" or \"string\")",
                        k.get_ref()
                    ),
                ));
                ColumnType::String
            }),
        };
        if raw.value.is_none()
            && let Some(k) = &raw.kind
        {
            errors.push(err(
                line(k.span().start),
                format!("[lists.{n}]: `type` needs `value` (a set has no values)"),
            ));
        }
        if raw.file.get_ref().is_empty() {
            errors.push(err(
                line(raw.file.span().start),
                format!("[lists.{n}]: empty `file`"),
            ));
        }
        derived.lists.push(ListDecl {
            name: n,
            file: raw.file.into_inner(),
            key: raw.key.into_inner(),
            value: raw.value.map(Spanned::into_inner),
            kind,
            line: at,
        });
    }
    let mut windows: Vec<_> = windows.into_iter().collect();
    windows.sort_by_key(|(name, _)| name.span().start);
    for (name, raw) in windows {
        name_ok(&name, "windows", errors);
        let at = line(name.span().start);
        let n = name.into_inner();
        let raw = raw.into_inner();
        let function = Function::parse(raw.function.get_ref()).unwrap_or_else(|| {
            errors.push(err(
                line(raw.function.span().start),
                format!(
                    "[windows.{n}]: unknown function {:?} (expected count, sum, min, max, avg or distinct)",
                    raw.function.get_ref()
                ),
            ));
            Function::Count
        });
        // Not `parse_duration`: that is for time limits, at most a week; a window may
        // look back 30 or 90 days (any span past the times' range, 292 years, is all of it).
        let span_nanos = match humantime::parse_duration(raw.span.get_ref().trim()) {
            Ok(d) if !d.is_zero() => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Ok(_) => {
                errors.push(err(
                    line(raw.span.span().start),
                    format!(
                        "[windows.{n}]: span {:?}: a span must be more than 0",
                        raw.span.get_ref()
                    ),
                ));
                1
            }
            Err(e) => {
                errors.push(err(
                    line(raw.span.span().start),
                    format!(
                        "[windows.{n}]: span {:?}: {e} (expected e.g. 10m, 24h, 30d)",
                        raw.span.get_ref()
                    ),
                ));
                1
            }
        };
        match (&raw.of, function) {
            (Some(of), Function::Count) => errors.push(err(
                line(of.span().start),
                format!("[windows.{n}]: count takes no `of` (it counts rows; use `where` to filter them)"),
            )),
            (None, f) if f != Function::Count => errors.push(err(
                at,
                format!(
                    "[windows.{n}]: {} needs `of` (the column it aggregates)",
                    raw.function.get_ref()
                ),
            )),
            // Known from the rules file alone (an undeclared column is a string), so
            // `check` says it without an input, as the run would refuse it.
            (Some(of), Function::Sum | Function::Avg) => {
                let kind = columns.get(of.get_ref()).copied().unwrap_or(ColumnType::String);
                if !matches!(kind, ColumnType::Int | ColumnType::Float) {
                    errors.push(err(
                        line(of.span().start),
                        format!(
                            "[windows.{n}]: cannot add up column {:?} of type {}: declare it int or float in [columns]",
                            of.get_ref(),
                            kind.name()
                        ),
                    ));
                }
            }
            _ => {}
        }
        for (what, column) in [
            ("key", Some(&raw.key)),
            ("time", Some(&raw.time)),
            ("of", raw.of.as_ref()),
        ] {
            if let Some(c) = column
                && !is_identifier(c.get_ref())
            {
                errors.push(err(
                    line(c.span().start),
                    format!(
                        "[windows.{n}]: {what} {:?} is not a column name rules can read",
                        c.get_ref()
                    ),
                ));
            }
        }
        derived.windows.push(WindowDecl {
            name: n,
            key: raw.key.into_inner(),
            time: raw.time.into_inner(),
            span_nanos,
            function,
            of: raw.of.map(Spanned::into_inner),
            filter: raw.filter.map(Spanned::into_inner),
            line: at,
        });
    }
    // A window may aggregate a column, never another derived variable.
    for w in &derived.windows {
        for (what, column) in [
            ("key", Some(&w.key)),
            ("time", Some(&w.time)),
            ("of", w.of.as_ref()),
        ] {
            if let Some(c) = column
                && seen.contains_key(c)
            {
                errors.push(err(
                    w.line,
                    format!(
                        "[windows.{}]: {what} {c:?} is a list or window, not an input column",
                        w.name
                    ),
                ));
            }
        }
    }
    derived
}

/// The lists every rule may read, as the values rules get (`ListRef`): an error when they
/// were declared but never loaded (a caller that forgot `rules::attach_lists`).
pub fn bound_lists(derived: &Derived) -> Result<Vec<(String, rhai::Dynamic)>, Vec<RulesError>> {
    if derived.loaded.len() != derived.lists.len() {
        return Err(vec![RulesError::file(format!(
            "internal error: {} of {} lists loaded",
            derived.loaded.len(),
            derived.lists.len()
        ))]);
    }
    Ok(derived
        .lists
        .iter()
        .zip(&derived.loaded)
        .map(|(decl, list)| {
            (
                decl.name.clone(),
                rhai::Dynamic::from(crate::lists::ListRef(Arc::clone(list))),
            )
        })
        .collect())
}

/// The windows' `where` filters as rules an evaluator runs (a filter's id is its window's
/// index), under `timeout`: the window stage and `check` compile them alike.
pub fn filter_rules(windows: &[WindowDecl], timeout: std::time::Duration) -> Vec<Rule> {
    windows
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let script = w.filter.as_ref()?;
            Some(Rule::internal(
                i as i64,
                format!("[windows.{}] where", w.name),
                script.clone(),
                w.line,
                timeout,
            ))
        })
        .collect()
}

/// A filter's compile error said as its window's (`[windows.s] where: line 1, column 9:
/// …`), not as a rule's (`rule 0 "[windows.s] where": when: …`): it is no rule.
pub fn filter_error(mut e: RulesError, filters: &[Rule]) -> RulesError {
    if let Some(filter) = filters
        .iter()
        .find(|f| e.rule.as_deref() == Some(f.label().as_str()))
    {
        e.rule = None;
        let message = e.message.strip_prefix("when: ").unwrap_or(&e.message);
        e.message = format!("{}: {message}", filter.name);
    }
    e
}
