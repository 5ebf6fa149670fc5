//! The windows stage: every row, in input order, feeds the windows (`crate::windows`)
//! before any rule sees it, so results depend neither on the executor nor on `-j`.
//!
//! It is cut in two so that only what must be sequential is:
//! - `prep`, on the lanes, in parallel: for each row the lane's typer accepts, check the
//!   key and time, evaluate the `where` filters, read the key bytes, times and `of`
//!   values into flat vectors (a bad key or time makes the row a bad row there);
//! - `sequencer`, one task after another in task order (`turns`): number the keys and
//!   push each row into every window; its values go back to the lane, which appends
//!   them to its rows after the input columns, so every executor sees them like columns.
//!
//! `--history` files and `txguard check --input` run both parts in one thread.

mod prep;
mod sequencer;
mod turns;

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};

use crate::framer::{self, Fields, Record};
use crate::input::InputReader;
use crate::model::{BadRow, ColumnType, Row, WindowStats};
use crate::rules::RuleSet;
use crate::rules::lists_windows::{self, Derived, Function, WindowDecl};
use crate::typing::{Schema, Typer};
use crate::windows::{Kind, Values, Window};

pub use prep::{FilterErrors, Prep};
use prep::{Recipe, Spec};
pub use sequencer::Sequencer;
pub use turns::Turns;

/// The windows stage of a run: the windows' state, and how to read them from the current
/// input's records.
pub struct WindowStage {
    recipe: Recipe,
    sequencer: Sequencer,
}

impl WindowStage {
    /// The stage for `set`'s windows over the input whose header is `header`; `None` when
    /// the rules declare no window. Fails on a window naming a column the input lacks,
    /// a time column not of strings, a sum/avg of a column that is no number, or a
    /// `where` that does not compile against the input's columns.
    pub fn new(
        set: &RuleSet,
        header: Fields<'_>,
        input: &str,
        id_column: &str,
        config: &framer::Config,
        seed: u64,
    ) -> Result<Option<WindowStage>> {
        let decls = &set.derived.windows;
        if decls.is_empty() {
            return Ok(None);
        }
        let filter_rules = lists_windows::filter_rules(decls, set.max_timeout());
        let only_lists = Derived {
            lists: set.derived.lists.clone(),
            loaded: set.derived.loaded.clone(),
            windows: Vec::new(),
        };
        // The filters' typer builds values only for the columns the filters read (key,
        // time and `of` are read as bytes).
        let filter_set = RuleSet {
            columns: set.columns.clone(),
            nullable: set.nullable.clone(),
            rules: filter_rules.clone(),
            memory_limit: set.memory_limit,
            decision: None,
            derived: Arc::new(only_lists),
        };
        let schema = Schema::from_header_with_id(header, input, &filter_set, id_column)?;
        let columns = schema.columns().clone();
        let column = |w: &WindowDecl, what: &str, name: &str| -> Result<(usize, usize)> {
            let at = columns.index(name).ok_or_else(|| {
                anyhow!(
                    "[windows.{}] (rules line {}): {what} column {name:?} is not a column of {input} (columns: {})",
                    w.name,
                    w.line,
                    columns.names.join(", ")
                )
            })?;
            let field = schema
                .field_of(at)
                .ok_or_else(|| anyhow!("internal error: column {name:?} has no field"))?;
            Ok((at, field))
        };
        let mut specs: Vec<Spec> = Vec::with_capacity(decls.len());
        let mut windows = Vec::with_capacity(decls.len());
        let mut keys: Vec<(usize, ColumnType)> = Vec::new();
        for (i, w) in decls.iter().enumerate() {
            let (key_column, key) = column(w, "key", &w.key)?;
            let (time_column, time) = column(w, "time", &w.time)?;
            if columns.types[time_column] != ColumnType::String {
                bail!(
                    "[windows.{}] (rules line {}): time column {:?} is declared {}: it must hold RFC 3339 times (a string column)",
                    w.name,
                    w.line,
                    w.time,
                    columns.types[time_column].name()
                );
            }
            let of = match &w.of {
                Some(of) => {
                    let (at, field) = column(w, "of", of)?;
                    let kind = columns.types[at];
                    if matches!(w.function, Function::Sum | Function::Avg)
                        && !matches!(kind, ColumnType::Int | ColumnType::Float)
                    {
                        bail!(
                            "[windows.{}] (rules line {}): cannot add up column {of:?} of type {}: declare it int or float in [columns]",
                            w.name,
                            w.line,
                            kind.name()
                        );
                    }
                    Some((field, kind, set.is_nullable(of)))
                }
                None => None,
            };
            let numbering = match keys.iter().position(|(f, _)| *f == key) {
                Some(at) => at,
                None => {
                    keys.push((key, columns.types[key_column]));
                    keys.len() - 1
                }
            };
            specs.push(Spec {
                name: w.name.clone(),
                numbering,
                key,
                key_name: w.key.clone(),
                time,
                time_nullable: set.is_nullable(&w.time),
                time_name: w.time.clone(),
                same_time: specs.iter().position(|s| s.time == time),
                of,
                filter: filter_rules.iter().position(|f| f.id == i as i64),
                filter_reads: w.filter.as_deref().map_or_else(Vec::new, |script| {
                    crate::rules::engine::read_by(script, &columns)
                }),
            });
            let kind = match of.map(|(_, kind, _)| kind) {
                Some(ColumnType::Float) => Kind::Float,
                Some(ColumnType::Bool) => Kind::Bool,
                Some(ColumnType::String) => Kind::Text,
                Some(ColumnType::Int) | None => Kind::Int,
            };
            windows.push(Window::new(w.function, w.span_nanos, kind));
        }
        let filters = if filter_rules.is_empty() {
            None
        } else {
            // Compiled here once for the error message; each lane compiles its own.
            prep::compile_filters(&filter_set, &columns, seed)?;
            Some((Arc::new(filter_set), columns, seed))
        };
        let sequencer = Sequencer::new(keys.len(), windows);
        Ok(Some(WindowStage {
            recipe: Recipe {
                specs: specs.into(),
                keys: keys.into(),
                schema: Arc::new(schema),
                config: *config,
                filters,
            },
            sequencer,
        }))
    }

