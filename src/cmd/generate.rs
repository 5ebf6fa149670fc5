//! `txguard generate` (being written).

pub fn run(_args: &crate::cli::GenerateArgs) -> anyhow::Result<i32> {
    anyhow::bail!("generate: not yet implemented")
}
