//! `rawsend receive`: apply a send stream to a directory, or with `--dump` print it.
//!
//! Options match `btrfs receive`. Every path is confined beneath DEST
//! without needing `--chroot` (accepted for compatibility), and a
//! subvolume is marked received only after all its commands applied.
//!
//! Messages follow btrfs-progs 6.2 (see `progress`): at the default
//! verbosity a clean receive onto btrfs prints exactly what `btrfs receive`
//! prints. rawsend's own lines all start with `rawsend:` and go to stderr:
//! the dir target's reason and completion records (not with `-q`), its
//! warnings, and with `-v` a summary of the work.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use rawsend_receive::fs::Kind;
use rawsend_receive::resume::Checkpoints;
use rawsend_receive::{Failure, FsTarget, ReceiveOptions, Receiver, Summary};
use rawsend_stream::ReaderOptions;
use rawsend_transcode::{Codec, Compress, Options, TranscodeReader};

use crate::dump::{self, Format};
use crate::interrupt::{Interrupt, Interrupted};
use crate::meter::{InputProgress, Meter};
use crate::progress;
use crate::verbosity::Verbosity;

/// Which kind of destination to write.
#[derive(Clone, Copy, ValueEnum)]
enum TargetChoice {
    /// btrfs when DEST is on btrfs and rawsend has CAP_SYS_ADMIN, a plain directory otherwise.
    Auto,
    /// Insist on btrfs: subvolumes, encoded writes, received UUIDs.
    Btrfs,
    /// A plain directory on any filesystem.
    Dir,
}

/// Arguments of `rawsend receive`.
#[derive(Args)]
pub struct ReceiveArgs {
    /// Read the stream from FILE (a path, file://PATH or s3://BUCKET/KEY) instead of standard input.
    #[arg(short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Stop after the first END command.
    #[arg(short = 'e')]
    stop_at_end: bool,
    /// Accepted for compatibility: rawsend always confines the stream beneath DEST.
    #[arg(short = 'C', long = "chroot")]
    chroot: bool,
    /// Stop after N failed commands; 0 means never stop.
    #[arg(short = 'E', long = "max-errors", value_name = "N", default_value_t = 1)]
    max_errors: u64,
    /// Accepted for compatibility: rawsend finds the mount point itself.
    #[arg(short = 'm', value_name = "ROOTMOUNT")]
    root_mount: Option<PathBuf>,
    /// Always decompress encoded extents instead of writing them as they are.
    #[arg(long)]
    force_decompress: bool,
    /// Test-decode every encoded extent written as it is, on a worker thread (the
    /// default; the kernel does not check encoded data): a corrupt one fails the receive.
    #[arg(long, overrides_with = "no_verify_encoded")]
    verify_encoded: bool,
    /// Store encoded extents without test-decoding them, as btrfs-progs does
    /// (a corrupt extent is then stored and fails later reads with EIO).
    #[arg(long)]
    no_verify_encoded: bool,
    /// What kind of destination to write.
    #[arg(long, value_enum, default_value = "auto")]
    target: TargetChoice,
    /// With --target dir, fail instead of skipping operations the destination refuses
    /// (changing owners without privileges, btrfs.* and privileged xattrs).
    #[arg(long)]
    strict: bool,
    /// Print the stream, one line per command, instead of receiving it.
    #[arg(long)]
    dump: bool,
    /// Keep no resume state, as btrfs-progs: a partial subvolume left by an interrupted
    /// receive is an error instead of being continued.
    #[arg(long)]
    no_resume: bool,
    /// Checkpoint the resume state after every MIB mebibytes of stream applied (and at
    /// least every 30 seconds); each checkpoint syncs the destination filesystem.
    #[arg(long, value_name = "MIB", default_value_t = Checkpoints::default().bytes >> 20, conflicts_with = "no_resume")]
    checkpoint_every: u64,
    /// Compress WRITE data with zstd[:LEVEL], zlib[:LEVEL] or lzo on all cores and store it
    /// as compressed extents (BTRFS_IOC_ENCODED_WRITE; btrfs only), where that saves a
    /// sector, without mounting DEST with compress-force; encoded extents of the stream
    /// are stored as they are.
    #[arg(long, value_name = "ALG[:LEVEL]", conflicts_with_all = ["dump", "force_decompress", "abort", "resume_token"])]
    compress: Option<Codec>,
    /// Discard the partial receive DEST/NAME and its resume state (the partial subvolume
    /// or directory too); refuses anything else.
    #[arg(long, value_name = "DEST/NAME", conflicts_with_all = ["dump", "dest", "file"])]
    abort: Option<PathBuf>,
    /// Print the token with which `rawsend send --resume TOKEN ...` sends only what the
    /// partial receive DEST/NAME lacks (one line on stdout); changes nothing.
    #[arg(long, value_name = "DEST/NAME", conflicts_with_all = ["dump", "dest", "file", "abort"])]
    resume_token: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) verbosity: Verbosity,
    #[command(flatten)]
    pub(crate) progress: InputProgress,
    /// Where to receive (not used with --dump).
    #[arg(value_name = "DEST", required_unless_present_any = ["dump", "abort", "resume_token"], conflicts_with = "dump")]
    dest: Option<PathBuf>,
}

/// Runs `rawsend receive`.
pub fn run(args: &ReceiveArgs) -> Result<()> {
    if let Some(partial) = &args.abort {
        return abort(partial, target_kind(args), args.verbosity.quiet);
    }
    if let Some(partial) = &args.resume_token {
        return print_resume_token(partial, target_kind(args));
    }
    let reader = ReaderOptions { stop_at_end: args.stop_at_end, ..ReaderOptions::default() };
    let input = dump::open_input(args.file.as_ref())?;
    let total = args.progress.total(args.file.as_deref());
    let meter = Meter::start(args.progress.when.progress, args.verbosity.quiet, total);
    let Some(dest) = &args.dest else {
        let dumped = dump::dump(input, Format::Text, reader, args.max_errors, meter.progress());
        meter.finish();
        return dumped;
    };
    receive(args, dest, reader, input, meter)
}

