//! Rules: the file's model (`file`), and the sandboxed Rhai engine that compiles and
//! evaluates them (`engine`). `Evaluator::evaluate` is the only place a rule ever runs.

pub mod engine;
pub mod file;
mod random;

use std::collections::HashMap;
use std::time::Duration;

use rhai::Dynamic;

pub use engine::{Evaluator, cancel_all};
pub use file::{RulesError, RulesErrors, one_line};
pub use random::hash_id as random_key_hash;

/// The declared type of an input column (`[columns]`); undeclared columns are strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int,
    Float,
    Bool,
    String,
}

impl ColumnType {
    pub fn parse(name: &str) -> Option<ColumnType> {
        Some(match name {
            "int" => ColumnType::Int,
            "float" => ColumnType::Float,
            "bool" => ColumnType::Bool,
            "string" => ColumnType::String,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::Bool => "bool",
            ColumnType::String => "string",
        }
    }

    /// Parses one CSV field as this type; the error is the message's tail, e.g.
    /// `is not a float`.
    pub fn value(self, field: &[u8]) -> Result<Dynamic, &'static str> {
        let text = std::str::from_utf8(field).map_err(|_| "is not valid UTF-8")?;
        Ok(match self {
            ColumnType::String => Dynamic::from(text.to_string()),
            ColumnType::Int => Dynamic::from_int(text.parse().map_err(|_| "is not an int")?),
            ColumnType::Float => match text.parse::<f64>() {
                Ok(f) if !f.is_nan() => Dynamic::from_float(f),
                _ => return Err("is not a float"),
            },
            ColumnType::Bool => match text {
                "true" | "TRUE" | "True" => Dynamic::TRUE,
                "false" | "FALSE" | "False" => Dynamic::FALSE,
                _ => return Err("is not a bool (true or false)"),
            },
        })
    }
}

/// The columns a rule can see, in the order rows store their values: every input column
/// whose header is an identifier, with its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    pub names: Vec<String>,
    pub types: Vec<ColumnType>,
}

impl Columns {
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// True for names a rule can use as a variable (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "_"
}

/// One typed transaction, as every executor sees it.
#[derive(Debug, Clone)]
pub struct Row {
    /// Line of the input where the row starts (1 = the header).
    pub line: u64,
    /// The `id` field as written in the input; written back to the results as is.
    pub id: String,
    /// One value per `Columns` entry.
    pub values: Vec<Dynamic>,
}

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
}

impl Rule {
    pub fn label(&self) -> String {
        format!("rule {} {:?}", self.id, self.name)
    }
}

/// A `[[rule.example]]`: a row and the result it must give.
#[derive(Debug, Clone)]
pub struct Example {
    pub line: usize,
    pub row: toml::Table,
    pub expect: Expect,
}

/// The result an example expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    True,
    False,
    Error,
    Timeout,
}

impl Expect {
    fn from_toml(value: &toml::Value) -> Option<Expect> {
        Some(match value {
            toml::Value::Boolean(true) => Expect::True,
            toml::Value::Boolean(false) => Expect::False,
            toml::Value::String(s) => match s.as_str() {
                "true" => Expect::True,
                "false" => Expect::False,
                "error" => Expect::Error,
                "timeout" => Expect::Timeout,
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// A checked rules file.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// `[columns]`: declared types by column name.
    pub columns: HashMap<String, ColumnType>,
    pub rules: Vec<Rule>,
}

impl RuleSet {
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
            .flat_map(|rule| engine::identifiers(&rule.script))
            .collect();
        columns
            .names
            .iter()
            .map(|name| words.contains(name.as_str()))
            .collect()
    }

    /// The type of an input column: declared, or string.
    pub fn column_type(&self, name: &str) -> ColumnType {
        self.columns
            .get(name)
            .copied()
            .unwrap_or(ColumnType::String)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_as_their_declared_type_or_say_why_not() {
        assert_eq!(ColumnType::Int.value(b"-42").unwrap().as_int(), Ok(-42));
        assert_eq!(
            ColumnType::Float.value(b"1e3").unwrap().as_float(),
            Ok(1000.0)
        );
        assert_eq!(ColumnType::Bool.value(b"TRUE").unwrap().as_bool(), Ok(true));
        assert_eq!(
            ColumnType::Float.value(b"12x").unwrap_err(),
            "is not a float"
        );
        assert_eq!(
            ColumnType::Float.value(b"NaN").unwrap_err(),
            "is not a float"
        );
        assert_eq!(ColumnType::Int.value(b"").unwrap_err(), "is not an int");
        assert_eq!(ColumnType::Int.value(b"1.5").unwrap_err(), "is not an int");
        assert_eq!(
            ColumnType::String.value(b"\xff").unwrap_err(),
            "is not valid UTF-8"
        );
        assert_eq!(
            ColumnType::String
                .value("Zürich".as_bytes())
                .unwrap()
                .into_string()
                .unwrap(),
            "Zürich"
        );
    }

    #[test]
    fn identifiers_are_ascii_words() {
        assert!(is_identifier("amount"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("two words"));
        assert!(!is_identifier("montant€"));
        assert!(!is_identifier("_"));
        assert!(!is_identifier(""));
    }
}
