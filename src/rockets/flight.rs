//! One rocket's flight: wait the delay, count down, launch. The same code flies a rocket
//! on a thread of this process and in a child process, so every mode does the same work.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Workload;

/// A rocket ready to fly: its delay and countdown step already scaled to real time.
#[derive(Debug, Clone, Copy)]
pub struct Flight<'a> {
    /// Printed in the launch line.
    pub name: &'a str,
    /// Slept before the countdown starts.
    pub delay: Duration,
    /// Steps in the countdown; one `i...` line each.
    pub countdown: u32,
    /// Length of one countdown step.
    pub step: Duration,
    /// Whether a countdown step is slept or burned on the CPU.
    pub workload: Workload,
}

impl Flight<'_> {
    /// Wall time the flight takes when nothing else competes for the machine.
    pub fn expected(&self) -> Duration {
        self.delay
            .saturating_add(self.step.saturating_mul(self.countdown))
    }

    /// Flies the rocket, printing its lines on stdout unless `quiet`. Returns early,
    /// without the launch line, once `abort` is set (another rocket could not write).
    ///
    /// Sleeps aim at deadlines measured from the start of the flight rather than at
    /// fixed lengths, so the time taken to print a line does not accumulate.
    pub fn fly(&self, quiet: bool, abort: &AtomicBool) -> io::Result<()> {
        let start = Instant::now();
        sleep_until(start + self.delay);
        let mut mark = start + self.delay;
        for i in (0..self.countdown).rev() {
            if abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            if !quiet {
                write_line(format_args!("{i}..."))?;
            }
            match self.workload {
                Workload::Sleep => {
                    mark += self.step;
                    sleep_until(mark);
                }
                Workload::Spin => burn_cpu(self.step),
            }
        }
        if abort.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !quiet {
            write_line(format_args!("Rocket launched: {}", self.name))?;
        }
        Ok(())
    }
}

/// Writes one whole line to stdout with a single `write_all` under the stdout lock.
///
/// The line is formatted into one buffer first, newline included: no other thread can
/// write between its parts, and std's line-buffered stdout hands a complete line of this
/// size to the kernel in one write(2). Writes of fewer than PIPE_BUF bytes to a pipe are
/// atomic, so child processes sharing our stdout cannot interleave inside a line either.
/// This is what the original program got wrong: its threads' `print` wrote the text and
/// the newline separately, so lines were glued together or split.
fn write_line(text: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut line = Vec::with_capacity(32);
    line.write_fmt(text)?;
    line.push(b'\n');
    let mut out = io::stdout().lock();
    out.write_all(&line)?;
    // A no-op when the line writer already passed the line on; it matters only if a
    // line ever sat in the buffer, and then it must leave before the lock is released.
    out.flush()
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        thread::sleep(deadline - now);
    }
}

/// Burns `cpu` of this thread's CPU time (not wall time): a spinning rocket needs its
/// seconds of a core, so when rockets outnumber cores they take longer, as CPU-bound work
/// does. Alone on a core, CPU time and wall time are the same and the ideal still holds.
fn burn_cpu(cpu: Duration) {
    let Some(start) = thread_cpu_time() else {
        // No per-thread CPU clock: fall back to spinning on the wall clock.
        let deadline = Instant::now() + cpu;
        while Instant::now() < deadline {
            churn();
        }
        return;
    };
    while thread_cpu_time().map_or(Duration::MAX, |now| now.saturating_sub(start)) < cpu {
        // Reading the thread clock is a system call; between reads do ~20 µs of work so
        // the calls stay a small part of the time burned.
        churn();
    }
}

fn churn() {
    let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15_u64);
    for _ in 0..16_384 {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
}

fn thread_cpu_time() -> Option<Duration> {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_time_is_delay_plus_steps() {
        let flight = Flight {
            name: "abcd",
            delay: Duration::from_millis(300),
            countdown: 3,
            step: Duration::from_millis(100),
            workload: Workload::Sleep,
        };
        assert_eq!(flight.expected(), Duration::from_millis(600));
    }

    #[test]
    fn burning_cpu_takes_at_least_that_much_cpu() {
        let before = thread_cpu_time().expect("thread CPU clock");
        burn_cpu(Duration::from_millis(30));
        let used = thread_cpu_time().expect("thread CPU clock") - before;
        assert!(used >= Duration::from_millis(30), "{used:?}");
    }

    #[test]
    fn a_quiet_flight_takes_its_expected_time() {
        let flight = Flight {
            name: "abcd",
            delay: Duration::from_millis(20),
            countdown: 2,
            step: Duration::from_millis(10),
            workload: Workload::Sleep,
        };
        let start = Instant::now();
        flight.fly(true, &AtomicBool::new(false)).expect("fly");
        assert!(start.elapsed() >= Duration::from_millis(40));
    }
}
