//! The analyst's additions to the results of `run`: in `detail` of a `true` result, the
//! rule's rendered `reason` and, under `--explain`, the values it read; and each
//! transaction's decision (`[decision]`), counted and, under `--decisions`, written as
//! `transaction_id,score,decision,reasons`.

use super::{Side, field};
use crate::model::{Columns, DETAIL_MAX_BYTES, Outcome, Row};
use crate::rules::decision::{Decision, Resolved, explain_value};
use crate::rules::{RuleSet, RulesError};

/// What a rule adds to the `detail` of its `true` results: its rendered `reason`, and
/// under `--explain` the values of the variables it reads.
#[derive(Debug, Clone, Default)]
pub struct RuleDetail {
    pub reason: Option<Resolved>,
    /// (name, value position) of every variable the rule reads, in the order its script
    /// first names them; empty without `--explain`.
    pub explain: Vec<(String, usize)>,
}

impl RuleDetail {
    /// Puts the `detail` of a `true` result of the rule on `row` into `detail` (empty
    /// when the rule has neither reason nor explanation), and returns the rendered
    /// reason, when the rule has one, for the decisions' reasons.
    pub(super) fn render(&self, row: &Row, detail: &mut String) -> Option<String> {
        detail.clear();
        let mut rendered = None;
        if let Some(reason) = &self.reason {
            reason.render(&row.values, detail, DETAIL_MAX_BYTES);
            let reason = crate::model::detail(&*detail);
            detail.clear();
            detail.push_str(&reason);
            rendered = Some(reason);
            if !self.explain.is_empty() {
                detail.push_str("; ");
            }
        }
        for (i, (name, column)) in self.explain.iter().enumerate() {
            // Cut to the cap below: render no further.
            if detail.len() > DETAIL_MAX_BYTES {
                break;
            }
            if i > 0 {
                detail.push(' ');
            }
            let value = row.values.get(*column).cloned().unwrap_or_default();
            explain_value(name, &value, detail);
        }
        // The reason is one line already, and values are escaped (`explain_value`): only
        // the cap is left to apply, keeping the values' spaces as the data has them.
        crate::model::cap_detail(detail);
        rendered
    }
}

/// The decisions of a run: scores rolled up against `[decision]`.
#[derive(Debug, Clone)]
pub struct Decisions {
    pub decision: Decision,
    /// Per rule (file order): its score.
    pub scores: Vec<i64>,
    /// Per rule: what `reasons` says when it fires without a `reason` (its name).
    pub names: Vec<String>,
    /// Write `transaction_id,score,decision,reasons` lines (`--decisions`); else count only.
    pub write: bool,
}

impl Decisions {
    /// Counts a transaction's decision into `side.counters`, and writes its decisions
    /// line into `side.bytes` when asked. `id`: the transaction id as a CSV field;
    /// `rule_ids`: `,ID,` per rule; `rendered`: per rule, its rendered reason when it
    /// fired and has one; `reasons`: a buffer.
    pub(super) fn decide(
        &self,
        id: &[u8],
        rule_ids: &[Vec<u8>],
        rendered: &[Option<String>],
        outcomes: &[Outcome],
        reasons: &mut String,
        side: &mut Side,
    ) {
        let score = self.decision.score(&self.scores, outcomes);
        let index = self.decision.decide(score);
        side.counters[index] += 1;
        if !self.write {
            return;
        }
        reasons.clear();
        for (r, outcome) in outcomes.iter().enumerate() {
            if *outcome != Outcome::True {
                continue;
            }
            if !reasons.is_empty() {
                reasons.push_str(" | ");
            }
            let rule_id = &rule_ids[r];
            // `,ID,` without its commas.
            reasons
                .push_str(std::str::from_utf8(&rule_id[1..rule_id.len() - 1]).unwrap_or_default());
            reasons.push(':');
            reasons.push_str(rendered[r].as_deref().unwrap_or(&self.names[r]));
        }
        let out = &mut side.bytes;
        out.extend_from_slice(id);
        out.push(b',');
        out.extend_from_slice(score.to_string().as_bytes());
        out.push(b',');
        out.extend_from_slice(self.decision.names()[index].as_bytes());
        out.push(b',');
        field(out, reasons.as_bytes());
        out.push(b'\n');
    }
}

/// Per rule: its reason bound to `columns`, and (under `explain`) the variables it reads —
/// the columns its script names, as the evaluator binds them (`engine::identifiers`).
pub fn rule_details(
    set: &RuleSet,
    columns: &Columns,
    explain: bool,
) -> Result<Vec<RuleDetail>, Vec<RulesError>> {
    let mut errors = Vec::new();
    let mut details = Vec::with_capacity(set.rules.len());
    for rule in &set.rules {
        let reason = match rule.reason.as_ref().map(|t| t.resolve(columns)) {
            None => None,
            Some(Ok(resolved)) => Some(resolved),
            Some(Err(message)) => {
                errors.push(RulesError {
                    line: Some(rule.reason_line),
                    rule: Some(rule.label()),
                    message,
                    undefined_variable: None,
                });
                None
            }
        };
        details.push(RuleDetail {
            reason,
            explain: if explain {
                crate::rules::engine::read_by(&rule.script, columns)
            } else {
                Vec::new()
            },
        });
    }
    if errors.is_empty() {
        Ok(details)
    } else {
        Err(errors)
    }
}
