//! The filesystem target: receives into a directory on btrfs or on any other filesystem.
//!
//! On btrfs (`Kind::Btrfs`) SUBVOL and SNAPSHOT create real subvolumes,
//! encoded extents go through `BTRFS_IOC_ENCODED_WRITE`, clones are
//! reflinks, and a complete subvolume gets its received UUID and is made
//! read-only. Elsewhere (`Kind::Dir`) a subvolume is a plain directory and
//! the engine decompresses extents; clones are reflinked where the
//! filesystem can (`FICLONERANGE`, e.g. xfs) and copied otherwise.
//! Without a kind given, btrfs is used when DEST is on btrfs and the process
//! has CAP_SYS_ADMIN (without it a btrfs receive cannot finish), the dir
//! target otherwise. A SUBVOL or SNAPSHOT whose name exists in DEST is
//! refused with what is there ([`Taken`]): received already, left over from
//! an incomplete receive, or something else; unless the engine continues it
//! as a partial receive with resume state, which this target keeps beside
//! it in DEST (see `partial` and [`crate::resume`]).
//!
//! All path handling goes through [`tree::Tree`], which never follows a
//! symlink and never leaves the subvolume.

mod copy;
mod fingerprint;
mod known;
mod locate;
mod partial;
mod received;
mod setid;
mod skips;
pub mod tree;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use rawsend_btrfs as btrfs;
use rawsend_stream::{Rdev, StreamPath, Timespec, Uuid, XattrName};
use rustix::fs::{AtFlags, FallocateFlags, FileType, IFlags, Mode, OFlags, Stat, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::{ErrorKind, Refusal, Result, Taken};
use crate::resume::{Epoch, Progress, ResumeState, Saved, Tail, Token};
use crate::target::{
    Capabilities, CloneSource, EncodedExtent, NodeKind, Outcome, Received, SubvolStart, Target, Unfinished,
    Verity,
};
use partial::ProgressFile;
use received::Record;
pub use received::{RECEIVED_XATTR, RECORDS_DIR};
use setid::Unowned;
use skips::Skips;
use tree::{Tree, proc_path};

/// What kind of destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// btrfs: subvolumes, encoded writes, received UUIDs.
    Btrfs,
    /// Any filesystem: plain directories, decoded data.
    Dir,
}

/// Errnos on which an encoded write falls back to decompress + write.
const ENCODED_FALLBACK: [Errno; 5] =
    [Errno::NOSPC, Errno::NOTTY, Errno::INVAL, Errno::PERM, Errno::OPNOTSUPP];
/// Errnos on which a reflink falls back to copying.
const CLONE_FALLBACK: [Errno; 4] = [Errno::INVAL, Errno::XDEV, Errno::OPNOTSUPP, Errno::NOTTY];

/// `FS_NOCOMP_FL`, which rustix does not name.
const FS_NOCOMP_FL: IFlags = IFlags::from_bits_retain(0x0000_0400);

/// btrfs inode flags (`BTRFS_INODE_*`) and their `FS_*_FL` equivalents; IMMUTABLE and APPEND last.
const FILEATTR_MAP: [(u64, IFlags); 9] = [
    (1 << 1, IFlags::NOCOW),
    (1 << 3, FS_NOCOMP_FL),
    (1 << 5, IFlags::SYNC),
    (1 << 8, IFlags::NODUMP),
    (1 << 9, IFlags::NOATIME),
    (1 << 10, IFlags::DIRSYNC),
    (1 << 11, IFlags::COMPRESSED),
    (1 << 6, IFlags::IMMUTABLE),
    (1 << 7, IFlags::APPEND),
];

/// The xattr holding a file's capabilities, which a chown removes.
const CAPABILITY_XATTR: &str = "security.capability";

/// FILEATTR bits only btrfs has: NOCOW (`BTRFS_INODE_NODATACOW`), NOCOMPRESS, COMPRESS.
const BTRFS_ONLY_FLAGS: u64 = 1 << 1 | 1 << 3 | 1 << 11;

/// The subvolume being received.
struct Current {
    name: Vec<u8>,
    uuid: Uuid,
    ctransid: u64,
    tree: Tree,
    /// Other subvolumes used as clone sources, by UUID.
    sources: HashMap<Uuid, Tree>,
    /// IMMUTABLE/APPEND flags, applied when the subvolume is complete.
    deferred_flags: Vec<(OwnedFd, IFlags)>,
    /// Inodes whose owner could not be set, and the set-id bits they may not have.
    unowned: Unowned,
    /// Its progress record, once the engine noted one (see [`crate::resume`]).
    progress: Option<ProgressFile>,
    /// A periodic checkpoint syncing and saving, on its own thread.
    background: Option<JoinHandle<Result<()>>>,
    /// Whether a checkpoint was made (the first is made at once: see [`FsTarget::checkpoint`]).
    checkpointed_once: bool,
    /// A write-back (`syncfs`) started ahead of the checkpoint or the end that needs it,
    /// on its own thread (see [`WRITE_BACK_EVERY`]).
    writing_back: Option<JoinHandle<()>>,
    /// Bytes written through the page cache since the last write-back started.
    unsynced: u64,
    /// Set (from any thread) once a `syncfs` of the subvolume failed: what it applied may
    /// not all be on disk, while its progress record says it was applied, and a `syncfs`
    /// reports a write error only once. The subvolume can then not be resumed.
    lost: Arc<AtomicBool>,
}

impl Current {
    fn new(start: &SubvolStart<'_>, root: OwnedFd) -> Current {
        Current {
            name: start.name.to_vec(),
            uuid: start.uuid,
            ctransid: start.ctransid,
            tree: Tree::new(root),
            sources: HashMap::new(),
            deferred_flags: Vec::new(),
            unowned: Unowned::default(),
            progress: None,
            background: None,
            checkpointed_once: false,
            writing_back: None,
            unsynced: 0,
            lost: Arc::default(),
        }
    }

