//! What `txguard diff` reports from the counters its lanes added up: per rule the `true`
//! counts and changes, the matrix of decisions, precision/recall/F1 under `--labels`; as
//! JSON (`--summary`) and as the table on stderr.

use std::fmt::Write as _;

use serde::Serialize;

use super::{DiffFormat, Labels, PER_RULE};
use crate::rules::decision::Decision;

/// Precision, recall and F1 of (tp, fp, fn); `None` where undefined: precision when
/// nothing was predicted, recall when there was nothing to find, F1 when both.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

impl Scores {
    fn of(c: &[u64]) -> Scores {
        let (tp, fp, fn_) = (c[0] as f64, c[1] as f64, c[2] as f64);
        let precision = (tp + fp > 0.0).then(|| tp / (tp + fp));
        let recall = (tp + fn_ > 0.0).then(|| tp / (tp + fn_));
        // 2TP / (2TP + FP + FN): defined whenever something was predicted or was there
        // to find. A rule that fires on nothing while there are frauds to find has no
        // precision, but its F1 is 0, not undefined.
        let f1 = (tp + fp + fn_ > 0.0).then(|| 2.0 * tp / (2.0 * tp + fp + fn_));
        Scores {
            true_positives: c[0],
            false_positives: c[1],
            false_negatives: c[2],
            precision,
            recall,
            f1,
        }
    }
}

/// One matched rule in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RuleChange {
    pub id: i64,
    pub name: String,
    /// `both`, `old` (removed in NEW) or `new` (added).
    pub present: &'static str,
    pub true_old: Option<u64>,
    pub true_new: Option<u64>,
    pub changed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores_old: Option<Scores>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores_new: Option<Scores>,
}

/// The decisions' part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionChanges {
    pub old: Vec<String>,
    pub new: Vec<String>,
    /// `matrix[i][j]`: transactions decided `old[i]` by OLD and `new[j]` by NEW.
    pub matrix: Vec<Vec<u64>>,
    /// With labels: per threshold, "at least this decision" as the prediction.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scores_old: Vec<ThresholdScores>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scores_new: Vec<ThresholdScores>,
}

/// How well "this decision or a higher one" finds the labelled transactions.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdScores {
    pub at_least: String,
    #[serde(flatten)]
    pub scores: Scores,
}

/// What a diff found, from the counters the lanes added up.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub transactions_changed: u64,
    pub pairs_changed: u64,
    pub rules: Vec<RuleChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decisions: Option<DecisionChanges>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labelled: Option<Labelled>,
}

/// How many transactions of the input had a label, and how many labels none had.
#[derive(Debug, Clone, Serialize)]
pub struct Labelled {
    pub transactions: u64,
    pub fraudulent: u64,
    /// Labels whose id is no (valid) transaction of the input: left out of the scores.
    pub unmatched_labels: u64,
}

impl DiffFormat {
    /// The report of the counters a run added up (`counters()` long), and of the run's
    /// `--labels` once it is over.
    pub fn report(&self, c: &[u64], labelled: Option<&Labels>) -> Report {
        let labels = labelled.is_some();
        let c = &{
            let mut all = c.to_vec();
            all.resize(self.counters(), 0);
            all
        };
        let (da, db) = self.decision_sizes();
        let matrix = self.pairs.len() * PER_RULE;
        let thresholds = matrix + da * db;
        let tail = thresholds + (da.saturating_sub(1) + db.saturating_sub(1)) * 3;
        let rules: Vec<RuleChange> = self
            .pairs
            .iter()
            .enumerate()
            .map(|(p, pair)| {
                let b = p * PER_RULE;
                RuleChange {
                    id: pair.id,
                    name: pair.name.clone(),
                    present: match (pair.old, pair.new) {
                        (Some(_), Some(_)) => "both",
                        (Some(_), None) => "old",
                        _ => "new",
                    },
                    true_old: pair.old.map(|_| c[b]),
                    true_new: pair.new.map(|_| c[b + 1]),
                    changed: c[b + 2],
                    scores_old: (labels && pair.old.is_some()).then(|| Scores::of(&c[b + 3..])),
                    scores_new: (labels && pair.new.is_some()).then(|| Scores::of(&c[b + 6..])),
                }
            })
            .collect();
        let decisions = self.decisions.as_ref().map(|[(a, _), (b, _)]| {
            let names = |d: &Decision| d.names().iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let scores = |d: &Decision, at: usize| -> Vec<ThresholdScores> {
                if !labels {
                    return Vec::new();
                }
                d.thresholds
                    .iter()
                    .enumerate()
                    .map(|(t, (name, _))| ThresholdScores {
                        at_least: name.clone(),
                        scores: Scores::of(&c[at + 3 * t..]),
                    })
                    .collect()
            };
            DecisionChanges {
                old: names(a),
                new: names(b),
                matrix: (0..da)
                    .map(|i| c[matrix + i * db..matrix + (i + 1) * db].to_vec())
                    .collect(),
                scores_old: scores(a, thresholds),
                scores_new: scores(b, thresholds + (da - 1) * 3),
            }
        });
        Report {
            transactions_changed: c[tail + 2],
            pairs_changed: rules.iter().map(|r| r.changed).sum(),
            rules,
            decisions,
            labelled: labelled.map(|l| Labelled {
                transactions: c[tail],
                fraudulent: c[tail + 1],
                unmatched_labels: l.unmatched(),
            }),
        }
    }
}

