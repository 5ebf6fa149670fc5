//! CSV output as bytes, formatted by the lanes so that the writer only copies finished
//! buffers in order. The bytes are exactly what the `csv` crate's writer gives with its
//! defaults (`QuoteStyle::Necessary`, `\n` terminator), which wrote the results before:
//! a run's output does not depend on who formats it. The tests prove it against
//! `csv::Writer`.

use std::sync::Arc;

use crate::model::{Columns, Outcome, Row};
use crate::rules::{RuleSet, RulesError};

mod analyst;

pub use analyst::{Decisions, RuleDetail, rule_details};

/// Whether the csv crate quotes a field holding `b`: the delimiter, the quote, and both
/// line terminators (its default terminator is `\n`, and it quotes `\r` too).
fn needs_quotes(field: &[u8]) -> bool {
    field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
}

/// Appends one field, quoted (quotes doubled) only where needed.
pub fn field(out: &mut Vec<u8>, field: &[u8]) {
    if !needs_quotes(field) {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    let mut rest = field;
    while let Some(k) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=k]);
        out.push(b'"');
        rest = &rest[k + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Appends one record without its terminator. A record of one empty field is written as
/// `""`, as the csv crate does, so that it does not read back as a blank line.
pub fn record<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a [u8]>) {
    let start = out.len();
    let mut n = 0;
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        field(out, f);
        n = i + 1;
    }
    if n == 1 && out.len() == start {
        out.extend_from_slice(b"\"\"");
    }
}

/// What a format writes besides the result lines.
#[derive(Debug, Default)]
pub enum Extra {
    /// Exactly the results, as before any of the additions.
    #[default]
    Plain,
    /// Reasons and explanations in `detail`, and decisions.
    Results {
        details: Vec<RuleDetail>,
        decisions: Option<Decisions>,
    },
    /// `txguard diff`: changes instead of results (`diff`).
    Diff(Box<crate::diff::DiffFormat>),
}

/// What a task produces besides its result lines: the lines of a second output (the
/// decisions), and counters the writer adds up (`Tally::extra`).
#[derive(Debug, Default)]
pub struct Side {
    pub bytes: Vec<u8>,
    pub counters: Vec<u64>,
}

/// Formats result rows, `transaction_id,rule_id,result,detail`, and counts their kinds.
#[derive(Debug, Clone)]
pub struct ResultsFormat {
    /// Per rule, `,RULE_ID,` ready to copy.
    rule_ids: Vec<Vec<u8>>,
    /// The current row's id, formatted once for all its rules.
    id: Vec<u8>,
    detail: String,
    extra: Arc<Extra>,
    /// Per rule of the current row: its rendered reason, when it fired and has one.
    rendered: Vec<Option<String>>,
    reasons: String,
}

impl ResultsFormat {
    /// `rule_ids` in rules-file order.
    pub fn new(rule_ids: &[i64]) -> ResultsFormat {
        ResultsFormat::with(rule_ids, Extra::Plain)
    }

    /// A format that also writes `extra`.
    pub fn with(rule_ids: &[i64], extra: Extra) -> ResultsFormat {
        ResultsFormat {
            rule_ids: rule_ids
                .iter()
                .map(|id| format!(",{id},").into_bytes())
                .collect(),
            id: Vec::new(),
            detail: String::new(),
            extra: Arc::new(extra),
            rendered: vec![None; rule_ids.len()],
            reasons: String::new(),
        }
    }

    /// The format of `txguard run`: reasons of `set`'s rules bound to `columns` (an error
    /// per `{name}` that is no column), the variables each rule reads when `explain`, and
    /// decisions when the file has `[decision]` (written when `write_decisions`).
    pub fn for_run(
        set: &RuleSet,
        columns: &Columns,
        explain: bool,
        write_decisions: bool,
    ) -> Result<ResultsFormat, Vec<RulesError>> {
        let rule_ids: Vec<i64> = set.rules.iter().map(|r| r.id).collect();
        let plain =
            !explain && set.decision.is_none() && set.rules.iter().all(|r| r.reason.is_none());
        if plain {
            return Ok(ResultsFormat::new(&rule_ids));
        }
        let details = rule_details(set, columns, explain)?;
        let decisions = set.decision.clone().map(|decision| Decisions {
            decision,
            scores: set.rules.iter().map(|r| r.score).collect(),
            // A name is the reason of a rule without one: one line, like every reason.
            names: set
                .rules
                .iter()
                .map(|r| crate::model::detail(&r.name))
                .collect(),
            write: write_decisions,
        });
        Ok(ResultsFormat::with(
            &rule_ids,
            Extra::Results { details, decisions },
        ))
    }

    pub fn rules(&self) -> usize {
        self.rule_ids.len()
    }

