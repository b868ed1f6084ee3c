//! Resumable receive: what is kept about a partial subvolume, and how a re-run
//! of the same stream continues it.
//!
//! For each subvolume being received the engine keeps a [`ResumeState`]: the
//! stream's identity (the sent subvolume's UUID and ctransid, the parent's,
//! the protocol version) and the [`Position`] applied so far within that
//! subvolume's stream (commands, its SUBVOL or SNAPSHOT first; bytes from its
//! stream header; a [`Digest`] of those commands). A *checkpoint* first makes
//! everything applied durable (`syncfs`) and then writes the state atomically
//! (the target's job), so a saved state never claims more than the disk has.
//!
//! What follows the saved position ([`Tail`]) decides how a re-run continues:
//! - [`Tail::Clean`]: nothing (a signal, the input ending or failing): the
//!   re-run skips the prefix and applies the rest under the normal rules.
//! - [`Tail::Pending`]: the command at the position failed and may be half
//!   done (ENOSPC...): it is replayed under the replay rules, then normal rules.
//! - [`Tail::Unknown`]: a periodic checkpoint; after a crash any prefix of the
//!   later commands may be applied. Before each namespace command (create,
//!   rename, link, unlink, rmdir) the engine notes its position in a
//!   [`Progress`] record that is written but never synced: cheap, and exact as
//!   long as what the kernel accepted stays in its page cache (a killed process
//!   loses nothing), that is within one [`Epoch`]: one boot and one mount of the
//!   destination's filesystem. A power cut loses the page cache; so does an I/O
//!   error that aborts the filesystem, and once it is mounted again its disk may
//!   hold a record written back before data the record counts as applied. With a
//!   progress record of this epoch the re-run continues from it, replaying;
//!   without one, it refuses: replaying an unknown number of renames by name can
//!   mis-apply them.
//!
//! Replay rules, applied only from the resume position until the next
//! namespace command (exclusive), where what the kill left is one namespace
//! command perhaps done followed by non-namespace commands perhaps done:
//! a create that finds the name taken (EEXIST), a rename whose source is
//! gone (ENOENT) while its destination exists, a link that exists (EEXIST),
//! an unlink or rmdir of a missing name (ENOENT), a removal of a missing
//! xattr (ENODATA) and enabling fs-verity twice (EEXIST) count as done.
//! Writes, clones, truncates, fallocate, chmod, chown, utimes, set xattr and
//! file attributes are idempotent. Nothing else is relaxed: paths are still
//! resolved beneath the subvolume without following symlinks.
//!
//! Skipping is safe because it is verified: the state file lives in the
//! destination and may be forged, so the engine skips a prefix only after
//! computing the digest of the commands it skips from the stream itself
//! and finding it equal to the saved one. A forged state can at most make
//! it skip commands of this very stream, never apply another stream on top.
//! A checkpoint waits for the verdicts on every encoded extent before it, but
//! a progress record may be past extents whose verdict a kill cut off: the
//! encoded extents skipped after the saved state are test-decoded again. A
//! corrupt extent makes its subvolume unresumable. A progress record also
//! says where the extents whose verdict was still out begin ([`Progress::checked`]),
//! and a continuation starts there (see below).
//! The digest is a 64-bit FNV-1a over each command's header (length, type
//! and CRC32C, which the reader has checked against the command's bytes).
//!
//! A *continuation* ([`rawsend_stream::resume`], written by `rawsend send
//! --resume TOKEN`) starts with a marker naming the position the sender
//! skipped to, after checking the skipped commands' digest against the
//! token's. The token ([`Saved::token`]) names where the receive continues,
//! or, after a kill, the first extent whose verdict was still out: the
//! continuation then repeats the commands from there, which the engine skips
//! as it skips a repeated prefix (their digest checked, their extents
//! test-decoded). It refuses a continuation that starts after where this
//! partial subvolume continues, or with nothing to continue (no partial
//! subvolume, `--no-resume`).

use std::time::{Duration, Instant};

pub use rawsend_stream::resume::{Digest, Identity, Position, Token};
use rawsend_stream::{Command, Uuid};

