//! What the target knows of the nodes it holds open, so that deciding whether a CHOWN
//! would change anything needs no system call.
//!
//! The kernel sends a CHOWN after every create, usually to the owner the new inode
//! already has. Such a chown still costs an inode update, and it is not a no-op: on a
//! non-directory it clears S_ISUID, S_ISGID (with group-exec) and removes
//! `security.capability`. So it may be skipped only when the node has that owner and,
//! unless it is a directory, neither set-id bits nor a capability. Asking the kernel
//! costs an `fstat` and an `fgetxattr`; for a node this receive created itself the answer
//! is known without asking:
//!
//! - a new inode's uid is the creator's fsuid (the euid: rawsend never calls setfsuid),
//!   its gid the parent's when the parent has S_ISGID, else the creator's fsgid, except
//!   that a `grpid` mount (ext4, xfs) always gives the parent's gid. Both rules agree
//!   when the parent has S_ISGID or its gid is the creator's; otherwise the gid is not
//!   predicted. A new directory inherits the parent's S_ISGID, except on a `grpid` mount
//!   or with xfs' `irix_sgid_inherit`, so a directory made in a set-group-id parent is
//!   not predicted either;
//! - a new file, FIFO or socket is created with mode 0600, a device with 0, a symlink
//!   with 0777, none with xattrs: no set-id bits, no capability;
//! - a chown done sets the owner and never adds bits; a chmod without set-id bits leaves
//!   none (and clears a directory's S_ISGID); a chmod with them, or any xattr change
//!   (a capability, or an ACL that may clear S_ISGID), makes the node unknown again.
//!
//! Predictions are made only on filesystems whose create follows these rules (btrfs,
//! ext2/3/4, xfs, tmpfs); elsewhere (NFS with root squash, FUSE, ...) the server may
//! choose another owner, and every decision asks the kernel as before.

use std::os::fd::BorrowedFd;

use rustix::fs::{FileType, Stat};

use super::setid::SETID;

/// The set-group-id bit.
const SETGID: u32 = 0o2000;

/// `f_type` of the filesystems whose new inodes get their owner as the module docs say.
const PREDICTABLE: [i64; 4] = [
    0x9123_683e, // btrfs
    0xef53,      // ext2, ext3, ext4
    0x5846_5342, // xfs
    0x0102_1994, // tmpfs
];

/// What is known of a node: exact as long as it is held (see the module docs).
///
/// A node other than a directory is known only while it has no set-id bits and no
/// `security.capability`; a directory whatever its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known {
    /// Its owner (uid, gid).
    pub owner: (u32, u32),
    /// Whether it is a directory with S_ISGID (its new entries take its group).
    pub setgid: bool,
}

impl Known {
    /// What a stat of a directory says.
    pub fn of_dir(stat: &Stat) -> Option<Known> {
        (FileType::from_raw_mode(stat.st_mode) == FileType::Directory)
            .then_some(Known { owner: (stat.st_uid, stat.st_gid), setgid: stat.st_mode & SETGID != 0 })
    }

    /// After a chmod to `mode`: unknown if it has set-id bits (the kernel may drop
    /// S_ISGID, and a file with them is not known).
    pub fn after_chmod(self, mode: u32) -> Option<Known> {
        (mode & SETID == 0).then_some(Known { setgid: false, ..self })
    }

    /// After a chown to `owner` was done (bits are only ever cleared by it).
    pub fn after_chown(self, owner: (u32, u32)) -> Known {
        Known { owner, ..self }
    }
}

/// The receiving process as the creator of nodes, on one filesystem.
#[derive(Clone, Copy, Debug)]
pub struct Creator {
    /// Its euid and egid, where new inodes' owners can be predicted.
    ids: Option<(u32, u32)>,
}

impl Creator {
    /// The creator of nodes beneath `root`.
    // `f_type` is an i64 on x86_64, narrower or unsigned elsewhere.
    #[allow(clippy::unnecessary_cast)]
    pub fn of(root: BorrowedFd<'_>) -> Creator {
        let predictable = rustix::fs::fstatfs(root).is_ok_and(|fs| PREDICTABLE.contains(&(fs.f_type as i64)));
        let ids = || (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        Creator { ids: predictable.then(ids) }
    }

    /// What is known of a node of type `kind` just created in a directory known as
    /// `parent`: `None` where the module docs say it cannot be predicted.
    pub fn created(&self, parent: Known, kind: FileType) -> Option<Known> {
        let (uid, gid) = self.ids?;
        let gid = if parent.setgid || parent.owner.1 == gid { parent.owner.1 } else { return None };
        match kind {
            FileType::Directory if parent.setgid => None,
            _ => Some(Known { owner: (uid, gid), setgid: false }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Creator = Creator { ids: Some((1000, 100)) };

    fn dir(owner: (u32, u32), setgid: bool) -> Known {
        Known { owner, setgid }
    }

    #[test]
    fn a_new_node_takes_the_creators_ids_or_a_set_group_id_parents_group() {
        let file = FileType::RegularFile;
        let plain = Known { owner: (1000, 100), setgid: false };
        assert_eq!(ME.created(dir((0, 100), false), file), Some(plain));
        assert_eq!(ME.created(dir((0, 100), false), FileType::Directory), Some(plain));
        let shared = Known { owner: (1000, 50), setgid: false };
        assert_eq!(ME.created(dir((0, 50), true), file), Some(shared));
        assert_eq!(ME.created(dir((0, 50), true), FileType::Symlink), Some(shared));
    }

    #[test]
    fn what_a_grpid_mount_or_sgid_inheritance_could_change_is_not_predicted() {
        assert_eq!(ME.created(dir((0, 50), false), FileType::RegularFile), None, "grpid would give 50");
        assert_eq!(ME.created(dir((0, 50), true), FileType::Directory), None, "S_ISGID inherited or not");
        let elsewhere = Creator { ids: None };
        assert_eq!(elsewhere.created(dir((0, 100), false), FileType::RegularFile), None);
    }

    #[test]
    fn a_chmod_with_set_id_bits_makes_a_node_unknown() {
        let known = dir((0, 0), true);
        assert_eq!(known.after_chmod(0o755), Some(dir((0, 0), false)));
        assert_eq!(known.after_chmod(0o2755), None);
        assert_eq!(known.after_chmod(0o4755), None);
        assert_eq!(known.after_chown((1, 2)), dir((1, 2), true));
    }
}
