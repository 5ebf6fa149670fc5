//! `txguard run` (being written).

pub fn run(_args: crate::cli::RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("run: not yet implemented")
}
