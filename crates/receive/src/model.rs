//! The in-memory model target: the executable specification of what a stream does.
//!
//! [`ModelTarget`] applies commands to a tree of inodes in memory, with the
//! semantics of POSIX calls (create fails if the name exists, rename
//! replaces, rmdir needs an empty directory, hard links share an inode) and
//! of btrfs receive (snapshots copy their parent, a complete subvolume
//! records its received UUID and becomes read-only). Tests apply one stream
//! to the model and to real targets and compare. It can neither store
//! encoded extents nor reflink, so the engine's fallbacks are exercised.
//!
//! Times: a real receiver's clock sets the atime and mtime of a new inode, the
//! mtime of a directory whose entries change and the mtime of a file a data
//! command (write, truncate, fallocate) changes, until the stream's UTIMES
//! sets them. The model has no clock:
//! such a time is `None`, and a time is `Some` only when the last thing that
//! set it was a UTIMES.

use std::collections::BTreeMap;

use rawsend_stream::{Rdev, StreamPath, Timespec, Uuid, XattrName};

use crate::error::{ErrorKind, Result};
use crate::resume::{Progress, ResumeState, Saved};
use crate::target::{
    Candidate, Capabilities, CloneSource, EncodedExtent, NodeKind, Outcome, Received, SubvolStart, Target,
    Unfinished, Verity, preferred,
};

/// Largest file the model holds, so a hostile stream cannot exhaust memory.
const MAX_FILE_SIZE: u64 = 1 << 30;

/// What an inode is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Regular file bytes.
    File(Vec<u8>),
    /// Directory entries: name → inode number.
    Dir(BTreeMap<Vec<u8>, u64>),
    /// Symlink target.
    Symlink(Vec<u8>),
    /// Device with full mode and number.
    Device(u64, Rdev),
    /// FIFO.
    Fifo,
    /// Socket.
    Socket,
}

/// One inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// What it is.
    pub content: Content,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access time; `None` where the receiver's clock set it (see the module docs).
    pub atime: Option<Timespec>,
    /// Modification time; `None` where the receiver's clock set it (see the module docs).
    pub mtime: Option<Timespec>,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// btrfs inode flags from FILEATTR.
    pub flags: u64,
    /// fs-verity enabled (ENABLE_VERITY); the data can no longer change.
    pub verity: bool,
}

/// One received subvolume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subvol {
    /// Inodes by number; 0 is the root directory.
    pub inodes: BTreeMap<u64, Inode>,
    /// Received UUID and send transid, once complete.
    pub received: Option<(Uuid, u64)>,
    /// Sender's UUID and ctransid from the stream.
    pub sent_as: (Uuid, u64),
    next_ino: u64,
}

impl Subvol {
    fn new(sent_as: (Uuid, u64)) -> Self {
        let root = Inode::new(Content::Dir(BTreeMap::new()), 0o755);
        Subvol { inodes: BTreeMap::from([(0, root)]), received: None, sent_as, next_ino: 1 }
    }

    /// The inode at `path`, if any.
    pub fn lookup(&self, path: StreamPath<'_>) -> Option<u64> {
        path.components().try_fold(0, |ino, name| match &self.inodes.get(&ino)?.content {
            Content::Dir(entries) => entries.get(name).copied(),
            _ => None,
        })
    }

    /// The inode number at every path (the root is the empty path): trees compare by path
    /// whatever the numbering, and a number found at several paths is a hard link.
    pub fn paths(&self) -> BTreeMap<Vec<u8>, u64> {
        let mut out = BTreeMap::new();
        let mut pending = vec![(Vec::new(), 0u64)];
        while let Some((path, ino)) = pending.pop() {
            if let Content::Dir(entries) = &self.inodes[&ino].content {
                for (name, &child) in entries {
                    let child_path =
                        if path.is_empty() { name.clone() } else { [&path[..], b"/", name].concat() };
                    pending.push((child_path, child));
                }
            }
            out.insert(path, ino);
        }
        out
    }

    /// Every inode by path (directories with their entries dropped), for comparing trees
    /// whatever the inode numbering; `with_flags` false clears FILEATTR flags.
    pub fn by_path(&self, with_flags: bool) -> BTreeMap<Vec<u8>, Inode> {
        let inode_at = |ino: u64| {
            let mut inode = self.inodes[&ino].clone();
            if let Content::Dir(entries) = &mut inode.content {
                entries.clear();
            }
            if !with_flags {
                inode.flags = 0;
            }
            inode
        };
        self.paths().into_iter().map(|(path, ino)| (path, inode_at(ino))).collect()
    }

