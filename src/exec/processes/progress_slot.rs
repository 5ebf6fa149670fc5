//! The progress slot: one page of shared memory (a memfd) through which a worker tells its
//! supervisor which evaluation it is running and since when, without a system call per
//! evaluation. The worker writes (request, evaluation index, start time) before each
//! evaluation and clears the start time after it; the supervisor reads the slot whenever
//! it wakes up and so knows the exact evaluation in flight and its deadline.
//!
//! One writer, one reader, a seqlock: the writer makes the sequence odd, writes, makes it
//! even again; the reader retries while it is odd or changed, so it never acts on a torn
//! triple. Every word is an atomic, so a torn read is a retry, never undefined behaviour.
//! A worker killed in the middle of a write leaves the sequence odd: each worker gets a
//! fresh slot, so that slot is simply never read again.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::{fs, mm};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering, fence};

/// The environment variable that tells a worker which inherited descriptor is its slot.
pub const SLOT_FD_ENV: &str = "TXGUARD_WORKER_SLOT_FD";

const PAGE: usize = 4096;
const WORDS: usize = 4;
const SEQ: usize = 0;
const REQUEST: usize = 1;
const INDEX: usize = 2;
const STARTED: usize = 3;

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the machine.
pub fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What the slot says at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Changes with every write: a changed sequence means the worker made progress.
    pub seq: u64,
    pub request: u64,
    /// The evaluation index last started.
    pub index: u64,
    /// When it started (`monotonic_ns`), or `None` when it has finished.
    pub started_ns: Option<u64>,
}

/// A mapped slot, shared by a supervisor and one worker process.
pub struct ProgressSlot {
    fd: OwnedFd,
    words: NonNull<AtomicU64>,
}

// SAFETY: the mapping is only ever accessed through atomics, from any thread.
unsafe impl Send for ProgressSlot {}
// SAFETY: as above: shared access is atomic access.
unsafe impl Sync for ProgressSlot {}

impl ProgressSlot {
    /// A fresh zeroed slot (supervisor side). The descriptor is close-on-exec: only the
    /// worker it is meant for inherits it (see `inheritable_in_child`).
    pub fn create() -> io::Result<ProgressSlot> {
        let fd = fs::memfd_create(c"txguard-progress", fs::MemfdFlags::CLOEXEC)?;
        fs::ftruncate(&fd, PAGE as u64)?;
        ProgressSlot::map(fd)
    }

    /// Maps the slot inherited as descriptor `raw` (worker side).
    pub fn open(raw: RawFd) -> io::Result<ProgressSlot> {
        // SAFETY: borrowed only for fstat, which reports a bad descriptor as an error.
        let st = fs::fstat(unsafe { BorrowedFd::borrow_raw(raw) })?;
        // SAFETY: fstat succeeded, so `raw` is an open descriptor, handed to us (by the
        // supervisor, through the environment) to own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if (st.st_size as usize) < WORDS * 8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {raw} is not a progress slot"),
            ));
        }
        ProgressSlot::map(fd)
    }

    fn map(fd: OwnedFd) -> io::Result<ProgressSlot> {
        // SAFETY: mapping one page of a file at least that long, shared, read-write, at an
        // address of the kernel's choosing (nothing else is there).
        let ptr = unsafe {
            mm::mmap(
                std::ptr::null_mut(),
                PAGE,
                mm::ProtFlags::READ | mm::ProtFlags::WRITE,
                mm::MapFlags::SHARED,
                &fd,
                0,
            )
        }?;
        let words =
            NonNull::new(ptr.cast::<AtomicU64>()).expect("mmap never returns null on success");
        Ok(ProgressSlot { fd, words })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < WORDS);
        // SAFETY: the page is mapped for our lifetime, page-aligned, and AtomicU64 has the
        // layout of u64; i < WORDS keeps us inside it.
        unsafe { &*self.words.as_ptr().add(i) }
    }

    /// Reads a consistent snapshot; `None` if the writer kept it busy for every try (it
    /// never does for long, unless it died mid-write).
    pub fn read(&self) -> Option<Snapshot> {
        for _ in 0..64 {
            let s1 = self.word(SEQ).load(Ordering::Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let request = self.word(REQUEST).load(Ordering::Relaxed);
            let index = self.word(INDEX).load(Ordering::Relaxed);
            let started = self.word(STARTED).load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            let s2 = self.word(SEQ).load(Ordering::Relaxed);
            if s1 == s2 {
                return Some(Snapshot {
                    seq: s1,
                    request,
                    index,
                    started_ns: (started != 0).then_some(started),
                });
            }
        }
        None
    }
}

