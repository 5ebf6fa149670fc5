//! RFC 3339 times (`2026-01-01T00:00:03Z`, `2026-01-01 01:00:03.25+01:00`) to nanoseconds
//! since the Unix epoch: the window stage parses one per row, so this is a hand-written
//! byte parser (no allocation, no locale, no leap-second table).

/// Nanoseconds since 1970-01-01T00:00:00Z, or why the text is not an RFC 3339 time.
pub fn parse_rfc3339(text: &[u8]) -> Result<i64, &'static str> {
    const WHY: &str = "is not an RFC 3339 time (e.g. 2026-01-01T00:00:03Z)";
    let digits = |at: usize, n: usize| -> Result<i64, &'static str> {
        let part = text.get(at..at + n).ok_or(WHY)?;
        part.iter().try_fold(0i64, |acc, &b| {
            if b.is_ascii_digit() {
                Ok(acc * 10 + i64::from(b - b'0'))
            } else {
                Err(WHY)
            }
        })
    };
    let sep = |at: usize, allowed: &[u8]| -> Result<(), &'static str> {
        match text.get(at) {
            Some(b) if allowed.contains(b) => Ok(()),
            _ => Err(WHY),
        }
    };
    let year = digits(0, 4)?;
    sep(4, b"-")?;
    let month = digits(5, 2)?;
    sep(7, b"-")?;
    let day = digits(8, 2)?;
    sep(10, b"Tt ")?;
    let hour = digits(11, 2)?;
    sep(13, b":")?;
    let minute = digits(14, 2)?;
    sep(16, b":")?;
    let second = digits(17, 2)?;
    let mut at = 19;
    let mut nanos = 0i64;
    if text.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while let Some(b) = text.get(at).filter(|b| b.is_ascii_digit()) {
            if at - start < 9 {
                nanos = nanos * 10 + i64::from(b - b'0');
            }
            at += 1;
        }
        let n = at - start;
        if n == 0 {
            return Err(WHY);
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset = match text.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let h = digits(at + 1, 2)?;
            sep(at + 3, b":")?;
            let m = digits(at + 4, 2)?;
            if h > 23 || m > 59 {
                return Err(WHY);
            }
            at += 6;
            let o = h * 3600 + m * 60;
            if sign == b'+' { o } else { -o }
        }
        _ => return Err(WHY),
    };
    if at != text.len() {
        return Err(WHY);
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(WHY),
    };
    // Second 60 is a leap second: RFC 3339 allows it; it is read as the next second's start.
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return Err(WHY);
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nanos))
        .ok_or("is a time out of range (1677-09-21T00:12:44Z to 2262-04-11T23:47:16.854775807Z: nanoseconds in 64 bits)")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_offsets_and_fractions_are_nanoseconds_since_the_epoch() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339(b"2026-01-01T00:00:03Z"),
            Ok(1_767_225_603_000_000_000)
        );
        assert_eq!(
            parse_rfc3339(b"2026-01-01 01:00:03.25+01:00"),
            Ok(1_767_225_603_250_000_000)
        );
        assert_eq!(
            parse_rfc3339(b"2024-02-29T23:59:59.123456789123-00:30"),
            Ok(1_709_251_199_123_456_789 + 1800 * 1_000_000_000)
        );
        assert_eq!(parse_rfc3339(b"1969-12-31T23:59:59Z"), Ok(-1_000_000_000));
        // The ends of the range the message names.
        assert_eq!(
            parse_rfc3339(b"2262-04-11T23:47:16.854775807Z"),
            Ok(i64::MAX)
        );
        assert_eq!(
            parse_rfc3339(b"1677-09-21T00:12:44Z"),
            Ok(-9_223_372_036_000_000_000)
        );
        for outside in [
            &b"2262-04-11T23:47:16.854775808Z"[..],
            b"1677-09-21T00:12:43.9Z",
        ] {
            let why = parse_rfc3339(outside).unwrap_err();
            assert!(why.contains("1677-09-21T00:12:44Z to 2262-04-11T23:47:16.854775807Z"));
        }
        for bad in [
            &b""[..],
            b"2026-01-01",
            b"2026-01-01T00:00:03",
            b"2026-02-29T00:00:00Z",
            b"2026-13-01T00:00:00Z",
            b"2026-01-01T24:00:00Z",
            b"2026-01-01T00:00:00.Z",
            b"2026-01-01T00:00:00Zx",
            b"+026-01-01T00:00:00Z",
            b"9999-01-01T00:00:00Z",
        ] {
            assert!(
                parse_rfc3339(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