    /// Goes on with `next`, the stage built for the next input of the run (its header may
    /// order the columns differently): the windows' state carries over, so several inputs
    /// in a row are one input to the windows, as `--history` files are.
    pub fn continue_with(&mut self, next: WindowStage) {
        // Both were built from the same rules: the same windows, key columns numbered alike.
        self.recipe = next.recipe;
    }

    /// The stage for `input`'s header (see `new`).
    pub fn for_input(set: &RuleSet, input: &InputReader, seed: u64) -> Result<Option<WindowStage>> {
        // No windows: nothing to read (an empty `--columns` input has no first record).
        if set.derived.windows.is_empty() {
            return Ok(None);
        }
        let mut splitter = framer::Splitter::new(&input.config);
        let named;
        let header = match &input.column_names {
            // `--columns`: the first record is a row; the names stand for the header.
            Some(names) => {
                named = names_as_header(names, input.config.delimiter());
                &named[..]
            }
            None => header_record(input)?,
        };
        WindowStage::new(
            set,
            splitter.split(header),
            &input.name,
            input.schema.id_column(),
            &input.config,
            seed,
        )
    }

    pub fn stats(&self) -> WindowStats {
        self.sequencer.stats()
    }

    /// Counts a history file's rows fed and bad rows skipped, for the summary.
    pub fn count_history(&mut self, rows: u64, bad: u64) {
        self.sequencer.stats.history_rows += rows;
        self.sequencer.stats.history_bad_rows += bad;
    }

    /// The stage as a run's lanes share it (`RunWindows::lane` for each lane); `finish`
    /// gives it back after the run.
    pub fn start(self) -> Arc<RunWindows> {
        Arc::new(RunWindows {
            recipe: self.recipe,
            turns: Turns::new(self.sequencer),
        })
    }

