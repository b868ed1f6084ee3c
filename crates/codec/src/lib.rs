//! btrfs compressed-extent formats: zlib, zstd and LZO with btrfs framing.
//!
//! A btrfs send stream (protocol v2, `ENCODED_WRITE`) and the encoded-I/O
//! ioctls carry file data exactly as btrfs stores it in a compressed
//! extent. This crate converts between that form and plain bytes:
//!
//! - [`Decoder::decode`] turns encoded data into exactly `unencoded_len`
//!   bytes, as the kernel would read the extent: data that decodes short is
//!   zero-filled, data past the end of the stream is ignored. A receiver
//!   uses it when the target cannot take encoded writes, and to verify
//!   encoded data before writing it (the kernel does not).
//! - [`Encoder::encode`] produces only what `BTRFS_IOC_ENCODED_WRITE`
//!   accepts and the kernel can read back, and reports `None` when the
//!   result would not be smaller than the input (the kernel requires it).
//!
//! Every decoder writes into a buffer bounded by the caller (at most
//! 128 KiB, the btrfs extent limit) and rejects corrupt input with a
//! [`DecodeError`]: no panic, no write outside the buffer, bounded memory.
//! The reusable [`Decoder`] and [`Encoder`] keep zlib and zstd contexts
//! between calls; [`decode`] and [`encode`] are one-shot conveniences.
//!
//! [`ExtentFields::check`] is the bounds check every consumer of an encoded
//! extent makes before anything else.
//!
//! The per-algorithm rules are in the private modules `zlib`, `zstandard`
//! and `lzo`; `lzo1x_decode` is a bounded LZO1X decoder (the reason it is
//! ours is documented there).

mod compression;
mod error;
mod extent;
mod lzo;
mod lzo1x_decode;
#[cfg(test)]
mod test_data;
mod zlib;
mod zstandard;

use compression::Algorithm;
pub use compression::Compression;
pub use error::{DecodeError, EncodeError};
pub use extent::ExtentFields;
pub use lzo1x_decode::Lzo1xError;

/// Largest decoded size of one extent (`BTRFS_MAX_UNCOMPRESSED`).
pub const MAX_UNENCODED_LEN: usize = 128 * 1024;
/// Largest encoded size of one extent (`BTRFS_MAX_COMPRESSED`).
pub const MAX_ENCODED_LEN: usize = 128 * 1024;

/// Decodes extents; keeps zlib and zstd contexts between calls.
#[derive(Default)]
pub struct Decoder {
    zlib: zlib::ZlibDecoder,
    zstd: zstandard::ZstdDecoder,
}

impl Decoder {
    /// A decoder with no contexts allocated yet.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes `encoded` into all of `out` (`out.len()` is `unencoded_len`,
    /// at most 128 KiB). Returns how many bytes the data decoded to; the
    /// rest of `out` is zero-filled, as the kernel reads it.
    pub fn decode(
        &mut self,
        compression: Compression,
        encoded: &[u8],
        out: &mut [u8],
    ) -> Result<usize, DecodeError> {
        if out.len() > MAX_UNENCODED_LEN {
            return Err(DecodeError::OutputTooLarge(out.len()));
        }
        if encoded.len() > MAX_ENCODED_LEN {
            return Err(DecodeError::InputTooLarge(encoded.len()));
        }
        let produced = match compression.algorithm() {
            Algorithm::None => Err(DecodeError::NotCompressed(compression)),
            Algorithm::Zlib => self.zlib.decode(encoded, out),
            Algorithm::Zstd => self.zstd.decode(encoded, out),
            Algorithm::Lzo(sector) => lzo::decode(sector, encoded, out),
        }?;
        out[produced..].fill(0);
        Ok(produced)
    }
}

/// One-shot [`Decoder::decode`].
pub fn decode(compression: Compression, encoded: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    Decoder::new().decode(compression, encoded, out)
}

/// Encodes extents; keeps zlib and zstd contexts between calls.
#[derive(Default)]
pub struct Encoder {
    zlib: zlib::ZlibEncoder,
    zstd: zstandard::ZstdEncoder,
}

impl Encoder {
    /// An encoder with no contexts allocated yet.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Encodes `input` (at most 128 KiB) for an encoded write.
    ///
    /// `level`: zlib 1–9 (default 3), zstd −15…−1 and 1…15 (default 3),
    /// LZO has none (must be `None`). The LZO segment size is the sector
    /// size the compression value names, which must equal the target
    /// filesystem's sector size. LZO output is exactly `total_len` bytes,
    /// so it is also valid when the kernel stores it as an inline extent.
    ///
    /// Returns `Ok(None)` when the encoded form would not be strictly
    /// smaller than the input (also for empty input): write it plainly.
    pub fn encode(
        &mut self,
        compression: Compression,
        level: Option<i32>,
        input: &[u8],
    ) -> Result<Option<Vec<u8>>, EncodeError> {
        if input.len() > MAX_UNENCODED_LEN {
            return Err(EncodeError::InputTooLarge(input.len()));
        }
        let level = checked_level(compression, level)?;
        if input.is_empty() {
            return Ok(None);
        }
        match compression.algorithm() {
            Algorithm::None => Err(EncodeError::NotCompressed(compression)),
            Algorithm::Zlib => self.zlib.encode(level, input),
            Algorithm::Zstd => self.zstd.encode(level, input),
            Algorithm::Lzo(sector) => Ok(lzo::encode(sector, input)),
        }
    }
}

