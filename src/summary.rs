//! What a run did, for people (a table on stderr) and for scripts (`--summary` JSON).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::model::Tally;
use crate::model::{Kind, WorkerCounts};
use crate::rules::RuleSet;

/// Results of one rule.
#[derive(Debug, Clone, Serialize)]
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

/// The summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub txguard_version: &'static str,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub input: String,
    pub input_bytes: u64,
    pub rules_file: String,
    pub rules_sha256: String,
    pub executor: String,
    pub jobs: usize,
    /// Valid transactions evaluated.
    pub transactions: u64,
    pub bad_rows: u64,
    pub evaluations: u64,
    pub rules: Vec<RuleSummary>,
    /// Worker-process counters (process executor only).
    pub workers: Option<WorkerCounts>,
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
        Summary {
            txguard_version: env!("CARGO_PKG_VERSION"),
            started_at: humantime::format_rfc3339_millis(facts.started_at).to_string(),
            finished_at: humantime::format_rfc3339_millis(facts.started_at + facts.wall)
                .to_string(),
            input: facts.input,
            input_bytes: tally.bytes,
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
            workers: facts.workers,
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

    /// The table printed on stderr.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "txguard: {} transactions × {} rules = {} results in {:.2} s ({:.0} tx/s), {} -j {}",
            self.transactions,
            self.rules.len(),
            self.evaluations,
            self.wall_seconds,
            self.transactions_per_second,
            self.executor,
            self.jobs
        );
        let width = self
            .rules
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            s,
            "  {:>6}  {:<width$}  {:>9}  {:>9}  {:>9}  {:>9}",
            "rule", "name", "true", "false", "error", "timeout"
        );
        for r in &self.rules {
            let _ = writeln!(
                s,
                "  {:>6}  {:<width$}  {:>9}  {:>9}  {:>9}  {:>9}",
                r.id, r.name, r.true_, r.false_, r.error, r.timeout
            );
        }
        let _ = writeln!(s, "  bad rows: {}", self.bad_rows);
        if let Some(w) = &self.workers {
            let _ = writeln!(
                s,
                "  workers: {} started, {} killed at a deadline, {} died",
                w.started, w.killed, w.died
            );
        }
        s
    }
}