/// First line of a saved state.
const STATE_MAGIC: &str = "rawsend-resume 1";
/// First word of a progress record.
const PROGRESS_MAGIC: &str = "rawsend-progress-3";
/// Length of a progress record: fixed, so that rewriting it in place leaves no stale tail.
pub const PROGRESS_LEN: usize = 256;
/// First word of a record of the second format, which does not name the mount: it
/// counts as written on a kernel without mount ids (see [`Epoch::mount`]).
const PROGRESS_V2_MAGIC: &str = "rawsend-progress-2";
/// First word of a record of the first format, which has no checked position either.
const PROGRESS_V1_MAGIC: &str = "rawsend-progress-1";
/// Length of a record of the first format.
const PROGRESS_V1_LEN: usize = 128;
/// What a progress record of one format looks like.
struct ProgressFormat {
    /// Its first word.
    magic: &'static str,
    /// Its length.
    len: usize,
    /// Whether it names the mount after the boot.
    names_mount: bool,
    /// Whether it has a checked position after the position.
    has_checked: bool,
}
/// Every format a progress record is read in, this one first.
const PROGRESS_FORMATS: [ProgressFormat; 3] = [
    ProgressFormat { magic: PROGRESS_MAGIC, len: PROGRESS_LEN, names_mount: true, has_checked: true },
    ProgressFormat { magic: PROGRESS_V2_MAGIC, len: PROGRESS_LEN, names_mount: false, has_checked: true },
    ProgressFormat { magic: PROGRESS_V1_MAGIC, len: PROGRESS_V1_LEN, names_mount: false, has_checked: false },
];
/// Progress records kept, written in turn: a kill may tear the one being written, never
/// the other (see [`latest_progress`]).
pub const PROGRESS_SLOTS: usize = 2;
/// Longest saved state accepted (a forged file may be anything).
pub const STATE_MAX: usize = 1024;

/// How often to checkpoint: whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoints {
    /// After this many stream bytes applied since the last checkpoint.
    pub bytes: u64,
    /// After this long since the last checkpoint.
    pub interval: Duration,
}

impl Default for Checkpoints {
    /// Every 256 MiB or 30 s (measured under 5% of receive time: see the README).
    fn default() -> Self {
        Checkpoints { bytes: 256 << 20, interval: Duration::from_secs(30) }
    }
}

/// The clock is read for a periodic checkpoint once this many commands, or
/// [`CLOCK_BYTES`] of stream, were applied since it was last read, not after every
/// command (once per command it was 1.4% of a receive of small files): a checkpoint
/// is late by at most the time that many commands take to apply.
const CLOCK_COMMANDS: u64 = 64;
/// See [`CLOCK_COMMANDS`].
const CLOCK_BYTES: u64 = 1 << 20;

/// What may have been applied after a saved position. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Nothing.
    Clean,
    /// The command at the position, perhaps partly.
    Pending,
    /// Anything (see [`Progress`]).
    Unknown,
}

impl Tail {
    fn word(self) -> &'static str {
        match self {
            Tail::Clean => "clean",
            Tail::Pending => "pending",
            Tail::Unknown => "unknown",
        }
    }

    fn parse(word: &str) -> Option<Tail> {
        [Tail::Clean, Tail::Pending, Tail::Unknown].into_iter().find(|tail| tail.word() == word)
    }
}

/// The resume state of a partial subvolume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeState {
    /// The stream it is receiving.
    pub identity: Identity,
    /// How far it is applied, durably.
    pub position: Position,
    /// What may be applied beyond.
    pub tail: Tail,
}

impl ResumeState {
    /// The text saved: one `key value` line per field, in a fixed order.
    pub fn to_text(&self) -> String {
        let Identity { uuid, ctransid, parent, version } = self.identity;
        let parent = parent.map_or_else(|| "-".to_owned(), |(uuid, ctransid)| format!("{uuid} {ctransid}"));
        let Position { commands, offset, digest } = self.position;
        format!(
            "{STATE_MAGIC}\nuuid {uuid}\nctransid {ctransid}\nparent {parent}\nversion {version}\n\
             commands {commands}\noffset {offset}\ndigest {:016x}\ntail {}\n",
            digest.0,
            self.tail.word()
        )
    }

