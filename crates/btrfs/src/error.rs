//! Errors: which operation failed, the errno, and what that errno means for
//! that operation.
//!
//! The kernel answers most mistakes with a bare `EINVAL` or `EPERM`; the
//! [`Error::Ioctl`] display adds the meaning PROTOCOL.md §3 and §6 found for
//! each (errno, ioctl) pair, so that a user reads "needs CAP_SYS_ADMIN"
//! instead of "Operation not permitted". Encoded writes are checked before
//! the call ([`EncodedWriteError`]) so the common mistakes never reach the
//! kernel at all.
//!
//! Each message includes its cause, and no error also returns it from
//! `source()`, so printing the whole chain shows every cause once.

use core::fmt;

use rustix::io::Errno;

/// Result type of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// An operation of this crate, named after the ioctl or syscall it issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `BTRFS_IOC_ENCODED_READ`.
    EncodedRead,
    /// `BTRFS_IOC_ENCODED_WRITE`.
    EncodedWrite,
    /// `BTRFS_IOC_SEND`.
    Send,
    /// `BTRFS_IOC_SUBVOL_CREATE`.
    SubvolCreate,
    /// `BTRFS_IOC_SNAP_DESTROY`.
    SnapDestroy,
    /// `mmap(2)` of a file, shared.
    /// `BTRFS_IOC_SNAP_CREATE_V2`.
    SnapCreate,
    /// `BTRFS_IOC_SUBVOL_GETFLAGS`.
    SubvolGetFlags,
    /// `BTRFS_IOC_SUBVOL_SETFLAGS`.
    SubvolSetFlags,
    /// `BTRFS_IOC_SET_RECEIVED_SUBVOL`.
    SetReceivedSubvol,
    /// `BTRFS_IOC_GET_SUBVOL_INFO`.
    GetSubvolInfo,
    /// `BTRFS_IOC_INO_LOOKUP`.
    InoLookup,
    /// `BTRFS_IOC_TREE_SEARCH`.
    TreeSearch,
    /// `FICLONERANGE`.
    CloneRange,
    /// `FICLONE`.
    Clone,
    /// `FS_IOC_ENABLE_VERITY`.
    EnableVerity,
    /// `fstat(2)`.
    Fstat,
    /// `fstatfs(2)`.
    Fstatfs,
    /// `pipe(2)`.
    Pipe,
    /// `splice(2)`, relaying a send stream into its output.
    Splice,
    /// `read(2)` of the pipe a send stream is relayed through.
    Read,
    /// `write(2)`, copying a send stream into an output that takes no splice.
    Write,
}

