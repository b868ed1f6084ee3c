//! zlib (`COMPRESSION_ZLIB`): one RFC 1950 stream per extent.
//!
//! Decoding reads the data as the kernel does (`fs/btrfs/zlib.c`): the
//! two-byte zlib header must be valid (deflate, window ≤ 32 KiB, no preset
//! dictionary, check bits), then the rest is inflated as raw deflate with
//! the header's window size. So the Adler-32 trailer is **not** checked:
//! a stream with a bad trailer reads fine from btrfs, and a receiver that
//! rejected it would disagree with what the sender's filesystem shows.
//! Decoding ends at the end of the deflate stream or when the output is
//! full; bytes after either are ignored, like the kernel's sector padding.
//!
//! Encoding writes a normal zlib stream (header, deflate, valid Adler-32),
//! which both the kernel and btrfs-progs' fallback (which does check
//! Adler-32) accept.

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use crate::Compression;
use crate::error::{DecodeError, EncodeError};

/// Length of the zlib header the kernel skips.
const HEADER_LEN: usize = 2;
/// The window the kernel's own encoder and every common encoder use.
const DEFAULT_WINDOW_BITS: u8 = 15;
/// zlib levels btrfs accepts.
pub const LEVELS: std::ops::RangeInclusive<i32> = 1..=9;
/// The kernel's default zlib level.
pub const DEFAULT_LEVEL: i32 = 3;

