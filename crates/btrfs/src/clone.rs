//! Reflinks: share extents between files instead of copying data
//! (`FICLONERANGE`, `FICLONE`), as a receiver does for CLONE commands.

use rustix::fd::{AsFd, AsRawFd};

use crate::error::{Op, Result, failed};
use crate::ioctl::call;
use crate::raw;

/// Makes `len` bytes of `dest_fd` at `dest_offset` share the extents of
/// `src_fd` at `src_offset`. `len == 0` means "to the end of the source".
///
/// # Errors
///
/// `EINVAL` if offsets or length are not block-aligned (except a length that
/// reaches the source's EOF) or the files differ in NOCOW/checksum settings,
/// `EXDEV` across filesystems, `EBADF` if `dest_fd` is not writable or
/// `src_fd` not readable, `EOPNOTSUPP` where reflinks are unsupported,
/// `EISDIR` on directories.
#[doc(alias = "FICLONERANGE")]
#[doc(alias = "BTRFS_IOC_CLONE_RANGE")]
pub fn clone_range(
    src_fd: impl AsFd,
    src_offset: u64,
    len: u64,
    dest_fd: impl AsFd,
    dest_offset: u64,
) -> Result<()> {
    let mut args = raw::file_clone_range {
        src_fd: i64::from(src_fd.as_fd().as_raw_fd()),
        src_offset,
        src_length: len,
        dest_offset,
    };
    // SAFETY: FICLONERANGE takes a `file_clone_range` holding no pointers;
    // `src_fd` is a live borrowed descriptor.
    unsafe { call::<{ raw::FICLONERANGE }, _>(Op::CloneRange, dest_fd, &mut args)? };
    Ok(())
}

/// Makes all of `dest_fd` share the extents of all of `src_fd`.
///
/// # Errors
///
/// As [`clone_range`].
#[doc(alias = "FICLONE")]
#[doc(alias = "BTRFS_IOC_CLONE")]
pub fn clone_file(src_fd: impl AsFd, dest_fd: impl AsFd) -> Result<()> {
    rustix::fs::ioctl_ficlone(dest_fd, src_fd).map_err(failed(Op::Clone))
}
