//! `txguard diff OLD NEW INPUT`: both rule sets evaluated in one pass over the input.
//! Each lane holds a lane of each set's executor (`PairExecutor`), so the same seed and
//! transaction give every rule the same random draws as a `run` of its own file would;
//! the lanes then write the pairs that changed (`DiffFormat`) and count, per rule and
//! for the decisions, what changed and (with `--labels`) how well each set does.
//!
//! Rules are matched by `id`: OLD's rules in their order, then the rules only in NEW.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use crate::exec::{Executor, Lane};
use crate::format::{Side, field};
use crate::model::{Batch, Outcome, Row};
use crate::rules::RuleSet;
use crate::rules::decision::Decision;

/// Counters per matched rule: true old, true new, changed, then (tp, fp, fn) old and new.
const PER_RULE: usize = 9;

/// Transaction labels (`--labels`): id → fraudulent or not.
pub type Labels = HashMap<String, bool>;

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
            let label = self
                .labels
                .as_ref()
                .and_then(|labels| labels.get(&row.id).copied());
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

/// Evaluates each batch on a lane of OLD's executor and one of NEW's, and hands back
/// their outcomes side by side (per row: OLD's rules, then NEW's).
pub struct PairExecutor {
    pub old: Arc<dyn Executor>,
    pub new: Arc<dyn Executor>,
    pub old_rules: usize,
    pub new_rules: usize,
}

struct PairLane {
    old: Box<dyn Lane>,
    new: Box<dyn Lane>,
    widths: (usize, usize),
    buffers: (Vec<Outcome>, Vec<Outcome>),
}

impl Executor for PairExecutor {
    fn lane(&self, index: usize) -> Result<Box<dyn Lane>> {
        Ok(Box::new(PairLane {
            old: self.old.lane(index)?,
            new: self.new.lane(index)?,
            widths: (self.old_rules, self.new_rules),
            buffers: Default::default(),
        }))
    }

    fn lane_stack_bytes(&self) -> usize {
        self.old.lane_stack_bytes().max(self.new.lane_stack_bytes())
    }

    fn shutdown(&self) {
        self.old.shutdown();
        self.new.shutdown();
    }
}

impl Lane for PairLane {
    fn evaluate(&mut self, batch: &Batch, out: &mut Vec<Outcome>) -> Result<()> {
        let (a, b) = &mut self.buffers;
        a.clear();
        b.clear();
        self.old.evaluate(batch, a)?;
        self.new.evaluate(batch, b)?;
        let (wa, wb) = self.widths;
        let rows = batch.rows.len();
        if a.len() != rows * wa || b.len() != rows * wb {
            anyhow::bail!(
                "internal error: a diff lane got {} and {} outcomes for {rows} rows",
                a.len(),
                b.len()
            );
        }
        let mut a = a.drain(..);
        let mut b = b.drain(..);
        for _ in 0..rows {
            out.extend(a.by_ref().take(wa));
            out.extend(b.by_ref().take(wb));
        }
        Ok(())
    }
}

/// Precision, recall and F1 of (tp, fp, fn); `None` where undefined (nothing predicted,
/// nothing to find).
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
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
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

/// How many transactions of the input had a label.
#[derive(Debug, Clone, Serialize)]
pub struct Labelled {
    pub transactions: u64,
    pub fraudulent: u64,
}

impl DiffFormat {
    /// The report of the counters a run added up (`counters()` long); `labels`: whether
    /// the run had `--labels`.
    pub fn report(&self, c: &[u64], labels: bool) -> Report {
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
            labelled: labels.then(|| Labelled {
                transactions: c[tail],
                fraudulent: c[tail + 1],
            }),
        }
    }
}

impl Report {
    /// The table printed on stderr.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let width = self
            .rules
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
        let _ = writeln!(
            s,
            "  {:>6}  {:<width$}  {:>9}  {:>9}  {:>9}",
            "rule", "name", "true old", "true new", "changed"
        );
        for r in &self.rules {
            let _ = writeln!(
                s,
                "  {:>6}  {:<width$}  {:>9}  {:>9}  {:>9}",
                r.id,
                r.name,
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
            for r in &self.rules {
                let _ = writeln!(
                    s,
                    "  {:>6}  {:<width$}  {:>20}  {:>20}",
                    r.id,
                    r.name,
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

/// Reads `--labels` (`transaction_id,label`, label `true`/`false`, also `1`/`0`): every
/// problem names the file and line.
pub fn read_labels(path: &std::path::Path) -> Result<Labels> {
    use anyhow::Context;
    let shown = crate::output::paths::show(path);
    let mut reader = csv::ReaderBuilder::new()
        .from_path(path)
        .with_context(|| format!("cannot read --labels {shown}"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read --labels {shown}"))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let (Some(id), Some(label)) = (column("transaction_id"), column("label")) else {
        anyhow::bail!("--labels {shown}: the header must name `transaction_id` and `label`");
    };
    let mut labels = Labels::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("cannot read --labels {shown}"))?;
        let line = record.position().map_or(0, |p| p.line());
        let value = record.get(label).unwrap_or_default();
        let fraud = match value {
            "true" | "1" => true,
            "false" | "0" => false,
            other => anyhow::bail!(
                "--labels {shown}:{line}: column \"label\": {other:?} is not true or false"
            ),
        };
        let tx = record.get(id).unwrap_or_default().to_string();
        if labels.insert(tx.clone(), fraud).is_some() {
            anyhow::bail!("--labels {shown}:{line}: transaction {tx:?} is labelled twice");
        }
    }
    Ok(labels)
}
