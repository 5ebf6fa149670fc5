//! The thread executor: each lane is a private `Evaluator` (its own Rhai engine and
//! compiled rules) on a rayon pool thread. Deadlines are cooperative (`on_progress`), and
//! a panic inside an evaluation is already an `error` outcome (`Evaluator::evaluate`).

use std::sync::Arc;

use anyhow::{Result, anyhow};

use super::{Executor, Lane};
use crate::model::{Batch, Columns, Outcome};
use crate::rules::{Cancel, Evaluator, RuleSet};

pub struct ThreadsExecutor {
    rules: Arc<RuleSet>,
    columns: Columns,
    seed: u64,
    /// Shared by every lane's evaluator: `shutdown` stops running scripts with it.
    cancel: Cancel,
}

impl ThreadsExecutor {
    pub fn new(rules: Arc<RuleSet>, columns: Columns, seed: u64) -> ThreadsExecutor {
        ThreadsExecutor {
            rules,
            columns,
            seed,
            cancel: Cancel::default(),
        }
    }
}

impl Executor for ThreadsExecutor {
    fn lane(&self, _index: usize) -> Result<Box<dyn Lane>> {
        let evaluator =
            Evaluator::cancellable(&self.rules, &self.columns, self.seed, self.cancel.clone())
                .map_err(|errors| {
                    anyhow!("rules do not compile: {}", crate::rules::one_line(&errors))
                })?;
        Ok(Box::new(ThreadLane { evaluator }))
    }

    fn shutdown(&self) {
        self.cancel.cancel();
    }
}

struct ThreadLane {
    evaluator: Evaluator,
}

impl Lane for ThreadLane {
    fn evaluate(&mut self, batch: &Batch, out: &mut Vec<Outcome>) -> Result<()> {
        out.reserve(batch.rows.len() * self.evaluator.rule_count());
        for row in &batch.rows {
            self.evaluator.evaluate_row(row, out);
        }
        Ok(())
    }
}

/// The parse-and-write floor: a lane that evaluates nothing and answers `false` for every
/// pair. Benchmarks run it to measure what reading, typing, reordering and writing cost
/// without any rule (`txguard run --floor`, hidden).
pub struct FloorExecutor {
    pub rules: usize,
}

impl Executor for FloorExecutor {
    fn lane(&self, _index: usize) -> Result<Box<dyn Lane>> {
        Ok(Box::new(FloorLane { rules: self.rules }))
    }

    /// Nothing runs long enough to stop.
    fn shutdown(&self) {}

    /// Nothing is evaluated, so nothing recurses.
    fn lane_stack_bytes(&self) -> usize {
        super::SUPERVISOR_STACK_BYTES
    }
}

struct FloorLane {
    rules: usize,
}

impl Lane for FloorLane {
    fn evaluate(&mut self, batch: &Batch, out: &mut Vec<Outcome>) -> Result<()> {
        out.extend(std::iter::repeat_n(
            Outcome::False,
            batch.rows.len() * self.rules,
        ));
        Ok(())
    }
}
