//! Encoded (compressed) reads and writes: `BTRFS_IOC_ENCODED_READ` and
//! `BTRFS_IOC_ENCODED_WRITE`, the "raw pread/pwrite" of compressed extents.
//!
//! The kernel answers every broken precondition of an encoded write with a
//! bare `EINVAL`; [`EncodedWrite::validate`] checks them first (PROTOCOL.md
//! §3.4) and names the one that failed.

use rustix::fd::AsFd;

use crate::error::{EncodedWriteError, Error, Op, Result, failed};
use crate::ioctl::call;
use crate::raw;

/// `BTRFS_ENCODED_IO_COMPRESSION_ZLIB`.
pub const COMPRESSION_ZLIB: u32 = raw::BTRFS_ENCODED_IO_COMPRESSION_ZLIB;
/// `BTRFS_ENCODED_IO_COMPRESSION_ZSTD`.
pub const COMPRESSION_ZSTD: u32 = raw::BTRFS_ENCODED_IO_COMPRESSION_ZSTD;
/// `BTRFS_ENCODED_IO_COMPRESSION_LZO_4K`; `LZO_8K..LZO_64K` follow as 4..=7.
pub const COMPRESSION_LZO_4K: u32 = raw::BTRFS_ENCODED_IO_COMPRESSION_LZO_4K;
/// Largest encoded or unencoded extent, 128 KiB (`BTRFS_MAX_COMPRESSED`).
pub const MAX_ENCODED_LEN: u64 = raw::BTRFS_MAX_COMPRESSED;

/// The metadata of an encoded write, field for field as the kernel takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodedWrite {
    /// File offset to write at.
    pub offset: u64,
    /// Bytes of the file the write covers.
    pub len: u64,
    /// Size of the data once decoded.
    pub unencoded_len: u64,
    /// Where the file data starts inside the decoded data.
    pub unencoded_offset: u64,
    /// `BTRFS_ENCODED_IO_COMPRESSION_*`: 1 zlib, 2 zstd, 3..=7 LZO 4K..64K.
    pub compression: u32,
    /// `BTRFS_ENCODED_IO_ENCRYPTION_*`: only 0 is supported.
    pub encryption: u32,
}

impl EncodedWrite {
    /// Checks every kernel precondition of PROTOCOL.md §3.4 for writing
    /// `encoded_len` bytes on a filesystem with `sector_size` sectors.
    ///
    /// `file_size` is the file's current size: a write may end on an
    /// unaligned offset only if it reaches or passes it. With `None` the end
    /// must be aligned, the rule that holds wherever the file ends. Checks the kernel makes on the inode (NOCOW files)
    /// and on free space cannot be made here.
    pub fn validate(
        &self,
        encoded_len: usize,
        sector_size: u64,
        file_size: Option<u64>,
    ) -> Result<(), EncodedWriteError> {
        self.check_shape(encoded_len)?;
        self.check_lzo_sector(sector_size)?;
        let end = self.offset + self.len;
        let end_reaches_eof = file_size.is_some_and(|size| end >= size);
        check_aligned("offset", self.offset, sector_size)?;
        if !end_reaches_eof {
            check_aligned("offset + len", end, sector_size)?;
        }
        check_aligned("unencoded_offset", self.unencoded_offset, sector_size)
    }

    /// The checks that need no knowledge of the filesystem or file.
    fn check_shape(&self, encoded_len: usize) -> Result<(), EncodedWriteError> {
        if self.encryption != raw::BTRFS_ENCODED_IO_ENCRYPTION_NONE {
            return Err(EncodedWriteError::Encrypted(self.encryption));
        }
        if !(COMPRESSION_ZLIB..=raw::BTRFS_ENCODED_IO_COMPRESSION_LZO_64K).contains(&self.compression) {
            return Err(EncodedWriteError::BadCompression(self.compression));
        }
        if self.unencoded_offset > self.unencoded_len || self.len > self.unencoded_len - self.unencoded_offset
        {
            return Err(EncodedWriteError::RangeOutsideUnencoded {
                unencoded_offset: self.unencoded_offset,
                len: self.len,
                unencoded_len: self.unencoded_len,
            });
        }
        if encoded_len == 0 {
            return Err(EncodedWriteError::EmptyData);
        }
        self.check_sizes(encoded_len)
    }

    fn check_sizes(&self, encoded_len: usize) -> Result<(), EncodedWriteError> {
        let overflow = EncodedWriteError::Overflow { offset: self.offset, len: self.len };
        let end = self.offset.checked_add(self.len).ok_or(overflow.clone())?;
        if i64::try_from(end).is_err() {
            return Err(overflow);
        }
        if self.unencoded_len > MAX_ENCODED_LEN {
            return Err(EncodedWriteError::UnencodedTooLarge(self.unencoded_len));
        }
        if encoded_len as u64 > MAX_ENCODED_LEN {
            return Err(EncodedWriteError::EncodedTooLarge(encoded_len));
        }
        if encoded_len as u64 >= self.unencoded_len {
            return Err(EncodedWriteError::NotSmaller {
                encoded: encoded_len,
                unencoded_len: self.unencoded_len,
            });
        }
        Ok(())
    }

