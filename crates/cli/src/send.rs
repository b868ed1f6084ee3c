//! `rawsend send`: the kernel's send stream of one or more read-only
//! subvolumes, with the flags and behaviour of `btrfs send` (btrfs-progs
//! `cmds/send.c`).
//!
//! The kernel writes the stream itself into the output (stdout or `-f`):
//! directly into a pipe or socket, through a pipe spliced (or copied) into
//! anything else, so files, `/dev/null` and other devices all work. Parent and clone sources follow
//! btrfs-progs: `-p` is also a clone source; with only `-c`, a parent is
//! picked among the clone sources and every subvolume sent becomes a clone
//! source for the next one; `-e` writes one stream (header first, END last).
//!
//! With `--resume TOKEN` the stream passes through a stage in rawsend on its
//! way out (the kernel writes into a pipe rawsend reads): the stage checks the
//! regenerated stream against the token and writes only its continuation
//! (`rawsend_stream::resume`). With `--compress ALG` the stage compresses the
//! data on all cores (`rawsend-transcode`).
//!
//! With progress shown (`--progress`, see `meter`) what goes out is watched:
//! the output is a pipe that a reader in rawsend reads, counts and copies
//! into the real output (`watch`), after any stage, so `-e` reads as one
//! stream; the total is the estimate (`estimate`), computed only then.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, IsTerminal, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use rawsend_btrfs::{RootInfo, SendFlags, SendOptions};
use rawsend_objstore::{CloneSource, Origin};
use rawsend_stream::resume::{self, Token};
use rawsend_transcode::{Codec, Compress, Options, transcode};

use crate::estimate;
use crate::meter::{Meter, ProgressArg};
use crate::remote;
use crate::verbosity::Verbosity;
use crate::watch;

/// Arguments of `rawsend send`.
#[derive(Args)]
pub struct SendArgs {
    /// With several subvolumes, write a single stream: the header only before
    /// the first, the END command only after the last.
    #[arg(short = 'e')]
    single_stream: bool,
    /// Send an incremental stream from PARENT to each SUBVOL.
    #[arg(short = 'p', value_name = "PARENT")]
    parent: Option<PathBuf>,
    /// Let the stream clone extents from this read-only snapshot, which must
    /// exist unchanged on the receiver (repeatable). Without -p, a parent is
    /// picked among them.
    #[arg(short = 'c', value_name = "CLONE_SRC")]
    clone_sources: Vec<PathBuf>,
    /// Write the stream to OUTFILE instead of stdout; s3://BUCKET/KEY uploads it (with a
    /// metadata sidecar KEY.rawsend.json), file://PATH writes PATH.
    #[arg(short = 'f', value_name = "OUTFILE")]
    output: Option<PathBuf>,
    /// With -f s3://: start a fresh upload, discarding an unfinished upload of the same
    /// object, and keep no journal to continue this one (a failed upload is aborted).
    #[arg(long)]
    no_resume: bool,
    /// Protocol version: 1, 2, or 0 for the highest the kernel supports
    /// (default 1, or 2 with --compressed-data).
    #[arg(long = "proto", value_name = "N")]
    proto: Option<u32>,
    /// Send compressed extents as they are stored (needs protocol 2).
    #[arg(long)]
    compressed_data: bool,
    /// Send metadata only: no file data (the stream cannot be received).
    #[arg(long)]
    no_data: bool,
    /// Continue an interrupted receive: send only what the receiver lacks, from the
    /// token `rawsend receive --resume-token DEST/NAME` printed there. Give the same
    /// SUBVOL, -p, -c, --proto and --compressed-data as the interrupted send.
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["single_stream", "no_data"])]
    resume: Option<Token>,
    /// Compress the data the kernel sends uncompressed with zstd[:LEVEL], zlib[:LEVEL] or
    /// lzo, on all cores, into ENCODED_WRITE where that saves a sector (the stream is
    /// v2); with --compressed-data the kernel's compressed extents pass as they are.
    #[arg(long, value_name = "ALG[:LEVEL]", conflicts_with_all = ["single_stream", "resume", "estimate"])]
    compress: Option<Codec>,
    /// Print the expected size of the stream in bytes (the number alone on the last
    /// line) instead of sending it, from a metadata-only pass.
    #[arg(long, conflicts_with_all = ["output", "no_data", "resume"])]
    estimate: bool,
    /// With --estimate, print a JSON object (total and per subvolume).
    #[arg(long, requires = "estimate")]
    json: bool,
    #[command(flatten)]
    pub(crate) progress: ProgressArg,
    #[command(flatten)]
    pub(crate) verbosity: Verbosity,
    /// Read-only subvolumes to send.
    #[arg(required = true, value_name = "SUBVOL")]
    subvolumes: Vec<PathBuf>,
}

