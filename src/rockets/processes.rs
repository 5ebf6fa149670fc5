//! `processes` mode: one child process per rocket, the binary re-executed as the hidden
//! `rocket` subcommand, started by this thread and reaped by a supervisor thread.
//!
//! What the original program got wrong, and what is done instead:
//! - it held a pipe per child and died of "too many open files" after 9,997 starts: the
//!   children here hold nothing of ours (stdin is /dev/null, stdout and stderr are
//!   inherited), so our descriptors stay few whatever the count;
//! - it treated a failed start as fatal: here a start that fails for lack of resources is
//!   retried after a growing pause (`Backoff`), and `--jobs` can cap the children alive;
//! - it joined children with no bound: each child here is reaped through
//!   `wait_timeout` with a bound derived from its own expected flight time, and one that
//!   overruns is killed, reaped and reported.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use wait_timeout::ChildExt;

use super::plan::Rocket;
use super::report::Failure;
use super::{Launched, STDOUT_CLOSED};
use crate::backoff::{Backoff, is_out_of_resources};
use crate::progress::Progress;

/// Longest the supervisor waits on one child before looking for newly started ones, while
/// children are still being started: a short child started after a long one gets reaped
/// (and frees its `--jobs` slot) within this time of landing.
const SLICE: Duration = Duration::from_millis(5);

/// How one rocket's child is started and supervised.
pub struct Launch {
    /// The command that flies the rocket.
    pub command: Command,
    /// Its flight time when nothing competes for the machine.
    pub expected: Duration,
    /// Past this much time after its start the child is killed and reported.
    pub bound: Duration,
}

/// A child in flight, ordered by when it should land (earliest first in the heap).
struct InFlight<'r> {
    rocket: &'r Rocket,
    child: Child,
    lands: Instant,
    deadline: Instant,
    bound: Duration,
}

impl PartialEq for InFlight<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for InFlight<'_> {}
impl PartialOrd for InFlight<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight<'_> {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest landing first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.lands, other.rocket.index).cmp(&(self.lands, self.rocket.index))
    }
}

/// Children alive now, and a signal for the starter when one is reaped.
struct Slots {
    alive: Mutex<usize>,
    freed: Condvar,
}

/// What the supervisor thread saw.
#[derive(Default)]
struct Landings {
    launched: usize,
    failures: Vec<Failure>,
}

/// Slack added to every child's bound: room for a slow start on a loaded machine.
const BOUND_SLACK: Duration = Duration::from_secs(30);

/// The standard launch of a rocket: this binary's hidden `rocket` subcommand, bounded by
/// twice its expected flight plus 30 s, plus `spin_cpu` (all the CPU time the run's
/// spinning countdowns need: a spinning child shares the cores with all the others, so
/// its wall time can grow up to that, however slow the machine).
pub fn rocket_launch(
    exe: &std::path::Path,
    rocket: &Rocket,
    settings: &super::Settings,
    spin_cpu: Duration,
) -> Launch {
    let flight = settings.flight(rocket);
    let mut command = Command::new(exe);
    command
        .arg("rocket")
        .arg("--name")
        .arg(&rocket.name)
        // `{}` prints the shortest text that parses back to the same f64: the child flies
        // exactly the durations computed here.
        .arg("--delay")
        .arg(flight.delay.as_secs_f64().to_string())
        .arg("--countdown")
        .arg(rocket.countdown.to_string())
        .arg("--step")
        .arg(flight.step.as_secs_f64().to_string())
        .arg("--workload")
        .arg(match flight.workload {
            crate::config::Workload::Sleep => "sleep",
            crate::config::Workload::Spin => "spin",
        })
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if settings.quiet {
        command.arg("--quiet");
    }
    let expected = flight.expected();
    let bound = expected
        .saturating_mul(2)
        .saturating_add(BOUND_SLACK)
        .saturating_add(spin_cpu);
    Launch {
        command,
        expected,
        bound,
    }
}

