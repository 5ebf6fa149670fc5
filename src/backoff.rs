//! Starting a thread or a process when the machine is out of them: wait and retry rather
//! than die. The original program crashed with "too many open files" after 9,997 starts;
//! here a resource error only slows the launch down until running work finishes. The one
//! retry policy of the program: rockets and the process executor's workers both use it.

use std::io;
use std::thread;
use std::time::Duration;

use rustix::io::Errno;

/// First wait after a resource error; it doubles on each further failure.
const FIRST_WAIT: Duration = Duration::from_millis(1);
/// Longest single wait: short enough to notice soon when resources come back.
const LONGEST_WAIT: Duration = Duration::from_millis(200);

/// Retries `start` while it fails for lack of resources, waiting longer each time.
#[derive(Debug)]
pub struct Backoff {
    /// Resource errors seen and retried so far, over the whole run.
    pub retries: u64,
    /// Give up once one start has kept failing this long.
    pub give_up_after: Duration,
}

impl Backoff {
    /// A backoff that gives up after a minute of failures in a row.
    pub fn new() -> Backoff {
        Backoff {
            retries: 0,
            give_up_after: Duration::from_secs(60),
        }
    }

    /// Calls `start` until it succeeds, fails with an error that is not about resources,
    /// or has failed for `give_up_after`. `pause` is called with each wait (it sleeps in
    /// real use; tests pass a fake) and may free resources meanwhile.
    pub fn retry<T>(
        &mut self,
        start: impl FnMut() -> io::Result<T>,
        pause: impl FnMut(Duration),
    ) -> io::Result<T> {
        self.retry_when(start, is_out_of_resources, pause)
    }

    /// `retry`, for any error: `transient` says which ones are worth waiting out.
    pub fn retry_when<T, E>(
        &mut self,
        mut start: impl FnMut() -> Result<T, E>,
        transient: impl Fn(&E) -> bool,
        mut pause: impl FnMut(Duration),
    ) -> Result<T, E> {
        let mut wait = FIRST_WAIT;
        let mut waited = Duration::ZERO;
        loop {
            match start() {
                Ok(value) => return Ok(value),
                Err(err) if transient(&err) && waited < self.give_up_after => {
                    self.retries += 1;
                    pause(wait);
                    waited += wait;
                    wait = (wait * 2).min(LONGEST_WAIT);
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `retry` with a real sleep between attempts.
    pub fn retry_sleeping<T>(&mut self, start: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        self.retry(start, thread::sleep)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Errors that mean "not now": too many processes or threads (EAGAIN), no memory for
/// one more (ENOMEM), or no file descriptor left in this process or the system.
pub fn is_out_of_resources(err: &io::Error) -> bool {
    let code = err.raw_os_error();
    [Errno::AGAIN, Errno::NOMEM, Errno::MFILE, Errno::NFILE]
        .iter()
        .any(|e| code == Some(e.raw_os_error()))
        || err.kind() == io::ErrorKind::WouldBlock
}

/// `is_out_of_resources` for any cause in an error's chain.
pub fn any_out_of_resources(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(is_out_of_resources)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eagain() -> io::Error {
        io::Error::from(Errno::AGAIN)
    }

    #[test]
    fn resource_errors_are_retried_with_growing_waits() {
        let mut backoff = Backoff::new();
        let mut failures_left = 5;
        let mut waits = Vec::new();
        let got = backoff.retry(
            || {
                if failures_left > 0 {
                    failures_left -= 1;
                    Err(eagain())
                } else {
                    Ok(42)
                }
            },
            |d| waits.push(d.as_millis()),
        );
        assert_eq!(got.expect("succeeds after retries"), 42);
        assert_eq!(backoff.retries, 5);
        assert_eq!(waits, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn other_errors_are_returned_at_once() {
        let mut backoff = Backoff::new();
        let mut calls = 0;
        let got: io::Result<()> = backoff.retry(
            || {
                calls += 1;
                Err(io::Error::from(Errno::NOENT))
            },
            |_| panic!("must not wait"),
        );
        assert_eq!(
            got.expect_err("fails").raw_os_error(),
            Some(Errno::NOENT.raw_os_error())
        );
        assert_eq!(calls, 1);
        assert_eq!(backoff.retries, 0);
    }

    #[test]
    fn endless_resource_errors_give_up_after_the_limit() {
        let mut backoff = Backoff {
            retries: 0,
            give_up_after: Duration::from_secs(1),
        };
        let mut waited = Duration::ZERO;
        let got: io::Result<()> = backoff.retry(|| Err(eagain()), |d| waited += d);
        assert_eq!(
            got.expect_err("gives up").raw_os_error(),
            Some(Errno::AGAIN.raw_os_error())
        );
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[test]
    fn the_errors_of_a_full_machine_count_as_resource_errors() {
        for code in [Errno::AGAIN, Errno::NOMEM, Errno::MFILE, Errno::NFILE] {
            assert!(is_out_of_resources(&io::Error::from(code)), "{code}");
        }
        assert!(!is_out_of_resources(&io::Error::from(Errno::NOENT)));
    }
}
