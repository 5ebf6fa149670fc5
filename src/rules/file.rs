//! The rules file (TOML): parsed with serde, then checked into a `RuleSet` whose every
//! error names the file, the line and, for a rule, its id.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Example, Rule, RuleSet};
use crate::duration::parse_duration;
use crate::model::{ColumnType, Kind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    columns: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    decision: Option<Spanned<super::decision::RawDecision>>,
    #[serde(default)]
    lists: super::lists_windows::RawLists,
    #[serde(default)]
    windows: super::lists_windows::RawWindows,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    timeout: Option<Spanned<String>>,
    memory_limit: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<i64>,
    name: Spanned<String>,
    when: Spanned<String>,
    timeout: Option<Spanned<String>>,
    score: Option<Spanned<i64>>,
    reason: Option<Spanned<String>>,
    #[serde(default)]
    example: Vec<Spanned<RawExample>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExample {
    row: toml::Table,
    expect: Option<Spanned<toml::Value>>,
    decision: Option<Spanned<String>>,
}

/// One problem in a rules file, located for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    /// 1-based line in the rules file, when known.
    pub line: Option<usize>,
    /// The rule concerned, as `rule 3 "name"`, when there is one.
    pub rule: Option<String>,
    pub message: String,
    /// For a script reading a variable that does not exist: its name.
    pub undefined_variable: Option<String>,
}

impl RulesError {
    /// A problem with the file as a whole (it cannot be read, it is not text).
    pub fn file(message: String) -> RulesError {
        RulesError {
            line: None,
            rule: None,
            message,
            undefined_variable: None,
        }
    }
}

