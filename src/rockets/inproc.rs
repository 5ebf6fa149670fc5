//! The three in-process modes: `sequential` (one after another), `rayon` (a pool of
//! `--jobs` threads) and `threads` (one small-stacked OS thread per rocket).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;

use anyhow::Context;
use rayon::prelude::*;

use super::backoff::Backoff;
use super::plan::{Plan, Rocket};
use super::progress::Progress;
use super::{Launched, Settings};

/// Stack of one rocket thread. A flight needs a few KiB (a sleep, a formatted line); 64 KiB
/// lets 10,000 threads live at once in well under a GiB of address space.
const ROCKET_STACK: usize = 64 * 1024;

/// What the rockets of one in-process run share: the settings, the progress bar, and the
/// first output error, which stops the other rockets.
struct Tower<'a> {
    settings: &'a Settings,
    progress: &'a Progress,
    launched: AtomicUsize,
    abort: AtomicBool,
    error: Mutex<Option<anyhow::Error>>,
}

impl<'a> Tower<'a> {
    fn new(settings: &'a Settings, progress: &'a Progress) -> Tower<'a> {
        Tower {
            settings,
            progress,
            launched: AtomicUsize::new(0),
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    fn fly(&self, rocket: &Rocket) {
        if self.abort.load(Ordering::Relaxed) {
            return;
        }
        let flight = self.settings.flight(rocket);
        match flight.fly(self.settings.quiet, &self.abort) {
            Ok(()) if !self.abort.load(Ordering::Relaxed) => {
                self.launched.fetch_add(1, Ordering::Relaxed);
                self.progress.launched();
            }
            Ok(()) => {}
            Err(err) => {
                self.fail(anyhow::Error::new(err).context("writing a rocket's line to stdout"));
            }
        }
    }

    /// Keeps the first error and tells every other rocket to stop.
    fn fail(&self, err: anyhow::Error) {
        self.abort.store(true, Ordering::Relaxed);
        let mut first = self
            .error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert(err);
    }

    fn finish(self, spawn_retries: u64) -> anyhow::Result<Launched> {
        let error = self
            .error
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(err) = error {
            return Err(err);
        }
        Ok(Launched {
            launched: self.launched.into_inner(),
            failures: Vec::new(),
            spawn_retries,
        })
    }
}

/// Flies every rocket on the calling thread, in plan order.
pub fn sequential(
    plan: &Plan,
    settings: &Settings,
    progress: &Progress,
) -> anyhow::Result<Launched> {
    let tower = Tower::new(settings, progress);
    for rocket in &plan.rockets {
        tower.fly(rocket);
    }
    tower.finish(0)
}

/// Flies the rockets on a rayon pool of `jobs` threads, longest first.
pub fn rayon(
    plan: &Plan,
    settings: &Settings,
    jobs: usize,
    progress: &Progress,
) -> anyhow::Result<Launched> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("rocket-pool-{i}"))
        .build()
        .context("starting the rayon pool")?;
    let tower = Tower::new(settings, progress);
    let order = plan.longest_first();
    // One rocket per task: rockets are long and uneven, so splitting down to single items
    // lets idle threads steal work instead of waiting behind a chunk of slow rockets.
    pool.install(|| {
        order
            .par_iter()
            .with_max_len(1)
            .for_each(|rocket| tower.fly(rocket))
    });
    tower.finish(0)
}

/// Flies every rocket on its own OS thread, all at once, longest first.
///
/// A thread that cannot be created for lack of resources (EAGAIN when the process or user
/// thread limit is reached, ENOMEM) is retried after a pause, while the rockets already
/// flying finish and release theirs. Handles are dropped at once (the threads are then
/// detached); the scope still waits for every thread before it returns.
///
/// A landed rocket's thread does not exit until the last rocket has started (`Gate`):
/// creating a thread maps its stack and exiting unmaps it, both under the one address
/// space lock, and exits fighting starts for that lock slowed the starts down (on the
/// 2-vCPU VM this was measured on, 10,000 threads at scale 0.01: median 1.08 s and
/// outliers past 2 s without the gate, 0.96 s with it). Rockets still fly on their own
/// time; only the teardown waits. The gate opens early if starting runs out of resources, so
/// that finished threads can give theirs back.
pub fn threads(plan: &Plan, settings: &Settings, progress: &Progress) -> anyhow::Result<Launched> {
    let tower = Tower::new(settings, progress);
    let gate = Gate::default();
    let mut backoff = Backoff::new();
    let order = plan.longest_first();
    thread::scope(|scope| {
        // Opens the gate when the spawning loop ends, however it ends (even by a panic),
        // before the scope waits for the threads: they could not finish otherwise.
        let _open_at_end = OpenOnDrop(&gate);
        for rocket in order {
            if tower.abort.load(Ordering::Relaxed) {
                break;
            }
            let (tower, gate) = (&tower, &gate);
            let spawned = backoff.retry(
                || {
                    thread::Builder::new()
                        .stack_size(ROCKET_STACK)
                        .spawn_scoped(scope, move || {
                            tower.fly(rocket);
                            gate.pass();
                        })
                        .map(drop)
                },
                |pause| {
                    gate.open();
                    thread::sleep(pause);
                },
            );
            if let Err(err) = spawned {
                // Stop the rockets in flight too: the run has failed.
                tower.fail(anyhow::Error::new(err).context(format!(
                    "cannot start the thread of rocket #{} even after waiting for resources",
                    rocket.index
                )));
                break;
            }
        }
    });
    tower.finish(backoff.retries)
}

/// Where landed rocket threads wait until it opens; once open, it stays open.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    /// Returns once the gate is open.
    fn pass(&self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while !*open {
            open = self
                .opened
                .wait(open)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn open(&self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if !*open {
            *open = true;
            self.opened.notify_all();
        }
    }
}

struct OpenOnDrop<'a>(&'a Gate);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}
