//! The receive engine: reads commands and drives a [`Target`], owning all policy.
//!
//! Policy lives here so every target behaves the same: an encoded extent is
//! checked (bounds, compression, encryption) before anything is written, is
//! passed through when the target can store it and otherwise decoded with
//! `rawsend-codec` and written as plain bytes; a clone is reflinked when the
//! target can and copied otherwise; fallocate modes are whitelisted; a
//! subvolume is marked received only when every one of its commands
//! applied. After a failure the partial subvolume is left unmarked and the
//! error says where it is.
//!
//! Resume (see [`crate::resume`]): at each SUBVOL or SNAPSHOT whose name
//! holds a partial receive with saved state, the engine checks the stream's
//! identity, skips the prefix already applied while verifying its digest,
//! and continues, under the replay rules where a crash may have left more
//! applied than was saved. Along the way it notes progress before each
//! namespace command, checkpoints every [`Checkpoints`] and at every clean
//! stop, and the target removes the state once the subvolume is marked.
//!
//! The engine prints nothing: a caller that reports progress (the CLI prints
//! btrfs-progs' messages) registers an observer, told of each command just
//! before it is applied and of each subvolume just before it is marked
//! received, so its messages come at the same moment relative to the work
//! as btrfs-progs' do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rawsend_codec::{Compression, Decoder, ExtentFields};
use rawsend_stream::{
    Command, Item, Location, ReadProgress, ReaderOptions, Record, Source, StreamPath, StreamReader, Uuid,
};
use rustix::io::Errno;

use crate::error::{Error, ErrorKind, Refusal, Result, Taken};
use crate::lookahead::{self, Held};
use crate::resume::{self, Checkpoints, Epoch, Identity, Position, Progress, ResumeState, Tail, Tracker};
use crate::target::{CloneSource, EncodedExtent, NodeKind, Outcome, SubvolStart, Target, Verity};
use crate::verify::Verifier;

/// `fallocate` modes a stream may ask for: none, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE,
/// ZERO_RANGE and ZERO_RANGE|KEEP_SIZE.
const ALLOWED_FALLOCATE_MODES: [u32; 5] = [0x0, 0x1, 0x3, 0x10, 0x11];
/// fs-verity hash algorithms: SHA-256 and SHA-512 (`FS_VERITY_HASH_ALG_*`).
const VERITY_ALGORITHMS: [u32; 2] = [1, 2];
/// Longest fs-verity salt (`FS_VERITY_MAX_SALT_SIZE`).
const VERITY_MAX_SALT: usize = 32;
/// Longest fs-verity builtin signature (`FS_VERITY_MAX_SIGNATURE_SIZE`).
const VERITY_MAX_SIGNATURE: usize = 16128;
/// Chunk size for copying a clone range when reflinks are not possible.
const COPY_CHUNK: usize = 128 * 1024;

/// How to receive.
#[derive(Clone, Copy, Debug)]
pub struct ReceiveOptions {
    /// Stream reader options (frame caps, `-e`).
    pub reader: ReaderOptions,
    /// Stop after this many failed commands; 0 means never stop.
    pub max_errors: u64,
    /// Never write encoded extents as they are; always decode them.
    pub force_decompress: bool,
    /// Test-decode every encoded extent written as it is (the kernel does not validate
    /// encoded data), on a worker thread; a corrupt one fails its subvolume.
    pub verify_encoded: bool,
    /// Keep resume state and continue partial subvolumes (see [`crate::resume`]);
    /// `false` behaves as btrfs-progs: no state, an existing name is an error.
    pub resume: bool,
    /// How often to checkpoint when `resume` is on.
    pub checkpoints: Checkpoints,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            reader: ReaderOptions::default(),
            max_errors: 1,
            force_decompress: false,
            verify_encoded: true,
            resume: true,
            checkpoints: Checkpoints::default(),
        }
    }
}

/// What a receive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Commands applied.
    pub commands: u64,
    /// Subvolumes completed and marked received.
    pub subvolumes: Vec<String>,
    /// Encoded extents stored as they came.
    pub encoded_passthrough: u64,
    /// Encoded extents decoded and written as plain data.
    pub encoded_decompressed: u64,
    /// Clones done as reflinks.
    pub clones_reflinked: u64,
    /// Clones done by copying.
    pub clones_copied: u64,
}