    /// Parses [`ResumeState::to_text`]'s text exactly; anything else is `None`.
    pub fn parse(text: &[u8]) -> Option<ResumeState> {
        if text.len() > STATE_MAX {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?.strip_suffix('\n')?;
        let mut lines = text.split('\n');
        if lines.next()? != STATE_MAGIC {
            return None;
        }
        let mut field = |key: &str| lines.next()?.strip_prefix(key)?.strip_prefix(' ');
        let uuid = parse_uuid(field("uuid")?)?;
        let ctransid = parse_u64(field("ctransid")?)?;
        let parent = match field("parent")? {
            "-" => None,
            both => {
                let (uuid, ctransid) = both.split_once(' ')?;
                Some((parse_uuid(uuid)?, parse_u64(ctransid)?))
            }
        };
        let version = u32::try_from(parse_u64(field("version")?)?).ok()?;
        let commands = parse_u64(field("commands")?)?;
        let offset = parse_u64(field("offset")?)?;
        let digest = parse_digest(field("digest")?)?;
        let tail = Tail::parse(field("tail")?)?;
        if lines.next().is_some() || commands == 0 {
            return None;
        }
        let identity = Identity { uuid, ctransid, parent, version };
        Some(ResumeState { identity, position: Position { commands, offset, digest }, tail })
    }
}

/// How long what is written without syncing stays as written: one boot and one mount
/// of the destination's filesystem (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// This boot's id (`/proc/sys/kernel/random/boot_id`).
    pub boot: String,
    /// The destination's mount, by the id the kernel never gives another mount in the
    /// same boot (`STATX_MNT_ID_UNIQUE`, Linux 6.8); `None` on a kernel without it,
    /// where a remount cannot be told from the same mount.
    pub mount: Option<u64>,
}

impl Epoch {
    /// The epoch of a destination mounted as `mount`, if the kernel tells the boot's id.
    pub fn current(mount: Option<u64>) -> Option<Epoch> {
        boot_id().map(|boot| Epoch { boot, mount })
    }
}

/// The position of the namespace command about to be applied, noted without syncing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The epoch it was written in.
    pub epoch: Epoch,
    /// Where.
    pub position: Position,
    /// Where the encoded extents not known to decode begin (at most `position`):
    /// those whose verdict was still out (the extent verifier's). `None` in a record
    /// of the first format.
    pub checked: Option<Position>,
}

impl Progress {
    /// The fixed-length record written, ending with a check of the rest.
    pub fn to_record(&self) -> [u8; PROGRESS_LEN] {
        let mount = self.epoch.mount.map_or_else(|| "-".to_owned(), |mount| format!("{mount:016x}"));
        let mut text =
            format!("{PROGRESS_MAGIC} {} {mount} {}", self.epoch.boot, position_words(&self.position));
        if let Some(checked) = &self.checked {
            text = format!("{text} {}", position_words(checked));
        }
        sealed(&text)
    }

    /// Parses a record, of this format or an earlier one; anything else (including a
    /// record cut short) is `None`.
    pub fn parse(record: &[u8]) -> Option<Progress> {
        let text = std::str::from_utf8(record.strip_suffix(b"\n")?).ok()?.trim_end_matches(' ');
        let (text, check) = text.rsplit_once(' ')?;
        if check != format!("{:016x}", Digest::EMPTY.hash(text.as_bytes()).0) {
            return None;
        }
        let mut words = text.split(' ');
        let magic = words.next()?;
        let format =
            PROGRESS_FORMATS.iter().find(|format| format.magic == magic && format.len == record.len())?;
        let boot = words.next().filter(|boot| is_boot_id(boot))?.to_owned();
        let mount = match format.names_mount {
            true => parse_mount(words.next()?)?,
            false => None,
        };
        let position = parse_position(&mut words)?;
        let checked = if format.has_checked { Some(parse_position(&mut words)?) } else { None };
        let in_order = checked.is_none_or(|checked| {
            checked.commands < position.commands && checked.offset < position.offset || checked == position
        });
        if words.next().is_some() || position.commands == 0 || !in_order {
            return None;
        }
        Some(Progress { epoch: Epoch { boot, mount }, position, checked })
    }
}