impl SendArgs {
    fn flags(&self) -> SendFlags {
        let mut flags = SendFlags::NONE;
        if self.no_data {
            flags = flags | SendFlags::NO_FILE_DATA;
        }
        if self.compressed_data {
            flags = flags | SendFlags::COMPRESSED;
        }
        flags
    }
}

/// A subvolume given on the command line, opened and checked.
pub(crate) struct Subvolume {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) id: u64,
}

/// What a subvolume argument is used as, for error messages.
#[derive(Clone, Copy)]
enum Role {
    Send,
    Parent,
    CloneSource,
}

impl Role {
    fn describe(self) -> &'static str {
        match self {
            Role::Send => "subvolume",
            Role::Parent => "parent subvolume",
            Role::CloneSource => "clone source",
        }
    }

    /// What to do about a writable subvolume: send a read-only snapshot of it (flipping a
    /// live subvolume read-only breaks whatever writes to it, and its later snapshots).
    fn read_only_advice(self, path: &Path) -> String {
        match self {
            Role::Send => format!(
                "send a read-only snapshot of it instead (`btrfs subvolume snapshot -r {} SNAP`, \
                 then `rawsend send SNAP`)",
                path.display()
            ),
            Role::Parent | Role::CloneSource => {
                "parents and clone sources must be read-only snapshots that were sent before".to_owned()
            }
        }
    }
}

