//! `txguard worker` (being written).

pub fn run(_args: &crate::cli::WorkerArgs) -> anyhow::Result<i32> {
    anyhow::bail!("worker: not yet implemented")
}