    /// Types `records` with `typer` (the input's), feeds their rows to the windows in
    /// order, in this thread, and appends each row's window values to it: rows into `rows`,
    /// bad rows (the typer's, and bad keys, times and filters) into `bad`.
    pub fn type_in_order<'a>(
        &mut self,
        prep: &mut Prep,
        typer: &mut Typer,
        records: impl Iterator<Item = Record<'a>>,
        rows: &mut Vec<Row>,
        bad: &mut Vec<BadRow>,
    ) {
        typer.type_records_then(records, rows, bad, |_, body, _| prep.row(body));
        let mut values = Values::default();
        self.sequencer
            .feed(&self.recipe.specs, &mut prep.fed, &mut values);
        append(rows, &values, self.sequencer.windows.len());
    }

    /// A `Prep` for this stage's input (`type_in_order`).
    pub fn prep(&self) -> Result<Prep> {
        self.recipe.prep()
    }

    /// Feeds every row of `history` to the windows (its values are dropped), chunk after
    /// chunk. Its bad rows are counted, not kept (a history of millions of bad rows would
    /// otherwise be held whole), but the first; with `stop_at_bad`, nothing is read past
    /// the chunk holding it (the run fails there). `go_on` is asked after every chunk: a
    /// signal ends a long history there. The stage must be the one for its header
    /// (`for_input`).
    pub fn feed_history(
        &mut self,
        history: InputReader,
        stop_at_bad: bool,
        go_on: impl Fn() -> Result<()>,
    ) -> Result<HistoryFed> {
        let InputReader {
            mut framer,
            first,
            name,
            config,
            schema,
            ..
        } = history;
        let mut prep = self.prep()?;
        let mut typer = Typer::new(Arc::new(schema), &config);
        let (mut bad, mut rows) = (Vec::new(), Vec::new());
        let mut fed = HistoryFed::default();
        let (mut chunk, mut skip) = (Some(first), 1);
        while let Some(current) = chunk.take() {
            self.type_in_order(
                &mut prep,
                &mut typer,
                current.records().skip(skip),
                &mut rows,
                &mut bad,
            );
            fed.rows += rows.len() as u64;
            fed.bad += bad.len() as u64;
            if fed.first_bad.is_none() {
                fed.first_bad = bad.first().cloned();
            }
            bad.clear();
            if stop_at_bad && fed.first_bad.is_some() {
                break;
            }
            go_on()?;
            skip = 0;
            framer.recycle(current);
            chunk = framer
                .next_chunk()
                .map_err(|e| anyhow!("cannot read {name}: {e}"))?;
        }
        Ok(fed)
    }
}

/// What a `--history` file gave the windows (`WindowStage::feed_history`).
#[derive(Debug, Default)]
pub struct HistoryFed {
    /// Rows fed to the windows.
    pub rows: u64,
    /// Bad rows skipped.
    pub bad: u64,
    /// The first bad row, in input order.
    pub first_bad: Option<BadRow>,
}

/// Appends to each of `rows` its `width` values of `values` (rows and values in order).
fn append(rows: &mut [Row], values: &Values, width: usize) {
    for (r, row) in rows.iter_mut().enumerate() {
        row.values
            .extend((r * width..(r + 1) * width).map(|i| values.dynamic(i)));
    }
}

/// The windows stage during a run: shared by its lanes.
pub struct RunWindows {
    recipe: Recipe,
    turns: Turns,
}

impl RunWindows {
    /// Lane's side: its own `Prep`.
    pub fn lane(self: &Arc<Self>) -> Result<LaneWindows> {
        Ok(LaneWindows {
            prep: self.recipe.prep()?,
            run: Arc::clone(self),
            values: Values::default(),
        })
    }

    /// Wakes every lane waiting for its turn: the run failed or stopped.
    pub fn close(&self) {
        self.turns.close();
    }

