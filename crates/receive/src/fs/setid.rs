//! Set-id safety when owners cannot be kept: no set-user-ID or set-group-ID
//! file ends up owned by the receiving user.
//!
//! Without privileges the dir target skips CHOWN (see [`super::skips`]), so
//! a file the stream gives to root stays owned by the receiving user. Its
//! set-id bits would then grant the receiving user's identity to whoever
//! runs it: a setuid-root file would become setuid-`nobody`. As `cp -p`
//! does and POSIX asks, S_ISUID is cleared when the file's owner is not the
//! one the stream asked for, and S_ISGID when its group is not.
//!
//! The stream may CHMOD before or after the CHOWN, and again later, while
//! paths get renamed; so the bits a file may not have are remembered by
//! inode ([`Unowned`]), set when its CHOWN is skipped (clearing bits a CHMOD
//! already set) and applied to every later CHMOD. A parent copied for a
//! SNAPSHOT feeds it too. Directories are left alone: their S_ISGID only
//! makes new entries inherit the group, and S_ISUID means nothing on Linux.

use std::collections::HashMap;

use rustix::fs::{FileType, Stat};

use super::skips::{self, Skips};
use crate::error::{ErrorKind, Result};

/// The set-user-ID and set-group-ID bits.
pub const SETID: u32 = 0o6000;
const SETUID: u32 = 0o4000;
const SETGID: u32 = 0o2000;

/// The set-id bits a node of type `kind`, owned by `actual` (uid, gid), may not have
/// when the stream asked for owner `wanted`.
pub fn forbidden(wanted: (u32, u32), actual: (u32, u32), kind: FileType) -> u32 {
    if matches!(kind, FileType::Directory | FileType::Symlink) {
        return 0;
    }
    let uid = if wanted.0 == actual.0 { 0 } else { SETUID };
    let gid = if wanted.1 == actual.1 { 0 } else { SETGID };
    uid | gid
}

/// The set-id bits a node of type `kind` may not have when the owner the stream gave it
/// is unknown (a parent received without keeping owners).
pub fn forbidden_unknown(kind: FileType) -> u32 {
    if matches!(kind, FileType::Directory | FileType::Symlink) { 0 } else { SETID }
}

/// Device and inode number: which inode a stat describes (stable across renames).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Id {
    dev: u64,
    ino: u64,
}

impl Id {
    /// The inode `stat` describes.
    pub fn of(stat: &Stat) -> Id {
        Id { dev: stat.st_dev, ino: stat.st_ino }
    }
}

/// What is known of an inode whose owner is not the stream's.
#[derive(Clone, Copy, Debug)]
struct Lost {
    /// Set-id bits it may not have.
    forbidden: u32,
    /// Whether clearing its bits was counted already.
    counted: bool,
}

/// Inodes whose owner could not be set as the stream says, with the set-id bits they
/// may not have.
#[derive(Debug, Default)]
pub struct Unowned {
    lost: HashMap<Id, Lost>,
}

/// A mode with forbidden set-id bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowed {
    /// The mode to set.
    pub mode: u32,
    /// Whether bits were cleared on this inode for the first time (to count it once).
    pub newly_cleared: bool,
}

impl Unowned {
    /// Whether every inode's owner is as the stream says (or was never given).
    pub fn is_empty(&self) -> bool {
        self.lost.is_empty()
    }

    /// Remembers the set-id bits inode `id` may not have (none: its owner is right).
    pub fn set(&mut self, id: Id, forbidden: u32) {
        if forbidden == 0 {
            self.lost.remove(&id);
        } else {
            let counted = self.lost.get(&id).is_some_and(|lost| lost.counted);
            self.lost.insert(id, Lost { forbidden, counted });
        }
    }

    /// Forgets inode `id` (its number now belongs to a new node).
    pub fn forget(&mut self, id: Id) {
        self.lost.remove(&id);
    }

    /// `mode` for inode `id` without the set-id bits it may not have.
    pub fn allowed(&mut self, id: Id, mode: u32) -> Allowed {
        let Some(lost) = self.lost.get_mut(&id) else { return Allowed { mode, newly_cleared: false } };
        let cleared = mode & lost.forbidden != 0;
        let newly_cleared = cleared && !lost.counted;
        lost.counted |= cleared;
        Allowed { mode: mode & !lost.forbidden, newly_cleared }
    }
}

/// The mode to set after [`Unowned::allowed`]: clearing bits is counted under
/// [`skips::SETID`] once per inode, or refused where skips are not allowed (`--strict`).
pub fn count(skips: &mut Skips, allowed: Allowed) -> Result<u32> {
    if allowed.newly_cleared && !skips.skip(skips::SETID) {
        return Err(ErrorKind::Unsupported("set-id bits on a file whose owner could not be set"));
    }
    Ok(allowed.mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Id = Id { dev: 1, ino: 2 };

    #[test]
    fn forbids_the_bits_of_the_owner_that_was_not_kept() {
        let file = FileType::RegularFile;
        assert_eq!(forbidden((0, 0), (65534, 65534), file), SETUID | SETGID);
        assert_eq!(forbidden((0, 65534), (65534, 65534), file), SETUID);
        assert_eq!(forbidden((65534, 0), (65534, 65534), file), SETGID);
        assert_eq!(forbidden((65534, 65534), (65534, 65534), file), 0);
        for kind in [FileType::Fifo, FileType::CharacterDevice, FileType::Socket] {
            assert_eq!(forbidden((0, 0), (1, 1), kind), SETUID | SETGID, "{kind:?}");
        }
        assert_eq!(forbidden((0, 0), (1, 1), FileType::Directory), 0, "a setgid directory is harmless");
        assert_eq!(forbidden((0, 0), (1, 1), FileType::Symlink), 0, "a symlink has no mode");
        assert_eq!(forbidden_unknown(file), SETUID | SETGID);
        assert_eq!(forbidden_unknown(FileType::Directory), 0);
    }

    #[test]
    fn chmod_after_a_skipped_chown_loses_only_the_forbidden_bits() {
        let mut unowned = Unowned::default();
        unowned.set(ID, SETUID);
        assert_eq!(unowned.allowed(ID, 0o6755), Allowed { mode: 0o2755, newly_cleared: true });
        assert_eq!(
            unowned.allowed(ID, 0o4711),
            Allowed { mode: 0o0711, newly_cleared: false },
            "counted once"
        );
        assert_eq!(unowned.allowed(ID, 0o0644), Allowed { mode: 0o0644, newly_cleared: false });
        let other = Id { dev: 1, ino: 3 };
        assert_eq!(unowned.allowed(other, 0o6755), Allowed { mode: 0o6755, newly_cleared: false });
    }

    #[test]
    fn a_kept_owner_or_a_new_inode_forgets_the_restriction() {
        let mut unowned = Unowned::default();
        unowned.set(ID, SETUID | SETGID);
        assert!(unowned.allowed(ID, 0o4755).newly_cleared);
        unowned.set(ID, SETGID);
        assert_eq!(unowned.allowed(ID, 0o6755), Allowed { mode: 0o4755, newly_cleared: false });
        unowned.set(ID, 0);
        assert!(unowned.is_empty());
        assert_eq!(unowned.allowed(ID, 0o6755).mode, 0o6755);
        unowned.set(ID, SETUID);
        unowned.forget(ID);
        assert_eq!(unowned.allowed(ID, 0o4755).mode, 0o4755);
    }
}