    fn inode(&mut self, path: StreamPath<'_>) -> Result<&mut Inode> {
        let ino = self.lookup(path).ok_or_else(|| not_found("no such file"))?;
        Ok(self.inodes.get_mut(&ino).expect("looked up"))
    }

    /// Applies `change` to the entries of directory `dir`; when it succeeds, the directory's
    /// mtime is the receiver's clock's, as after any change of a directory's entries.
    fn change_entries<T>(
        &mut self,
        dir: StreamPath<'_>,
        change: impl FnOnce(&mut BTreeMap<Vec<u8>, u64>) -> Result<T>,
    ) -> Result<T> {
        let inode = self.inode(dir)?;
        let Content::Dir(entries) = &mut inode.content else {
            return Err(not_found("parent is not a directory"));
        };
        let changed = change(entries)?;
        inode.mtime = None;
        Ok(changed)
    }

    /// Applies the data command `change` to the bytes of regular file `path`; when it
    /// succeeds, the file's mtime is the receiver's clock's, as after write(2).
    fn change_file(
        &mut self,
        path: StreamPath<'_>,
        change: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let inode = self.inode(path)?;
        match inode {
            Inode { verity: true, .. } => Err(ErrorKind::Invalid("data command on a file with fs-verity")),
            Inode { content: Content::File(bytes), .. } => change(bytes),
            _ => Err(ErrorKind::Invalid("data command on something that is not a regular file")),
        }?;
        inode.mtime = None;
        Ok(())
    }

    /// Adds a new inode at `path`.
    fn add(&mut self, path: StreamPath<'_>, inode: Inode) -> Result<()> {
        let ino = self.next_ino;
        self.add_entry(path, ino, "create")?;
        self.inodes.insert(ino, inode);
        self.next_ino += 1;
        Ok(())
    }

    /// Names inode `ino` at `path`, which must not exist yet (EEXIST for `op` otherwise).
    fn add_entry(&mut self, path: StreamPath<'_>, ino: u64, op: &'static str) -> Result<()> {
        let (parent, name) = path.split_last().ok_or(ErrorKind::Invalid("a new name cannot be the root"))?;
        self.change_entries(parent, |entries| {
            if entries.contains_key(name) {
                return Err(ErrorKind::io(op, std::io::Error::from_raw_os_error(17)));
            }
            entries.insert(name.to_vec(), ino);
            Ok(())
        })
    }

    /// Removes the entry at `path`; drops the inode when no entry names it any more.
    fn remove_entry(&mut self, path: StreamPath<'_>) -> Result<u64> {
        let (parent, name) = path.split_last().ok_or(ErrorKind::Invalid("cannot remove the root"))?;
        let ino = self.change_entries(parent, |entries| {
            entries.remove(name).ok_or_else(|| not_found("no such entry"))
        })?;
        if !self.is_linked(ino) {
            self.inodes.remove(&ino);
        }
        Ok(ino)
    }

    fn is_linked(&self, ino: u64) -> bool {
        self.inodes
            .values()
            .any(|inode| matches!(&inode.content, Content::Dir(e) if e.values().any(|&i| i == ino)))
    }
}

impl Inode {
    fn new(content: Content, mode: u32) -> Self {
        Inode {
            content,
            mode,
            uid: 0,
            gid: 0,
            atime: None,
            mtime: None,
            xattrs: BTreeMap::new(),
            flags: 0,
            verity: false,
        }
    }
}

fn not_found(what: &'static str) -> ErrorKind {
    ErrorKind::io(what, std::io::Error::from_raw_os_error(2))
}

