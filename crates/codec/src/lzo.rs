//! LZO1X in btrfs segment framing (`COMPRESSION_LZO_4K` … `LZO_64K`).
//!
//! ```text
//! le32 total_len                  whole blob including this header
//! per segment:
//!   [1..3 zero bytes]             only if fewer than 4 bytes remain before
//!                                 the next sector boundary
//!   le32 seg_len                  LZO1X payload bytes
//!   seg_len bytes of LZO1X        one sector of input at most
//! ```
//!
//! Decoding follows the kernel (`fs/btrfs/lzo.c`): `total_len` must fit the
//! data and leave less than a sector of slack after it, every segment is at
//! most `lzo1x_worst_compress(sector)` bytes and decodes independently to at
//! most one sector, decoding stops once the output is full. Unlike the
//! btrfs-progs fallback, a segment is never allowed to decode past the space
//! left in the output.

use crate::error::DecodeError;
use crate::{MAX_ENCODED_LEN, lzo1x_decode};

/// Size of `total_len` and of each segment header.
const HEADER_LEN: usize = 4;

/// `lzo1x_worst_compress`: the largest LZO1X output for `len` input bytes.
pub fn worst_compress(len: usize) -> usize {
    len + len / 16 + 64 + 3
}

/// Bytes of zero padding needed at `pos` so a 4-byte header does not cross
/// a sector boundary.
fn padding(pos: usize, sector: usize) -> usize {
    match sector - pos % sector {
        left if left < HEADER_LEN => left,
        _ => 0,
    }
}

