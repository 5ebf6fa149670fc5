//! `txguard rockets` and the hidden `rocket` child (being written).

use crate::cli::{RocketArgs, RocketsArgs};

pub fn run(_args: &RocketsArgs) -> anyhow::Result<i32> {
    anyhow::bail!("rockets: not yet implemented")
}

pub fn run_one(_args: &RocketArgs) -> anyhow::Result<i32> {
    anyhow::bail!("rocket: not yet implemented")
}
