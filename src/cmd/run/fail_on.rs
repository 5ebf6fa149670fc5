//! `--fail-on`: which results and decisions it names, whether one occurred, and the exit
//! code that follows.

use anyhow::Result;

use crate::config::{FailOn, RunConfig};
use crate::exit::{self, Usage};
use crate::model::{Kind, Tally};
use crate::rules::RuleSet;

/// What `--fail-on` found: e.g. `a result named by --fail-on occurred: 2 error
/// (--fail-on error,timeout)`.
pub(crate) fn fail_on_hit(fail_on: &[FailOn], tally: &Tally, rules: Option<&RuleSet>) -> String {
    let total = |kind: Kind| -> u64 { tally.counts.iter().map(|c| c[kind as usize]).sum() };
    let mut found = Vec::new();
    let mut named = Vec::new();
    for f in fail_on {
        let (n, name) = match f {
            FailOn::Error => (total(Kind::Error), "error"),
            FailOn::Timeout => (total(Kind::Timeout), "timeout"),
            FailOn::False => (total(Kind::False), "false"),
            FailOn::Decision(name) => (decided(tally, rules, name), name.as_str()),
        };
        named.push(name);
        if n > 0 {
            found.push(format!("{n} {name}"));
        }
    }
    format!(
        "a result named by --fail-on occurred: {} (--fail-on {})",
        found.join(", "),
        named.join(",")
    )
}

/// Transactions given decision `name` (0 when the file has no such decision).
fn decided(tally: &Tally, rules: Option<&RuleSet>, name: &str) -> u64 {
    rules
        .and_then(|r| r.decision.as_ref())
        .and_then(|d| d.index(name))
        .and_then(|i| tally.extra.get(i).copied())
        .unwrap_or(0)
}

/// `--decisions` needs `[decision]`, and every decision `--fail-on` names must be one of
/// the file's (a usage error, exit 2, found once the rules are read).
pub(super) fn check_decisions(config: &RunConfig, rules: &RuleSet) -> Result<()> {
    let names = rules
        .decision
        .as_ref()
        .map(|d| d.names().join(", "))
        .unwrap_or_default();
    if config.decisions.is_some() && rules.decision.is_none() {
        return Err(Usage(format!(
            "--decisions: {} has no [decision] table",
            crate::output::paths::show(&config.rules)
        ))
        .into());
    }
    for f in &config.fail_on {
        if let FailOn::Decision(name) = f
            && rules
                .decision
                .as_ref()
                .and_then(|d| d.index(name))
                .is_none()
        {
            let known = if names.is_empty() {
                "it has no [decision] table".to_string()
            } else {
                format!("its decisions: {names}")
            };
            return Err(Usage(format!(
                "--fail-on {name}: neither a result (error, timeout, false) nor a decision of {} ({known})",
                crate::output::paths::show(&config.rules)
            ))
            .into());
        }
    }
    Ok(())
}

/// 3 when a result or decision named by `--fail-on` occurred, else 0.
pub(crate) fn exit_code(fail_on: &[FailOn], tally: &Tally, rules: &RuleSet) -> i32 {
    let occurred = |kind: Kind| tally.counts.iter().any(|c| c[kind as usize] > 0);
    let hit = fail_on.iter().any(|f| match f {
        FailOn::Error => occurred(Kind::Error),
        FailOn::Timeout => occurred(Kind::Timeout),
        FailOn::False => occurred(Kind::False),
        FailOn::Decision(name) => decided(tally, Some(rules), name) > 0,
    });
    if hit { exit::FAIL_ON } else { exit::SUCCESS }
}