/// `text` followed by its check, padded with spaces to a record of `N` bytes ending in a
/// newline (cut short if it is too long, which [`Progress::parse`] then refuses).
fn sealed<const N: usize>(text: &str) -> [u8; N] {
    let text = format!("{text} {:016x}", Digest::EMPTY.hash(text.as_bytes()).0);
    let mut record = [b' '; N];
    let len = text.len().min(N - 1);
    record[..len].copy_from_slice(&text.as_bytes()[..len]);
    record[N - 1] = b'\n';
    record
}

/// A record's mount word: 16 hex digits, or `-` for none.
fn parse_mount(word: &str) -> Option<Option<u64>> {
    match word {
        "-" => Some(None),
        _ => parse_hex64(word).map(Some),
    }
}

/// A position as a record's words: commands, offset, digest.
fn position_words(position: &Position) -> String {
    let Position { commands, offset, digest } = position;
    format!("{commands} {offset} {:016x}", digest.0)
}

/// The position in the next three words of a record.
fn parse_position<'a>(words: &mut impl Iterator<Item = &'a str>) -> Option<Position> {
    let commands = parse_u64(words.next()?)?;
    let offset = parse_u64(words.next()?)?;
    let digest = parse_digest(words.next()?)?;
    Some(Position { commands, offset, digest })
}

/// A digest as written: exactly 16 hex digits.
fn parse_digest(text: &str) -> Option<Digest> {
    parse_hex64(text).map(Digest)
}

/// Exactly 16 hex digits.
fn parse_hex64(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// The latest intact record among [`PROGRESS_SLOTS`] records written in turn (of
/// any format).
pub fn latest_progress(records: &[u8]) -> Option<Progress> {
    let len =
        PROGRESS_FORMATS.iter().map(|format| format.len).find(|len| records.len() == len * PROGRESS_SLOTS)?;
    records.chunks(len).filter_map(Progress::parse).max_by_key(|progress| progress.position.commands)
}

/// What a target saved about a partial subvolume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    /// DEST/NAME, for messages.
    pub place: String,
    /// The command that discards it, for messages.
    pub abort: String,
    /// The durable state.
    pub state: ResumeState,
    /// The last progress record, if any.
    pub progress: Option<Progress>,
}

/// Where a re-run continues, or why it cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Skip (and verify) up to here.
    pub position: Position,
    /// Apply the replay rules from there (see the module docs).
    pub replay: bool,
}

impl Saved {
    /// The token for `rawsend send --resume`: where a continuation must start. That
    /// is where the receive continues ([`Saved::plan`]), or before it, where the
    /// encoded extents whose verdict a kill cut off begin: the continuation brings
    /// them again, to be checked as they are skipped.
    pub fn token(&self, epoch: Option<&Epoch>) -> Result<Token, String> {
        let identity = self.state.identity;
        let plan = self.plan(&identity, epoch)?;
        Ok(Token { identity, position: self.checked_before(&plan) })
    }

    /// Where the encoded extents before `plan`'s position not known to decode begin.
    /// A checkpoint waits for every verdict; progress (what a plan from a [`Tail::Unknown`]
    /// state continues from) says where they were still out (a record of the first format
    /// does not: from the checkpoint, then).
    pub(crate) fn checked_before(&self, plan: &Plan) -> Position {
        let state = self.state.position;
        match (&self.progress, self.state.tail) {
            (Some(progress), Tail::Unknown) => {
                progress.checked.filter(|checked| checked.commands >= state.commands).unwrap_or(state)
            }
            _ => plan.position,
        }
    }

