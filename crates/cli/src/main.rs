//! The rawsend command-line tool: send, receive and inspect btrfs send streams.
//!
//! Each subcommand lives in its own module with a clap `Args` struct and a
//! `run` function; this file only parses the command line and maps errors to
//! exit codes (0 success, 1 failure, 2 usage). SIGPIPE has its default action,
//! as in a C program: writing into a closed pipe kills rawsend (status 141).
//! Invoked as `btrfs`, rawsend speaks btrfs-progs' command line instead
//! (see `btrfs_compat`).

mod btrfs_compat;
mod dump;
mod estimate;
mod generate;
mod interrupt;
mod meter;
mod progress;
mod receive;
mod remote;
mod send;
mod stats;
mod transcode;
mod verbosity;
mod version;
mod watch;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Send, receive and inspect btrfs send streams, keeping compressed data compressed.
#[derive(Parser)]
#[command(name = "rawsend", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send one or more read-only subvolumes as a send stream (like `btrfs send`).
    Send(send::SendArgs),
    /// Print a send stream, one line per command (like `btrfs receive --dump`).
    Dump(dump::DumpArgs),
    /// Receive a send stream (like `btrfs receive`); `--dump` prints it instead.
    Receive(receive::ReceiveArgs),
    /// Count what a send stream holds: commands, data, clones, files, subvolumes.
    Stats(stats::StatsArgs),
    /// Print man pages or shell completions (generated from this command line).
    Generate(generate::GenerateArgs),
    /// Rewrite a send stream: compress its data (v2 ENCODED_WRITE), decode it, or change version.
    Transcode(transcode::TranscodeArgs),
    /// List the streams stored under s3://BUCKET/PREFIX, as chains of full and incremental streams.
    Ls(remote::LsArgs),
    /// Receive the chain of streams under s3://BUCKET/PREFIX that ends at snapshot NAME.
    Restore(remote::RestoreArgs),
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Like btrfs-progs: a closed pipe kills the writer of a stream (`send | head` exits
    // 141, so `set -o pipefail` sees a truncated stream) and `dump | head` ends quietly.
    rawsend_btrfs::default_sigpipe();
    let result = if btrfs_compat::invoked_as_btrfs(argv.first()) {
        btrfs_compat::run(&argv)
    } else {
        match &parse(argv).command {
            Command::Send(args) => send::run(args),
            Command::Dump(args) => dump::run(args),
            Command::Receive(args) => receive::run(args),
            Command::Stats(args) => stats::run(args),
            Command::Generate(args) => generate::run(args, Cli::command()),
            Command::Transcode(args) => transcode::run(args),
            Command::Ls(args) => remote::ls(args),
            Command::Restore(args) => remote::restore(args),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Parses rawsend's command line; exits on a usage error, `--help` or `--version`.
/// `--version` probes the kernel's features, so only a command line that has it does.
fn parse(argv: Vec<OsString>) -> Cli {
    let mut command = Cli::command();
    if argv.iter().skip(1).any(|arg| arg == "--version") {
        command = command.long_version(version::long_version(&rawsend_btrfs::KernelFeatures::probe()));
    }
    let matches = command.get_matches_from(argv);
    Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
}

/// Prints the error (its causes each once) or the interruption, and picks the exit code.
fn report(err: &anyhow::Error) -> ExitCode {
    if let Some(interrupted) = err.downcast_ref::<interrupt::Interrupted>() {
        eprintln!("rawsend: {interrupted}");
        return ExitCode::from(interrupted.stopped.exit_status());
    }
    eprintln!("rawsend: error: {}", causes_once(err));
    ExitCode::FAILURE
}

/// The error and its causes joined by ": ", leaving out a cause whose text is already
/// there: many library errors repeat their source in their own message.
fn causes_once(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::causes_once;

    #[test]
    fn a_cause_repeated_in_its_parent_is_printed_once() {
        let source = std::io::Error::other("server returned 400");
        let repeating = anyhow::Error::new(source).context("store failed: server returned 400");
        let err = repeating.context("cannot dump");
        assert_eq!(causes_once(&err), "cannot dump: store failed: server returned 400");
    }

    #[test]
    fn distinct_causes_are_all_printed() {
        let err = anyhow::Error::new(std::io::Error::other("disk full")).context("cannot write x");
        assert_eq!(causes_once(&err), "cannot write x: disk full");
    }
}
