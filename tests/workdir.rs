//! Test fixture (after xsv's `workdir.rs`): a fresh temporary directory per test, files
//! written into it, the real `txguard` binary run inside it, and on failure everything
//! needed to see why: the command, the directory, the status, stdout and stderr.
//!
//! A test reads as input, command, expected output:
//!
//! ```text
//! let wd = Workdir::new("name");
//! wd.create("tx.csv", "id,amount\n1,5\n");
//! wd.rules(&rules_with_columns(&rule(1, "amount > 1.0")));
//! wd.txguard_run(&["-o", "-", "-q"]).expect_success().expect_stdout(RESULTS_HEADER + ...);
//! ```

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

/// The header of every results file.
pub const RESULTS_HEADER: &str = "transaction_id,rule_id,result,detail\n";

/// A rules file with one rule that is always true (no `[columns]`).
pub const TRUE_RULE: &str = "[[rule]]\nid = 1\nname = \"a\"\nwhen = \"true\"\n";

/// A `[[rule]]` table named `rule{id}`.
pub fn rule(id: i64, when: &str) -> String {
    format!("[[rule]]\nid = {id}\nname = \"rule{id}\"\nwhen = '''{when}'''\n\n")
}

/// A rules file declaring `id` int and `amount` float, with the given `[[rule]]` tables.
pub fn rules_with_columns(body: &str) -> String {
    format!("[columns]\nid = \"int\"\namount = \"float\"\n\n{body}")
}

pub struct Workdir {
    dir: tempfile::TempDir,
}

/// What `snapshot` saw at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File {
        bytes: Vec<u8>,
        mode: u32,
    },
    Dir,
    Symlink(PathBuf),
    /// A FIFO, socket or device: never opened.
    Special,
}

