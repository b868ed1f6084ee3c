//! Safe, fd-relative access to the subvolume being received.
//!
//! Every directory is opened from the subvolume root with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`, so no component may be a symlink and nothing outside
//! the root is reachable, whatever the stream planted earlier. The last
//! component is always acted on relative to its parent's fd with no-follow
//! calls; data files are first opened `O_PATH | O_NOFOLLOW`, type-checked,
//! and only then reopened for I/O through `/proc/self/fd`, so a symlink,
//! FIFO or device node in the way is never opened for reading or writing.
//!
//! Directory fds are cached by path (invalidated on rename and rmdir), and
//! the last data file stays open between writes; a file created here stays open
//! from its create, so its data needs no reopen. With each fd the tree keeps
//! what is known of its node (`Known`: see `known`).
//!
//! The tree also remembers *absent* nodes: device nodes the dir target was
//! not allowed to create. Later commands on them are no-ops, and renames and
//! removals keep the record in step with the stream's view of the tree.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::rc::Rc;

use rawsend_stream::StreamPath;
use rustix::fs::{Dir, FileType, Mode, OFlags, ResolveFlags};

use super::known::{Creator, Known};
use crate::error::{ErrorKind, Result};

/// Most directory fds kept open at once.
const DIR_CACHE_LIMIT: usize = 512;

/// The open subvolume root and caches of fds beneath it.
pub struct Tree {
    root: Held<Rc<OwnedFd>>,
    dirs: BTreeMap<Vec<u8>, Held<Rc<OwnedFd>>>,
    /// The data file kept open, by path.
    file: Option<(Vec<u8>, Held<OwnedFd>)>,
    absent: BTreeMap<Vec<u8>, ()>,
    creator: Creator,
    /// The node created last if it is not held open (a symlink, FIFO, socket or device),
    /// by path, and what is known of it.
    unheld: Option<(Vec<u8>, Known)>,
}

/// An open fd and what is known of its node.
struct Held<F> {
    fd: F,
    known: Option<Known>,
}

impl<F> Held<F> {
    fn unknown(fd: F) -> Self {
        Held { fd, known: None }
    }
}

/// Resolution flags for every lookup beneath the root.
fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV
}

/// Flags of every directory open.
const DIR_FLAGS: OFlags =
    OFlags::DIRECTORY.union(OFlags::RDONLY).union(OFlags::CLOEXEC).union(OFlags::NOFOLLOW);

