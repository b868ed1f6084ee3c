//! Copying a directory tree: the dir target's stand-in for a btrfs snapshot.
//!
//! An incremental stream (SNAPSHOT) starts from a snapshot of its parent.
//! A plain directory has no snapshots, so the dir target starts from a copy
//! of the parent directory: [`copy_tree`] copies every node beneath it, then
//! the root's own metadata, leaving out the root's [`RECEIVED_XATTR`] record
//! (the copy is not the parent the record describes).
//!
//! The parent may hold anything a stream planted in it, and may change while
//! it is copied, so the walk never follows a symlink and never leaves the
//! filesystem. Directories are opened beneath their parent with no symlinks
//! and no mount crossing, and checked to be the inode stat'ed; a mount point
//! below the parent is an error. Everything else is acted on relative to its
//! directory with no-follow calls. A regular file is opened `O_NOFOLLOW |
//! O_NONBLOCK` (a FIFO swapped in cannot block) and checked to be the inode
//! stat'ed before it is read.
//!
//! The walk is iterative: deep trees cannot overflow the stack. Directory
//! fds stay open for the outermost [`FD_LEVELS`] levels only; a deeper
//! level is reopened through `..` of its child when the walk returns to it,
//! and checked to be the same directory.
//!
//! Data: a whole-file reflink (`FICLONE`) where the filesystem can (btrfs,
//! xfs); else only the data segments (`SEEK_DATA`/`SEEK_HOLE`) are copied,
//! with `copy_file_range` or read/write, and the size set last, so holes
//! stay holes. Non-directories sharing an inode become hard links of the
//! first copy, found again by its path beneath the destination root.
//!
//! Metadata, per node: owner, xattrs, mode, then times. `chown` clears the
//! set-user-ID bits and `security.capability`, so it comes first; xattrs
//! come before the mode because `user.*` xattrs need write permission,
//! which a read-only mode would take from an unprivileged copier; times come
//! last, and a directory gets its metadata after its contents (their
//! creation would change its mtime). Refusals the dir target may skip
//! (owners, device nodes, xattrs) go through [`Skips`] under the same kinds
//! as the target's own.
//!
//! Filesystem flags (`chattr`: immutable, append-only, nocow, ...) are not
//! copied: an immutable or append-only node would block the very changes
//! the stream applies next, and most flags mean nothing across filesystems.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rawsend_btrfs as btrfs;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, SeekFrom, Stat, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::fingerprint::{Drift, Fingerprint};
use super::setid::{self, Id, Unowned};
use super::skips::{self, Skips};
use super::tree::{list, open_dir_beneath, open_dir_noatime, open_noatime, proc_path};
use super::{RECEIVED_XATTR, chown_ids, pwrite_all};
use crate::error::{ErrorKind, Result};

/// Directory levels whose fds stay open while a deeper directory is copied.
const FD_LEVELS: usize = 64;
/// Room for any xattr name list or value (`XATTR_LIST_MAX`, `XATTR_SIZE_MAX`).
const XATTR_MAX: usize = 1 << 16;
/// Chunk size of the read/write fallback.
const CHUNK: usize = 128 * 1024;
/// Largest single `copy_file_range` request.
const COPY_RANGE_MAX: usize = 1 << 30;
/// Errnos on which a whole-file reflink falls back to copying.
const REFLINK_FALLBACK: [Errno; 5] = [Errno::INVAL, Errno::XDEV, Errno::OPNOTSUPP, Errno::NOTTY, Errno::PERM];
/// Errnos on which `copy_file_range` falls back to read/write.
const COPY_RANGE_FALLBACK: [Errno; 4] = [Errno::XDEV, Errno::OPNOTSUPP, Errno::INVAL, Errno::NOSYS];

/// Copies everything beneath directory `src` into the empty directory `dst`, then the
/// root's own metadata, leaving out the xattr `RECEIVED_XATTR` on the root. Returns the
/// paths (relative to `dst`) of device nodes it was not allowed to create, and how `src`
/// differs from its fingerprint `expected`. Copies whose owner could not be kept (or, by
/// `expected`, was not kept in `src`) lose the set-id bits that owner would need, and are
/// added to `unowned` for the commands that follow.
pub(super) fn copy_tree(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    skips: &mut Skips,
    unowned: &mut Unowned,
    expected: Option<Fingerprint>,
) -> Result<Copied> {
    // Reopened: the caller's fds may be O_PATH, and must be directories.
    let (src_dir, dst_dir) = (open_dir_noatime(src, b".")?, open_dir_beneath(dst, b".")?);
    let stat = stat_fd(src_dir.as_fd())?;
    if !list(dst_dir.as_fd())?.is_empty() {
        return Err(ErrorKind::io("copy into a directory that is not empty", Errno::NOTEMPTY));
    }
    let dst_id = Id::of(&stat_fd(dst_dir.as_fd())?);
    let mut copier = Copier {
        skips,
        unowned,
        owners_known: expected.is_none_or(|expected| expected.owners_kept),
        drift: expected.map(Drift::new),
        dev: stat.st_dev,
        dst_root: dst,
        dst_root_id: dst_id,
        links: HashMap::new(),
        absent: Vec::new(),
        names: vec![0; XATTR_MAX],
        value: vec![0; XATTR_MAX],
    };
    let level = Level::new(src_dir.as_fd(), stat, dst_id, 0)?;
    let current = Pair { src: src_dir, dst: dst_dir };
    copier.walk(Walk { current, stack: vec![level], path: Vec::new() })?;
    let changes = copier.drift.as_ref().and_then(Drift::changes);
    Ok(Copied { absent: copier.absent, changes })
}

/// What [`copy_tree`] found.
#[derive(Debug)]
pub(super) struct Copied {
    /// Device nodes not created (no privileges), by relative path.
    pub absent: Vec<Vec<u8>>,
    /// How the source differs from its fingerprint, if it does.
    pub changes: Option<String>,
}

