//! txguard: evaluate analyst-written rules on every transaction of a CSV batch.
//!
//! A run is a pipeline of stages, one module each, meeting only at the data model:
//!
//! ```text
//! cli ─► config ─► cmd::run ─► pipeline: input ─► exec ─► output
//!                                         (read)   (evaluate) (write, in order)
//! ```
//!
//! Module map:
//! - `model`: rows, columns, batches, outcomes, bad rows — the types every stage shares;
//! - `cli` (flags, clap), `config` (the checked run configuration), `duration`;
//! - `cmd/`: one file per subcommand; `main.rs` only dispatches to them;
//! - `dialect`: the CSV configuration every reader of transactions takes (delimiter,
//!   id column, longest record);
//! - `framer`: quote-aware record framing and exact shard boundaries (byte level);
//! - `decompress`: gzip and zstd inputs, recognised by their first bytes;
//! - `inputs`: several inputs of one run (headers aligned, each summarised);
//! - `input`: the transactions CSV opened, its header read; `typing`: framed records →
//!   typed rows (on the lanes); `format`: results as CSV bytes (on the lanes);
//! - `output`: atomic outputs and the lock; `size`: byte sizes (`64MiB`);
//! - `rules/`: the rules file (`file`), read once (`load`), and the sandboxed Rhai engine
//!   (`engine`, where `Evaluator::evaluate` is the only place a rule runs) and its
//!   `sandbox` (limits, the functions rules get, deadline and memory checks), and
//!   `native` (the common subset of scripts compiled to native code, a branch of
//!   `evaluate` giving Rhai's outcomes);
//! - `exec/`: executors hand out lanes — `threads` (rayon) and `processes` (supervised
//!   workers: `supervisor`, `worker_loop`, `worker_process`, `progress_slot`,
//!   `start_clock`), speaking `protocol`;
//! - `pipeline/`: `-j` lanes, each in turn framing the input, typing, evaluating and
//!   formatting tasks, and writing them in input order (no reader or writer thread),
//!   memory bounded by bytes in flight;
//! - `summary`, `progress`, `signals`, `exit`: what people see, and exit codes; `exit`
//!   (codes and the errors that decide them) and `cleanup` (temporary files, the exit
//!   lock) sit below every stage and import none;
//! - `rules/decision`: scores, reasons (templates) and `[decision]`; `format/analyst`
//!   renders them into `detail` and the `--decisions` lines; `diff/`: `txguard diff`'s
//!   changes and counts, its `pair` executor, `labels` and `report`;
//! - `lists`: reference lists (`[lists.*]`) read once and bound read-only in every rule;
//!   `windows`: per-key sliding-window arithmetic (`[windows.*]`), fed in input order by
//!   the windows stage `pipeline::windows` (checks on the lanes, then the arithmetic one
//!   task after another), whose values go with each row after its input columns;
//!   `rules::lists_windows` declares both;
//! - `generate`: synthetic transactions; `rockets/`: the concurrency workload;
//! - `shard` (`run --shard I/N`: exact byte ranges, part names, what parts record) and
//!   `merge` (checks that parts make up one whole run, and joins them; `cmd::merge`);
//! - `backoff`: the one retry policy for starting threads and processes;
//! - `budget`: the counting allocator behind each evaluation's memory budget, and the
//!   hard memory limit of worker processes.

pub mod backoff;
pub mod budget;
pub mod cleanup;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod csv_lines;
pub mod decompress;
pub mod dialect;
pub mod diff;
pub mod duration;
pub mod exec;
pub mod exit;
pub mod format;
pub mod framer;
pub mod generate;
pub mod input;
pub mod inputs;
pub mod lists;
pub mod merge;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod rockets;
pub mod rules;
pub mod shard;
pub mod signals;
pub mod size;
pub mod summary;
pub mod typing;
pub mod windows;