    /// Where to continue, given the current epoch; `Err` says why not.
    pub fn plan(&self, identity: &Identity, epoch: Option<&Epoch>) -> Result<Plan, String> {
        let saved = self.state.identity;
        if saved != *identity {
            return Err(format!(
                "its resume state is for another stream ({saved}); this stream sends {identity}"
            ));
        }
        let state = self.state;
        match state.tail {
            Tail::Clean => Ok(Plan { position: state.position, replay: false }),
            Tail::Pending => Ok(Plan { position: state.position, replay: true }),
            Tail::Unknown => match &self.progress {
                Some(progress)
                    if epoch == Some(&progress.epoch)
                        && progress.position.commands >= state.position.commands =>
                {
                    Ok(Plan { position: progress.position, replay: true })
                }
                Some(_) => Err(format!(
                    "the system restarted or the filesystem was mounted again after its last \
                     checkpoint at command {} (or its progress since cannot be matched to this boot \
                     and mount), and what it applied after that cannot be known exactly",
                    state.position.commands
                )),
                // Erased when the receive went on past something it cannot resume from.
                None => Err(format!(
                    "the receive that left it failed in a way that cannot be resumed (a corrupt encoded \
                     extent, or an error it went on after) or stopped before noting its progress, so what \
                     it applied after its last checkpoint at command {} cannot be known exactly",
                    state.position.commands
                )),
            },
        }
    }
}

/// The engine's resume bookkeeping for the subvolume being received.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// The stream being received.
    pub identity: Identity,
    /// How far it is applied (or skipped).
    pub position: Position,
    /// While skipping a saved prefix: where it ends, and the saved place (for errors).
    pub skip_to: Option<(Position, Saved)>,
    /// While the replay rules apply: the command count where they started.
    pub replay_from: Option<u64>,
    /// Whether state is kept: resume is on and nothing made the subvolume unresumable.
    pub keeping: bool,
    /// A continuation's start: the position its first command (SUBVOL or SNAPSHOT)
    /// stands for, the commands between having been skipped by the sender.
    jump: Option<Position>,
    /// Stream offset and time of the last checkpoint; `None` before the first.
    last: Option<(u64, Instant)>,
    /// Whether a resume state of the subvolume is on disk: one this receive saved, or
    /// the one it continues.
    pub saved: bool,
    /// Command count and stream offset when the clock was last read (see [`CLOCK_COMMANDS`]).
    clocked: (u64, u64),
}

impl Tracker {
    /// Starts a subvolume's stream whose SUBVOL or SNAPSHOT is `header_len` bytes in.
    pub fn new(identity: Identity, header_len: u64, keeping: bool) -> Tracker {
        let position = Position::start(header_len);
        let clocked = (position.commands, position.offset);
        Tracker {
            identity,
            position,
            skip_to: None,
            replay_from: None,
            keeping,
            jump: None,
            last: None,
            saved: false,
            clocked,
        }
    }

    /// Continues from `saved` as `plan` says: by skipping the prefix the stream
    /// repeats, or, for a continuation starting at `continuation`, what it repeats
    /// of it (nothing when it starts at the plan's position).
    pub fn resume(&mut self, saved: Saved, plan: Plan, continuation: Option<Position>) {
        self.replay_from = plan.replay.then_some(plan.position.commands);
        self.jump = continuation;
        self.skip_to = Some((plan.position, saved));
        self.saved = true;
    }

    /// Moves past command `raw` (to the continuation's start after its first command).
    pub fn step(&mut self, raw: &[u8]) {
        self.position = self.jump.take().unwrap_or_else(|| self.position.after(raw));
    }

    /// Whether the saved prefix is being skipped.
    pub fn skipping(&self) -> bool {
        self.skip_to.is_some()
    }

    /// Whether a periodic checkpoint is due (the clock is read only now and then: see
    /// [`CLOCK_COMMANDS`]).
    pub fn due(&mut self, every: &Checkpoints) -> bool {
        let Some((offset, at)) = self.last else { return true };
        if self.position.offset - offset >= every.bytes {
            return true;
        }
        let (commands, clocked_offset) = self.clocked;
        let (since_commands, since_bytes) = (
            self.position.commands.saturating_sub(commands),
            self.position.offset.saturating_sub(clocked_offset),
        );
        if since_commands < CLOCK_COMMANDS && since_bytes < CLOCK_BYTES {
            return false;
        }
        self.clocked = (self.position.commands, self.position.offset);
        at.elapsed() >= every.interval
    }

