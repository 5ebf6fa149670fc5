//! The windows' per-row checks, on the lanes: for each row a lane's typer accepts, the key
//! and time are checked, the `where` filters evaluated, and the row queued (`Fed`) with
//! its keys' bytes, times, filter results and `of` values, all in a few flat vectors.
//! This is the part of the windows stage that scales with cores; what must run in input
//! order (numbering keys, the windows' arithmetic) is `sequencer`, fed with a lane's `Fed`
//! when its task's turn comes (`turns`).

use std::sync::Arc;

use crate::framer::{self, Fields};
use crate::model::{ColumnType, Columns, Outcome, Parsed, Row};
use crate::rules::{Evaluator, RuleSet, RulesError, random_key_hash};
use crate::typing::{Schema, Typer};
use crate::windows::time::parse_rfc3339;

/// Where a window reads its row: fields of the record, by index, and their types.
#[derive(Debug)]
pub(super) struct Spec {
    pub name: String,
    /// The key's field.
    pub key: usize,
    pub key_name: String,
    /// The time's field, and whether an empty time is `()` (a `string?` column).
    pub time: usize,
    pub time_nullable: bool,
    pub time_name: String,
    /// An earlier window reading the same time column: its parsed time is this one's.
    pub same_time: Option<usize>,
    /// Its key column's numbering (an index into `Recipe::keys` and the sequencer's keys).
    pub numbering: usize,
    /// The `of` column's field, its type, and whether an empty value is `()`.
    pub of: Option<(usize, ColumnType, bool)>,
    /// Its rule index in the filter evaluator.
    pub filter: Option<usize>,
    /// The columns its `where` reads (name, index in the filters' rows): a filter that
    /// fails names their values, as a bad field is named by its value.
    pub filter_reads: Vec<(String, usize)>,
}

/// What every lane's `Prep` is built from (one per input: field indices follow its header).
#[derive(Clone)]
pub(super) struct Recipe {
    pub specs: Arc<[Spec]>,
    /// Per key column some window reads: its field and its type.
    pub keys: Arc<[(usize, ColumnType)]>,
    /// The input's schema for the filters' typer (builds only the columns they read).
    pub schema: Arc<Schema>,
    pub config: framer::Config,
    /// The filters as rules, the columns they are compiled against, and the run's seed.
    pub filters: Option<(Arc<RuleSet>, Columns, u64)>,
}

impl Recipe {
    /// A lane's `Prep`. The filters compiled when the stage was built: they compile again.
    pub fn prep(&self) -> anyhow::Result<Prep> {
        let filters = match &self.filters {
            None => None,
            Some((set, columns, seed)) => Some(compile_filters(set, columns, *seed)?),
        };
        Ok(Prep {
            specs: Arc::clone(&self.specs),
            keys: Arc::clone(&self.keys),
            typer: Typer::new(Arc::clone(&self.schema), &self.config),
            splitter: framer::Splitter::new(&self.config),
            filters,
            row: Row {
                id: String::new(),
                values: Vec::new(),
            },
            times: Vec::new(),
            matching: Vec::new(),
            fed: Fed::default(),
        })
    }
}

/// The windows' `where` filters (`set`: one rule per filter) compiled against `columns`;
/// an error (`FilterErrors`) names the windows whose filter does not compile.
pub(super) fn compile_filters(
    set: &RuleSet,
    columns: &Columns,
    seed: u64,
) -> anyhow::Result<Evaluator> {
    Evaluator::new(set, columns, seed).map_err(|errors| {
        let errors: Vec<_> = errors
            .into_iter()
            .map(|e| crate::rules::lists_windows::filter_error(e, &set.rules))
            .collect();
        anyhow::Error::new(FilterErrors(errors))
    })
}

/// Windows' `where` filters that do not compile against the input's columns: errors of
/// the rules file, which the command names (`RulesErrors::of`), as `check` does.
#[derive(Debug)]
pub struct FilterErrors(pub Vec<RulesError>);

impl std::fmt::Display for FilterErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a window's `where` does not compile: {}",
            crate::rules::one_line(&self.0)
        )
    }
}