/// Window bits declared by a kernel-acceptable zlib header. Windows below
/// 512 bytes (CINFO 0) are read with a 512-byte window, the smallest the
/// zlib backend supports; that only accepts more, never less.
fn window_bits(encoded: &[u8]) -> Result<u8, DecodeError> {
    let &[cmf, flg, _, ..] = encoded else {
        return Err(DecodeError::ZlibHeader);
    };
    let deflate = cmf & 0x0f == 8;
    let no_dict = flg & 0x20 == 0;
    let check = (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
    let cinfo = cmf >> 4;
    if !(deflate && no_dict && check && cinfo <= 7) {
        return Err(DecodeError::ZlibHeader);
    }
    Ok((cinfo + 8).max(9))
}

/// Reusable inflate state (the common 32 KiB-window context is kept).
#[derive(Default)]
pub struct ZlibDecoder {
    inflate: Option<Decompress>,
}

impl ZlibDecoder {
    /// Decodes into `out`; returns the bytes produced.
    pub fn decode(&mut self, encoded: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
        let bits = window_bits(encoded)?;
        let deflate = &encoded[HEADER_LEN..];
        if bits != DEFAULT_WINDOW_BITS {
            return inflate(&mut Decompress::new_with_window_bits(false, bits), deflate, out);
        }
        let state = self.inflate.get_or_insert_with(|| Decompress::new(false));
        state.reset(false);
        inflate(state, deflate, out)
    }
}

fn inflate(state: &mut Decompress, input: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let (mut consumed, mut produced) = (0, 0);
    while produced < out.len() {
        let (in0, out0) = (state.total_in(), state.total_out());
        let status = state
            .decompress(&input[consumed..], &mut out[produced..], FlushDecompress::None)
            .map_err(|e| DecodeError::ZlibCorrupt(e.to_string()))?;
        let read = progress(in0, state.total_in());
        let written = progress(out0, state.total_out());
        consumed += read;
        produced += written;
        if status == Status::StreamEnd {
            break;
        }
        if read == 0 && written == 0 {
            return Err(DecodeError::Truncated(Compression::Zlib));
        }
    }
    Ok(produced)
}

/// Bytes between two running totals (each step is bounded by a slice).
fn progress(before: u64, after: u64) -> usize {
    usize::try_from(after - before).unwrap_or(usize::MAX)
}

/// Reusable deflate state, kept for the last level used.
#[derive(Default)]
pub struct ZlibEncoder {
    deflate: Option<(i32, Compress)>,
}

impl ZlibEncoder {
    /// Encodes `input` at `level` (validated by the caller); `None` when the
    /// result would not be smaller than the input.
    pub fn encode(&mut self, level: i32, input: &[u8]) -> Result<Option<Vec<u8>>, EncodeError> {
        let state = self.state(level);
        let mut out = vec![0; input.len().saturating_sub(1)];
        let (mut consumed, mut produced) = (0, 0);
        loop {
            let (in0, out0) = (state.total_in(), state.total_out());
            let status =
                state.compress(&input[consumed..], &mut out[produced..], FlushCompress::Finish).map_err(
                    |e| EncodeError::Library { compression: Compression::Zlib, message: e.to_string() },
                )?;
            consumed += progress(in0, state.total_in());
            produced += progress(out0, state.total_out());
            if status == Status::StreamEnd {
                out.truncate(produced);
                return Ok(Some(out));
            }
            if produced == out.len() {
                return Ok(None);
            }
        }
    }

    fn state(&mut self, level: i32) -> &mut Compress {
        if !matches!(self.deflate, Some((l, _)) if l == level) {
            let flate_level = flate2::Compression::new(level.unsigned_abs());
            self.deflate = Some((level, Compress::new(flate_level, true)));
        }
        let (_, state) = self.deflate.as_mut().expect("set above");
        state.reset();
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::{noise, text};

    fn encode(level: i32, input: &[u8]) -> Option<Vec<u8>> {
        ZlibEncoder::default().encode(level, input).unwrap()
    }

    fn decode(encoded: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
        ZlibDecoder::default().decode(encoded, out)
    }

    #[test]
    fn output_is_a_valid_zlib_stream() {
        let data = text(100_000);
        for level in LEVELS {
            let encoded = encode(level, &data).unwrap();
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&encoded[..]), &mut back).unwrap();
            assert_eq!(back, data, "level {level}");
        }
        assert_eq!(&encode(3, &data).unwrap()[..2], &[0x78, 0x5E]);
    }

    #[test]
    fn adler32_trailer_is_not_checked() {
        let data = text(5000);
        let mut encoded = encode(3, &data).unwrap();
        let last = encoded.len() - 1;
        encoded[last] ^= 0xFF;
        let mut out = vec![0; data.len()];
        assert_eq!(decode(&encoded, &mut out), Ok(data.len()));
        assert_eq!(out, data);
    }

    #[test]
    fn headers_the_kernel_rejects() {
        let data = text(5000);
        let encoded = encode(6, &data).unwrap();
        let mut out = vec![0; data.len()];
        // Raw deflate (no header), gzip, preset dictionary, bad check bits, CINFO 8.
        let raw = &encoded[2..];
        let gzip = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        let dict = [0x78, 0xBB, 0, 0, 0, 0];
        let bad_check = [0x78, 0x9D, 0, 0];
        let cinfo8 = [0x88, 0x1C, 0, 0];
        for bad in [raw, &gzip[..], &dict[..], &bad_check[..], &cinfo8[..], &[0x78, 0x9C][..]] {
            assert_eq!(decode(bad, &mut out), Err(DecodeError::ZlibHeader), "{:02x?}", &bad[..2]);
        }
    }

    #[test]
    fn small_window_header_is_read() {
        // CINFO 0 (256-byte window) with an empty final stored block.
        let encoded = [0x08, 0x1D, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01];
        assert_eq!(decode(&encoded, &mut [0; 8]), Ok(0));
    }

    #[test]
    fn stops_at_full_output_and_at_stream_end() {
        let data = text(20_000);
        let encoded = encode(3, &data).unwrap();
        let mut short = vec![0; 1000];
        assert_eq!(decode(&encoded, &mut short), Ok(1000));
        assert_eq!(short, data[..1000]);
        let mut padded = encoded.clone();
        padded.extend_from_slice(&[0xAB; 300]);
        let mut long = vec![0; 30_000];
        assert_eq!(decode(&padded, &mut long), Ok(data.len()));
    }

    #[test]
    fn truncated_and_corrupt_streams_fail() {
        let data = text(20_000);
        let encoded = encode(3, &data).unwrap();
        let mut out = vec![0; data.len()];
        let cut = &encoded[..encoded.len() / 2];
        assert_eq!(decode(cut, &mut out), Err(DecodeError::Truncated(Compression::Zlib)));
        let mut corrupt = encoded.clone();
        corrupt[2] = 0xFF; // reserved block type 3
        assert!(matches!(decode(&corrupt, &mut out), Err(DecodeError::ZlibCorrupt(_))));
    }

    #[test]
    fn incompressible_input_gives_none() {
        assert_eq!(encode(9, &noise(4096, 7)), None);
        assert_eq!(encode(1, b"ab"), None);
    }
}
