//! `txguard`: parse the command line, run the command, turn the outcome into an exit code.

use clap::Parser;

fn main() {
    let cli = txguard::cli::Cli::parse();
    let code = match txguard::cmd::dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => txguard::exit::report(&err),
    };
    std::process::exit(code);
}