/// Receives into memory. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct ModelTarget {
    /// Subvolumes by name.
    pub subvols: BTreeMap<Vec<u8>, Subvol>,
    /// Resume states of partial subvolumes, by name (see [`crate::resume`]).
    pub states: BTreeMap<Vec<u8>, ResumeState>,
    /// Progress records of partial subvolumes, by name.
    pub progress: BTreeMap<Vec<u8>, Progress>,
    /// Every progress record noted, in order, for tests of what the engine notes.
    pub noted: Vec<Progress>,
    /// Stores encoded extents as they come, unchecked, as btrfs does: as zeros over
    /// their range, for tests of what the engine checks itself. Off: the engine
    /// decodes every extent and writes the plain bytes.
    pub stores_encoded: bool,
    /// The mount id it reports ([`Target::mount_id`]): none by default, as on a kernel
    /// without mount ids; tests change it to model the filesystem mounted again.
    pub mount: Option<u64>,
    current: Option<Vec<u8>>,
}

impl ModelTarget {
    /// An empty destination.
    pub fn new() -> Self {
        ModelTarget::default()
    }

    fn current(&mut self) -> Result<&mut Subvol> {
        let name = self.current.as_ref().ok_or(ErrorKind::NoSubvolume)?;
        Ok(self.subvols.get_mut(name).expect("current subvolume exists"))
    }

    /// A complete subvolume received from `uuid`, preferably with `ctransid`, as every target picks.
    fn find(&self, uuid: Uuid, ctransid: u64) -> Result<&Subvol> {
        let candidates = self
            .subvols
            .values()
            .filter_map(|s| s.received.filter(|(from, _)| *from == uuid).map(|(_, transid)| (s, transid)))
            .map(|(subvol, transid)| Candidate { id: subvol, transid })
            .collect();
        let found = preferred(candidates, ctransid).into_iter().next();
        found.map(|candidate| candidate.id).ok_or(ErrorKind::SubvolumeNotFound { uuid, ctransid })
    }
}

impl Target for ModelTarget {
    fn capabilities(&self) -> Capabilities {
        Capabilities { encoded_write: self.stores_encoded, ..Capabilities::default() }
    }

    fn begin_subvol(&mut self, start: &SubvolStart<'_>) -> Result<()> {
        if self.subvols.contains_key(start.name) {
            return Err(ErrorKind::io("create subvolume", std::io::Error::from_raw_os_error(17)));
        }
        let mut subvol = match start.parent {
            None => Subvol::new((start.uuid, start.ctransid)),
            Some((uuid, ctransid)) => self.find(uuid, ctransid)?.clone(),
        };
        subvol.received = None;
        subvol.sent_as = (start.uuid, start.ctransid);
        self.subvols.insert(start.name.to_vec(), subvol);
        self.current = Some(start.name.to_vec());
        Ok(())
    }

    fn finish_subvol(&mut self) -> Result<()> {
        let subvol = self.current()?;
        subvol.received = Some(subvol.sent_as);
        let name = self.current.take().expect("current subvolume");
        self.states.remove(&name);
        self.progress.remove(&name);
        Ok(())
    }

    fn abandon_subvol(&mut self) -> Option<Unfinished> {
        let name = self.current.take()?;
        Some(Unfinished {
            place: format!("model subvolume {}", String::from_utf8_lossy(&name)),
            cleanup: None,
            partial: None,
            resumable: false,
        })
    }

    fn received_as(&mut self, name: &[u8]) -> Result<Option<Received>> {
        let place = format!("model subvolume {}", String::from_utf8_lossy(name));
        let received = self.subvols.get(name).and_then(|subvol| subvol.received);
        Ok(received.map(|(uuid, ctransid)| Received { uuid, ctransid, place }))
    }

    fn saved_resume(&mut self, name: &[u8]) -> Result<Option<Saved>> {
        if self.subvols.get(name).is_none_or(|subvol| subvol.received.is_some()) {
            return Ok(None);
        }
        let place = format!("model subvolume {}", String::from_utf8_lossy(name));
        Ok(self.states.get(name).map(|state| Saved {
            abort: format!("remove {place}"),
            place,
            state: *state,
            progress: self.progress.get(name).cloned(),
        }))
    }

    fn resume_subvol(&mut self, start: &SubvolStart<'_>) -> Result<()> {
        if self.subvols.get(start.name).is_none_or(|subvol| subvol.received.is_some()) {
            return Err(not_found("no partial subvolume of that name"));
        }
        self.current = Some(start.name.to_vec());
        Ok(())
    }

    fn checkpoint(&mut self, state: &ResumeState) -> Result<()> {
        let name = self.current.clone().ok_or(ErrorKind::NoSubvolume)?;
        self.states.insert(name, *state);
        Ok(())
    }