    /// Waits for the write-back and the checkpoint in progress, if any, and returns the
    /// checkpoint's outcome (a write-back's is only a head start: see
    /// [`Current::start_write_back`]).
    fn checkpointed(&mut self) -> Result<()> {
        self.wait_for_write_back();
        match self.background.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(done)) => done,
            Some(Err(_)) => {
                Err(ErrorKind::io("checkpoint", std::io::Error::other("the checkpoint thread panicked")))
            }
        }
    }

    /// Whether a `syncfs` of the subvolume failed (see [`Current::lost`]).
    fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Blanks the progress record, if a `syncfs` failed: a re-run must not resume from it.
    fn forget_progress_if_lost(&mut self) {
        if !self.lost() {
            return;
        }
        if let Some(file) = self.progress.as_mut() {
            let _ = file.erase();
        }
    }

    /// Waits for the write-back in progress, if any (its outcome only marks [`Current::lost`]).
    fn wait_for_write_back(&mut self) {
        if let Some(thread) = self.writing_back.take() {
            let _ = thread.join();
        }
    }

    /// Runs `work` on a thread of its own after the one in progress; [`Current::checkpointed`]
    /// waits for it.
    fn in_background(&mut self, work: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
        self.checkpointed()?;
        let thread = std::thread::Builder::new()
            .name("rawsend-checkpoint".into())
            .spawn(work)
            .map_err(|e| ErrorKind::io("checkpoint", e))?;
        self.background = Some(thread);
        Ok(())
    }

    /// Counts `len` bytes written through the page cache, and starts a write-back once
    /// [`WRITE_BACK_EVERY`] of them were written since the last one started.
    fn wrote(&mut self, len: usize) {
        self.unsynced += len as u64;
        if self.unsynced >= WRITE_BACK_EVERY {
            self.start_write_back();
        }
    }

    /// Starts a `syncfs` on a thread of its own, unless one is running. Only a head start:
    /// it syncs through an open of the subvolume's root of its own, so a write error it
    /// meets is still reported to the next checkpoint's or the end's `syncfs` (the kernel
    /// reports one once per open file); it marks the subvolume [`Current::lost`] at once.
    /// A failure to start one is left to those too.
    fn start_write_back(&mut self) {
        if self.writing_back.as_ref().is_some_and(|thread| !thread.is_finished()) {
            return;
        }
        self.wait_for_write_back();
        self.unsynced = 0;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let Ok(root) = rustix::fs::openat(self.tree.root(), c".", flags, Mode::empty()) else { return };
        let lost = Arc::clone(&self.lost);
        let thread = std::thread::Builder::new().name("rawsend-writeback".into());
        self.writing_back = thread.spawn(move || drop(vouching_sync(root.as_fd(), &lost))).ok();
    }
}

/// [`sync_filesystem`], marking `lost` if it fails (see [`Current::lost`]).
fn vouching_sync(fd: BorrowedFd<'_>, lost: &AtomicBool) -> Result<()> {
    sync_filesystem(fd).inspect_err(|_| lost.store(true, Ordering::Relaxed))
}

/// Data written through the page cache between two write-backs started in the background.
/// Without them the filesystem writes back everything at the end, in the `syncfs` before
/// the subvolume is marked received, while nothing else runs; with them the writing
/// overlaps the receive. At most one runs at a time, so on a slow disk they follow each
/// other rather than pile up. Against one every 64 MiB, this took the many-files v1
/// benchmark stream from 2.34 to 2.10 s and the large-files v1 one from 0.40 to 0.38 s
/// (btrfs-progs 3.20 and 0.47 s; `bench/README.md`, "Write-back every 8 MiB"). Smaller
/// steps gained nothing more.
const WRITE_BACK_EVERY: u64 = 8 << 20;

/// Receives into a directory. See the module docs.
pub struct FsTarget {
    dest: OwnedFd,
    dest_path: PathBuf,
    kind: Kind,
    current: Option<Current>,
    skips: Skips,
    /// Where the dir target recorded each directory it completed, for the user.
    completed: Vec<String>,
    /// Why the automatic choice fell on the dir target on btrfs.
    dir_reason: Option<&'static str>,
    /// Parents and clone sources used although their transid differs from the stream's.
    notes: Vec<String>,
}

/// A SNAPSHOT parent or CLONE source found on the destination.
enum Origin {
    /// A btrfs subvolume.
    Subvolume(locate::Located),
    /// A directory of the dir target.
    Dir(received::Found),
}

impl Origin {
    /// Finds subvolume `uuid` on a destination of `kind` (see `locate` for the rules).
    fn find(dest: BorrowedFd<'_>, kind: Kind, uuid: Uuid, ctransid: u64) -> Result<Origin> {
        Ok(match kind {
            Kind::Btrfs => Origin::Subvolume(locate::open_subvolume(dest, uuid, ctransid)?),
            Kind::Dir => Origin::Dir(received::find(dest, uuid, ctransid)?),
        })
    }

    /// Its root directory.
    fn into_root(self) -> OwnedFd {
        match self {
            Origin::Subvolume(located) => located.root,
            Origin::Dir(found) => found.dir,
        }
    }

    /// What to tell the user when its transid is not the stream's, if it is not.
    fn transid_note(&self, role: &str, expected: u64) -> Option<String> {
        let (place, found) = match self {
            Origin::Subvolume(located) => (located.path.display().to_string(), located.transid?),
            Origin::Dir(found) => (String::from_utf8_lossy(&found.name).into_owned(), found.transid?),
        };
        Some(format!(
            "{role} {place} has transid {found} where the stream names {expected}; used anyway, as btrfs \
             receive does (normal for a stream sent from a received copy, or after deduplication)"
        ))
    }
}

/// Why an unprivileged receive onto btrfs uses the dir target.
const NO_CAP_SYS_ADMIN: &str = "no CAP_SYS_ADMIN to mark btrfs subvolumes received";

/// Whether this process has CAP_SYS_ADMIN in its effective set: what a btrfs receive needs
/// (received UUIDs, encoded writes); without it only the dir target can finish a receive.
fn has_cap_sys_admin() -> bool {
    rustix::thread::capabilities(None)
        .is_ok_and(|caps| caps.effective.contains(rustix::thread::CapabilitySet::SYS_ADMIN))
}

impl FsTarget {
    /// Opens `dest`; `kind` `None` picks btrfs when `dest` is on btrfs and this process
    /// may mark subvolumes received, the dir target otherwise ([`FsTarget::dir_reason`]).
    pub fn open(dest: &Path, kind: Option<Kind>) -> Result<Self> {
        let dest_fd =
            rustix::fs::open(dest, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ErrorKind::io("open destination", e))?;
        let on_btrfs = btrfs::is_btrfs(&dest_fd)?;
        let privileged = has_cap_sys_admin();
        let dir_reason = (kind.is_none() && on_btrfs && !privileged).then_some(NO_CAP_SYS_ADMIN);
        let kind = kind.unwrap_or(if on_btrfs && privileged { Kind::Btrfs } else { Kind::Dir });
        if kind == Kind::Btrfs && !on_btrfs {
            return Err(ErrorKind::Unsupported("the destination is not on btrfs (use --target dir)"));
        }
        if kind == Kind::Btrfs && !privileged {
            return Err(ErrorKind::Unsupported(
                "--target btrfs without CAP_SYS_ADMIN (needed to mark subvolumes received; use --target dir)",
            ));
        }
        Ok(FsTarget {
            dest: dest_fd,
            dest_path: dest.to_path_buf(),
            kind,
            dir_reason,
            notes: Vec::new(),
            current: None,
            skips: Skips::new(kind == Kind::Dir),
            completed: Vec::new(),
        })
    }

