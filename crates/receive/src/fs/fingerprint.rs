//! Fingerprints of received directories: noticing a parent edited after it was received.
//!
//! A btrfs parent is a read-only snapshot; a plain directory can be edited
//! after its receive, and an incremental applied on top of an edited copy
//! would differ from the source while looking complete. So the dir target
//! records, with the received UUID, what the tree looked like at completion
//! ([`Fingerprint`]), and the parent copy for a SNAPSHOT compares it
//! ([`Drift`]), refusing a parent that changed.
//!
//! The fingerprint holds the number of entries beneath the root, the
//! highest ctime among them, and the root's own mode, owner and mtime. Users
//! cannot set a ctime: any later change to an entry (data, mode, owner,
//! xattrs, a rename, which updates the renamed inode's ctime on ext4, xfs,
//! btrfs and tmpfs) makes its ctime newer than the recorded one; creating an
//! entry brings a new ctime; removing one changes the count and its
//! directory's ctime (or, in the root, the root's mtime). The root's own
//! ctime is left out because writing the record (an xattr on the root)
//! changes it.
//!
//! Timestamps are coarse (one clock tick): an edit in the same tick as the
//! last received change could carry the same ctime. [`take`] therefore
//! waits, after the walk, until the clock has moved past the highest ctime
//! by more than a tick (at most [`SETTLE`] plus that margin).
//!
//! Walking the tree reads its directories with `O_NOATIME` where permitted,
//! so recording a fingerprint changes no atime.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Stat};

use super::copy::{join, reopen_parent};
use super::setid::Id;
use super::tree::{list, open_dir_noatime};
use crate::error::{ErrorKind, Result};

/// Directory levels whose fds stay open during the walk; deeper ones are reopened through `..`.
const FD_LEVELS: usize = 64;
/// More than one clock tick of file timestamps (HZ >= 100).
const TICK: Duration = Duration::from_millis(20);
/// Longest wait for the clock to pass the highest ctime (a ctime further in the future,
/// after a clock step, is not waited for).
const SETTLE: Duration = Duration::from_secs(1);
/// Changed entries named in the error; the rest are counted.
const NAMED: usize = 5;

/// A time in ns since the epoch.
type Nanos = i128;

/// What a complete directory looked like when its record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Entries beneath the root (names: a file with two links counts twice).
    pub entries: u64,
    /// The highest ctime among them (ns since the epoch; 0 without entries).
    pub ctime: Nanos,
    /// The root's own state.
    pub root: Root,
    /// Whether every node's owner was the stream's (false: see [`super::setid`]).
    pub owners_kept: bool,
}

/// The root's mode, owner and mtime: what its ctime would otherwise reveal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Nanos,
}

impl Root {
    fn of(stat: &Stat) -> Root {
        Root {
            mode: stat.st_mode,
            uid: stat.st_uid,
            gid: stat.st_gid,
            mtime: nanos(stat.st_mtime, stat.st_mtime_nsec),
        }
    }
}

fn nanos(sec: impl Into<i64>, nsec: impl TryInto<i64>) -> Nanos {
    Nanos::from(sec.into()) * 1_000_000_000 + Nanos::from(nsec.try_into().unwrap_or(0))
}

fn ctime(stat: &Stat) -> Nanos {
    nanos(stat.st_ctime, stat.st_ctime_nsec)
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Root { mode, uid, gid, mtime } = self.root;
        let owners = if self.owners_kept { "kept" } else { "lost" };
        write!(
            f,
            "entries={} ctime={} root={mode:o}:{uid}:{gid}:{mtime} owners={owners}",
            self.entries, self.ctime
        )
    }
}

impl Fingerprint {
    /// Parses the words [`Fingerprint`]'s `Display` writes, exactly.
    pub fn parse<'a>(mut words: impl Iterator<Item = &'a str>) -> Option<Fingerprint> {
        let mut field = |key: &str| words.next()?.strip_prefix(key)?.strip_prefix('=');
        let entries = field("entries")?.parse().ok()?;
        let ctime = field("ctime")?.parse().ok()?;
        let mut root = field("root")?.split(':');
        let mode = u32::from_str_radix(root.next()?, 8).ok()?;
        let (uid, gid, mtime) =
            (root.next()?.parse().ok()?, root.next()?.parse().ok()?, root.next()?.parse().ok()?);
        let owners_kept = match field("owners")? {
            "kept" => true,
            "lost" => false,
            _ => return None,
        };
        let parsed = Fingerprint { entries, ctime, root: Root { mode, uid, gid, mtime }, owners_kept };
        (root.next().is_none() && words.next().is_none()).then_some(parsed)
    }
}

