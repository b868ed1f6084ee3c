//! The [`Target`] trait: where a stream's commands land.
//!
//! The engine ([`crate::Receiver`]) owns policy: whether an extent is written
//! encoded or decompressed, whether a clone is reflinked or copied, when a
//! subvolume counts as complete. A target only carries out primitive
//! operations and says, through [`Capabilities`] and [`Outcome`], what it
//! cannot do, so that the engine can fall back. Paths are validated
//! [`StreamPath`]s relative to the root of the subvolume being received.

pub use rawsend_btrfs::Verity;
use rawsend_stream::{Rdev, StreamPath, SymlinkTarget, Timespec, Uuid, XattrName};

use crate::error::Result;
use crate::resume::{Progress, ResumeState, Saved};

/// What a target can do natively.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// It can store compressed extents as they are (`BTRFS_IOC_ENCODED_WRITE`).
    pub encoded_write: bool,
    /// It can share extents between files (reflink).
    pub clone: bool,
}

/// Whether the target did something itself or the engine must fall back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done natively.
    Done,
    /// Not possible here; the engine falls back (decompress and write, or copy).
    Fallback,
}

/// A new subvolume (SUBVOL) or snapshot (SNAPSHOT) to start.
#[derive(Clone, Copy, Debug)]
pub struct SubvolStart<'a> {
    /// Its name, one component, in the destination directory.
    pub name: &'a [u8],
    /// The sender's UUID, to record as received UUID when complete.
    pub uuid: Uuid,
    /// The sender's ctransid, to record as send transid.
    pub ctransid: u64,
    /// For a snapshot: the parent's UUID and ctransid.
    pub parent: Option<(Uuid, u64)>,
}

/// The kind of node a create command makes.
#[derive(Clone, Copy, Debug)]
pub enum NodeKind<'a> {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Character or block device: full `st_mode` and device number.
    Device {
        /// `st_mode` with type bits.
        mode: u64,
        /// Device number.
        rdev: Rdev,
    },
    /// FIFO.
    Fifo,
    /// Unix socket node.
    Socket,
    /// Symbolic link with this content.
    Symlink(SymlinkTarget<'a>),
}

/// An encoded extent to write, already checked by the engine.
#[derive(Clone, Copy, Debug)]
pub struct EncodedExtent<'a> {
    /// File offset.
    pub offset: u64,
    /// Bytes of file covered.
    pub len: u64,
    /// Decoded size.
    pub unencoded_len: u64,
    /// Start of the file range inside the decoded data.
    pub unencoded_offset: u64,
    /// `BTRFS_ENCODED_IO_COMPRESSION_*`.
    pub compression: u32,
    /// The encoded bytes.
    pub data: &'a [u8],
}

impl<'a> From<&rawsend_stream::EncodedWrite<'a>> for EncodedExtent<'a> {
    /// The extent an ENCODED_WRITE carries (absent compression reads as none).
    fn from(write: &rawsend_stream::EncodedWrite<'a>) -> Self {
        EncodedExtent {
            offset: write.offset,
            len: write.unencoded_file_len,
            unencoded_len: write.unencoded_len,
            unencoded_offset: write.unencoded_offset,
            compression: write.compression.unwrap_or(0),
            data: write.data,
        }
    }
}

/// Where a CLONE's bytes come from.
#[derive(Clone, Copy, Debug)]
pub struct CloneSource<'a> {
    /// The source subvolume (may be the one being received).
    pub uuid: Uuid,
    /// Its ctransid as the sender knew it.
    pub ctransid: u64,
    /// The source file, relative to that subvolume.
    pub path: StreamPath<'a>,
    /// Offset in the source file.
    pub offset: u64,
}

/// A complete receive found where a subvolume is to be received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sent subvolume's UUID (its received UUID).
    pub uuid: Uuid,
    /// The sent subvolume's ctransid.
    pub ctransid: u64,
    /// Where it is, for messages (DEST/NAME).
    pub place: String,
}

