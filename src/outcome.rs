//! The result of one (transaction, rule) evaluation, as written to the results CSV.

use std::time::Duration;

/// What one evaluation gave. Every (valid transaction, rule) pair gets exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    True,
    False,
    /// The script failed, or returned something that is not a bool; carries the message.
    Error(String),
    /// The evaluation passed its deadline; carries the limit.
    Timeout(Duration),
}

/// The four result kinds, in the order summaries list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    True = 0,
    False = 1,
    Error = 2,
    Timeout = 3,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::True, Kind::False, Kind::Error, Kind::Timeout];

    /// The word written in the `result` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::True => "true",
            Kind::False => "false",
            Kind::Error => "error",
            Kind::Timeout => "timeout",
        }
    }
}

impl Outcome {
    pub fn kind(&self) -> Kind {
        match self {
            Outcome::True => Kind::True,
            Outcome::False => Kind::False,
            Outcome::Error(_) => Kind::Error,
            Outcome::Timeout(_) => Kind::Timeout,
        }
    }

    /// Writes the `detail` column: empty for a bool, the message, or `exceeded 500ms`.
    pub fn write_detail(&self, out: &mut String) {
        match self {
            Outcome::True | Outcome::False => {}
            Outcome::Error(message) => out.push_str(message),
            Outcome::Timeout(limit) => {
                out.push_str("exceeded ");
                out.push_str(&humantime::format_duration(*limit).to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_detail_names_the_limit_as_users_write_it() {
        let mut s = String::new();
        Outcome::Timeout(Duration::from_millis(500)).write_detail(&mut s);
        assert_eq!(s, "exceeded 500ms");
        s.clear();
        Outcome::Timeout(Duration::from_secs(3)).write_detail(&mut s);
        assert_eq!(s, "exceeded 3s");
    }
}
