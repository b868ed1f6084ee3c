//! Streams in object storage: `-f s3://BUCKET/KEY`, `rawsend ls` and `rawsend restore`.
//!
//! All requests go through `rawsend-objstore`. The rest of the CLI works on file
//! descriptors (the kernel writes the stream into one; receive polls its input
//! to notice signals), so an object is bridged through a socket pair: a thread
//! downloads into it, or uploads what the kernel wrote into it. The socket
//! (not a pipe) lets the downloading thread stop quietly with EPIPE when the
//! reader stops early, instead of raising SIGPIPE, whose default action
//! rawsend keeps.
//!
//! Uploads are resumable: each keeps a journal of its stored parts (see
//! `rawsend_objstore::Journals`), kept after any failure or kill and deleted once the
//! object is complete, so the same `send` run again sends only the parts missing.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};
use clap::{Args, FromArgMatches};
use rawsend_objstore::{
    self as objstore, CloneSource, Journals, Location, ObjectReader, ObjectWriter, Origin, Store, StreamInfo,
    Uploaded,
};
use rustix::net::{AddressFamily, SendFlags, SocketFlags, SocketType};

use crate::dump::Input;

/// The object `path` names, if it is an `s3://` URL.
pub fn location(path: &Path) -> Option<Result<Location>> {
    let parsed = Location::parse(path.to_str()?)?;
    Some(parsed.map_err(anyhow::Error::from))
}

/// `file://PATH` as PATH; any other path as it is.
pub fn local_path(path: &Path) -> PathBuf {
    match path.to_str().and_then(|text| text.strip_prefix("file://")) {
        Some(local) => PathBuf::from(local),
        None => path.to_owned(),
    }
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .context("cannot create a socket pair")
}

/// The stream object at `location`, downloading on a thread into a socket.
pub fn open_input(location: &Location) -> Result<Box<dyn Input + Send>> {
    let reader = Store::for_location(location)?.reader(&location.key)?;
    let (ours, theirs) = socket_pair()?;
    let feeder = std::thread::spawn(move || feed(reader, theirs));
    Ok(Box::new(Downloaded { socket: File::from(ours), feeder: Some(feeder) }))
}

/// Copies the object into `socket` straight from the downloaded chunks; a reader that
/// stopped reading ends it quietly.
fn feed(mut reader: ObjectReader, socket: OwnedFd) -> io::Result<()> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match rustix::net::send(&socket, chunk, SendFlags::NOSIGNAL) {
            Ok(sent) => reader.consume(sent),
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::PIPE) => return Ok(()),
            Err(err) => return Err(err.into()),
        }
    }
}

/// A download read from its socket; at the end, the download's error if it failed.
struct Downloaded {
    socket: File,
    feeder: Option<JoinHandle<io::Result<()>>>,
}

impl Read for Downloaded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.socket.read(buf)?;
        if read == 0 && !buf.is_empty() {
            if let Some(feeder) = self.feeder.take() {
                feeder.join().map_err(|_| io::Error::other("the download thread panicked"))??;
            }
        }
        Ok(read)
    }
}

