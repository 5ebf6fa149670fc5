//! `txguard man [SUBCOMMAND]`: the manual page, rendered by clap_mangen from the command
//! line itself (flags, defaults, exit codes), so it says what `--help` says.

use anyhow::{Context, Result};

use crate::cli::ManArgs;
use crate::cmd::completions::write_stdout;
use crate::exit;

pub fn run(args: &ManArgs) -> Result<i32> {
    let root = crate::cli::command();
    let page = match &args.subcommand {
        None => clap_mangen::Man::new(root),
        Some(name) => {
            let sub = root
                .find_subcommand(name)
                .with_context(|| format!("no subcommand {name:?}"))?
                .clone()
                // The page is `txguard-run(1)`; its synopsis reads `txguard run`.
                .name(format!("txguard-{name}"))
                .bin_name(format!("txguard {name}"))
                .version(env!("CARGO_PKG_VERSION"));
            clap_mangen::Man::new(sub)
        }
    };
    let mut roff = Vec::new();
    page.render(&mut roff)
        .context("cannot render the manual page")?;
    write_stdout(&roff)?;
    Ok(exit::SUCCESS)
}