    /// The stage back, once every task has had its turn (closes the turns).
    pub fn finish(&self) -> Option<WindowStage> {
        Some(WindowStage {
            recipe: self.recipe.clone(),
            sequencer: self.turns.finish()?,
        })
    }
}

/// A lane's share of the windows stage: its `Prep`, and the run's turns.
pub struct LaneWindows {
    prep: Prep,
    run: Arc<RunWindows>,
    values: Values,
}

impl LaneWindows {
    /// `Prep::row`: what the lane's typer calls on each row it accepts.
    pub fn row(&mut self, body: &[u8]) -> Result<(), String> {
        self.prep.row(body)
    }

    /// Once the lane has typed task `seq` into `rows` (every row through `row`): waits for
    /// the task's turn, feeds its rows to the windows and appends their values to the
    /// rows. False once the run is closed (the lane stops).
    pub fn take_turn(&mut self, seq: u64, rows: &mut [Row]) -> bool {
        let Self { prep, run, values } = self;
        values.clear();
        let specs = &run.recipe.specs;
        let fed = run.turns.take(seq, |sequencer| {
            sequencer.feed(specs, &mut prep.fed, values)
        });
        if fed.is_none() {
            return false;
        }
        append(rows, values, specs.len());
        true
    }

    /// Wakes every lane waiting for its turn (this lane failed before its first task).
    pub fn close(&self) {
        self.run.close();
    }

    /// This lane failed at task `seq` (maybe before its turn, which then never comes):
    /// the later tasks give up their turns, the earlier ones still take theirs.
    pub fn close_from(&self, seq: u64) {
        self.run.turns.close_from(seq);
    }
}
/// `--columns` names as the header record they stand for: each quoted (a name holds no
/// quote nor line break, but may hold the delimiter), separated by `delimiter`.
fn names_as_header(names: &[String], delimiter: u8) -> Vec<u8> {
    let mut header = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            header.push(delimiter);
        }
        header.push(b'"');
        header.extend_from_slice(name.as_bytes());
        header.push(b'"');
    }
    header
}

/// The header record of an input (the first record of its first chunk).
pub fn header_record(input: &InputReader) -> Result<&[u8]> {
    input
        .first
        .records()
        .next()
        .and_then(|r| r.body.ok())
        .ok_or_else(|| anyhow!("{}: no header", input.name))
}

/// The first `limit` rows of `input` with their window values, and the bad rows met on
/// the way (`txguard check --input` with windows): the stage and a lane, in this thread.
pub fn first_rows(
    input: InputReader,
    set: &RuleSet,
    limit: usize,
    seed: u64,
) -> Result<(Vec<Row>, Vec<BadRow>)> {
    let stage = WindowStage::for_input(set, &input, seed)?;
    let mut stage = stage.ok_or_else(|| anyhow!("internal error: no windows"))?;
    let mut prep = stage.prep()?;
    input.first_rows_typed(limit, |typer, records, rows, bad| {
        stage.type_in_order(&mut prep, typer, records, rows, bad);
    })
}