    fn check_lzo_sector(&self, sector_size: u64) -> Result<(), EncodedWriteError> {
        let Some(shift) = self.compression.checked_sub(COMPRESSION_LZO_4K) else {
            return Ok(());
        };
        let lzo_sector = 4096u64 << shift;
        if lzo_sector == sector_size {
            Ok(())
        } else {
            Err(EncodedWriteError::LzoSectorMismatch {
                compression: self.compression,
                lzo_sector,
                sector_size,
            })
        }
    }
}

fn check_aligned(field: &'static str, value: u64, sector_size: u64) -> Result<(), EncodedWriteError> {
    if sector_size != 0 && value % sector_size == 0 {
        Ok(())
    } else {
        Err(EncodedWriteError::Unaligned { field, value, sector_size })
    }
}

/// What an encoded read found at an offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodedRead {
    /// Bytes of the file this extent covers from the offset read; 0 at EOF.
    /// Advance the offset by this, not by `bytes`.
    pub len: u64,
    /// Size of the data once decoded.
    pub unencoded_len: u64,
    /// Where the file data at the offset starts inside the decoded data.
    pub unencoded_offset: u64,
    /// `BTRFS_ENCODED_IO_COMPRESSION_*`; 0 means the bytes are plain data.
    pub compression: u32,
    /// `BTRFS_ENCODED_IO_ENCRYPTION_*`.
    pub encryption: u32,
    /// Number of bytes placed at the start of the buffer.
    pub bytes: usize,
}

fn encoded_args(offset: u64, iov: &raw::iovec) -> Result<raw::btrfs_ioctl_encoded_io_args> {
    Ok(raw::btrfs_ioctl_encoded_io_args {
        iov,
        iovcnt: 1,
        offset: i64::try_from(offset).map_err(|_| Error::OffsetTooLarge(offset))?,
        flags: 0,
        len: 0,
        unencoded_len: 0,
        unencoded_offset: 0,
        compression: 0,
        encryption: 0,
        reserved: [0; 64],
    })
}

/// Writes already-encoded (compressed) `data` as one extent, without the
/// kernel decoding or re-encoding it.
///
/// `fd` must be open for writing, never with `O_APPEND` (the kernel would
/// move the write to EOF). Returns the number of encoded bytes written,
/// which is `data.len()`. The shape checks of [`EncodedWrite::validate`]
/// that need no filesystem knowledge run first; call `validate` itself for
/// the alignment rules. The kernel does **not** check that `data` decodes.
///
/// # Errors
///
/// [`Error::InvalidEncodedWrite`] before any call; from the kernel:
/// `EPERM` without `CAP_SYS_ADMIN`, `EBADF` if `fd` is not writable,
/// `EINVAL` for NOCOW files, LZO of another sector size or unaligned ranges,
/// `ENOSPC` when no contiguous space is free, `EFBIG` past the file size
/// limit, `ENOTTY` off btrfs or before Linux 5.18.
#[doc(alias = "BTRFS_IOC_ENCODED_WRITE")]
pub fn encoded_write(fd: impl AsFd, write: &EncodedWrite, data: &[u8]) -> Result<usize> {
    write.check_shape(data.len())?;
    let iov = raw::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
    let mut args = raw::btrfs_ioctl_encoded_io_args {
        len: write.len,
        unencoded_len: write.unencoded_len,
        unencoded_offset: write.unencoded_offset,
        compression: write.compression,
        encryption: write.encryption,
        ..encoded_args(write.offset, &iov)?
    };
    // SAFETY: ENCODED_WRITE takes a `btrfs_ioctl_encoded_io_args`; its one
    // iovec points at `data`, which the kernel only reads and which is
    // borrowed for the call.
    let written = unsafe { call::<{ raw::BTRFS_IOC_ENCODED_WRITE }, _>(Op::EncodedWrite, fd, &mut args)? };
    Ok(written as usize)
}