    /// Whether formatting reads the rows' values (reasons, `--explain`, a diff), not only
    /// their ids and outcomes.
    pub fn reads_values(&self) -> bool {
        !matches!(&*self.extra, Extra::Plain)
    }

    /// How many counters a task's `Side` holds (the decisions' counts, a diff's).
    pub fn counters(&self) -> usize {
        match &*self.extra {
            Extra::Plain => 0,
            Extra::Results { decisions, .. } => decisions
                .as_ref()
                .map_or(0, |d| d.decision.thresholds.len() + 1),
            Extra::Diff(diff) => diff.counters(),
        }
    }

    /// Appends one line per (row, rule) to `out`: `outcomes` holds every rule's outcome
    /// for each row, row-major. Adds each outcome's kind to `counts[rule]`, and puts what
    /// the format writes besides into `side` (whose counters are `counters()` long).
    pub fn rows(
        &mut self,
        rows: &[Row],
        outcomes: &[Outcome],
        out: &mut Vec<u8>,
        counts: &mut [[u64; 4]],
        side: &mut Side,
    ) {
        debug_assert_eq!(outcomes.len(), rows.len() * self.rule_ids.len());
        side.counters.resize(self.counters(), 0);
        let extra = Arc::clone(&self.extra);
        let details = match &*extra {
            Extra::Plain => None,
            Extra::Results { details, .. } => Some(details.as_slice()),
            Extra::Diff(diff) => {
                let width = self.rule_ids.len().max(1);
                for (i, outcome) in outcomes.iter().enumerate() {
                    counts[i % width][outcome.kind() as usize] += 1;
                }
                diff.rows(rows, outcomes, out, side);
                return;
            }
        };
        for (row, outcomes) in rows.iter().zip(outcomes.chunks(self.rule_ids.len())) {
            self.id.clear();
            field(&mut self.id, row.id.as_bytes());
            for (r, ((rule_id, outcome), count)) in self
                .rule_ids
                .iter()
                .zip(outcomes)
                .zip(&mut *counts)
                .enumerate()
            {
                let kind = outcome.kind();
                count[kind as usize] += 1;
                out.extend_from_slice(&self.id);
                out.extend_from_slice(rule_id);
                out.extend_from_slice(kind.as_str().as_bytes());
                out.push(b',');
                match (outcome, details) {
                    (Outcome::False, _) | (Outcome::True, None) => {}
                    (Outcome::True, Some(details)) => {
                        self.rendered[r] = details[r].render(row, &mut self.detail);
                        if !self.detail.is_empty() {
                            field(out, self.detail.as_bytes());
                        }
                    }
                    _ => {
                        self.detail.clear();
                        outcome.write_detail(&mut self.detail);
                        field(out, self.detail.as_bytes());
                    }
                }
                out.push(b'\n');
            }
            if let Extra::Results {
                decisions: Some(decisions),
                ..
            } = &*extra
            {
                decisions.decide(
                    &self.id,
                    &self.rule_ids,
                    &self.rendered,
                    outcomes,
                    &mut self.reasons,
                    side,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    /// What the results were written with: a default `csv::Writer`.
    fn csv_crate(records: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        for r in records {
            w.write_record(r).unwrap();
        }
        w.into_inner().unwrap()
    }

    fn ours(records: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            record(&mut out, r.iter().map(Vec::as_slice));
            out.push(b'\n');
        }
        out
    }

    /// Fields made mostly of the bytes that matter to quoting, and some of any byte.
    fn fields() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => prop::sample::select(vec![b',', b'"', b'\r', b'\n', b' ', b'a', b'#', b'\'']),
            1 => any::<u8>(),
        ];
        prop::collection::vec(byte, 0..8)
    }

    proptest! {
        #[test]
        fn records_are_written_as_the_csv_crate_writes_them(
            records in prop::collection::vec(prop::collection::vec(fields(), 1..5), 0..6)
        ) {
            prop_assert_eq!(ours(&records), csv_crate(&records));
        }

        #[test]
        fn results_are_written_as_the_csv_crate_writes_them(
            ids in prop::collection::vec(prop::collection::vec(any::<char>(), 1..6), 1..5),
            messages in prop::collection::vec(fields(), 3),
            rule_ids in prop::collection::vec(any::<i64>(), 1..4),
            pick in prop::collection::vec(0..5usize, 20),
        ) {
            let rows: Vec<Row> = ids
                .iter()
                .map(|id| Row { id: id.iter().collect(), values: Vec::new() })
                .collect();
            let outcomes: Vec<Outcome> = (0..rows.len() * rule_ids.len())
                .map(|i| match pick[i % pick.len()] {
                    0 => Outcome::True,
                    1 => Outcome::False,
                    2 => Outcome::Timeout(Duration::from_millis(1500)),
                    k => Outcome::Error(String::from_utf8_lossy(&messages[k - 2]).into_owned()),
                })
                .collect();
            let mut expected = Vec::new();
            for (row, outcomes) in rows.iter().zip(outcomes.chunks(rule_ids.len())) {
                for (rule, outcome) in rule_ids.iter().zip(outcomes) {
                    let mut detail = String::new();
                    outcome.write_detail(&mut detail);
                    expected.push(vec![
                        row.id.clone().into_bytes(),
                        rule.to_string().into_bytes(),
                        outcome.kind().as_str().as_bytes().to_vec(),
                        detail.into_bytes(),
                    ]);
                }
            }
            let mut format = ResultsFormat::new(&rule_ids);
            let mut out = Vec::new();
            let mut counts = vec![[0; 4]; rule_ids.len()];
            format.rows(&rows, &outcomes, &mut out, &mut counts, &mut Side::default());
            prop_assert_eq!(out, csv_crate(&expected));
            let counted: u64 = counts.iter().flatten().sum();
            prop_assert_eq!(counted, outcomes.len() as u64);
        }
    }

    #[test]
    fn reasons_explanations_and_decisions_leave_other_results_as_they_were() {
        let set = crate::rules::file::parse(
            "[[rule]]\nid = 1\nname = \"a\"\nwhen = 'n > 1'\nscore = 5\nreason = \"n is {n}\"\n\
             [[rule]]\nid = 2\nname = \"b\"\nwhen = 's == \"x\" && n > 0'\nscore = 10\n\
             [decision]\nthresholds = { review = 10, block = 15 }\n",
            Duration::from_secs(1),
        )
        .unwrap();
        let columns = Columns {
            names: vec!["n".into(), "s".into()],
            types: vec![
                crate::model::ColumnType::Int,
                crate::model::ColumnType::String,
            ],
        };
        let rows = vec![
            Row {
                id: "7".into(),
                values: vec![
                    rhai::Dynamic::from_int(3),
                    rhai::Dynamic::from("x".to_string()),
                ],
            },
            Row {
                id: "8".into(),
                values: vec![
                    rhai::Dynamic::from_int(0),
                    rhai::Dynamic::from("y".to_string()),
                ],
            },
        ];
        let outcomes = [
            Outcome::True,
            Outcome::True,
            Outcome::False,
            Outcome::Timeout(Duration::from_secs(1)),
        ];
        let mut format = ResultsFormat::for_run(&set, &columns, true, true).unwrap();
        let (mut out, mut counts, mut side) = (Vec::new(), vec![[0; 4]; 2], Side::default());
        format.rows(&rows, &outcomes, &mut out, &mut counts, &mut side);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7,1,true,n is 3; n=3\n7,2,true,\"s=\"\"x\"\" n=3\"\n8,1,false,\n8,2,timeout,exceeded 1s\n"
        );
        assert_eq!(
            String::from_utf8(side.bytes).unwrap(),
            "7,15,block,1:n is 3 | 2:b\n8,0,pass,\n"
        );
        assert_eq!(side.counters, [1, 0, 1]);
        // Without --explain, --decisions, reasons or [decision]: the plain format.
        let plain = crate::rules::file::parse(
            "[[rule]]\nid = 1\nname = \"a\"\nwhen = 'n > 1'\n[[rule]]\nid = 2\nname = \"b\"\nwhen = 'true'\n",
            Duration::from_secs(1),
        )
        .unwrap();
        let format = ResultsFormat::for_run(&plain, &columns, false, false).unwrap();
        assert!(matches!(*format.extra, Extra::Plain));
    }