/// `--shard` cannot split an input whose rules have `[windows]`: a key's rows would be
/// spread over shards, each seeing part of its history. A usage error (exit 2); the
/// command line calls it once the rules are read.
pub fn refuse_shard_with_windows(rules: &RuleSet, sharded: bool) -> Result<()> {
    if sharded && !rules.derived.windows.is_empty() {
        return Err(crate::exit::Usage(
            "--shard cannot be used with rules that declare [windows.*]: a window needs every \
             earlier row of its key (run unsharded, with --history for earlier batches)"
                .into(),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer::{Config, Framer};
    use crate::windows::time::parse_rfc3339;
    use rhai::Dynamic;
    use std::io::Cursor;
    use std::time::Duration;

    const RULES: &str = r#"
[columns]
id = "int"
amount = "float"

[windows.tx_24h]
key = "account"
time = "timestamp"
span = "24h"
function = "count"

[windows.amount_1h]
key = "account"
time = "timestamp"
span = "1h"
function = "sum"
of = "amount"

[windows.merchants_1h]
key = "account"
time = "timestamp"
span = "1h"
function = "distinct"
of = "merchant"

[[rule]]
id = 1
name = "r"
when = "tx_24h > 10"
"#;

    /// `rows` generated transactions, as `txguard generate` writes them.
    fn input(rows: u64) -> Vec<u8> {
        let mut out = Vec::new();
        crate::generate::write_transactions(&mut out, rows, 7).unwrap();
        out
    }

    /// CPU time of this thread: the figure does not depend on what else the machine runs.
    fn cpu() -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    /// What `run_stage` measured: rows fed, the values of the first rows, and CPU times.
    struct Measured {
        rows: usize,
        values: Vec<Dynamic>,
        /// A lane's typing alone, as without windows.
        typing: Duration,
        /// A lane's typing with the windows' per-row checks (`Prep`).
        typing_and_prep: Duration,
        /// The sequential part: numbering keys and pushing rows into the windows.
        sequential: Duration,
    }

    /// Runs the stage over `csv` as a run does, in this thread: tasks of `TASK` records
    /// typed by a lane's typer with the windows' checks, then fed to the sequencer in task
    /// order; each task's values dropped once read, as the lanes drop them. Keeps the
    /// values of the first `keep` rows, in row order.
    fn run_stage(csv: Vec<u8>, keep: usize) -> Measured {
        const TASK: usize = 1024;
        let set = crate::rules::file::parse(RULES, Duration::from_secs(1)).unwrap();
        let config = Config::default();
        let mut framer = Framer::new(Cursor::new(csv), config);
        let mut chunks = Vec::new();
        while let Some(chunk) = framer.next_chunk().unwrap() {
            chunks.push(chunk);
        }
        let mut splitter = framer::Splitter::new(&config);
        let header = chunks[0].records().next().unwrap().body.unwrap().to_vec();
        let mut stage = WindowStage::new(&set, splitter.split(&header), "t.csv", "id", &config, 0)
            .unwrap()
            .unwrap();
        let schema = Arc::new(Schema::from_header(splitter.split(&header), "t.csv", &set).unwrap());
        let mut typer = Typer::new(Arc::clone(&schema), &config);
        let mut prep = stage.prep().unwrap();
        let tasks = || {
            chunks.iter().enumerate().flat_map(|(i, chunk)| {
                let records: Vec<_> = chunk.records().skip(usize::from(i == 0)).collect();
                records
                    .chunks(TASK)
                    .map(<[Record<'_>]>::to_vec)
                    .collect::<Vec<_>>()
            })
        };
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        let mut typing = Duration::ZERO;
        for task in tasks() {
            let started = cpu();
            typer.type_records(task.into_iter(), &mut rows, &mut bad);
            typing += cpu() - started;
        }
        let mut measured = Measured {
            rows: 0,
            values: Vec::new(),
            typing,
            typing_and_prep: Duration::ZERO,
            sequential: Duration::ZERO,
        };
        let mut values = Values::default();
        for task in tasks() {
            values.clear();
            let started = cpu();
            typer.type_records_then(task.into_iter(), &mut rows, &mut bad, |_, body, _| {
                prep.row(body)
            });
            let typed = cpu();
            stage
                .sequencer
                .feed(&stage.recipe.specs, &mut prep.fed, &mut values);
            let fed = cpu();
            measured.typing_and_prep += typed - started;
            measured.sequential += fed - typed;
            assert!(bad.is_empty());
            let width = stage.sequencer.windows.len();
            assert_eq!(values.len(), rows.len() * width);
            let wanted = keep.saturating_sub(measured.rows).saturating_mul(width);
            measured
                .values
                .extend((0..wanted.min(values.len())).map(|i| values.dynamic(i)));
            measured.rows += rows.len();
        }
        measured
    }

    /// The values of `RULES`' three windows for the first `limit` rows of a generated,
    /// time-sorted `csv`, the slow way: for each row, a scan of its key's earlier rows.
    fn slow_values(csv: &[u8], limit: usize) -> Vec<String> {
        let text = std::str::from_utf8(csv).unwrap();
        let mut by_key: std::collections::HashMap<&str, Vec<(i64, f64, &str)>> = Default::default();
        let mut out = Vec::new();
        const S: i64 = 1_000_000_000;
        for line in text.lines().skip(1).take(limit) {
            let f: Vec<&str> = line.split(',').collect();
            let t = parse_rfc3339(f[1].as_bytes()).unwrap();
            let earlier = by_key.entry(f[2]).or_default();
            earlier.push((t, f[3].parse().unwrap(), f[6]));
            let within = |span: i64| earlier.iter().filter(move |r| r.0 > t - span && r.0 <= t);
            out.push(within(86_400 * S).count().to_string());
            let amounts: Vec<crate::windows::Val> = within(3600 * S)
                .map(|r| crate::windows::Val::Float(r.1))
                .collect();
            out.push(crate::windows::aggregate(Function::Sum, amounts.iter()).to_string());
            let merchants: std::collections::HashSet<&str> =
                within(3600 * S).map(|r| r.2).collect();
            out.push(merchants.len().to_string());
        }
        out
    }

    #[test]
    fn shard_is_refused_with_windows_only() {
        let set = crate::rules::file::parse(RULES, Duration::from_secs(1)).unwrap();
        let err = refuse_shard_with_windows(&set, true).unwrap_err();
        assert!(err.downcast_ref::<crate::exit::Usage>().is_some());
        assert!(
            err.to_string()
                .starts_with("--shard cannot be used with rules that declare [windows.*]")
        );
        refuse_shard_with_windows(&set, false).unwrap();
        let plain = crate::rules::file::parse(
            "[[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\n",
            Duration::from_secs(1),
        )
        .unwrap();
        refuse_shard_with_windows(&plain, true).unwrap();
    }

    /// The window values of `csv`'s records through `stage` (a stage for its header when
    /// `None`), and the stage.
    fn values_of(csv: &str, stage: Option<WindowStage>) -> (Vec<String>, WindowStage) {
        let set = crate::rules::file::parse(RULES, Duration::from_secs(1)).unwrap();
        let config = Config::default();
        let mut framer = Framer::new(Cursor::new(csv.as_bytes().to_vec()), config);
        let chunk = framer.next_chunk().unwrap().unwrap();
        let header = chunk.records().next().unwrap().body.unwrap().to_vec();
        let mut splitter = framer::Splitter::new(&config);
        let own = WindowStage::new(&set, splitter.split(&header), "t.csv", "id", &config, 0)
            .unwrap()
            .unwrap();
        let mut stage = match stage {
            None => own,
            Some(mut earlier) => {
                earlier.continue_with(own);
                earlier
            }
        };
        let mut prep = stage.prep().unwrap();
        let schema = Arc::new(Schema::from_header(splitter.split(&header), "t.csv", &set).unwrap());
        let mut typer = Typer::new(schema, &config);
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        let records = chunk.records().skip(1);
        stage.type_in_order(&mut prep, &mut typer, records, &mut rows, &mut bad);
        assert!(bad.is_empty());
        let width = stage.sequencer.windows.len();
        let shown = rows
            .iter()
            .flat_map(|row| row.values[row.values.len() - width..].iter())
            .map(ToString::to_string)
            .collect();
        (shown, stage)
    }

    #[test]
    fn the_next_input_goes_on_with_the_windows_whatever_its_column_order() {
        let a = "id,account,timestamp,amount,merchant\n1,A,2026-01-01T00:00:00Z,5,x\n\
                 2,B,2026-01-01T00:10:00Z,7,y\n";
        let b = "merchant,amount,timestamp,id,account\ny,1,2026-01-01T00:20:00Z,3,A\n\
                 z,2,2026-01-01T00:30:00Z,4,B\n";
        let b_as_a = "id,account,timestamp,amount,merchant\n3,A,2026-01-01T00:20:00Z,1,y\n\
                      4,B,2026-01-01T00:30:00Z,2,z\n";
        let (_, first) = values_of(a, None);
        let (continued, stage) = values_of(b, Some(first));
        let (_, first) = values_of(a, None);
        let (expected, _) = values_of(b_as_a, Some(first));
        assert_eq!(continued, expected);
        // Account A: two rows in 24 h, 6.0 in the hour, merchants x and y.
        assert_eq!(continued[..3], ["2", "6.0", "2"]);
        assert_eq!(stage.stats().keys, 2);
    }

    #[test]
    fn every_row_gets_a_value_per_window() {
        let measured = run_stage(input(2000), usize::MAX);
        assert_eq!(measured.rows, 2000);
        assert_eq!(measured.values.len(), 6000);
    }

    /// Equal, floats within 1e-9 relative (sums are running sums: the last bits may differ).
    fn same(got: &Dynamic, want: &str) -> bool {
        let got = got.to_string();
        match (got.parse::<f64>(), want.parse::<f64>()) {
            _ if got == want => true,
            (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            _ => false,
        }
    }

    /// The throughput figure of the README: `cargo test --release --lib
    /// windows_stage_throughput -- --ignored --nocapture`. The input is `txguard generate`'s
    /// (time-sorted, 50,000 accounts, a few very active); the stage's values are checked
    /// against the slow path on the first rows. `STAGE_ONLY=1` stops after the figures (to
    /// profile: `perf record`). The figures are CPU time of this thread: the sequential
    /// part (what one core must keep up with, whatever `-j`), and what the per-row checks
    /// add to the lanes' typing (spread over the lanes).
    #[test]
    #[ignore]
    fn windows_stage_throughput() {
        // Rounds, each a fresh stage over the same input: the machine's noise (other
        // tenants, its caches) moves one round's figure by ±15%, so the best and the
        // median of several are printed, as hyperfine would.
        const ROUNDS: usize = 5;
        let n = 2_000_000;
        let csv = input(n);
        let checked = 40_000;
        let mut rounds: Vec<Measured> = (0..ROUNDS)
            .map(|_| run_stage(csv.clone(), checked))
            .collect();
        let rows = n as f64;
        let per_row = |d: Duration| d.as_secs_f64() * 1e9 / rows;
        for (i, measured) in rounds.iter().enumerate() {
            assert_eq!(measured.rows as u64, n);
            println!(
                "round {}: windows stage, 3 windows, {n} rows: sequential part {:?} of CPU ({:.0} rows/s, {:.0} ns/row); \
                 lanes' typing {:?} ({:.0} ns/row), with the windows' checks {:?} ({:.0} ns/row, {:+.0} ns/row)",
                i + 1,
                measured.sequential,
                rows / measured.sequential.as_secs_f64(),
                per_row(measured.sequential),
                measured.typing,
                per_row(measured.typing),
                measured.typing_and_prep,
                per_row(measured.typing_and_prep),
                per_row(measured.typing_and_prep) - per_row(measured.typing),
            );
        }
        let mut sequential: Vec<Duration> = rounds.iter().map(|m| m.sequential).collect();
        sequential.sort();
        let rate = |d: Duration| rows / d.as_secs_f64();
        println!(
            "sequential part over {ROUNDS} rounds: best {:.0} rows/s, median {:.0} rows/s, worst {:.0} rows/s",
            rate(sequential[0]),
            rate(sequential[ROUNDS / 2]),
            rate(sequential[ROUNDS - 1]),
        );
        if std::env::var_os("STAGE_ONLY").is_some() {
            return;
        }
        let measured = rounds.swap_remove(0);
        let slow = slow_values(&csv, checked);
        let values = &measured.values;
        assert_eq!(values.len(), slow.len());
        for (i, (got, want)) in values.iter().zip(&slow).enumerate() {
            assert!(
                same(got, want),
                "row {}, window {}: {got} != {want}",
                i / 3 + 1,
                i % 3
            );
        }
        println!("the first {checked} rows' values equal the slow path's");
    }
}