/// Starts one child per rocket, in the given order, with at most `jobs` alive at once,
/// and reaps every one of them; `prepare` builds each rocket's command and bound.
pub fn supervise(
    order: &[&Rocket],
    jobs: Option<usize>,
    progress: &Progress,
    prepare: impl Fn(&Rocket) -> Launch,
) -> anyhow::Result<Launched> {
    let slots = Slots {
        alive: Mutex::new(0),
        freed: Condvar::new(),
    };
    let stop = AtomicBool::new(false);
    let mut backoff = Backoff::new();
    let (to_supervisor, arrivals) = mpsc::channel::<InFlight<'_>>();

    let (started, landings) = thread::scope(|scope| {
        let supervisor = thread::Builder::new()
            .name("rocket-supervisor".into())
            .spawn_scoped(scope, || land_all(arrivals, &slots, &stop, progress))
            .context("starting the supervisor thread")?;

        let mut started: anyhow::Result<()> = Ok(());
        let mut first = true;
        for &rocket in order {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            wait_for_slot(&slots, jobs);
            let Launch {
                mut command,
                expected,
                bound,
            } = prepare(rocket);
            let child = backoff.retry_sleeping(|| command.spawn());
            let mut child = match child {
                Ok(child) => child,
                Err(err) => {
                    started = Err(anyhow::Error::new(err).context(format!(
                        "cannot start the process of rocket #{} ({:?})",
                        rocket.index,
                        command.get_program()
                    )));
                    break;
                }
            };
            if first {
                // wait-timeout sets up its SIGCHLD pipe on first use and panics if that
                // fails; do it now, while this process holds the fewest descriptors it
                // ever will, rather than later in the supervisor when starts hold some.
                let _ = child.wait_timeout(Duration::ZERO);
                first = false;
            }
            let now = Instant::now();
            *slots.alive.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            let flight = InFlight {
                rocket,
                child,
                lands: now + expected,
                deadline: now + bound,
                bound,
            };
            if to_supervisor.send(flight).is_err() {
                // The supervisor is gone (it only leaves early by panicking): stop here.
                break;
            }
        }
        // Hanging up tells the supervisor that no more children are coming.
        drop(to_supervisor);
        let landings = supervisor
            .join()
            .map_err(|_| anyhow::anyhow!("the rocket supervisor thread panicked"))?;
        anyhow::Ok((started, landings))
    })?;

    started?;
    if stop.load(Ordering::Relaxed) {
        // A child found stdout closed (`txguard rockets | head`): like a write of our own
        // into a closed pipe, this ends the run quietly.
        return Err(
            anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
                .context("a rocket found stdout closed"),
        );
    }
    Ok(Launched {
        launched: landings.launched,
        failures: landings.failures,
        spawn_retries: backoff.retries,
    })
}

