//! `txguard rockets` (launch a seeded plan of rockets in one of four modes, then print the
//! summary on stderr) and the hidden `txguard rocket` child that flies one rocket.

use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::cli::{RocketArgs, RocketsArgs};
use crate::exit;
use crate::rockets::flight::Flight;
use crate::rockets::{self, Plan, Progress, Settings};

/// Runs `txguard rockets`; exit 1 when any rocket failed.
pub fn run(args: &RocketsArgs) -> anyhow::Result<i32> {
    let settings = Settings {
        mode: args.mode,
        jobs: args.jobs.map(|j| j as usize),
        time_scale: args.time_scale,
        workload: args.workload,
        quiet: args.quiet,
        exe: None,
    };
    let seed = args.seed.unwrap_or_else(Plan::random_seed);
    let plan = Plan::new(seed, args.count as usize);

    // The bar counts launches on stderr. When the rockets' own lines go to the same
    // terminal they already show progress, and a bar redrawn between them would tear them
    // apart, so it is drawn only when stderr is a terminal and stdout's lines are not.
    let lines_on_terminal = !args.quiet && std::io::stdout().is_terminal();
    let progress = if std::io::stderr().is_terminal() && !lines_on_terminal {
        Progress::counter(plan.rockets.len() as u64, "rockets launched")
    } else {
        Progress::hidden()
    };

    // Standard output is rockets' data stream: a reader that went away ends it quietly.
    let report = rockets::launch(&plan, &settings, &progress).map_err(exit::mark_reader_gone)?;
    exit::say(&report.to_string());
    if report.failures.is_empty() {
        Ok(exit::SUCCESS)
    } else {
        exit::say(&format!(
            "txguard: error: {} of {} rockets failed (rerun with --seed {} to repeat this plan)",
            report.failures.len(),
            report.count,
            report.seed
        ));
        Ok(exit::FAILURE)
    }
}

/// Runs the hidden `txguard rocket` child: flies one rocket, its times already scaled.
/// Exits with `STDOUT_CLOSED` when stdout is a closed pipe, so the parent can stop.
pub fn run_one(args: &RocketArgs) -> anyhow::Result<i32> {
    let seconds = |flag: &str, value: f64| {
        Duration::try_from_secs_f64(value).map_err(|_| {
            exit::Usage(format!(
                "--{flag} {value}: expected a number of seconds, not negative"
            ))
        })
    };
    let flight = Flight {
        name: &args.name,
        delay: seconds("delay", args.delay)?,
        countdown: args.countdown,
        step: seconds("step", args.step)?,
        workload: args.workload,
    };
    match flight.fly(args.quiet, &AtomicBool::new(false)) {
        Ok(()) => Ok(exit::SUCCESS),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(rockets::STDOUT_CLOSED),
        Err(err) => Err(anyhow::Error::new(err).context("writing the rocket's line to stdout")),
    }
}