/// Fingerprints the complete tree under `root`; `owners_kept`: every owner is the
/// stream's. Returns once a later change can no longer share the highest ctime.
pub fn take(root: BorrowedFd<'_>, owners_kept: bool) -> Result<Fingerprint> {
    let (mut entries, mut highest) = (0, 0);
    walk(root, |_, stat| {
        entries += 1;
        highest = highest.max(ctime(stat));
    })?;
    let stat = rustix::fs::fstat(root).map_err(|e| ErrorKind::io("stat", e))?;
    settle(highest);
    Ok(Fingerprint { entries, ctime: highest, root: Root::of(&stat), owners_kept })
}

/// Waits until the clock is more than a tick past `ctime` (not when that is too far ahead).
fn settle(ctime: Nanos) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| Nanos::try_from(d.as_nanos()).unwrap_or(0));
    let wait = ctime + Nanos::try_from(TICK.as_nanos()).unwrap_or(0) - now;
    if wait > 0 && wait <= Nanos::try_from((SETTLE + TICK).as_nanos()).unwrap_or(0) {
        std::thread::sleep(Duration::from_nanos(u64::try_from(wait).unwrap_or(0)));
    }
}

/// A directory being walked.
struct Level {
    /// Its fd, unless dropped because the walk is too deep (then reopened through `..`).
    fd: Option<OwnedFd>,
    id: Id,
    entries: Vec<CString>,
    /// Length of the walk's path without this directory's name.
    path_len: usize,
}

/// Calls `visit` with the path and stat of every entry beneath `root`, never following a
/// symlink or leaving the filesystem.
pub(super) fn walk(root: BorrowedFd<'_>, mut visit: impl FnMut(&[u8], &Stat)) -> Result<()> {
    let fd = open_dir_noatime(root, b".")?;
    let id = Id::of(&rustix::fs::fstat(&fd).map_err(|e| ErrorKind::io("stat", e))?);
    let mut stack = vec![Level { entries: list(fd.as_fd())?, fd: Some(fd), id, path_len: 0 }];
    let mut path = Vec::new();
    loop {
        let depth = stack.len();
        let Some(level) = stack.last_mut() else { return Ok(()) };
        let dir = level.fd.as_ref().ok_or(ErrorKind::Invalid("walk lost its directory"))?;
        let Some(name) = level.entries.pop() else {
            let done = stack.pop().and_then(|level| level.fd.map(|fd| (fd, level.path_len)));
            let Some((child, path_len)) = done else { continue };
            path.truncate(path_len);
            if let Some(parent) = stack.last_mut().filter(|parent| parent.fd.is_none()) {
                parent.fd = Some(reopen_parent(child.as_fd(), parent.id)?);
            }
            continue;
        };
        let stat = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ErrorKind::io("stat in a received directory", e))?;
        let entry = join(&path, name.to_bytes());
        visit(&entry, &stat);
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            continue;
        }
        let child = open_dir_noatime(dir.as_fd(), name.to_bytes())?;
        let id = Id::of(&rustix::fs::fstat(&child).map_err(|e| ErrorKind::io("stat", e))?);
        if id != Id::of(&stat) {
            return Err(ErrorKind::Unsupported("a received directory that changes while it is recorded"));
        }
        if depth > FD_LEVELS {
            level.fd = None;
        }
        let path_len = path.len();
        path = entry;
        stack.push(Level { entries: list(child.as_fd())?, fd: Some(child), id, path_len });
    }
}

/// Compares a parent being copied with its fingerprint.
#[derive(Debug)]
pub struct Drift {
    expected: Fingerprint,
    entries: u64,
    /// The first changed entries (quoted paths relative to the parent, or the root).
    named: Vec<String>,
    /// Changed entries beyond those named.
    more: u64,
}

impl Drift {
    /// Starts comparing with `expected`.
    pub fn new(expected: Fingerprint) -> Drift {
        Drift { expected, entries: 0, named: Vec::new(), more: 0 }
    }

    /// Notes entry `path` of the parent, with its stat.
    pub fn entry(&mut self, path: &[u8], stat: &Stat) {
        self.entries += 1;
        if ctime(stat) > self.expected.ctime {
            self.changed(format!("{:?}", String::from_utf8_lossy(path)));
        }
    }

    /// Notes the parent's root, with its stat.
    pub fn root(&mut self, stat: &Stat) {
        if Root::of(stat) != self.expected.root {
            self.changed("the directory itself".to_owned());
        }
    }