    #[test]
    fn quoting_is_only_where_needed() {
        let mut out = Vec::new();
        record(
            &mut out,
            [&b"a b"[..], b"x,y", b"say \"hi\"", b"", b"l1\nl2"],
        );
        assert_eq!(out, b"a b,\"x,y\",\"say \"\"hi\"\"\",,\"l1\nl2\"");
        out.clear();
        record(&mut out, [&b""[..]]);
        assert_eq!(out, b"\"\"", "one empty field is not a blank line");
    }

    #[test]
    fn results_lines_count_every_kind_per_rule() {
        let rows = vec![Row {
            id: "7".into(),
            values: Vec::new(),
        }];
        let outcomes = [
            Outcome::True,
            Outcome::Error("no, \"score\"".into()),
            Outcome::Timeout(Duration::from_millis(500)),
        ];
        let mut format = ResultsFormat::new(&[1, 2, 3]);
        let (mut out, mut counts) = (Vec::new(), vec![[0; 4]; 3]);
        format.rows(
            &rows,
            &outcomes,
            &mut out,
            &mut counts,
            &mut Side::default(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7,1,true,\n7,2,error,\"no, \"\"score\"\"\"\n7,3,timeout,exceeded 500ms\n"
        );
        assert_eq!(counts, [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]);
    }
}
