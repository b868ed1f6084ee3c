//! The rawsend command-line tool: send, receive and inspect btrfs send streams.
//!
//! Each subcommand lives in its own module with a clap `Args` struct and a
//! `run` function; this file only parses the command line and maps errors to
//! exit codes (0 success, 1 failure, 2 usage).

mod dump;
mod interrupt;
mod receive;
mod send;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Send(args) => send::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Receive(args) => receive::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Prints an error chain and picks the exit code; a closed pipe is not a failure.
fn report(err: &anyhow::Error) -> ExitCode {
    if let Some(interrupted) = err.downcast_ref::<interrupt::Interrupted>() {
        eprintln!("rawsend: {interrupted}");
        return ExitCode::from(interrupted.stopped.exit_status());
    }
    let broken_pipe = err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    eprintln!("rawsend: error: {err:#}");
    ExitCode::FAILURE
}
