//! zstd (`COMPRESSION_ZSTD`): exactly one frame per extent.
//!
//! Decoding reads the data as the kernel does (`fs/btrfs/zstd.c`): stream
//! decompression of the first frame only, ending at the frame's end or when
//! the output is full; a second frame or trailing bytes are ignored. The
//! kernel's decoder workspace fits a 128 KiB window, so frames declaring
//! windowLog > 17 fail to read from btrfs (EIO); this decoder rejects them
//! too, which also bounds its memory to one 128 KiB window whatever the
//! frame header claims. A content checksum, if present, is verified when
//! the frame completes, as libzstd does in the kernel.
//!
//! Encoding writes what the kernel writes: one single-segment frame with
//! the content size, windowLog ≤ 17, no checksum, no dictionary.

use zstd::stream::raw::{Decoder as RawDecoder, InBuffer, Operation, OutBuffer};
use zstd::zstd_safe::{CParameter, DParameter};

use crate::Compression;
use crate::error::{DecodeError, EncodeError};

/// The kernel's `ZSTD_BTRFS_MAX_WINDOWLOG`.
pub const MAX_WINDOW_LOG: u32 = 17;
/// zstd levels btrfs accepts (0 excluded: it only means "default").
pub const LEVELS: std::ops::RangeInclusive<i32> = -15..=15;
/// The kernel's default zstd level.
pub const DEFAULT_LEVEL: i32 = 3;

fn corrupt(err: std::io::Error) -> DecodeError {
    DecodeError::ZstdCorrupt(err.to_string())
}

fn library(err: std::io::Error) -> EncodeError {
    EncodeError::Library { compression: Compression::Zstd, message: err.to_string() }
}

/// Reusable decompression context, limited to a 128 KiB window.
#[derive(Default)]
pub struct ZstdDecoder {
    context: Option<RawDecoder<'static>>,
}

impl ZstdDecoder {
    /// Decodes the first frame of `encoded` into `out`; returns the bytes
    /// produced.
    pub fn decode(&mut self, encoded: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
        let context = self.context()?;
        let mut input = InBuffer::around(encoded);
        let mut output = OutBuffer::around(out);
        while output.pos() < output.capacity() {
            let (in0, out0) = (input.pos(), output.pos());
            if context.run(&mut input, &mut output).map_err(corrupt)? == 0 {
                break;
            }
            if input.pos() == in0 && output.pos() == out0 {
                return Err(DecodeError::Truncated(Compression::Zstd));
            }
        }
        Ok(output.pos())
    }

    fn context(&mut self) -> Result<&mut RawDecoder<'static>, DecodeError> {
        let context = match &mut self.context {
            Some(context) => context,
            empty => empty.insert(new_decoder().map_err(corrupt)?),
        };
        context.reinit().map_err(corrupt)?;
        Ok(context)
    }
}

fn new_decoder() -> std::io::Result<RawDecoder<'static>> {
    let mut context = RawDecoder::new()?;
    context.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))?;
    Ok(context)
}

/// Reusable compression context, kept for the last level used.
#[derive(Default)]
pub struct ZstdEncoder {
    context: Option<(i32, zstd::bulk::Compressor<'static>)>,
}

impl ZstdEncoder {
    /// Encodes `input` at `level` (validated by the caller); `None` when the
    /// frame would not be smaller than the input.
    pub fn encode(&mut self, level: i32, input: &[u8]) -> Result<Option<Vec<u8>>, EncodeError> {
        let context = self.context(level)?;
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
        context.compress_to_buffer(input, &mut out).map_err(library)?;
        Ok((out.len() < input.len()).then_some(out))
    }

    fn context(&mut self, level: i32) -> Result<&mut zstd::bulk::Compressor<'static>, EncodeError> {
        if !matches!(self.context, Some((l, _)) if l == level) {
            self.context = Some((level, new_compressor(level).map_err(library)?));
        }
        Ok(&mut self.context.as_mut().expect("set above").1)
    }
}

