//! txguard: evaluate analyst-written rules on every transaction of a CSV batch.
//!
//! The run is a pipeline of four stages, one module each:
//! `input` (CSV → typed rows, in batches) → `exec` (every (row, rule) → one `Outcome`)
//! → `output` (reordered results CSV, atomic rename) with `summary` and `progress` beside.
//! The binary, the integration tests and the benches all use this library.

pub mod cli;
pub mod cmd;
pub mod exec;
pub mod exit;
pub mod framer;
pub mod generate;
pub mod input;
pub mod outcome;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod rockets;
pub mod rules;
pub mod signals;
pub mod summary;