/// One-shot [`Encoder::encode`].
pub fn encode(
    compression: Compression,
    level: Option<i32>,
    input: &[u8],
) -> Result<Option<Vec<u8>>, EncodeError> {
    Encoder::new().encode(compression, level, input)
}

/// The levels `compression` accepts and its default, `None` if it has no
/// levels.
pub fn levels(compression: Compression) -> Option<(std::ops::RangeInclusive<i32>, i32)> {
    match compression {
        Compression::Zlib => Some((zlib::LEVELS, zlib::DEFAULT_LEVEL)),
        Compression::Zstd => Some((zstandard::LEVELS, zstandard::DEFAULT_LEVEL)),
        _ => None,
    }
}

/// The level to use, or an error if `level` is not valid for `compression`
/// (0 is never valid: btrfs reads it as "default", say `None` instead).
fn checked_level(compression: Compression, level: Option<i32>) -> Result<i32, EncodeError> {
    let invalid = |level| EncodeError::InvalidLevel { compression, level };
    match (levels(compression), level) {
        (None, None) => Ok(0),
        (None, Some(level)) => Err(invalid(level)),
        (Some((_, default)), None) => Ok(default),
        (Some((range, _)), Some(level)) if level != 0 && range.contains(&level) => Ok(level),
        (Some(_), Some(level)) => Err(invalid(level)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::text;

    #[test]
    fn bounds_are_checked_before_decoding() {
        let mut big = vec![0; MAX_UNENCODED_LEN + 1];
        assert_eq!(decode(Compression::Zstd, b"x", &mut big), Err(DecodeError::OutputTooLarge(131_073)));
        let input = vec![0; MAX_ENCODED_LEN + 1];
        assert_eq!(decode(Compression::Zlib, &input, &mut [0; 8]), Err(DecodeError::InputTooLarge(131_073)));
        assert_eq!(encode(Compression::Zlib, None, &input), Err(EncodeError::InputTooLarge(131_073)));
    }

    #[test]
    fn none_is_not_an_encoding() {
        assert_eq!(
            decode(Compression::None, b"abc", &mut [0; 4]),
            Err(DecodeError::NotCompressed(Compression::None))
        );
        assert_eq!(
            encode(Compression::None, None, b"abc"),
            Err(EncodeError::NotCompressed(Compression::None))
        );
    }

    #[test]
    fn level_rules() {
        let ok = |c, l| encode(c, l, &text(5000)).map(|r| r.is_some());
        assert_eq!(ok(Compression::Zlib, None), Ok(true));
        assert_eq!(ok(Compression::Zlib, Some(9)), Ok(true));
        assert_eq!(ok(Compression::Zstd, Some(-15)), Ok(true));
        assert_eq!(ok(Compression::Lzo4K, None), Ok(true));
        for (c, l) in [
            (Compression::Zlib, 0),
            (Compression::Zlib, 10),
            (Compression::Zstd, 0),
            (Compression::Zstd, 16),
            (Compression::Zstd, -16),
            (Compression::Lzo8K, 1),
        ] {
            assert_eq!(ok(c, Some(l)), Err(EncodeError::InvalidLevel { compression: c, level: l }));
        }
    }

    #[test]
    fn short_output_is_zero_filled() {
        let data = text(3000);
        for c in Compression::ALL.into_iter().skip(1) {
            let encoded = encode(c, None, &data).unwrap().unwrap();
            let mut out = vec![0xFF; 8192];
            assert_eq!(decode(c, &encoded, &mut out), Ok(3000), "{c:?}");
            assert_eq!(out[..3000], data[..]);
            assert!(out[3000..].iter().all(|&b| b == 0), "{c:?}");
        }
    }

    #[test]
    fn empty_input_is_not_encoded() {
        for c in Compression::ALL.into_iter().skip(1) {
            assert_eq!(encode(c, None, &[]), Ok(None));
        }
    }

    #[test]
    fn decoder_reuse_survives_errors() {
        let data = text(40_000);
        let mut decoder = Decoder::new();
        let mut out = vec![0; 40_000];
        for c in [Compression::Zlib, Compression::Zstd] {
            let encoded = encode(c, None, &data).unwrap().unwrap();
            for _ in 0..3 {
                assert!(decoder.decode(c, &encoded[..encoded.len() / 3], &mut out).is_err());
                assert_eq!(decoder.decode(c, &encoded, &mut out), Ok(40_000));
                assert_eq!(out, data);
            }
        }
    }
}
