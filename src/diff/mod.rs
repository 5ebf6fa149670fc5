//! `txguard diff OLD NEW INPUT`: both rule sets evaluated in one pass over the input.
//! Each lane holds a lane of each set's executor (`PairExecutor`), so the same seed and
//! transaction give every rule the same random draws as a `run` of its own file would;
//! the lanes then write the pairs that changed (`DiffFormat`) and count, per rule and
//! for the decisions, what changed and (with `--labels`) how well each set does.
//!
//! Rules are matched by `id`: OLD's rules in their order, then the rules only in NEW.

mod labels;
mod pair;
mod report;

pub use labels::{Labels, read_labels};
pub use pair::PairExecutor;
pub use report::{DecisionChanges, Labelled, Report, RuleChange, Scores, ThresholdScores};

use std::sync::Arc;

use crate::format::{Side, field};
use crate::model::{Outcome, Row};
use crate::rules::RuleSet;
use crate::rules::decision::Decision;

/// Counters per matched rule: true old, true new, changed, then (tp, fp, fn) old and new.
const PER_RULE: usize = 9;

/// One rule id of either set.
#[derive(Debug, Clone)]
pub struct Pair {
    pub id: i64,
    pub name: String,
    /// Position in OLD's and in NEW's outcomes.
    pub old: Option<usize>,
    pub new: Option<usize>,
}

/// How a diff's lanes format and count.
#[derive(Debug)]
pub struct DiffFormat {
    old_rules: usize,
    pairs: Vec<Pair>,
    /// `,ID,` per pair.
    pair_ids: Vec<Vec<u8>>,
    /// Both files' `[decision]` and rule scores, when both have one.
    decisions: Option<[(Decision, Vec<i64>); 2]>,
    labels: Option<Arc<Labels>>,
}

/// The rule ids of both sets, matched: OLD's in order, then those only in NEW.
pub fn pairs(old: &RuleSet, new: &RuleSet) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = old
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| Pair {
            id: r.id,
            name: r.name.clone(),
            old: Some(i),
            new: new.rules.iter().position(|n| n.id == r.id),
        })
        .collect();
    for (i, r) in new.rules.iter().enumerate() {
        if !old.rules.iter().any(|o| o.id == r.id) {
            pairs.push(Pair {
                id: r.id,
                name: r.name.clone(),
                old: None,
                new: Some(i),
            });
        }
    }
    pairs
}

impl DiffFormat {
    pub fn new(old: &RuleSet, new: &RuleSet, labels: Option<Arc<Labels>>) -> DiffFormat {
        let pairs = pairs(old, new);
        let scores = |set: &RuleSet| set.rules.iter().map(|r| r.score).collect::<Vec<_>>();
        let decisions = match (&old.decision, &new.decision) {
            (Some(a), Some(b)) => Some([(a.clone(), scores(old)), (b.clone(), scores(new))]),
            _ => None,
        };
        DiffFormat {
            old_rules: old.rules.len(),
            pair_ids: pairs
                .iter()
                .map(|p| format!(",{},", p.id).into_bytes())
                .collect(),
            pairs,
            decisions,
            labels,
        }
    }

    /// Decision counts: OLD's decisions, NEW's.
    fn decision_sizes(&self) -> (usize, usize) {
        self.decisions.as_ref().map_or((0, 0), |[a, b]| {
            (a.0.thresholds.len() + 1, b.0.thresholds.len() + 1)
        })
    }

    /// Counters: per pair `PER_RULE`; the decision matrix (old × new); per threshold of
    /// OLD then NEW (tp, fp, fn) of "at least this decision"; transactions labelled;
    /// transactions labelled fraudulent; transactions with a change.
    pub fn counters(&self) -> usize {
        let (a, b) = self.decision_sizes();
        self.pairs.len() * PER_RULE + a * b + (a.saturating_sub(1) + b.saturating_sub(1)) * 3 + 3
    }

    /// Writes the changes of `rows` (outcomes: OLD's rules then NEW's, per row) and counts.
    pub fn rows(&self, rows: &[Row], outcomes: &[Outcome], out: &mut Vec<u8>, side: &mut Side) {
        let width = self.old_rules + self.width_new();
        let (da, db) = self.decision_sizes();
        let matrix = self.pairs.len() * PER_RULE;
        let thresholds = matrix + da * db;
        let tail = thresholds + (da.saturating_sub(1) + db.saturating_sub(1)) * 3;
        let c = &mut side.counters;
        let mut id = Vec::new();
        for (row, outcomes) in rows.iter().zip(outcomes.chunks(width.max(1))) {
            let (old, new) = outcomes.split_at(self.old_rules);
            let label = self.labels.as_ref().and_then(|labels| labels.get(&row.id));
            if let Some(label) = label {
                c[tail] += 1;
                c[tail + 1] += u64::from(label);
            }
            id.clear();
            field(&mut id, row.id.as_bytes());
            let mut changed = false;
            for (p, pair) in self.pairs.iter().enumerate() {
                let base = p * PER_RULE;
                let a = pair.old.map(|i| &old[i]);
                let b = pair.new.map(|i| &new[i]);
                for (k, o) in [(0, a), (1, b)] {
                    let fired = o == Some(&Outcome::True);
                    c[base + k] += u64::from(fired);
                    if let (Some(_), Some(label)) = (o, label) {
                        confusion(&mut c[base + 3 + 3 * k..base + 6 + 3 * k], fired, label);
                    }
                }
                if a.map(Outcome::kind) != b.map(Outcome::kind) {
                    c[base + 2] += 1;
                    changed = true;
                    out.extend_from_slice(&id);
                    out.extend_from_slice(&self.pair_ids[p]);
                    out.extend_from_slice(a.map_or("", |o| o.kind().as_str()).as_bytes());
                    out.push(b',');
                    out.extend_from_slice(b.map_or("", |o| o.kind().as_str()).as_bytes());
                    out.push(b'\n');
                }
            }
            if let Some([(da_, sa), (db_, sb)]) = &self.decisions {
                let x = da_.decide(da_.score(sa, old));
                let y = db_.decide(db_.score(sb, new));
                c[matrix + x * db + y] += 1;
                if let Some(label) = label {
                    let mut at = thresholds;
                    for (decided, size) in [(x, da), (y, db)] {
                        for t in 1..size {
                            confusion(&mut c[at..at + 3], decided >= t, label);
                            at += 3;
                        }
                    }
                }
                let (na, nb) = (da_.names()[x], db_.names()[y]);
                if na != nb {
                    changed = true;
                    out.extend_from_slice(&id);
                    out.extend_from_slice(b",,");
                    out.extend_from_slice(na.as_bytes());
                    out.push(b',');
                    out.extend_from_slice(nb.as_bytes());
                    out.push(b'\n');
                }
            }
            c[tail + 2] += u64::from(changed);
        }
    }

    fn width_new(&self) -> usize {
        self.pairs
            .iter()
            .filter_map(|p| p.new)
            .max()
            .map_or(0, |m| m + 1)
    }
}

/// Adds one prediction to (tp, fp, fn).
fn confusion(c: &mut [u64], predicted: bool, label: bool) {
    match (predicted, label) {
        (true, true) => c[0] += 1,
        (true, false) => c[1] += 1,
        (false, true) => c[2] += 1,
        (false, false) => {}
    }
}