impl Op {
    /// The kernel name of the ioctl or syscall.
    pub fn name(self) -> &'static str {
        match self {
            Op::EncodedRead => "BTRFS_IOC_ENCODED_READ",
            Op::EncodedWrite => "BTRFS_IOC_ENCODED_WRITE",
            Op::Send => "BTRFS_IOC_SEND",
            Op::SubvolCreate => "BTRFS_IOC_SUBVOL_CREATE",
            Op::SnapDestroy => "BTRFS_IOC_SNAP_DESTROY",
            Op::SnapCreate => "BTRFS_IOC_SNAP_CREATE_V2",
            Op::SubvolGetFlags => "BTRFS_IOC_SUBVOL_GETFLAGS",
            Op::SubvolSetFlags => "BTRFS_IOC_SUBVOL_SETFLAGS",
            Op::SetReceivedSubvol => "BTRFS_IOC_SET_RECEIVED_SUBVOL",
            Op::GetSubvolInfo => "BTRFS_IOC_GET_SUBVOL_INFO",
            Op::InoLookup => "BTRFS_IOC_INO_LOOKUP",
            Op::TreeSearch => "BTRFS_IOC_TREE_SEARCH",
            Op::CloneRange => "FICLONERANGE",
            Op::Clone => "FICLONE",
            Op::EnableVerity => "FS_IOC_ENABLE_VERITY",
            Op::Fstat => "fstat",
            Op::Fstatfs => "fstatfs",
            Op::Pipe => "pipe",
            Op::Splice => "splice",
            Op::Read => "read",
            Op::Write => "write",
        }
    }

    /// What `errno` means for this operation, when known.
    pub fn meaning(self, errno: Errno) -> Option<&'static str> {
        self.specific_meaning(errno).or_else(|| common_meaning(errno))
    }

    fn specific_meaning(self, errno: Errno) -> Option<&'static str> {
        use Op::*;
        Some(match (self, errno) {
            (EncodedRead | EncodedWrite | TreeSearch, Errno::PERM) => "needs CAP_SYS_ADMIN",
            (EncodedWrite, Errno::BADF) => "file not open for writing",
            (EncodedWrite, Errno::INVAL) => {
                "kernel rejected the encoded write (NOCOW file, LZO sector size other than the filesystem's, or a range rule of PROTOCOL.md §3.4)"
            }
            (EncodedWrite, Errno::FBIG) => "write would pass the file size limit",
            (EncodedRead, Errno::NOBUFS) => "buffer smaller than the extent; use at least 128 KiB",
            (EncodedRead, Errno::BADF) => "file not open for reading",
            (Send, Errno::PERM) => {
                "needs CAP_SYS_ADMIN, and the subvolume, parent and clone sources must be read-only and not being deleted"
            }
            (Send, Errno::BADF) => "output not open for writing",
            (Send, Errno::INVAL) => {
                "invalid arguments (compressed data needs protocol 2; -e needs a newer kernel; too many clone sources)"
            }
            (Send, Errno::PROTO) => "protocol version not supported by this kernel",
            (Send, Errno::NOENT) => "parent or clone source root id does not exist",
            (Send, Errno::AGAIN) => "deduplication is running on an involved subvolume",
            (Send, Errno::OPNOTSUPP) => "unknown send flag",
            (SetReceivedSubvol, Errno::PERM) => "needs ownership of the subvolume or CAP_FOWNER",
            (SetReceivedSubvol, Errno::INVAL) => "not the root of a subvolume",
            (SetReceivedSubvol, Errno::ROFS) => "subvolume is read-only",
            (SubvolSetFlags, Errno::INVAL) => "not the root of a subvolume, or unknown flag",
            (SubvolCreate | SnapCreate, Errno::EXIST) => "name already exists",
            (SnapCreate, Errno::XDEV) => "source is on another filesystem",
            (CloneRange | Clone, Errno::XDEV) => "source and destination are on different filesystems",
            (CloneRange | Clone, Errno::INVAL) => {
                "range not block-aligned, or source and destination differ in NOCOW/checksum settings"
            }
            (CloneRange | Clone, Errno::OPNOTSUPP) => "filesystem cannot share extents",
            (Send | Splice | Write, Errno::PIPE) => "the reader of the output went away",
            (EnableVerity, Errno::NOTTY | Errno::OPNOTSUPP) => {
                "fs-verity is not supported by this kernel or filesystem (CONFIG_FS_VERITY, mkfs/tune2fs -O verity on ext4)"
            }
            (EnableVerity, Errno::TXTBSY) => "the file is open for writing elsewhere",
            (EnableVerity, Errno::EXIST) => "fs-verity is already enabled on the file",
            (EnableVerity, Errno::INVAL) => "unsupported block size or version, or salt/signature too long",
            (EnableVerity, Errno::NOPKG) => "the kernel lacks the hash algorithm",
            (EnableVerity, Errno::MSGSIZE) => "salt or signature too long",
            (EnableVerity, Errno::BADMSG | Errno::KEYREJECTED) => "the signature is invalid",
            (EnableVerity, Errno::NOKEY) => "no trusted key for the signature",
            (TreeSearch, Errno::OVERFLOW) => "item larger than the search buffer",
            _ => return None,
        })
    }
}

fn common_meaning(errno: Errno) -> Option<&'static str> {
    Some(match errno {
        Errno::NOTTY => "not on btrfs, or the kernel lacks this ioctl",
        Errno::PERM | Errno::ACCESS => "permission denied",
        Errno::NOSPC => "no space left on the filesystem",
        Errno::DQUOT => "quota exceeded",
        Errno::ROFS => "read-only filesystem or subvolume",
        Errno::NOENT => "no such subvolume or root",
        Errno::BADF => "bad file descriptor",
        _ => return None,
    })
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An ioctl or syscall failed.
    #[error("{op} failed: {errno}{}", meaning_suffix(*.op, *.errno))]
    Ioctl {
        /// The operation.
        op: Op,
        /// The error the kernel returned.
        errno: Errno,
    },
    /// An encoded write broke a kernel precondition; nothing was written.
    #[error("invalid encoded write: {0}")]
    InvalidEncodedWrite(EncodedWriteError),
    /// A file offset does not fit the kernel's signed 64-bit `loff_t`.
    #[error("file offset {0} is larger than the kernel accepts")]
    OffsetTooLarge(u64),
    /// A name is too long for the ioctl, or contains `/` or NUL.
    #[error("invalid subvolume name {name:?}: {reason}")]
    InvalidName {
        /// The name, lossily decoded.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The kernel returned data this crate cannot parse.
    #[error("{op} returned malformed data: {what}")]
    Malformed {
        /// The operation.
        op: Op,
        /// What was wrong.
        what: &'static str,
    },
    /// Reading `/sys/fs/btrfs/features/send_stream_version` failed.
    #[error("cannot read /sys/fs/btrfs/features/send_stream_version: {0}")]
    Sysfs(std::io::Error),
}