/// Opens `path` and checks that it is the root of a read-only btrfs subvolume.
fn open_subvolume(path: &Path, role: Role) -> anyhow::Result<Subvolume> {
    let what = role.describe();
    let file = File::open(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
    if !rawsend_btrfs::is_subvolume_root(&file)? {
        bail!("{what} {} is not a btrfs subvolume", path.display());
    }
    let read_only = rawsend_btrfs::is_read_only(&file)
        .with_context(|| format!("cannot read the flags of {what} {}", path.display()))?;
    if !read_only {
        bail!("{what} {} is not read-only: {}", path.display(), role.read_only_advice(path));
    }
    let id = rawsend_btrfs::root_id(&file)
        .with_context(|| format!("cannot find the root id of {what} {}", path.display()))?;
    Ok(Subvolume { path: path.to_owned(), file, id })
}

/// Checks that `other` is on the same filesystem as `first`: the root with
/// its id there must carry its UUID.
fn check_same_filesystem(first: &Subvolume, other: &Subvolume) -> anyhow::Result<()> {
    let uuid = rawsend_btrfs::subvolume_info(&other.file)?.root.uuid;
    let there = rawsend_btrfs::root_info(&first.file, other.id)?;
    if there.map(|root| root.uuid) != Some(uuid) {
        bail!(
            "all subvolumes must be from the same filesystem: {} is not on the filesystem of {}",
            other.path.display(),
            first.path.display()
        );
    }
    Ok(())
}

/// Opens the output like btrfs-progs: an existing file is truncated, a
/// missing one created with mode 0600; stdout without -f.
fn open_output(path: Option<&Path>) -> anyhow::Result<Option<File>> {
    let Some(path) = path else { return Ok(None) };
    let existing = OpenOptions::new().write(true).truncate(true).open(path);
    let file = match existing {
        Err(err) if err.kind() == ErrorKind::NotFound => {
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
        }
        other => other,
    };
    file.map(Some).with_context(|| format!("cannot create '{}'", path.display()))
}

/// Picks the protocol version to ask for, as btrfs-progs does; `None` means
/// the kernel knows only v1 and takes no version.
fn protocol(args: &SendArgs, supported: u32) -> anyhow::Result<Option<u32>> {
    // --compress makes v2 anyway; asked of the kernel, holes stay holes (FALLOCATE).
    let default = if args.compress.is_some() && supported >= 2 { 2 } else { 1 };
    let mut proto = args.proto.unwrap_or(default);
    if args.compress.is_some() && proto == 1 {
        bail!("--compress makes a protocol 2 stream (ENCODED_WRITE); it cannot be combined with --proto 1");
    }
    if proto > supported {
        bail!("requested protocol version {proto} but the kernel supports only {supported}");
    }
    if args.compressed_data {
        if args.proto.is_none() {
            proto = 2;
        }
        if proto == 1 {
            bail!("--compressed-data requires protocol version >= 2 (requested 1)");
        }
        if supported < 2 {
            bail!(
                "the kernel does not support --compressed-data (needs send protocol 2, Linux 6.0 or later)"
            );
        }
    }
    Ok((supported > 1).then_some(proto))
}

/// The parent progs picks among `clone_sources` for subvolume `id`: the
/// subvolume it was snapshotted from if that is a clone source, else the
/// clone source snapshotted from the same subvolume closest in ctransid.
fn find_good_parent(fs: BorrowedFd<'_>, id: u64, clone_sources: &[u64]) -> anyhow::Result<u64> {
    let origin = origin_of(fs, id)?.context("it is not a snapshot of an existing subvolume")?;
    if clone_sources.contains(&origin.id) {
        return Ok(origin.id);
    }
    let mut best: Option<(u64, u64)> = None;
    for &candidate in clone_sources {
        if origin_of(fs, candidate).ok().flatten().map(|root| root.id) != Some(origin.id) {
            continue;
        }
        let info = rawsend_btrfs::root_info(fs, candidate)?.context("clone source vanished")?;
        let distance = info.ctransid.abs_diff(origin.ctransid);
        if best.is_none_or(|(_, best_distance)| distance < best_distance) {
            best = Some((candidate, distance));
        }
    }
    best.map(|(candidate, _)| candidate).context("no clone source is a snapshot of the same subvolume")
}

/// The root item of the subvolume that `id` is a snapshot of, if it exists.
fn origin_of(fs: BorrowedFd<'_>, id: u64) -> anyhow::Result<Option<RootInfo>> {
    let info = rawsend_btrfs::root_info(fs, id)?.context("no such subvolume")?;
    let Some(parent_uuid) = info.parent_uuid else { return Ok(None) };
    let Some(parent_id) = rawsend_btrfs::subvolume_id_by_uuid(fs, &parent_uuid)? else {
        return Ok(None);
    };
    Ok(rawsend_btrfs::root_info(fs, parent_id)?)
}

/// Everything checked and opened before the first byte is sent.
pub(crate) struct Plan {
    subvolumes: Vec<Subvolume>,
    parent: Option<u64>,
    clone_sources: Vec<u64>,
    /// Only `-c` given: pick parents, and add each sent subvolume as a source.
    pick_parents: bool,
    version: Option<u32>,
    flags: SendFlags,
    /// `-e`: one stream for all subvolumes.
    single_stream: bool,
}

fn plan(args: &SendArgs) -> anyhow::Result<Plan> {
    let clones = args
        .clone_sources
        .iter()
        .map(|path| open_subvolume(path, Role::CloneSource))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let parent = args.parent.as_deref().map(|path| open_subvolume(path, Role::Parent)).transpose()?;
    let subvolumes = args
        .subvolumes
        .iter()
        .map(|path| open_subvolume(path, Role::Send))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = &subvolumes[0];
    for other in subvolumes[1..].iter().chain(&parent).chain(&clones) {
        check_same_filesystem(first, other)?;
    }
    let supported = rawsend_btrfs::max_send_stream_version()?;
    let version = protocol(args, supported)?;
    if args.verbosity.level() > 1 {
        if args.no_data {
            eprintln!("Mode NO_FILE_DATA enabled");
        }
        let requested = version.unwrap_or(1);
        eprintln!("Protocol version requested: {requested} (supported {supported})");
    }
    let mut clone_sources: Vec<u64> = clones.iter().map(|clone| clone.id).collect();
    clone_sources.extend(parent.as_ref().map(|parent| parent.id));
    Ok(Plan {
        pick_parents: parent.is_none() && !clones.is_empty(),
        parent: parent.map(|parent| parent.id),
        subvolumes,
        clone_sources,
        version,
        flags: args.flags(),
        single_stream: args.single_stream,
    })
}

/// What the kernel's stream goes through on its way out: it reads the stream and
/// writes what goes out.
type Stage<'a> = dyn FnMut(&mut dyn Read, &mut dyn Write) -> anyhow::Result<()> + 'a;

/// The stage `args` ask for, if any (without one the kernel writes the output itself).
fn stage(args: &SendArgs) -> anyhow::Result<Option<Box<Stage<'_>>>> {
    if let Some(codec) = args.compress {
        let opts = Options { recompress: false, ..Options::new(Compress::With(codec)) };
        return Ok(Some(Box::new(move |input, output| {
            transcode(input, output, &opts)?;
            Ok(())
        })));
    }
    let Some(token) = &args.resume else { return Ok(None) };
    if args.subvolumes.len() != 1 {
        bail!("--resume continues one subvolume's stream: give exactly one SUBVOL");
    }
    let verbose = args.verbosity.level() > 0;
    Ok(Some(Box::new(move |input, output| {
        let done = resume::write_continuation(input, output, token)?;
        if verbose {
            eprintln!(
                "rawsend: resumed after {}: wrote {} of the stream's {} bytes",
                token.position, done.written, done.read
            );
        }
        Ok(())
    })))
}