impl Drop for ProgressSlot {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the page `map` mapped; no reference outlives self.
        let _ = unsafe { mm::munmap(self.words.as_ptr().cast(), PAGE) };
    }
}

/// The worker's side: the only writer of its slot.
pub struct SlotWriter {
    slot: ProgressSlot,
    seq: u64,
}

impl SlotWriter {
    pub fn new(slot: ProgressSlot) -> SlotWriter {
        let seq = slot.word(SEQ).load(Ordering::Relaxed) & !1;
        SlotWriter { slot, seq }
    }

    fn write(&mut self, request: u64, index: u64, started: u64) {
        let seq = &self.slot.word(SEQ);
        seq.store(self.seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.slot.word(REQUEST).store(request, Ordering::Relaxed);
        self.slot.word(INDEX).store(index, Ordering::Relaxed);
        self.slot.word(STARTED).store(started, Ordering::Relaxed);
        self.seq += 2;
        seq.store(self.seq, Ordering::Release);
    }

    /// Evaluation `index` of `request` starts at `now` (`monotonic_ns`).
    pub fn begin(&mut self, request: u64, index: u64, now: u64) {
        // 0 means "nothing in flight"; the monotonic clock is never 0 after boot.
        self.write(request, index, now.max(1));
    }

    /// The evaluation begun last has finished.
    pub fn end(&mut self, request: u64, index: u64) {
        self.write(request, index, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn a_writer_and_a_reader_agree_through_the_shared_page() {
        let slot = ProgressSlot::create().unwrap();
        assert_eq!(
            slot.read(),
            Some(Snapshot {
                seq: 0,
                request: 0,
                index: 0,
                started_ns: None
            })
        );
        // The worker's mapping is a second one of the same memfd, as after exec.
        let dup = rustix::io::dup(&slot.fd).unwrap().into_raw_fd();
        let mut writer = SlotWriter::new(ProgressSlot::open(dup).unwrap());
        let before = monotonic_ns();
        writer.begin(7, 42, monotonic_ns());
        let snap = slot.read().unwrap();
        assert_eq!((snap.request, snap.index), (7, 42));
        assert!(snap.started_ns.unwrap() >= before);
        writer.end(7, 42);
        let after = slot.read().unwrap();
        assert_eq!(after.started_ns, None);
        assert!(after.seq > snap.seq);
    }

    #[test]
    fn readers_never_see_a_torn_triple() {
        let slot = std::sync::Arc::new(ProgressSlot::create().unwrap());
        let dup = rustix::io::dup(&slot.fd).unwrap().into_raw_fd();
        let mut writer = SlotWriter::new(ProgressSlot::open(dup).unwrap());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (slot, stop) = (slot.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                // One read at least after the writer has finished (it then always
                // succeeds): on a loaded machine this thread may first run only then.
                loop {
                    let stopping = stop.load(Ordering::Acquire);
                    if let Some(s) = slot.read() {
                        // The writer always writes request == index.
                        assert_eq!(s.request, s.index);
                        seen += 1;
                    }
                    if stopping {
                        break;
                    }
                }
                seen
            })
        };
        for i in 0..200_000 {
            writer.begin(i, i, i + 1);
            writer.end(i, i);
        }
        stop.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
    }

    #[test]
    fn a_descriptor_that_is_not_a_slot_is_refused() {
        let file = tempfile::tempfile().unwrap();
        use std::os::fd::IntoRawFd;
        assert!(ProgressSlot::open(file.into_raw_fd()).is_err());
    }
}