    fn mount_id(&self) -> Option<u64> {
        self.mount
    }

    fn note_progress(&mut self, progress: Option<&Progress>) -> Result<()> {
        let name = self.current.clone().ok_or(ErrorKind::NoSubvolume)?;
        match progress {
            Some(progress) => {
                self.noted.push(progress.clone());
                self.progress.insert(name, progress.clone())
            }
            None => self.progress.remove(&name),
        };
        Ok(())
    }

    fn resumable(&self) -> bool {
        true
    }

    fn exists(&mut self, path: StreamPath<'_>) -> Result<bool> {
        Ok(self.current()?.lookup(path).is_some())
    }

    fn create(&mut self, path: StreamPath<'_>, kind: NodeKind<'_>) -> Result<()> {
        let (content, mode) = match kind {
            NodeKind::File => (Content::File(Vec::new()), 0o600),
            NodeKind::Dir => (Content::Dir(BTreeMap::new()), 0o700),
            NodeKind::Device { mode, rdev } => (Content::Device(mode, rdev), 0),
            NodeKind::Fifo => (Content::Fifo, 0o600),
            NodeKind::Socket => (Content::Socket, 0o600),
            NodeKind::Symlink(target) => (Content::Symlink(target.as_bytes().to_vec()), 0o777),
        };
        self.current()?.add(path, Inode::new(content, mode))
    }

    fn rename(&mut self, from: StreamPath<'_>, to: StreamPath<'_>) -> Result<()> {
        let subvol = self.current()?;
        let ino = subvol.lookup(from).ok_or_else(|| not_found("rename source"))?;
        let (to_parent, to_name) = to.split_last().ok_or(ErrorKind::Invalid("rename onto the root"))?;
        if let Some(existing) = subvol.lookup(to) {
            if existing == ino {
                // rename(2) of a name onto a link of the same inode does nothing.
                return Ok(());
            }
            if matches!(&subvol.inodes[&existing].content, Content::Dir(e) if !e.is_empty()) {
                return Err(ErrorKind::io("rename", std::io::Error::from_raw_os_error(39)));
            }
            subvol.remove_entry(to)?;
        }
        let (from_parent, from_name) = from.split_last().ok_or(ErrorKind::Invalid("rename the root"))?;
        subvol.change_entries(from_parent, |entries| Ok(entries.remove(from_name)))?;
        subvol.change_entries(to_parent, |entries| Ok(entries.insert(to_name.to_vec(), ino)))?;
        Ok(())
    }

    fn link(&mut self, path: StreamPath<'_>, target: StreamPath<'_>) -> Result<()> {
        let subvol = self.current()?;
        let ino = subvol.lookup(target).ok_or_else(|| not_found("link target"))?;
        subvol.add_entry(path, ino, "link")
    }

    fn unlink(&mut self, path: StreamPath<'_>) -> Result<()> {
        let subvol = self.current()?;
        let ino = subvol.lookup(path).ok_or_else(|| not_found("unlink"))?;
        if matches!(subvol.inodes[&ino].content, Content::Dir(_)) {
            return Err(ErrorKind::io("unlink", std::io::Error::from_raw_os_error(21)));
        }
        subvol.remove_entry(path).map(drop)
    }

    fn rmdir(&mut self, path: StreamPath<'_>) -> Result<()> {
        let subvol = self.current()?;
        match subvol.lookup(path).map(|ino| &subvol.inodes[&ino].content) {
            Some(Content::Dir(entries)) if entries.is_empty() => subvol.remove_entry(path).map(drop),
            Some(Content::Dir(_)) => Err(ErrorKind::io("rmdir", std::io::Error::from_raw_os_error(39))),
            _ => Err(not_found("rmdir")),
        }
    }

    fn set_xattr(&mut self, path: StreamPath<'_>, name: XattrName<'_>, value: &[u8]) -> Result<()> {
        self.current()?.inode(path)?.xattrs.insert(name.as_bytes().to_vec(), value.to_vec());
        Ok(())
    }

    fn remove_xattr(&mut self, path: StreamPath<'_>, name: XattrName<'_>) -> Result<()> {
        let removed = self.current()?.inode(path)?.xattrs.remove(name.as_bytes());
        removed.map(drop).ok_or_else(|| ErrorKind::io("no such xattr", std::io::Error::from_raw_os_error(61)))
    }

