//! `rawsend receive`: apply a send stream, or with `--dump` print it.
//!
//! Options match `btrfs receive`. Applying streams to a filesystem is not
//! built yet; `--dump` works and, unlike btrfs-progs, prints every joined
//! stream in the input unless `-e` is given.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use rawsend_stream::ReaderOptions;

use crate::dump::{self, Format};

/// Arguments of `rawsend receive`.
#[derive(Args)]
pub struct ReceiveArgs {
    /// Read the stream from FILE instead of standard input.
    #[arg(short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Stop after the first END command.
    #[arg(short = 'e')]
    stop_at_end: bool,
    /// Stop after N failed commands; 0 means never stop.
    #[arg(short = 'E', long = "max-errors", value_name = "N", default_value_t = 1)]
    max_errors: u64,
    /// Print the stream, one line per command, instead of receiving it.
    #[arg(long)]
    dump: bool,
    /// Where to receive (not used with --dump).
    #[arg(value_name = "DEST", required_unless_present = "dump", conflicts_with = "dump")]
    dest: Option<PathBuf>,
}

/// Runs `rawsend receive`.
pub fn run(args: &ReceiveArgs) -> Result<()> {
    if !args.dump {
        bail!(
            "receiving into a filesystem is not available in this build yet; use --dump to inspect the stream"
        );
    }
    let opts = ReaderOptions { stop_at_end: args.stop_at_end, ..ReaderOptions::default() };
    dump::dump(dump::open_input(args.file.as_ref())?, Format::Text, opts, args.max_errors)
}
