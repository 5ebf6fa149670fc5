//! A memory budget for each rule evaluation: the process's global allocator is the system
//! allocator, counting, per thread, the bytes allocated minus the bytes freed. An
//! evaluation starts a budget on its thread (`start`), and the engine's progress callback,
//! called on every Rhai operation, asks whether it has been exceeded (`exceeded`: one
//! thread-local read and a compare), so a script that hoards memory stops with an `error`
//! (`memory limit exceeded (256 MiB)`) long before the process is in danger.
//!
//! The check is cooperative, like the deadline: it happens between operations. One Rhai
//! operation allocates at most about what already exists (a clone of the script's data) or
//! a bounded amount (strings are capped at 16 KiB), so an evaluation peaks at about twice
//! its budget. Worker processes add a hard backstop from the kernel (`limit_data`), sized
//! by `worker_data_limit`; a worker killed by it is recognised by `died_of_memory`.
//!
//! Counting is per thread and net: memory a thread frees that another allocated makes its
//! count go down (it may go negative), and memory allocated on one thread never counts
//! against another thread's budget. Only the thread that evaluates is measured, which is
//! right: a Rhai evaluation runs entirely on its caller's thread.

use std::alloc::{GlobalAlloc, Layout, System};

use crate::size::display_size as human;
use std::cell::Cell;

/// The documented default budget of one evaluation: 256 MiB.
pub const DEFAULT_LIMIT: usize = 256 << 20;

/// The system allocator, counting the bytes each thread allocates and frees.
pub struct CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

thread_local! {
    // All three are `const`-initialised `Cell`s of plain integers: no lazy initialisation,
    // no destructor. Such thread-locals are a `#[thread_local]` static on the platforms
    // txguard runs on: reading them never allocates, never registers a destructor, and is
    // valid at any point of the thread's life, including while it is being torn down. That
    // is what makes them usable from inside the global allocator (see `count`).

    /// Bytes allocated minus bytes freed by this thread since it started (wrapping).
    static NET: Cell<isize> = const { Cell::new(0) };
    /// `NET` when the running budget started.
    static START: Cell<isize> = const { Cell::new(0) };
    /// The running budget in bytes; `isize::MAX` when none runs (never exceeded).
    static LIMIT: Cell<isize> = const { Cell::new(isize::MAX) };
}

/// Adds `delta` to this thread's count. Must not allocate, panic or unwind: it runs inside
/// the allocator. `try_with` cannot fail for these thread-locals (they have no destroyed
/// state), and if it ever did the allocation would merely go uncounted. Wrapping
/// arithmetic: no overflow check that could panic.
#[inline(always)]
fn count(delta: isize) {
    let _ = NET.try_with(|net| net.set(net.get().wrapping_add(delta)));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System` upholds the `GlobalAlloc` contract (alignment, sizes, ownership of blocks); the
// wrapper only adds `count`, which touches a `const`-initialised thread-local `Cell<isize>`
// without destructor. Such an access does not allocate (no recursion into the allocator),
// cannot panic or unwind (`try_with`, wrapping arithmetic), holds no lock (no deadlock when
// an allocation happens inside another one, or in a signal handler that malloc would also
// break), and is sound during thread start-up and teardown (no lazy state, no destructor
// that could have run). A block is counted only when `System` actually returned it, and
// freed with the layout it was allocated with, so a thread's count is exact.
unsafe impl GlobalAlloc for CountingAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`: `ptr` came from this allocator (so
        // from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc`, passed on unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // On failure the old block is untouched and still counted.
            count((new_size as isize).wrapping_sub(layout.size() as isize));
        }
        new
    }
}

/// Starts a budget of `limit` bytes on this thread: from now on, `exceeded` is true while
/// the thread holds more than `limit` bytes more than it did now. Replaces any budget
/// running on this thread.
#[inline]
pub fn start(limit: usize) {
    START.set(NET.get());
    LIMIT.set(isize::try_from(limit).unwrap_or(isize::MAX));
}

/// Ends this thread's budget: `exceeded` is false until the next `start`.
#[inline]
pub fn stop() {
    LIMIT.set(isize::MAX);
}

/// Starts a budget that ends when the returned guard is dropped (also on unwinding).
#[must_use = "the budget ends when the guard is dropped"]
pub fn scoped(limit: usize) -> Guard {
    start(limit);
    Guard {
        _not_send: std::marker::PhantomData,
    }
}

/// Ends its thread's budget when dropped. Not `Send`: the budget belongs to one thread.
pub struct Guard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        stop();
    }
}

/// Whether this thread holds more than its budget allows. Cheap enough for every Rhai
/// operation: three thread-local reads, a subtraction and a compare.
#[inline]
pub fn exceeded() -> bool {
    NET.get().wrapping_sub(START.get()) > LIMIT.get()
}