/// A source directory and its copy, open.
struct Pair {
    src: OwnedFd,
    dst: OwnedFd,
}

/// A directory being copied: the entries left, and how to get back to it.
struct Level {
    /// The source directory's stat, taken before it was listed.
    stat: Stat,
    /// The copy's identity, to check it when reopened.
    dst: Id,
    /// Entries not copied yet.
    entries: Vec<CString>,
    /// Length of the walk's relative path without this directory's name.
    path_len: usize,
    /// Its fds while a deeper directory is copied, unless too deep to keep them.
    kept: Option<Pair>,
}

impl Level {
    fn new(src: BorrowedFd<'_>, stat: Stat, dst: Id, path_len: usize) -> Result<Level> {
        Ok(Level { stat, dst, entries: list(src)?, path_len, kept: None })
    }
}

/// Where the walk is: the directory being copied and the levels holding it.
struct Walk {
    current: Pair,
    /// The levels from the root down to the current directory's.
    stack: Vec<Level>,
    /// The current directory's path relative to the root (empty at the root).
    path: Vec<u8>,
}

/// A directory just created, to descend into.
struct Child {
    pair: Pair,
    stat: Stat,
    dst: Id,
}

impl Walk {
    /// Makes `child`, named `name`, the current directory.
    fn descend(&mut self, name: &CStr, child: Child) -> Result<()> {
        let parent = std::mem::replace(&mut self.current, child.pair);
        let depth = self.stack.len();
        if let Some(level) = self.stack.last_mut().filter(|_| depth <= FD_LEVELS) {
            level.kept = Some(parent);
        }
        let path_len = self.path.len();
        self.path = join(&self.path, name.to_bytes());
        let level = Level::new(self.current.src.as_fd(), child.stat, child.dst, path_len)?;
        self.stack.push(level);
        Ok(())
    }

    /// Opens the parent of the current directory (its level just popped), or `None` at the root.
    fn parent(&mut self) -> Result<Option<Pair>> {
        let Some(level) = self.stack.last_mut() else { return Ok(None) };
        if let Some(pair) = level.kept.take() {
            return Ok(Some(pair));
        }
        let src = reopen_parent(self.current.src.as_fd(), Id::of(&level.stat))?;
        let dst = reopen_parent(self.current.dst.as_fd(), level.dst)?;
        Ok(Some(Pair { src, dst }))
    }
}

/// A node to read or change: an open fd, or a name in an open directory (never followed).
#[derive(Clone, Copy)]
enum Node<'a> {
    Open(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a CStr),
}

impl Node<'_> {
    fn stat(self) -> Result<Stat> {
        match self {
            Node::Open(fd) => stat_fd(fd),
            Node::At(dir, name) => {
                rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| ErrorKind::io("stat", e))
            }
        }
    }

    fn chown(self, stat: &Stat) -> rustix::io::Result<()> {
        let (uid, gid) = chown_ids((stat.st_uid, stat.st_gid));
        match self {
            Node::Open(fd) => rustix::fs::fchown(fd, uid, gid),
            Node::At(dir, name) => rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
        }
    }

    fn list_xattrs(self, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Node::Open(fd) => rustix::fs::flistxattr(fd, buf),
            Node::At(dir, name) => rustix::fs::llistxattr(proc_path(dir, Some(name.to_bytes())), buf),
        }
    }

    fn get_xattr(self, xattr: &[u8], buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Node::Open(fd) => rustix::fs::fgetxattr(fd, xattr, buf),
            Node::At(dir, name) => rustix::fs::lgetxattr(proc_path(dir, Some(name.to_bytes())), xattr, buf),
        }
    }

    fn set_xattr(self, xattr: &[u8], value: &[u8]) -> rustix::io::Result<()> {
        let flags = XattrFlags::empty();
        match self {
            Node::Open(fd) => rustix::fs::fsetxattr(fd, xattr, value, flags),
            Node::At(dir, name) => {
                rustix::fs::lsetxattr(proc_path(dir, Some(name.to_bytes())), xattr, value, flags)
            }
        }
    }

    /// Sets the mode of a node that is not a symlink; `kind` is checked for a name.
    fn chmod(self, mode: Mode, kind: FileType) -> Result<()> {
        let result = match self {
            Node::Open(fd) => rustix::fs::fchmod(fd, mode),
            Node::At(dir, name) => {
                let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let node = rustix::fs::openat(dir, name, flags, Mode::empty())
                    .map_err(|e| ErrorKind::io("open", e))?;
                if FileType::from_raw_mode(stat_fd(node.as_fd())?.st_mode) != kind {
                    return Err(changed());
                }
                rustix::fs::chmod(proc_path(node.as_fd(), None), mode)
            }
        };
        result.map_err(|e| ErrorKind::io("chmod", e))
    }

    fn set_times(self, stat: &Stat) -> rustix::io::Result<()> {
        let times = Timestamps {
            last_access: Timespec { tv_sec: stat.st_atime as _, tv_nsec: stat.st_atime_nsec as _ },
            last_modification: Timespec { tv_sec: stat.st_mtime as _, tv_nsec: stat.st_mtime_nsec as _ },
        };
        match self {
            Node::Open(fd) => rustix::fs::futimens(fd, &times),
            Node::At(dir, name) => rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW),
        }
    }
}

/// The copy in progress.
struct Copier<'a> {
    skips: &'a mut Skips,
    /// Copies whose owner is not the parent's.
    unowned: &'a mut Unowned,
    /// Whether the source's owners are the stream's (false: a parent received without
    /// keeping them, whose copies may not have set-id bits).
    owners_known: bool,
    /// The comparison with the source's fingerprint, if it has one.
    drift: Option<Drift>,
    /// The source's filesystem: a node on another is a mount point.
    dev: u64,
    dst_root: BorrowedFd<'a>,
    dst_root_id: Id,
    /// The first copy of each inode with more than one link, by relative path.
    links: HashMap<u64, Vec<u8>>,
    /// Device nodes not created (no privileges), by relative path.
    absent: Vec<Vec<u8>>,
    /// Buffers for xattr names and values.
    names: Vec<u8>,
    value: Vec<u8>,
}

