//! `rawsend dump` (and `rawsend receive --dump`): print a stream without touching any filesystem.
//!
//! Reads every joined stream in the input (btrfs-progs stops after the
//! first), printing `btrfs receive --dump` text or JSON Lines. The first
//! malformed command stops the dump with an error naming its index, byte
//! offset, command and path, unless `max_errors` allows more.

pub mod json;
pub mod text;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use rawsend_stream::{Item, ReaderOptions, StreamReader};

/// Arguments of `rawsend dump`.
#[derive(Args)]
pub struct DumpArgs {
    /// Read the stream from FILE instead of standard input.
    #[arg(short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print one JSON object per command instead of `btrfs receive --dump` text.
    #[arg(long)]
    pub json: bool,
}

/// Output format.
#[derive(Clone, Copy)]
pub enum Format {
    /// `btrfs receive --dump` text.
    Text,
    /// JSON Lines.
    Json,
}

/// Runs `rawsend dump`.
pub fn run(args: &DumpArgs) -> Result<()> {
    let format = if args.json { Format::Json } else { Format::Text };
    dump(open_input(args.file.as_ref())?, format, ReaderOptions::default(), 1)
}

/// A stream's input: readable, and with an fd to poll.
pub trait Input: Read + AsFd {}

impl<T: Read + AsFd> Input for T {}

/// Opens FILE, or standard input.
pub fn open_input(file: Option<&PathBuf>) -> Result<Box<dyn Input>> {
    Ok(match file {
        Some(path) => Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?),
        None => Box::new(io::stdin().lock()),
    })
}

/// Dumps `input` to standard output. `max_errors` 0 means no limit.
pub fn dump(input: impl Read, format: Format, opts: ReaderOptions, max_errors: u64) -> Result<()> {
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout);
    let mut reader = StreamReader::with_options(input, opts);
    let mut text = text::TextDump::new();
    let mut errors = Vec::new();
    loop {
        let record = match reader.next() {
            Ok(Some(Item::Command(record))) => record,
            Ok(Some(Item::Header { .. })) => continue,
            Ok(None) => break,
            Err(err) => {
                errors.push(anyhow::Error::new(err));
                if max_errors != 0 && errors.len() as u64 >= max_errors {
                    break;
                }
                continue;
            }
        };
        let written = match format {
            Format::Text => text.write(&mut out, &record.command),
            Format::Json => json::write_record(&mut out, &record),
        };
        written.with_context(|| format!("command #{} at byte {}", record.index, record.offset))?;
    }
    out.flush()?;
    report_errors(errors)
}

/// Prints all but the last error and returns the last one, if any.
fn report_errors(mut errors: Vec<anyhow::Error>) -> Result<()> {
    let Some(last) = errors.pop() else { return Ok(()) };
    for err in errors {
        eprintln!("rawsend: error: {err:#}");
    }
    Err(last.context("failed to dump the send stream"))
}
