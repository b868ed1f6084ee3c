//! A bounded LZO1X decompressor that reports how many bytes it produced.
//!
//! Why not the `lzo1x` crate's `decompress`: it fails unless the output
//! buffer has exactly the decompressed length, and a btrfs LZO segment does
//! not say how long it decodes: the kernel accepts any length up to one
//! sector (the last segment of a file tail is shorter). This decoder writes
//! into a caller-bounded slice, returns the length produced, and checks
//! every read, write and back-reference, as the kernel's
//! `lzo1x_decompress_safe` does. It follows the kernel's stream format
//! description (Documentation/staging/lzo.rst), including its handling of a
//! leading bitstream-version byte; version 1 (LZO-RLE) is rejected, as btrfs
//! never writes it.
//!
//! The `lzo1x` crate is still used to compress, and the tests check this
//! decoder against its `decompress`.

use std::fmt;

/// What made LZO1X data invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lzo1xError {
    /// The data ended in the middle of an instruction.
    InputOverrun,
    /// The data decodes to more than the output bound.
    OutputOverrun,
    /// A match refers to bytes before the start of the output.
    LookbehindOverrun,
    /// Bytes follow the end-of-stream marker.
    InputNotConsumed,
    /// The end-of-stream marker is malformed.
    BadEnd,
    /// A bitstream version other than 0 (1 is the kernel's LZO-RLE).
    UnsupportedVersion(u8),
}

impl fmt::Display for Lzo1xError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lzo1xError::InputOverrun => f.write_str("LZO1X data is truncated"),
            Lzo1xError::OutputOverrun => f.write_str("LZO1X data decodes past the bound"),
            Lzo1xError::LookbehindOverrun => f.write_str("LZO1X match before start of output"),
            Lzo1xError::InputNotConsumed => f.write_str("bytes after LZO1X end marker"),
            Lzo1xError::BadEnd => f.write_str("malformed LZO1X end marker"),
            Lzo1xError::UnsupportedVersion(v) => write!(f, "LZO1X bitstream version {v}"),
        }
    }
}

impl std::error::Error for Lzo1xError {}

type Result<T> = std::result::Result<T, Lzo1xError>;

/// Byte that starts a versioned stream (kernel: at least 5 bytes long).
const VERSION_MARKER: u8 = 17;
/// Shortest stream that can carry a version byte.
const MIN_VERSIONED_LEN: usize = 5;
/// Shortest valid stream: the 3-byte end marker.
const MIN_STREAM_LEN: usize = 3;
/// Back-reference base of the long-distance (M4) matches.
const M4_BASE: usize = 16384;
/// Back-reference base of a 3-byte match that follows a literal run.
const M1_AFTER_RUN_BASE: usize = 2049;

/// Decodes one LZO1X stream into `out`, which bounds the output, and
/// returns the number of bytes written (the rest of `out` is untouched).
pub fn decompress(src: &[u8], out: &mut [u8]) -> Result<usize> {
    if src.len() < MIN_STREAM_LEN {
        return Err(Lzo1xError::InputOverrun);
    }
    let mut input = Input { src, pos: 0 };
    if src.len() >= MIN_VERSIONED_LEN && src[0] == VERSION_MARKER {
        match src[1] {
            0 => input.pos = 2,
            version => return Err(Lzo1xError::UnsupportedVersion(version)),
        }
    }
    let mut output = Output { out, pos: 0 };
    let mut state = first_literals(&mut input, &mut output)?;
    loop {
        match next_match(&mut input, state)? {
            Step::Literals(len) => {
                output.literals(input.take(len)?)?;
                state = 4;
            }
            Step::Match { distance, len, trailing } => {
                output.back_reference(distance, len)?;
                output.literals(input.take(trailing)?)?;
                state = trailing;
            }
            Step::End { len } => return finish(&input, &output, len),
        }
    }
}

/// One decoded instruction.
enum Step {
    /// Copy `len` literal bytes from the input.
    Literals(usize),
    /// Copy `len` bytes from `distance` back, then `trailing` literals.
    Match { distance: usize, len: usize, trailing: usize },
    /// End-of-stream marker with its length field.
    End { len: usize },
}

