//! The one place that knows indicatif: progress bars on stderr, drawn only where a
//! person can see them. `txguard run`'s bar is positioned on bytes of input read (so the
//! ETA is real for files) and says the transactions done, their rate, and the `error`
//! and `timeout` results so far; `txguard rockets` counts rockets launched. A bar shown
//! is registered, so that a signal's watchdog can clear it before its last line.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::ProgressWhen;

/// Where to draw, or `None` for no bar. indicatif's own stderr target hides itself off a
/// terminal, so `always` draws through a target that does not ask.
fn draw_target(when: ProgressWhen) -> Option<ProgressDrawTarget> {
    match when {
        ProgressWhen::Never => None,
        ProgressWhen::Auto => std::io::stderr()
            .is_terminal()
            .then(ProgressDrawTarget::stderr),
        ProgressWhen::Always => Some(ProgressDrawTarget::term_like_with_hz(
            Box::new(console::Term::stderr()),
            10,
        )),
    }
}

/// The bar on screen, if any: what `clear_shown` clears.
static SHOWN: Mutex<Option<Progress>> = Mutex::new(None);

/// Clears the bar on screen, if any (a signal's watchdog, before it says why it exits).
pub fn clear_shown() {
    let shown = SHOWN.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(progress) = shown {
        progress.bar.finish_and_clear();
    }
}

/// Counts of a run so far, for the bar's message.
struct Counts {
    /// Bytes of every input, when known.
    total: Option<u64>,
    /// Records framed so far, and the bytes they came from.
    records: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    transactions: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    /// Bytes of earlier inputs (several inputs: the bar covers them all).
    base: AtomicU64,
    /// When the message was last rewritten: at most 10 times a second.
    said: Mutex<Option<Instant>>,
}

/// A handle the lanes move forward as they read, and count results on as they write;
/// clones share one bar.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    counts: Arc<Counts>,
}

impl Progress {
    /// A bar over `total` bytes (a spinner when the size is unknown, e.g. stdin).
    pub fn new(when: ProgressWhen, total: Option<u64>) -> Progress {
        let Some(target) = draw_target(when) else {
            return Progress::hidden();
        };
        // With the input's size, the bar counts transactions toward an estimate of their
        // number (from the bytes read so far per record framed), so the percentage and
        // the ETA follow the work done, not the reading, which runs ahead of it.
        let template = match total {
            Some(_) => "{spinner} {elapsed_precise} {wide_bar} {percent:>3}% {msg}, ETA {eta}",
            None => "{spinner} {elapsed_precise} {msg}",
        };
        // A length of 1 until the first records are framed: 0 would read as 100%.
        let bar = ProgressBar::with_draw_target(total.map(|_| 1), target)
            .with_style(ProgressStyle::with_template(template).expect("valid template"));
        let progress = Progress {
            bar,
            counts: Arc::new(Counts::new(total)),
        };
        progress.say();
        progress.bar.enable_steady_tick(Duration::from_millis(200));
        *SHOWN.lock().unwrap_or_else(|p| p.into_inner()) = Some(progress.clone());
        progress
    }

    /// Records framed and bytes of the current input read so far (the reader).
    pub fn read(&self, records: u64, bytes_read: u64) {
        let c = &self.counts;
        let records = c.records.fetch_add(records, Ordering::Relaxed) + records;
        let bytes = c.base.load(Ordering::Relaxed) + bytes_read;
        c.bytes.store(bytes, Ordering::Relaxed);
        if let Some(total) = c.total
            && bytes > 0
        {
            let estimate = (records as u128 * u128::from(total) / u128::from(bytes)) as u64;
            self.bar.set_length(estimate.max(records).max(1));
        }
    }

    /// Transactions written (and bad rows skipped), with how many `error` and `timeout`
    /// results they gave (the writer).
    pub fn written(&self, transactions: u64, skipped: u64, errors: u64, timeouts: u64) {
        let c = &self.counts;
        self.bar.inc(transactions + skipped);
        c.transactions.fetch_add(transactions, Ordering::Relaxed);
        c.errors.fetch_add(errors, Ordering::Relaxed);
        c.timeouts.fetch_add(timeouts, Ordering::Relaxed);
        if self.bar.is_hidden() {
            return;
        }
        let mut said = c.said.lock().unwrap_or_else(|p| p.into_inner());
        if said.is_none_or(|at| at.elapsed() >= Duration::from_millis(100)) {
            *said = Some(Instant::now());
            drop(said);
            self.say();
        }
    }

    /// Bytes of the inputs before the current one: bytes read after this add to them.
    pub fn next_input(&self, bytes_before: u64) {
        self.counts.base.store(bytes_before, Ordering::Relaxed);
    }

    /// `12,345 tx, 4,567 tx/s, 3 error, 0 timeout` (and `, 12.5 MiB read` without a size).
    fn say(&self) {
        let c = &self.counts;
        let done = c.transactions.load(Ordering::Relaxed);
        let secs = c.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            (done as f64 / secs) as u64
        } else {
            0
        };
        let mut message = format!(
            "{} tx, {} tx/s, {} error, {} timeout",
            HumanCount(done),
            HumanCount(rate),
            HumanCount(c.errors.load(Ordering::Relaxed)),
            HumanCount(c.timeouts.load(Ordering::Relaxed)),
        );
        if c.total.is_none() {
            message.push_str(&format!(
                ", {} read",
                HumanBytes(c.bytes.load(Ordering::Relaxed))
            ));
        }
        self.bar.set_message(message);
    }

    /// No bar at all.
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            counts: Arc::new(Counts::new(None)),
        }
    }

    /// A bar on stderr counting `what` up to `total` (the caller decided to draw it).
    pub fn counter(total: u64, what: &str) -> Progress {
        let template = format!(
            "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {what} ({{per_sec}})"
        );
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style);
        Progress {
            bar,
            counts: Arc::new(Counts::new(None)),
        }
    }

    /// One more item. Cheap and thread-safe: indicatif counts atomically and redraws at
    /// most a few times a second.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    /// Removes the bar so the summary that follows starts on a clean line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        let mut shown = SHOWN.lock().unwrap_or_else(|p| p.into_inner());
        if shown
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(&p.counts, &self.counts))
        {
            *shown = None;
        }
    }
}

impl Counts {
    fn new(total: Option<u64>) -> Counts {
        Counts {
            total,
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            transactions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            base: AtomicU64::new(0),
            said: Mutex::new(None),
        }
    }
}
