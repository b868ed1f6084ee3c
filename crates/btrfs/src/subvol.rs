//! Subvolumes: create, snapshot, read-only flag, received UUID, information
//! about the subvolume an fd is in.
//!
//! These are the calls a receiver makes to rebuild subvolumes and the calls
//! a sender makes to check what it is about to send.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::fd::{AsFd, AsRawFd};

use crate::error::{Error, Op, Result, failed};
use crate::ioctl::call;
use crate::raw;
use crate::{RootInfo, Uuid};

/// Copies `name` into a NUL-terminated kernel name field, refusing names
/// the kernel would reject or misread (empty, `.`, `..`, `/`, NUL, too long).
fn fill_name(field: &mut [u8], name: &OsStr) -> Result<()> {
    let bytes = name.as_bytes();
    let invalid = |reason| Error::InvalidName { name: name.to_string_lossy().into_owned(), reason };
    if bytes.is_empty() || bytes == b"." || bytes == b".." {
        return Err(invalid("empty, `.` or `..`"));
    }
    if bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(invalid("contains `/` or NUL"));
    }
    if bytes.len() > raw::BTRFS_VOL_NAME_MAX.min(field.len() - 1) {
        return Err(invalid("longer than 255 bytes"));
    }
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

/// Creates an empty subvolume `name` in the directory open at `dir_fd`.
///
/// # Errors
///
/// [`Error::InvalidName`] before any call; `EEXIST` if the name exists,
/// `EPERM`/`EACCES` without write access to the directory, `EROFS` in a
/// read-only subvolume, `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_SUBVOL_CREATE")]
pub fn create_subvolume(dir_fd: impl AsFd, name: &OsStr) -> Result<()> {
    let mut args = raw::btrfs_ioctl_vol_args { fd: 0, name: [0; raw::BTRFS_PATH_NAME_MAX + 1] };
    fill_name(&mut args.name, name)?;
    // SAFETY: SUBVOL_CREATE takes a `btrfs_ioctl_vol_args` holding no
    // pointers; the name is NUL-terminated by `fill_name`.
    unsafe { call::<{ raw::BTRFS_IOC_SUBVOL_CREATE }, _>(Op::SubvolCreate, dir_fd, &mut args)? };
    Ok(())
}

/// Snapshots the subvolume open at `source_fd` as `name` in the directory
/// open at `dir_fd`, read-only if `read_only`.
///
/// # Errors
///
/// [`Error::InvalidName`] before any call; `EEXIST` if the name exists,
/// `EXDEV` if the source is on another filesystem, `EINVAL` if `source_fd`
/// is not a subvolume root, `EPERM`/`EACCES` without permission, `ENOTTY`
/// off btrfs.
#[doc(alias = "BTRFS_IOC_SNAP_CREATE_V2")]
pub fn snapshot(source_fd: impl AsFd, dir_fd: impl AsFd, name: &OsStr, read_only: bool) -> Result<()> {
    let mut args = raw::btrfs_ioctl_vol_args_v2 {
        fd: i64::from(source_fd.as_fd().as_raw_fd()),
        transid: 0,
        flags: if read_only { raw::BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; raw::BTRFS_SUBVOL_NAME_MAX + 1],
    };
    fill_name(&mut args.name, name)?;
    // SAFETY: SNAP_CREATE_V2 takes a `btrfs_ioctl_vol_args_v2`; it holds no
    // pointers (no qgroup inherit), `fd` is a live borrowed descriptor and
    // the name is NUL-terminated.
    unsafe { call::<{ raw::BTRFS_IOC_SNAP_CREATE_V2 }, _>(Op::SnapCreate, dir_fd, &mut args)? };
    Ok(())
}

fn subvolume_flags(fd: impl AsFd) -> Result<u64> {
    let mut flags = 0u64;
    // SAFETY: SUBVOL_GETFLAGS writes one u64 through the pointer.
    unsafe { call::<{ raw::BTRFS_IOC_SUBVOL_GETFLAGS }, _>(Op::SubvolGetFlags, fd, &mut flags)? };
    Ok(flags)
}

/// Whether the subvolume `fd` is in is read-only.
///
/// # Errors
///
/// `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_SUBVOL_GETFLAGS")]
pub fn is_read_only(fd: impl AsFd) -> Result<bool> {
    Ok(subvolume_flags(fd)? & raw::BTRFS_SUBVOL_RDONLY != 0)
}

/// Makes the subvolume whose root is open at `fd` read-only or writable,
/// keeping its other flags.
///
/// # Errors
///
/// `EINVAL` if `fd` is not a subvolume root, `EPERM` without ownership (or
/// `CAP_FOWNER`), `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_SUBVOL_SETFLAGS")]
pub fn set_read_only(fd: impl AsFd, read_only: bool) -> Result<()> {
    let fd = fd.as_fd();
    let mut flags = subvolume_flags(fd)?;
    if read_only {
        flags |= raw::BTRFS_SUBVOL_RDONLY;
    } else {
        flags &= !raw::BTRFS_SUBVOL_RDONLY;
    }
    // SAFETY: SUBVOL_SETFLAGS reads one u64 through the pointer.
    unsafe { call::<{ raw::BTRFS_IOC_SUBVOL_SETFLAGS }, _>(Op::SubvolSetFlags, fd, &mut flags)? };
    Ok(())
}