    /// The kind of destination in use.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Why the automatic choice is the dir target although DEST is on btrfs, if it is.
    pub fn dir_reason(&self) -> Option<&'static str> {
        self.dir_reason
    }

    /// With `strict`, the dir target fails instead of skipping what it may not do.
    pub fn set_strict(&mut self, strict: bool) {
        self.skips = Skips::new(self.kind == Kind::Dir && !strict);
    }

    /// Parents and clone sources used although their transid differs from the stream's
    /// (btrfs-progs uses them silently; see `locate`), for the user.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// For each directory the dir target completed: where its received state is recorded.
    pub fn completed(&self) -> &[String] {
        &self.completed
    }

    /// Operations the dir target skipped, by kind, with counts (for one warning per kind).
    pub fn skipped(&self) -> &BTreeMap<&'static str, u64> {
        self.skips.counts()
    }

    fn current(&mut self) -> Result<&mut Current> {
        self.current.as_mut().ok_or(ErrorKind::NoSubvolume)
    }

    fn tree(&mut self) -> Result<&mut Tree> {
        Ok(&mut self.current()?.tree)
    }

    /// Makes the new subvolume (btrfs) or directory, or the btrfs snapshot of `parent`, and
    /// opens it; for a dir target snapshot, opens an empty directory aside for the copy of
    /// its parent instead (see [`FsTarget::copy_parent`]) and also returns the parent.
    fn make_subvol(
        &self,
        start: &SubvolStart<'_>,
        parent: Option<Origin>,
    ) -> Result<(OwnedFd, Option<received::Found>)> {
        let name = std::ffi::OsStr::from_bytes(start.name);
        let dest = self.dest.as_fd();
        let taken = |err: ErrorKind| self.if_name_taken(start, err);
        match parent {
            None if self.kind == Kind::Btrfs => {
                btrfs::create_subvolume(dest, name).map_err(|e| taken(e.into()))?;
            }
            Some(Origin::Subvolume(parent)) => {
                btrfs::snapshot(&parent.root, dest, name, false).map_err(|e| taken(e.into()))?;
            }
            _ if start.name == RECORDS_DIR.as_bytes() => {
                return Err(ErrorKind::Invalid("the name .rawsend-received is reserved with --target dir"));
            }
            Some(Origin::Dir(found)) => {
                if rustix::fs::statat(dest, start.name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                    return Err(taken(ErrorKind::io("mkdir", Errno::EXIST)));
                }
                return Ok((copy_destination(dest, start.name)?, Some(found)));
            }
            None => {
                rustix::fs::mkdirat(dest, start.name, Mode::from_raw_mode(0o700))
                    .map_err(|e| taken(ErrorKind::io("mkdir", e)))?;
                received::clear(dest, start.name)?;
            }
        }
        Ok((tree::open_dir_beneath(dest, start.name)?, None))
    }

    /// Moves the complete copy of a dir target snapshot's parent to DEST/NAME, durably.
    fn move_copy_into_place(&mut self, start: &SubvolStart<'_>) -> Result<()> {
        sync_filesystem(self.tree()?.root())?;
        let dest = self.dest.as_fd();
        received::clear(dest, start.name)?;
        let copying = received::create_store(dest, received::Store::Copying)?;
        rustix::fs::renameat_with(&copying, start.name, dest, start.name, rustix::fs::RenameFlags::NOREPLACE)
            .map_err(|e| self.if_name_taken(start, ErrorKind::io("move the copied parent into place", e)))?;
        Ok(())
    }

    /// `err`, or if it says that SUBVOL/SNAPSHOT's name exists, what is there.
    fn if_name_taken(&self, start: &SubvolStart<'_>, err: ErrorKind) -> ErrorKind {
        if err.errno() != Some(Errno::EXIST.raw_os_error()) {
            return err;
        }
        let path = self.place(start.name);
        let found = tree::open_dir_beneath(self.dest.as_fd(), start.name)
            .ok()
            .and_then(|dir| self.received_or_incomplete(start, dir.as_fd(), &path));
        ErrorKind::NameTaken { path, taken: found.unwrap_or(Taken::Foreign) }
    }

    /// Whether `dir` (DEST/`start.name`, printed as `path`) is a complete receive of the
    /// same subvolume or what an incomplete receive left; `None` for anything else.
    fn received_or_incomplete(
        &self,
        start: &SubvolStart<'_>,
        dir: BorrowedFd<'_>,
        path: &str,
    ) -> Option<Taken> {
        let (received, remove) = match self.kind {
            Kind::Btrfs => {
                if !btrfs::is_subvolume_root(dir).ok()? {
                    return None;
                }
                let info = btrfs::subvolume_info(dir).ok()?.root;
                let received = info.received_uuid;
                if received.is_none() && info.read_only {
                    return None;
                }
                (received, "btrfs subvolume delete")
            }
            Kind::Dir => (received::read(self.dest.as_fd(), start.name, dir).ok()?.map(|r| r.uuid), "rm -rf"),
        };
        match received {
            Some(uuid) => (uuid == start.uuid).then_some(Taken::Received(uuid)),
            None => {
                let state = partial::load_state(self.dest.as_fd(), self.kind, start.name, dir);
                let saved = state.ok().flatten().is_some();
                Some(Taken::Incomplete {
                    remove: format!("{remove} {}", shell_quote(path)),
                    abort: saved.then(|| abort_command(path).into()),
                })
            }
        }
    }

    /// DEST/`name`, for the user (one slash between them, however DEST was written).
    fn place(&self, name: &[u8]) -> String {
        self.dest_path.join(std::ffi::OsStr::from_bytes(name)).display().to_string()
    }

    /// The root of DEST/`name` if it is what a receive left unfinished (a writable
    /// subvolume without received UUID on btrfs, a directory without record otherwise);
    /// else what it is.
    fn partial_root(&self, name: &[u8]) -> Result<std::result::Result<OwnedFd, &'static str>> {
        if !is_subvolume_name(name) {
            return Ok(Err("a name a receive cannot make"));
        }
        let dir = match tree::open_dir_beneath(self.dest.as_fd(), name) {
            Ok(dir) => dir,
            Err(e) if e.errno() == Some(Errno::NOENT.raw_os_error()) => return Ok(Err("it does not exist")),
            Err(e) if e.errno() == Some(Errno::NOTDIR.raw_os_error()) => return Ok(Err("not a directory")),
            Err(e) => return Err(e),
        };
        let complete = match self.kind {
            Kind::Btrfs => {
                if !btrfs::is_subvolume_root(&dir)? {
                    return Ok(Err("not a subvolume"));
                }
                let info = btrfs::subvolume_info(&dir)?;
                info.root.received_uuid.is_some() || info.root.read_only
            }
            Kind::Dir => received::read(self.dest.as_fd(), name, dir.as_fd())?.is_some(),
        };
        Ok(if complete { Err("it is marked received or read-only") } else { Ok(dir) })
    }

    /// Discards the partial receive DEST/`name` and its resume state (`rawsend receive
    /// --abort`): the subvolume is deleted (btrfs) or the directory removed without
    /// following symlinks. Anything else is refused and left alone. Returns what it removed.
    pub fn abort(&mut self, name: &[u8]) -> Result<String> {
        let place = self.place(name);
        let not_partial = |reason| ErrorKind::NotPartial { place: place.clone(), reason };
        let root = self.partial_root(name)?.map_err(not_partial)?;
        if partial::load_state(self.dest.as_fd(), self.kind, name, root.as_fd())?.is_none() {
            return Err(not_partial("it has no resume state"));
        }
        drop(root);
        let what = match self.kind {
            Kind::Btrfs => {
                btrfs::delete_subvolume(self.dest.as_fd(), std::ffi::OsStr::from_bytes(name))?;
                "subvolume"
            }
            Kind::Dir => {
                tree::remove_tree(self.dest.as_fd(), name)?;
                "directory"
            }
        };
        partial::forget(self.dest.as_fd(), name)?;
        Ok(format!("{what} {place}"))
    }

    /// The token with which `rawsend send --resume` continues the partial receive
    /// DEST/`name`, where its saved state says (see [`crate::resume`]).
    pub fn resume_token(&mut self, name: &[u8]) -> Result<Token> {
        let Some(saved) = self.saved_resume(name)? else {
            let reason = self.partial_root(name)?.err().unwrap_or("it has no resume state");
            return Err(ErrorKind::NotPartial { place: self.place(name), reason });
        };
        saved.token(Epoch::current(self.mount_id()).as_ref()).map_err(|reason| {
            ErrorKind::ResumeRefused(Box::new(Refusal {
                place: saved.place.clone(),
                reason,
                abort: saved.abort.clone(),
            }))
        })
    }

    /// Starts the dir target's snapshot from a copy of its parent; the device nodes the
    /// parent lacks, or that could not be copied, are absent from the copy too.
    fn copy_parent(&mut self, parent: received::Found) -> Result<()> {
        let FsTarget { current, skips, .. } = self;
        let Current { tree, unowned, .. } = current.as_mut().ok_or(ErrorKind::NoSubvolume)?;
        if parent.fingerprint.is_none() && !skips.skip(skips::UNCHECKED_PARENT) {
            return Err(ErrorKind::Unsupported(
                "a parent recorded by an older rawsend, which cannot be checked for changes",
            ));
        }
        let copied = copy::copy_tree(parent.dir.as_fd(), tree.root(), skips, unowned, parent.fingerprint)?;
        if let Some(changes) = copied.changes {
            return Err(ErrorKind::ParentChanged {
                parent: String::from_utf8_lossy(&parent.name).into(),
                changes,
            });
        }
        for path in copied.absent.iter().chain(&parent.absent) {
            tree.mark_absent(path);
        }
        Ok(())
    }

    /// The source file of a clone, opened read-only (never a symlink or special file).
    fn clone_source_file(&mut self, source: &CloneSource<'_>) -> Result<OwnedFd> {
        let FsTarget { dest, kind, current, notes, .. } = self;
        let current = current.as_mut().ok_or(ErrorKind::NoSubvolume)?;
        if source.uuid == current.uuid {
            return current.tree.open_reading(source.path);
        }
        let tree = match current.sources.entry(source.uuid) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let origin = Origin::find(dest.as_fd(), *kind, source.uuid, source.ctransid)?;
                notes.extend(origin.transid_note("clone source", source.ctransid));
                entry.insert(Tree::new(origin.into_root()))
            }
        };
        tree.open_reading(source.path)
    }

    /// Creates a device node; without privileges the dir target records it as absent instead.
    fn create_device(
        &mut self,
        path: StreamPath<'_>,
        dir: BorrowedFd<'_>,
        mode: u64,
        rdev: Rdev,
    ) -> Result<()> {
        let name = path.split_last().map_or(&b"."[..], |(_, name)| name);
        let file_type = device_type(mode);
        let dev = rustix::fs::makedev(rdev.major(), rdev.minor());
        let result = rustix::fs::mknodat(dir, name, file_type, Mode::empty(), dev);
        if !self.skips.done(result, &[Errno::PERM], skips::DEVICES, "mknod")? {
            self.tree()?.mark_absent(path.as_bytes());
        }
        Ok(())
    }

    /// Renames an absent node: whatever `to` names is replaced, as `rename(2)` would.
    fn rename_absent(&mut self, from: StreamPath<'_>, to: StreamPath<'_>) -> Result<()> {
        let tree = self.tree()?;
        let (dir, name) = tree.parent(to)?;
        match rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(ErrorKind::io("rename", e)),
        }
        tree.renamed(from, to);
        Ok(())
    }

    /// On the dir target, the stream may not touch the received record on a directory's root:
    /// it would forge (or erase) the completion mark.
    fn refuse_record_xattr(&self, path: StreamPath<'_>, name: XattrName<'_>) -> Result<()> {
        if self.kind == Kind::Dir && path.is_root() && name.as_bytes() == RECEIVED_XATTR.as_bytes() {
            return Err(ErrorKind::Invalid(
                "the xattr user.rawsend.received is reserved for the received state",
            ));
        }
        Ok(())
    }

    /// Whether `path` is a device node the dir target was not allowed to create.
    fn is_absent(&self, path: StreamPath<'_>) -> bool {
        self.current.as_ref().is_some_and(|current| current.tree.is_absent(path))
    }

    /// Applies a FILEATTR's flags to a regular file or directory.
    fn apply_fileattr(&mut self, path: StreamPath<'_>, flags: u64) -> Result<()> {
        let flags = self.portable_flags(flags)?;
        let node = self.tree()?.node(path)?;
        let stat = rustix::fs::fstat(&node).map_err(|e| ErrorKind::io("stat", e))?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        if !matches!(file_type, FileType::RegularFile | FileType::Directory) {
            return Ok(());
        }
        let fd =
            rustix::fs::open(proc_path(node.as_fd(), None), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ErrorKind::io("open for flags", e))?;
        let current = match rustix::fs::ioctl_getflags(&fd) {
            Err(e) if skips::FLAGS_REFUSALS.contains(&e) && self.skips.skip(skips::FLAGS) => return Ok(()),
            current => current.map_err(|e| ErrorKind::io("FS_IOC_GETFLAGS", e))?,
        };
        let (now, later) = split_flags(current, flags);
        if now != current {
            let result = rustix::fs::ioctl_setflags(&fd, now);
            self.skips.check(result, &skips::FLAGS_REFUSALS, skips::FLAGS, "FS_IOC_SETFLAGS")?;
        }
        if later != now {
            self.current()?.deferred_flags.push((fd, later));
        }
        Ok(())
    }

    /// The FILEATTR flags this target can apply: on the dir target, without the btrfs-only
    /// ones (skipped, or refused with `--strict`).
    fn portable_flags(&mut self, flags: u64) -> Result<u64> {
        if self.kind == Kind::Btrfs || flags & BTRFS_ONLY_FLAGS == 0 {
            return Ok(flags);
        }
        if !self.skips.skip(skips::BTRFS_FLAGS) {
            return Err(ErrorKind::Unsupported(
                "btrfs-only file attributes (nocow, compression) with --target dir",
            ));
        }
        Ok(flags & !BTRFS_ONLY_FLAGS)
    }

    /// The stat of the node at `path` itself (a final symlink is not followed).
    fn stat_node(&mut self, path: StreamPath<'_>) -> Result<Stat> {
        let tree = self.tree()?;
        let result = match tree.cached(path) {
            Some(fd) => rustix::fs::fstat(fd),
            None => {
                let (dir, name) = at(tree, path)?;
                rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
            }
        };
        result.map_err(|e| ErrorKind::io("stat", e))
    }

    /// Sets the mode of the node at `path`, which must not be a symlink.
    fn set_mode(&mut self, path: StreamPath<'_>, mode: Mode) -> Result<()> {
        let tree = self.tree()?;
        // A cached fd is a regular file or a directory, never a symlink.
        if let Some(fd) = tree.cached(path) {
            rustix::fs::fchmod(fd, mode).map_err(|e| ErrorKind::io("chmod", e))?;
            let known = tree.known(path).and_then(|known| known.after_chmod(mode.as_raw_mode()));
            tree.set_known(path, known);
            return Ok(());
        }
        tree.forget_known_file();
        let node = tree.node(path)?;
        let stat = rustix::fs::fstat(&node).map_err(|e| ErrorKind::io("stat", e))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            return Err(ErrorKind::Invalid("chmod on a symlink"));
        }
        rustix::fs::chmod(proc_path(node.as_fd(), None), mode).map_err(|e| ErrorKind::io("chmod", e))
    }

    /// `mode` without the set-id bits the node at `path` may not have (its owner is not
    /// the stream's), counting the node the first time bits are cleared.
    fn allowed_mode(&mut self, path: StreamPath<'_>, mode: u32) -> Result<u32> {
        if mode & setid::SETID == 0 || self.current()?.unowned.is_empty() {
            return Ok(mode);
        }
        let id = setid::Id::of(&self.stat_node(path)?);
        let allowed = self.current()?.unowned.allowed(id, mode);
        setid::count(&mut self.skips, allowed)
    }

    /// After a CHOWN to `wanted` (`done`: it was not skipped): remembers which set-id bits
    /// the node may not have, and clears those a CHMOD already set.
    fn track_owner(&mut self, path: StreamPath<'_>, wanted: (u32, u32), done: bool) -> Result<()> {
        if done && self.current()?.unowned.is_empty() {
            return Ok(());
        }
        let stat = self.stat_node(path)?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        let forbidden = if done { 0 } else { setid::forbidden(wanted, (stat.st_uid, stat.st_gid), kind) };
        self.current()?.unowned.set(setid::Id::of(&stat), forbidden);
        let mode = self.allowed_mode(path, stat.st_mode & 0o7777)?;
        if mode != stat.st_mode & 0o7777 {
            self.set_mode(path, Mode::from_raw_mode(mode))?;
        }
        Ok(())
    }

    /// Forgets what was known of the inode number a new node at `path` reuses.
    fn forget_owner(&mut self, path: StreamPath<'_>) -> Result<()> {
        if self.current()?.unowned.is_empty() || self.is_absent(path) {
            return Ok(());
        }
        let id = setid::Id::of(&self.stat_node(path)?);
        self.current()?.unowned.forget(id);
        Ok(())
    }

    /// Readies `current` to be marked: waits for its background syncs, sets its deferred
    /// flags and makes everything it applied durable.
    fn ready_to_mark(&mut self, current: &mut Current) -> Result<()> {
        current.checkpointed()?;
        for (fd, flags) in &current.deferred_flags {
            let result = rustix::fs::ioctl_setflags(fd, *flags);
            self.skips.check(result, &skips::FLAGS_REFUSALS, skips::FLAGS, "FS_IOC_SETFLAGS")?;
        }
        vouching_sync(current.tree.root(), &current.lost)
    }

    /// Marks a complete subvolume received: btrfs received UUID + read-only, or the dir record.
    ///
    /// Everything received was made durable first ([`FsTarget::ready_to_mark`]) and the
    /// mark itself is before returning, so a subvolume that looks complete after a power
    /// cut is complete (see [`sync_filesystem`]).
    fn mark_received(&mut self, current: &Current) -> Result<()> {
        let root = current.tree.root();
        match self.kind {
            Kind::Btrfs => {
                btrfs::set_received_subvol(root, &current.uuid, current.ctransid)?;
                btrfs::set_read_only(root, true)?;
                vouching_sync(root, &current.lost)?;
            }
            Kind::Dir => {
                let fingerprint = Some(fingerprint::take(root, current.unowned.is_empty())?);
                let record = Record { uuid: current.uuid, transid: current.ctransid, fingerprint };
                let absent: Vec<&[u8]> = current.tree.absent().collect();
                let in_xattr = received::write(self.dest.as_fd(), &current.name, root, &record, &absent)?;
                self.completed.push(format!(
                    "{}: received UUID {} transid {} recorded in {}",
                    self.place(&current.name),
                    current.uuid,
                    current.ctransid,
                    received::describe(in_xattr, &current.name)
                ));
            }
        }
        Ok(())
    }
}

