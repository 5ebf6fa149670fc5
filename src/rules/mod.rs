//! Rules: the file's model (`file`), and the sandboxed Rhai engine that compiles and
//! evaluates them (`engine`). `Evaluator::evaluate` is the only place a rule ever runs.
//! `load` reads a rules file exactly once: the same bytes are hashed, parsed, and shipped
//! to worker processes, so a file replaced mid-run cannot mix two versions.

pub mod decision;
pub mod engine;
pub mod file;
pub mod lists_windows;
mod native;
mod random;
pub mod sandbox;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::model::{ColumnType, Columns, Kind};

pub use engine::Evaluator;
pub use file::{RulesError, RulesErrors, one_line};
pub use random::hash_id as random_key_hash;
pub use sandbox::{Cancel, Options};

/// A rule as the file declares it; compiled by `Evaluator`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    /// The `when` script.
    pub script: String,
    /// Line of the rules file where the script starts.
    pub line: usize,
    pub timeout: Duration,
    pub examples: Vec<Example>,
    /// `score`: added to the transaction's score when the rule is true (0 when absent).
    pub score: i64,
    /// `reason`: rendered into `detail` (and the decisions' reasons) when true.
    pub reason: Option<decision::Template>,
    /// Line of the rules file where `reason` is (messages about it point there); the
    /// script's without one.
    pub reason_line: usize,
}

impl Rule {
    /// A script the program itself evaluates (a window's `where`, the columns a stage
    /// reads): no examples, no score, no reason. New `Rule` fields get their neutral
    /// value here, in one place.
    pub fn internal(id: i64, name: String, script: String, line: usize, timeout: Duration) -> Rule {
        Rule {
            id,
            name,
            script,
            line,
            timeout,
            examples: Vec::new(),
            score: 0,
            reason: None,
            reason_line: 0,
        }
    }

    pub fn label(&self) -> String {
        format!("rule {} {:?}", self.id, self.name)
    }
}

/// A `[[rule.example]]`: a row and the result it must give.
#[derive(Debug, Clone)]
pub struct Example {
    pub line: usize,
    pub row: toml::Table,
    /// The result it must give, when it says.
    pub expect: Option<Kind>,
    /// The decision the row must get from the whole file, with its line, when it says.
    pub decision: Option<(usize, String)>,
}

/// A checked rules file.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// `[columns]`: declared types by column name.
    pub columns: HashMap<String, ColumnType>,
    pub rules: Vec<Rule>,
    /// Columns declared with a `?` (`amount = "float?"`): an empty value is `()` in the
    /// rules instead of a bad row.
    pub nullable: std::collections::BTreeSet<String>,
    /// `[defaults] memory_limit`, in bytes, when the file sets one; else the command
    /// line's `--memory-limit` (`or_memory_limit`), else `budget::DEFAULT_LIMIT`.
    pub memory_limit: Option<usize>,
    /// `[decision]`, when the file has one.
    pub decision: Option<decision::Decision>,
    /// `[lists.*]` and `[windows.*]`: variables that are no input column; the lists'
    /// contents once `load` has read them.
    pub derived: std::sync::Arc<lists_windows::Derived>,
}

impl RuleSet {
    /// The memory budget of one evaluation, in bytes.
    pub fn memory_limit(&self) -> usize {
        self.memory_limit.unwrap_or(crate::budget::DEFAULT_LIMIT)
    }

    /// Applies `--memory-limit` unless the file's `[defaults]` set a limit (which wins,
    /// as its `timeout` wins over `--timeout`).
    pub fn or_memory_limit(&mut self, flag: Option<usize>) {
        if self.memory_limit.is_none() {
            self.memory_limit = flag;
        }
    }

    /// The longest time limit of any rule.
    pub fn max_timeout(&self) -> Duration {
        self.rules
            .iter()
            .map(|r| r.timeout)
            .max()
            .unwrap_or_default()
    }

    /// Per column, whether some rule may read it: its name is one of the identifier-shaped
    /// words of some rule's script — the words `Evaluator` binds. A column no rule names
    /// is never read, so the reader need not keep its values nor workers receive them.
    pub fn columns_read(&self, columns: &Columns) -> Vec<bool> {
        let words: std::collections::HashSet<&str> = self
            .rules
            .iter()
            .flat_map(|rule| {
                let template = rule.reason.as_ref().map(|t| t.variables());
                engine::identifiers(&rule.script).chain(template.into_iter().flatten())
            })
            .collect();
        columns
            .names
            .iter()
            .map(|name| words.contains(name.as_str()))
            .collect()
    }

    /// Whether an empty value of this column is `()` (its type was declared with a `?`).
    pub fn is_nullable(&self, name: &str) -> bool {
        self.nullable.contains(name)
    }

    /// The type of an input column: declared, or string.
    pub fn column_type(&self, name: &str) -> ColumnType {
        self.columns
            .get(name)
            .copied()
            .unwrap_or(ColumnType::String)
    }
}