impl AsFd for Downloaded {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Runs `send` with a socket to write the stream into, uploading what comes out of it
/// to `location`; the object is completed, and its sidecar (made as `origin` says)
/// written, only if `send` succeeded. With `resume`, an unfinished upload of the same
/// object (in the journals of [`Journals::from_env`]) is continued, and a failed one is
/// kept for the next run; a continued upload that had to be discarded is sent once more
/// from the start (`send` runs again).
pub fn upload(
    location: &Location,
    origin: Origin,
    resume: bool,
    quiet: bool,
    mut send: impl FnMut(BorrowedFd<'_>) -> Result<()>,
) -> Result<()> {
    survive_closed_connections()?;
    let store = Store::for_location(location)?;
    let journals = journals(&store, location, resume, quiet)?;
    let attempt = |send: &mut dyn FnMut(BorrowedFd<'_>) -> Result<()>| {
        upload_once(&store, location, journals.as_ref(), quiet, send)
    };
    let done = match attempt(&mut send) {
        Err(err) if discarded(&err) => {
            if !quiet {
                eprintln!("rawsend: {}; sending again from the start", err.root_cause());
            }
            attempt(&mut send)?
        }
        other => other?,
    };
    match StreamInfo::describe(&location.key, &done, origin) {
        Some(info) => store.put_info(&info)?,
        None => eprintln!("rawsend: warning: {location} does not start with a subvolume: no metadata stored"),
    }
    Ok(())
}

/// Makes a write into a connection the server closed (a server stopped mid-request)
/// fail with EPIPE, which the store retries and reports, instead of killing rawsend with
/// SIGPIPE (whose default action rawsend keeps for its output; an upload writes none).
fn survive_closed_connections() -> Result<()> {
    let noted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGPIPE, noted).context("cannot handle SIGPIPE")?;
    Ok(())
}

/// The journals of resumable uploads; without `resume`, none, after discarding the
/// unfinished upload of `location` if there is one.
fn journals(store: &Store, location: &Location, resume: bool, quiet: bool) -> Result<Option<Journals>> {
    let journals = Journals::from_env();
    if journals.is_none() && resume && !quiet {
        eprintln!(
            "rawsend: warning: no RAWSEND_STATE_DIR, XDG_STATE_HOME or HOME: the upload cannot be resumed"
        );
    }
    if resume {
        return Ok(journals);
    }
    if let Some(journals) = journals {
        if store.discard_upload(&location.key, &journals)? && !quiet {
            eprintln!("rawsend: discarded the unfinished upload to {location}");
        }
    }
    Ok(None)
}

/// One upload of what `send` writes; the object is completed only if `send` succeeded.
fn upload_once(
    store: &Store,
    location: &Location,
    journals: Option<&Journals>,
    quiet: bool,
    send: &mut dyn FnMut(BorrowedFd<'_>) -> Result<()>,
) -> Result<Uploaded> {
    let writer = store.writer(&location.key, journals)?;
    let continued = writer.continued();
    if let (Some(stored), false) = (continued, quiet) {
        eprintln!("rawsend: continuing the unfinished upload to {location}: {stored} bytes already stored");
    }
    let (ours, theirs) = socket_pair()?;
    let uploader = std::thread::spawn(move || drain_into(File::from(ours), writer));
    let sent = send(theirs.as_fd());
    drop(theirs);
    let uploaded = uploader.join().map_err(|_| anyhow::anyhow!("the upload thread panicked"))?;
    sent?;
    let cannot = || format!("cannot upload the stream to {location}");
    let done = uploaded.with_context(cannot)?.finish().with_context(cannot)?;
    if continued.is_some() && !quiet {
        eprintln!(
            "rawsend: {} of the stream's {} bytes were already stored, not sent again",
            done.reused, done.size
        );
    }
    Ok(done)
}

/// Whether `err` is a continued upload that was discarded ([`objstore::Error::Discarded`]).
fn discarded(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let inner = cause.downcast_ref::<io::Error>().and_then(io::Error::get_ref).map(|inner| inner as _);
        let store_error = inner.unwrap_or(cause).downcast_ref::<objstore::Error>();
        matches!(store_error, Some(objstore::Error::Discarded { .. }))
    })
}

/// Copies `input` into `writer` to its end; after a failure (which stops the upload)
/// reads the rest, so that the kernel finishes writing.
fn drain_into(mut input: File, mut writer: ObjectWriter) -> io::Result<ObjectWriter> {
    match io::copy(&mut input, &mut writer) {
        Ok(_) => Ok(writer),
        Err(err) => {
            drop(writer);
            let _ = io::copy(&mut input, &mut io::sink());
            Err(err)
        }
    }
}

/// Arguments of `rawsend ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Where the streams are: s3://BUCKET/PREFIX.
    #[arg(value_name = "URL")]
    url: PathBuf,
    /// Print a JSON array, one object per stream.
    #[arg(long)]
    json: bool,
}

/// The location `url` names and the streams (with sidecars) under it.
fn infos_at(url: &Path) -> Result<(Location, Vec<StreamInfo>)> {
    let Some(location) = location(url) else {
        bail!("not an object storage URL (s3://BUCKET/PREFIX): {}", url.display())
    };
    let location = location?;
    let store = Store::for_location(&location)?;
    let infos = store.stream_infos(&location.key)?;
    Ok((location, infos))
}