/// Sends one subvolume into `out_fd`, through `stage` (and `staged`, its buffered
/// output) if given.
fn send_one(
    subvolume: &Subvolume,
    out_fd: BorrowedFd<'_>,
    options: &SendOptions<'_>,
    stage: Option<(&mut Stage<'_>, &mut dyn Write)>,
) -> anyhow::Result<()> {
    let cannot = || format!("cannot send {}", subvolume.path.display());
    let Some((stage, staged)) = stage else {
        return rawsend_btrfs::send(&subvolume.file, out_fd, options).with_context(cannot);
    };
    let (passed, sent) =
        rawsend_btrfs::send_to_reader(&subvolume.file, options, |mut pipe| stage(&mut pipe, staged))
            .with_context(cannot)?;
    match (passed, sent) {
        // A stage that stopped early made the kernel's next write fail: its error says why.
        (Err(stopped), Err(err)) if err.errno() == Some(rawsend_btrfs::Errno::PIPE) => Err(stopped),
        (_, Err(err)) => Err(err.into()),
        (Err(stopped), Ok(())) => Err(stopped),
        (Ok(()), Ok(())) => Ok(()),
    }
    .with_context(cannot)
}

/// A buffered writer on (a duplicate of) `out_fd`, for a stage's output.
fn staged_output(out_fd: BorrowedFd<'_>) -> anyhow::Result<BufWriter<File>> {
    let file = File::from(out_fd.try_clone_to_owned().context("cannot duplicate the output")?);
    Ok(BufWriter::with_capacity(STAGED_BUFFER, file))
}

/// Buffer of a stage's output: a few of the kernel's largest commands.
const STAGED_BUFFER: usize = 1 << 20;

/// Runs `rawsend send`.
pub fn run(args: &SendArgs) -> anyhow::Result<()> {
    if args.estimate {
        let estimated = estimate::estimate(plan(args)?)?;
        return estimate::print(&estimated, args.json, args.verbosity.quiet);
    }
    if let Some(location) = args.output.as_deref().and_then(remote::location) {
        let quiet = args.verbosity.level() == 0;
        let resume = !args.no_resume;
        return remote::upload(&location?, origin(args)?, resume, quiet, |out_fd| send_into(args, out_fd));
    }
    let output = open_output(args.output.as_deref().map(remote::local_path).as_deref())?;
    let stdout = std::io::stdout();
    send_into(args, output.as_ref().map_or_else(|| stdout.as_fd(), |file| file.as_fd()))
}

/// How the stream of `args` is made, for the metadata of an upload: its clone sources
/// (`-c` and `-p`, named as the kernel names them in the stream) and its flags.
fn origin(args: &SendArgs) -> anyhow::Result<Origin> {
    let clones = args.clone_sources.iter().map(|path| (path, Role::CloneSource));
    let mut clone_sources = Vec::new();
    for (path, role) in clones.chain(args.parent.iter().map(|path| (path, Role::Parent))) {
        let subvolume = open_subvolume(path, role)?;
        let root = rawsend_btrfs::subvolume_info(&subvolume.file)
            .with_context(|| format!("cannot read the UUID of {} {}", role.describe(), path.display()))?
            .root;
        let source = CloneSource {
            uuid: root.received_uuid.unwrap_or(root.uuid).to_string(),
            ctransid: root.ctransid,
        };
        if !clone_sources.contains(&source) {
            clone_sources.push(source);
        }
    }
    let named = [
        (args.compressed_data, "compressed-data"),
        (args.no_data, "no-data"),
        (args.single_stream && args.subvolumes.len() > 1, "single-stream"),
    ];
    let mut flags: Vec<String> =
        named.iter().filter(|(set, _)| *set).map(|(_, flag)| flag.to_string()).collect();
    flags.extend(args.compress.map(|codec| format!("compress={codec}")));
    Ok(Origin { clone_sources: Some(clone_sources), flags })
}

/// Sends what `args` ask for into `out_fd`, with progress if asked for.
fn send_into(args: &SendArgs, out_fd: BorrowedFd<'_>) -> anyhow::Result<()> {
    if out_fd.is_terminal() {
        bail!("not dumping send stream into a terminal, redirect it into a file");
    }
    let (when, quiet) = (args.progress.progress, args.verbosity.quiet);
    // The total costs a metadata-only pass: only when progress is shown.
    let total = when.shows(quiet).then(|| plan(args).and_then(estimate::estimate)).transpose()?;
    let total = total.as_deref().map(estimate::total).map(|total| match &args.resume {
        Some(token) => resume::continuation_len(total, token),
        None => total,
    });
    let meter = Meter::start(when, quiet, total);
    let sent = match meter.progress() {
        None => send_all(args, out_fd, &meter),
        Some(progress) => watch::through(out_fd, progress, |pipe| send_all(args, pipe, &meter)),
    };
    meter.finish();
    sent
}

/// Sends every subvolume into `out_fd` (through the stage `args` ask for), with
/// btrfs-progs' messages.
fn send_all(args: &SendArgs, out_fd: BorrowedFd<'_>, meter: &Meter) -> anyhow::Result<()> {
    let level = args.verbosity.level();
    let bar = meter.suspender();
    let mut stage = stage(args)?;
    let mut staged = stage.as_ref().map(|_| staged_output(out_fd)).transpose()?;
    plan(args)?.each(|job| {
        if level > 0 {
            bar.run(|| eprintln!("At subvol {}", job.subvolume.path.display()));
        }
        let staging = stage.as_deref_mut().zip(staged.as_mut().map(|out| out as &mut dyn Write));
        send_one(job.subvolume, out_fd, &job.options, staging)?;
        if level > 1 {
            bar.run(|| eprintln!("BTRFS_IOC_SEND returned 0"));
        }
        if level > 3 {
            // btrfs-progs' debug line, kept so its verbose output compares equal.
            eprintln!("joining genl thread");
        }
        Ok(())
    })?;
    if let Some(staged) = staged.as_mut() {
        staged.flush().context("cannot write the stream")?;
    }
    Ok(())
}

/// One subvolume's send: everything but where the stream goes.
pub(crate) struct Job<'a> {
    pub(crate) subvolume: &'a Subvolume,
    pub(crate) options: SendOptions<'a>,
}