impl std::error::Error for FilterErrors {}

/// A row's `of` value while it waits in `Fed`: a text is a range of `Fed::texts` (the
/// field may live in the splitter's scratch buffer, reused by the next record) and its
/// hash (`keys::hash`), computed here rather than in the sequential part.
#[derive(Debug, Clone, Copy)]
pub(super) enum Waiting {
    None,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(usize, usize, u64),
}

/// A task's good rows as the windows take them, row after row: per row, the bytes of each
/// key column's key (a range of `bytes`), and per window a time, whether the row counts
/// (`where`) and the `of` value.
#[derive(Debug, Default)]
pub struct Fed {
    pub(super) rows: usize,
    pub(super) keys: Vec<(usize, usize)>,
    /// Their hashes (`keys::hash`), computed here rather than in the sequential part.
    pub(super) hashes: Vec<u64>,
    pub(super) times: Vec<i64>,
    pub(super) matching: Vec<bool>,
    pub(super) of: Vec<Waiting>,
    /// The keys' bytes.
    pub(super) bytes: Vec<u8>,
    /// The texts of string `of` values.
    pub(super) texts: String,
}

impl Fed {
    pub(super) fn clear(&mut self) {
        self.rows = 0;
        self.keys.clear();
        self.hashes.clear();
        self.times.clear();
        self.matching.clear();
        self.of.clear();
        self.bytes.clear();
        self.texts.clear();
    }
}

/// A lane's side of the windows stage (see the module header).
pub struct Prep {
    specs: Arc<[Spec]>,
    keys: Arc<[(usize, ColumnType)]>,
    /// Types a row again for the filters (the lane's typer builds the rules' columns).
    typer: Typer,
    splitter: framer::Splitter,
    filters: Option<Evaluator>,
    row: Row,
    times: Vec<i64>,
    matching: Vec<bool>,
    /// The rows queued since the last turn.
    pub fed: Fed,
}

impl Prep {
    /// Checks the key and time of the row whose record is `body` (one the lane's typer
    /// accepted), evaluates the filters, and queues it; or the reason it is a bad row
    /// (then nothing is queued: a bad row counts in no window).
    pub fn row(&mut self, body: &[u8]) -> Result<(), String> {
        match self.filters.as_mut() {
            None => {
                let fields = self.splitter.split(body);
                queue(
                    &self.specs,
                    &self.keys,
                    fields,
                    None,
                    (&mut self.times, &mut self.matching),
                    &mut self.fed,
                )
            }
            Some(filters) => {
                if !self.typer.type_body(body, &mut self.row) {
                    // The lanes' typer accepted it, by the same code: never happens.
                    return Err("internal error: the windows' typer rejects this row".into());
                }
                let fields = self.splitter.split(body);
                queue(
                    &self.specs,
                    &self.keys,
                    fields,
                    Some((filters, &self.row)),
                    (&mut self.times, &mut self.matching),
                    &mut self.fed,
                )
            }
        }
    }
}