/// A subvolume left incomplete, described for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfinished {
    /// What and where it is, e.g. `subvolume /mnt/backups/home`.
    pub place: String,
    /// The command that removes it, to start over, where there is one.
    pub cleanup: Option<String>,
    /// DEST/NAME as one shell word, for the commands that resume or discard it
    /// (`rawsend receive --resume-token ...`, `--abort ...`), where they apply.
    pub partial: Option<String>,
    /// Whether its resume state is saved (set by the engine): running the same receive
    /// again continues it.
    pub resumable: bool,
}

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is incomplete and was not marked as received", self.place)?;
        match (&self.partial, &self.cleanup) {
            (Some(partial), _) if self.resumable => write!(
                f,
                " (its resume state is saved: run the same receive again to continue where it stopped; \
                 if the stream cannot be read again, send only the rest with \
                 `rawsend send --resume \"$(rawsend receive --resume-token {partial})\" [-p PARENT] [-c SRC] SUBVOL`, \
                 the same arguments as the interrupted send; or discard it: `rawsend receive --abort {partial}`)"
            ),
            (_, Some(cleanup)) => write!(f, " (to start over, remove it: `{cleanup}`)"),
            _ => Ok(()),
        }
    }
}

/// A subvolume that may be a SNAPSHOT's parent or a CLONE's source.
///
/// Every target picks among them the same way: like btrfs-progs (first found
/// by received UUID, then by UUID), preferring one whose transid matches the
/// stream's but never refusing one that does not (see `fs::locate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate<T> {
    /// What identifies it (a root id, a directory).
    pub id: T,
    /// Its transid as comparable with the stream's.
    pub transid: u64,
}

/// Orders candidates as they are to be tried: those whose transid is `wanted`
/// first, each group in its original (btrfs-progs') order.
pub(crate) fn preferred<T>(mut candidates: Vec<Candidate<T>>, wanted: u64) -> Vec<Candidate<T>> {
    candidates.sort_by_key(|candidate| candidate.transid != wanted);
    candidates
}