/// A first byte above 17 is a literal run without an instruction; returns
/// the state (literals just copied, 4 meaning "4 or more").
fn first_literals(input: &mut Input<'_>, output: &mut Output<'_>) -> Result<usize> {
    let first = input.peek()?;
    if first <= VERSION_MARKER {
        return Ok(0);
    }
    input.pos += 1;
    let len = usize::from(first - VERSION_MARKER);
    output.literals(input.take(len)?)?;
    Ok(len.min(4))
}

/// Decodes the instruction at the input position; `state` is the number of
/// literals the previous instruction copied (0–3, or 4 for a run).
fn next_match(input: &mut Input<'_>, state: usize) -> Result<Step> {
    let op = input.byte()?;
    let low2 = usize::from(op & 3);
    let step = match op {
        0..=15 if state == 0 => Step::Literals(input.length(op, 15)? + 3),
        0..=15 => {
            let (len, base) = if state == 4 { (3, M1_AFTER_RUN_BASE) } else { (2, 1) };
            let distance = (usize::from(input.byte()?) << 2) + usize::from(op >> 2 & 3) + base;
            Step::Match { distance, len, trailing: low2 }
        }
        16..=31 => {
            let len = input.length(op, 7)? + 2;
            let tail = usize::from(input.le16()?);
            let far = usize::from(op & 8) << 11;
            match far + (tail >> 2) {
                0 => Step::End { len },
                d => Step::Match { distance: d + M4_BASE, len, trailing: tail & 3 },
            }
        }
        32..=63 => {
            let len = input.length(op, 31)? + 2;
            let tail = usize::from(input.le16()?);
            Step::Match { distance: (tail >> 2) + 1, len, trailing: tail & 3 }
        }
        _ => {
            let len = if op >= 128 { 5 + usize::from(op >> 5 & 3) } else { 3 + usize::from(op >> 5 & 1) };
            let distance = (usize::from(input.byte()?) << 3) + usize::from(op >> 2 & 7) + 1;
            Step::Match { distance, len, trailing: low2 }
        }
    };
    Ok(step)
}

/// Checks the end marker (length 3, nothing after it).
fn finish(input: &Input<'_>, output: &Output<'_>, len: usize) -> Result<usize> {
    if len != 3 {
        Err(Lzo1xError::BadEnd)
    } else if input.pos != input.src.len() {
        Err(Lzo1xError::InputNotConsumed)
    } else {
        Ok(output.pos)
    }
}

/// Reading side: every access is checked against the end of the data.
struct Input<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn peek(&self) -> Result<u8> {
        self.src.get(self.pos).copied().ok_or(Lzo1xError::InputOverrun)
    }

    fn byte(&mut self) -> Result<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn le16(&mut self) -> Result<u16> {
        let bytes = self.take(2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(len).ok_or(Lzo1xError::InputOverrun)?;
        let bytes = self.src.get(self.pos..end).ok_or(Lzo1xError::InputOverrun)?;
        self.pos = end;
        Ok(bytes)
    }

    /// The length field in the low bits of `op` selected by `mask`; a zero
    /// field is followed by zero bytes worth 255 each and a final non-zero
    /// byte, added to `mask`.
    fn length(&mut self, op: u8, mask: u8) -> Result<usize> {
        let field = op & mask;
        if field != 0 {
            return Ok(usize::from(field));
        }
        let mut len = usize::from(mask);
        loop {
            match self.byte()? {
                0 => len = len.saturating_add(255),
                b => return Ok(len.saturating_add(usize::from(b))),
            }
        }
    }
}