impl Copier<'_> {
    /// Copies every entry depth-first, each directory's metadata after its contents.
    fn walk(&mut self, mut walk: Walk) -> Result<()> {
        loop {
            let Some(level) = walk.stack.last_mut() else { return Ok(()) };
            if let Some(name) = level.entries.pop() {
                if let Some(child) = self.entry(&walk.current, &name, &walk.path)? {
                    walk.descend(&name, child)?;
                }
                continue;
            }
            let Some(level) = walk.stack.pop() else { return Ok(()) };
            let parent = walk.parent()?;
            let (src, dst) = (Node::Open(walk.current.src.as_fd()), Node::Open(walk.current.dst.as_fd()));
            if let Some(drift) = self.drift.as_mut().filter(|_| parent.is_none()) {
                drift.root(&level.stat);
            }
            self.metadata(src, dst, &level.stat, parent.is_none())?;
            walk.path.truncate(level.path_len);
            match parent {
                Some(pair) => walk.current = pair,
                None => return Ok(()),
            }
        }
    }

    /// Copies entry `name` of the directories `at`; a directory is only created and returned.
    fn entry(&mut self, at: &Pair, name: &CStr, path: &[u8]) -> Result<Option<Child>> {
        let stat = rustix::fs::statat(&at.src, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ErrorKind::io("stat in the parent directory", e))?;
        if stat.st_dev != self.dev {
            return Err(mount_point());
        }
        if let Some(drift) = &mut self.drift {
            drift.entry(&join(path, name.to_bytes()), &stat);
        }
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind == FileType::Directory {
            return self.dir(at, name, stat).map(Some);
        }
        let multiple = stat.st_nlink > 1;
        if multiple && self.link_again(at.dst.as_fd(), name, stat.st_ino)? {
            return Ok(None);
        }
        let copied = self.node(at, name, &stat, kind)?;
        let path = join(path, name.to_bytes());
        if !copied {
            self.absent.push(path);
        } else if multiple {
            self.links.insert(stat.st_ino, path);
        }
        Ok(None)
    }

    /// Creates the copy of directory `name` and opens both; metadata follows its contents.
    fn dir(&mut self, at: &Pair, name: &CStr, stat: Stat) -> Result<Child> {
        let src = open_dir_noatime(at.src.as_fd(), name.to_bytes()).map_err(|err| {
            if err.errno() == Some(Errno::XDEV.raw_os_error()) { mount_point() } else { err }
        })?;
        let id = Id::of(&stat_fd(src.as_fd())?);
        if id != Id::of(&stat) {
            return Err(changed());
        }
        if id == self.dst_root_id {
            return Err(ErrorKind::Unsupported("a copy destination inside the parent directory"));
        }
        rustix::fs::mkdirat(&at.dst, name, Mode::from_raw_mode(0o700))
            .map_err(|e| ErrorKind::io("mkdir", e))?;
        let dst = open_dir_beneath(at.dst.as_fd(), name.to_bytes())?;
        let dst_id = Id::of(&stat_fd(dst.as_fd())?);
        Ok(Child { pair: Pair { src, dst }, stat, dst: dst_id })
    }

    /// Links `name` in `dir` to the first copy of inode `ino`; whether there was one.
    fn link_again(&self, dir: BorrowedFd<'_>, name: &CStr, ino: u64) -> Result<bool> {
        let Some(first) = self.links.get(&ino) else { return Ok(false) };
        let (parent, first_name) = match first.iter().rposition(|&byte| byte == b'/') {
            Some(slash) => (&first[..slash], &first[slash + 1..]),
            None => (&b"."[..], &first[..]),
        };
        let parent = open_dir_beneath(self.dst_root, parent)?;
        rustix::fs::linkat(&parent, first_name, dir, name, AtFlags::empty())
            .map_err(|e| ErrorKind::io("link", e))?;
        Ok(true)
    }

    /// Copies non-directory `name` with its metadata; `false` when it was skipped.
    fn node(&mut self, at: &Pair, name: &CStr, stat: &Stat, kind: FileType) -> Result<bool> {
        let (src, dst) = (at.src.as_fd(), at.dst.as_fd());
        let private = Mode::from_raw_mode(0o600);
        match kind {
            FileType::RegularFile => return self.file(at, name, stat).map(|()| true),
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, Vec::new())
                    .map_err(|e| ErrorKind::io("readlink", e))?;
                rustix::fs::symlinkat(&target, dst, name).map_err(|e| ErrorKind::io("symlink", e))?;
            }
            FileType::Fifo | FileType::Socket => {
                rustix::fs::mknodat(dst, name, kind, private, 0).map_err(|e| ErrorKind::io("mknod", e))?
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                let result = rustix::fs::mknodat(dst, name, kind, Mode::empty(), stat.st_rdev);
                if !self.skips.done(result, &[Errno::PERM], skips::DEVICES, "mknod")? {
                    return Ok(false);
                }
            }
            FileType::Directory | FileType::Unknown => {
                return Err(ErrorKind::Unsupported("a file of unknown type in the parent directory"));
            }
        }
        self.metadata(Node::At(src, name), Node::At(dst, name), stat, false)?;
        Ok(true)
    }

    /// Copies regular file `name`: its data, then its metadata through the open fds.
    fn file(&mut self, at: &Pair, name: &CStr, stat: &Stat) -> Result<()> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let src = match open_noatime(at.src.as_fd(), OsStr::from_bytes(name.to_bytes()), flags) {
            Err(Errno::ACCESS) if stat.st_uid == rustix::process::geteuid().as_raw() => {
                open_own_unreadable(at.src.as_fd(), name, stat)?
            }
            src => src.map_err(|e| ErrorKind::io("open file to copy", e))?,
        };
        let opened = stat_fd(src.as_fd())?;
        if Id::of(&opened) != Id::of(stat) || FileType::from_raw_mode(opened.st_mode) != FileType::RegularFile
        {
            return Err(changed());
        }
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dst = rustix::fs::openat(&at.dst, name, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| ErrorKind::io("create file", e))?;
        copy_data(src.as_fd(), dst.as_fd(), u64::try_from(stat.st_size).unwrap_or(0))?;
        self.metadata(Node::Open(src.as_fd()), Node::Open(dst.as_fd()), stat, false)
    }

    /// Gives `dst` the owner, xattrs, mode and times in `stat` and `src`'s xattrs.
    fn metadata(&mut self, src: Node<'_>, dst: Node<'_>, stat: &Stat, root: bool) -> Result<()> {
        let owned = self.skips.done(dst.chown(stat), &[Errno::PERM], skips::CHOWN, "chown")?;
        self.xattrs(src, dst, root)?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != FileType::Symlink {
            let mode = if owned && self.owners_known {
                stat.st_mode & 0o7777
            } else {
                self.unowned_mode(dst, stat, kind)?
            };
            dst.chmod(Mode::from_raw_mode(mode), kind)?;
        }
        dst.set_times(stat).map_err(|e| ErrorKind::io("utimes", e))
    }

    /// The mode of `dst`, a copy of `stat` whose owner could not be kept: without the
    /// set-id bits its actual owner may not have (see [`setid`]).
    fn unowned_mode(&mut self, dst: Node<'_>, stat: &Stat, kind: FileType) -> Result<u32> {
        let copy = dst.stat()?;
        let forbidden = if self.owners_known {
            setid::forbidden((stat.st_uid, stat.st_gid), (copy.st_uid, copy.st_gid), kind)
        } else {
            setid::forbidden_unknown(kind)
        };
        self.unowned.set(Id::of(&copy), forbidden);
        let allowed = self.unowned.allowed(Id::of(&copy), stat.st_mode & 0o7777);
        setid::count(self.skips, allowed)
    }

    /// Copies the xattrs of `src` to `dst`, but the received record on the root.
    fn xattrs(&mut self, src: Node<'_>, dst: Node<'_>, root: bool) -> Result<()> {
        let len = match src.list_xattrs(&mut self.names) {
            Ok(len) => len,
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(ErrorKind::io("list xattrs", e)),
        };
        let names = self.names.get(..len).unwrap_or_default();
        for name in names.split(|&byte| byte == 0).filter(|name| !name.is_empty()) {
            if root && name == RECEIVED_XATTR.as_bytes() {
                continue;
            }
            let len = match src.get_xattr(name, &mut self.value) {
                Ok(len) => len,
                Err(Errno::NODATA) => continue,
                Err(e) => return Err(ErrorKind::io("read xattr", e)),
            };
            let result = dst.set_xattr(name, self.value.get(..len).unwrap_or_default());
            self.skips.check(result, &skips::XATTR_REFUSALS, skips::xattr(name), "set xattr")?;
        }
        Ok(())
    }
}

