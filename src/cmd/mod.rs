//! One file per subcommand; `dispatch` hands the parsed command line to the right one.

pub mod check;
pub mod completions;
pub mod diff;
pub mod generate;
pub mod man;
pub mod merge;
pub mod rockets;
pub mod run;
pub mod worker;

use crate::cli::Command;

/// Runs one subcommand and returns its exit code; errors are mapped by `exit::report`.
pub fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(&args),
        Command::Diff(args) => diff::run(args),
        Command::Generate(args) => generate::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Rockets(args) => rockets::run(&args),
        Command::Completions(args) => completions::run(&args),
        Command::Man(args) => man::run(&args),
        Command::Worker(args) => worker::run(&args),
        Command::Rocket(args) => rockets::run_one(&args),
    }
}