/// Writes everything dirty on the filesystem holding `fd` to disk (`syncfs(2)`).
///
/// One `syncfs` per subvolume rather than an `fsync` per file: the kernel
/// writes back all of the subvolume's data and metadata in one pass (on btrfs,
/// one transaction commit instead of one log-tree sync per file), and it also
/// covers what was never opened for writing here (directories, renames,
/// links, a copied parent).
fn sync_filesystem(fd: BorrowedFd<'_>) -> Result<()> {
    rustix::fs::syncfs(fd).map_err(|e| ErrorKind::io("syncfs (make the received data durable)", e))
}

/// A fresh, empty directory for the copy of snapshot `name`'s parent, beside the records
/// (whatever an interrupted copy left there is removed first).
fn copy_destination(dest: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd> {
    let copying = received::create_store(dest, received::Store::Copying)?;
    match tree::remove_tree(copying.as_fd(), name) {
        Err(e) if e.errno() != Some(Errno::NOENT.raw_os_error()) => return Err(e),
        _ => {}
    }
    rustix::fs::mkdirat(&copying, name, Mode::from_raw_mode(0o700)).map_err(|e| ErrorKind::io("mkdir", e))?;
    tree::open_dir_beneath(copying.as_fd(), name)
}

/// Removes what a failed copy of snapshot `name`'s parent left aside (best effort: a
/// leftover is removed by the next receive of that name anyway).
fn discard_copy(dest: BorrowedFd<'_>, name: &[u8]) {
    if let Ok(Some(copying)) = received::open_store(dest, received::Store::Copying) {
        let _ = tree::remove_tree(copying.as_fd(), name);
    }
    received::tidy(dest, &[received::Store::Copying]);
}

/// The command that discards the partial receive at `path`.
/// Whether `name` can be a received subvolume's name in DEST: one component, not
/// the directory of rawsend's records.
fn is_subvolume_name(name: &[u8]) -> bool {
    name != RECORDS_DIR.as_bytes() && StreamPath::new(name).is_ok_and(|path| path.is_single_component())
}

fn abort_command(path: &str) -> String {
    format!("rawsend receive --abort {}", shell_quote(path))
}

/// `text` as one shell word, for commands suggested to the user.
fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Splits FILEATTR flags into what to set now and the final set (with IMMUTABLE/APPEND).
fn split_flags(current: IFlags, btrfs_flags: u64) -> (IFlags, IFlags) {
    let mut now = current;
    let mut later = current;
    for (bit, flag) in FILEATTR_MAP {
        let on = btrfs_flags & bit != 0;
        let deferred = matches!(flag, IFlags::IMMUTABLE | IFlags::APPEND);
        if !deferred {
            now.set(flag, on);
        }
        later.set(flag, on);
    }
    (now, later)
}

/// The type of a node `kind` creates that is not held open afterwards (nor a directory).
fn unheld_type(kind: &NodeKind<'_>) -> Option<FileType> {
    match kind {
        NodeKind::File | NodeKind::Dir => None,
        NodeKind::Symlink(_) => Some(FileType::Symlink),
        NodeKind::Fifo => Some(FileType::Fifo),
        NodeKind::Socket => Some(FileType::Socket),
        NodeKind::Device { mode, .. } => Some(device_type(*mode)),
    }
}

/// The type of node a MKNOD of `mode` makes (its `S_IFMT` bits).
fn device_type(mode: u64) -> FileType {
    FileType::from_raw_mode(mode as u32)
}

/// `owner` as the arguments of the chown calls.
pub(super) fn chown_ids(owner: (u32, u32)) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (Some(rustix::fs::Uid::from_raw(owner.0)), Some(rustix::fs::Gid::from_raw(owner.1)))
}

