//! The three in-process modes: `sequential` (one after another), `rayon` (a pool of
//! `--jobs` threads) and `threads` (one small-stacked OS thread per rocket).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use anyhow::Context;
use rayon::prelude::*;

use super::plan::{Plan, Rocket};
use super::{Launched, Settings};
use crate::backoff::Backoff;
use crate::progress::Progress;

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
                self.progress.inc();
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
/// flying finish and release theirs.
///
/// Every thread is joined, so the wall time covers each thread's whole life, teardown
/// included (a detached thread can still be unmapping its stacks after the scope has
/// seen its closure return). Finished threads are joined along the way too, so their
/// stacks go back to the allocator's cache for the threads still to come.
pub fn threads(plan: &Plan, settings: &Settings, progress: &Progress) -> anyhow::Result<Launched> {
    let tower = Tower::new(settings, progress);
    let mut backoff = Backoff::new();
    let order = plan.longest_first();
    thread::scope(|scope| {
        let mut flying = Vec::new();
        for (started, rocket) in order.into_iter().enumerate() {
            if tower.abort.load(Ordering::Relaxed) {
                break;
            }
            if started % JOIN_EVERY == 0 {
                join_finished(&mut flying);
            }
            let tower = &tower;
            let spawned = backoff.retry(
                || {
                    thread::Builder::new()
                        .stack_size(ROCKET_STACK)
                        .spawn_scoped(scope, move || tower.fly(rocket))
                },
                |pause| {
                    join_finished(&mut flying);
                    thread::sleep(pause);
                },
            );
            match spawned {
                Ok(handle) => flying.push(handle),
                Err(err) => {
                    // Stop the rockets in flight too: the run has failed.
                    tower.fail(anyhow::Error::new(err).context(format!(
                        "cannot start the thread of rocket #{} even after waiting for resources",
                        rocket.index
                    )));
                    break;
                }
            }
        }
        for handle in flying {
            join(handle);
        }
    });
    tower.finish(backoff.retries)
}

/// Rockets started between two sweeps for finished threads: often enough to recycle
/// stacks, rarely enough that the sweeps cost nothing next to the starts.
const JOIN_EVERY: usize = 256;

fn join_finished(flying: &mut Vec<thread::ScopedJoinHandle<'_, ()>>) {
    let mut i = 0;
    while i < flying.len() {
        if flying[i].is_finished() {
            join(flying.swap_remove(i));
        } else {
            i += 1;
        }
    }
}

fn join(handle: thread::ScopedJoinHandle<'_, ()>) {
    // A flight does not panic; if one ever did, its panic is already printed and the
    // rocket is simply not counted as launched.
    let _ = handle.join();
}
