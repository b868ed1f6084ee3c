//! `rawsend dump` (and `rawsend receive --dump`): print a stream without touching any filesystem.
//!
//! Reads every joined stream in the input (btrfs-progs stops after the
//! first), printing `btrfs receive --dump` text or JSON Lines. The first
//! malformed command stops the dump with an error naming its index, byte
//! offset, command and path, unless `max_errors` allows more.
//!
//! Paths that a receive refuses (`..`, absolute, empty or over-long
//! components, NUL) are not malformed commands here: inspection must work
//! best on exactly the streams receive refuses. The dump reads leniently
//! ([`StreamReader::next_lenient`]), prints such commands as btrfs-progs
//! does, and marks each on stderr with its location and reason, then counts
//! them; the dump still succeeds. Framing and CRC errors still stop it.
//!
//! A continuation (`rawsend send --resume`) starts with a marker that
//! btrfs-progs does not know; it is printed as a `continue` line naming the
//! position the continuation starts after.
//!
//! That reading loop, [`for_each_item`], is also `rawsend stats`'s, so both
//! report the same errors at the same places. It reads the input on a thread
//! of its own ([`ReadAhead`]), which also checks the commands' CRCs while the
//! printing is behind, so the copying out of the page cache or pipe and the
//! CRC pass overlap with the decoding and printing.

pub mod json;
pub mod text;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use rawsend_stream::{
    CheckAhead, Item, RawPath, ReadAhead, ReadProgress, ReaderOptions, Record, StreamReader,
};

use crate::meter::{InputProgress, Meter};
use crate::remote;

/// Arguments of `rawsend dump`.
#[derive(Args)]
pub struct DumpArgs {
    /// Read the stream from FILE (a path, file://PATH or s3://BUCKET/KEY) instead of standard input.
    #[arg(short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print one JSON object per command instead of `btrfs receive --dump` text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub progress: InputProgress,
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
    let input = open_input(args.file.as_ref())?;
    let meter = Meter::start(args.progress.when.progress, false, args.progress.total(args.file.as_deref()));
    let dumped = dump(input, format, ReaderOptions::default(), 1, meter.progress());
    meter.finish();
    dumped
}

/// A stream's input: readable, and with an fd to poll.
pub trait Input: Read + AsFd {}

impl<T: Read + AsFd> Input for T {}

/// Opens FILE (a path, `file://PATH` or `s3://BUCKET/KEY`), or standard input
/// (sendable, so a transcoding thread can read it).
pub fn open_input(file: Option<&PathBuf>) -> Result<Box<dyn Input + Send>> {
    let Some(path) = file else { return Ok(Box::new(io::stdin())) };
    if let Some(location) = remote::location(path) {
        return remote::open_input(&location?);
    }
    let path = remote::local_path(path);
    Ok(Box::new(File::open(&path).with_context(|| format!("cannot open {}", path.display()))?))
}

/// Starts reading `input` on a thread of its own that also checks the CRCs of the
/// stream a reader with `opts` reads while that reader is behind; returns the
/// reader's input.
pub fn read_ahead(input: impl Read + Send + 'static, opts: ReaderOptions) -> Result<ReadAhead> {
    ReadAhead::checking_crcs(input, opts, CheckAhead::WhenBehind)
        .context("cannot start the thread reading the stream")
}

/// Dumps `input` to standard output, publishing how far it got into `progress`.
/// `max_errors` 0 means no limit.
pub fn dump(
    input: impl Read + Send + 'static,
    format: Format,
    opts: ReaderOptions,
    max_errors: u64,
    progress: Option<Arc<ReadProgress>>,
) -> Result<()> {
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout);
    let mut text = text::TextDump::new();
    let read = for_each_item(input, opts, progress, max_errors, "failed to dump the send stream", |item| {
        let (written, index, offset) = match item {
            Item::Header { .. } => return Ok(()),
            Item::Command(record) => match format {
                Format::Text => (text.write(&mut out, &record.command), record.index, record.offset),
                Format::Json => (json::write_record(&mut out, record), record.index, record.offset),
            },
            Item::Continue { position, index, offset } => match format {
                Format::Text => (text.write_continuation(&mut out, position), *index, *offset),
                Format::Json => {
                    (json::write_continuation(&mut out, *index, *offset, position), *index, *offset)
                }
            },
        };
        written.with_context(|| format!("command #{index} at byte {offset}"))
    });
    // What was dumped before an error is flushed before the error is reported.
    let flushed = out.flush();
    read?;
    Ok(flushed?)
}

/// Reads `input` leniently, as a dump does, and hands every header and
/// command to `visit`; an error from `visit` stops the reading and is returned.
/// The reader publishes how far it got into `progress`, if given.
///
/// Commands with paths a receive would refuse are marked on stderr and
/// counted (see the module docs). A malformed command is an error; up to
/// `max_errors` of them (0: no limit) are printed on stderr as they come and
/// the reading goes on; the last one is returned, with `context`.
pub fn for_each_item(
    input: impl Read + Send + 'static,
    opts: ReaderOptions,
    progress: Option<Arc<ReadProgress>>,
    max_errors: u64,
    context: &'static str,
    mut visit: impl FnMut(&Item<'_, RawPath<'_>>) -> Result<()>,
) -> Result<()> {
    let mut reader = StreamReader::with_options(read_ahead(input, opts)?, opts);
    if let Some(progress) = progress {
        reader = reader.with_progress(progress);
    }
    let mut errors = Vec::new();
    let mut invalid = InvalidCount::default();
    loop {
        let item = match reader.next_lenient() {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(err) => {
                errors.push(anyhow::Error::new(err));
                if max_errors != 0 && errors.len() as u64 >= max_errors {
                    break;
                }
                continue;
            }
        };
        if let Item::Command(record) = &item {
            invalid.warn(record);
        }
        visit(&item)?;
    }
    invalid.summary();
    report_errors(errors).context(context)
}

/// Commands whose paths a receive would refuse, each marked on stderr.
#[derive(Default)]
struct InvalidCount {
    commands: u64,
}

impl InvalidCount {
    /// Prints one warning per invalid path attribute of `record`.
    fn warn(&mut self, record: &Record<'_, RawPath<'_>>) {
        let mut any = false;
        for bad in record.command.invalid_paths() {
            any = true;
            warning(format_args!(
                "command #{} ({}) at byte {}, {} {:?}: receive would refuse it: {}",
                record.index,
                record.command.kind(),
                record.offset,
                bad.attr,
                String::from_utf8_lossy(bad.bytes),
                bad.reason
            ));
        }
        self.commands += u64::from(any);
    }

    /// Prints how many commands were marked, if any.
    fn summary(&self) {
        match self.commands {
            0 => {}
            1 => warning(format_args!("1 command has a path that receive would refuse")),
            n => warning(format_args!("{n} commands have paths that receive would refuse")),
        }
    }
}

/// Prints a warning on stderr. A closed or failing stderr is ignored: the
/// dump on stdout is what was asked for, and must not stop or panic for it.
fn warning(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "rawsend: warning: {message}");
}

/// Prints all but the last error and returns the last one, if any.
fn report_errors(mut errors: Vec<anyhow::Error>) -> Result<()> {
    let Some(last) = errors.pop() else { return Ok(()) };
    for err in errors {
        eprintln!("rawsend: error: {err:#}");
    }
    Err(last)
}