/// Net bytes this thread allocated since its budget started (0 if it freed more).
pub fn used() -> usize {
    NET.get().wrapping_sub(START.get()).max(0) as usize
}

/// Net bytes this thread allocated since it started (negative if it freed more than it
/// allocated: memory handed over by other threads).
pub fn thread_net() -> isize {
    NET.get()
}

/// The result's message for an evaluation stopped by its budget, e.g.
/// `memory limit exceeded (256 MiB)`.
pub fn exceeded_message(limit: usize) -> String {
    format!("memory limit exceeded ({})", human(limit))
}

/// The smallest budget accepted: below it even an ordinary evaluation (its scope, a few
/// strings) would fail.
pub const MIN_LIMIT: usize = 1 << 20;

/// Parses a budget as people write it (`crate::size::parse_size`: `256MiB`, `1GiB`,
/// `300MB`); at least `MIN_LIMIT`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = crate::size::parse_size(text)?;
    if bytes < MIN_LIMIT {
        return Err(format!(
            "{:?} is below the minimum of {}",
            text.trim(),
            human(MIN_LIMIT)
        ));
    }
    Ok(bytes)
}

/// Headroom of a worker process's hard data limit for its runtime (the engine and
/// compiled rules, buffers, malloc's slack), besides the requests it reads.
pub const WORKER_RUNTIME: usize = 256 << 20;

/// The hard limit (`RLIMIT_DATA`) of a worker process whose evaluations have `budget`
/// bytes each and run on a thread of `eval_stack` bytes, reading requests of at most
/// `largest_request` bytes: twice the budget (the cooperative check may let one operation
/// copy what the script already holds), plus the stack, plus `WORKER_RUNTIME`, plus the
/// largest request twice (the frame's bytes, then its rows). Past it the kernel refuses memory and the worker aborts with
/// `memory allocation of N bytes failed` (see `died_of_memory`), instead of the machine
/// swapping or its OOM killer choosing a victim.
pub fn worker_data_limit(budget: usize, eval_stack: usize, largest_request: usize) -> u64 {
    (budget as u64)
        .saturating_mul(2)
        .saturating_add(eval_stack as u64)
        .saturating_add(WORKER_RUNTIME as u64)
        .saturating_add((largest_request as u64).saturating_mul(2))
}

/// Sets this process's `RLIMIT_DATA` (soft and hard) to `bytes`: private writable memory
/// (heap, anonymous mappings, thread stacks), not code, shared libraries or shared memory.
/// Makes only the `setrlimit` system call, so it may run in `Command::pre_exec` (between
/// fork and exec, where only async-signal-safe calls are allowed).
pub fn limit_data(bytes: u64) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let limit = Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    setrlimit(Resource::Data, limit).map_err(std::io::Error::from)
}