/// A rules file read once: its bytes (as text), their hash, and the checked rules.
#[derive(Debug, Clone)]
pub struct LoadedRules {
    /// The file's text, exactly the bytes hashed and parsed.
    pub text: String,
    /// SHA-256 of `text`, lower-case hex (the summary's `rules_sha256`).
    pub sha256: String,
    pub set: RuleSet,
    /// The bytes of every `[lists.*]` file, in declaration order, read once: hashed into
    /// `sha256`, parsed into `set`, and shipped to worker processes.
    pub list_files: Vec<Vec<u8>>,
}

/// Reads `path` once (a pipe such as `<(cat rules.toml)` works), then checks the file
/// and compiles every script for syntax: every error at once.
pub fn load(path: &Path, default_timeout: Duration) -> Result<LoadedRules, RulesErrors> {
    let fail = |errors| RulesErrors {
        path: path.to_path_buf(),
        errors,
    };
    let text = read_text(path)?;
    let mut set = file::parse(&text, default_timeout).map_err(fail)?;
    let errors = engine::check_syntax(&set);
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let list_files = crate::lists::read_files(&set.derived.lists, path)
        .map_err(|errors| fail(errors.into_iter().map(list_error).collect()))?;
    attach_lists(&mut set, &list_files, |decl| {
        crate::lists::path_of(decl, path).display().to_string()
    })
    .map_err(fail)?;
    Ok(LoadedRules {
        sha256: ruleset_sha256(&text, &set, &list_files),
        text,
        set,
        list_files,
    })
}

/// A list file's problem as a problem of the rules file, on the list's line.
pub fn list_error(e: crate::lists::ListError) -> RulesError {
    RulesError {
        line: Some(e.decl_line),
        rule: None,
        message: e.to_string(),
        undefined_variable: None,
    }
}

/// Parses the lists' bytes (in declaration order) into `set`; `shown` names a list's file
/// in messages. Every problem of every list is returned.
pub fn attach_lists(
    set: &mut RuleSet,
    files: &[Vec<u8>],
    shown: impl Fn(&lists_windows::ListDecl) -> String,
) -> Result<(), Vec<RulesError>> {
    let mut errors = Vec::new();
    let mut loaded = Vec::with_capacity(files.len());
    for (decl, bytes) in set.derived.lists.iter().zip(files) {
        match crate::lists::parse(decl, &shown(decl), bytes) {
            Ok(list) => loaded.push(std::sync::Arc::new(list)),
            Err(e) => errors.extend(e.into_iter().map(list_error)),
        }
    }
    if files.len() != set.derived.lists.len() {
        errors.push(RulesError::file(format!(
            "internal error: {} list files for {} lists",
            files.len(),
            set.derived.lists.len()
        )));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    install_lists(set, loaded);
    Ok(())
}

/// Binds lists already parsed (`lists::parse`, one per declaration, in order) to `set`'s
/// list names, as `attach_lists` does with their files' bytes.
pub fn install_lists(set: &mut RuleSet, loaded: Vec<std::sync::Arc<crate::lists::List>>) {
    let mut derived = (*set.derived).clone();
    derived.loaded = loaded;
    set.derived = std::sync::Arc::new(derived);
}

/// The summary's `rules_sha256`: of the rules file alone when it declares no list, else
/// of the file and then, per list in declaration order, its name, its file's length and
/// bytes — a changed list file changes the hash.
pub fn ruleset_sha256(text: &str, set: &RuleSet, list_files: &[Vec<u8>]) -> String {
    if list_files.is_empty() {
        return sha256_hex(text.as_bytes());
    }
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    for (decl, bytes) in set.derived.lists.iter().zip(list_files) {
        hasher.update(b"\0list\0");
        hasher.update(decl.name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A rules file's text, read once; an unreadable or non-UTF-8 file is the file's error.
pub fn read_text(path: &Path) -> Result<String, RulesErrors> {
    let fail = |errors| RulesErrors {
        path: path.to_path_buf(),
        errors,
    };
    read_capped(path)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|e| {
                format!(
                    "not valid UTF-8 (byte {}): not a rules file",
                    e.utf8_error().valid_up_to()
                )
            })
        })
        .map_err(|message| fail(vec![RulesError::file(message)]))
}

/// The largest rules file, far above any real one: a larger file (an input named by
/// mistake, `/dev/zero`) is refused instead of being read into memory whole.
pub const MAX_RULES_BYTES: u64 = 64 << 20;

/// Reads at most `MAX_RULES_BYTES` of `path` (a file, or a pipe such as `<(cat r.toml)`);
/// more is an error.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::size::read_capped(path, MAX_RULES_BYTES, "not a rules file")
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where `RulesErrors` of a file read from a path point.
impl RulesErrors {
    pub fn of(path: &Path, errors: Vec<RulesError>) -> RulesErrors {
        RulesErrors {
            path: PathBuf::from(path),
            errors,
        }
    }
}
