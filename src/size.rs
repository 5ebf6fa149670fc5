//! Byte sizes as people write them (`64KiB`, `1MiB`, `64MiB`), for `--max-record-size`,
//! and back again for messages, so both sides use the same units.

/// Units `display_size` writes, largest first (binary: what `parse_size` reads back).
const UNITS: [(&str, u64); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// Parses a whole number of bytes with an optional unit, in any case: binary `KiB`,
/// `MiB`, `GiB` (also `K`, `M`, `G`), decimal `KB`, `MB`, `GB`, or `B`: `4096`, `64KiB`,
/// `1 MiB`, `300MB`. Zero is refused.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{text:?} is not a size (expected e.g. 64KiB, 1MiB, 64MiB)"
            ));
        }
    };
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| format!("{text:?} is not a size (expected e.g. 64KiB, 1MiB, 64MiB)"))?;
    if bytes == 0 {
        return Err("a size must be greater than zero".into());
    }
    Ok(bytes)
}

/// The size in the largest unit that divides it, as `parse_size` reads it back and people
/// write it: `1 MiB`, `64 KiB`, `1000 B`, `1 B` (a unit symbol: no `1 bytes`).
pub fn display_size(bytes: usize) -> String {
    let bytes = bytes as u64;
    let (unit, scale) = UNITS
        .iter()
        .find(|&&(_, scale)| bytes >= scale && bytes.is_multiple_of(scale))
        .copied()
        .unwrap_or(("B", 1));
    format!("{} {unit}", bytes / scale)
}

/// Reads at most `max` bytes of `path` (a file, or a pipe such as `<(cat r.toml)`); more
/// is an error saying `larger than {max}: {why}`, so that a file named by mistake (an
/// input, `/dev/zero`) is refused instead of read into memory.
pub fn read_capped(path: &std::path::Path, max: u64, why: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "larger than {}: {why}",
            display_size(max as usize)
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_and_read_back() {
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert!(parse_size("0MiB").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_size("300MB"), Ok(300_000_000));
        assert_eq!(parse_size("1 gib"), Ok(1 << 30));
        assert!(parse_size("99999999999GiB").is_err());
        assert_eq!(display_size(1 << 20), "1 MiB");
        assert_eq!(display_size(64 << 10), "64 KiB");
        assert_eq!(display_size(1000), "1000 B");
        assert_eq!(display_size(1), "1 B");
        assert_eq!(display_size(3 << 30), "3 GiB");
        for size in [1, 10, 1000, 4096, 1 << 20, 64 << 20, (1 << 20) + 1] {
            assert_eq!(parse_size(&display_size(size)), Ok(size), "{size}");
        }
    }
}