    fn changed(&mut self, what: String) {
        if self.named.len() < NAMED { self.named.push(what) } else { self.more += 1 }
    }

    /// What changed, if anything (for the error).
    pub fn changes(&self) -> Option<String> {
        let mut parts = self.named.clone();
        if self.more > 0 {
            parts.push(format!("and {} more", self.more));
        }
        if self.entries != self.expected.entries {
            parts.push(format!("{} entries instead of {}", self.entries, self.expected.entries));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use rustix::fs::{Mode, OFlags};

    use super::*;

    fn open(path: &Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap()
    }

    /// The changes `Drift` finds in the tree at `root` against `expected`.
    fn drift(root: &Path, expected: Fingerprint) -> Option<String> {
        let fd = open(root);
        let mut drift = Drift::new(expected);
        walk(fd.as_fd(), |path, stat| drift.entry(path, stat)).unwrap();
        drift.root(&rustix::fs::fstat(&fd).unwrap());
        drift.changes()
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/f"), b"data").unwrap();
        fs::write(dir.path().join("top"), b"top").unwrap();
        symlink("a/b/f", dir.path().join("a/link")).unwrap();
        fs::hard_link(dir.path().join("top"), dir.path().join("a/top-link")).unwrap();
        dir
    }

    #[test]
    fn fingerprints_parse_back_exactly() {
        let root = Root { mode: 0o40755, uid: 0, gid: 65534, mtime: -1_500_000_000_123_456_789 };
        let print = Fingerprint { entries: 12, ctime: 1_700_000_000_999_999_999, root, owners_kept: false };
        let text = print.to_string();
        assert_eq!(Fingerprint::parse(text.split(' ')), Some(print));
        for bad in [
            text.replace("owners=lost", "owners=maybe"),
            text.replace("entries=", "entries=-"),
            text.replace("root=40755", "root=9"),
            format!("{text} extra"),
            text.replace(" owners=lost", ""),
            text.replace(":-1500", ":x"),
        ] {
            assert_eq!(Fingerprint::parse(bad.split(' ')), None, "{bad}");
        }
    }

    #[test]
    fn an_unchanged_tree_matches_its_fingerprint() {
        let dir = tree();
        let print = take(open(dir.path()).as_fd(), true).unwrap();
        assert_eq!(print.entries, 6, "a, a/b, a/b/f, top, a/link, a/top-link");
        assert_eq!(drift(dir.path(), print), None);
    }

    #[test]
    fn every_kind_of_edit_is_named() {
        type Edit = fn(&Path);
        let edits: [(&str, Edit, &str); 7] = [
            ("append", |p| fs::write(p.join("a/b/f"), b"more data").unwrap(), "\"a/b/f\""),
            ("delete a symlink", |p| fs::remove_file(p.join("a/link")).unwrap(), "\"a\""),
            ("add in the root", |p| fs::write(p.join("new"), b"").unwrap(), "\"new\""),
            ("delete in the root", |p| fs::remove_file(p.join("top")).unwrap(), "the directory itself"),
            (
                "chmod",
                |p| {
                    fs::set_permissions(p.join("top"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
                        .unwrap()
                },
                "\"top\"",
            ),
            ("rename", |p| fs::rename(p.join("a/b/f"), p.join("a/b/g")).unwrap(), "\"a/b/g\""),
            (
                "chmod the root",
                |p| fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap(),
                "the directory itself",
            ),
        ];
        for (what, edit, named) in edits {
            let dir = tree();
            let print = take(open(dir.path()).as_fd(), true).unwrap();
            edit(dir.path());
            let changes = drift(dir.path(), print).unwrap_or_else(|| panic!("{what}: not noticed"));
            assert!(changes.contains(named), "{what}: {changes}");
        }
    }

    #[test]
    fn a_deleted_entry_changes_the_count() {
        let dir = tree();
        let print = take(open(dir.path()).as_fd(), true).unwrap();
        fs::remove_file(dir.path().join("a/top-link")).unwrap();
        assert!(drift(dir.path(), print).unwrap().contains("5 entries instead of 6"));
    }

    #[test]
    fn walks_trees_deeper_than_its_open_fds() {
        let dir = tempfile::tempdir().unwrap();
        let mut path = dir.path().to_path_buf();
        for _ in 0..FD_LEVELS * 3 {
            path.push("d");
        }
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("leaf"), b"").unwrap();
        let print = take(open(dir.path()).as_fd(), true).unwrap();
        assert_eq!(print.entries, FD_LEVELS as u64 * 3 + 1);
        assert_eq!(drift(dir.path(), print), None);
    }
}
