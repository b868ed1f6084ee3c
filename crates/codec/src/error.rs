//! Typed errors: every way encoded data or a request can be rejected.

use crate::Compression;
use crate::lzo1x_decode::Lzo1xError;

/// Why encoded data could not be decoded. Decoders never panic and never
/// write outside the output buffer; any of these leaves the buffer in an
/// unspecified but initialised state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Compression value 0 carries no encoded data to decode.
    #[error("compression {0} is not an encoded format")]
    NotCompressed(Compression),
    /// The output (`unencoded_len`) is larger than a btrfs extent can be.
    #[error("unencoded length {0} exceeds 131072")]
    OutputTooLarge(usize),
    /// The encoded data is larger than a btrfs compressed extent can be.
    #[error("encoded length {0} exceeds 131072")]
    InputTooLarge(usize),
    /// zlib: the first two bytes are not a zlib header the kernel accepts
    /// (deflate, window ≤ 32 KiB, no preset dictionary, valid check bits).
    #[error("zlib: invalid stream header")]
    ZlibHeader,
    /// zlib: the deflate data is corrupt.
    #[error("zlib: corrupt data: {0}")]
    ZlibCorrupt(String),
    /// zstd: the frame is corrupt, not a zstd frame, or needs a window
    /// larger than 128 KiB (windowLog > 17, which the kernel cannot read).
    #[error("zstd: {0}")]
    ZstdCorrupt(String),
    /// The encoded data ended before the stream or frame did, and before
    /// the output was full.
    #[error("{0}: encoded data ends before the end of the stream")]
    Truncated(Compression),
    /// LZO: fewer than 4 bytes, so no `total_len` header.
    #[error("lzo: no total length header")]
    LzoNoHeader,
    /// LZO: `total_len` is below 4, above 128 KiB or above the data length.
    #[error("lzo: total length {total_len} does not fit {encoded_len} bytes of data")]
    LzoTotalLen {
        /// The header value.
        total_len: u32,
        /// Bytes of encoded data given.
        encoded_len: usize,
    },
    /// LZO: the data extends a whole sector or more past `total_len`; the
    /// kernel reports such an extent as corrupt (EUCLEAN).
    #[error("lzo: {encoded_len} bytes of data is a sector or more beyond total length {total_len}")]
    LzoSlack {
        /// The header value.
        total_len: u32,
        /// Bytes of encoded data given.
        encoded_len: usize,
    },
    /// LZO: a segment header does not fit before `total_len`.
    #[error("lzo: segment header at {offset} runs past the total length")]
    LzoSegmentHeader {
        /// Offset of the segment header.
        offset: usize,
    },
    /// LZO: a segment length exceeds `lzo1x_worst_compress(sector)` or runs
    /// past `total_len`.
    #[error("lzo: segment at {offset} has invalid length {seg_len}")]
    LzoSegmentLen {
        /// Offset of the segment header.
        offset: usize,
        /// The segment length from the header.
        seg_len: u32,
    },
    /// LZO: the LZO1X data of a segment is corrupt or decodes to more than
    /// one sector or more than the output has left.
    #[error("lzo: segment at {offset}: {cause}")]
    LzoSegment {
        /// Offset of the segment header.
        offset: usize,
        /// What the LZO1X decoder found.
        cause: Lzo1xError,
    },
}

/// Why data could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Compression value 0 is not an encoding.
    #[error("compression {0} is not an encoded format")]
    NotCompressed(Compression),
    /// More than 128 KiB of input: one extent holds at most that much.
    #[error("input length {0} exceeds 131072")]
    InputTooLarge(usize),
    /// The level is outside the algorithm's range (zlib 1–9, zstd −15–15,
    /// LZO has none).
    #[error("level {level} is not valid for {compression}")]
    InvalidLevel {
        /// The algorithm.
        compression: Compression,
        /// The rejected level.
        level: i32,
    },
    /// The compression library failed (not expected with valid input).
    #[error("{compression}: {message}")]
    Library {
        /// The algorithm.
        compression: Compression,
        /// The library's message.
        message: String,
    },
}