    fn write(&mut self, path: StreamPath<'_>, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset.checked_add(data.len() as u64).filter(|&end| end <= MAX_FILE_SIZE);
        let end = end.ok_or(ErrorKind::Unsupported("files above 1 GiB in the model"))? as usize;
        self.current()?.change_file(path, |bytes| {
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[offset as usize..end].copy_from_slice(data);
            Ok(())
        })
    }

    fn encoded_write(&mut self, path: StreamPath<'_>, extent: &EncodedExtent<'_>) -> Result<Outcome> {
        if !self.stores_encoded {
            return Ok(Outcome::Fallback);
        }
        let zeros = vec![0; extent.len as usize];
        self.write(path, extent.offset, &zeros).map(|()| Outcome::Done)
    }

    fn clone_range(&mut self, _: StreamPath<'_>, _: u64, _: u64, _: &CloneSource<'_>) -> Result<Outcome> {
        Ok(Outcome::Fallback)
    }

    fn read_clone_source(&mut self, source: &CloneSource<'_>, buf: &mut [u8]) -> Result<usize> {
        let current = self.current.clone().ok_or(ErrorKind::NoSubvolume)?;
        let subvol = match self.subvols.get(&current) {
            Some(s) if s.sent_as.0 == source.uuid => s,
            _ => self.find(source.uuid, source.ctransid)?,
        };
        let ino = subvol.lookup(source.path).ok_or_else(|| not_found("clone source"))?;
        let Content::File(bytes) = &subvol.inodes[&ino].content else {
            return Err(ErrorKind::Invalid("clone source is not a regular file"));
        };
        let start = (source.offset as usize).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }

    fn truncate(&mut self, path: StreamPath<'_>, size: u64) -> Result<()> {
        if size > MAX_FILE_SIZE {
            return Err(ErrorKind::Unsupported("files above 1 GiB in the model"));
        }
        self.current()?.change_file(path, |bytes| {
            bytes.resize(size as usize, 0);
            Ok(())
        })
    }

    fn chmod(&mut self, path: StreamPath<'_>, mode: u32) -> Result<()> {
        let inode = self.current()?.inode(path)?;
        if matches!(inode.content, Content::Symlink(_)) {
            return Err(ErrorKind::Invalid("chmod on a symlink"));
        }
        inode.mode = mode;
        Ok(())
    }

    fn chown(&mut self, path: StreamPath<'_>, uid: u32, gid: u32) -> Result<()> {
        let inode = self.current()?.inode(path)?;
        (inode.uid, inode.gid) = (uid, gid);
        Ok(())
    }

    fn utimes(&mut self, path: StreamPath<'_>, atime: Timespec, mtime: Timespec) -> Result<()> {
        let inode = self.current()?.inode(path)?;
        (inode.atime, inode.mtime) = (Some(atime), Some(mtime));
        Ok(())
    }

    fn fallocate(&mut self, path: StreamPath<'_>, mode: u32, offset: u64, len: u64) -> Result<()> {
        let keep_size = mode & 0x1 != 0;
        let zero = mode & (0x2 | 0x10) != 0;
        let end = offset.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE);
        let end = end.ok_or(ErrorKind::Unsupported("files above 1 GiB in the model"))? as usize;
        self.current()?.change_file(path, |bytes| {
            if !keep_size && bytes.len() < end {
                bytes.resize(end, 0);
            }
            if zero {
                let stop = end.min(bytes.len());
                let start = (offset as usize).min(stop);
                bytes[start..stop].fill(0);
            }
            Ok(())
        })
    }

    fn fileattr(&mut self, path: StreamPath<'_>, flags: u64) -> Result<()> {
        self.current()?.inode(path)?.flags = flags;
        Ok(())
    }

    fn enable_verity(&mut self, path: StreamPath<'_>, _: &Verity<'_>) -> Result<()> {
        let inode = self.current()?.inode(path)?;
        match inode.content {
            Content::File(_) if !inode.verity => {
                inode.verity = true;
                Ok(())
            }
            Content::File(_) => Err(ErrorKind::io("enable verity", std::io::Error::from_raw_os_error(17))),
            _ => Err(ErrorKind::Invalid("fs-verity on something that is not a regular file")),
        }
    }
}