/// Receives `input` into `dest`, showing progress on `meter` until the stream is applied.
fn receive(
    args: &ReceiveArgs,
    dest: &Path,
    reader: ReaderOptions,
    input: Box<dyn dump::Input + Send>,
    meter: Meter,
) -> Result<()> {
    let mut target = FsTarget::open(dest, target_kind(args))
        .with_context(|| format!("cannot receive into {}", dest.display()))?;
    if let Some(why) = target.dir_reason().filter(|_| !args.verbosity.quiet) {
        eprintln!("rawsend: receiving into plain directories (--target dir): {why}");
    }
    if args.compress.is_some() && target.kind() == Kind::Dir {
        bail!(
            "--compress stores compressed extents, which only btrfs can hold; {} is received into \
             plain directories (--target dir)",
            dest.display()
        );
    }
    target.set_strict(args.strict);
    let opts = ReceiveOptions {
        reader,
        max_errors: args.max_errors,
        force_decompress: args.force_decompress,
        // With --compress the transcoder checks the stream's own extents (and the engine
        // need not re-decode those it made).
        verify_encoded: !args.no_verify_encoded && args.compress.is_none(),
        resume: !args.no_resume,
        checkpoints: Checkpoints {
            bytes: args.checkpoint_every.saturating_mul(1 << 20),
            ..Checkpoints::default()
        },
    };
    let interrupt = Interrupt::watch().context("cannot install signal handlers")?;
    let level = args.verbosity.level();
    let bar = meter.suspender();
    let mut receiver = Receiver::new(target, opts)
        .interrupt_when(interrupt.flag())
        .observe(move |event| progress::print(level, event, &bar));
    if let Some(progress) = meter.progress() {
        receiver = receiver.publish_progress(progress);
    }
    let received = apply(receiver, interrupt.guard(input), args.compress, !args.no_verify_encoded, reader)?;
    // The bar ends before the summary is printed below it.
    meter.finish();
    let (summary, target) = received.map_err(|failure| match interrupt.signal() {
        Some(stopped) => anyhow::Error::from(Interrupted { stopped, detail: failure.to_string() }),
        None => anyhow!("{failure}"),
    })?;
    for (what, count) in target.skipped() {
        eprintln!("rawsend: warning: skipped {count} {what}; use --strict to fail instead");
    }
    if !args.verbosity.quiet {
        for record in target.completed() {
            eprintln!("rawsend: complete: {record}");
        }
    }
    if args.verbosity.level() >= 2 {
        for note in target.notes() {
            eprintln!("rawsend: note: {note}");
        }
        eprintln!(
            "rawsend: {} commands; encoded extents: {} written as-is, {} decompressed; clones: {} reflinked, {} copied",
            summary.commands,
            summary.encoded_passthrough,
            summary.encoded_decompressed,
            summary.clones_reflinked,
            summary.clones_copied
        );
    }
    Ok(())
}

/// Applies with `receiver` the stream of `input` read ahead, its CRCs checked on
/// the reading thread, or with `--compress` its WRITE data compressed on worker
/// threads (`rawsend-transcode`) while the engine applies what is ready.
fn apply(
    receiver: Receiver<FsTarget>,
    input: impl Read + Send + 'static,
    codec: Option<Codec>,
    verify: bool,
    reader: ReaderOptions,
) -> Result<std::result::Result<(Summary, FsTarget), Failure>> {
    let Some(codec) = codec else {
        return Ok(receiver.receive_into(dump::read_ahead(input, reader)?));
    };
    let opts = Options { recompress: false, verify, ..Options::new(Compress::With(codec)) };
    Ok(receiver.receive_into(TranscodeReader::new(input, opts, reader)?))
}

/// The destination kind `--target` asks for (`None`: automatic).
fn target_kind(args: &ReceiveArgs) -> Option<Kind> {
    match args.target {
        TargetChoice::Auto => None,
        TargetChoice::Btrfs => Some(Kind::Btrfs),
        TargetChoice::Dir => Some(Kind::Dir),
    }
}

/// Opens DEST of `partial` (DEST/NAME) as a target, and returns it with NAME.
fn open_partial(partial: &Path, kind: Option<Kind>) -> Result<(FsTarget, &[u8])> {
    let name = partial.file_name().context("no NAME in DEST/NAME")?;
    let dest = match partial.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok((FsTarget::open(dest, kind)?, name.as_bytes()))
}

/// `rawsend receive --resume-token DEST/NAME`: prints the token of a partial receive.
fn print_resume_token(partial: &Path, kind: Option<Kind>) -> Result<()> {
    let cannot = || format!("cannot make a resume token for {}", partial.display());
    let (mut target, name) = open_partial(partial, kind).with_context(cannot)?;
    let token = target.resume_token(name).with_context(cannot)?;
    println!("{token}");
    Ok(())
}

/// `rawsend receive --abort DEST/NAME`: discards a partial receive and its resume state.
fn abort(partial: &Path, kind: Option<Kind>, quiet: bool) -> Result<()> {
    let cannot = || format!("cannot abort {} (nothing was removed)", partial.display());
    let (mut target, name) = open_partial(partial, kind).with_context(cannot)?;
    let removed = target.abort(name).with_context(cannot)?;
    if !quiet {
        eprintln!("rawsend: discarded the partial receive {removed} and its resume state");
    }
    Ok(())
}
