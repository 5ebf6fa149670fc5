//! `txguard check` (being written).

pub fn run(_args: &crate::cli::CheckArgs) -> anyhow::Result<i32> {
    anyhow::bail!("check: not yet implemented")
}
