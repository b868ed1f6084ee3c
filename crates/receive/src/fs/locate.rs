//! Finding a subvolume on the destination btrfs by UUID: SNAPSHOT parents and CLONE sources.
//!
//! As btrfs-progs does, the UUID tree is searched first for subvolumes
//! *received* from that UUID, then for the one whose own UUID it is, and a
//! transid that differs from the stream's is no reason to refuse: the kernel
//! sends a parent's *own* ctransid, so a stream sent from a copy that was
//! itself received (A → B → C) names B's transid, which C cannot know
//! (fstests btrfs/110), and deduplication into a read-only parent moves its
//! ctransid without changing its content (btrfs/191). Where several
//! subvolumes qualify (one filesystem can hold several copies received from
//! one subvolume), rawsend prefers one whose transid matches (send transid
//! for a received copy, ctransid for a local one) and otherwise takes the
//! first, as btrfs-progs does; [`Located::transid`] says when it differs.
//! Only subvolumes reachable from the mounted subvolume of the destination
//! count; the one chosen is opened beneath the mount point.

use std::ffi::OsString;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rawsend_btrfs as btrfs;
use rawsend_stream::Uuid;
use rustix::fs::{AtFlags, StatxFlags};

use super::tree::open_dir_beneath;
use crate::error::{ErrorKind, Result};
use crate::target::{Candidate, preferred};

/// A subvolume found by UUID.
#[derive(Debug)]
pub struct Located {
    /// Its root, open.
    pub root: OwnedFd,
    /// Its path from the mount point.
    pub path: PathBuf,
    /// Its transid where it differs from the stream's (see the module docs).
    pub transid: Option<u64>,
}

/// Opens the subvolume with (received) UUID `uuid`; see the module docs.
pub fn open_subvolume(dest: BorrowedFd<'_>, uuid: Uuid, ctransid: u64) -> Result<Located> {
    let mut candidates = Vec::new();
    for id in btrfs::subvolume_ids_by_received_uuid(dest, &uuid)? {
        if let Some(info) = btrfs::root_info(dest, id)? {
            candidates.push(Candidate { id, transid: info.stransid });
        }
    }
    if let Some(id) = btrfs::subvolume_id_by_uuid(dest, &uuid)? {
        if let Some(info) = btrfs::root_info(dest, id)? {
            candidates.push(Candidate { id, transid: info.ctransid });
        }
    }
    let mount = Mount::of(dest)?;
    let mut unreachable = false;
    for candidate in preferred(candidates, ctransid) {
        let Some(path) = btrfs::subvolume_path(dest, candidate.id)? else { continue };
        let Ok(relative) = path.strip_prefix(&mount.root) else {
            unreachable = true;
            continue;
        };
        let root = open_beneath_mount(&mount, relative)?;
        let transid = (candidate.transid != ctransid).then_some(candidate.transid);
        return Ok(Located { root, path: relative.to_path_buf(), transid });
    }
    Err(if unreachable {
        ErrorKind::Unsupported("the subvolume is not reachable from the mounted subvolume of the destination")
    } else {
        ErrorKind::SubvolumeNotFound { uuid, ctransid }
    })
}

/// Opens `relative` (a subvolume's path inside the mounted subvolume) beneath the mount point.
fn open_beneath_mount(mount: &Mount, relative: &Path) -> Result<OwnedFd> {
    let mount_dir = rustix::fs::open(
        &mount.point,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| ErrorKind::io("open mount point", e))?;
    if relative.as_os_str().is_empty() {
        return Ok(mount_dir);
    }
    open_dir_beneath(mount_dir.as_fd(), relative.as_os_str().as_encoded_bytes())
}

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8), which rustix does not name.
const STATX_MNT_ID_UNIQUE: StatxFlags = StatxFlags::from_bits_retain(0x4000);

/// The mount holding `fd`, by the id the kernel never gives another mount in the
/// same boot; `None` on a kernel without such ids.
pub fn unique_mount_id(fd: BorrowedFd<'_>) -> Option<u64> {
    let statx = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, STATX_MNT_ID_UNIQUE).ok()?;
    StatxFlags::from_bits_retain(statx.stx_mask).contains(STATX_MNT_ID_UNIQUE).then_some(statx.stx_mnt_id)
}

/// The mount holding a file: where it is mounted and which subvolume path it shows.
struct Mount {
    point: PathBuf,
    root: PathBuf,
}

impl Mount {
    fn of(fd: BorrowedFd<'_>) -> Result<Mount> {
        let statx = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)
            .map_err(|e| ErrorKind::io("statx", e))?;
        let table = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| ErrorKind::io("read /proc/self/mountinfo", e))?;
        table
            .lines()
            .find_map(|line| parse_mountinfo_line(line, statx.stx_mnt_id))
            .ok_or(ErrorKind::Unsupported("cannot find the destination's mount in /proc/self/mountinfo"))
    }
}

/// Parses a mountinfo line if it describes mount `id`: (mount point, root inside the filesystem).
fn parse_mountinfo_line(line: &str, id: u64) -> Option<Mount> {
    let mut fields = line.split(' ');
    if fields.next()?.parse::<u64>().ok()? != id {
        return None;
    }
    let root = unescape(fields.nth(2)?);
    let point = unescape(fields.next()?);
    let root = root.strip_prefix("/").unwrap_or(&root).to_path_buf();
    Some(Mount { point, root })
}

/// Undoes mountinfo's octal escapes (`\040` for space, ...).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn mountinfo_lines() {
        let line = "97 29 0:52 /vol/sub /mnt/with\\040space rw,relatime shared:50 - btrfs /dev/loop0 rw";
        let mount = parse_mountinfo_line(line, 97).unwrap();
        assert_eq!(mount.point, Path::new("/mnt/with space"));
        assert_eq!(mount.root, Path::new("vol/sub"));
        assert!(parse_mountinfo_line(line, 98).is_none());
    }
}
