//! fs-verity: seal a file with a Merkle tree so every later read is checked
//! (`FS_IOC_ENABLE_VERITY`), as a receiver does for ENABLE_VERITY commands
//! (send protocol v3).
//!
//! Not btrfs-specific, but it is a kernel ABI call and this crate is where
//! rawsend keeps them. The kernel computes the tree from the file's data; the
//! stream only carries the parameters, so the result is the same digest the
//! sender had if the data is the same.

use rustix::fd::AsFd;

use crate::error::{Op, Result};
use crate::ioctl::call;
use crate::raw;

/// Parameters of `FS_IOC_ENABLE_VERITY`, as an ENABLE_VERITY command carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verity<'a> {
    /// `FS_VERITY_HASH_ALG_*`: 1 = SHA-256, 2 = SHA-512.
    pub hash_algorithm: u32,
    /// Merkle tree block size in bytes (a power of two the kernel supports).
    pub block_size: u32,
    /// Salt prepended to every hashed block (at most 32 bytes).
    pub salt: &'a [u8],
    /// Optional builtin signature of the file digest (PKCS#7, DER).
    pub signature: &'a [u8],
}

/// Enables fs-verity on the regular file `fd`, which must be open read-only
/// with no writable descriptor open anywhere.
///
/// # Errors
///
/// `ENOTTY`/`EOPNOTSUPP` where fs-verity is not available (kernel without
/// `CONFIG_FS_VERITY`, or a filesystem without the feature), `ETXTBSY` if the
/// file is open for writing, `EEXIST` if it already has fs-verity,
/// `EINVAL`/`EMSGSIZE` for unsupported parameters, `EBADMSG`/`EKEYREJECTED`
/// for a bad signature.
#[doc(alias = "FS_IOC_ENABLE_VERITY")]
pub fn enable_verity(fd: impl AsFd, verity: &Verity<'_>) -> Result<()> {
    let len = |bytes: &[u8]| u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let mut arg = raw::fsverity_enable_arg {
        version: 1,
        hash_algorithm: verity.hash_algorithm,
        block_size: verity.block_size,
        salt_size: len(verity.salt),
        salt_ptr: verity.salt.as_ptr() as u64,
        sig_size: len(verity.signature),
        __reserved1: 0,
        sig_ptr: verity.signature.as_ptr() as u64,
        __reserved2: [0; 11],
    };
    // SAFETY: FS_IOC_ENABLE_VERITY takes a `fsverity_enable_arg`; its two
    // pointers address `salt_size` and `sig_size` readable bytes of the
    // borrowed slices (sizes above u32::MAX are clamped, so the kernel reads
    // less, and it rejects such sizes before reading), live for the call.
    unsafe { call::<{ raw::FS_IOC_ENABLE_VERITY }, _>(Op::EnableVerity, fd, &mut arg)? };
    Ok(())
}