/// Reads the extent at `offset` as it is stored (compressed data stays
/// compressed) into `buf`.
///
/// One call reads at most one extent. At or past EOF it returns `len == 0`.
/// From a compressed extent it returns the whole on-disk extent even when
/// `offset` is in its middle (then `unencoded_offset > 0`), so `buf` should
/// hold at least [`MAX_ENCODED_LEN`] bytes.
///
/// # Errors
///
/// `EPERM` without `CAP_SYS_ADMIN`, `ENOBUFS` if the compressed extent does
/// not fit `buf`, `EBADF` on an `O_PATH` fd, `ENOTTY` off btrfs or before
/// Linux 5.18.
#[doc(alias = "BTRFS_IOC_ENCODED_READ")]
pub fn encoded_read(fd: impl AsFd, offset: u64, buf: &mut [u8]) -> Result<EncodedRead> {
    let iov = raw::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut args = encoded_args(offset, &iov)?;
    // SAFETY: ENCODED_READ takes a `btrfs_ioctl_encoded_io_args`; its one
    // iovec covers exactly `buf`, which is mutably borrowed for the call, and
    // the kernel writes at most `iov_len` bytes into it.
    let bytes = unsafe { call::<{ raw::BTRFS_IOC_ENCODED_READ }, _>(Op::EncodedRead, fd, &mut args)? };
    Ok(EncodedRead {
        len: args.len,
        unencoded_len: args.unencoded_len,
        unencoded_offset: args.unencoded_offset,
        compression: args.compression,
        encryption: args.encryption,
        bytes: bytes as usize,
    })
}

/// The sector size of the filesystem holding `fd` (`statfs.f_bsize`, which
/// btrfs sets to its sector size): the alignment unit of encoded writes.
///
/// # Errors
///
/// Whatever `fstatfs(2)` returns.
pub fn sector_size(fd: impl AsFd) -> Result<u64> {
    let stat = rustix::fs::fstatfs(fd).map_err(failed(Op::Fstatfs))?;
    u64::try_from(stat.f_bsize).map_err(|_| Error::Malformed { op: Op::Fstatfs, what: "negative block size" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTOR: u64 = 4096;

    fn zstd_write() -> EncodedWrite {
        EncodedWrite {
            offset: 8192,
            len: 16384,
            unencoded_len: 16384,
            unencoded_offset: 0,
            compression: COMPRESSION_ZSTD,
            encryption: 0,
        }
    }

    fn check(write: EncodedWrite, encoded: usize, size: Option<u64>) -> Result<(), EncodedWriteError> {
        write.validate(encoded, SECTOR, size)
    }

    #[test]
    fn accepts_a_plain_compressed_extent() {
        assert_eq!(check(zstd_write(), 100, Some(0)), Ok(()));
    }

    #[test]
    fn rejects_each_precondition() {
        let base = zstd_write();
        let cases = [
            (EncodedWrite { compression: 0, ..base }, 100, EncodedWriteError::BadCompression(0)),
            (EncodedWrite { compression: 8, ..base }, 100, EncodedWriteError::BadCompression(8)),
            (EncodedWrite { encryption: 1, ..base }, 100, EncodedWriteError::Encrypted(1)),
            (base, 0, EncodedWriteError::EmptyData),
            (base, 16384, EncodedWriteError::NotSmaller { encoded: 16384, unencoded_len: 16384 }),
            (
                EncodedWrite { unencoded_len: 256 * 1024, len: 4096, ..base },
                100,
                EncodedWriteError::UnencodedTooLarge(256 * 1024),
            ),
            (
                EncodedWrite { unencoded_offset: 4096, ..base },
                100,
                EncodedWriteError::RangeOutsideUnencoded {
                    unencoded_offset: 4096,
                    len: 16384,
                    unencoded_len: 16384,
                },
            ),
            (
                EncodedWrite { offset: 100, ..base },
                100,
                EncodedWriteError::Unaligned { field: "offset", value: 100, sector_size: SECTOR },
            ),
            (
                EncodedWrite { compression: 4, ..base },
                100,
                EncodedWriteError::LzoSectorMismatch {
                    compression: 4,
                    lzo_sector: 8192,
                    sector_size: SECTOR,
                },
            ),
            (
                EncodedWrite { offset: u64::MAX - 10, ..base },
                100,
                EncodedWriteError::Overflow { offset: u64::MAX - 10, len: 16384 },
            ),
        ];
        for (index, (write, encoded, expected)) in cases.into_iter().enumerate() {
            assert_eq!(check(write, encoded, Some(0)), Err(expected), "case {index}");
        }
    }

    #[test]
    fn unaligned_end_is_allowed_only_at_or_past_eof() {
        let write = EncodedWrite { len: 3000, ..zstd_write() };
        assert_eq!(check(write, 100, Some(11192)), Ok(()));
        assert_eq!(check(write, 100, Some(0)), Ok(()));
        let unaligned =
            EncodedWriteError::Unaligned { field: "offset + len", value: 11192, sector_size: SECTOR };
        assert_eq!(check(write, 100, Some(1 << 20)), Err(unaligned.clone()));
        assert_eq!(check(write, 100, None), Err(unaligned));
    }

    #[test]
    fn lzo_matching_the_sector_size_is_accepted() {
        let write = EncodedWrite { compression: COMPRESSION_LZO_4K, ..zstd_write() };
        assert_eq!(check(write, 100, Some(0)), Ok(()));
    }
}
