//! The flight plan: every rocket's name, delay and countdown, drawn up front from one
//! seeded RNG so that every mode flies exactly the same rockets for the same seed.

use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, RngExt, SeedableRng};

/// Delays are drawn from `[0, MAX_DELAY)` seconds, as in the original program.
pub const MAX_DELAY: f64 = 5.0;
/// Countdowns are drawn from `0..=MAX_COUNTDOWN`, as in the original program.
pub const MAX_COUNTDOWN: u32 = 4;

/// One rocket, in unscaled seconds: the time scale is applied when it flies.
#[derive(Debug, Clone, PartialEq)]
pub struct Rocket {
    /// Position in the plan (0-based); failures are reported by it.
    pub index: usize,
    /// The first 4 hex digits of a v4 UUID, lowercase.
    pub name: String,
    /// Seconds to wait before the countdown, in `[0, 5)`.
    pub delay: f64,
    /// Countdown steps of one second each, in `0..=4`.
    pub countdown: u32,
}

impl Rocket {
    /// Seconds this rocket takes on its own, unscaled: delay + countdown.
    pub fn seconds(&self) -> f64 {
        self.delay + f64::from(self.countdown)
    }
}

/// The rockets of one run and the seed that reproduces them.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The seed the rockets were drawn from (printed so any run can be repeated).
    pub seed: u64,
    /// The rockets, in the order they were drawn.
    pub rockets: Vec<Rocket>,
}

impl Plan {
    /// Draws `count` rockets from `seed`. The same seed always gives the same plan, on
    /// every platform: Xoshiro256++ is a portable generator.
    pub fn new(seed: u64, count: usize) -> Plan {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let rockets = (0..count)
            .map(|index| {
                let mut bytes = [0u8; 16];
                rng.fill_bytes(&mut bytes);
                let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
                // The first 4 hex digits are the first two bytes, which the version and
                // variant bits do not touch: every name in 0000..ffff is possible.
                let name = uuid.simple().to_string()[..4].to_owned();
                let delay = rng.random_range(0.0..MAX_DELAY);
                let countdown = rng.random_range(0..=MAX_COUNTDOWN);
                Rocket {
                    index,
                    name,
                    delay,
                    countdown,
                }
            })
            .collect();
        Plan { seed, rockets }
    }

    /// A fresh seed from the operating system, for runs without `--seed`.
    pub fn random_seed() -> u64 {
        rand::random()
    }

    /// The ideal wall time: the longest single rocket, scaled. No schedule can beat it.
    pub fn ideal(&self, time_scale: f64) -> Duration {
        let longest = self.rockets.iter().map(Rocket::seconds).fold(0.0, f64::max);
        Duration::try_from_secs_f64(longest * time_scale).unwrap_or(Duration::MAX)
    }

    /// Total countdown steps: the number of `i...` lines a run prints.
    pub fn countdown_lines(&self) -> u64 {
        self.rockets.iter().map(|r| u64::from(r.countdown)).sum()
    }

    /// The rockets longest first. Concurrent modes start them in this order (longest
    /// processing time first): a rocket started late is then a short one, so the time
    /// spent starting rockets overlaps the long flights instead of adding to them. The
    /// sort is stable, so equal rockets keep plan order.
    pub fn longest_first(&self) -> Vec<&Rocket> {
        let mut order: Vec<&Rocket> = self.rockets.iter().collect();
        order.sort_by(|a, b| b.seconds().total_cmp(&a.seconds()));
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_plan() {
        assert_eq!(Plan::new(7, 500), Plan::new(7, 500));
        assert_ne!(Plan::new(7, 500).rockets, Plan::new(8, 500).rockets);
    }

    #[test]
    fn a_longer_plan_starts_with_the_shorter_one() {
        let short = Plan::new(3, 10);
        let long = Plan::new(3, 100);
        assert_eq!(short.rockets[..], long.rockets[..10]);
    }

    #[test]
    fn rockets_stay_within_the_original_ranges() {
        let plan = Plan::new(11, 5_000);
        for (i, r) in plan.rockets.iter().enumerate() {
            assert_eq!(r.index, i);
            assert!((0.0..MAX_DELAY).contains(&r.delay), "{r:?}");
            assert!(r.countdown <= MAX_COUNTDOWN, "{r:?}");
            assert_eq!(r.name.len(), 4, "{r:?}");
            assert!(
                r.name
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{r:?}"
            );
        }
        // Every countdown value occurs: the range is inclusive of 4.
        for c in 0..=MAX_COUNTDOWN {
            assert!(
                plan.rockets.iter().any(|r| r.countdown == c),
                "no countdown {c}"
            );
        }
    }

    #[test]
    fn ideal_is_the_longest_rocket_scaled() {
        let plan = Plan {
            seed: 0,
            rockets: vec![
                Rocket {
                    index: 0,
                    name: "aaaa".into(),
                    delay: 1.5,
                    countdown: 2,
                },
                Rocket {
                    index: 1,
                    name: "bbbb".into(),
                    delay: 4.0,
                    countdown: 0,
                },
                Rocket {
                    index: 2,
                    name: "cccc".into(),
                    delay: 0.25,
                    countdown: 3,
                },
            ],
        };
        assert_eq!(plan.ideal(1.0), Duration::from_secs_f64(4.0));
        assert_eq!(plan.ideal(0.5), Duration::from_secs_f64(2.0));
        assert_eq!(plan.ideal(0.0), Duration::ZERO);
        assert_eq!(plan.countdown_lines(), 5);
        let order: Vec<&str> = plan
            .longest_first()
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(order, ["bbbb", "aaaa", "cccc"]);
    }

    #[test]
    fn an_empty_plan_has_no_ideal_time() {
        assert_eq!(Plan::new(1, 0).ideal(1.0), Duration::ZERO);
    }
}