/// Opens for reading a regular file the user owns but may not read (e.g. mode 000,
/// received without privileges): grants itself read permission just long enough to
/// open it, then puts the mode back (only the source's ctime changes).
fn open_own_unreadable(dir: BorrowedFd<'_>, name: &CStr, stat: &Stat) -> Result<OwnedFd> {
    let node =
        rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ErrorKind::io("open file to copy", e))?;
    let found = stat_fd(node.as_fd())?;
    if Id::of(&found) != Id::of(stat) || FileType::from_raw_mode(found.st_mode) != FileType::RegularFile {
        return Err(changed());
    }
    let path = proc_path(node.as_fd(), None);
    let mode = Mode::from_raw_mode(found.st_mode & 0o7777);
    rustix::fs::chmod(&path, mode | Mode::RUSR).map_err(|e| ErrorKind::io("chmod file to copy", e))?;
    let opened = open_noatime(rustix::fs::CWD, &path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC);
    let restored = rustix::fs::chmod(&path, mode);
    let src = opened.map_err(|e| ErrorKind::io("open file to copy", e))?;
    restored.map_err(|e| ErrorKind::io("restore the mode of a copied file", e))?;
    Ok(src)
}

/// Copies the `size` bytes of `src` into the empty `dst`, keeping holes.
fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, size: u64) -> Result<()> {
    match btrfs::clone_file(src, dst) {
        Ok(()) => return Ok(()),
        Err(err) if err.errno().is_some_and(|e| REFLINK_FALLBACK.contains(&e)) => {}
        Err(err) => return Err(err.into()),
    }
    let mut offset = 0;
    while let Some((start, end)) = next_data(src, offset, size)? {
        copy_range(src, dst, start, end)?;
        offset = end;
    }
    rustix::fs::ftruncate(dst, size).map_err(|e| ErrorKind::io("truncate", e))
}

/// The next data segment of `fd` at or after `offset` and before `size`, as `(start, end)`.
fn next_data(fd: BorrowedFd<'_>, offset: u64, size: u64) -> Result<Option<(u64, u64)>> {
    if offset >= size {
        return Ok(None);
    }
    let start = match rustix::fs::seek(fd, SeekFrom::Data(offset)) {
        Ok(start) if start < size => start,
        Ok(_) | Err(Errno::NXIO) => return Ok(None),
        Err(e) => return Err(ErrorKind::io("seek data", e)),
    };
    let end = rustix::fs::seek(fd, SeekFrom::Hole(start)).map_err(|e| ErrorKind::io("seek hole", e))?;
    if end <= start {
        return Err(changed());
    }
    Ok(Some((start, end.min(size))))
}

/// Copies bytes `start..end` of `src` to the same place in `dst`.
fn copy_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, start: u64, end: u64) -> Result<()> {
    let (mut from, mut to) = (start, start);
    while from < end {
        let len = usize::try_from(end - from).unwrap_or(usize::MAX).min(COPY_RANGE_MAX);
        match rustix::fs::copy_file_range(src, Some(&mut from), dst, Some(&mut to), len) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if COPY_RANGE_FALLBACK.contains(&e) => return copy_by_reading(src, dst, from, end),
            Err(e) => return Err(ErrorKind::io("copy_file_range", e)),
        }
    }
    Ok(())
}

