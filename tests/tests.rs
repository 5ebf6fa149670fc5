//! One integration-test binary (links once, runs fast); each module drives the real
//! `txguard` binary in a fresh temporary directory.

mod workdir;

mod check_generate;
mod cron;
mod decisions;
mod diff;
mod diff_history;
mod ecosystem;
mod executor_parity;
mod files;
mod fuzz;
mod hostile;
mod merge;
mod processes;
mod rockets;
mod rules_once;
mod run;
mod shards;
mod spark;
mod windows;
mod windows_attack;
mod windows_review;