/// Chowns the node at `path` to `owner` on its held fd, if it has one, unless that would
/// change nothing (decided without a system call where the node is [`known::Known`]).
fn chown_held(tree: &mut Tree, path: StreamPath<'_>, owner: (u32, u32)) -> Option<rustix::io::Result<()>> {
    let known = tree.known(path);
    let fd = tree.cached(path)?;
    let unchanged = match known {
        Some(known) => known.owner == owner,
        None => chown_changes_nothing(fd, owner),
    };
    if unchanged {
        return Some(Ok(()));
    }
    let (uid, gid) = chown_ids(owner);
    let result = rustix::fs::fchown(fd, uid, gid);
    if result.is_ok() {
        tree.set_known(path, known.map(|known| known.after_chown(owner)));
    }
    Some(result)
}

/// Whether `chown(fd, owner)` would change nothing but the ctime, so that it can be
/// skipped with the same result: the inode already has that owner (as every new inode
/// has, received by root, for the CHOWN the kernel sends after each create), and it is a
/// directory or has neither set-id bits nor file capabilities, which a chown of a
/// non-directory clears even when the owner stays. Two reads instead of an inode update.
fn chown_changes_nothing(fd: BorrowedFd<'_>, owner: (u32, u32)) -> bool {
    let Ok(stat) = rustix::fs::fstat(fd) else { return false };
    if (stat.st_uid, stat.st_gid) != owner {
        return false;
    }
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        return true;
    }
    stat.st_mode & setid::SETID == 0
        && matches!(rustix::fs::fgetxattr_query(fd, CAPABILITY_XATTR), Err(Errno::NODATA | Errno::OPNOTSUPP))
}

