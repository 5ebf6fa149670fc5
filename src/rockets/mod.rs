//! Rockets: the concurrency workload of the original program, done four ways
//! (`sequential`, `rayon`, `threads`, `processes`) on the same seeded plan, so that their
//! wall times compare identical work. `txguard rockets` and the bench both call `launch`.
//!
//! - `plan`: names, delays and countdowns, drawn up front from one seeded RNG;
//! - `flight`: one rocket's flight and its whole-line output;
//! - `inproc`: the three in-process modes; `processes`: one supervised child per rocket;
//! - `report`: what people see on stderr (with `crate::progress` for the bar).

pub mod flight;
pub mod inproc;
pub mod plan;
pub mod processes;
pub mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

pub use crate::config::{RocketMode, Workload};
pub use crate::progress::Progress;
pub use plan::{Plan, Rocket};
pub use report::{Failure, Report};

/// Exit code of a `rocket` child that found stdout closed (128 + SIGPIPE, as a shell
/// reports a process killed by SIGPIPE): the parent then stops launching, quietly.
pub const STDOUT_CLOSED: i32 = 128 + signal_hook::consts::SIGPIPE;

/// How to launch the rockets of a plan: the checked form of `rockets`' flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How rockets are launched.
    pub mode: RocketMode,
    /// Pool size for `rayon` (None: CPUs); most children alive for `processes` (None: no cap).
    pub jobs: Option<usize>,
    /// Multiplies every delay and countdown step; finite and not negative.
    pub time_scale: f64,
    /// Whether countdown steps are slept or burned on the CPU.
    pub workload: Workload,
    /// No per-rocket lines on stdout.
    pub quiet: bool,
    /// The binary to re-execute in `processes` mode (None: this executable).
    pub exe: Option<PathBuf>,
}

impl Settings {
    /// `seconds` of the plan in real time.
    pub fn scaled(&self, seconds: f64) -> Duration {
        // Plans are checked with `check_scale` first; saturate rather than panic anyway.
        Duration::try_from_secs_f64(seconds * self.time_scale).unwrap_or(Duration::MAX)
    }

    /// The flight of `rocket` in real time: the same for a thread here and for a child.
    pub fn flight<'r>(&self, rocket: &'r Rocket) -> flight::Flight<'r> {
        flight::Flight {
            name: &rocket.name,
            delay: self.scaled(rocket.delay),
            countdown: rocket.countdown,
            step: self.scaled(1.0),
            workload: self.workload,
        }
    }

    /// Refuses a time scale that makes a rocket longer than a `Duration` can hold.
    pub fn check_scale(&self, plan: &Plan) -> anyhow::Result<()> {
        let longest = plan::MAX_DELAY + f64::from(plan::MAX_COUNTDOWN);
        let total_spin = plan.countdown_lines() as f64;
        for seconds in [longest, total_spin] {
            Duration::try_from_secs_f64(seconds * self.time_scale).map_err(|_| {
                crate::exit::Usage(format!(
                    "--time-scale {} makes rockets longer than this program can wait",
                    self.time_scale
                ))
            })?;
        }
        Ok(())
    }
}

/// What one mode achieved, before it is turned into a `Report`.
#[derive(Debug, Default)]
pub struct Launched {
    /// Rockets that reached their launch line.
    pub launched: usize,
    /// Rockets that failed (processes mode: bad exit, overrun, lost).
    pub failures: Vec<Failure>,
    /// Thread or process starts retried for lack of resources.
    pub spawn_retries: u64,
}

/// Launches every rocket of `plan` as `settings` say and reports how it went. Errors are
/// for runs that could not finish (stdout closed, a process that cannot start at all);
/// rockets that failed are listed in the report instead.
pub fn launch(plan: &Plan, settings: &Settings, progress: &Progress) -> anyhow::Result<Report> {
    settings.check_scale(plan)?;
    let jobs = match settings.mode {
        RocketMode::Rayon => Some(settings.jobs.unwrap_or_else(cpus)),
        RocketMode::Processes => settings.jobs,
        RocketMode::Sequential | RocketMode::Threads => None,
    };
    let start = Instant::now();
    let launched = match settings.mode {
        RocketMode::Sequential => inproc::sequential(plan, settings, progress)?,
        RocketMode::Rayon => inproc::rayon(plan, settings, jobs.unwrap_or(1), progress)?,
        RocketMode::Threads => inproc::threads(plan, settings, progress)?,
        RocketMode::Processes => {
            let exe = match &settings.exe {
                Some(exe) => exe.clone(),
                None => std::env::current_exe().context("finding this executable to re-run it")?,
            };
            let spin_cpu = match settings.workload {
                Workload::Spin => settings.scaled(plan.countdown_lines() as f64),
                Workload::Sleep => Duration::ZERO,
            };
            let order = plan.longest_first();
            processes::supervise(&order, jobs, progress, |rocket| {
                processes::rocket_launch(&exe, rocket, settings, spin_cpu)
            })?
        }
    };
    let wall = start.elapsed();
    progress.finish();
    Ok(Report {
        count: plan.rockets.len(),
        launched: launched.launched,
        mode: settings.mode,
        workload: settings.workload,
        time_scale: settings.time_scale,
        seed: plan.seed,
        jobs,
        wall,
        ideal: plan.ideal(settings.time_scale),
        failures: launched.failures,
        spawn_retries: launched.spawn_retries,
    })
}

pub use crate::config::cpus;
