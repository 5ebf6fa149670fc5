//! `txguard man [SUBCOMMAND]`: the manual page, rendered by clap_mangen from the command
//! line itself (flags, defaults, exit codes), so it says what `--help` says.

use anyhow::{Context, Result};

use crate::cli::ManArgs;
use crate::cmd::completions::write_stdout;
use crate::exit;

pub fn run(args: &ManArgs) -> Result<i32> {
    // No `help` subcommand: it has no page of its own to point to.
    let root = crate::cli::command().disable_help_subcommand(true);
    let cmd = match &args.subcommand {
        None => root,
        Some(name) => root
            .find_subcommand(name)
            .with_context(|| format!("no subcommand {name:?}"))?
            .clone()
            // The page is `txguard-run(1)`; its synopsis reads `txguard run`.
            .name(format!("txguard-{name}"))
            .bin_name(format!("txguard {name}"))
            .version(env!("CARGO_PKG_VERSION")),
    };
    // The pages whose `--help` ends with the exit codes get them as an EXIT STATUS
    // section, a list man lays out, instead of clap_mangen's EXTRA section, which fills
    // the help's lines into one paragraph.
    let with_codes = cmd.get_after_help().is_some();
    let page = clap_mangen::Man::new(cmd.after_help(None::<&str>));
    let mut roff = Vec::new();
    page.render(&mut roff)
        .context("cannot render the manual page")?;
    let mut roff = String::from_utf8(roff).context("the manual page is not UTF-8")?;
    if with_codes {
        // Before VERSION, where man pages conventionally have it; at the end without one.
        let at = roff.find(".SH VERSION").unwrap_or(roff.len());
        roff.insert_str(at, &exit_status());
    }
    write_stdout(roff.as_bytes())?;
    Ok(exit::SUCCESS)
}

/// `exit::CODES` as a roff EXIT STATUS section: one tagged paragraph a code.
fn exit_status() -> String {
    let mut roff = String::from(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in exit::CODES {
        roff.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", escape(meaning)));
    }
    roff
}

/// Text as roff reads it literally: a backslash is `\e`, a hyphen `\-` (else `--fail-on`
/// may be set with typographic hyphens), and a line may not start with a control
/// character.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    /// `txguard man SUBCOMMAND` offers exactly the subcommands people see in `--help`: a
    /// new one cannot be left without its page.
    #[test]
    fn every_visible_subcommand_has_a_page() {
        let root = crate::cli::command();
        let mut visible: Vec<String> = root
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_string())
            .collect();
        let man = root.find_subcommand("man").unwrap();
        let arg = man
            .get_arguments()
            .find(|a| a.get_id() == "subcommand")
            .unwrap();
        let mut offered: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_string())
            .collect();
        offered.sort();
        visible.sort();
        assert_eq!(offered, visible);
    }
}