/// Done, or a fallback when the ioctl failed with one of `fallback` errnos.
fn outcome(result: btrfs::Result<()>, fallback: &[Errno]) -> Result<Outcome> {
    match result {
        Ok(()) => Ok(Outcome::Done),
        Err(err) if err.errno().is_some_and(|e| fallback.contains(&e)) => Ok(Outcome::Fallback),
        Err(err) => Err(err.into()),
    }
}

/// What `fallocate` would leave, where the filesystem cannot do it (e.g. ramfs): zeros
/// written over punched or zeroed ranges inside the file, the size extended unless
/// `KEEP_SIZE`. The content is the same; only the space is not preallocated or freed.
fn emulate_fallocate(fd: BorrowedFd<'_>, flags: FallocateFlags, offset: u64, len: u64) -> Result<()> {
    let end = offset.checked_add(len).ok_or(ErrorKind::Invalid("fallocate range overflows"))?;
    let size = rustix::fs::fstat(fd).map_err(|e| ErrorKind::io("stat", e))?.st_size as u64;
    if flags.intersects(FallocateFlags::PUNCH_HOLE | FallocateFlags::ZERO_RANGE) {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let mut at = offset;
        while at < end.min(size) {
            let n = (end.min(size) - at).min(ZEROS.len() as u64) as usize;
            pwrite_all(fd, &ZEROS[..n], at)?;
            at += n as u64;
        }
    }
    if !flags.contains(FallocateFlags::KEEP_SIZE) && end > size {
        rustix::fs::ftruncate(fd, end).map_err(|e| ErrorKind::io("truncate", e))?;
    }
    Ok(())
}

fn pwrite_all(fd: BorrowedFd<'_>, mut data: &[u8], mut offset: u64) -> Result<()> {
    while !data.is_empty() {
        let n = rustix::io::pwrite(fd, data, offset).map_err(|e| ErrorKind::io("write", e))?;
        data = &data[n..];
        offset += n as u64;
    }
    Ok(())
}

fn timestamp(ts: Timespec) -> rustix::fs::Timespec {
    rustix::fs::Timespec { tv_sec: ts.sec, tv_nsec: i64::from(ts.nsec) as _ }
}

/// The directory holding `path` and the name to use in it (`.` for the root).
fn at<'p>(tree: &mut Tree, path: StreamPath<'p>) -> Result<(std::rc::Rc<OwnedFd>, &'p [u8])> {
    if path.is_root() {
        return Ok((tree.dir(path)?, b"."));
    }
    tree.parent(path)
}

impl Target for FsTarget {
    fn capabilities(&self) -> Capabilities {
        Capabilities { encoded_write: self.kind == Kind::Btrfs, clone: true }
    }

    fn begin_subvol(&mut self, start: &SubvolStart<'_>) -> Result<()> {
        // Find the parent first, so that a missing one leaves nothing behind.
        let parent = match start.parent {
            Some((uuid, ctransid)) => {
                let origin = Origin::find(self.dest.as_fd(), self.kind, uuid, ctransid)?;
                self.notes.extend(origin.transid_note("parent", ctransid));
                Some(origin)
            }
            None => None,
        };
        let (root, parent) = self.make_subvol(start, parent)?;
        self.current = Some(Current::new(start, root));
        let Some(parent) = parent else { return Ok(()) };
        // The copy is made aside and moved into place once complete, so that an
        // interrupted or failed copy leaves nothing at DEST/NAME to resume or remove.
        let copied = self.copy_parent(parent).and_then(|()| self.move_copy_into_place(start));
        if copied.is_err() {
            self.current = None;
            discard_copy(self.dest.as_fd(), start.name);
        }
        copied
    }

    fn finish_subvol(&mut self) -> Result<()> {
        let mut current = self.current.take().ok_or(ErrorKind::NoSubvolume)?;
        if let Err(err) = self.ready_to_mark(&mut current) {
            // Unmarked: still the current subvolume, for `abandon_subvol` to report.
            self.current = Some(current);
            return Err(err);
        }
        let marked =
            self.mark_received(&current).and_then(|()| partial::forget(self.dest.as_fd(), &current.name));
        current.forget_progress_if_lost();
        marked
    }

    /// A `syncfs` on a thread of its own, unless one is running; [`Target::finish_subvol`]
    /// waits for it and makes everything durable itself (the write-back only marks the
    /// subvolume lost if it fails).
    fn write_back(&mut self) {
        if let Some(current) = self.current.as_mut() {
            current.start_write_back();
        }
    }

    fn abandon_subvol(&mut self) -> Option<Unfinished> {
        let mut current = self.current.take()?;
        // A periodic checkpoint that failed leaves the progress record to resume from,
        // unless what failed was a `syncfs`.
        let _ = current.checkpointed();
        current.forget_progress_if_lost();
        let path = self.place(&current.name);
        let (what, cleanup) = match self.kind {
            Kind::Btrfs => ("subvolume", format!("btrfs subvolume delete {}", shell_quote(&path))),
            Kind::Dir => ("directory", format!("rm -rf {}", shell_quote(&path))),
        };
        Some(Unfinished {
            place: format!("{what} {path}"),
            cleanup: Some(cleanup),
            partial: Some(shell_quote(&path)),
            resumable: false,
        })
    }