/// Writing side: the slice is the bound.
struct Output<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl Output<'_> {
    fn reserve(&self, len: usize) -> Result<usize> {
        self.pos.checked_add(len).filter(|&end| end <= self.out.len()).ok_or(Lzo1xError::OutputOverrun)
    }

    fn literals(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.reserve(bytes.len())?;
        self.out[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Copies `len` bytes from `distance` back; the source may overlap the
    /// destination, which repeats the last `distance` bytes.
    fn back_reference(&mut self, distance: usize, len: usize) -> Result<()> {
        let start = self.pos.checked_sub(distance).ok_or(Lzo1xError::LookbehindOverrun)?;
        let end = self.reserve(len)?;
        // Copy in chunks that never overlap their source; the copied span is
        // periodic in `distance`, so it can double every round.
        while self.pos < end {
            let chunk = (end - self.pos).min(self.pos - start);
            self.out.copy_within(start..start + chunk, self.pos);
            self.pos += chunk;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &[u8]) {
        let compressed = lzo1x::compress(data, lzo1x::CompressLevel::default());
        let mut out = vec![0xAA; data.len() + 17];
        let n = decompress(&compressed, &mut out).unwrap();
        assert_eq!(&out[..n], data);
        assert!(out[n..].iter().all(|&b| b == 0xAA), "wrote past the data");
    }

    #[test]
    fn decodes_what_the_lzo1x_crate_encodes() {
        round_trip(b"");
        round_trip(b"a");
        round_trip(&[7; 100_000]);
        let text: Vec<u8> = (0..50_000u32).flat_map(|i| format!("line {} ", i % 977).into_bytes()).collect();
        round_trip(&text);
        round_trip(&crate::test_data::noise(70_000, 3));
    }

    proptest::proptest! {
        /// Whatever this decoder accepts, the `lzo1x` crate decodes to the
        /// same bytes (given the length), on mutated valid streams.
        #[test]
        fn agrees_with_the_lzo1x_crate(
            seed in 0u64..1000,
            len in 0usize..6000,
            flips in proptest::collection::vec((0usize..10_000, 0u8..=255), 0..4),
        ) {
            let mut data = crate::test_data::text(len);
            data[..len / 3].copy_from_slice(&crate::test_data::noise(len / 3, seed));
            let mut src = lzo1x::compress(&data, lzo1x::CompressLevel::default());
            for (at, byte) in flips {
                let i = at % src.len();
                src[i] ^= byte;
            }
            let mut out = vec![0; 8192];
            if let Ok(n) = decompress(&src, &mut out) {
                let mut theirs = vec![0; n];
                proptest::prop_assert_eq!(lzo1x::decompress(&src, &mut theirs), Ok(()));
                proptest::prop_assert_eq!(&theirs[..], &out[..n]);
            }
        }
    }

    #[test]
    fn end_marker_alone_is_empty() {
        assert_eq!(decompress(&[0x11, 0, 0], &mut []), Ok(0));
    }

    #[test]
    fn rejects_short_and_trailing_input() {
        assert_eq!(decompress(&[0x11, 0], &mut [0; 8]), Err(Lzo1xError::InputOverrun));
        assert_eq!(decompress(&[0x11, 0, 0, 0], &mut [0; 8]), Err(Lzo1xError::InputNotConsumed));
        // 4 literals announced, 3 present.
        assert_eq!(decompress(&[21, 1, 2, 3], &mut [0; 8]), Err(Lzo1xError::InputOverrun));
    }

    #[test]
    fn output_bound_is_enforced() {
        let compressed = lzo1x::compress(&[9; 5000], lzo1x::CompressLevel::default());
        let mut out = [0u8; 4999];
        assert_eq!(decompress(&compressed, &mut out), Err(Lzo1xError::OutputOverrun));
    }

    #[test]
    fn match_before_start_is_rejected() {
        // One literal, then a 3-byte M2 match at distance 2 (op 0x44, H 0).
        let src = [18, b'x', 0x44, 0x00, 0x11, 0, 0];
        assert_eq!(decompress(&src, &mut [0; 16]), Err(Lzo1xError::LookbehindOverrun));
        // The same at distance 1 repeats the literal.
        let src = [18, b'x', 0x40, 0x00, 0x11, 0, 0];
        let mut out = [0; 16];
        assert_eq!(decompress(&src, &mut out), Ok(4));
        assert_eq!(&out[..4], b"xxxx");
    }

    #[test]
    fn version_byte_as_the_kernel_reads_it() {
        // Version 0 is skipped, then a normal stream follows.
        let src = [17, 0, 18, b'y', 0x11, 0, 0];
        let mut out = [0; 4];
        assert_eq!(decompress(&src, &mut out), Ok(1));
        assert_eq!(out[0], b'y');
        assert_eq!(decompress(&[17, 1, 0x11, 0, 0], &mut out), Err(Lzo1xError::UnsupportedVersion(1)));
    }

    #[test]
    fn end_marker_needs_length_three() {
        // One literal, then M4 with length field 2 (len 4) and distance 16384.
        assert_eq!(decompress(&[18, b'x', 0x12, 0, 0], &mut [0; 8]), Err(Lzo1xError::BadEnd));
    }
}
