//! Where the filesystem target keeps the resume state of a partial receive
//! (see [`crate::resume`]): never inside the subvolume or directory (it would
//! become part of the received tree) but beside it, on the same filesystem,
//! in `DEST/.rawsend-received/resume/NAME` (the durable state, written
//! atomically by `received::store`) and `DEST/.rawsend-received/progress/NAME`
//! (the progress record, rewritten in place and never synced).
//!
//! Like the dir target's records, both files start with the inode number of
//! the directory they describe; on btrfs, where every subvolume root has the
//! same inode number, a second line names the subvolume's own UUID. A file
//! left by a deleted partial receive never vouches for a new one of that name.

use std::os::fd::{BorrowedFd, OwnedFd};

use rawsend_btrfs as btrfs;
use rustix::fs::{FileType, Mode, OFlags};

use super::Kind;
use super::received::{self, Store};
use crate::error::{ErrorKind, Result};
use crate::resume::{PROGRESS_LEN, PROGRESS_SLOTS, Progress, ResumeState, latest_progress};

/// The line binding a file to partial subvolume `root` beyond its inode number.
fn binding(kind: Kind, root: BorrowedFd<'_>) -> Result<String> {
    Ok(match kind {
        Kind::Btrfs => format!("subvolume {}\n", btrfs::subvolume_info(root)?.root.uuid),
        Kind::Dir => String::new(),
    })
}

/// What `store` says of partial `root` (named `name`), after its binding line.
fn load(
    dest: BorrowedFd<'_>,
    kind: Kind,
    store: Store,
    name: &[u8],
    root: BorrowedFd<'_>,
) -> Result<Option<Vec<u8>>> {
    let Some(content) = received::load(dest, store, name, root)? else { return Ok(None) };
    let binding = binding(kind, root)?;
    Ok(content.strip_prefix(binding.as_bytes()).map(<[u8]>::to_vec))
}

/// The saved state of partial `root` (named `name`), if there is one that parses.
pub fn load_state(
    dest: BorrowedFd<'_>,
    kind: Kind,
    name: &[u8],
    root: BorrowedFd<'_>,
) -> Result<Option<ResumeState>> {
    Ok(load(dest, kind, Store::Resume, name, root)?.and_then(|text| ResumeState::parse(&text)))
}

/// The progress record of partial `root` (named `name`), if there is one that parses.
pub fn load_progress(
    dest: BorrowedFd<'_>,
    kind: Kind,
    name: &[u8],
    root: BorrowedFd<'_>,
) -> Result<Option<Progress>> {
    Ok(load(dest, kind, Store::Progress, name, root)?.and_then(|records| latest_progress(&records)))
}

/// Saves `state` for partial `root` (named `name`) atomically and durably.
pub fn save_state(
    dest: BorrowedFd<'_>,
    kind: Kind,
    name: &[u8],
    root: BorrowedFd<'_>,
    state: &ResumeState,
) -> Result<()> {
    let content = [binding(kind, root)?.into_bytes(), state.to_text().into_bytes()].concat();
    received::store(dest, Store::Resume, name, root, &content).map(drop)
}

/// Removes, durably, the state and progress of `name` (it completed or was discarded),
/// and the directories that held them if no other partial receive uses them.
pub fn forget(dest: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    let stores = [Store::Progress, Store::Resume];
    received::forget(dest, name, &stores)?;
    received::tidy(dest, &[Store::Progress, Store::Resume, Store::Copying]);
    Ok(())
}

/// The progress file of the partial subvolume being received, rewritten in place with
/// `pwrite`. Not through a shared mapping: on a full filesystem (always on btrfs, where
/// every rewrite of a page written back needs new space) the store into a page the kernel
/// cannot reserve space for kills the process with SIGBUS, where `pwrite` returns ENOSPC.
pub struct ProgressFile {
    file: OwnedFd,
    /// Where the first slot starts, after the lines binding the file to its subvolume.
    at: u64,
    /// The slot the next record goes to.
    next: usize,
}

impl ProgressFile {
    /// Creates the progress file of partial `root` (named `name`), every slot holding `record`.
    pub fn create(
        dest: BorrowedFd<'_>,
        kind: Kind,
        name: &[u8],
        root: BorrowedFd<'_>,
        record: &[u8; PROGRESS_LEN],
    ) -> Result<ProgressFile> {
        let binding = binding(kind, root)?;
        let content = [binding.as_bytes(), &record.repeat(PROGRESS_SLOTS)].concat();
        let about = received::store(dest, Store::Progress, name, root, &content)?;
        let dir = received::open_store(dest, Store::Progress)?
            .ok_or(ErrorKind::Invalid("the progress directory vanished"))?;
        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let file = rustix::fs::openat(&dir, name, flags, Mode::empty())
            .map_err(|e| ErrorKind::io("open the progress record", e))?;
        let stat = rustix::fs::fstat(&file).map_err(|e| ErrorKind::io("stat", e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(ErrorKind::Invalid("the progress record is not a regular file"));
        }
        Ok(ProgressFile { file, at: (about + binding.len()) as u64, next: 0 })
    }

    /// Writes `record` into the next slot (into the page cache: not synced, by design).
    pub fn write(&mut self, record: &[u8; PROGRESS_LEN]) -> Result<()> {
        let offset = self.at + (self.next * PROGRESS_LEN) as u64;
        self.next = (self.next + 1) % PROGRESS_SLOTS;
        match rustix::io::pwrite(&self.file, record, offset) {
            Ok(PROGRESS_LEN) => Ok(()),
            Ok(_) => Err(ErrorKind::Invalid("progress record written in part")),
            Err(e) => Err(ErrorKind::io("write the progress record", e)),
        }
    }

    /// Blanks every slot: no record to resume from.
    pub fn erase(&mut self) -> Result<()> {
        (0..PROGRESS_SLOTS).try_for_each(|_| self.write(&[b' '; PROGRESS_LEN]))
    }
}