impl From<EncodedWriteError> for Error {
    fn from(err: EncodedWriteError) -> Self {
        Error::InvalidEncodedWrite(err)
    }
}

impl Error {
    /// The errno, if the kernel returned one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Ioctl { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn meaning_suffix(op: Op, errno: Errno) -> String {
    op.meaning(errno).map(|meaning| format!(" ({meaning})")).unwrap_or_default()
}

/// Builds the `map_err` closure for a failed call of `op`.
pub(crate) fn failed(op: Op) -> impl FnOnce(Errno) -> Error {
    move |errno| Error::Ioctl { op, errno }
}

/// A kernel precondition of `BTRFS_IOC_ENCODED_WRITE` (PROTOCOL.md §3.4)
/// that an [`EncodedWrite`](crate::EncodedWrite) breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodedWriteError {
    /// No encoded bytes: the kernel would write nothing and return 0.
    #[error("no encoded data")]
    EmptyData,
    /// `compression` is NONE or unknown (valid: 1..=7).
    #[error("compression {0} is not one of 1..=7 (zlib, zstd, lzo 4k..64k)")]
    BadCompression(u32),
    /// LZO with a sector size other than the filesystem's.
    #[error(
        "compression {compression} is LZO for {lzo_sector} byte sectors, the filesystem uses {sector_size}"
    )]
    LzoSectorMismatch {
        /// The compression value.
        compression: u32,
        /// Sector size it encodes.
        lzo_sector: u64,
        /// The filesystem sector size.
        sector_size: u64,
    },
    /// `encryption` is not 0.
    #[error("encryption {0} is not supported (must be 0)")]
    Encrypted(u32),
    /// `unencoded_len` above 128 KiB.
    #[error("unencoded length {0} is above 128 KiB")]
    UnencodedTooLarge(u64),
    /// More than 128 KiB of encoded data.
    #[error("{0} bytes of encoded data is above 128 KiB")]
    EncodedTooLarge(usize),
    /// The encoded data is not smaller than the unencoded length.
    #[error("{encoded} encoded bytes are not fewer than the {unencoded_len} unencoded bytes")]
    NotSmaller {
        /// Encoded byte count.
        encoded: usize,
        /// Unencoded length.
        unencoded_len: u64,
    },
    /// `unencoded_offset + len > unencoded_len`.
    #[error("unencoded offset {unencoded_offset} + length {len} passes the unencoded length {unencoded_len}")]
    RangeOutsideUnencoded {
        /// Offset into the decoded data.
        unencoded_offset: u64,
        /// File bytes covered.
        len: u64,
        /// Decoded size.
        unencoded_len: u64,
    },
    /// A value that must be a multiple of the sector size is not.
    #[error("{field} {value} is not a multiple of the sector size {sector_size}")]
    Unaligned {
        /// Which field (`offset`, `unencoded_offset`, `offset + len`).
        field: &'static str,
        /// Its value.
        value: u64,
        /// The filesystem sector size.
        sector_size: u64,
    },
    /// `offset + len` overflows or passes `i64::MAX`.
    #[error("offset {offset} + length {len} overflows a file offset")]
    Overflow {
        /// File offset.
        offset: u64,
        /// File bytes covered.
        len: u64,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn causes_are_in_the_message_and_not_repeated_as_sources() {
        let cases = [
            (Error::Sysfs(std::io::Error::from_raw_os_error(2)), "No such file or directory"),
            (Error::from(EncodedWriteError::Encrypted(1)), "encryption 1 is not supported"),
        ];
        for (err, cause) in cases {
            assert!(err.to_string().contains(cause), "{err}");
            assert!(err.source().is_none(), "{err} also exposes its cause as source()");
        }
    }
}