impl Report {
    /// The table printed on stderr.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // A rule name as one line, control characters shown as `?` (as `run`'s table
        // does): an escape sequence or a newline in the rules file must not reach the
        // terminal.
        let names: Vec<String> = self
            .rules
            .iter()
            .map(|r| crate::summary::printable(&r.name))
            .collect();
        let width = names
            .iter()
            .map(|name| name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
        let _ = writeln!(
            s,
            "  {:>6}  {:<width$}  {:>9}  {:>9}  {:>9}",
            "rule", "name", "true old", "true new", "changed"
        );
        for (r, name) in self.rules.iter().zip(&names) {
            let _ = writeln!(
                s,
                "  {:>6}  {:<width$}  {:>9}  {:>9}  {:>9}",
                r.id,
                name,
                count(r.true_old),
                count(r.true_new),
                r.changed
            );
        }
        if let Some(d) = &self.decisions {
            let _ = writeln!(s, "  decisions (rows: old, columns: new):");
            let w = d
                .old
                .iter()
                .chain(&d.new)
                .map(String::len)
                .max()
                .unwrap_or(4)
                .max(9);
            let _ = write!(s, "  {:>w$}", "");
            for n in &d.new {
                let _ = write!(s, "  {n:>w$}");
            }
            s.push('\n');
            for (o, row) in d.old.iter().zip(&d.matrix) {
                let _ = write!(s, "  {o:>w$}");
                for v in row {
                    let _ = write!(s, "  {v:>w$}");
                }
                s.push('\n');
            }
        }
        if let Some(l) = &self.labelled {
            let _ = writeln!(
                s,
                "  labels: {} transactions labelled, {} of them true",
                l.transactions, l.fraudulent
            );
            if l.unmatched_labels > 0 {
                let _ = writeln!(
                    s,
                    "  labels: {} name no transaction of the input (left out)",
                    l.unmatched_labels
                );
            }
            let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.3}"));
            let prf = |sc: &Option<Scores>| match sc {
                Some(sc) => format!("{:>6} {:>6} {:>6}", f(sc.precision), f(sc.recall), f(sc.f1)),
                None => format!("{:>6} {:>6} {:>6}", "-", "-", "-"),
            };
            let _ = writeln!(
                s,
                "  {:>6}  {:<width$}  {:>20}  {:>20}",
                "rule", "name", "old P / R / F1", "new P / R / F1"
            );
            for (r, name) in self.rules.iter().zip(&names) {
                let _ = writeln!(
                    s,
                    "  {:>6}  {:<width$}  {:>20}  {:>20}",
                    r.id,
                    name,
                    prf(&r.scores_old),
                    prf(&r.scores_new)
                );
            }
            if let Some(d) = &self.decisions {
                for (side, scores) in [("old", &d.scores_old), ("new", &d.scores_new)] {
                    for t in scores {
                        let _ = writeln!(
                            s,
                            "  decision >= {} ({side}): {}",
                            t.at_least,
                            prf(&Some(t.scores.clone()))
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            s,
            "  changed: {} pairs in {} transactions",
            self.pairs_changed, self.transactions_changed
        );
        s
    }
}