/// Whether a worker that ended with `status`, having written `stderr_tail`, died for lack
/// of memory: Rust's allocation-failure handler writes `memory allocation of N bytes
/// failed` and aborts (SIGABRT). A SIGKILL alone is not taken for one: it is also what an
/// operator's `kill -9` and the supervisor's own deadline kills look like.
pub fn died_of_memory(status: std::process::ExitStatus, stderr_tail: &str) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(rustix::process::Signal::ABORT.as_raw())
        && stderr_tail
            .lines()
            .any(|line| line.starts_with("memory allocation of") && line.ends_with("failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    const MIB: usize = 1 << 20;

    /// Runs `body` on a fresh thread, so that nothing else the test harness does on its
    /// own threads is counted.
    fn on_fresh_thread<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(body).join().unwrap()
    }

    /// 1 MiB blocks, allocated but never touched: the kernel maps them lazily, so this
    /// costs address space, not memory.
    fn block() -> Vec<u8> {
        black_box(Vec::with_capacity(MIB))
    }

    #[test]
    fn a_thread_going_past_its_budget_is_seen_within_one_step_and_frees_bring_it_back() {
        on_fresh_thread(|| {
            let _budget = scoped(DEFAULT_LIMIT);
            let mut held = Vec::with_capacity(400);
            let mut seen_at = None;
            for _ in 0..300 {
                held.push(block());
                if exceeded() && seen_at.is_none() {
                    seen_at = Some(used());
                }
            }
            let seen_at = seen_at.expect("300 MiB under a 256 MiB budget is seen");
            assert!(
                seen_at > DEFAULT_LIMIT && seen_at < DEFAULT_LIMIT + MIB + 64 * 1024,
                "seen at {seen_at} bytes"
            );
            assert!(used() >= 300 * MIB);
            held.truncate(200);
            assert!(!exceeded(), "{} bytes after freeing 100 MiB", used());
            drop(held);
            assert!(used() < MIB, "{} bytes left", used());
        });
    }

    #[test]
    fn other_threads_allocations_do_not_count() {
        on_fresh_thread(|| {
            let _budget = scoped(10 * MIB);
            let other = std::thread::spawn(|| (0..64).map(|_| block()).collect::<Vec<_>>());
            let blocks = other.join().unwrap();
            assert!(!exceeded(), "{} bytes", used());
            assert!(used() < MIB, "{} bytes", used());
            // Freeing what another thread allocated lowers this thread's count.
            let before = thread_net();
            drop(blocks);
            assert!(thread_net() <= before - 64 * MIB as isize);
            assert!(!exceeded());
        });
    }

    #[test]
    fn reallocation_counts_by_its_difference_and_stop_ends_the_budget() {
        on_fresh_thread(|| {
            start(4 * MIB);
            let mut v: Vec<u8> = black_box(Vec::with_capacity(MIB));
            let after_one = used();
            assert!((MIB..MIB + 4096).contains(&after_one), "{after_one}");
            v.reserve_exact(8 * MIB); // capacity for 8 MiB more than its length, 0
            assert!(used() >= 8 * MIB && used() < 8 * MIB + 4096, "{}", used());
            assert!(exceeded());
            v.shrink_to(2 * MIB);
            assert!(used() < 3 * MIB, "{}", used());
            assert!(!exceeded());
            v.reserve_exact(10 * MIB);
            assert!(exceeded());
            stop();
            assert!(!exceeded(), "no budget runs after stop");
            drop(v);
            // A new budget starts from what the thread holds now.
            start(MIB);
            assert_eq!(used(), 0);
            let w = block();
            assert!(!exceeded());
            let x = block();
            assert!(exceeded());
            drop((w, x));
            stop();
        });
    }

    #[test]
    fn zeroed_allocations_count_too_and_a_guard_stops_on_unwind() {
        on_fresh_thread(|| {
            let caught = std::panic::catch_unwind(|| {
                let _budget = scoped(MIB);
                let v = black_box(vec![0u8; 2 * MIB]);
                assert!(exceeded());
                drop(v);
                std::panic::resume_unwind(Box::new("unwinding through the guard"));
            });
            assert!(caught.is_err());
            assert!(!exceeded(), "the guard ended the budget while unwinding");
        });
    }

    #[test]
    fn messages_name_the_limit_as_people_write_it() {
        assert_eq!(
            exceeded_message(DEFAULT_LIMIT),
            "memory limit exceeded (256 MiB)"
        );
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(1536 << 10), "1536 KiB");
        assert_eq!(human(1000), "1000 B");
        assert_eq!(
            worker_data_limit(DEFAULT_LIMIT, 64 * MIB, 80 * MIB),
            ((2 * 256 + 64 + 256 + 2 * 80) * MIB) as u64
        );
    }

    #[test]
    fn sizes_parse_as_people_write_them() {
        assert_eq!(parse_size("256MiB"), Ok(DEFAULT_LIMIT));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("300MB"), Ok(300_000_000));
        assert_eq!(parse_size("2000000"), Ok(2_000_000));
        assert!(parse_size("12x").unwrap_err().contains("is not a size"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1KiB").unwrap_err().contains("minimum"));
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("is not a size")
        );
    }

    #[test]
    fn a_memory_death_is_an_abort_that_says_so() {
        use rustix::process::Signal;
        use std::os::unix::process::ExitStatusExt;
        let abort = std::process::ExitStatus::from_raw(Signal::ABORT.as_raw());
        let kill = std::process::ExitStatus::from_raw(Signal::KILL.as_raw());
        let said = "memory allocation of 1048576 bytes failed";
        assert!(died_of_memory(abort, said));
        assert!(died_of_memory(
            abort,
            &format!("some earlier line\n{said}\n")
        ));
        assert!(!died_of_memory(
            abort,
            "thread panicked: index out of bounds"
        ));
        assert!(!died_of_memory(kill, said));
    }

    /// The kernel backstop in a real child process: under `limit_data`, allocating past
    /// the limit aborts the child with the allocation-failure message, which
    /// `died_of_memory` recognises. The child is this test binary, re-run on one test.
    #[test]
    fn a_child_past_its_data_limit_dies_of_memory() {
        const CHILD: &str = "TXGUARD_BUDGET_TEST_CHILD";
        if std::env::var_os(CHILD).is_some() {
            limit_data(64 * MIB as u64).unwrap();
            let mut held = Vec::new();
            for _ in 0..256 {
                // Touched, so that it really is private writable memory.
                held.push(black_box(vec![1u8; MIB]));
            }
            std::process::exit(0);
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "budget::tests::a_child_past_its_data_limit_dies_of_memory",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            died_of_memory(out.status, &stderr),
            "{:?}\n{stderr}",
            out.status
        );
    }
}
