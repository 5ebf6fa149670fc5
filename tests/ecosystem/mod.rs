//! Conventions of the CSV-tool ecosystem (issue 15): completions, man pages, exit codes
//! in the help, the README's install step and cron recipe, delimiters, nullable columns,
//! compressed and several inputs, the progress bar and the stderr table.

mod compressed;
mod dialect;
mod discover;
mod inputs;
mod nullable;
mod terminal;