    fn received_as(&mut self, name: &[u8]) -> Result<Option<Received>> {
        if !is_subvolume_name(name) {
            return Ok(None);
        }
        let Ok(dir) = tree::open_dir_beneath(self.dest.as_fd(), name) else { return Ok(None) };
        let found = match self.kind {
            Kind::Btrfs => {
                if !btrfs::is_subvolume_root(&dir)? {
                    return Ok(None);
                }
                let info = btrfs::subvolume_info(&dir)?.root;
                info.received_uuid.filter(|_| info.read_only).map(|uuid| (uuid, info.stransid))
            }
            Kind::Dir => received::read(self.dest.as_fd(), name, dir.as_fd())?.map(|r| (r.uuid, r.transid)),
        };
        Ok(found.map(|(uuid, ctransid)| Received { uuid, ctransid, place: self.place(name) }))
    }

    fn saved_resume(&mut self, name: &[u8]) -> Result<Option<Saved>> {
        let Ok(root) = self.partial_root(name)? else { return Ok(None) };
        let dest = self.dest.as_fd();
        let Some(state) = partial::load_state(dest, self.kind, name, root.as_fd())? else { return Ok(None) };
        let progress = partial::load_progress(dest, self.kind, name, root.as_fd())?;
        let place = self.place(name);
        Ok(Some(Saved { abort: abort_command(&place), place, state, progress }))
    }

    fn resume_subvol(&mut self, start: &SubvolStart<'_>) -> Result<()> {
        let root = self
            .partial_root(start.name)?
            .map_err(|reason| ErrorKind::NotPartial { place: self.place(start.name), reason })?;
        self.current = Some(Current::new(start, root));
        Ok(())
    }

    /// A periodic checkpoint ([`Tail::Unknown`]) syncs and saves on a thread of its own,
    /// so that the receive goes on while the filesystem writes back (a `syncfs` in line
    /// stalled it for a tenth of its time); it is waited for before the next checkpoint and
    /// before the subvolume is marked or left. A checkpoint at a stop is done at once, and
    /// so is the first (made before any data is written: a `syncfs` racing the first
    /// writes would split their extents, which compress worse).
    fn checkpoint(&mut self, state: &ResumeState) -> Result<()> {
        let FsTarget { dest, kind, current, .. } = self;
        let current = current.as_mut().ok_or(ErrorKind::NoSubvolume)?;
        current.checkpointed()?;
        let io = |e| ErrorKind::io("checkpoint", e);
        let dest = dest.try_clone().map_err(io)?;
        let root = current.tree.root().try_clone_to_owned().map_err(io)?;
        let (kind, name, state, lost) = (*kind, current.name.clone(), *state, Arc::clone(&current.lost));
        let save = move || {
            vouching_sync(root.as_fd(), &lost)?;
            partial::save_state(dest.as_fd(), kind, &name, root.as_fd(), &state)
        };
        if state.tail != Tail::Unknown || !current.checkpointed_once {
            current.checkpointed_once = true;
            return save();
        }
        current.in_background(save)
    }

    fn mount_id(&self) -> Option<u64> {
        locate::unique_mount_id(self.dest.as_fd())
    }

    fn note_progress(&mut self, progress: Option<&Progress>) -> Result<()> {
        let record = progress.map_or([b' '; crate::resume::PROGRESS_LEN], Progress::to_record);
        let FsTarget { dest, kind, current, .. } = self;
        let current = current.as_mut().ok_or(ErrorKind::NoSubvolume)?;
        match (&mut current.progress, progress) {
            (Some(file), Some(_)) => file.write(&record),
            (Some(file), None) => file.erase(),
            (None, _) => {
                let root = current.tree.root();
                current.progress =
                    Some(ProgressFile::create(dest.as_fd(), *kind, &current.name, root, &record)?);
                Ok(())
            }
        }
    }

    fn resumable(&self) -> bool {
        self.current.as_ref().is_some_and(|current| {
            !current.lost()
                && current.deferred_flags.is_empty()
                && current.unowned.is_empty()
                && current.tree.absent().next().is_none()
        })
    }

    fn exists(&mut self, path: StreamPath<'_>) -> Result<bool> {
        match self.stat_node(path) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(Errno::NOENT.raw_os_error()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn create(&mut self, path: StreamPath<'_>, kind: NodeKind<'_>) -> Result<()> {
        let (dir, name) = self.tree()?.parent(path)?;
        let unheld = unheld_type(&kind);
        let private = Mode::from_raw_mode(0o600);
        let created = match kind {
            NodeKind::File => {
                let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(dir.as_fd(), name, flags, private)
                    .map_err(|e| ErrorKind::io("create file", e))?;
                self.tree()?.keep_file(path, fd);
                Ok(())
            }
            NodeKind::Dir => {
                rustix::fs::mkdirat(dir.as_fd(), name, Mode::from_raw_mode(0o700))
                    .map_err(|e| ErrorKind::io("mkdir", e))?;
                // Its owner, mode and times come next, and its entries after: keep it open.
                self.tree()?.keep_dir(path, dir.as_fd(), name)
            }
            NodeKind::Device { mode, rdev } => self.create_device(path, dir.as_fd(), mode, rdev),
            NodeKind::Fifo => rustix::fs::mknodat(dir.as_fd(), name, FileType::Fifo, private, 0)
                .map_err(|e| ErrorKind::io("mkfifo", e)),
            NodeKind::Socket => rustix::fs::mknodat(dir.as_fd(), name, FileType::Socket, private, 0)
                .map_err(|e| ErrorKind::io("mksock", e)),
            NodeKind::Symlink(target) => rustix::fs::symlinkat(target.as_bytes(), dir.as_fd(), name)
                .map_err(|e| ErrorKind::io("symlink", e)),
        };
        created?;
        if let Some(kind) = unheld.filter(|_| !self.is_absent(path)) {
            self.tree()?.keep_unheld(path, kind);
        }
        self.forget_owner(path)
    }

    fn rename(&mut self, from: StreamPath<'_>, to: StreamPath<'_>) -> Result<()> {
        if self.is_absent(from) {
            return self.rename_absent(from, to);
        }
        let tree = self.tree()?;
        let (from_dir, from_name) = tree.parent(from)?;
        let (to_dir, to_name) = tree.parent(to)?;
        rustix::fs::renameat(from_dir.as_fd(), from_name, to_dir.as_fd(), to_name)
            .map_err(|e| ErrorKind::io("rename", e))?;
        tree.renamed(from, to);
        Ok(())
    }

    fn link(&mut self, path: StreamPath<'_>, target: StreamPath<'_>) -> Result<()> {
        let tree = self.tree()?;
        if tree.is_absent(target) {
            tree.mark_absent(path.as_bytes());
            return Ok(());
        }
        let (target_dir, target_name) = tree.parent(target)?;
        let (dir, name) = tree.parent(path)?;
        rustix::fs::linkat(target_dir.as_fd(), target_name, dir.as_fd(), name, AtFlags::empty())
            .map_err(|e| ErrorKind::io("link", e))
    }

    fn unlink(&mut self, path: StreamPath<'_>) -> Result<()> {
        let tree = self.tree()?;
        if tree.is_absent(path) {
            tree.forget(path);
            return Ok(());
        }
        let (dir, name) = tree.parent(path)?;
        rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::empty()).map_err(|e| ErrorKind::io("unlink", e))?;
        tree.forget(path);
        Ok(())
    }

    fn rmdir(&mut self, path: StreamPath<'_>) -> Result<()> {
        let tree = self.tree()?;
        let (dir, name) = tree.parent(path)?;
        rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::REMOVEDIR).map_err(|e| ErrorKind::io("rmdir", e))?;
        tree.forget(path);
        Ok(())
    }

