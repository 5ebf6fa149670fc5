//! What a run did, for people (a table on stderr) and for scripts (`--summary` JSON).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::inputs::InputSummary;
use crate::model::Tally;
use crate::model::{Kind, WorkerCounts};
use crate::rules::RuleSet;

/// The widest the stderr table gets, in columns (a terminal's classic width).
pub const TABLE_WIDTH: usize = 80;

/// Columns `text` takes on a terminal: a CJK character or an emoji takes two, a
/// combining mark none. Counting `char`s would let a table of CJK rule names run past
/// 80 columns.
fn columns(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `text` padded with spaces to `width` terminal columns (`format!`'s padding counts
/// `char`s, not columns).
fn pad(text: &str, width: usize) -> String {
    let mut padded = text.to_string();
    padded.extend(std::iter::repeat_n(
        ' ',
        width.saturating_sub(columns(text)),
    ));
    padded
}

/// The longest run of `chars` that fits `width` columns with an `…` beside it; the
/// chars are whole, so a cut never splits one, and a combining mark stays with its base.
fn fitting(chars: impl Iterator<Item = char>, width: usize) -> Vec<char> {
    let mut kept = Vec::new();
    let mut used = 0;
    for c in chars {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        kept.push(c);
    }
    kept
}

/// `text` in at most `width` terminal columns: cut, ending in `…`, when wider.
fn cut(text: &str, width: usize) -> String {
    if columns(text) <= width {
        return text.to_string();
    }
    let mut cut: String = fitting(text.chars(), width).into_iter().collect();
    cut.push('…');
    cut
}

/// `text` in at most `width` terminal columns: its end, after `…`, when wider (the end
/// of a path names the file).
fn cut_front(text: &str, width: usize) -> String {
    let text = printable(text);
    if columns(&text) <= width {
        return text;
    }
    // Marks combine with the char before them: a kept end does not start with one.
    let mut kept = fitting(text.chars().rev(), width);
    while kept.last().is_some_and(|c| c.width() == Some(0)) {
        kept.pop();
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

/// A rule name as one line of text: control characters (a newline in a TOML string)
/// shown as `?`, so the table keeps its shape.
pub(crate) fn printable(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Results of one rule (also read back from a shard's part summary by `merge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuleSummary {
    pub id: i64,
    pub name: String,
    #[serde(rename = "true")]
    pub true_: u64,
    #[serde(rename = "false")]
    pub false_: u64,
    pub error: u64,
    pub timeout: u64,
}

/// Transactions given one decision.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionCount {
    pub decision: String,
    pub transactions: u64,
}

/// The summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub txguard_version: &'static str,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    /// The (first) input; `inputs` lists every one.
    pub input: String,
    /// Bytes read from every input together.
    pub input_bytes: u64,
    /// Every input, in the order evaluated, with its bytes, transactions and bad rows.
    pub inputs: Vec<InputSummary>,
    pub rules_file: String,
    pub rules_sha256: String,
    pub executor: String,
    pub jobs: usize,
    /// Valid transactions evaluated.
    pub transactions: u64,
    pub bad_rows: u64,
    pub evaluations: u64,
    pub rules: Vec<RuleSummary>,
    /// Transactions per decision (`[decision]` only), `pass` first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Vec<DecisionCount>>,
    /// Worker-process counters (process executor only).
    pub workers: Option<WorkerCounts>,
    /// The windows' peak state (`[windows.*]` rules only): rows inside the spans at most,
    /// keys held, history rows read and skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<crate::model::WindowStats>,
    pub wall_seconds: f64,
    pub transactions_per_second: f64,
    pub exit_code: i32,
    /// Why the run failed (exit 1, 75, 130, 143); absent when it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Under `--shard`: which shard, its exact byte range, and what `merge` checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::ShardFacts>,
}

/// Everything `Summary::new` needs that the pipeline does not count.
/// Filled in as a run learns them, so a failed run can still say what it knew.
pub struct RunFacts {
    pub started_at: std::time::SystemTime,
    pub input: String,
    pub rules_file: String,
    pub rules_sha256: String,
    pub executor: String,
    pub jobs: usize,
    pub workers: Option<WorkerCounts>,
    pub wall: Duration,
    /// Every input, in order, with what was read from each.
    pub inputs: Vec<InputSummary>,
    /// Under `--shard`, once the input is opened.
    pub shard: Option<crate::shard::ShardFacts>,
}

impl Summary {
    /// A completed run's summary, or (with `error`) a failed one's, whose counts are zero.
    pub fn new(
        facts: RunFacts,
        rules: &RuleSet,
        tally: &Tally,
        exit_code: i32,
        error: Option<String>,
    ) -> Summary {
        let wall = facts.wall.as_secs_f64();
        // A failed run's counts are zero: so are its inputs', or `inputs` would say more
        // than `transactions` and `input_bytes` (an input read whole before the one that
        // failed).
        let mut inputs = facts.inputs;
        if error.is_some() {
            for input in &mut inputs {
                (input.bytes, input.transactions, input.bad_rows) = (0, 0, 0);
            }
        }
        Summary {
            txguard_version: env!("CARGO_PKG_VERSION"),
            started_at: humantime::format_rfc3339_millis(facts.started_at).to_string(),
            finished_at: humantime::format_rfc3339_millis(facts.started_at + facts.wall)
                .to_string(),
            input: facts.input,
            input_bytes: tally.bytes,
            inputs,
            rules_file: facts.rules_file,
            rules_sha256: facts.rules_sha256,
            executor: facts.executor,
            jobs: facts.jobs,
            transactions: tally.rows,
            bad_rows: tally.bad_rows,
            evaluations: tally.counts.iter().flatten().sum(),
            rules: rules
                .rules
                .iter()
                .zip(tally.counts.iter().chain(std::iter::repeat(&[0; 4])))
                .map(|(rule, c)| RuleSummary {
                    id: rule.id,
                    name: rule.name.clone(),
                    true_: c[Kind::True as usize],
                    false_: c[Kind::False as usize],
                    error: c[Kind::Error as usize],
                    timeout: c[Kind::Timeout as usize],
                })
                .collect(),
            decisions: rules.decision.as_ref().map(|d| {
                d.names()
                    .iter()
                    .enumerate()
                    .map(|(i, name)| DecisionCount {
                        decision: name.to_string(),
                        transactions: tally.extra.get(i).copied().unwrap_or(0),
                    })
                    .collect()
            }),
            workers: facts.workers,
            windows: tally.windows,
            wall_seconds: wall,
            transactions_per_second: if wall > 0.0 {
                tally.rows as f64 / wall
            } else {
                0.0
            },
            exit_code,
            error,
            shard: facts.shard,
        }
    }

    /// The table printed on stderr, for a log (plain numbers).
    pub fn render(&self) -> String {
        self.render_for(false)
    }

    /// The table printed on stderr: within `TABLE_WIDTH` columns (a rule name too long
    /// for it is cut, ending in `…`), and on a terminal (`terminal`) with thousands
    /// separators (`24,000`).
    pub fn render_for(&self, terminal: bool) -> String {
        let count = |n: u64| {
            if terminal {
                indicatif::HumanCount(n).to_string()
            } else {
                n.to_string()
            }
        };
        let mut s = String::new();
        let head = format!(
            "txguard: {} transactions × {} rules = {} results",
            count(self.transactions),
            self.rules.len(),
            count(self.evaluations)
        );
        let tail = format!(
            "in {:.2} s ({} tx/s), {} -j {}",
            self.wall_seconds,
            count(self.transactions_per_second.round() as u64),
            self.executor,
            self.jobs
        );
        if columns(&head) + 1 + columns(&tail) <= TABLE_WIDTH {
            let _ = writeln!(s, "{head} {tail}");
        } else {
            let _ = writeln!(s, "{head}\n  {tail}");
        }
        let rows: Vec<[String; 6]> = self
            .rules
            .iter()
            .map(|r| {
                [
                    r.id.to_string(),
                    printable(&r.name),
                    count(r.true_),
                    count(r.false_),
                    count(r.error),
                    count(r.timeout),
                ]
            })
            .collect();
        let header = ["rule", "name", "true", "false", "error", "timeout"].map(String::from);
        let mut widths = [6, 4, 9, 9, 9, 9];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(columns(cell));
            }
        }
        // Every column but the name, with two spaces before each.
        let others: usize = widths
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, w)| w + 2)
            .sum();
        widths[1] = widths[1].min(TABLE_WIDTH.saturating_sub(others + 2)).max(4);
        for row in std::iter::once(&header).chain(&rows) {
            let name = pad(&cut(&row[1], widths[1]), widths[1]);
            let _ = writeln!(
                s,
                "  {:>w0$}  {name}  {:>w2$}  {:>w3$}  {:>w4$}  {:>w5$}",
                row[0],
                row[2],
                row[3],
                row[4],
                row[5],
                w0 = widths[0],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
                w5 = widths[5],
            );
        }
        if let Some(decisions) = &self.decisions {
            let counts: Vec<String> = decisions
                .iter()
                .map(|d| format!("{} {}", count(d.transactions), d.decision))
                .collect();
            let _ = writeln!(s, "  decisions: {}", counts.join(", "));
        }
        let _ = writeln!(s, "  bad rows: {}", count(self.bad_rows));
        if self.inputs.len() > 1 {
            for input in &self.inputs {
                let tail = format!(
                    ": {} transactions, {} bad rows",
                    count(input.transactions),
                    count(input.bad_rows)
                );
                let room = TABLE_WIDTH.saturating_sub(2 + columns(&tail)).max(8);
                let _ = writeln!(s, "  {}{tail}", cut_front(&input.path, room));
            }
        }
        if let Some(w) = &self.workers {
            let _ = writeln!(
                s,
                "  workers: {} started, {} killed at a deadline, {} died",
                w.started, w.killed, w.died
            );
        }
        if let Some(w) = &self.windows {
            s.push_str(&windows_lines(w, count));
        }
        s
    }
}

/// The report's lines on the windows (`run`'s and `diff`'s): their peak state, and the
/// history read into them when there was one, each number written by `count`. Two short
/// lines: the table fits 80 columns.
pub fn windows_lines(w: &crate::model::WindowStats, count: impl Fn(u64) -> String) -> String {
    let mut s = format!(
        "  windows: at most {} rows inside the spans, {} keys\n",
        count(w.peak_rows),
        count(w.keys)
    );
    if w.history_rows > 0 || w.history_bad_rows > 0 {
        s.push_str(&format!(
            "  history: {} rows read into the windows, {} bad rows skipped\n",
            count(w.history_rows),
            count(w.history_bad_rows)
        ));
    }
    s
}
