//! The process executor (being written): supervised worker processes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::{Executor, Lane};
use crate::rules::{Columns, RuleSet};

/// What a worker needs to rebuild the run's evaluator.
pub struct WorkerSetup {
    /// The rules file's text, parsed again by each worker (not re-read from disk).
    pub rules_text: String,
    /// `--timeout`, the default limit of rules without their own.
    pub default_timeout: Duration,
    pub columns: Columns,
    pub seed: u64,
}

pub struct ProcessesExecutor {
    _rules: Arc<RuleSet>,
    _setup: WorkerSetup,
    jobs: usize,
}

impl ProcessesExecutor {
    pub fn new(rules: Arc<RuleSet>, setup: WorkerSetup, jobs: usize) -> Result<ProcessesExecutor> {
        Ok(ProcessesExecutor { _rules: rules, _setup: setup, jobs })
    }
}

impl Executor for ProcessesExecutor {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn jobs(&self) -> usize {
        self.jobs
    }

    fn lane(&self, _index: usize) -> Result<Box<dyn Lane>> {
        anyhow::bail!("--executor processes is not available yet")
    }
}
