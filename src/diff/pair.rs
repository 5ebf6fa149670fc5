//! The executor of `txguard diff`: each lane holds a lane of OLD's executor and one of
//! NEW's, so both files see every batch once, with the seed and transaction a `run` of
//! each file would give them.

use std::sync::Arc;

use anyhow::Result;

use crate::exec::{Executor, Lane};
use crate::model::{Batch, Outcome};

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
