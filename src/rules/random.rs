//! The randomness rules may use: `coin_flip()` and `random()` are pure functions of
//! (seed, transaction id, rule id, n-th draw), so every run, executor and job count agrees.

/// SplitMix64's finaliser: a fast, well-mixed bijection on u64.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of the transaction id as written, so ids of any type hash the same everywhere.
pub fn hash_id(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The stream key of one evaluation.
pub fn key(seed: u64, id_hash: u64, rule_id: i64) -> u64 {
    mix(mix(seed ^ mix(id_hash)) ^ rule_id as u64)
}

/// The n-th 64 random bits of a stream.
pub fn draw(key: u64, n: u64) -> u64 {
    mix(key ^ mix(n))
}

/// A float in [0, 1) from 64 random bits (the top 53).
pub fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_depend_on_every_input_and_are_balanced() {
        let k = key(0, hash_id("17"), 1);
        assert_eq!(k, key(0, hash_id("17"), 1));
        assert_ne!(k, key(1, hash_id("17"), 1));
        assert_ne!(k, key(0, hash_id("18"), 1));
        assert_ne!(k, key(0, hash_id("17"), 2));
        assert_ne!(draw(k, 0), draw(k, 1));
        let heads = (0..100_000)
            .filter(|&i| draw(key(7, hash_id(&i.to_string()), 3), 0) >> 63 == 1)
            .count();
        assert!(
            (48_500..51_500).contains(&heads),
            "{heads} heads in 100000 flips"
        );
        let u = unit(u64::MAX);
        assert!(u < 1.0 && u > 0.999);
        assert_eq!(unit(0), 0.0);
    }
}