fn wait_for_slot(slots: &Slots, jobs: Option<usize>) {
    let Some(cap) = jobs else { return };
    let mut alive = slots.alive.lock().unwrap_or_else(PoisonError::into_inner);
    while *alive >= cap {
        alive = slots
            .freed
            .wait(alive)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// The supervisor: reaps children in the order they should land, each with `wait_timeout`
/// bounded by its own deadline. Only one child is ever registered with `wait_timeout` at
/// a time, so each SIGCHLD costs one `waitpid`, not one per child alive (10,000 waiters
/// would make it quadratic), and no descriptors pile up.
fn land_all<'r>(
    arrivals: Receiver<InFlight<'r>>,
    slots: &Slots,
    stop: &AtomicBool,
    progress: &Progress,
) -> Landings {
    let mut landings = Landings::default();
    let mut in_flight: BinaryHeap<InFlight<'r>> = BinaryHeap::new();
    let mut starting = true;
    loop {
        if in_flight.is_empty() && starting {
            match arrivals.recv() {
                Ok(flight) => in_flight.push(flight),
                Err(_) => starting = false,
            }
        }
        while starting {
            match arrivals.try_recv() {
                Ok(flight) => in_flight.push(flight),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => starting = false,
            }
        }
        let Some(mut next) = in_flight.peek_mut() else {
            if starting {
                continue;
            }
            break;
        };
        let left = next.deadline.saturating_duration_since(Instant::now());
        let wait = if starting { left.min(SLICE) } else { left };
        let landed = match wait_bounded(&mut next.child, wait) {
            Ok(Some(status)) => Landed::Exited(status),
            Ok(None) if Instant::now() >= next.deadline => Landed::Overran,
            Ok(None) => continue,
            Err(err) => Landed::Lost(err),
        };
        let mut flight = PeekMut::pop(next);
        let outcome = match landed {
            Landed::Exited(status) => judge(status),
            Landed::Overran => Err(format!(
                "overran its bound of {:.1}s: killed{}",
                flight.bound.as_secs_f64(),
                kill_and_reap(&mut flight.child)
            )),
            Landed::Lost(err) => Err(format!(
                "waiting for it failed: {err}{}",
                kill_and_reap(&mut flight.child)
            )),
        };
        match outcome {
            Ok(Judged::Launched) => {
                landings.launched += 1;
                progress.inc();
            }
            Ok(Judged::StdoutClosed) => stop.store(true, Ordering::Relaxed),
            Err(reason) => landings.failures.push(Failure {
                index: flight.rocket.index,
                name: flight.rocket.name.clone(),
                reason,
            }),
        }
        *slots.alive.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        slots.freed.notify_one();
    }
    landings
}

enum Landed {
    Exited(ExitStatus),
    Overran,
    Lost(std::io::Error),
}

enum Judged {
    Launched,
    StdoutClosed,
}

/// Reads a child's exit status: success, stdout closed under it, or a failure reason.
fn judge(status: ExitStatus) -> Result<Judged, String> {
    if status.success() {
        return Ok(Judged::Launched);
    }
    match (status.code(), status.signal()) {
        (Some(STDOUT_CLOSED), _) | (_, Some(signal_hook::consts::SIGPIPE)) => {
            Ok(Judged::StdoutClosed)
        }
        (Some(code), _) => Err(format!("exited with code {code}")),
        (None, Some(signal)) => Err(format!("killed by signal {signal}")),
        (None, None) => Err(format!("ended with {status}")),
    }
}

/// Waits up to `wait` for the child to exit, through `wait_timeout`. That needs two
/// descriptors for the wait; when the process has none left (EMFILE), poll with
/// `try_wait`, which needs none, rather than give up on a healthy child.
fn wait_bounded(child: &mut Child, wait: Duration) -> std::io::Result<Option<ExitStatus>> {
    match child.wait_timeout(wait) {
        Err(err) if is_out_of_resources(&err) => {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            thread::sleep(wait.min(Duration::from_millis(1)));
            child.try_wait()
        }
        waited => waited,
    }
}

/// Kills an overrunning child and reaps it, so that it leaves no zombie behind; returns
/// a note for the failure message if even that went wrong.
fn kill_and_reap(child: &mut Child) -> String {
    if let Err(err) = child.kill() {
        return format!(" (kill failed: {err})");
    }
    // SIGKILL cannot be caught: the child is gone within moments; the bound only guards
    // against a kernel that never reports it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match wait_bounded(child, deadline.saturating_duration_since(Instant::now())) {
            Ok(Some(_)) => return String::new(),
            Ok(None) if Instant::now() < deadline => {}
            Ok(None) => return " (and it was still not reaped 10s after SIGKILL)".into(),
            Err(err) => return format!(" (reaping failed: {err})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rockets::plan::Plan;

    fn shell(script: &str, bound: Duration) -> Launch {
        let mut command = Command::new("sh");
        command.arg("-c").arg(script).stdin(Stdio::null());
        Launch {
            command,
            expected: Duration::ZERO,
            bound,
        }
    }

    #[test]
    fn well_behaved_children_all_land() {
        let plan = Plan::new(1, 20);
        let order = plan.longest_first();
        let landed = supervise(&order, Some(4), &Progress::hidden(), |_| {
            shell("exit 0", Duration::from_secs(30))
        })
        .expect("supervise");
        assert_eq!(landed.launched, 20);
        assert!(landed.failures.is_empty());
    }

    #[test]
    fn failing_and_hung_children_are_reported_and_reaped() {
        let plan = Plan::new(2, 6);
        let order = plan.longest_first();
        let start = Instant::now();
        let landed = supervise(&order, None, &Progress::hidden(), |rocket| {
            match rocket.index {
                1 => shell("exit 3", Duration::from_secs(30)),
                2 => shell("kill -9 $$", Duration::from_secs(30)),
                3 => shell("exec sleep 60", Duration::from_millis(200)),
                _ => shell("exit 0", Duration::from_secs(30)),
            }
        })
        .expect("supervise");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a hung child was not killed"
        );
        assert_eq!(landed.launched, 3);
        let mut reasons: Vec<(usize, String)> = landed
            .failures
            .into_iter()
            .map(|f| (f.index, f.reason))
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            [
                (1, "exited with code 3".to_owned()),
                (2, "killed by signal 9".to_owned()),
                (3, "overran its bound of 0.2s: killed".to_owned()),
            ]
        );
    }

    #[test]
    fn a_missing_program_fails_the_run_after_reaping_the_others() {
        let plan = Plan::new(3, 5);
        let order = plan.longest_first();
        let got = supervise(&order, None, &Progress::hidden(), |rocket| {
            if rocket.index == order[2].index {
                Launch {
                    command: Command::new("/nonexistent/txguard-rocket"),
                    expected: Duration::ZERO,
                    bound: Duration::from_secs(1),
                }
            } else {
                shell("exit 0", Duration::from_secs(30))
            }
        });
        let err = got.expect_err("cannot start");
        assert!(
            format!("{err:#}").contains("cannot start the process of rocket"),
            "{err:#}"
        );
    }

    #[test]
    fn children_are_reaped_in_landing_order_even_when_started_otherwise() {
        // The long child is started first; the short ones must not wait for it to be
        // reaped before their slots free up (2 slots, 6 short children, 1 long).
        let plan = Plan::new(4, 7);
        let order = plan.longest_first();
        let long = order[0].index;
        let start = Instant::now();
        let landed = supervise(&order, Some(2), &Progress::hidden(), |rocket| {
            if rocket.index == long {
                let mut launch = shell("sleep 1", Duration::from_secs(30));
                launch.expected = Duration::from_secs(1);
                launch
            } else {
                shell("exit 0", Duration::from_secs(30))
            }
        })
        .expect("supervise");
        assert_eq!(landed.launched, 7);
        assert!(
            start.elapsed() < Duration::from_millis(1900),
            "{:?}",
            start.elapsed()
        );
    }
}