impl Workdir {
    /// A fresh empty directory; `name` only labels it for people reading a failure.
    pub fn new(name: &str) -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("txguard-{name}-"))
            .tempdir()
            .expect("create temp dir");
        Workdir { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` (text or bytes) to `name` inside the directory.
    pub fn create(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).expect("write fixture file");
        path
    }

    /// Writes `rules.toml`, the rules file `txguard_run` uses.
    pub fn rules(&self, contents: impl AsRef<[u8]>) -> PathBuf {
        self.create("rules.toml", contents)
    }

    /// Writes `count` generated transactions (`txguard generate`) to `name`.
    pub fn generate(&self, name: &str, count: u64, seed: u64) {
        self.run(&[
            "generate",
            "-n",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "-o",
            name,
        ])
        .expect_success();
        // `generate -o` locks its output like `run -o`; the empty lock file is no part
        // of the fixture's input.
        let _ = fs::remove_file(self.path(&format!("{name}.lock")));
    }

    pub fn mkdir(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        fs::create_dir_all(&path).expect("create fixture directory");
        path
    }

    /// `ln -s target link`, with `target` as written (relative to the link's directory).
    pub fn symlink(&self, target: &str, link: &str) {
        std::os::unix::fs::symlink(target, self.path(link)).expect("create symlink");
    }

    pub fn is_symlink(&self, name: &str) -> bool {
        self.path(name).is_symlink()
    }

    /// The permission bits of `name` (e.g. `0o600`).
    pub fn mode(&self, name: &str) -> u32 {
        let meta = fs::metadata(self.path(name))
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path(name).display()));
        meta.permissions().mode() & 0o7777
    }

    pub fn set_mode(&self, name: &str, mode: u32) {
        fs::set_permissions(self.path(name), fs::Permissions::from_mode(mode)).expect("chmod");
    }

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name))
            .unwrap_or_else(|e| panic!("read {}: {e}", self.path(name).display()))
    }

    pub fn read_bytes(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name))
            .unwrap_or_else(|e| panic!("read {}: {e}", self.path(name).display()))
    }

    /// The first field of every record after the header of the CSV `name`: the line
    /// numbers of a rejects file.
    pub fn first_column(&self, name: &str) -> Vec<String> {
        let mut reader = csv::Reader::from_path(self.path(name)).expect("open CSV");
        reader
            .byte_records()
            .map(|r| String::from_utf8_lossy(&r.expect("read CSV record")[0]).into_owned())
            .collect()
    }

    /// Parses the JSON file `name`.
    pub fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.read(name))
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}\n{}", self.read(name)))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Names of the entries in the directory, sorted.
    pub fn listing(&self) -> Vec<String> {
        self.listing_of(".")
    }

    /// Names of the entries in the subdirectory `dir`, sorted.
    pub fn listing_of(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every path under the directory with what it is: contents and mode of files,
    /// targets of symlinks (never followed).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Entry> {
        fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Entry>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let name = path.strip_prefix(root).unwrap().to_path_buf();
                if meta.file_type().is_symlink() {
                    into.insert(name, Entry::Symlink(fs::read_link(&path).unwrap()));
                } else if meta.is_dir() {
                    into.insert(name, Entry::Dir);
                    walk(root, &path, into);
                } else if meta.is_file() {
                    let bytes = fs::read(&path).unwrap_or_default();
                    let mode = meta.permissions().mode() & 0o7777;
                    into.insert(name, Entry::File { bytes, mode });
                } else {
                    into.insert(name, Entry::Special);
                }
            }
        }
        let mut entries = BTreeMap::new();
        walk(self.root(), self.root(), &mut entries);
        entries
    }

    /// Inodes of every path under the directory (symlinks not followed).
    fn inodes(&self) -> Vec<u64> {
        fn walk(dir: &Path, into: &mut Vec<u64>) {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                    continue;
                };
                into.push(meta.ino());
                if meta.is_dir() {
                    walk(&entry.path(), into);
                }
            }
        }
        let mut inodes = Vec::new();
        walk(self.root(), &mut inodes);
        inodes
    }

    /// Asserts that nothing under the directory was created, removed or modified since
    /// `before` was taken.
    #[track_caller]
    pub fn expect_unchanged(&self, before: &BTreeMap<PathBuf, Entry>, run: &Run) {
        let after = self.snapshot();
        let names: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
        let changed: Vec<String> = names
            .into_iter()
            .filter(|name| before.get(*name) != after.get(*name))
            .map(|name| match (before.get(name), after.get(name)) {
                (None, _) => format!("created {}", name.display()),
                (_, None) => format!("removed {}", name.display()),
                _ => format!("modified {}", name.display()),
            })
            .collect();
        assert!(
            changed.is_empty(),
            "the run changed files: {changed:?}\n{}",
            run.describe()
        );
    }

    /// `txguard ARGS` with the directory as its working directory and no stdin.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_txguard"));
        cmd.args(args).current_dir(self.root()).stdin(Stdio::null());
        cmd
    }

    /// Runs `txguard ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        self.output_of(&mut cmd)
    }

    /// Runs `txguard run tx.csv --rules rules.toml ARGS` to completion.
    pub fn txguard_run(&self, args: &[&str]) -> Run {
        let mut all = vec!["run", "tx.csv", "--rules", "rules.toml"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Runs `txguard ARGS`; a run still going after `limit` is killed and fails the test
    /// ("did not hang" bounds only, never a timing assertion).
    pub fn run_within(&self, limit: Duration, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        self.output_within(limit, &mut cmd)
    }

    /// Runs the shell script `script` in the directory, with `$TXGUARD` naming the binary:
    /// for what only a shell says shortly (`umask`, `>&-`, `ulimit`, pipes).
    pub fn sh(&self, script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .env("TXGUARD", env!("CARGO_BIN_EXE_txguard"))
            .current_dir(self.root())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `txguard ARGS` with `stdin` as its standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: impl AsRef<[u8]>) -> Run {
        use std::io::Write;
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn txguard");
        let bytes = stdin.as_ref().to_vec();
        let mut pipe = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
        let output = child.wait_with_output().expect("wait txguard");
        feeder.join().unwrap();
        Run::new(format!("{cmd:?}"), self.root(), output)
    }

    pub fn output_of(&self, cmd: &mut Command) -> Run {
        let output = cmd.output().expect("run txguard");
        Run::new(format!("{cmd:?}"), self.root(), output)
    }

    /// Runs `cmd` to completion within `limit`, or kills it and fails the test.
    pub fn output_within(&self, limit: Duration, cmd: &mut Command) -> Run {
        self.spawn(cmd).finish_within(limit)
    }

    /// Runs `txguard ARGS`, reads the first line of its standard output, then closes the
    /// pipe as `| head -1` does; the run must end within `limit` ("did not hang" bound).
    /// Returns that line and the run (stdout empty: the rest had no reader; stderr kept).
    pub fn first_line_then_close(&self, limit: Duration, args: &[&str]) -> (String, Run) {
        self.lines_then_close(limit, 1, args)
    }

    /// `first_line_then_close`, reading the first `n` lines (as `| head -n N`): the
    /// results on them were written whole before the pipe closed.
    pub fn lines_then_close(&self, limit: Duration, n: usize, args: &[&str]) -> (String, Run) {
        use std::io::{BufRead, BufReader};
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn txguard");
        let stderr = drain(child.stderr.take());
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..n {
            stdout.read_line(&mut first).expect("read a line");
        }
        drop(stdout);
        // The reader (our end of the pipe) is dropped here, like `| head -1` exiting.
        let running = Running {
            command: format!("{cmd:?}"),
            dir: self.root().to_path_buf(),
            child: Some(child),
            stdout: None,
            stderr: Some(stderr),
        };
        (first, running.finish_within(limit))
    }

    /// Starts `cmd` with stdout and stderr collected (by threads, so it never blocks on
    /// a full pipe); stdin stays as `cmd` says. Killed if dropped unfinished.
    pub fn spawn(&self, cmd: &mut Command) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Running {
            command: format!("{cmd:?}"),
            dir: self.root().to_path_buf(),
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Holds an exclusive `flock` on `name` (created if missing) from a child process,
    /// until the holder is dropped: the test process itself never has the file open, so
    /// no child spawned meanwhile by another test can inherit the lock.
    pub fn hold_lock(&self, name: &str) -> LockHolder {
        let child = Command::new("flock")
            .arg(self.path(name))
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn flock(1)");
        let holder = LockHolder { child };
        self.wait_for_a_lock();
        holder
    }

    /// Waits (30 s at most) until some file under the directory is locked by some process
    /// (`flock`, POSIX or OFD lock: whatever `/proc/locks` lists).
    pub fn wait_for_a_lock(&self) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let locked = locked_inodes();
            if self.inodes().iter().any(|ino| locked.contains(ino)) {
                return;
            }
            assert!(
                Instant::now() < until,
                "no file under {} was locked within 30 s",
                self.root().display()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Inodes of every file some process holds a lock on.
fn locked_inodes() -> BTreeSet<u64> {
    let locks = fs::read_to_string("/proc/locks").unwrap_or_default();
    locks
        .lines()
        .filter(|line| !line.contains("->"))
        .filter_map(|line| {
            // `1: FLOCK  ADVISORY  WRITE 17802 fe:00:5308553 0 EOF`: major:minor:inode.
            line.split_whitespace()
                .find(|field| field.matches(':').count() == 2)
                .and_then(|device_inode| device_inode.rsplit(':').next())
                .and_then(|inode| inode.parse().ok())
        })
        .collect()
}

/// Reads `pipe` to its end on a thread of its own, so the child never blocks on it.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// A command started by `Workdir::spawn`.
pub struct Running {
    command: String,
    dir: PathBuf,
    child: Option<Child>,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Its standard input, when spawned with `Stdio::piped()`.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.as_mut().and_then(|c| c.stdin.take())
    }

    /// Waits for the end within `limit` ("did not hang" bounds only, never a timing
    /// assertion); past it, kills the process and fails the test.
    pub fn finish_within(mut self, limit: Duration) -> Run {
        let mut child = self.child.take().expect("running");
        let status = child.wait_timeout(limit).expect("wait");
        let hung = status.is_none();
        if hung {
            let _ = child.kill();
        }
        let status = child.wait().expect("wait");
        let output = Output {
            status,
            stdout: self
                .stdout
                .take()
                .map(|t| t.join().unwrap())
                .unwrap_or_default(),
            stderr: self
                .stderr
                .take()
                .map(|t| t.join().unwrap())
                .unwrap_or_default(),
        };
        let run = Run::new(std::mem::take(&mut self.command), &self.dir, output);
        assert!(!hung, "still running after {limit:?}\n{}", run.describe());
        run
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A lock held by a `flock(1)` child; released (and the child reaped) when dropped.
pub struct LockHolder {
    child: Child,
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        // `cat` ends at the end of its input; flock(1) then exits and the lock is gone.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Waits (30 s at most) until process `pid` has a handler for SIGTERM and every one of
/// its threads is asleep (blocked in a system call), then a little longer.
pub fn wait_until_blocked(pid: u32) {
    let until = Instant::now() + Duration::from_secs(30);
    let sigterm_bit = 1u64 << (libc::SIGTERM - 1);
    loop {
        let caught = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))
                    .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            })
            .is_some_and(|mask| mask & sigterm_bit != 0);
        let asleep = fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks.flatten().all(|task| {
                    let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                    let state = stat
                        .rfind(')')
                        .and_then(|i| stat[i + 1..].trim().chars().next());
                    state == Some('S')
                })
            })
            .unwrap_or(false);
        if caught && asleep {
            thread::sleep(Duration::from_millis(200));
            return;
        }
        assert!(
            Instant::now() < until,
            "process {pid} never blocked with a SIGTERM handler"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to `pid`.
pub fn send(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a child we started and have not reaped.
    unsafe { libc::kill(pid as i32, signal) };
}

/// A finished run, with assertions that print everything on failure.
pub struct Run {
    pub command: String,
    pub dir: PathBuf,
    pub output: Output,
}

impl Run {
    fn new(command: String, dir: &Path, output: Output) -> Run {
        Run {
            command,
            dir: dir.to_path_buf(),
            output,
        }
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn describe(&self) -> String {
        format!(
            "command: {}\ndir: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.dir.display(),
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// Asserts the exit code and returns self for more checks.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            Some(code),
            "unexpected exit code\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn expect_success(&self) -> &Run {
        self.expect_code(0)
    }

    /// Asserts that the exit code is one of `codes`.
    #[track_caller]
    pub fn expect_code_in(&self, codes: &[i32]) -> &Run {
        assert!(
            self.code().is_some_and(|c| codes.contains(&c)),
            "exit code not in {codes:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stdout is exactly `expected`.
    #[track_caller]
    pub fn expect_stdout(&self, expected: &str) -> &Run {
        assert!(
            self.stdout() == expected,
            "stdout is not {expected:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stderr is exactly `expected`.
    #[track_caller]
    pub fn expect_stderr(&self, expected: &str) -> &Run {
        assert!(
            self.stderr() == expected,
            "stderr is not {expected:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn expect_stderr_contains(&self, needle: &str) -> &Run {
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stderr does not contain `needle`.
    #[track_caller]
    pub fn expect_stderr_lacks(&self, needle: &str) -> &Run {
        assert!(
            !self.stderr().contains(needle),
            "stderr has {needle:?}\n{}",
            self.describe()
        );
        self
    }
}

/// `bytes` gzip-compressed, as a compressed input or history.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}
