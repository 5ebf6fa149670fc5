//! The windows stage's sequential part: key numbering and the windows' arithmetic, fed
//! every row in input order (a lane's queued rows, `prep::Fed`, when its turn comes). This
//! is all that runs one row after another; checking and parsing ran on the lanes.

use crate::model::WindowStats;
use crate::windows::{Keys, Value, Values, Window};

use super::prep::{Fed, Spec, Waiting};

/// How many rows ahead the windows' state is fetched into the cache: far enough to hide
/// a memory access behind the rows in between, near enough to still be there.
const AHEAD: usize = 8;
/// How many rows ahead a key's spilled rows are fetched: its state, fetched `AHEAD` rows
/// ahead, has arrived by then.
const ROWS_AHEAD: usize = 4;
/// How many keys ahead the key table's slot is fetched.
const KEYS_AHEAD: usize = 24;

/// The windows' state over the whole run (every input and history file in turn).
pub struct Sequencer {
    /// Per key column some window reads, its keys' numbering (`Recipe::keys`' order).
    pub(super) keys: Vec<Keys>,
    pub(super) windows: Vec<Window>,
    pub(super) stats: WindowStats,
    /// Rows kept now, over every window.
    rows_now: usize,
    /// Key numbers of the rows being fed, per key column.
    ids: Vec<usize>,
}

impl Sequencer {
    pub(super) fn new(keys: usize, windows: Vec<Window>) -> Sequencer {
        Sequencer {
            keys: (0..keys).map(|_| Keys::default()).collect(),
            windows,
            stats: WindowStats::default(),
            rows_now: 0,
            ids: Vec::new(),
        }
    }

    pub fn stats(&self) -> WindowStats {
        WindowStats {
            keys: self.keys.iter().map(|k| k.len() as u64).sum(),
            ..self.stats
        }
    }

    /// Feeds `fed`'s rows to the windows, in order, appending their values (one per window
    /// per row) to `values`, and empties `fed`.
    pub(super) fn feed(&mut self, specs: &[Spec], fed: &mut Fed, values: &mut Values) {
        let (width, numberings) = (self.windows.len(), self.keys.len());
        // Numbers first, in input order: the windows' state of the rows ahead can then be
        // asked for before it is needed.
        self.ids.clear();
        let keys = fed.rows * numberings;
        for j in 0..keys {
            // Further ahead than the windows' states: a lookup is quicker than a row.
            if j + KEYS_AHEAD < keys {
                let ahead = j + KEYS_AHEAD;
                self.keys[ahead % numberings].prefetch(fed.hashes[ahead]);
            }
            let (from, to) = fed.keys[j];
            let id = self.keys[j % numberings].id(&fed.bytes[from..to], fed.hashes[j]);
            self.ids.push(id);
        }
        let ids = &self.ids;
        values.reserve(fed.rows * width);
        for r in 0..fed.rows {
            // The state of the row AHEAD rows on (its first rows inline: `windows::Rows`).
            if r + AHEAD < fed.rows {
                let ahead = &ids[(r + AHEAD) * numberings..];
                for (spec, window) in specs.iter().zip(&self.windows) {
                    window.prefetch(ahead[spec.numbering]);
                }
            }
            // Then, nearer, the spilled rows of the row ROWS_AHEAD on, which its state
            // (asked for AHEAD rows ago) says where to find.
            if r + ROWS_AHEAD < fed.rows {
                let ahead = &ids[(r + ROWS_AHEAD) * numberings..];
                for (spec, window) in specs.iter().zip(&self.windows) {
                    window.prefetch_rows(ahead[spec.numbering]);
                }
            }
            for (n, (spec, window)) in specs.iter().zip(&mut self.windows).enumerate() {
                let at = r * width + n;
                let before = window.rows();
                let key = ids[r * numberings + spec.numbering];
                let value = match fed.of[at] {
                    Waiting::None => Value::None,
                    Waiting::Int(i) => Value::Int(i),
                    Waiting::Float(f) => Value::Float(f),
                    Waiting::Bool(b) => Value::Bool(b),
                    Waiting::Text(from, to, hash) => Value::Text(&fed.texts[from..to], hash),
                };
                window.push_into(key, fed.times[at], fed.matching[at], value, values);
                self.rows_now = self.rows_now + window.rows() - before;
            }
            self.stats.peak_rows = self.stats.peak_rows.max(self.rows_now as u64);
        }
        fed.clear();
    }
}
