//! btrfs compressed-extent formats: zlib, zstd and LZO with btrfs framing.