/// Copies bytes `start..end` of `src` to the same place in `dst` with read and write.
fn copy_by_reading(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, start: u64, end: u64) -> Result<()> {
    let mut buf = vec![0; CHUNK];
    let mut offset = start;
    while offset < end {
        let len = usize::try_from(end - offset).map_or(CHUNK, |len| len.min(CHUNK));
        let n = rustix::io::pread(src, &mut buf[..len], offset).map_err(|e| ErrorKind::io("read", e))?;
        if n == 0 {
            break;
        }
        pwrite_all(dst, &buf[..n], offset)?;
        offset += n as u64;
    }
    Ok(())
}

/// Opens the parent of directory `child` through `..`, checking it is `expected`.
pub(super) fn reopen_parent(child: BorrowedFd<'_>, expected: Id) -> Result<OwnedFd> {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let parent =
        rustix::fs::openat(child, c"..", flags, Mode::empty()).map_err(|e| ErrorKind::io("open ..", e))?;
    if Id::of(&stat_fd(parent.as_fd())?) != expected {
        return Err(changed());
    }
    Ok(parent)
}

fn stat_fd(fd: BorrowedFd<'_>) -> Result<Stat> {
    rustix::fs::fstat(fd).map_err(|e| ErrorKind::io("stat", e))
}

/// `path/name`, or `name` when `path` is empty.
pub(super) fn join(path: &[u8], name: &[u8]) -> Vec<u8> {
    if path.is_empty() { name.to_vec() } else { [path, b"/", name].concat() }
}

fn changed() -> ErrorKind {
    ErrorKind::Unsupported("a parent directory that changes while it is copied")
}

