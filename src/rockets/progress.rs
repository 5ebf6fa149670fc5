//! The progress bar of launched rockets (indicatif), drawn on stderr only when asked.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counts launched rockets; either a bar on stderr or nothing at all.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Draws nothing (stderr is not a terminal, benches, tests).
    pub fn hidden() -> Progress {
        Progress { bar: None }
    }

    /// A bar on stderr counting up to `total` launched rockets.
    pub fn on_stderr(total: u64) -> Progress {
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} rockets launched ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style);
        Progress { bar: Some(bar) }
    }

    /// One more rocket launched. Cheap and thread-safe: indicatif counts atomically and
    /// redraws at most a few times a second.
    pub fn launched(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Removes the bar so the summary starts on a clean line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