/// Records that the subvolume whose root is open at `fd` was received from
/// the subvolume `uuid` at its transaction `stransid`, as a receiver does
/// before making it read-only. Returns the local receive transid.
///
/// # Errors
///
/// `EINVAL` if `fd` is not a subvolume root, `EROFS` if it is already
/// read-only, `EPERM` without ownership or `CAP_FOWNER`, `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_SET_RECEIVED_SUBVOL")]
pub fn set_received_subvol(fd: impl AsFd, uuid: &Uuid, stransid: u64) -> Result<u64> {
    let zero_time = raw::btrfs_ioctl_timespec { sec: 0, nsec: 0 };
    let mut args = raw::btrfs_ioctl_received_subvol_args {
        uuid: uuid.0,
        stransid,
        rtransid: 0,
        stime: zero_time,
        rtime: zero_time,
        flags: 0,
        reserved: [0; 16],
    };
    // SAFETY: SET_RECEIVED_SUBVOL takes a `btrfs_ioctl_received_subvol_args`
    // holding no pointers and writes back into it.
    unsafe { call::<{ raw::BTRFS_IOC_SET_RECEIVED_SUBVOL }, _>(Op::SetReceivedSubvol, fd, &mut args)? };
    Ok(args.rtransid)
}

/// What `BTRFS_IOC_GET_SUBVOL_INFO` reports about a subvolume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubvolumeInfo {
    /// What its root item records (the same as [`crate::root_info`] reads).
    pub root: RootInfo,
    /// Its name in the directory that holds it (empty for the top level).
    pub name: OsString,
    /// Root id of the subvolume holding it; 0 for the top level.
    pub parent_id: u64,
    /// Inode number of the directory holding it.
    pub dirid: u64,
}

/// Information about the subvolume `fd` is in; needs no privileges.
///
/// # Errors
///
/// `ENOTTY` off btrfs or before Linux 4.18.
#[doc(alias = "BTRFS_IOC_GET_SUBVOL_INFO")]
pub fn subvolume_info(fd: impl AsFd) -> Result<SubvolumeInfo> {
    // SAFETY: the struct is plain integers and arrays, for which all-zero
    // bytes are a valid value.
    let mut args: raw::btrfs_ioctl_get_subvol_info_args = unsafe { core::mem::zeroed() };
    // SAFETY: GET_SUBVOL_INFO writes a `btrfs_ioctl_get_subvol_info_args`,
    // which holds no pointers.
    unsafe { call::<{ raw::BTRFS_IOC_GET_SUBVOL_INFO }, _>(Op::GetSubvolInfo, fd, &mut args)? };
    Ok(SubvolumeInfo {
        root: RootInfo {
            id: args.treeid,
            read_only: args.flags & raw::BTRFS_ROOT_SUBVOL_RDONLY != 0,
            uuid: Uuid(args.uuid),
            parent_uuid: Uuid(args.parent_uuid).non_nil(),
            received_uuid: Uuid(args.received_uuid).non_nil(),
            ctransid: args.ctransid,
            otransid: args.otransid,
            stransid: args.stransid,
            rtransid: args.rtransid,
        },
        name: OsString::from_vec(until_nul(&args.name).to_vec()),
        parent_id: args.parent_id,
        dirid: args.dirid,
    })
}

/// The bytes of a kernel C string field before its first NUL.
pub(crate) fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&byte| byte == 0).unwrap_or(field.len());
    &field[..end]
}

/// Looks up `objectid` in tree `treeid` (0: the tree `fd` is in); returns
/// the tree id searched and the path of the inode inside it.
pub(crate) fn ino_lookup(fd: impl AsFd, treeid: u64, objectid: u64) -> Result<(u64, Vec<u8>)> {
    let mut args =
        raw::btrfs_ioctl_ino_lookup_args { treeid, objectid, name: [0; raw::BTRFS_INO_LOOKUP_PATH_MAX] };
    // SAFETY: INO_LOOKUP takes a `btrfs_ioctl_ino_lookup_args` holding no
    // pointers and writes back into it.
    unsafe { call::<{ raw::BTRFS_IOC_INO_LOOKUP }, _>(Op::InoLookup, fd, &mut args)? };
    Ok((args.treeid, until_nul(&args.name).to_vec()))
}

/// The root id (tree id) of the subvolume `fd` is in; needs no privileges.
///
/// # Errors
///
/// `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_INO_LOOKUP")]
pub fn root_id(fd: impl AsFd) -> Result<u64> {
    Ok(ino_lookup(fd, 0, raw::BTRFS_FIRST_FREE_OBJECTID)?.0)
}

/// Whether `fd` is on btrfs (statfs magic `BTRFS_SUPER_MAGIC`).
///
/// # Errors
///
/// Whatever `fstatfs(2)` returns.
pub fn is_btrfs(fd: impl AsFd) -> Result<bool> {
    let stat = rustix::fs::fstatfs(fd).map_err(failed(Op::Fstatfs))?;
    Ok(stat.f_type == raw::BTRFS_SUPER_MAGIC)
}

/// Whether `fd` is the root directory of a btrfs subvolume: on btrfs, with
/// inode number 256.
///
/// # Errors
///
/// Whatever `fstatfs(2)` or `fstat(2)` returns.
pub fn is_subvolume_root(fd: impl AsFd) -> Result<bool> {
    let fd = fd.as_fd();
    if !is_btrfs(fd)? {
        return Ok(false);
    }
    let stat = rustix::fs::fstat(fd).map_err(failed(Op::Fstat))?;
    Ok(stat.st_ino == raw::BTRFS_FIRST_FREE_OBJECTID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_the_kernel_sees_them() {
        let mut field = [0u8; 16];
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(fill_name(&mut field, OsStr::new(bad)).is_err(), "{bad:?}");
        }
        let long = "x".repeat(256);
        let mut big = [0u8; 4040];
        assert!(fill_name(&mut big, OsStr::new(&long)).is_err());
        fill_name(&mut field, OsStr::new("snap")).expect("valid name");
        assert_eq!(until_nul(&field), b"snap");
    }
}