/// An example's `expect`: a bool, or one of the result words.
fn expected_kind(value: &toml::Value) -> Option<Kind> {
    match value {
        toml::Value::Boolean(true) => Some(Kind::True),
        toml::Value::Boolean(false) => Some(Kind::False),
        toml::Value::String(s) => Kind::parse(s),
        _ => None,
    }
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, "{rule}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Several problems on one line, for messages that are not the file's own report (a
/// worker, a lane: the main thread has already reported the file).
pub fn one_line(errors: &[RulesError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every problem found in one rules file; displayed one per line, prefixed by the path.
#[derive(Debug)]
pub struct RulesErrors {
    pub path: PathBuf,
    pub errors: Vec<RulesError>,
}

impl fmt::Display for RulesErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{} has {n} error{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {}:", self.path.display())?;
            if let Some(line) = e.line {
                write!(f, "{line}:")?;
            }
            if let Some(rule) = &e.rule {
                write!(f, " {rule}:")?;
            }
            write!(f, " {}", e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for RulesErrors {}

/// Maps byte offsets of the file to 1-based line numbers.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

/// Checks a rules file's text: TOML shape, column types, unique ids and names, timeouts,
/// examples. Scripts are compiled for syntax by the caller (`rules::load`,
/// `engine::check_syntax`), so that one report can hold every error of the file.
pub fn parse(text: &str, default_timeout: Duration) -> Result<RuleSet, Vec<RulesError>> {
    match parse_lenient(text, default_timeout) {
        (Some(set), errors) if errors.is_empty() => Ok(set),
        (_, errors) => Err(errors),
    }
}

/// `parse`, but the rules are kept despite errors, as far as the TOML could be read (a
/// rule with a bad timeout gets the default one): `txguard check` goes on to compile them
/// and run their examples, to report every problem of the file in one pass.
pub fn parse_lenient(text: &str, default_timeout: Duration) -> (Option<RuleSet>, Vec<RulesError>) {
    let lines = Lines::new(text);
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let error = RulesError {
                line: e.span().map(|s| lines.line(s.start)),
                rule: None,
                message: e.message().trim_end().to_string(),
                undefined_variable: None,
            };
            return (None, vec![error]);
        }
    };
    let mut errors = Vec::new();

    let mut columns = HashMap::new();
    let mut nullable = std::collections::BTreeSet::new();
    for (name, kind) in &raw.columns {
        // `"float?"`: an empty value is `()`.
        let (base, optional) = match kind.get_ref().strip_suffix('?') {
            Some(base) => (base, true),
            None => (kind.get_ref().as_str(), false),
        };
        match ColumnType::parse(base) {
            Some(t) => {
                columns.insert(name.get_ref().clone(), t);
                if optional {
                    nullable.insert(name.get_ref().clone());
                }
            }
            None => errors.push(RulesError {
                line: Some(lines.line(kind.span().start)),
                rule: None,
                message: format!(
                    "column {:?}: unknown type {:?} (expected \"int\", \"float\", \"bool\" or \"string\"; \"float?\" allows empty values)",
                    name.get_ref(),
                    kind.get_ref()
                ),
                undefined_variable: None,
            }),
        }
    }

    let default_timeout = match &raw.defaults.timeout {
        Some(t) => match parse_duration(t.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                errors.push(RulesError {
                    line: Some(lines.line(t.span().start)),
                    rule: None,
                    message: format!("[defaults] timeout {:?}: {e}", t.get_ref()),
                    undefined_variable: None,
                });
                default_timeout
            }
        },
        None => default_timeout,
    };

    let memory_limit = raw.defaults.memory_limit.as_ref().and_then(|m| {
        crate::budget::parse_size(m.get_ref())
            .map_err(|e| {
                errors.push(RulesError {
                    line: Some(lines.line(m.span().start)),
                    rule: None,
                    message: format!("[defaults] memory_limit {:?}: {e}", m.get_ref()),
                    undefined_variable: None,
                })
            })
            .ok()
    });

    if raw.rule.is_empty() {
        errors.push(RulesError {
            line: None,
            rule: None,
            message: "no [[rule]] defined".into(),
            undefined_variable: None,
        });
    }

    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut seen_ids: HashMap<i64, usize> = HashMap::new();
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    for spanned in raw.rule {
        let rule_line = lines.line(spanned.span().start);
        let raw = spanned.into_inner();
        let id = *raw.id.get_ref();
        let name = raw.name.get_ref().clone();
        let label = format!("rule {id} {name:?}");
        let err = |line: usize, message: String| RulesError {
            line: Some(line),
            rule: Some(label.clone()),
            message,
            undefined_variable: None,
        };
        if let Some(first) = seen_ids.insert(id, rule_line) {
            errors.push(err(
                lines.line(raw.id.span().start),
                format!("duplicate id {id} (first used on line {first})"),
            ));
        }
        if name.trim().is_empty() {
            errors.push(err(lines.line(raw.name.span().start), "empty name".into()));
        } else if let Some(first) = seen_names.insert(name.clone(), rule_line) {
            errors.push(err(
                lines.line(raw.name.span().start),
                format!("duplicate name (first used on line {first})"),
            ));
        }
        let timeout = match &raw.timeout {
            Some(t) => parse_duration(t.get_ref()).unwrap_or_else(|e| {
                errors.push(err(
                    lines.line(t.span().start),
                    format!("timeout {:?}: {e}", t.get_ref()),
                ));
                default_timeout
            }),
            None => default_timeout,
        };
        let mut examples = Vec::new();
        for (n, ex) in raw.example.into_iter().enumerate() {
            let line = lines.line(ex.span().start);
            let ex = ex.into_inner();
            let expect = match &ex.expect {
                None => None,
                Some(expect) => match expected_kind(expect.get_ref()) {
                    Some(kind) => Some(kind),
                    None => {
                        errors.push(err(
                            lines.line(expect.span().start),
                            format!(
                                "example {}: expect = {} (expected true, false, \"error\" or \"timeout\")",
                                n + 1,
                                expect.get_ref()
                            ),
                        ));
                        continue;
                    }
                },
            };
            if expect.is_none() && ex.decision.is_none() {
                errors.push(err(
                    line,
                    format!("example {}: expect or decision is needed", n + 1),
                ));
                continue;
            }
            examples.push(Example {
                line,
                row: ex.row,
                expect,
                decision: ex
                    .decision
                    .map(|d| (lines.line(d.span().start), d.into_inner())),
            });
        }
        let reason = raw.reason.as_ref().and_then(|r| {
            super::decision::Template::parse(r.get_ref())
                .map_err(|e| errors.push(err(lines.line(r.span().start), format!("reason: {e}"))))
                .ok()
        });
        rules.push(Rule {
            id,
            name,
            script: raw.when.get_ref().clone(),
            line: lines.line(raw.when.span().start),
            timeout,
            examples,
            score: raw.score.map_or(0, Spanned::into_inner),
            reason,
            reason_line: lines.line(
                raw.reason
                    .as_ref()
                    .map_or(raw.when.span().start, |r| r.span().start),
            ),
        });
    }

    let decision = raw.decision.map(|d| {
        let (decision, problems) = super::decision::check(d, &|offset| lines.line(offset));
        errors.extend(problems.into_iter().map(|(line, message)| RulesError {
            line: Some(line),
            rule: None,
            message,
            undefined_variable: None,
        }));
        decision
    });
    errors.extend(super::decision::check_examples(&rules, decision.as_ref()));

    let derived = super::lists_windows::parse(
        raw.lists,
        raw.windows,
        &columns,
        &|offset| lines.line(offset),
        &mut errors,
    );
    let set = RuleSet {
        columns,
        nullable,
        rules,
        memory_limit,
        decision,
        derived: std::sync::Arc::new(derived),
    };
    (Some(set), errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_well_formed_file_parses_with_defaults_applied() {
        let text = r#"
[columns]
id = "int"
amount = "float"

[defaults]
timeout = "250ms"

[[rule]]
id = 1
name = "big"
when = "amount > 10000.0"

[[rule]]
id = 2
name = "slow"
when = "true"
timeout = "2s"

[[rule.example]]
row = { id = 7, amount = 25000.0 }
expect = "timeout"
"#;
        let set = parse(text, SECOND).unwrap();
        assert_eq!(set.columns["amount"], ColumnType::Float);
        assert_eq!(set.rules.len(), 2);
        assert_eq!(set.rules[0].timeout, Duration::from_millis(250));
        assert_eq!(set.rules[1].timeout, Duration::from_secs(2));
        assert_eq!(set.rules[0].line, 12);
        assert_eq!(set.rules[1].examples[0].expect, Some(Kind::Timeout));
    }

    #[test]
    fn every_error_of_a_file_is_reported_at_once_with_its_line() {
        let text = r#"
[columns]
amount = "decimal"

[[rule]]
id = 1
name = "a"
when = "true"
timeout = "soon"

[[rule]]
id = 1
name = "a"
when = "true"
"#;
        let errors = parse(text, SECOND).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "line 3: column \"amount\": unknown type \"decimal\" (expected \"int\", \"float\", \"bool\" or \"string\"; \"float?\" allows empty values)",
                "line 9: rule 1 \"a\": timeout \"soon\": expected number at 0 (expected e.g. 250ms, 3s, 1m)",
                "line 12: rule 1 \"a\": duplicate id 1 (first used on line 5)",
                "line 13: rule 1 \"a\": duplicate name (first used on line 5)",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_toml_name_the_line() {
        let errors = parse(
            "[[rule]]\nid = 1\nname = \"a\"\nwhen = \"true\"\nwhen_not = 1\n",
            SECOND,
        )
        .unwrap_err();
        assert_eq!(errors[0].line, Some(5));
        assert!(
            errors[0].message.contains("unknown field `when_not`"),
            "{}",
            errors[0].message
        );
        let errors = parse("[[rule]\n", SECOND).unwrap_err();
        assert_eq!(errors[0].line, Some(1));
    }
}
