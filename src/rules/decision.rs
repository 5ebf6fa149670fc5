//! The analyst's additions to a rules file: a rule's `score` and `reason` (a template
//! over the row's variables), the file's `[decision]` table (score thresholds), and an
//! example's `decision`. Parsed here, apart from `file`, which only holds the raw fields.
//!
//! ```toml
//! [decision]
//! thresholds = { review = 50, block = 100 }   # highest threshold reached wins; else "pass"
//! error_score = 0                             # added for an `error` result
//! timeout_score = 0                           # added for a `timeout` result
//! ```

use std::fmt;

use rhai::Dynamic;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use crate::model::{Columns, Outcome, is_identifier};

/// The decision of a transaction whose score reaches no threshold.
pub const PASS: &str = "pass";

/// The result kinds: no decision may take their names (`--fail-on` names both).
const RESULTS: [&str; 4] = ["true", "false", "error", "timeout"];

/// `[decision]` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecision {
    thresholds: Spanned<Thresholds>,
    error_score: Option<i64>,
    timeout_score: Option<i64>,
}

/// `thresholds = { review = 50, block = 100 }`, in the order written (a TOML table would
/// sort its keys, and "values increasing" is about the order the analyst wrote).
#[derive(Debug)]
struct Thresholds(Vec<(Spanned<String>, Spanned<toml::Value>)>);

impl<'de> Deserialize<'de> for Thresholds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Thresholds, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Thresholds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a table of decision names and scores, e.g. { review = 50, block = 100 }",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Thresholds, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Thresholds(entries))
            }
        }
        d.deserialize_map(Ordered)
    }
}

/// A checked `[decision]`: thresholds in increasing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// (name, score reached), increasing scores.
    pub thresholds: Vec<(String, i64)>,
    pub error_score: i64,
    pub timeout_score: i64,
}

impl Decision {
    /// Every decision name: `pass`, then the thresholds'.
    pub fn names(&self) -> Vec<&str> {
        std::iter::once(PASS)
            .chain(self.thresholds.iter().map(|(n, _)| n.as_str()))
            .collect()
    }

    /// Index (into `names`) of the decision for `score`: the highest threshold reached.
    pub fn decide(&self, score: i64) -> usize {
        self.thresholds
            .iter()
            .rposition(|(_, at)| score >= *at)
            .map_or(0, |i| i + 1)
    }

    /// The index of a decision name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names().iter().position(|n| *n == name)
    }

    /// What `outcome` of a rule scoring `score` adds to its transaction's score.
    pub fn points(&self, score: i64, outcome: &Outcome) -> i64 {
        match outcome {
            Outcome::True => score,
            Outcome::False => 0,
            Outcome::Error(_) => self.error_score,
            Outcome::Timeout(_) => self.timeout_score,
        }
    }

    /// A transaction's score: the sum over its rules (saturating).
    pub fn score(&self, scores: &[i64], outcomes: &[Outcome]) -> i64 {
        scores
            .iter()
            .zip(outcomes)
            .fold(0i64, |sum, (s, o)| sum.saturating_add(self.points(*s, o)))
    }
}

/// Checks `[decision]`; `line` maps a byte offset of the file to its line. Problems are
/// (line, message).
pub(super) fn check(
    raw: Spanned<RawDecision>,
    line: &dyn Fn(usize) -> usize,
) -> (Decision, Vec<(usize, String)>) {
    let mut problems = Vec::new();
    let raw = raw.into_inner();
    let at = line(raw.thresholds.span().start);
    let mut thresholds: Vec<(String, i64)> = Vec::new();
    for (name, value) in raw.thresholds.into_inner().0 {
        let n = name.get_ref();
        let here = line(name.span().start);
        let Some(score) = value.get_ref().as_integer() else {
            problems.push((
                line(value.span().start),
                format!(
                    "[decision] threshold {n:?} = {}: expected an integer score",
                    value.get_ref()
                ),
            ));
            continue;
        };
        let problems_before = problems.len();
        if !is_identifier(n) {
            problems.push((
                here,
                format!(
                    "[decision] threshold {n:?}: a decision name is a word ([A-Za-z_][A-Za-z0-9_]*)"
                ),
            ));
        } else if n == PASS {
            problems.push((
                here,
                format!(
                    "[decision] threshold {n:?}: \"pass\" is the decision below every threshold"
                ),
            ));
        } else if RESULTS.contains(&n.as_str()) {
            problems.push((
                here,
                format!(
                    "[decision] threshold {n:?}: true, false, error and timeout are results, not decisions (`--fail-on {n}` could not tell them apart)"
                ),
            ));
        } else if thresholds.iter().any(|(m, _)| m == n) {
            problems.push((here, format!("[decision] threshold {n:?} is named twice")));
        } else if let Some((prev, at)) = thresholds.last()
            && score <= *at
        {
            problems.push((
                line(value.span().start),
                format!(
                    "[decision] threshold {n:?} = {score} must be above the one before it ({prev:?} = {at}): thresholds increase in the order written"
                ),
            ));
        }
        // Only a valid threshold is kept: the names listed in messages are the real ones.
        if problems.len() == problems_before {
            thresholds.push((n.clone(), score));
        }
    }
    if thresholds.is_empty() && problems.is_empty() {
        problems.push((
            at,
            "[decision] thresholds: at least one threshold is needed".into(),
        ));
    }
    let decision = Decision {
        thresholds,
        error_score: raw.error_score.unwrap_or(0),
        timeout_score: raw.timeout_score.unwrap_or(0),
    };
    (decision, problems)
}