    fn set_xattr(&mut self, path: StreamPath<'_>, name: XattrName<'_>, value: &[u8]) -> Result<()> {
        if self.is_absent(path) {
            return Ok(());
        }
        self.refuse_record_xattr(path, name)?;
        let tree = self.tree()?;
        // A capability or an ACL may change what a chown of any held node does.
        tree.forget_known();
        let (dir, node) = at(tree, path)?;
        let result = rustix::fs::lsetxattr(
            proc_path(dir.as_fd(), Some(node)),
            name.as_bytes(),
            value,
            XattrFlags::empty(),
        );
        self.skips.check(result, &skips::XATTR_REFUSALS, skips::xattr(name.as_bytes()), "set xattr")
    }

    fn remove_xattr(&mut self, path: StreamPath<'_>, name: XattrName<'_>) -> Result<()> {
        if self.is_absent(path) {
            return Ok(());
        }
        self.refuse_record_xattr(path, name)?;
        let tree = self.tree()?;
        // A capability or an ACL may change what a chown of any held node does.
        tree.forget_known();
        let (dir, node) = at(tree, path)?;
        let result = rustix::fs::lremovexattr(proc_path(dir.as_fd(), Some(node)), name.as_bytes());
        let (refusals, what) = (skips::remove_xattr_refusals(name.as_bytes()), skips::xattr(name.as_bytes()));
        self.skips.check(result, refusals, what, "remove xattr")
    }

    fn write(&mut self, path: StreamPath<'_>, offset: u64, data: &[u8]) -> Result<()> {
        let fd = self.tree()?.file(path)?;
        pwrite_all(fd, data, offset)?;
        self.current.as_mut().ok_or(ErrorKind::NoSubvolume)?.wrote(data.len());
        Ok(())
    }

    fn encoded_write(&mut self, path: StreamPath<'_>, extent: &EncodedExtent<'_>) -> Result<Outcome> {
        let fd = self.tree()?.file(path)?;
        let args = btrfs::EncodedWrite {
            offset: extent.offset,
            len: extent.len,
            unencoded_len: extent.unencoded_len,
            unencoded_offset: extent.unencoded_offset,
            compression: extent.compression,
            encryption: 0,
        };
        outcome(btrfs::encoded_write(fd, &args, extent.data).map(drop), &ENCODED_FALLBACK)
    }

    fn clone_range(
        &mut self,
        path: StreamPath<'_>,
        offset: u64,
        len: u64,
        source: &CloneSource<'_>,
    ) -> Result<Outcome> {
        let src = self.clone_source_file(source)?;
        let dst = self.tree()?.file(path)?;
        outcome(btrfs::clone_range(&src, source.offset, len, dst, offset), &CLONE_FALLBACK)
    }

    fn read_clone_source(&mut self, source: &CloneSource<'_>, buf: &mut [u8]) -> Result<usize> {
        let src = self.clone_source_file(source)?;
        let mut filled = 0;
        while filled < buf.len() {
            let n = rustix::io::pread(&src, &mut buf[filled..], source.offset + filled as u64)
                .map_err(|e| ErrorKind::io("read clone source", e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(filled)
    }

    fn truncate(&mut self, path: StreamPath<'_>, size: u64) -> Result<()> {
        let fd = self.tree()?.file(path)?;
        rustix::fs::ftruncate(fd, size).map_err(|e| ErrorKind::io("truncate", e))
    }

    fn chmod(&mut self, path: StreamPath<'_>, mode: u32) -> Result<()> {
        if self.is_absent(path) {
            return Ok(());
        }
        let mode = self.allowed_mode(path, mode)?;
        self.set_mode(path, Mode::from_raw_mode(mode))
    }

    fn chown(&mut self, path: StreamPath<'_>, uid: u32, gid: u32) -> Result<()> {
        if self.is_absent(path) {
            return Ok(());
        }
        let wanted = (uid, gid);
        let tree = self.tree()?;
        let result = match chown_held(tree, path, wanted) {
            Some(result) => result,
            None if tree.known(path).is_some_and(|known| known.owner == wanted) => Ok(()),
            None => {
                tree.forget_known_file();
                let (dir, name) = at(tree, path)?;
                let (uid, gid) = chown_ids(wanted);
                rustix::fs::chownat(dir.as_fd(), name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
        };
        let done = self.skips.done(result, &[Errno::PERM], skips::CHOWN, "chown")?;
        self.track_owner(path, wanted, done)
    }

    fn utimes(&mut self, path: StreamPath<'_>, atime: Timespec, mtime: Timespec) -> Result<()> {
        if self.is_absent(path) {
            return Ok(());
        }
        let times = Timestamps { last_access: timestamp(atime), last_modification: timestamp(mtime) };
        let tree = self.tree()?;
        let result = match tree.cached(path) {
            Some(fd) => rustix::fs::futimens(fd, &times),
            None => {
                let (dir, name) = at(tree, path)?;
                rustix::fs::utimensat(dir.as_fd(), name, &times, AtFlags::SYMLINK_NOFOLLOW)
            }
        };
        result.map_err(|e| ErrorKind::io("utimes", e))
    }

    fn fallocate(&mut self, path: StreamPath<'_>, mode: u32, offset: u64, len: u64) -> Result<()> {
        let fd = self.tree()?.file(path)?;
        let flags = FallocateFlags::from_bits(mode).ok_or(ErrorKind::Invalid("fallocate mode"))?;
        match rustix::fs::fallocate(fd, flags, offset, len) {
            Err(Errno::OPNOTSUPP) => emulate_fallocate(fd, flags, offset, len),
            result => result.map_err(|e| ErrorKind::io("fallocate", e)),
        }
    }

    fn fileattr(&mut self, path: StreamPath<'_>, flags: u64) -> Result<()> {
        self.apply_fileattr(path, flags)
    }

    fn enable_verity(&mut self, path: StreamPath<'_>, verity: &Verity<'_>) -> Result<()> {
        let tree = self.tree()?;
        // The kernel refuses while any writable fd of the file is open.
        tree.close_file();
        let fd = tree.open_regular(path, OFlags::RDONLY)?;
        match btrfs::enable_verity(&fd, verity) {
            Err(err)
                if matches!(err.errno(), Some(Errno::NOTTY | Errno::OPNOTSUPP))
                    && self.skips.skip(skips::VERITY) =>
            {
                Ok(())
            }
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_commands_quote_paths_as_one_word() {
        assert_eq!(shell_quote("/mnt/backups/home-2026.12"), "/mnt/backups/home-2026.12");
        assert_eq!(shell_quote("/mnt/my backups/x"), "'/mnt/my backups/x'");
        assert_eq!(shell_quote("/mnt/it's"), r"'/mnt/it'\''s'");
        assert_eq!(shell_quote("/mnt/$(reboot)"), "'/mnt/$(reboot)'");
        assert_eq!(shell_quote(""), "''");
    }
}
