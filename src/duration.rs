//! Time limits as people write them (`250ms`, `3s`, `1m30s`): one parser for the
//! command line and the rules file, so both accept and refuse the same things.

use std::time::Duration;

/// The longest limit accepted: deadlines are `Instant + limit`, and a limit of years
/// would overflow the clock.
const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses `250ms`, `3s`, `1m`, `1m30s`; a zero limit, or one over a week, is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e} (expected e.g. 250ms, 3s, 1m)"))?;
    if d.is_zero() {
        return Err("a time limit must be greater than zero".into());
    }
    if d > LONGEST {
        return Err("a time limit must be at most a week (7d)".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_the_contract_writes_them() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("8d").is_err());
    }
}
