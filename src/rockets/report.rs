//! What a launch achieved, for people: the summary printed on stderr and the figures the
//! bench tabulates.

use std::fmt;
use std::time::Duration;

use crate::config::{RocketMode, Workload};

/// A rocket that did not launch properly.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Its position in the plan.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// What went wrong, e.g. "exited with code 3", "overran its 31.2s bound: killed".
    pub reason: String,
}

/// The outcome of one `rockets` run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Rockets in the plan.
    pub count: usize,
    /// Rockets that flew to their launch line.
    pub launched: usize,
    /// How they were launched.
    pub mode: RocketMode,
    /// Whether countdowns slept or spun.
    pub workload: Workload,
    /// The `--time-scale` applied to every delay and step.
    pub time_scale: f64,
    /// The seed that reproduces the plan.
    pub seed: u64,
    /// Threads in the pool (rayon) or most children alive at once (processes), if capped.
    pub jobs: Option<usize>,
    /// From the first start to the end of the last rocket's thread or process (all joined
    /// or reaped).
    pub wall: Duration,
    /// The longest single rocket: the best any schedule can do.
    pub ideal: Duration,
    /// Rockets that failed (processes that exited non-zero, overran or could not start).
    pub failures: Vec<Failure>,
    /// Thread or process starts that failed for lack of resources and were retried.
    pub spawn_retries: u64,
}

impl Report {
    /// ideal / wall: 1.0 means the run took no longer than its longest rocket.
    pub fn efficiency(&self) -> f64 {
        ratio(self.ideal.as_secs_f64(), self.wall.as_secs_f64())
    }

    /// Rockets landed per second of wall time.
    pub fn rockets_per_sec(&self) -> f64 {
        if self.launched == 0 {
            0.0
        } else {
            ratio(self.launched as f64, self.wall.as_secs_f64())
        }
    }
}

/// `a / b`, with 0 / 0 = 1 (an empty run is perfectly efficient) and x / 0 = infinity.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = format!("{:?}", self.mode).to_lowercase();
        let workload = format!("{:?}", self.workload).to_lowercase();
        let jobs = self.jobs.map(|j| format!(", jobs {j}")).unwrap_or_default();
        writeln!(
            f,
            "rockets: {} of {} launched, mode {mode}{jobs}, workload {workload}, time scale {}, seed {}",
            self.launched, self.count, self.time_scale, self.seed
        )?;
        write!(
            f,
            "wall {:.3}s, ideal {:.3}s, efficiency {:.1}%, {:.1} rockets/s",
            self.wall.as_secs_f64(),
            self.ideal.as_secs_f64(),
            self.efficiency() * 100.0,
            self.rockets_per_sec()
        )?;
        if self.spawn_retries > 0 {
            write!(
                f,
                "\n{} starts retried after running out of resources",
                self.spawn_retries
            )?;
        }
        if !self.failures.is_empty() {
            write!(f, "\nfailures: {}", self.failures.len())?;
            for failure in self.failures.iter().take(10) {
                write!(
                    f,
                    "\n  rocket #{} ({}): {}",
                    failure.index, failure.name, failure.reason
                )?;
            }
            if self.failures.len() > 10 {
                write!(f, "\n  … and {} more", self.failures.len() - 10)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(wall: f64, ideal: f64, launched: usize) -> Report {
        Report {
            count: launched,
            launched,
            mode: RocketMode::Threads,
            workload: Workload::Sleep,
            time_scale: 1.0,
            seed: 42,
            jobs: None,
            wall: Duration::from_secs_f64(wall),
            ideal: Duration::from_secs_f64(ideal),
            failures: Vec::new(),
            spawn_retries: 0,
        }
    }

    #[test]
    fn efficiency_and_rate_come_from_wall_time() {
        let r = report(10.0, 9.0, 10_000);
        assert!((r.efficiency() - 0.9).abs() < 1e-9);
        assert!((r.rockets_per_sec() - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn an_empty_run_divides_by_nothing() {
        let r = report(0.0, 0.0, 0);
        assert_eq!(r.efficiency(), 1.0);
        assert_eq!(r.rockets_per_sec(), 0.0);
    }

    #[test]
    fn the_summary_names_every_figure_and_the_seed() {
        let text = report(10.0, 9.0, 10_000).to_string();
        assert_eq!(
            text,
            "rockets: 10000 of 10000 launched, mode threads, workload sleep, time scale 1, seed 42\n\
             wall 10.000s, ideal 9.000s, efficiency 90.0%, 1000.0 rockets/s"
        );
    }
}
