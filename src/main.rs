//! `txguard`: parse the command line, run the command, turn the outcome into an exit code.

fn main() {
    let cli = txguard::cli::parse();
    let quiet = cli.command.quiet();
    let code = match txguard::cmd::dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => txguard::exit::report(&err, quiet),
    };
    std::process::exit(code);
}
