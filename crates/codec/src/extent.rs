//! The bounds of an encoded extent that no receiver may accept wrong.
//!
//! A send stream's ENCODED_WRITE (and a caller of the encoded-I/O ioctl)
//! gives the extent's fields separately from its data; the kernel checks
//! some of them and trusts the rest. Every consumer of such an extent (the
//! receive engine, the transcoder) checks these first, the same way.

use crate::{Compression, MAX_ENCODED_LEN, MAX_UNENCODED_LEN};

/// An encoded extent's fields, as ENCODED_WRITE carries them.
#[derive(Clone, Copy, Debug)]
pub struct ExtentFields {
    /// File offset.
    pub offset: u64,
    /// Bytes of file covered.
    pub len: u64,
    /// Size of the decoded data.
    pub unencoded_len: u64,
    /// Where the file range starts inside the decoded data.
    pub unencoded_offset: u64,
    /// `BTRFS_ENCODED_IO_COMPRESSION_*` (0 when absent).
    pub compression: u32,
    /// Bytes of encoded data.
    pub data_len: usize,
}

impl ExtentFields {
    /// The compression, if the fields are within what btrfs allows; else why not.
    pub fn check(&self) -> Result<Compression, &'static str> {
        let compression = Compression::from_raw(self.compression)
            .filter(|c| *c != Compression::None)
            .ok_or("unknown or no compression in ENCODED_WRITE")?;
        if self.unencoded_len > MAX_UNENCODED_LEN as u64 {
            return Err("unencoded length above 128 KiB");
        }
        if self.data_len > MAX_ENCODED_LEN {
            return Err("encoded data above 128 KiB");
        }
        if self.unencoded_offset.checked_add(self.len).is_none_or(|end| end > self.unencoded_len) {
            return Err("unencoded offset + length exceed the unencoded length");
        }
        if self.data_len == 0 && self.len > 0 {
            return Err("no encoded data for a non-empty range");
        }
        if self.offset.checked_add(self.len).is_none() {
            return Err("file range overflows");
        }
        Ok(compression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_is_checked() {
        let good = ExtentFields {
            offset: 4096,
            len: 8192,
            unencoded_len: 131_072,
            unencoded_offset: 4096,
            compression: 2,
            data_len: 100,
        };
        assert_eq!(good.check(), Ok(Compression::Zstd));
        let bad = [
            ExtentFields { compression: 0, ..good },
            ExtentFields { compression: 8, ..good },
            ExtentFields { unencoded_len: 131_073, ..good },
            ExtentFields { data_len: 131_073, ..good },
            ExtentFields { unencoded_offset: 131_072, ..good },
            ExtentFields { data_len: 0, ..good },
            ExtentFields { offset: u64::MAX, ..good },
        ];
        for fields in bad {
            assert!(fields.check().is_err(), "{fields:?}");
        }
    }
}
