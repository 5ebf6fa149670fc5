//! Test fixture (after xsv's `workdir.rs`): a fresh temporary directory per test, files
//! written into it, the real `txguard` binary run inside it, and on failure everything
//! needed to see why: the command, the directory, the status, stdout and stderr.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Workdir {
    dir: tempfile::TempDir,
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

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name))
            .unwrap_or_else(|e| panic!("read {}: {e}", self.path(name).display()))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Names of the entries in the directory, sorted.
    pub fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
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

    fn describe(&self) -> String {
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
}