fn read_le32(data: &[u8], pos: usize) -> Option<u32> {
    let bytes = data.get(pos..pos.checked_add(HEADER_LEN)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Decodes framed LZO data into `out`; returns the bytes produced before
/// the zero tail (which the caller fills).
pub fn decode(sector: usize, encoded: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let total_len = check_total_len(sector, encoded)?;
    let mut pos = HEADER_LEN;
    let mut produced = 0;
    while pos < total_len && produced < out.len() {
        let (payload, next) = segment(encoded, pos, total_len, sector)?;
        let bound = (out.len() - produced).min(sector);
        let written = lzo1x_decode::decompress(payload, &mut out[produced..produced + bound])
            .map_err(|cause| DecodeError::LzoSegment { offset: pos, cause })?;
        produced += written;
        pos = next;
        pos += padding(pos, sector);
    }
    Ok(produced)
}

/// Reads and checks `total_len` as the kernel does for a regular extent.
fn check_total_len(sector: usize, encoded: &[u8]) -> Result<usize, DecodeError> {
    let raw = read_le32(encoded, 0).ok_or(DecodeError::LzoNoHeader)?;
    let total_len = usize::try_from(raw).unwrap_or(usize::MAX);
    let encoded_len = encoded.len();
    if total_len < HEADER_LEN || total_len > encoded_len || total_len > MAX_ENCODED_LEN {
        return Err(DecodeError::LzoTotalLen { total_len: raw, encoded_len });
    }
    if total_len.next_multiple_of(sector) < encoded_len.next_multiple_of(sector) {
        return Err(DecodeError::LzoSlack { total_len: raw, encoded_len });
    }
    Ok(total_len)
}

/// The payload of the segment whose header is at `pos`, and the offset
/// just past it.
fn segment(
    encoded: &[u8],
    pos: usize,
    total_len: usize,
    sector: usize,
) -> Result<(&[u8], usize), DecodeError> {
    let start = pos + HEADER_LEN;
    if start > total_len {
        return Err(DecodeError::LzoSegmentHeader { offset: pos });
    }
    let seg_len = read_le32(encoded, pos).ok_or(DecodeError::LzoSegmentHeader { offset: pos })?;
    let bad_len = DecodeError::LzoSegmentLen { offset: pos, seg_len };
    let len = usize::try_from(seg_len).map_err(|_| bad_len.clone())?;
    if len > worst_compress(sector) || len > total_len - start {
        return Err(bad_len);
    }
    Ok((&encoded[start..start + len], start + len))
}

/// Encodes `input` (≤ 128 KiB) as framed LZO with segments of one sector of
/// input, exactly `total_len` bytes long (no slack, so the result is also
/// valid as an inline extent). `None` once the output would not be
/// smaller than the input.
pub fn encode(sector: usize, input: &[u8]) -> Option<Vec<u8>> {
    let limit = input.len();
    let mut out = Vec::with_capacity(limit);
    out.extend_from_slice(&[0; HEADER_LEN]);
    for chunk in input.chunks(sector) {
        let payload = lzo1x::compress(chunk, lzo1x::CompressLevel::default());
        out.resize(out.len() + padding(out.len(), sector), 0);
        out.extend_from_slice(&u32::try_from(payload.len()).ok()?.to_le_bytes());
        out.extend_from_slice(&payload);
        if out.len() >= limit {
            return None;
        }
    }
    let total_len = u32::try_from(out.len()).ok()?;
    out[..HEADER_LEN].copy_from_slice(&total_len.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: usize = 4096;

    fn decode4k(encoded: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
        decode(S, encoded, out)
    }

    /// Builds a framed blob from raw segment payloads, with the padding rule.
    fn frame(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0; HEADER_LEN];
        for p in payloads {
            out.resize(out.len() + padding(out.len(), S), 0);
            out.extend_from_slice(&u32::try_from(p.len()).unwrap().to_le_bytes());
            out.extend_from_slice(p);
        }
        let total = u32::try_from(out.len()).unwrap();
        out[..4].copy_from_slice(&total.to_le_bytes());
        out
    }

    fn lzo(data: &[u8]) -> Vec<u8> {
        lzo1x::compress(data, lzo1x::CompressLevel::default())
    }

    #[test]
    fn worst_compress_matches_the_kernel() {
        assert_eq!(worst_compress(4096), 4419);
    }

    #[test]
    fn padding_rule() {
        assert_eq!(padding(4, S), 0);
        assert_eq!(padding(S - 4, S), 0);
        assert_eq!(padding(S - 3, S), 3);
        assert_eq!(padding(S - 1, S), 1);
        assert_eq!(padding(S, S), 0);
    }

    #[test]
    fn header_never_crosses_a_sector() {
        // Random-ish data so segments are long; check every header position.
        let blob = encode(S, &crate::test_data::text(131072)).expect("compressible");
        let mut pos = HEADER_LEN;
        let mut segments = 0;
        while pos < blob.len() {
            assert_eq!(pos / S, (pos + 3) / S, "header at {pos} crosses a sector");
            let len = read_le32(&blob, pos).unwrap() as usize;
            pos += HEADER_LEN + len;
            pos += padding(pos, S);
            segments += 1;
        }
        assert_eq!(segments, 32);
        assert_eq!(read_le32(&blob, 0).unwrap() as usize, blob.len());
    }

    /// First chunk whose LZO1X payload ends `gap` bytes before the end of
    /// the first sector of the blob, so the next header needs `gap` bytes of
    /// padding.
    fn chunk_ending_before_boundary(gap: usize) -> Vec<u8> {
        (0..S)
            .map(|zeros| {
                let mut chunk = vec![0; zeros];
                chunk.extend_from_slice(&crate::test_data::noise(S - zeros, 5));
                chunk
            })
            .find(|chunk| 2 * HEADER_LEN + lzo(chunk).len() == S - gap)
            .expect("some split lands there")
    }

    #[test]
    fn encoder_pads_before_a_header_that_would_cross() {
        for gap in 1..=3 {
            let mut data = chunk_ending_before_boundary(gap);
            data.extend_from_slice(&crate::test_data::text(3000));
            let blob = encode(S, &data).unwrap();
            assert_eq!(&blob[S - gap..S], &vec![0; gap][..], "gap {gap}");
            let second = read_le32(&blob, S).unwrap() as usize;
            assert_eq!(blob.len(), S + HEADER_LEN + second, "no padding after the last segment");
            let mut out = vec![0; data.len()];
            assert_eq!(decode(S, &blob, &mut out), Ok(data.len()));
            assert_eq!(out, data);
        }
    }

    #[test]
    fn no_padding_when_four_bytes_remain() {
        let mut data = chunk_ending_before_boundary(4);
        data.extend_from_slice(&crate::test_data::text(3000));
        let blob = encode(S, &data).unwrap();
        let first = read_le32(&blob, HEADER_LEN).unwrap() as usize;
        assert_eq!(2 * HEADER_LEN + first, S - 4);
        assert_eq!(read_le32(&blob, S - 4).map(|l| l as usize), Some(blob.len() - S));
    }

    #[test]
    fn short_last_segment_and_zero_tail() {
        let data = [b'q'; S + 3000];
        let blob = frame(&[&lzo(&data[..S]), &lzo(&data[S..])]);
        let mut out = vec![0xEE; 2 * S];
        assert_eq!(decode4k(&blob, &mut out), Ok(S + 3000));
        assert_eq!(&out[..S + 3000], &data[..]);
    }

    #[test]
    fn sector_slack_after_total_len() {
        let mut blob = frame(&[&lzo(&[1; S])]);
        blob.resize(blob.len().next_multiple_of(S), 0);
        let mut out = vec![0; S];
        assert_eq!(decode4k(&blob, &mut out), Ok(S));
        blob.resize(blob.len() + S, 0);
        assert!(matches!(decode4k(&blob, &mut out), Err(DecodeError::LzoSlack { .. })));
    }

    #[test]
    fn total_len_bounds() {
        let mut out = [0; 16];
        assert_eq!(decode4k(&[4, 0, 0], &mut out), Err(DecodeError::LzoNoHeader));
        for bad in [0u32, 3, 16, 200_000] {
            let mut blob = frame(&[&lzo(b"abc")]);
            blob[..4].copy_from_slice(&bad.to_le_bytes());
            assert!(matches!(decode4k(&blob, &mut out), Err(DecodeError::LzoTotalLen { .. })), "{bad}");
        }
        assert_eq!(decode4k(&4u32.to_le_bytes(), &mut out), Ok(0));
    }

    #[test]
    fn segment_length_bounds() {
        let mut out = [0; S];
        let mut blob = frame(&[&lzo(b"abc")]);
        blob[4..8].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(decode4k(&blob, &mut out), Err(DecodeError::LzoSegmentLen { seg_len: 100, .. })));
        let big = vec![0u8; worst_compress(S) + 1];
        let blob = frame(&[&big]);
        assert!(matches!(decode4k(&blob, &mut out), Err(DecodeError::LzoSegmentLen { .. })));
        // Header cut off by total_len.
        let mut blob = frame(&[&lzo(b"abc")]);
        blob.extend_from_slice(&[1, 0]);
        let total = u32::try_from(blob.len()).unwrap();
        blob[..4].copy_from_slice(&total.to_le_bytes());
        assert!(matches!(decode4k(&blob, &mut out), Err(DecodeError::LzoSegmentHeader { .. })));
    }

    #[test]
    fn segment_never_decodes_past_the_output() {
        // progs overflows here: unencoded_len 3000, one 4 KiB segment.
        let blob = frame(&[&lzo(&[5; S])]);
        let mut out = [0; 3000];
        let err = decode4k(&blob, &mut out).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::LzoSegment { cause: lzo1x_decode::Lzo1xError::OutputOverrun, .. }
        ));
    }

    #[test]
    fn segment_never_decodes_past_a_sector() {
        let blob = frame(&[&lzo(&[5; S + 1])]);
        let mut out = vec![0; 4 * S];
        assert!(matches!(decode4k(&blob, &mut out), Err(DecodeError::LzoSegment { .. })));
    }

    #[test]
    fn stops_when_output_is_full() {
        let blob = frame(&[&lzo(&[5; S]), b"garbage"]);
        let mut out = vec![0; S];
        assert_eq!(decode4k(&blob, &mut out), Ok(S));
    }

    #[test]
    fn encode_gives_up_when_not_smaller() {
        assert_eq!(encode(S, &crate::test_data::noise(9000, 1)), None);
        assert_eq!(encode(S, b"a"), None);
    }
}
