//! The one place that knows indicatif: progress bars on stderr, drawn only where a
//! person can see them. `txguard run`'s bar is positioned on bytes of input read (so the
//! ETA is real for files); `txguard rockets` counts rockets launched.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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

/// A handle the reader stage moves forward; clones share one bar.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `total` bytes (a spinner when the size is unknown, e.g. stdin).
    pub fn new(when: ProgressWhen, total: Option<u64>) -> Progress {
        let Some(target) = draw_target(when) else {
            return Progress {
                bar: ProgressBar::hidden(),
            };
        };
        let template = match total {
            Some(_) => {
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})"
            }
            None => "{spinner} [{elapsed_precise}] {bytes} read ({bytes_per_sec})",
        };
        let bar = ProgressBar::with_draw_target(total, target)
            .with_style(ProgressStyle::with_template(template).expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar }
    }

    /// No bar at all.
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
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
        Progress { bar }
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
    }
}