/// Applies primitive operations for the engine. See the module docs.
pub trait Target {
    /// What the target does natively.
    fn capabilities(&self) -> Capabilities;
    /// Starts a subvolume or snapshot; later paths are relative to its root.
    fn begin_subvol(&mut self, start: &SubvolStart<'_>) -> Result<()>;
    /// Marks the current subvolume complete (received UUID, read-only). A failure before
    /// the mark leaves it current, for [`Target::abandon_subvol`] to report.
    fn finish_subvol(&mut self) -> Result<()>;
    /// Starts writing what the current subvolume applied to disk in the background,
    /// while the engine waits for something else (the extent verifier) before
    /// [`Target::finish_subvol`], which waits for it and still makes everything durable
    /// itself. Only a head start: a target may do nothing.
    fn write_back(&mut self) {}
    /// Leaves the current subvolume unfinished after a failure; returns where it is, for the user.
    fn abandon_subvol(&mut self) -> Option<Unfinished>;
    /// What `name` is a complete receive of, if it is one (marked received and, on
    /// btrfs, read-only).
    fn received_as(&mut self, name: &[u8]) -> Result<Option<Received>>;
    /// The resume state of `name`, if it is a partial receive that has one (see
    /// [`crate::resume`]); untrusted: the engine verifies what it skips.
    fn saved_resume(&mut self, name: &[u8]) -> Result<Option<Saved>>;
    /// Continues the partial subvolume `start.name` instead of making a new one.
    fn resume_subvol(&mut self, start: &SubvolStart<'_>) -> Result<()>;
    /// Makes everything applied durable, then saves `state` for the current subvolume
    /// atomically (kept outside it). [`Target::finish_subvol`] removes it.
    fn checkpoint(&mut self, state: &ResumeState) -> Result<()>;
    /// The destination's mount, by the id the kernel never gives another mount in the
    /// same boot (`STATX_MNT_ID_UNIQUE`); `None` if the kernel has none. Progress noted
    /// under another mount is not trusted (see [`crate::resume`]).
    fn mount_id(&self) -> Option<u64>;
    /// Notes `progress` for the current subvolume without syncing; `None` erases it.
    fn note_progress(&mut self, progress: Option<&Progress>) -> Result<()>;
    /// Whether the current subvolume holds no state in memory only that resuming
    /// would lose (flags deferred to the end, owners that could not be set...).
    fn resumable(&self) -> bool;
    /// Whether a node exists at `path` (not following a final symlink).
    fn exists(&mut self, path: StreamPath<'_>) -> Result<bool>;
    /// Creates a node.
    fn create(&mut self, path: StreamPath<'_>, kind: NodeKind<'_>) -> Result<()>;
    /// Renames a node (replacing a destination the way `rename(2)` does).
    fn rename(&mut self, from: StreamPath<'_>, to: StreamPath<'_>) -> Result<()>;
    /// Makes a hard link `path` to the existing `target`.
    fn link(&mut self, path: StreamPath<'_>, target: StreamPath<'_>) -> Result<()>;
    /// Removes a non-directory.
    fn unlink(&mut self, path: StreamPath<'_>) -> Result<()>;
    /// Removes an empty directory.
    fn rmdir(&mut self, path: StreamPath<'_>) -> Result<()>;
    /// Sets an extended attribute, not following a final symlink.
    fn set_xattr(&mut self, path: StreamPath<'_>, name: XattrName<'_>, value: &[u8]) -> Result<()>;
    /// Removes an extended attribute, not following a final symlink.
    fn remove_xattr(&mut self, path: StreamPath<'_>, name: XattrName<'_>) -> Result<()>;
    /// Writes plain bytes.
    fn write(&mut self, path: StreamPath<'_>, offset: u64, data: &[u8]) -> Result<()>;
    /// Writes an encoded extent as it is, or asks for the fallback.
    fn encoded_write(&mut self, path: StreamPath<'_>, extent: &EncodedExtent<'_>) -> Result<Outcome>;
    /// Reflinks `len` bytes from `source` to `path` at `offset`, or asks for the fallback.
    fn clone_range(
        &mut self,
        path: StreamPath<'_>,
        offset: u64,
        len: u64,
        source: &CloneSource<'_>,
    ) -> Result<Outcome>;
    /// Reads from a clone source (for the copy fallback); returns bytes read, 0 at EOF.
    fn read_clone_source(&mut self, source: &CloneSource<'_>, buf: &mut [u8]) -> Result<usize>;
    /// Sets a file's size.
    fn truncate(&mut self, path: StreamPath<'_>, size: u64) -> Result<()>;
    /// Sets permission bits (never on symlinks).
    fn chmod(&mut self, path: StreamPath<'_>, mode: u32) -> Result<()>;
    /// Sets owner and group, not following a final symlink.
    fn chown(&mut self, path: StreamPath<'_>, uid: u32, gid: u32) -> Result<()>;
    /// Sets access and modification times, not following a final symlink.
    fn utimes(&mut self, path: StreamPath<'_>, atime: Timespec, mtime: Timespec) -> Result<()>;
    /// `fallocate(2)` with an allowed mode.
    fn fallocate(&mut self, path: StreamPath<'_>, mode: u32, offset: u64, len: u64) -> Result<()>;
    /// Applies inode flags (btrfs `BTRFS_INODE_*` bits).
    fn fileattr(&mut self, path: StreamPath<'_>, flags: u64) -> Result<()>;
    /// Enables fs-verity on a regular file (parameters already checked by the engine).
    fn enable_verity(&mut self, path: StreamPath<'_>, verity: &Verity<'_>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_transids_first_then_btrfs_progs_order() {
        let candidates = |ids: &[(u8, u64)]| -> Vec<Candidate<u8>> {
            ids.iter().map(|&(id, transid)| Candidate { id, transid }).collect()
        };
        let order = |found: Vec<Candidate<u8>>| found.iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(order(preferred(candidates(&[(1, 5), (2, 7), (3, 7), (4, 9)]), 7)), [2, 3, 1, 4]);
        assert_eq!(order(preferred(candidates(&[(1, 5), (2, 6)]), 7)), [1, 2]);
        assert!(preferred(candidates(&[]), 7).is_empty());
    }
}