fn mount_point() -> ErrorKind {
    ErrorKind::Unsupported("a mount point inside the parent directory")
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::path::Path;

    use rawsend_testutil::tree::{CompareOptions, TreeSnapshot, diff_with};
    use rustix::fs::CWD;
    use tempfile::TempDir;

    use super::*;

    /// Atimes in the future stay put when a file or directory is read under
    /// `relatime` (the default), so the tree can be captured after the copy.
    const ATIME: i64 = 4_000_000_000;
    const MTIME: i64 = 1_500_000_000;
    const MIB: u64 = 1 << 20;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn open_dir(path: &Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .expect("open directory")
    }

    /// Copies `src` into `dst` (strictly as root: nothing may be refused).
    fn copy(src: &Path, dst: &Path) -> Result<Skips> {
        let mut skips = Skips::new(!is_root());
        copy_tree(open_dir(src).as_fd(), open_dir(dst).as_fd(), &mut skips, &mut Unowned::default(), None)?;
        Ok(skips)
    }

    /// Distinct atime and mtime, with nanoseconds, for the `i`th path.
    fn stamp(path: &Path, i: i64) {
        let times = Timestamps {
            last_access: Timespec { tv_sec: ATIME + i, tv_nsec: 100_000_007 * i % 1_000_000_000 },
            last_modification: Timespec { tv_sec: MTIME + i, tv_nsec: 999_999_999 - i },
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).expect("utimensat");
    }

    fn xattr(path: &Path, name: &str, value: &[u8]) {
        rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).expect("setxattr");
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A file of `len` bytes: a 1 MiB hole, 8 KiB of data, then a hole to the end.
    fn sparse(path: &Path, len: u64) {
        let file = fs::File::create(path).expect("create");
        std::os::unix::fs::FileExt::write_all_at(&file, &[0x5a; 8192], MIB).expect("write");
        file.set_len(len).expect("set_len");
    }

    /// A source tree with every kind of node, hard links, xattrs, odd modes and times.
    fn source() -> TempDir {
        source_in(&std::env::temp_dir())
    }

    fn source_in(base: &Path) -> TempDir {
        let dir = tempfile::tempdir_in(base).expect("tempdir");
        let root = dir.path();
        for sub in ["a", "a/sub", "b", "b/deeper"] {
            fs::create_dir(root.join(sub)).expect("mkdir");
        }
        fs::write(root.join("a/f"), b"hello").expect("write");
        fs::write(root.join("a/sub/ro"), b"read-only").expect("write");
        fs::write(root.join("empty"), b"").expect("write");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(root.join("b/big"), &big).expect("write");
        sparse(&root.join("sparse"), 3 * MIB);
        fs::hard_link(root.join("a/f"), root.join("b/deeper/f-link")).expect("link");
        fs::hard_link(root.join("a/f"), root.join("f-link")).expect("link");
        symlink("nowhere/at/all", root.join("dangling")).expect("symlink");
        symlink("/etc/passwd", root.join("b/passwd")).expect("symlink");
        symlink("../../..", root.join("a/up")).expect("symlink");
        symlink("a", root.join("dir-link")).expect("symlink");
        fs::hard_link(root.join("dangling"), root.join("b/dangling-link")).expect("link symlink");
        rustix::fs::mknodat(CWD, root.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o640), 0)
            .expect("mkfifo");
        fs::hard_link(root.join("fifo"), root.join("a/fifo-link")).expect("link fifo");
        xattr(&root.join("a/f"), "user.one", b"1");
        xattr(&root.join("a/f"), "user.empty", b"");
        xattr(&root.join("a"), "user.dir", b"directory");
        xattr(&root.join("a/sub/ro"), "user.ro", b"set before the mode");
        xattr(root, "user.root", b"root");
        xattr(root, RECEIVED_XATTR, b"parent-uuid 7");
        if is_root() {
            privileged(root);
        }
        chmod(&root.join("a/f"), 0o4755);
        chmod(&root.join("a/sub/ro"), 0o444);
        chmod(&root.join("a/sub"), 0o555);
        chmod(&root.join("a"), 0o1777);
        chmod(&root.join("b"), 0o750);
        // Children before their directory: creating entries changes a directory's times.
        let order = [
            "a/f", "a/sub/ro", "empty", "b/big", "sparse", "dangling", "b/passwd", "a/up", "dir-link",
            "fifo", "b/deeper", "a/sub", "a", "b", ".",
        ];
        for (i, path) in (1..).zip(order) {
            stamp(&root.join(path), i);
        }
        if is_root() {
            stamp(&root.join("null"), 100);
            stamp(&root.join("secret"), 101);
        }
        dir
    }

    /// What only root may make: owners, a device node, a trusted.* xattr, an unreadable file.
    fn privileged(root: &Path) {
        let dev = rustix::fs::makedev(1, 3);
        let mode = Mode::from_raw_mode(0o620);
        rustix::fs::mknodat(CWD, root.join("null"), FileType::CharacterDevice, mode, dev).expect("mknod");
        fs::write(root.join("secret"), b"no permissions at all").expect("write");
        chmod(&root.join("secret"), 0o000);
        xattr(&root.join("b/big"), "trusted.rawsend", b"trusted");
        let owner = |path: &str| {
            let (uid, gid) = chown_ids((1234, 5678));
            rustix::fs::chownat(CWD, root.join(path), uid, gid, AtFlags::SYMLINK_NOFOLLOW).expect("chown");
        };
        for path in ["a/f", "b", "b/passwd", "null", "fifo", "."] {
            owner(path);
        }
    }

    fn allocated(path: &Path) -> u64 {
        fs::symlink_metadata(path).expect("stat").blocks() * 512
    }

    #[test]
    fn copies_every_node_with_its_metadata() {
        let src = source();
        let dst = tempfile::tempdir().expect("tempdir");
        assert_copies(src.path(), dst.path());
    }

    /// Copies `src` into the empty `dst` and checks the copy is complete and sparse.
    fn assert_copies(src: &Path, dst: &Path) {
        let skips = copy(src, dst).expect("copy");
        if is_root() {
            assert!(skips.counts().is_empty(), "{:?}", skips.counts());
        }
        let mut expected = TreeSnapshot::capture(src);
        let root = expected.entries.get_mut(&b"."[..]).expect("root entry");
        assert!(root.xattrs.remove(RECEIVED_XATTR.as_bytes()).is_some(), "the source has the record");
        let copied = TreeSnapshot::capture(dst);
        assert!(!copied.entries[&b"."[..]].xattrs.contains_key(RECEIVED_XATTR.as_bytes()));
        let options = CompareOptions { atime: true, dir_size: false, ..CompareOptions::default() };
        assert_eq!(diff_with(&expected, &copied, &options), Vec::<String>::new());

        // Not vacuous: the comparison saw the links, the times, the modes and the symlinks.
        assert_eq!(copied.links.len(), 3, "{:?}", copied.links);
        let entry = |path: &str| &copied.entries[path.as_bytes()];
        assert_eq!(entry("a/f").mode, 0o4755);
        assert_eq!(entry("a").mode, 0o1777);
        assert_eq!(entry("a/sub/ro").xattrs.len(), 1);
        assert_eq!(entry("b/passwd").target.as_deref(), Some(&b"/etc/passwd"[..]));
        assert_eq!(entry("dir-link").kind, rawsend_testutil::tree::FileKind::Symlink);
        assert_eq!(entry(".").mtime_ns, i128::from(MTIME + 15) * 1_000_000_000 + 999_999_984);
        assert_eq!(entry(".").atime_ns, i128::from(ATIME + 15) * 1_000_000_000 + 500_000_105);
        if is_root() {
            assert_eq!(entry("null").rdev, rustix::fs::makedev(1, 3));
            assert_eq!((entry("a/f").uid, entry("a/f").gid), (1234, 5678));
            assert_eq!(entry("secret").mode, 0o000);
        }

        let len = 3 * MIB;
        let (src_size, dst_size) = (allocated(&src.join("sparse")), allocated(&dst.join("sparse")));
        assert!(src_size < len, "the source is sparse: {src_size} bytes allocated");
        assert!(dst_size < len, "the copy is sparse: {dst_size} bytes allocated");
        assert_eq!(fs::metadata(dst.join("sparse")).expect("stat").len(), len);
        restore_permissions(src);
        restore_permissions(dst);
    }

    /// As root, on btrfs: reflinks within the filesystem, read/write to another (ext4 or tmpfs).
    #[test]
    fn copies_by_reflink_and_across_filesystems() {
        if !is_root() {
            eprintln!("skipped: loop-mounting btrfs needs root");
            return;
        }
        let btrfs = rawsend_testutil::LoopFs::btrfs(256 * MIB);
        let src = source_in(btrfs.path());
        let reflinked = tempfile::tempdir_in(btrfs.path()).expect("tempdir");
        assert_copies(src.path(), reflinked.path());
        let elsewhere = tempfile::tempdir().expect("tempdir");
        assert_copies(src.path(), elsewhere.path());
    }

    #[test]
    fn read_write_fallback_copies_only_the_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        sparse(&dir.path().join("src"), 3 * MIB);
        let data: Vec<u8> = (0..3 * CHUNK).map(|i| (i % 253) as u8).collect();
        std::os::unix::fs::FileExt::write_all_at(
            &fs::OpenOptions::new().write(true).open(dir.path().join("src")).expect("open"),
            &data,
            2 * MIB,
        )
        .expect("write");
        let src = fs::File::open(dir.path().join("src")).expect("open");
        let dst = fs::File::create(dir.path().join("dst")).expect("create");
        let (start, end) = (2 * MIB + 10, 2 * MIB + 2 * CHUNK as u64 + 99);
        copy_by_reading(src.as_fd(), dst.as_fd(), start, end).expect("copy");
        let copied = fs::read(dir.path().join("dst")).expect("read");
        assert_eq!(copied.len() as u64, end);
        assert!(copied[..start as usize].iter().all(|&byte| byte == 0));
        assert_eq!(&copied[start as usize..], &data[10..10 + (end - start) as usize]);
        assert!(allocated(&dir.path().join("dst")) < MIB, "the range before was not written");
    }

    /// A source with a setuid file, a setgid file and a setgid directory, and its fingerprint.
    fn set_id_source(owners_kept: bool) -> (TempDir, Fingerprint) {
        let src = tempfile::tempdir().expect("tempdir");
        fs::create_dir(src.path().join("shared")).expect("mkdir");
        fs::write(src.path().join("setuid"), b"#!/bin/sh\n").expect("write");
        fs::write(src.path().join("shared/setgid"), b"#!/bin/sh\n").expect("write");
        chmod(&src.path().join("setuid"), 0o4755);
        chmod(&src.path().join("shared/setgid"), 0o2711);
        chmod(&src.path().join("shared"), 0o2775);
        let fingerprint = super::super::fingerprint::take(open_dir(src.path()).as_fd(), owners_kept);
        (src, fingerprint.expect("fingerprint"))
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).expect("stat").mode() & 0o7777
    }

    /// A parent received without keeping owners: its copies lose their set-id bits (counted
    /// once per file), directories keep S_ISGID, and `--strict` refuses instead.
    #[test]
    fn copies_of_a_parent_without_its_owners_lose_set_id_bits() {
        let (src, fingerprint) = set_id_source(false);
        let dst = tempfile::tempdir().expect("tempdir");
        let (mut skips, mut unowned) = (Skips::new(true), Unowned::default());
        let copied = copy_tree(
            open_dir(src.path()).as_fd(),
            open_dir(dst.path()).as_fd(),
            &mut skips,
            &mut unowned,
            Some(fingerprint),
        )
        .expect("copy");
        assert_eq!(copied.changes, None);
        assert_eq!(mode(&dst.path().join("setuid")), 0o755);
        assert_eq!(mode(&dst.path().join("shared/setgid")), 0o711);
        assert_eq!(mode(&dst.path().join("shared")), 0o2775, "a setgid directory grants nothing");
        assert_eq!(skips.counts().get(skips::SETID), Some(&2));
        assert!(!unowned.is_empty(), "later CHMODs of the copies are masked too");

        let (src, fingerprint) = set_id_source(true);
        let dst = tempfile::tempdir().expect("tempdir");
        copy_tree(
            open_dir(src.path()).as_fd(),
            open_dir(dst.path()).as_fd(),
            &mut skips,
            &mut Unowned::default(),
            Some(fingerprint),
        )
        .expect("copy");
        assert_eq!(mode(&dst.path().join("setuid")), 0o4755, "owners kept: bits kept");

        let (src, fingerprint) = set_id_source(false);
        let dst = tempfile::tempdir().expect("tempdir");
        let mut strict = Skips::new(false);
        let err = copy_tree(
            open_dir(src.path()).as_fd(),
            open_dir(dst.path()).as_fd(),
            &mut strict,
            &mut Unowned::default(),
            Some(fingerprint),
        )
        .expect_err("strict");
        assert!(matches!(err, ErrorKind::Unsupported(m) if m.contains("set-id")), "{err}");
    }

    /// The copy compares the parent with its fingerprint and names what changed since.
    #[test]
    fn copies_report_changes_since_the_fingerprint() {
        let (src, fingerprint) = set_id_source(true);
        fs::write(src.path().join("shared/setgid"), b"appended").expect("write");
        let dst = tempfile::tempdir().expect("tempdir");
        let copied = copy_tree(
            open_dir(src.path()).as_fd(),
            open_dir(dst.path()).as_fd(),
            &mut Skips::new(true),
            &mut Unowned::default(),
            Some(fingerprint),
        )
        .expect("copy");
        assert_eq!(copied.changes.as_deref(), Some("\"shared/setgid\""));
    }

    /// Copying reads the parent with O_NOATIME: as root (or its owner), no atime changes,
    /// even on a filesystem that updates atimes on every read (`strictatime`).
    #[test]
    fn copies_leave_the_source_atimes_alone() {
        if !is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let mnt = tempfile::tempdir().expect("tempdir");
        let flags = rustix::mount::MountFlags::STRICTATIME;
        rustix::mount::mount("tmpfs", mnt.path(), "tmpfs", flags, None).expect("mount tmpfs");
        let _mounted = Mounted(mnt.path().to_path_buf());
        let src = source_in(mnt.path());
        let before = atimes(src.path());
        assert!(before.len() > 10, "{before:?}");
        let dst = tempfile::tempdir().expect("tempdir");
        copy(src.path(), dst.path()).expect("copy");
        assert_eq!(atimes(src.path()), before);
        restore_permissions(src.path());
        restore_permissions(dst.path());
    }

    /// The atimes of every entry under `root` but symlinks (reading a symlink updates its
    /// atime, with no way around it), read without changing any.
    fn atimes(root: &Path) -> Vec<(Vec<u8>, i64, u64)> {
        let mut atimes = Vec::new();
        super::super::fingerprint::walk(open_dir(root).as_fd(), |path, stat| {
            if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
                atimes.push((path.to_vec(), stat.st_atime, stat.st_atime_nsec));
            }
        })
        .expect("walk");
        atimes
    }

    /// Lets a non-root owner delete the tree again.
    fn restore_permissions(root: &Path) {
        chmod(&root.join("a/sub"), 0o755);
    }

    #[test]
    fn refuses_a_destination_that_is_not_empty() {
        let src = source();
        let dst = tempfile::tempdir().expect("tempdir");
        copy(src.path(), dst.path()).expect("first copy");
        let before = TreeSnapshot::capture(dst.path());
        let err = copy(src.path(), dst.path()).expect_err("second copy");
        assert_eq!(err.errno(), Some(Errno::NOTEMPTY.raw_os_error()), "{err}");
        let options = CompareOptions { atime: true, dir_size: false, ..CompareOptions::default() };
        assert_eq!(diff_with(&before, &TreeSnapshot::capture(dst.path()), &options), Vec::<String>::new());
        restore_permissions(src.path());
        restore_permissions(dst.path());
    }

    #[test]
    fn refuses_symlinks_as_source_or_destination() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        fs::create_dir(&src).expect("mkdir");
        fs::write(src.join("f"), b"data").expect("write");
        fs::create_dir(&dst).expect("mkdir");
        symlink("src", dir.path().join("src-link")).expect("symlink");
        symlink("dst", dir.path().join("dst-link")).expect("symlink");
        let link = |name: &str| {
            let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            rustix::fs::open(dir.path().join(name), flags, Mode::empty()).expect("open symlink")
        };
        let mut skips = Skips::new(true);
        let unowned = &mut Unowned::default();
        let err = copy_tree(link("src-link").as_fd(), open_dir(&dst).as_fd(), &mut skips, unowned, None)
            .expect_err("src");
        assert_eq!(err.errno(), Some(Errno::NOTDIR.raw_os_error()), "{err}");
        let err = copy_tree(open_dir(&src).as_fd(), link("dst-link").as_fd(), &mut skips, unowned, None)
            .expect_err("dst");
        assert_eq!(err.errno(), Some(Errno::NOTDIR.raw_os_error()), "{err}");
        assert_eq!(fs::read_dir(&dst).expect("list").count(), 0, "nothing was written through the link");
    }

    #[test]
    fn refuses_a_destination_inside_the_source() {
        let src = tempfile::tempdir().expect("tempdir");
        fs::create_dir(src.path().join("copy")).expect("mkdir");
        let err = copy(src.path(), &src.path().join("copy")).expect_err("copy into itself");
        assert!(matches!(err, ErrorKind::Unsupported(_)), "{err}");
    }

    /// Unmounts (lazily) when dropped, also while unwinding.
    struct Mounted(std::path::PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }

    #[test]
    fn refuses_mount_points_below_the_source() {
        if !is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let src = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(src.path().join("d/mnt")).expect("mkdir");
        fs::create_dir(src.path().join("elsewhere")).expect("mkdir");
        let target = src.path().join("d/mnt");
        let flags = rustix::mount::MountFlags::empty();
        rustix::mount::mount("tmpfs", &target, "tmpfs", flags, None).expect("mount tmpfs");
        let mounted = Mounted(target.clone());
        assert_mount_point_refused(src.path(), "tmpfs (another device)");
        drop(mounted);
        rustix::mount::mount_bind(src.path().join("elsewhere"), &target).expect("bind mount");
        let _mounted = Mounted(target);
        assert_mount_point_refused(src.path(), "bind mount (the same device)");
    }

    fn assert_mount_point_refused(src: &Path, what: &str) {
        let dst = tempfile::tempdir().expect("tempdir");
        let err = copy(src, dst.path()).expect_err(what);
        assert!(matches!(err, ErrorKind::Unsupported(m) if m.contains("mount point")), "{what}: {err}");
    }

    const DEPTH: usize = 3000;

    /// Opens `d/d/.../d`, `depth` levels below `root`, one level at a time.
    fn descend(root: &Path, depth: usize) -> OwnedFd {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        (0..depth)
            .fold(open_dir(root), |fd, _| rustix::fs::openat(&fd, "d", flags, Mode::empty()).expect("d"))
    }

    /// Removes a chain of `depth` directories `d` below `root`, each holding at most a file `leaf`.
    fn remove_chain(root: &Path, depth: usize) {
        let mut fd = descend(root, depth);
        let _ = rustix::fs::unlinkat(&fd, "leaf", AtFlags::empty());
        for _ in 0..depth {
            let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
            let parent = rustix::fs::openat(&fd, "..", flags, Mode::empty()).expect("..");
            rustix::fs::unlinkat(&parent, "d", AtFlags::REMOVEDIR).expect("rmdir");
            fd = parent;
        }
    }

    #[test]
    fn copies_a_deep_tree() {
        let src = tempfile::tempdir().expect("tempdir");
        let mut fd = open_dir(src.path());
        for _ in 0..DEPTH {
            rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).expect("mkdir");
            fd = rustix::fs::openat(&fd, "d", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).expect("d");
        }
        let flags = OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC;
        let leaf = rustix::fs::openat(&fd, "leaf", flags, Mode::from_raw_mode(0o640)).expect("leaf");
        rustix::io::write(&leaf, b"at the bottom").expect("write");
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o750)).expect("chmod");
        let times = |sec| Timestamps {
            last_access: Timespec { tv_sec: ATIME, tv_nsec: 1 },
            last_modification: Timespec { tv_sec: sec, tv_nsec: 2 },
        };
        rustix::fs::futimens(&fd, &times(MTIME)).expect("utimes");
        let top = descend(src.path(), 1);
        rustix::fs::futimens(&top, &times(MTIME + 1)).expect("utimes");

        let dst = tempfile::tempdir().expect("tempdir");
        copy(src.path(), dst.path()).expect("copy");

        let bottom = descend(dst.path(), DEPTH);
        let stat = rustix::fs::fstat(&bottom).expect("stat");
        assert_eq!((stat.st_mode & 0o7777, stat.st_mtime, stat.st_mtime_nsec), (0o750, MTIME, 2));
        let leaf = rustix::fs::openat(&bottom, "leaf", OFlags::RDONLY, Mode::empty()).expect("leaf");
        let mut buf = [0; 64];
        let n = rustix::io::read(&leaf, &mut buf).expect("read");
        assert_eq!(&buf[..n], b"at the bottom");
        let stat = rustix::fs::fstat(descend(dst.path(), 1)).expect("stat");
        assert_eq!((stat.st_mtime, stat.st_mtime_nsec), (MTIME + 1, 2), "set after its contents");
        remove_chain(src.path(), DEPTH);
        remove_chain(dst.path(), DEPTH);
    }
}
