//! Synthetic transactions with realistic shape: a few accounts are very active, amounts
//! are log-normal with a heavy tail, and small shares of high-risk countries and
//! merchants, round amounts and amounts just under the 10,000 reporting threshold.
//! Planted among them, from a second seeded stream: bursts of small payments (an account
//! paying 12–20 times a few dollars within minutes), structuring (three payments just
//! under 10,000 within an hour) and a few accounts that always pay from a country of
//! `data/lists/high_risk_countries.csv`, so that the sample's velocity, structuring and
//! list rules fire. The same seed writes byte-identical output (a portable, seeded
//! xoshiro256++).

use std::io::{self, Write};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// The header `generate` writes, as fixed by the contract.
pub const HEADER: &str = "id,timestamp,account,amount,currency,country,merchant\n";

const ACCOUNTS: u64 = 50_000;
/// 2026-01-01T00:00:00Z, where generated timestamps start.
const EPOCH: i64 = 1_767_225_600;

/// Weighted choices, as (value, weight); weights need not sum to anything.
const COUNTRIES: &[(&str, u32)] = &[
    ("US", 380),
    ("GB", 90),
    ("DE", 80),
    ("FR", 70),
    ("NL", 40),
    ("ES", 40),
    ("IT", 40),
    ("CA", 50),
    ("CH", 20),
    ("SE", 15),
    ("PL", 20),
    ("BR", 25),
    ("MX", 25),
    ("IN", 30),
    ("JP", 25),
    ("SG", 10),
    ("AE", 10),
    ("NG", 6),
    ("RU", 4),
    ("IR", 2),
    ("KP", 1),
    ("SY", 1),
    ("CU", 1),
];
const MERCHANTS: &[(&str, u32)] = &[
    ("grocery", 220),
    ("restaurant", 160),
    ("fuel", 90),
    ("online_retail", 180),
    ("travel", 50),
    ("electronics", 50),
    ("pharmacy", 40),
    ("utilities", 40),
    ("money_transfer", 12),
    ("jewelry", 8),
    ("crypto_exchange", 6),
    ("casino", 5),
];
const CURRENCIES: &[(&str, u32)] = &[
    ("USD", 55),
    ("EUR", 30),
    ("GBP", 10),
    ("CHF", 2),
    ("JPY", 3),
];

/// A weighted table ready for sampling by cumulative weight.
struct Table {
    values: Vec<&'static str>,
    cumulative: Vec<u32>,
}

impl Table {
    fn new(items: &[(&'static str, u32)]) -> Table {
        let mut total = 0;
        let cumulative = items
            .iter()
            .map(|(_, w)| {
                total += w;
                total
            })
            .collect();
        Table {
            values: items.iter().map(|(v, _)| *v).collect(),
            cumulative,
        }
    }

    fn pick(&self, rng: &mut Xoshiro256PlusPlus) -> &'static str {
        let total = *self.cumulative.last().expect("non-empty table");
        let x = rng.random_range(0..total);
        self.values[self.cumulative.partition_point(|&c| c <= x)]
    }
}

/// Countries of the sample's high-risk list: planted accounts pay from them.
const LISTED: &[&str] = &["IR", "KP", "SY", "CU"];
/// One planted pattern starts after a normal row with these odds (1 in N).
const BURST_ODDS: u32 = 600;
const STRUCTURING_ODDS: u32 = 1500;
const LISTED_ODDS: u32 = 400;

/// A planted transaction, due at `seconds`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Planted {
    seconds: i64,
    /// Tie-breaker: the order they were planted in.
    seq: u64,
    account: String,
    cents: u64,
    currency: &'static str,
    country: &'static str,
    merchant: &'static str,
}

/// Plants patterns after normal rows: a stream of its own, so the normal rows stay the
/// same whatever is planted.
struct Planter {
    rng: Xoshiro256PlusPlus,
    due: std::collections::BinaryHeap<std::cmp::Reverse<Planted>>,
    seq: u64,
}