/// `Prep::row` on a record's `fields` (and its typed `row` for the filters).
fn queue(
    specs: &[Spec],
    keys: &[(usize, ColumnType)],
    fields: Fields<'_>,
    filters: Option<(&mut Evaluator, &Row)>,
    (times, matching): (&mut Vec<i64>, &mut Vec<bool>),
    fed: &mut Fed,
) -> Result<(), String> {
    // Check everything before queueing anything.
    times.clear();
    for spec in specs {
        // An empty key is missing: a `string` column gives "", a nullable one `()`.
        if fields.get(spec.key).unwrap_or_default().is_empty() {
            return Err(format!(
                "column {:?}: \"\" is empty (the key of [windows.{}])",
                spec.key_name, spec.name
            ));
        }
        if let Some(earlier) = spec.same_time {
            // Parsed once per row, however many windows read the column.
            times.push(times[earlier]);
            continue;
        }
        let time = fields.get(spec.time).unwrap_or_default();
        // A nullable (`string?`) time column gives `()` for an empty time.
        if time.is_empty() && spec.time_nullable {
            return Err(format!(
                "column {:?}: \"\" is empty (the time of [windows.{}])",
                spec.time_name, spec.name
            ));
        }
        let t = parse_rfc3339(time).map_err(|why| {
            format!(
                "column {:?}: {:?} {why} (the time of [windows.{}])",
                spec.time_name,
                String::from_utf8_lossy(time),
                spec.name
            )
        })?;
        times.push(t);
    }
    matching.clear();
    match filters {
        None => matching.resize(specs.len(), true),
        Some((filters, row)) => {
            let id_hash = random_key_hash(&row.id);
            for spec in specs {
                let counts = match spec.filter {
                    Some(f) => match filters.evaluate(f, row, id_hash) {
                        Outcome::True => true,
                        Outcome::False => false,
                        other => {
                            let mut detail = String::new();
                            other.write_detail(&mut detail);
                            let mut read = String::new();
                            for (i, (name, column)) in spec.filter_reads.iter().enumerate() {
                                read.push_str(if i == 0 { "; it read " } else { " " });
                                let value = row.values.get(*column).cloned().unwrap_or_default();
                                crate::rules::decision::explain_value(name, &value, &mut read);
                            }
                            return Err(format!(
                                "[windows.{}] where: {} ({detail}){read}",
                                spec.name,
                                other.kind().as_str()
                            ));
                        }
                    },
                    None => true,
                };
                matching.push(counts);
            }
        }
    }
    for &(field, kind) in keys {
        let key = fields.get(field).unwrap_or_default();
        let from = fed.bytes.len();
        match kind {
            ColumnType::String => fed.bytes.extend_from_slice(key),
            _ => fed.bytes.extend_from_slice(&canonical(kind, key)),
        }
        fed.hashes
            .push(crate::windows::keys::hash(&fed.bytes[from..]));
        fed.keys.push((from, fed.bytes.len()));
    }
    fed.times.extend_from_slice(times);
    for (mut counts, spec) in matching.iter().copied().zip(specs) {
        let value = match spec.of {
            None => Waiting::None,
            Some((field, kind, nullable)) => {
                let value = fields.get(field).unwrap_or_default();
                if value.is_empty() && nullable {
                    // An empty value of a nullable `of` column is no value: like a row
                    // that does not match `where`, it counts in no sum, avg, min, max or
                    // distinct (only in count).
                    counts = false;
                    Waiting::None
                } else {
                    waiting(kind, value, &mut fed.texts)
                }
            }
        };
        fed.matching.push(counts);
        fed.of.push(value);
    }
    fed.rows += 1;
    Ok(())
}

/// A key of a column of type `kind` (not string) as the bytes its numbering takes: the
/// value's bits, so that `7` and `+7`, or `0.0` and `-0.0`, are one key as they are one
/// value (`==`) to the rules.
fn canonical(kind: ColumnType, field: &[u8]) -> [u8; 8] {
    // The typer accepted the field: it parses.
    match kind.parse_field(field) {
        Ok(Parsed::Int(i)) => i.to_le_bytes(),
        // -0.0 is 0.0, as Rhai's `==` says.
        Ok(Parsed::Float(f)) => (if f == 0.0 { 0.0 } else { f }).to_bits().to_le_bytes(),
        Ok(Parsed::Bool(b)) => u64::from(b).to_le_bytes(),
        _ => [0xff; 8],
    }
}

/// An `of` field of a column of type `kind` (the typer accepted it) as it waits for its
/// window, parsed by the typer's own parser (the value the rules see); a text is copied
/// to `texts`.
fn waiting(kind: ColumnType, field: &[u8], texts: &mut String) -> Waiting {
    match kind.parse_field(field) {
        Ok(Parsed::Int(i)) => Waiting::Int(i),
        Ok(Parsed::Float(f)) => Waiting::Float(f),
        Ok(Parsed::Bool(b)) => Waiting::Bool(b),
        Ok(Parsed::Str(text)) => {
            let from = texts.len();
            texts.push_str(text);
            Waiting::Text(
                from,
                texts.len(),
                crate::windows::keys::hash(text.as_bytes()),
            )
        }
        Err(_) => Waiting::None,
    }
}
