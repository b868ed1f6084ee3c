//! The encoded-I/O compression values (`BTRFS_ENCODED_IO_COMPRESSION_*`).
//!
//! These are the numbers carried by the send stream's `COMPRESSION` attribute
//! and by `btrfs_ioctl_encoded_io_args.compression`. They differ from the
//! on-disk `btrfs_compression_type` (zstd is 2 here and 3 on disk), and LZO
//! carries the filesystem sector size in the value, because LZO's btrfs
//! framing depends on it.

use std::fmt;

/// Smallest sector size an LZO value can name (`LZO_4K`).
const LZO_MIN_SECTOR_BITS: u32 = 12;

/// A compression value of the encoded-I/O ABI (0–7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// 0: not compressed. Never valid for an encoded write.
    None,
    /// 1: one zlib stream (RFC 1950).
    Zlib,
    /// 2: one zstd frame.
    Zstd,
    /// 3: LZO1X in btrfs segment framing, 4 KiB sectors.
    Lzo4K,
    /// 4: LZO1X in btrfs segment framing, 8 KiB sectors.
    Lzo8K,
    /// 5: LZO1X in btrfs segment framing, 16 KiB sectors.
    Lzo16K,
    /// 6: LZO1X in btrfs segment framing, 32 KiB sectors.
    Lzo32K,
    /// 7: LZO1X in btrfs segment framing, 64 KiB sectors.
    Lzo64K,
}

impl Compression {
    /// Every value, in ABI order.
    pub const ALL: [Compression; 8] = [
        Compression::None,
        Compression::Zlib,
        Compression::Zstd,
        Compression::Lzo4K,
        Compression::Lzo8K,
        Compression::Lzo16K,
        Compression::Lzo32K,
        Compression::Lzo64K,
    ];

    /// The value for a raw ABI number, or `None` for 8 and above
    /// (`BTRFS_ENCODED_IO_COMPRESSION_TYPES` is the bound).
    pub fn from_raw(raw: u32) -> Option<Compression> {
        Self::ALL.get(usize::try_from(raw).ok()?).copied()
    }

    /// The raw ABI number.
    pub fn as_raw(self) -> u32 {
        self as u32
    }

    /// The LZO value for a filesystem sector size (4 KiB–64 KiB, a power of
    /// two), as the kernel maps it: `3 + (log2(sector) − 12)`.
    pub fn lzo_for_sector_size(sector_size: u32) -> Option<Compression> {
        if !sector_size.is_power_of_two() {
            return None;
        }
        let bits = sector_size.trailing_zeros().checked_sub(LZO_MIN_SECTOR_BITS)?;
        Self::from_raw(Compression::Lzo4K.as_raw() + bits).filter(|c| c.is_lzo())
    }

    /// The sector size an LZO value implies (its segment size), `None` for
    /// the other algorithms.
    pub fn lzo_sector_size(self) -> Option<usize> {
        match self.algorithm() {
            Algorithm::Lzo(sector) => Some(sector),
            _ => None,
        }
    }

    /// The algorithm, with the LZO sector size resolved.
    pub(crate) fn algorithm(self) -> Algorithm {
        match self {
            Compression::None => Algorithm::None,
            Compression::Zlib => Algorithm::Zlib,
            Compression::Zstd => Algorithm::Zstd,
            lzo => Algorithm::Lzo(1 << (LZO_MIN_SECTOR_BITS + lzo.as_raw() - Compression::Lzo4K.as_raw())),
        }
    }

    /// Whether this is one of the LZO values.
    pub fn is_lzo(self) -> bool {
        self.lzo_sector_size().is_some()
    }

    /// The algorithm name btrfs-progs uses (`none`, `zlib`, `zstd`, `lzo`),
    /// as in `btrfs property get … compression` and `-c` options. The LZO
    /// sector size is not part of the name; `btrfs receive --dump` prints
    /// the raw number ([`Compression::as_raw`]) instead.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Zstd => "zstd",
            _ => "lzo",
        }
    }
}

/// What a [`Compression`] value means to the codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// Not encoded.
    None,
    /// zlib stream.
    Zlib,
    /// zstd frame.
    Zstd,
    /// LZO1X segments, one per sector of this many bytes.
    Lzo(usize),
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_round_trip_and_stop_at_eight() {
        for raw in 0..8 {
            assert_eq!(Compression::from_raw(raw).unwrap().as_raw(), raw);
        }
        assert_eq!(Compression::from_raw(8), None);
        assert_eq!(Compression::from_raw(u32::MAX), None);
        assert_eq!(Compression::from_raw(2), Some(Compression::Zstd));
    }

    #[test]
    fn lzo_sector_sizes() {
        let sizes: Vec<_> = Compression::ALL.iter().map(|c| c.lzo_sector_size()).collect();
        assert_eq!(sizes, [None, None, None, Some(4096), Some(8192), Some(16384), Some(32768), Some(65536)]);
        for c in Compression::ALL.into_iter().filter(|c| c.is_lzo()) {
            let sector = u32::try_from(c.lzo_sector_size().unwrap()).unwrap();
            assert_eq!(Compression::lzo_for_sector_size(sector), Some(c));
        }
        for bad in [0, 512, 2048, 4095, 6144, 131072] {
            assert_eq!(Compression::lzo_for_sector_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_follow_progs() {
        let names: Vec<_> = Compression::ALL.iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["none", "zlib", "zstd", "lzo", "lzo", "lzo", "lzo", "lzo"]);
    }
}