/// Checks every example's `decision`: the file must have `[decision]`, and the name must
/// be one of its decisions.
pub(super) fn check_examples(
    rules: &[super::Rule],
    decision: Option<&Decision>,
) -> Vec<super::RulesError> {
    let mut errors = Vec::new();
    for rule in rules {
        for (n, ex) in rule.examples.iter().enumerate() {
            let Some((line, name)) = &ex.decision else {
                continue;
            };
            let message = match decision {
                None => format!(
                    "example {}: decision = {name:?}, but the file has no [decision] table",
                    n + 1
                ),
                Some(d) if d.index(name).is_none() => format!(
                    "example {}: decision = {name:?} is not a decision (decisions: {})",
                    n + 1,
                    d.names().join(", ")
                ),
                Some(_) => continue,
            };
            errors.push(super::RulesError {
                line: Some(*line),
                rule: Some(rule.label()),
                message,
                undefined_variable: None,
            });
        }
    }
    errors
}

/// A `reason` template: text with `{name}` holes filled with the row's variables when
/// the rule fires; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

impl Template {
    /// Parses a template; the error says what is wrong and at which character (1-based).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!(
                            "character {}: `{{` is never closed (write `{{{{` for a brace)",
                            text[..i].chars().count() + 1
                        ));
                    };
                    let name = &rest[..end];
                    if !is_identifier(name) {
                        return Err(format!(
                            "character {}: {{{name}}} does not name a variable (write `{{{{` for a brace)",
                            text[..i].chars().count() + 1
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(name.to_string()));
                    while chars.peek().is_some_and(|p| p.0 <= i + 1 + end) {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(format!(
                        "character {}: `}}` without `{{` (write `}}}}` for a brace)",
                        text[..i].chars().count() + 1
                    ));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The variables the template names, in order, once each.
    pub fn variables(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Var(n) = p
                && !names.contains(&n.as_str())
            {
                names.push(n);
            }
        }
        names
    }

    /// Binds every variable to its column; the error names the first that is none.
    pub fn resolve(&self, columns: &Columns) -> Result<Resolved, String> {
        let parts = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => Ok(Piece::Text(t.clone())),
                Part::Var(n) => columns.index(n).map(Piece::Value).ok_or_else(|| {
                    format!(
                        "reason: {{{n}}} is not a variable of the input (columns: {})",
                        columns.names.join(", ")
                    )
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Resolved { parts })
    }
}

/// A template bound to the row's value positions.
#[derive(Debug, Clone)]
pub struct Resolved {
    parts: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Value(usize),
}

impl Resolved {
    /// Appends the template filled with `values` (strings as they are, numbers and
    /// bools as Rhai prints them). Stops once `out` holds more than `limit` bytes: a
    /// detail is cut there anyway, and a field may be megabytes long.
    pub fn render(&self, values: &[Dynamic], out: &mut String, limit: usize) {
        use std::fmt::Write;
        for p in &self.parts {
            if out.len() > limit {
                return;
            }
            match p {
                Piece::Text(t) => push_capped(out, t, limit),
                Piece::Value(i) => match values.get(*i) {
                    Some(v) if v.is_string() => {
                        if let Ok(s) = v.clone().into_immutable_string() {
                            push_capped(out, &s, limit);
                        }
                    }
                    Some(v) => {
                        let _ = write!(out, "{v}");
                    }
                    None => {}
                },
            }
        }
    }
}

/// Appends `text`, or as much of it as takes `out` just past `limit` bytes (whole
/// characters).
fn push_capped(out: &mut String, text: &str, limit: usize) {
    let room = limit.saturating_sub(out.len()) + 1;
    if text.len() <= room {
        out.push_str(text);
    } else {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push_str(&text[..end]);
    }
}

/// Appends `name=value` for `--explain`: strings quoted and escaped (`country="IR"`),
/// numbers and bools as Rhai prints them (`amount=25000.0`, `n=12`).
pub fn explain_value(name: &str, value: &Dynamic, out: &mut String) {
    use std::fmt::Write;
    out.push_str(name);
    out.push('=');
    if value.is_string() {
        if let Ok(s) = value.clone().into_immutable_string() {
            // A detail holds at most `DETAIL_MAX_BYTES`: no need to escape more.
            let mut end = s.len().min(crate::model::DETAIL_MAX_BYTES + 1);
            while !s.is_char_boundary(end) {
                end += 1;
            }
            let _ = write!(out, "{:?}", &s[..end]);
        }
    } else if value.is_unit() {
        out.push_str("()");
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ColumnType;

    #[test]
    fn templates_fill_holes_and_keep_escaped_braces() {
        let t = Template::parse("{amount} in {{1h}} from {country}").unwrap();
        assert_eq!(t.variables(), ["amount", "country"]);
        let columns = Columns {
            names: vec!["id".into(), "amount".into(), "country".into()],
            types: vec![ColumnType::Int, ColumnType::Float, ColumnType::String],
        };
        let r = t.resolve(&columns).unwrap();
        let mut out = String::new();
        r.render(
            &[
                Dynamic::from_int(1),
                Dynamic::from_float(9500.0),
                Dynamic::from("IR".to_string()),
            ],
            &mut out,
            1024,
        );
        assert_eq!(out, "9500.0 in {1h} from IR");
        let mut out = String::new();
        let long = Dynamic::from("é".repeat(100_000));
        let t = Template::parse("{country}!")
            .unwrap()
            .resolve(&columns)
            .unwrap();
        t.render(&[Dynamic::UNIT, Dynamic::UNIT, long], &mut out, 1024);
        assert!(out.len() <= 1026 && out.len() > 1024, "{}", out.len());
        assert_eq!(
            Template::parse("x {amount").unwrap_err(),
            "character 3: `{` is never closed (write `{{` for a brace)"
        );
        assert_eq!(
            Template::parse("{a b}").unwrap_err(),
            "character 1: {a b} does not name a variable (write `{{` for a brace)"
        );
        assert!(Template::parse("a } b").is_err());
        assert!(Template::parse("{}").is_err());
        assert_eq!(
            Template::parse("{nope}")
                .unwrap()
                .resolve(&columns)
                .unwrap_err(),
            "reason: {nope} is not a variable of the input (columns: id, amount, country)"
        );
    }

    #[test]
    fn the_highest_threshold_reached_wins() {
        let d = Decision {
            thresholds: vec![("review".into(), 50), ("block".into(), 100)],
            error_score: 5,
            timeout_score: 7,
        };
        assert_eq!(d.decide(-3), 0);
        assert_eq!(d.decide(49), 0);
        assert_eq!(d.decide(50), 1);
        assert_eq!(d.decide(100), 2);
        assert_eq!(d.names(), ["pass", "review", "block"]);
        let outcomes = [
            Outcome::True,
            Outcome::Error("x".into()),
            Outcome::Timeout(std::time::Duration::from_secs(1)),
            Outcome::False,
        ];
        assert_eq!(d.score(&[40, 40, 40, 40], &outcomes), 52);
    }

    #[test]
    fn explained_values_are_quoted_strings_and_plain_numbers() {
        let mut s = String::new();
        explain_value("country", &Dynamic::from("I\"R".to_string()), &mut s);
        s.push(' ');
        explain_value("amount", &Dynamic::from_float(25000.0), &mut s);
        s.push(' ');
        explain_value("n", &Dynamic::from_int(12), &mut s);
        assert_eq!(s, "country=\"I\\\"R\" amount=25000.0 n=12");
    }
}