impl Plan {
    /// The same sends without file data (`NO_FILE_DATA`), for an estimate.
    pub(crate) fn metadata_only(mut self) -> Plan {
        self.flags = self.flags | SendFlags::NO_FILE_DATA;
        self
    }

    /// Calls `send` with each subvolume's [`Job`]: the parent (picked among the clone
    /// sources with only `-c`), the clone sources and, with `-e`, no header but before
    /// the first and no END but after the last.
    pub(crate) fn each(mut self, mut send: impl FnMut(Job<'_>) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let count = self.subvolumes.len();
        for (index, subvolume) in self.subvolumes.iter().enumerate() {
            let parent_root =
                if self.pick_parents {
                    let found = find_good_parent(subvolume.file.as_fd(), subvolume.id, &self.clone_sources);
                    Some(found.with_context(|| {
                        format!("cannot determine a parent for {}", subvolume.path.display())
                    })?)
                } else {
                    self.parent
                };
            let mut flags = self.flags;
            if self.single_stream && index > 0 {
                flags = flags | SendFlags::OMIT_STREAM_HEADER;
            }
            if self.single_stream && index + 1 < count {
                flags = flags | SendFlags::OMIT_END_CMD;
            }
            let options =
                SendOptions { parent_root, clone_sources: &self.clone_sources, flags, version: self.version };
            send(Job { subvolume, options })?;
            if self.pick_parents {
                self.clone_sources.push(subvolume.id);
            }
        }
        Ok(())
    }
}