/// Runs `rawsend ls`: the streams under a prefix, as chains of full and incremental streams.
pub fn ls(args: &LsArgs) -> Result<()> {
    let (_, infos) = infos_at(&args.url)?;
    let chains = rawsend_objstore::chains(&infos);
    if args.json {
        let ordered: Vec<&StreamInfo> = chains.iter().map(|(_, info)| *info).collect();
        println!("{}", serde_json::to_string_pretty(&ordered)?);
        return Ok(());
    }
    for (depth, info) in chains {
        let kind = if info.parent_uuid.is_some() { "incremental" } else { "full" };
        println!(
            "{:indent$}{}  {}  {kind}  uuid {}  ctransid {}  {} bytes  sha256 {}{}",
            "",
            info.key,
            info.name,
            info.uuid,
            info.ctransid,
            info.size,
            info.sha256,
            origin_text(&info.origin),
            indent = depth * 2
        );
    }
    Ok(())
}

/// The clone sources and flags of `origin` as `ls` prints them after the other fields.
fn origin_text(origin: &Origin) -> String {
    let mut text = String::new();
    if let Some(sources) = &origin.clone_sources {
        let named: Vec<String> =
            sources.iter().map(|source| format!("{} ({})", source.uuid, source.ctransid)).collect();
        let list = if named.is_empty() { "none".to_owned() } else { named.join(", ") };
        text.push_str(&format!("  clone sources {list}"));
    }
    if !origin.flags.is_empty() {
        text.push_str(&format!("  flags {}", origin.flags.join(",")));
    }
    text
}

/// The clone sources recorded in the sidecar of the stream object `path` names, if
/// it is one and has a sidecar that records them.
pub fn clone_sources_of(path: &Path) -> Result<Option<Vec<CloneSource>>> {
    let Some(location) = location(path) else { return Ok(None) };
    let location = location?;
    let info = Store::for_location(&location)?.stream_info(&location.key)?;
    Ok(info.and_then(|info| info.origin.clone_sources))
}

/// Arguments of `rawsend restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// Where the streams are: s3://BUCKET/PREFIX.
    #[arg(value_name = "URL")]
    url: PathBuf,
    /// The snapshot to restore: its subvolume name, as in its stream.
    #[arg(value_name = "NAME")]
    name: String,
    /// Where to receive the chain.
    #[arg(value_name = "DEST")]
    dest: PathBuf,
    /// Options given to each `rawsend receive` (e.g. --target dir, -q).
    #[arg(last = true, value_name = "RECEIVE_OPTION")]
    receive: Vec<String>,
}

/// Runs `rawsend restore`: receives the full stream and the incrementals that end at
/// snapshot NAME, in order, each with `rawsend receive -f URL [OPTIONS] DEST`, after
/// a warning for each clone source that the chain does not make.
pub fn restore(args: &RestoreArgs) -> Result<()> {
    let (location, infos) = infos_at(&args.url)?;
    let chain = rawsend_objstore::chain_to(&infos, &args.name)?;
    for (info, source) in rawsend_objstore::clone_sources_outside(&chain) {
        eprintln!(
            "rawsend: warning: {} may clone from subvolume {} (ctransid {}), which no stream of \
             the chain makes: the receiving side must have it already",
            location.with_key(&info.key),
            source.uuid,
            source.ctransid
        );
    }
    for info in chain {
        let url = location.with_key(&info.key).to_string();
        let mut argv = vec!["receive".to_owned(), "-f".to_owned(), url.clone()];
        argv.extend(args.receive.iter().cloned());
        argv.push(args.dest.display().to_string());
        let matches = crate::receive::ReceiveArgs::augment_args(clap::Command::new("receive"))
            .try_get_matches_from(&argv)
            .context("bad receive options")?;
        let receive = crate::receive::ReceiveArgs::from_arg_matches(&matches)?;
        crate::receive::run(&receive).with_context(|| format!("cannot restore {url}"))?;
    }
    Ok(())
}
