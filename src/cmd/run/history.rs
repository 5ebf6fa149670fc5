//! The windows stage of a run: built for the input's columns, and fed every `--history`
//! file first, so that the input's rows see the history's rows in their windows.

use std::sync::Arc;
use std::thread;

use anyhow::{Context, Result};

use crate::config::{BadRows, RunConfig};
use crate::exit::{self, Interrupted};
use crate::input::{InputReader, Layout};
use crate::pipeline::windows::WindowStage;
use crate::rules::{RuleSet, RulesErrors};
use crate::signals::StopFlag;

use super::open_input;

/// The windows stage of a run, when the rules have `[windows]`, with every `--history`
/// file fed to it in order (their bad rows fail the run under `--bad-rows fail`, and are
/// skipped and counted under `skip`: the rejects file is the input's). `diff` builds its
/// stage here too, so that a backtest sees the windows a run saw.
pub(crate) fn windows_stage(
    config: &RunConfig,
    rules: &Arc<RuleSet>,
    input: &InputReader,
    stop: &StopFlag,
) -> Result<Option<WindowStage>> {
    // A `where` that does not compile is the rules file's error, named as `check` names it.
    let first = WindowStage::for_input(rules, input, config.seed).map_err(|e| {
        match e.downcast::<crate::pipeline::windows::FilterErrors>() {
            Ok(filters) => RulesErrors::of(&config.rules, filters.0).into(),
            Err(e) => e,
        }
    })?;
    let Some(stage) = first else {
        if let Some(first) = config.history.first() {
            return Err(exit::Usage(format!(
                "--history {}: the rules declare no [windows.*] for history to fill",
                first.display()
            ))
            .into());
        }
        return Ok(None);
    };
    // A window reads the rows before each row: a shard has not got them.
    if let Some(spec) = config.shard {
        return Err(exit::Usage(format!(
            "--shard {spec}: the rules declare [windows.*], which need every earlier row of \
             the input; a shard reads only its range: run the whole input in one run"
        ))
        .into());
    }
    if config.columns.is_some() && !config.history.is_empty() {
        return Err(exit::Usage(
            "--columns with --history: the history files are aligned to the input's header \
             row, which --columns says the input has not got"
                .into(),
        )
        .into());
    }
    if config.history.is_empty() {
        return Ok(Some(stage));
    }
    let (schema, name) = (input.schema.clone(), input.name().to_string());
    // On a lane's stack: history rows go through the windows' `where` filters.
    let mut stage = thread::scope(|scope| {
        thread::Builder::new()
            .name("history".into())
            .stack_size(crate::exec::LANE_STACK_BYTES)
            .spawn_scoped(scope, move || {
                feed_history(stage, (&schema, &name), config, rules, stop)
            })
            .context("cannot start the history thread")?
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the history thread panicked")))
    })?;
    // Back to the input's column order, with the history's windows.
    if let Some(reading) = WindowStage::for_input(rules, input, config.seed)? {
        stage.continue_with(reading);
    }
    Ok(Some(stage))
}

/// Feeds every `--history` file to `stage`, in order. A history file has the columns of
/// the input (`input`: its schema and name), in any order, as several inputs may.
fn feed_history(
    mut stage: WindowStage,
    input: (&crate::typing::Schema, &str),
    config: &RunConfig,
    rules: &Arc<RuleSet>,
    stop: &StopFlag,
) -> Result<WindowStage> {
    for path in &config.history {
        let fail = config.bad_rows == BadRows::Fail;
        let history = open_input(path, rules, &config.csv, fail, &Layout::default(), stop)?;
        let name = history.name().to_string();
        history.schema.aligned_to(input.0, &name, input.1)?;
        // The windows go on reading this file's column order.
        if let Some(reading) = WindowStage::for_input(rules, &history, config.seed)? {
            stage.continue_with(reading);
        }
        let go_on = || match stop.signal() {
            Some(signal) => Err(Interrupted(signal).into()),
            None => Ok(()),
        };
        let fed = stage.feed_history(history, fail, go_on)?;
        if let Some(first) = fed.first_bad
            && fail
        {
            return Err(crate::input::BadRowError {
                input: name,
                row: first,
            }
            .into());
        }
        stage.count_history(fed.rows, fed.bad);
    }
    Ok(stage)
}