    /// Notes that a checkpoint was made at the current position.
    pub fn checkpointed(&mut self) {
        self.saved = true;
        self.last = Some((self.position.offset, Instant::now()));
        self.clocked = (self.position.commands, self.position.offset);
    }
}

/// This boot's id, if the kernel tells it.
pub fn boot_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = text.trim_end();
    is_boot_id(id).then(|| id.to_owned())
}

/// Whether a command changes the namespace (see the module docs).
pub fn is_namespace(command: &Command<'_>) -> bool {
    crate::lookahead::is_create(command)
        || matches!(
            command,
            Command::Rename { .. } | Command::Link { .. } | Command::Unlink { .. } | Command::Rmdir { .. }
        )
}

fn is_boot_id(text: &str) -> bool {
    text.len() == 36 && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

/// `text` as a UUID, only in the canonical form this module writes (lowercase).
fn parse_uuid(text: &str) -> Option<Uuid> {
    let uuid: Uuid = text.parse().ok()?;
    (uuid.to_string() == text).then_some(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(tail: Tail) -> ResumeState {
        ResumeState {
            identity: Identity {
                uuid: Uuid([0xab; 16]),
                ctransid: 42,
                parent: Some((Uuid([3; 16]), 7)),
                version: 2,
            },
            position: Position { commands: 1000, offset: 123_456, digest: Digest(0x0123_4567_89ab_cdef) },
            tail,
        }
    }

    const BOOT: &str = "0f3c1a4e-9d2b-4c8e-a1b2-c3d4e5f60718";

    /// The epoch of mount `mount` in boot [`BOOT`].
    fn epoch(mount: Option<u64>) -> Epoch {
        Epoch { boot: BOOT.to_owned(), mount }
    }

    /// A tracker whose last checkpoint was `ago` before now, at the start of the stream.
    fn checkpointed(ago: Duration) -> Tracker {
        let mut tracker = Tracker::new(state(Tail::Clean).identity, 17, true);
        tracker.checkpointed();
        tracker.last = Some((tracker.position.offset, Instant::now().checked_sub(ago).expect("uptime")));
        tracker
    }

    #[test]
    fn the_checkpoint_clock_is_read_every_64_commands() {
        let every = Checkpoints::default();
        let mut late = checkpointed(every.interval + Duration::from_secs(1));
        for command in 1..CLOCK_COMMANDS {
            late.step(&[0; 10]);
            assert!(!late.due(&every), "clock read at command {command}");
        }
        late.step(&[0; 10]);
        assert!(late.due(&every), "the 30 s interval passed {CLOCK_COMMANDS} commands ago");
        let mut on_time = checkpointed(Duration::ZERO);
        for _ in 0..CLOCK_COMMANDS * 3 {
            on_time.step(&[0; 10]);
            assert!(!on_time.due(&every));
        }
    }

    #[test]
    fn the_checkpoint_clock_is_read_after_a_mebibyte_of_stream() {
        let every = Checkpoints::default();
        let mut late = checkpointed(every.interval + Duration::from_secs(1));
        late.step(&vec![0; CLOCK_BYTES as usize - 1]);
        assert!(!late.due(&every));
        late.step(&[0]);
        assert!(late.due(&every), "one command after a mebibyte");
    }

    #[test]
    fn states_parse_back_exactly() {
        for tail in [Tail::Clean, Tail::Pending, Tail::Unknown] {
            let mut saved = state(tail);
            assert_eq!(ResumeState::parse(saved.to_text().as_bytes()), Some(saved));
            saved.identity.parent = None;
            assert_eq!(ResumeState::parse(saved.to_text().as_bytes()), Some(saved));
        }
    }

    #[test]
    fn forged_or_damaged_states_are_refused() {
        let good = state(Tail::Clean).to_text();
        let variants = [
            good.replace("commands 1000", "commands 01000"),
            good.replace("commands 1000", "commands +1000"),
            good.replace("commands 1000", "commands 0"),
            good.replace("commands 1000", "commands 99999999999999999999999"),
            good.replace("tail clean", "tail maybe"),
            good.replace("digest 0123456789abcdef", "digest 123456789abcdef"),
            good.replace("version 2", "version 4294967296"),
            good.replace("uuid abababab", "uuid ABABABAB"),
            good.replace("ctransid 42\n", ""),
            good.replace("ctransid 42\nparent", "parent"),
            good.replace("rawsend-resume 1", "rawsend-resume 2"),
            good.replace(' ', "  "),
            good.trim_end().to_owned(),
            format!("{good}extra 1\n"),
            format!("{good}{}", " ".repeat(STATE_MAX)),
            String::new(),
        ];
        for bad in variants {
            assert_eq!(ResumeState::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(ResumeState::parse(b"\xff\xfe"), None);
    }

    #[test]
    fn progress_records_parse_back_and_refuse_damage() {
        let position = state(Tail::Clean).position;
        let checked = Some(Position { commands: 990, offset: 1000, digest: Digest(5) });
        for mount in [None, Some(0), Some(0x8000_0000_0000_0123)] {
            let progress = Progress { epoch: epoch(mount), position, checked };
            assert_eq!(Progress::parse(&progress.to_record()), Some(progress));
        }
        let progress = Progress { epoch: epoch(Some(7)), position, checked };
        let record = progress.to_record();
        assert_eq!(Progress::parse(&record[..PROGRESS_LEN - 1]), None);
        let mut torn = record;
        torn[40] = b'x';
        assert_eq!(Progress::parse(&torn), None);
        assert_eq!(Progress::parse(&[b' '; PROGRESS_LEN]), None);
        // A digit changed (a record torn between two writes) fails the check.
        let later =
            Progress { position: Position { commands: 1001, ..progress.position }, ..progress.clone() };
        let (old, new) = (record, later.to_record());
        let differ = (0..PROGRESS_LEN).find(|&i| old[i] != new[i]).expect("records differ");
        let mut mixed = old;
        mixed[differ] = new[differ];
        assert_eq!(Progress::parse(&mixed), None);
        // Of two slots the later intact one wins; a torn slot leaves the other.
        assert_eq!(latest_progress(&[new, old].concat()), Some(later.clone()));
        assert_eq!(latest_progress(&[old, new].concat()), Some(later));
        assert_eq!(latest_progress(&[old, mixed].concat()), Some(progress));
        assert_eq!(latest_progress(&[mixed, mixed].concat()), None);
        assert_eq!(latest_progress(&old), None, "one slot is not a progress file");
    }

    #[test]
    fn progress_records_of_the_first_format_still_parse() {
        let record =
            sealed::<PROGRESS_V1_LEN>(&format!("{PROGRESS_V1_MAGIC} {BOOT} 1000 123456 0123456789abcdef"));
        let position = Position { commands: 1000, offset: 123_456, digest: Digest(0x0123_4567_89ab_cdef) };
        let want = Progress { epoch: epoch(None), position, checked: None };
        assert_eq!(Progress::parse(&record), Some(want.clone()));
        assert_eq!(latest_progress(&record.repeat(PROGRESS_SLOTS)), Some(want));
        // Each format only at its own length.
        let mut padded = record.to_vec();
        padded.splice(PROGRESS_V1_LEN - 1..PROGRESS_V1_LEN - 1, [b' '; PROGRESS_LEN - PROGRESS_V1_LEN]);
        assert_eq!(Progress::parse(&padded), None);
    }

    #[test]
    fn a_checked_position_past_the_noted_one_is_refused() {
        let position = state(Tail::Clean).position;
        let checked = Some(Position { commands: position.commands + 1, ..position });
        let record = Progress { epoch: epoch(Some(7)), position, checked }.to_record();
        assert_eq!(Progress::parse(&record), None);
    }

    #[test]
    fn progress_records_of_the_second_format_name_no_mount() {
        let record = sealed::<PROGRESS_LEN>(&format!(
            "{PROGRESS_V2_MAGIC} {BOOT} 1000 123456 0123456789abcdef 990 1000 0000000000000005"
        ));
        let parsed = Progress::parse(&record).expect("a record of the second format");
        assert_eq!(parsed.epoch, epoch(None));
        assert_eq!(parsed.checked, Some(Position { commands: 990, offset: 1000, digest: Digest(5) }));
        // A mount word that is not 16 hex digits or `-` is damage.
        for mount in ["7", "+000000000000007", "000000000000000g", "--"] {
            let record = sealed::<PROGRESS_LEN>(&format!(
                "{PROGRESS_MAGIC} {BOOT} {mount} 1000 123456 0123456789abcdef 990 1000 0000000000000005"
            ));
            assert_eq!(Progress::parse(&record), None, "{mount}");
        }
    }

    #[test]
    fn plans_follow_the_tail_and_the_epoch() {
        let identity = state(Tail::Clean).identity;
        let later = Position { commands: 1500, offset: 200_000, digest: Digest(9) };
        let saved = |tail, progress: Option<Position>| Saved {
            place: "dest/x".into(),
            abort: "rawsend receive --abort dest/x".into(),
            state: state(tail),
            progress: progress.map(|position| Progress { epoch: epoch(Some(7)), position, checked: None }),
        };
        let at = state(Tail::Clean).position;
        assert_eq!(saved(Tail::Clean, None).plan(&identity, None), Ok(Plan { position: at, replay: false }));
        assert_eq!(saved(Tail::Pending, None).plan(&identity, None), Ok(Plan { position: at, replay: true }));
        let crashed = saved(Tail::Unknown, Some(later));
        let here = epoch(Some(7));
        assert_eq!(crashed.plan(&identity, Some(&here)), Ok(Plan { position: later, replay: true }));
        let rebooted = Epoch { boot: "00000000-0000-0000-0000-000000000000".into(), ..here.clone() };
        for elsewhere in [rebooted, epoch(Some(8)), epoch(None)] {
            let err = crashed.plan(&identity, Some(&elsewhere)).expect_err("another epoch");
            assert!(err.contains("restarted or the filesystem was mounted again"), "{err}");
        }
        // On a kernel without mount ids, progress of the same boot counts.
        let unnamed = crashed.progress.clone().map(|progress| Progress { epoch: epoch(None), ..progress });
        let old_kernel = Saved { progress: unnamed, ..crashed.clone() };
        assert_eq!(
            old_kernel.plan(&identity, Some(&epoch(None))),
            Ok(Plan { position: later, replay: true })
        );
        assert!(crashed.plan(&identity, None).is_err());
        assert!(saved(Tail::Unknown, None).plan(&identity, Some(&here)).is_err());
        let stale = Position { commands: 10, ..later };
        assert!(saved(Tail::Unknown, Some(stale)).plan(&identity, Some(&here)).is_err());
        for other in [
            Identity { ctransid: 43, ..identity },
            Identity { uuid: Uuid([1; 16]), ..identity },
            Identity { parent: None, ..identity },
            Identity { version: 1, ..identity },
        ] {
            let err = saved(Tail::Clean, None).plan(&other, Some(&here)).expect_err("another stream");
            assert!(err.contains("another stream"), "{err}");
        }
    }

    #[test]
    fn digests_follow_headers_in_order() {
        let (a, b) = ([1u8; 12], [2u8; 12]);
        let ab = Digest::EMPTY.chain(&a).chain(&b);
        assert_ne!(ab, Digest::EMPTY.chain(&b).chain(&a));
        assert_eq!(ab, Digest::EMPTY.chain(&a[..10]).chain(&b[..10]), "only the header counts");
        let position = Position::start(17).after(&a).after(&b);
        assert_eq!((position.commands, position.offset, position.digest), (2, 41, ab));
    }

    #[test]
    fn this_boot_has_an_id() {
        assert!(boot_id().is_some_and(|id| is_boot_id(&id)));
    }
}