/// Why a receive failed: every error seen, and what was left unfinished.
#[derive(Debug)]
pub struct Failure {
    /// The errors, in stream order.
    pub errors: Vec<Error>,
    /// Subvolumes left incomplete (not marked received), described for the user.
    pub unfinished: Vec<String>,
    /// What was completed before the failure.
    pub summary: Summary,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.errors.last() {
            Some(last) => write!(f, "{last}")?,
            None => f.write_str("receive failed")?,
        }
        for unfinished in &self.unfinished {
            write!(f, "; {unfinished}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// What the receiver is about to do, told to its observer ([`Receiver::observe`]).
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A command is about to be applied: SUBVOL and SNAPSHOT after the previous
    /// subvolume was finished, before the new one is created; any other command
    /// of an open subvolume before it is applied (END is not reported).
    Command(&'a Command<'a>),
    /// The open subvolume applied cleanly and is about to be marked received
    /// with the sender's `uuid` and `ctransid`.
    Finishing {
        /// The UUID recorded as received UUID.
        uuid: Uuid,
        /// The ctransid recorded as send transid.
        ctransid: u64,
    },
    /// The open subvolume's resume state is saved at `position`, once what was applied
    /// is durable (the target may finish a periodic checkpoint in the background).
    Checkpoint {
        /// How far it is applied.
        position: Position,
        /// What may be applied beyond.
        tail: Tail,
    },
    /// The subvolume just started (its SUBVOL or SNAPSHOT was reported) is already
    /// received here, from the same sent subvolume: it is left as it is and its commands
    /// are passed over (with resume on; without, it is an error as with btrfs-progs).
    AlreadyReceived {
        /// Its name in DEST.
        name: &'a [u8],
        /// The sent subvolume's UUID (its received UUID here).
        uuid: Uuid,
        /// Its ctransid.
        ctransid: u64,
    },
    /// The saved prefix of a partial subvolume was skipped and verified; applying
    /// continues after `position`, under the replay rules if `replay`.
    Resuming {
        /// Where applying continues.
        position: Position,
        /// Whether the replay rules apply (the last receive did not stop cleanly).
        replay: bool,
    },
}

/// A caller's callback for [`Event`]s.
type Observer = Box<dyn FnMut(Event<'_>)>;

/// Applies send streams to a [`Target`].
pub struct Receiver<T> {
    target: T,
    opts: ReceiveOptions,
    decoder: Decoder,
    scratch: Vec<u8>,
    /// Checks extents written as they are; started at the first one.
    verifier: Option<Verifier>,
    /// Whether a subvolume is open, and whether any of its commands failed.
    current: Option<bool>,
    /// The open subvolume's UUID and ctransid, as the stream sent them.
    current_id: (Uuid, u64),
    /// Told of each command and completion (see [`Event`]).
    observer: Option<Observer>,
    /// Where the reader publishes how far it read (see [`Receiver::publish_progress`]).
    progress: Option<Arc<ReadProgress>>,
    summary: Summary,
    errors: Vec<Error>,
    unfinished: Vec<String>,
    /// Non-zero: stop at the next command boundary (see [`Receiver::interrupt_when`]).
    interrupt: Option<Arc<AtomicUsize>>,
    /// Input offset of the current stream's header.
    stream_offset: u64,
    /// Resume bookkeeping of the open subvolume.
    tracker: Option<Tracker>,
    /// The epoch progress records are written in (with resume on).
    epoch: Option<Epoch>,
    /// A continuation marker just read: where the next subvolume's stream continues.
    continuing: Option<Position>,
    /// The subvolume being read is already received here: its commands are passed over.
    passing_over: bool,
    /// The first subvolume passed over: an error if nothing else is received.
    passed_over: Option<Error>,
    /// A create held back one command (see [`crate::lookahead`]).
    held: Option<Held>,
}

impl<T: Target> Receiver<T> {
    /// A receiver writing to `target`.
    pub fn new(target: T, opts: ReceiveOptions) -> Self {
        let epoch = if opts.resume { Epoch::current(target.mount_id()) } else { None };
        Receiver {
            target,
            opts,
            decoder: Decoder::new(),
            scratch: Vec::new(),
            verifier: None,
            current: None,
            current_id: (Uuid::default(), 0),
            observer: None,
            progress: None,
            summary: Summary::default(),
            errors: Vec::new(),
            unfinished: Vec::new(),
            interrupt: None,
            stream_offset: 0,
            tracker: None,
            epoch,
            continuing: None,
            passing_over: false,
            passed_over: None,
            held: None,
        }
    }

    /// Stops at the next command boundary once `flag` is non-zero (e.g. set to a
    /// signal's number by a handler): the open subvolume is left unmarked and the
    /// receive fails with [`ErrorKind::Interrupted`], as after any other error.
    pub fn interrupt_when(mut self, flag: Arc<AtomicUsize>) -> Self {
        self.interrupt = Some(flag);
        self
    }

    /// Tells `observer` of each command just before it is applied and of each subvolume
    /// just before it is marked received (for progress messages).
    pub fn observe(mut self, observer: impl FnMut(Event<'_>) + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Has the stream reader publish the bytes and commands read, the subvolume and a
    /// recent path into `progress`, for a progress display on another thread.
    pub fn publish_progress(mut self, progress: Arc<ReadProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    fn notify(&mut self, event: Event<'_>) {
        if let Some(observer) = self.observer.as_mut() {
            observer(event);
        }
    }

    /// Reads every stream in `input` and applies it.
    pub fn receive(self, input: impl Source) -> std::result::Result<Summary, Failure> {
        self.receive_into(input).map(|(summary, _)| summary)
    }

    /// Like [`Receiver::receive`], also handing back the target (to receive more streams into it).
    pub fn receive_into(self, input: impl Source) -> std::result::Result<(Summary, T), Failure> {
        let (outcome, target) = self.receive_keeping(input);
        outcome.map(|summary| (summary, target))
    }

    /// Like [`Receiver::receive`], handing back the target whatever happened (to look at
    /// what a failed or interrupted receive left, or to continue it).
    pub fn receive_keeping(mut self, input: impl Source) -> (std::result::Result<Summary, Failure>, T) {
        let mut reader = StreamReader::with_options(input, self.opts.reader);
        if let Some(progress) = self.progress.take() {
            reader = reader.with_progress(progress);
        }
        loop {
            if self.interrupted() {
                self.settle(Tail::Clean, true);
                let location = Location {
                    index: Some(reader.commands_read()),
                    offset: reader.offset(),
                    ..Location::default()
                };
                self.record_error(Error { location, kind: ErrorKind::Interrupted });
                break;
            }
            let outcome = match reader.next() {
                Ok(None) => break,
                Ok(Some(Item::Header { offset, .. })) => {
                    self.stream_offset = offset;
                    continue;
                }
                Ok(Some(Item::Continue { position, index, offset })) => {
                    let location = Location { index: Some(index), offset, ..Location::default() };
                    self.expect_continuation(position).map_err(|kind| (Error { location, kind }, Tail::Clean))
                }
                // A command that failed may be partly applied; a stream error applied nothing.
                Ok(Some(Item::Command(record))) => {
                    self.apply_next(&record).map_err(|err| (err, Tail::Pending))
                }
                Err(err) => Err((Error::from(err), Tail::Clean)),
            };
            if self.failed(outcome) {
                break;
            }
        }
        self.collect_verdicts();
        self.abandon_current();
        self.finish();
        let outcome = if self.errors.is_empty() {
            Ok(self.summary)
        } else {
            Err(Failure { errors: self.errors, unfinished: self.unfinished, summary: self.summary })
        };
        (outcome, self.target)
    }

    /// Records the error of a command or of the stream, if any, and says whether the
    /// receive must stop.
    fn failed(&mut self, outcome: std::result::Result<(), (Error, Tail)>) -> bool {
        if let Err((err, tail)) = outcome {
            if err.kind.is_device_failure() {
                // What the disk holds is unknown (btrfs aborts on a write error): nothing
                // to resume from. Erasing the progress may fail as well.
                let _ = self.stop_keeping();
            } else {
                let stops = self.opts.max_errors != 0 && self.errors.len() as u64 + 1 >= self.opts.max_errors;
                self.settle(tail, stops);
            }
            self.record_error(err);
        }
        self.too_many_errors()
    }

    /// Applies `record` after the create held back, if any: both as one create at the
    /// final name when `record` renames what the held create creates.
    fn apply_next(&mut self, record: &Record<'_>) -> std::result::Result<(), Error> {
        if let Some(held) = self.held.take() {
            let alone = match held.record() {
                Ok(created) if lookahead::renames(&created.command, &record.command) => {
                    return self.apply_merged(&created, record);
                }
                Ok(created) => self.apply_record(&created),
                Err(kind) => Err(Error { location: held.location(), kind }),
            };
            if self.failed(alone.map_err(|err| (err, Tail::Pending))) {
                // Too many errors: the receive stops before `record`.
                return Ok(());
            }
        }
        self.hold_or_apply(record)
    }

    /// Applies `record`, or holds it back if it is a create that the next command may
    /// rename (see [`crate::lookahead`]).
    fn hold_or_apply(&mut self, record: &Record<'_>) -> std::result::Result<(), Error> {
        if self.may_hold() {
            if let Some(held) = Held::of(record) {
                self.held = Some(held);
                return Ok(());
            }
        }
        self.apply_record(record)
    }

    /// Whether a create may be held back: in an open subvolume, applying (not skipping,
    /// passing over or continuing), outside the replay window, where commands are
    /// applied one by one as sent.
    fn may_hold(&self) -> bool {
        self.current.is_some()
            && !self.passing_over
            && self.continuing.is_none()
            && self.tracker.as_ref().is_some_and(|t| !t.skipping() && t.replay_from.is_none())
    }

    /// The held create `created` and the RENAME `rename` of what it creates, as one
    /// create at the rename's destination; as the two commands if that name exists.
    fn apply_merged(&mut self, created: &Record<'_>, rename: &Record<'_>) -> std::result::Result<(), Error> {
        let located = |kind| Error { location: location(rename), kind };
        let Command::Rename { to, .. } = rename.command else {
            return Err(located(ErrorKind::Invalid(
                "a held create merged with a command that is not RENAME",
            )));
        };
        self.before_apply(&created.command).map_err(located)?;
        self.notify(Event::Command(&created.command));
        self.notify(Event::Command(&rename.command));
        match self.create_node(&created.command, Some(to)) {
            Err(kind) if kind.errno() == Some(Errno::EXIST.raw_os_error()) => {
                self.create_node(&created.command, None)
                    .map_err(|kind| Error { location: location(created), kind })?;
                self.apply_in_subvol(rename).map_err(located)?;
            }
            other => other.map_err(located)?,
        }
        self.summary.commands += 2;
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.step(created.raw);
        }
        self.advance(rename).map_err(located)
    }

    /// Creates the node `command` (a create) asks for, at `at` instead of its own path if
    /// given (see [`crate::lookahead`]).
    fn create_node(&mut self, command: &Command<'_>, at: Option<StreamPath<'_>>) -> Result<()> {
        let (path, kind) = match *command {
            Command::Mkfile { path, .. } => (path, NodeKind::File),
            Command::Mkdir { path, .. } => (path, NodeKind::Dir),
            Command::Mknod { path, mode, rdev, .. } => {
                let kind = mode & 0o170000;
                if kind != 0o020000 && kind != 0o060000 {
                    return Err(ErrorKind::Invalid("mknod mode is not a character or block device"));
                }
                (path, NodeKind::Device { mode, rdev })
            }
            Command::Mkfifo { path, .. } => (path, NodeKind::Fifo),
            Command::Mksock { path, .. } => (path, NodeKind::Socket),
            Command::Symlink { path, target, .. } => {
                if target.as_bytes().is_empty() || target.as_bytes().contains(&0) {
                    return Err(ErrorKind::Invalid("symlink target is empty or contains NUL"));
                }
                (path, NodeKind::Symlink(target))
            }
            _ => return Err(ErrorKind::Invalid("not a create")),
        };
        self.target.create(at.unwrap_or(path), kind)
    }

    /// At the end of the input: if every subvolume read was passed over as already
    /// received, that is an error, as btrfs-progs makes it (with a clearer message).
    fn finish(&mut self) {
        if self.errors.is_empty() && self.summary.subvolumes.is_empty() {
            self.errors.extend(self.passed_over.take());
        }
    }

    fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed) != 0)
    }

    fn too_many_errors(&self) -> bool {
        self.opts.max_errors != 0 && self.errors.len() as u64 >= self.opts.max_errors
    }

    fn record_error(&mut self, err: Error) {
        if let Some(failed) = self.current.as_mut() {
            *failed = true;
        }
        self.errors.push(err);
    }

    /// Leaves an open subvolume unmarked (after a failure, or input that ended early).
    fn abandon_current(&mut self) {
        let resumable = self.tracker.take().is_some_and(|tracker| tracker.keeping && !tracker.skipping());
        if self.current.take().is_some() {
            self.report_unfinished(resumable);
        }
    }

    /// Notes where the target left a subvolume it did not finish, if it did.
    fn report_unfinished(&mut self, resumable: bool) {
        if let Some(mut place) = self.target.abandon_subvol() {
            place.resumable = resumable;
            self.unfinished.push(place.to_string());
        }
    }

    fn apply_record(&mut self, record: &Record<'_>) -> std::result::Result<(), Error> {
        let located = |kind| Error { location: location(record), kind };
        if self.passed_over(&record.command) || self.skipped(record).map_err(located)? {
            return Ok(());
        }
        self.before_apply(&record.command).map_err(located)?;
        self.apply(record).or_else(|kind| self.replayed(&record.command, kind)).map_err(located)?;
        self.summary.commands += 1;
        self.advance(record).map_err(located)
    }

    /// Whether `command` belongs to a subvolume already received here (see [`Receiver::begin`]).
    fn passed_over(&mut self, command: &Command<'_>) -> bool {
        match command {
            Command::Subvol { .. } | Command::Snapshot { .. } => self.passing_over = false,
            Command::End => return std::mem::take(&mut self.passing_over),
            _ => {}
        }
        self.passing_over
    }

    /// Whether `record` belongs to the saved prefix being skipped (it is then consumed).
    fn skipped(&mut self, record: &Record<'_>) -> Result<bool> {
        let Some(tracker) = self.tracker.as_ref().filter(|tracker| tracker.skipping()) else {
            return Ok(false);
        };
        if matches!(record.command, Command::End) {
            return Err(refused(
                tracker,
                "the stream ends before the point the partial receive reached".into(),
            ));
        }
        self.verify_skipped(record)?;
        self.advance(record)?;
        Ok(true)
    }

    /// Test-decodes an encoded extent being skipped that the saved state does not
    /// vouch for. A checkpoint is made only once every extent before it is checked,
    /// but progress noted before a kill may be past extents whose verdict never came.
    fn verify_skipped(&mut self, record: &Record<'_>) -> Result<()> {
        let Command::EncodedWrite(write) = &record.command else { return Ok(()) };
        let Some(tracker) = self.tracker.as_ref() else { return Ok(()) };
        let vouched = tracker.skip_to.as_ref().map_or(u64::MAX, |(_, saved)| saved.state.position.commands);
        if !self.opts.verify_encoded || tracker.position.commands < vouched {
            return Ok(());
        }
        let extent = EncodedExtent::from(write);
        let compression = check_extent(&extent)?;
        if extent.len == 0 {
            return Ok(());
        }
        self.verify(record, compression, &extent)
    }

    /// Moves the open subvolume's position past `record`: verifies the skipped prefix
    /// once it is complete, or checkpoints when one is due.
    fn advance(&mut self, record: &Record<'_>) -> Result<()> {
        let Some(tracker) = self.tracker.as_mut() else { return Ok(()) };
        tracker.step(record.raw);
        let due = tracker.skip_to.is_none() && tracker.keeping && tracker.due(&self.opts.checkpoints);
        match &tracker.skip_to {
            Some((to, _)) if tracker.position.commands < to.commands => Ok(()),
            Some((to, _)) if tracker.position != *to => Err(refused(
                tracker,
                format!("this stream's first {} commands differ from those it applied", to.commands),
            )),
            Some((to, _)) => {
                let (position, replay) = (*to, tracker.replay_from.is_some());
                tracker.skip_to = None;
                self.notify(Event::Resuming { position, replay });
                // From here on the disk may hold more than the saved state says.
                self.checkpoint(Tail::Unknown)
            }
            None if due => self.checkpoint(Tail::Unknown),
            None => Ok(()),
        }
    }

    /// Before a namespace command: ends the replay window, notes progress.
    fn before_apply(&mut self, command: &Command<'_>) -> Result<()> {
        let Some(tracker) = self.tracker.as_mut() else { return Ok(()) };
        if !resume::is_namespace(command) {
            return Ok(());
        }
        if tracker.replay_from.is_some_and(|from| tracker.position.commands > from) {
            tracker.replay_from = None;
        }
        if !tracker.keeping {
            return Ok(());
        }
        if !self.target.resumable() {
            return self.stop_keeping();
        }
        self.note_progress()
    }

    /// Notes the open subvolume's position as progress, if this boot has an id, with
    /// where the extents whose verdict is still out begin.
    fn note_progress(&mut self) -> Result<()> {
        let errors = self.verifier.as_mut().map(Verifier::poll).unwrap_or_default();
        self.record_corrupt(errors);
        let tracker = self.tracker.as_ref().filter(|tracker| tracker.keeping);
        let (Some(tracker), Some(epoch)) = (tracker, &self.epoch) else { return Ok(()) };
        let checked = self.verifier.as_ref().and_then(Verifier::unchecked_from).unwrap_or(tracker.position);
        let progress = Progress { epoch: epoch.clone(), position: tracker.position, checked: Some(checked) };
        self.target.note_progress(Some(&progress))
    }

    /// `err`, or success if the replay rules say the command was already applied.
    fn replayed(&mut self, command: &Command<'_>, err: ErrorKind) -> Result<()> {
        let replaying = self.tracker.as_ref().is_some_and(|tracker| tracker.replay_from.is_some());
        if replaying && self.already_applied(command, &err)? {
            return Ok(());
        }
        Err(err)
    }

    /// Whether `err` from `command` is what applying it a second time gives (see
    /// [`crate::resume`]).
    fn already_applied(&mut self, command: &Command<'_>, err: &ErrorKind) -> Result<bool> {
        let errno = |e: Errno| err.errno() == Some(e.raw_os_error());
        Ok(match *command {
            _ if lookahead::is_create(command) => errno(Errno::EXIST),
            Command::Link { .. } | Command::EnableVerity { .. } => errno(Errno::EXIST),
            Command::Unlink { .. } | Command::Rmdir { .. } => errno(Errno::NOENT),
            Command::RemoveXattr { .. } => errno(Errno::NODATA),
            Command::Rename { from, to } => {
                errno(Errno::NOENT) && !self.target.exists(from)? && self.target.exists(to)?
            }
            _ => false,
        })
    }

    /// At a stop (`stops`) or an error the receive goes on after: saves the open
    /// subvolume's state with `tail`, or stops keeping it (what follows an error
    /// applied after a failed command cannot be resumed exactly).
    fn settle(&mut self, tail: Tail, stops: bool) {
        let settled = if stops { self.checkpoint(tail) } else { self.stop_keeping() };
        if let Err(kind) = settled {
            self.errors.push(Error { location: Location::default(), kind });
        }
    }

    /// Makes what the open subvolume applied durable and saves its resume state at its
    /// position, if state is kept; stops keeping it if the subvolume failed or holds
    /// state in memory only.
    fn checkpoint(&mut self, tail: Tail) -> Result<()> {
        self.collect_verdicts();
        let Some(tracker) = self.tracker.as_ref().filter(|t| t.keeping && !t.skipping()) else {
            return Ok(());
        };
        let state = ResumeState { identity: tracker.identity, position: tracker.position, tail };
        if self.current != Some(false) || !self.target.resumable() {
            return self.stop_keeping();
        }
        // Progress first: a kill between the two leaves progress at or past the state.
        let saved = self.note_progress().and_then(|()| self.target.checkpoint(&state));
        if let Some(tracker) = self.tracker.as_mut() {
            match saved {
                Ok(()) => tracker.checkpointed(),
                // With no state on disk (the first checkpoint failed: a full disk), the
                // subvolume cannot be resumed, and the report must not say it can.
                Err(_) if !tracker.saved => tracker.keeping = false,
                Err(_) => {}
            }
        }
        saved?;
        self.notify(Event::Checkpoint { position: state.position, tail });
        Ok(())
    }

    /// Stops keeping resume state for the open subvolume and erases its progress, so that
    /// a later receive refuses to resume it rather than guess.
    fn stop_keeping(&mut self) -> Result<()> {
        match self.tracker.as_mut().filter(|tracker| tracker.keeping) {
            Some(tracker) => {
                tracker.keeping = false;
                self.target.note_progress(None)
            }
            None => Ok(()),
        }
    }

    /// Waits for the verifier to check every extent submitted and records the errors it found.
    fn collect_verdicts(&mut self) {
        let Some(verifier) = self.verifier.as_mut() else { return };
        let errors = verifier.finish();
        self.record_corrupt(errors);
    }

    /// Finishes the open subvolume if all its commands applied (and every extent
    /// written as it is decoded).
    fn finish_current(&mut self) -> Result<()> {
        if self.current == Some(false) && self.verifier.as_ref().is_some_and(Verifier::busy) {
            // The filesystem writes back while the verifier catches up.
            self.target.write_back();
        }
        self.collect_verdicts();
        match self.current {
            Some(false) => {
                self.current = None;
                self.tracker = None;
                let (uuid, ctransid) = self.current_id;
                self.notify(Event::Finishing { uuid, ctransid });
                let finished = self.target.finish_subvol();
                if finished.is_err() {
                    self.report_unfinished(false);
                }
                finished
            }
            Some(true) => {
                self.abandon_current();
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Whether `start.name` is a complete receive of this very subvolume, as a re-run of
    /// a receive of several subvolumes finds those it finished: it is then left as it
    /// is and its commands are passed over. A receive that passes over every subvolume
    /// it reads fails, saying the first is already received (see [`Receiver::finish`]).
    fn already_received(&mut self, record: &Record<'_>, start: &SubvolStart<'_>) -> Result<bool> {
        let Some(found) = self.target.received_as(start.name)? else { return Ok(false) };
        if (found.uuid, found.ctransid) != (start.uuid, start.ctransid) {
            return Ok(false);
        }
        self.passing_over = true;
        self.notify(Event::AlreadyReceived { name: start.name, uuid: start.uuid, ctransid: start.ctransid });
        let kind = ErrorKind::NameTaken { path: found.place, taken: Taken::Received(found.uuid) };
        self.passed_over.get_or_insert(Error { location: location(record), kind });
        Ok(true)
    }

    /// Notes a continuation marker: the next SUBVOL or SNAPSHOT continues its partial
    /// subvolume after `position`.
    fn expect_continuation(&mut self, position: Position) -> Result<()> {
        if self.continuing.replace(position).is_some() {
            return Err(ErrorKind::Invalid("two continuation markers in a row"));
        }
        Ok(())
    }

    fn begin(&mut self, record: &Record<'_>, path: StreamPath<'_>, start: SubvolStart<'_>) -> Result<()> {
        self.finish_current()?;
        if !path.is_single_component() {
            return Err(ErrorKind::Invalid("a subvolume name must be a single path component"));
        }
        self.notify(Event::Command(&record.command));
        let identity = Identity {
            uuid: start.uuid,
            ctransid: start.ctransid,
            parent: start.parent,
            version: record.version,
        };
        let continuing = self.continuing.take();
        if self.opts.resume && continuing.is_none() && self.already_received(record, &start)? {
            return Ok(());
        }
        let header_len = record.offset.saturating_sub(self.stream_offset);
        let mut tracker = Tracker::new(identity, header_len, self.opts.resume);
        let saved = if self.opts.resume { self.target.saved_resume(start.name)? } else { None };
        let began = match saved {
            Some(saved) => {
                let plan = saved.plan(&identity, self.epoch.as_ref()).and_then(|plan| {
                    // A continuation may start earlier: it brings commands to skip (their
                    // extents checked) up to the plan's position. It must bring those whose
                    // extents' verdicts a kill cut off.
                    let latest =
                        if self.opts.verify_encoded { saved.checked_before(&plan) } else { plan.position };
                    match continuing {
                        Some(from) if from.commands > latest.commands || from.offset > latest.offset => {
                            Err(format!(
                                "this continuation starts after {from}, but the partial receive needs \
                                 the commands after {latest}: get a new token with `rawsend receive \
                                 --resume-token {}`",
                                saved.place
                            ))
                        }
                        _ => Ok(plan),
                    }
                });
                let plan = plan.map_err(|reason| {
                    let (place, abort) = (saved.place.clone(), saved.abort.clone());
                    ErrorKind::ResumeRefused(Box::new(Refusal { place, reason, abort }))
                })?;
                tracker.resume(saved, plan, continuing);
                self.target.resume_subvol(&start)
            }
            None if continuing.is_some() => {
                let name = String::from_utf8_lossy(start.name).into_owned();
                return Err(ErrorKind::NothingToContinue { name, resume: self.opts.resume });
            }
            None => self.target.begin_subvol(&start),
        };
        if let Err(err) = began {
            // It may have made something before failing (a partly copied parent).
            self.report_unfinished(false);
            return Err(err);
        }
        self.tracker = Some(tracker);
        self.current = Some(false);
        self.current_id = (start.uuid, start.ctransid);
        self.summary.subvolumes.push(String::from_utf8_lossy(start.name).into_owned());
        Ok(())
    }

    fn apply(&mut self, record: &Record<'_>) -> Result<()> {
        match record.command {
            Command::Subvol { path, uuid, ctransid } => {
                let start = SubvolStart { name: path.as_bytes(), uuid, ctransid, parent: None };
                return self.begin(record, path, start);
            }
            Command::Snapshot { path, uuid, ctransid, clone_uuid, clone_ctransid } => {
                let parent = Some((clone_uuid, clone_ctransid));
                let start = SubvolStart { name: path.as_bytes(), uuid, ctransid, parent };
                return self.begin(record, path, start);
            }
            Command::End => return self.finish_current(),
            _ => {}
        }
        if self.continuing.take().is_some() {
            return Err(ErrorKind::Invalid("a continuation marker not followed by SUBVOL or SNAPSHOT"));
        }
        if self.current.is_none() {
            return Err(ErrorKind::NoSubvolume);
        }
        self.notify(Event::Command(&record.command));
        self.apply_in_subvol(record)
    }

    fn apply_in_subvol(&mut self, record: &Record<'_>) -> Result<()> {
        if lookahead::is_create(&record.command) {
            return self.create_node(&record.command, None);
        }
        let t = &mut self.target;
        match record.command {
            Command::Rename { from, to } => t.rename(from, to),
            Command::Link { path, target } => t.link(path, target),
            Command::Unlink { path } => t.unlink(path),
            Command::Rmdir { path } => t.rmdir(path),
            Command::SetXattr { path, name, data } => t.set_xattr(path, name, data),
            Command::RemoveXattr { path, name } => t.remove_xattr(path, name),
            Command::Write { path, offset, data } => t.write(path, offset, data),
            Command::Clone { path, offset, len, clone_uuid, clone_ctransid, clone_path, clone_offset } => {
                let source = CloneSource {
                    uuid: clone_uuid,
                    ctransid: clone_ctransid,
                    path: clone_path,
                    offset: clone_offset,
                };
                self.clone_range(path, offset, len, &source)
            }
            Command::Truncate { path, size } => t.truncate(path, size),
            Command::Chmod { path, mode } => t.chmod(path, (mode & 0o7777) as u32),
            Command::Chown { path, uid, gid } => {
                let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
                    return Err(ErrorKind::Invalid("uid or gid does not fit 32 bits"));
                };
                t.chown(path, uid, gid)
            }
            Command::Utimes { path, atime, mtime, .. } => {
                if atime.nsec >= 1_000_000_000 || mtime.nsec >= 1_000_000_000 {
                    return Err(ErrorKind::Invalid("nanoseconds out of range"));
                }
                t.utimes(path, atime, mtime)
            }
            Command::UpdateExtent { .. } => Ok(()),
            Command::Fallocate { path, mode, offset, len } => {
                if !ALLOWED_FALLOCATE_MODES.contains(&mode) {
                    return Err(ErrorKind::Invalid("fallocate mode not allowed"));
                }
                t.fallocate(path, mode, offset, len)
            }
            Command::Fileattr { path, attr } => t.fileattr(path, attr),
            Command::EncodedWrite(write) => {
                if write.encryption.unwrap_or(0) != 0 {
                    return Err(ErrorKind::Unsupported("encrypted extents"));
                }
                self.encoded_write(record, write.path, &EncodedExtent::from(&write))
            }
            Command::EnableVerity { path, algorithm, block_size, salt, sig } => {
                let verity = Verity { hash_algorithm: algorithm.into(), block_size, salt, signature: sig };
                check_verity(&verity)?;
                t.enable_verity(path, &verity)
            }
            _ => Err(ErrorKind::Unsupported("unknown command")),
        }
    }

    /// Checks an encoded extent, passes it through (then has it verified) or decodes
    /// and writes it.
    fn encoded_write(
        &mut self,
        record: &Record<'_>,
        path: StreamPath<'_>,
        extent: &EncodedExtent<'_>,
    ) -> Result<()> {
        let compression = check_extent(extent)?;
        if extent.len == 0 {
            return Ok(());
        }
        if self.target.capabilities().encoded_write
            && !self.opts.force_decompress
            && self.target.encoded_write(path, extent)? == Outcome::Done
        {
            self.summary.encoded_passthrough += 1;
            if self.opts.verify_encoded {
                self.verify(record, compression, extent)?;
            }
            return Ok(());
        }
        self.decode(compression, extent)?;
        let start = extent.unencoded_offset as usize;
        let end = start + extent.len as usize;
        self.target.write(path, extent.offset, &self.scratch[start..end])?;
        self.summary.encoded_decompressed += 1;
        Ok(())
    }

    /// Queues an extent written as it is for a test decode on the verifier's thread.
    fn verify(
        &mut self,
        record: &Record<'_>,
        compression: Compression,
        extent: &EncodedExtent<'_>,
    ) -> Result<()> {
        let verifier = match &mut self.verifier {
            Some(verifier) => verifier,
            empty => {
                empty.insert(Verifier::start().map_err(|e| ErrorKind::io("start the verifier thread", e))?)
            }
        };
        let unencoded_len = extent.unencoded_len as usize;
        let mark = self.tracker.as_ref().map_or(Position::start(0), |tracker| tracker.position);
        let errors = verifier.submit(mark, location(record), compression, unencoded_len, extent.data);
        self.record_corrupt(errors);
        Ok(())
    }

    /// Records the corrupt extents the verifier found. They make the subvolume
    /// unresumable: progress noted since such an extent was written would have a
    /// re-run skip it, and complete the subvolume with it.
    fn record_corrupt(&mut self, errors: Vec<Error>) {
        if errors.is_empty() {
            return;
        }
        errors.into_iter().for_each(|err| self.record_error(err));
        if let Err(kind) = self.stop_keeping() {
            self.errors.push(Error { location: Location::default(), kind });
        }
    }

    fn decode(&mut self, compression: Compression, extent: &EncodedExtent<'_>) -> Result<()> {
        self.scratch.resize(extent.unencoded_len as usize, 0);
        self.decoder.decode(compression, extent.data, &mut self.scratch)?;
        Ok(())
    }

    /// Reflinks a range, or copies it through the target when reflinks are impossible.
    fn clone_range(
        &mut self,
        path: StreamPath<'_>,
        offset: u64,
        len: u64,
        source: &CloneSource<'_>,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if offset.checked_add(len).is_none() || source.offset.checked_add(len).is_none() {
            return Err(ErrorKind::Invalid("clone range overflows"));
        }
        if self.target.capabilities().clone
            && self.target.clone_range(path, offset, len, source)? == Outcome::Done
        {
            self.summary.clones_reflinked += 1;
            return Ok(());
        }
        self.scratch.resize(COPY_CHUNK, 0);
        let mut done = 0;
        while done < len {
            let want = (len - done).min(COPY_CHUNK as u64) as usize;
            let at = CloneSource { offset: source.offset + done, ..*source };
            let got = self.target.read_clone_source(&at, &mut self.scratch[..want])?;
            if got == 0 {
                return Err(ErrorKind::Invalid("clone source range runs past the source file's end"));
            }
            self.target.write(path, offset + done, &self.scratch[..got])?;
            done += got as u64;
        }
        self.summary.clones_copied += 1;
        Ok(())
    }
}

/// The error refusing to continue the partial subvolume `tracker` was resuming.
fn refused(tracker: &Tracker, reason: String) -> ErrorKind {
    let (place, abort) = match &tracker.skip_to {
        Some((_, saved)) => (saved.place.clone(), saved.abort.clone()),
        None => (String::new(), String::new()),
    };
    ErrorKind::ResumeRefused(Box::new(Refusal { place, reason, abort }))
}

/// Where a command is, for errors: index, offset, command and path.
fn location(record: &Record<'_>) -> Location {
    Location {
        index: Some(record.index),
        offset: record.offset,
        command: Some(record.command.kind().raw()),
        path: record.command.path().map(|p| p.as_bytes().to_vec()),
    }
}

/// Checks the fields of an encoded extent that no target can accept wrong.
fn check_extent(extent: &EncodedExtent<'_>) -> Result<Compression> {
    let fields = ExtentFields {
        offset: extent.offset,
        len: extent.len,
        unencoded_len: extent.unencoded_len,
        unencoded_offset: extent.unencoded_offset,
        compression: extent.compression,
        data_len: extent.data.len(),
    };
    fields.check().map_err(ErrorKind::Invalid)
}

/// Rejects fs-verity parameters the kernel would refuse, so every target agrees.
fn check_verity(verity: &Verity<'_>) -> Result<()> {
    if !VERITY_ALGORITHMS.contains(&verity.hash_algorithm) {
        return Err(ErrorKind::Invalid("unknown fs-verity hash algorithm"));
    }
    if !verity.block_size.is_power_of_two() || !(1024..=65536).contains(&verity.block_size) {
        return Err(ErrorKind::Invalid("fs-verity block size is not a power of two in 1 KiB..64 KiB"));
    }
    if verity.salt.len() > VERITY_MAX_SALT || verity.signature.len() > VERITY_MAX_SIGNATURE {
        return Err(ErrorKind::Invalid("fs-verity salt or signature too long"));
    }
    Ok(())
}