fn new_compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    let mut context = zstd::bulk::Compressor::new(level)?;
    context.set_parameter(CParameter::WindowLog(MAX_WINDOW_LOG))?;
    context.set_parameter(CParameter::ChecksumFlag(false))?;
    context.set_parameter(CParameter::ContentSizeFlag(true))?;
    context.set_parameter(CParameter::DictIdFlag(false))?;
    Ok(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::{noise, text};

    fn encode(level: i32, input: &[u8]) -> Option<Vec<u8>> {
        ZstdEncoder::default().encode(level, input).unwrap()
    }

    fn decode(encoded: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
        ZstdDecoder::default().decode(encoded, out)
    }

    /// The Frame_Header_Descriptor of a frame.
    fn descriptor(frame: &[u8]) -> u8 {
        assert_eq!(&frame[..4], &[0x28, 0xB5, 0x2F, 0xFD]);
        frame[4]
    }

    #[test]
    fn frames_are_single_segment_with_size_and_no_checksum() {
        // Frame_Content_Size_flag by size, Single_Segment (0x20), no checksum
        // (0x04), no dictionary id (0x03).
        for (len, fcs_flag) in [(131_072, 0x80), (45_179, 0x40), (3000, 0x40), (200, 0x00)] {
            let mut data = text(len);
            data[..len / 2].fill(b'a');
            for level in [-15, -1, 1, 3, 15] {
                let frame = encode(level, &data).unwrap();
                assert_eq!(descriptor(&frame), fcs_flag | 0x20, "len {len} level {level}");
            }
        }
    }

    #[test]
    fn only_the_first_frame_is_decoded() {
        let (a, b) = (text(5000), vec![b'z'; 5000]);
        let mut two = encode(3, &a).unwrap();
        two.extend_from_slice(&encode(3, &b).unwrap());
        let mut out = vec![0; 10_000];
        assert_eq!(decode(&two, &mut out), Ok(5000));
        assert_eq!(out[..5000], a[..]);
    }

    #[test]
    fn large_windows_are_rejected() {
        // A frame with no known size gets a window descriptor; windowLog 21.
        let data = text(100_000);
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 19).unwrap();
        encoder.set_parameter(CParameter::WindowLog(21)).unwrap();
        std::io::Write::write_all(&mut encoder, &data).unwrap();
        let frame = encoder.finish().unwrap();
        assert_eq!(descriptor(&frame) & 0x20, 0, "not single segment");
        let mut out = vec![0; 131_072];
        assert!(matches!(decode(&frame, &mut out), Err(DecodeError::ZstdCorrupt(_))));
    }

    #[test]
    fn checksum_is_verified_when_present() {
        let data = text(10_000);
        let mut frame = zstd::bulk::Compressor::new(3)
            .and_then(|mut c| {
                c.set_parameter(CParameter::ChecksumFlag(true))?;
                c.compress(&data)
            })
            .unwrap();
        let mut out = vec![0; 10_000];
        assert_eq!(decode(&frame, &mut out), Ok(10_000));
        let last = frame.len() - 1;
        frame[last] ^= 1;
        assert!(matches!(decode(&frame, &mut out), Err(DecodeError::ZstdCorrupt(_))));
    }

    #[test]
    fn truncated_corrupt_and_padded_frames() {
        let data = text(50_000);
        let frame = encode(3, &data).unwrap();
        let mut out = vec![0; 50_000];
        let cut = &frame[..frame.len() - 10];
        assert_eq!(decode(cut, &mut out), Err(DecodeError::Truncated(Compression::Zstd)));
        assert_eq!(decode(&[], &mut out), Err(DecodeError::Truncated(Compression::Zstd)));
        assert!(matches!(decode(b"not a zstd frame", &mut out), Err(DecodeError::ZstdCorrupt(_))));
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0; 4096]);
        assert_eq!(decode(&padded, &mut out), Ok(50_000));
        let mut short = vec![0; 20_000];
        assert_eq!(decode(&frame, &mut short), Ok(20_000));
        assert_eq!(short, data[..20_000]);
    }

    #[test]
    fn incompressible_input_gives_none() {
        assert_eq!(encode(3, &noise(4096, 9)), None);
        assert_eq!(encode(3, b"a"), None);
    }
}