impl Planter {
    fn new(seed: u64) -> Planter {
        Planter {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            due: std::collections::BinaryHeap::new(),
            seq: 0,
        }
    }

    fn plant(
        &mut self,
        seconds: i64,
        account: &str,
        cents: u64,
        country: &'static str,
        merchant: &'static str,
    ) {
        self.seq += 1;
        self.due.push(std::cmp::Reverse(Planted {
            seconds,
            seq: self.seq,
            account: account.to_string(),
            cents,
            currency: "USD",
            country,
            merchant,
        }));
    }

    /// Maybe starts patterns at `now`.
    fn after_row(&mut self, now: i64) {
        if self.rng.random_range(0..BURST_ODDS) == 0 {
            // A burst: 12–20 payments of 1.00–29.99 within about ten minutes.
            let account = format!("ACC{:06}", self.rng.random_range(10_000..ACCOUNTS));
            let merchant = ["online_retail", "grocery", "fuel"][self.rng.random_range(0..3)];
            let mut at = now + 1;
            for _ in 0..self.rng.random_range(12..=20) {
                at += self.rng.random_range(5..40);
                let cents = self.rng.random_range(100..3000);
                self.plant(at, &account, cents, "US", merchant);
            }
        }
        if self.rng.random_range(0..STRUCTURING_ODDS) == 0 {
            // Structuring: three payments just under 10,000 within an hour.
            let account = format!("ACC{:06}", self.rng.random_range(10_000..ACCOUNTS));
            let mut at = now + 1;
            for _ in 0..3 {
                let cents = self.rng.random_range(900_000..1_000_000);
                self.plant(at, &account, cents, "US", "money_transfer");
                at += self.rng.random_range(600..1500);
            }
        }
        if self.rng.random_range(0..LISTED_ODDS) == 0 {
            // One of four accounts that pay from a listed country.
            let n = self.rng.random_range(0..4);
            let cents = amount_cents(&mut self.rng);
            self.plant(
                now + 1,
                &format!("ACC9{:05}", n + 1),
                cents,
                LISTED[n],
                "money_transfer",
            );
        }
    }

    /// The planted row due by `now`, if any.
    fn next_due(&mut self, now: i64) -> Option<Planted> {
        if self.due.peek().is_some_and(|p| p.0.seconds <= now) {
            self.due.pop().map(|p| p.0)
        } else {
            None
        }
    }
}

/// Writes `count` transactions (after the header) to `out`.
pub fn write_transactions(out: &mut impl Write, count: u64, seed: u64) -> io::Result<()> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut planter = Planter::new(seed);
    let (countries, merchants, currencies) = (
        Table::new(COUNTRIES),
        Table::new(MERCHANTS),
        Table::new(CURRENCIES),
    );
    out.write_all(HEADER.as_bytes())?;
    let mut line = String::with_capacity(128);
    let mut seconds = EPOCH;
    for id in 1..=count {
        if let Some(p) = planter.next_due(seconds) {
            line.clear();
            use std::fmt::Write as _;
            let _ = write!(line, "{id},");
            // At the clock's time: the file stays in time order.
            push_timestamp(&mut line, seconds);
            let _ = writeln!(
                line,
                ",{},{}.{:02},{},{},{}",
                p.account,
                p.cents / 100,
                p.cents % 100,
                p.currency,
                p.country,
                p.merchant
            );
            out.write_all(line.as_bytes())?;
            continue;
        }
        seconds += rng.random_range(0..4);
        // u^4 crowds accounts toward index 0: a few accounts make most transactions.
        let u: f64 = rng.random();
        let account = (u.powi(4) * ACCOUNTS as f64) as u64;
        let cents = amount_cents(&mut rng);
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(line, "{id},");
        push_timestamp(&mut line, seconds);
        let _ = writeln!(
            line,
            ",ACC{account:06},{}.{:02},{},{},{}",
            cents / 100,
            cents % 100,
            currencies.pick(&mut rng),
            countries.pick(&mut rng),
            merchants.pick(&mut rng)
        );
        out.write_all(line.as_bytes())?;
        planter.after_row(seconds);
    }
    Ok(())
}

