//! `rawsend generate`: man pages and shell completions, made from the clap
//! definitions of the command line so they cannot drift from it (as
//! ripgrep's `rg --generate` does).
//!
//! `generate man` prints rawsend(1) and then one page per subcommand
//! (`rawsend-send(1)`, ..., `rawsend-generate-man(1)`, ...) to stdout, or
//! with `--dir DIR` writes them as `DIR/rawsend.1`, `DIR/rawsend-send.1`, ...; `generate complete-bash`,
//! `complete-zsh` and `complete-fish` print a completion script.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use clap_complete::Shell;

/// Arguments of `rawsend generate`.
#[derive(Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Man pages: rawsend(1) and one per subcommand.
    Man {
        /// Write NAME.1 files into DIR instead of printing every page.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Completion script for bash.
    CompleteBash,
    /// Completion script for zsh.
    CompleteZsh,
    /// Completion script for fish.
    CompleteFish,
}

/// Runs `rawsend generate` for the command line `command`.
pub fn run(args: &GenerateArgs, command: clap::Command) -> Result<()> {
    let shell = match &args.what {
        What::Man { dir: Some(dir) } => return write_pages(command, dir),
        What::Man { dir: None } => return print_pages(command),
        What::CompleteBash => Shell::Bash,
        What::CompleteZsh => Shell::Zsh,
        What::CompleteFish => Shell::Fish,
    };
    let mut command = command;
    let name = command.get_name().to_owned();
    let mut out = io::stdout().lock();
    clap_complete::generate(shell, &mut command, name, &mut out);
    Ok(out.flush()?)
}

/// The pages: `rawsend` for the whole command, then `rawsend-SUB` for each
/// subcommand, `rawsend-SUB-SUBSUB` for theirs, and so on: each page's
/// SUBCOMMANDS section names the pages below it. clap's `help` subcommands
/// are left out (`--help` says the same).
fn pages(command: clap::Command) -> Vec<(String, clap::Command)> {
    let mut command = without_help_subcommand(command);
    command.build();
    let version = command.get_version().unwrap_or_default().to_owned();
    let mut pages = Vec::new();
    add_pages(command.get_name().to_owned(), &version, command, &mut pages);
    pages
}

fn without_help_subcommand(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command.get_subcommands().map(|sub| sub.get_name().to_owned()).collect();
    names.iter().fold(command.disable_help_subcommand(true), |command, name| {
        command.mut_subcommand(name, without_help_subcommand)
    })
}

/// Adds the page `name` for `command` (its footer saying `version`), then its subcommands' pages.
fn add_pages(name: String, version: &str, command: clap::Command, pages: &mut Vec<(String, clap::Command)>) {
    let subcommands: Vec<clap::Command> = command.get_subcommands().cloned().collect();
    pages.push((name.clone(), command.name(name.clone()).version(version.to_owned())));
    for sub in subcommands {
        add_pages(format!("{name}-{}", sub.get_name()), version, sub, pages);
    }
}

fn print_pages(command: clap::Command) -> Result<()> {
    let mut out = io::stdout().lock();
    for (_, page) in pages(command) {
        clap_mangen::Man::new(page).render(&mut out)?;
    }
    Ok(out.flush()?)
}

fn write_pages(command: clap::Command, dir: &Path) -> Result<()> {
    for (name, page) in pages(command) {
        let path = dir.join(format!("{name}.1"));
        let mut bytes = Vec::new();
        clap_mangen::Man::new(page).render(&mut bytes)?;
        fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