/// Opens directory `path` (a relative, validated path) beneath `base`.
pub fn open_dir_beneath(base: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd> {
    rustix::fs::openat2(base, path, DIR_FLAGS, Mode::empty(), beneath())
        .map_err(|e| ErrorKind::io("open directory", e))
}

/// Like [`open_dir_beneath`], for listing without changing the directory's atime:
/// `O_NOATIME` where permitted (the owner, or `CAP_FOWNER`), else without it.
pub fn open_dir_noatime(base: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd> {
    let flags = DIR_FLAGS | OFlags::NOATIME;
    match rustix::fs::openat2(base, path, flags, Mode::empty(), beneath()) {
        Err(rustix::io::Errno::PERM) => open_dir_beneath(base, path),
        dir => dir.map_err(|e| ErrorKind::io("open directory", e)),
    }
}

/// Opens `path` (relative to `dir`, or the magic link `/proc/self/fd/N`) for reading
/// without changing its atime where permitted, like [`open_dir_noatime`].
pub fn open_noatime(
    dir: BorrowedFd<'_>,
    path: &std::ffi::OsStr,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    match rustix::fs::openat(dir, path, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, path, flags, Mode::empty()),
        file => file,
    }
}

/// The names in directory `dir`, without `.` and `..`.
pub fn list(dir: BorrowedFd<'_>) -> Result<Vec<CString>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir).map_err(|e| ErrorKind::io("read directory", e))? {
        let entry = entry.map_err(|e| ErrorKind::io("read directory", e))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Removes directory `name` in `parent` and everything beneath it, never following a
/// symlink (a symlink is removed, not its target) and never leaving the filesystem.
/// Depth is bounded by the stream's path limit; each level holds one fd.
pub fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    let dir = open_dir_beneath(parent, name)?;
    for entry in list(dir.as_fd())? {
        match rustix::fs::unlinkat(&dir, entry.as_c_str(), rustix::fs::AtFlags::empty()) {
            Ok(()) => {}
            Err(rustix::io::Errno::ISDIR) => remove_tree(dir.as_fd(), entry.as_bytes())?,
            Err(e) => return Err(ErrorKind::io("remove", e)),
        }
    }
    rustix::fs::unlinkat(parent, name, rustix::fs::AtFlags::REMOVEDIR).map_err(|e| ErrorKind::io("remove", e))
}

/// `/proc/self/fd/N` (plus `/name` when given): reaches exactly the inode an fd holds.
pub fn proc_path(fd: BorrowedFd<'_>, name: Option<&[u8]>) -> OsString {
    let mut path = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(name) = name {
        path.push(b'/');
        path.extend_from_slice(name);
    }
    OsString::from_vec(path)
}

impl Tree {
    /// Wraps the open root directory of a subvolume.
    pub fn new(root: OwnedFd) -> Self {
        let creator = Creator::of(root.as_fd());
        let root = Held::unknown(Rc::new(root));
        Tree { root, dirs: BTreeMap::new(), file: None, absent: BTreeMap::new(), creator, unheld: None }
    }

    /// The root directory.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.fd.as_fd()
    }

    /// The directory at `path`.
    pub fn dir(&mut self, path: StreamPath<'_>) -> Result<Rc<OwnedFd>> {
        if path.is_root() {
            return Ok(self.root.fd.clone());
        }
        if let Some(dir) = self.dirs.get(path.as_bytes()) {
            return Ok(dir.fd.clone());
        }
        let fd = Rc::new(open_dir_beneath(self.root(), path.as_bytes())?);
        self.cache_dir(path.as_bytes(), Held::unknown(fd.clone()));
        Ok(fd)
    }

    /// The parent directory of `path` and its last component; the root has none.
    pub fn parent<'p>(&mut self, path: StreamPath<'p>) -> Result<(Rc<OwnedFd>, &'p [u8])> {
        let (parent, name) =
            path.split_last().ok_or(ErrorKind::Invalid("operation needs a name, not the root"))?;
        Ok((self.dir(parent)?, name))
    }

    /// An `O_PATH` fd of the node at `path` itself (a final symlink is not followed).
    pub fn node(&mut self, path: StreamPath<'_>) -> Result<OwnedFd> {
        let (dir, name) = match path.split_last() {
            Some((parent, name)) => (self.dir(parent)?, name),
            None => (self.root.fd.clone(), &b"."[..]),
        };
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(dir.as_fd(), name, flags, Mode::empty()).map_err(|e| ErrorKind::io("open", e))
    }

    /// A read-write fd of the regular file at `path` (kept open for the next call).
    pub fn file(&mut self, path: StreamPath<'_>) -> Result<BorrowedFd<'_>> {
        if self.file.as_ref().is_none_or(|(cached, _)| cached != path.as_bytes()) {
            let fd = self.open_regular(path, OFlags::RDWR)?;
            self.file = Some((path.as_bytes().to_vec(), Held::unknown(fd)));
        }
        Ok(self.file.as_ref().expect("just set").1.fd.as_fd())
    }

    /// Opens a regular file for reading, without changing its atime where permitted.
    pub fn open_reading(&mut self, path: StreamPath<'_>) -> Result<OwnedFd> {
        match self.open_regular(path, OFlags::RDONLY | OFlags::NOATIME) {
            Err(err) if err.errno() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                self.open_regular(path, OFlags::RDONLY)
            }
            file => file,
        }
    }

    /// Opens a regular file with `access` (`RDONLY`, `RDWR`) without ever opening anything else.
    pub fn open_regular(&mut self, path: StreamPath<'_>, access: OFlags) -> Result<OwnedFd> {
        let node = self.node(path)?;
        let stat = rustix::fs::fstat(&node).map_err(|e| ErrorKind::io("stat", e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(ErrorKind::Invalid("data command on something that is not a regular file"));
        }
        // No O_NOFOLLOW: /proc/self/fd/N is a magic link to exactly the inode checked above.
        let flags = access | OFlags::CLOEXEC;
        rustix::fs::open(proc_path(node.as_fd(), None), flags, Mode::empty())
            .map_err(|e| ErrorKind::io("reopen file", e))
    }

    /// Closes the kept data file (fs-verity needs no writable fd open).
    pub fn close_file(&mut self) {
        self.file = None;
    }

    /// Remembers a file just created at `path` (opened for writing) for the writes that follow.
    pub fn keep_file(&mut self, path: StreamPath<'_>, fd: OwnedFd) {
        let known = self.created(path, FileType::RegularFile);
        self.file = Some((path.as_bytes().to_vec(), Held { fd, known }));
    }

    /// Opens and caches the directory `path` just created as `name` in `parent` (a cached
    /// directory: one component, not followed if it is a symlink, so still beneath the root).
    pub fn keep_dir(&mut self, path: StreamPath<'_>, parent: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
        let fd = rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| ErrorKind::io("open directory", e))?;
        let known = self.created(path, FileType::Directory);
        self.cache_dir(path.as_bytes(), Held { fd: Rc::new(fd), known });
        Ok(())
    }

    /// Remembers what is known of the node of type `kind` just created at `path`, which
    /// is not held open.
    pub fn keep_unheld(&mut self, path: StreamPath<'_>, kind: FileType) {
        self.unheld = self.created(path, kind).map(|known| (path.as_bytes().to_vec(), known));
    }

    /// What is known of the node of type `kind` just created at `path`, from what is
    /// known of its parent (asked of the kernel once, if nothing is known of it yet).
    fn created(&mut self, path: StreamPath<'_>, kind: FileType) -> Option<Known> {
        let (parent, _) = path.split_last()?;
        let known = match self.known(parent) {
            Some(known) => known,
            None => {
                let known = Known::of_dir(&rustix::fs::fstat(self.cached(parent)?).ok()?)?;
                self.set_known(parent, Some(known));
                known
            }
        };
        self.creator.created(known, kind)
    }

    /// What is known of the node at `path`, if it is held open (see [`Tree::cached`]) or
    /// the last one created.
    pub fn known(&self, path: StreamPath<'_>) -> Option<Known> {
        match (self.held(path), &self.unheld) {
            (Some((_, known)), _) => known,
            (None, Some((key, known))) if key == path.as_bytes() => Some(*known),
            (None, _) => None,
        }
    }

    /// Records what is now known of the node at `path`, if it is held open.
    pub fn set_known(&mut self, path: StreamPath<'_>, known: Option<Known>) {
        let held = match self.holder(path) {
            Holder::Root => Some(&mut self.root.known),
            Holder::File => self.file.as_mut().map(|(_, file)| &mut file.known),
            Holder::Dirs => self.dirs.get_mut(path.as_bytes()).map(|dir| &mut dir.known),
        };
        if let Some(held) = held {
            *held = known;
        }
    }

    /// Forgets what is known of every held node (after a change that may reach any of them).
    pub fn forget_known(&mut self) {
        self.root.known = None;
        self.dirs.values_mut().for_each(|dir| dir.known = None);
        self.forget_known_file();
    }

    /// Forgets what is known of the kept file and of the last node created (after a change
    /// by path, which may be another hard link of either).
    pub fn forget_known_file(&mut self) {
        if let Some((_, file)) = &mut self.file {
            file.known = None;
        }
        self.unheld = None;
    }

    /// Caches directory `dir` of `path`, emptying the cache first when it is full.
    fn cache_dir(&mut self, path: &[u8], dir: Held<Rc<OwnedFd>>) {
        if self.dirs.len() >= DIR_CACHE_LIMIT {
            self.dirs.clear();
        }
        self.dirs.insert(path.to_vec(), dir);
    }

    /// Forgets cached fds and absent nodes at or beneath `path` (after it was removed or replaced).
    pub fn forget(&mut self, path: StreamPath<'_>) {
        take_under(&mut self.dirs, path.as_bytes());
        take_under(&mut self.absent, path.as_bytes());
        if self.file.as_ref().is_some_and(|(key, _)| is_under(key, path.as_bytes())) {
            self.file = None;
        }
        if self.unheld.as_ref().is_some_and(|(key, _)| is_under(key, path.as_bytes())) {
            self.unheld = None;
        }
    }

    /// Follows a rename in the caches: fds and absent nodes at or beneath `from` move to `to`.
    pub fn renamed(&mut self, from: StreamPath<'_>, to: StreamPath<'_>) {
        self.forget(to);
        let (from, to) = (from.as_bytes(), to.as_bytes());
        let rekey = |key: &[u8]| [to, &key[from.len()..]].concat();
        for (key, fd) in take_under(&mut self.dirs, from) {
            self.dirs.insert(rekey(&key), fd);
        }
        for (key, ()) in take_under(&mut self.absent, from) {
            self.absent.insert(rekey(&key), ());
        }
        if let Some((key, _)) = self.file.as_mut().filter(|(key, _)| is_under(key, from)) {
            *key = rekey(key);
        }
        if let Some((key, _)) = self.unheld.as_mut().filter(|(key, _)| is_under(key, from)) {
            *key = rekey(key);
        }
    }

    /// Records that the node at `path` (relative to the root) was not created.
    pub fn mark_absent(&mut self, path: &[u8]) {
        self.absent.insert(path.to_vec(), ());
    }

    /// The paths of every absent node.
    pub fn absent(&self) -> impl Iterator<Item = &[u8]> {
        self.absent.keys().map(Vec::as_slice)
    }

    /// Whether the node at `path` was not created (see [`Tree::mark_absent`]).
    pub fn is_absent(&self, path: StreamPath<'_>) -> bool {
        self.absent.contains_key(path.as_bytes())
    }

    /// An open fd of `path` if one is cached (its file or its directory), for fd-based calls.
    pub fn cached(&self, path: StreamPath<'_>) -> Option<BorrowedFd<'_>> {
        self.held(path).map(|(fd, _)| fd)
    }

    /// The open fd of `path` and what is known of its node, if one is cached.
    fn held(&self, path: StreamPath<'_>) -> Option<(BorrowedFd<'_>, Option<Known>)> {
        match self.holder(path) {
            Holder::Root => Some((self.root.fd.as_fd(), self.root.known)),
            Holder::File => self.file.as_ref().map(|(_, file)| (file.fd.as_fd(), file.known)),
            Holder::Dirs => self.dirs.get(path.as_bytes()).map(|dir| (dir.fd.as_fd(), dir.known)),
        }
    }

    /// Where `path`'s held fd would be: the one place that says in what order they are
    /// looked up, for [`Tree::held`] and [`Tree::set_known`].
    fn holder(&self, path: StreamPath<'_>) -> Holder {
        match &self.file {
            _ if path.is_root() => Holder::Root,
            Some((key, _)) if key == path.as_bytes() => Holder::File,
            _ => Holder::Dirs,
        }
    }
}

/// Where a held fd is kept (see [`Tree::holder`]).
enum Holder {
    Root,
    /// The data file kept open.
    File,
    /// The directory cache, if it has `path`.
    Dirs,
}

/// Removes and returns the entries of `map` at or beneath path `prefix`.
fn take_under<V>(map: &mut BTreeMap<Vec<u8>, V>, prefix: &[u8]) -> Vec<(Vec<u8>, V)> {
    // Keys starting with `prefix` sort together right from it; of those, only
    // `prefix` itself and `prefix/...` are beneath it.
    let keys: Vec<Vec<u8>> = map
        .range::<[u8], _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
        .map(|(key, _)| key)
        .take_while(|key| key.starts_with(prefix))
        .filter(|key| is_under(key, prefix))
        .cloned()
        .collect();
    keys.into_iter()
        .map(|key| {
            let value = map.remove(&key).expect("listed");
            (key, value)
        })
        .collect()
}

/// Whether `key` is `prefix` itself or a path beneath it.
fn is_under(key: &[u8], prefix: &[u8]) -> bool {
    key.starts_with(prefix) && (key.len() == prefix.len() || key[prefix.len()] == b'/')
}