/// An amount in cents: mostly log-normal (median ~80.00), with a few round amounts,
/// structuring just under 10,000, and large wires.
fn amount_cents(rng: &mut Xoshiro256PlusPlus) -> u64 {
    let kind: u32 = rng.random_range(0..1000);
    match kind {
        0..=4 => rng.random_range(900_000..1_000_000), // just under the threshold
        5..=14 => rng.random_range(1..=20) * 50_000,   // round: 500.00 .. 10,000.00
        15..=19 => rng.random_range(1_000_000..5_000_000), // large wires
        _ => {
            // Box–Muller: a standard normal from two uniforms.
            let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let amount = (80.0f64.ln() + 1.5 * z).exp();
            ((amount * 100.0).round() as u64).clamp(1, 500_000_000)
        }
    }
}

/// Appends `seconds` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn push_timestamp(out: &mut String, seconds: i64) {
    use std::fmt::Write as _;
    let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_right_across_leap_years() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        let mut s = String::new();
        push_timestamp(&mut s, EPOCH + 3_661);
        assert_eq!(s, "2026-01-01T01:01:01Z");
    }

    #[test]
    fn the_same_seed_writes_the_same_bytes_and_another_does_not() {
        let make = |seed| {
            let mut out = Vec::new();
            write_transactions(&mut out, 500, seed).unwrap();
            out
        };
        assert_eq!(make(3), make(3));
        assert_ne!(make(3), make(4));
        let text = String::from_utf8(make(3)).unwrap();
        assert_eq!(text.lines().count(), 501);
        assert!(text.lines().skip(1).all(|l| l.split(',').count() == 7));
    }

    #[test]
    fn distributions_have_the_intended_shape() {
        let mut out = Vec::new();
        write_transactions(&mut out, 100_000, 1).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        let share = |f: &dyn Fn(&Vec<&str>) -> bool| {
            rows.iter().filter(|r| f(r)).count() as f64 / rows.len() as f64
        };
        let high_risk = share(&|r| ["IR", "KP", "SY", "CU"].contains(&r[5]));
        assert!((0.002..0.01).contains(&high_risk), "{high_risk}");
        let casino = share(&|r| r[6] == "casino");
        assert!((0.002..0.01).contains(&casino), "{casino}");
        let big = share(&|r| r[3].parse::<f64>().unwrap() > 10_000.0);
        assert!((0.003..0.02).contains(&big), "{big}");
        // Planted: bursts of small payments, structuring, listed-country accounts.
        let mut small = std::collections::HashMap::new();
        let mut under = std::collections::HashMap::new();
        for r in &rows {
            let amount = r[3].parse::<f64>().unwrap();
            if r[2] >= "ACC010000" && amount < 30.0 {
                *small.entry(r[2]).or_insert(0) += 1;
            }
            if (9000.0..10_000.0).contains(&amount) {
                *under.entry(r[2]).or_insert(0) += 1;
            }
        }
        let bursts = small.values().filter(|&&n| n >= 12).count();
        assert!((50..500).contains(&bursts), "{bursts} bursts");
        let structuring = under.values().filter(|&&n| n >= 3).count();
        assert!(structuring >= 20, "{structuring} structuring accounts");
        let listed = share(&|r| r[2].starts_with("ACC9"));
        assert!((0.001..0.01).contains(&listed), "{listed}");
        assert!(
            rows.iter()
                .filter(|r| r[2].starts_with("ACC9"))
                .all(|r| LISTED.contains(&r[5]))
        );
        let times: Vec<&str> = rows.iter().map(|r| r[1]).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
        let top_account = share(&|r| r[2] == "ACC000000");
        assert!(
            top_account > 0.05,
            "the most active account has {top_account}"
        );
    }
}
