//! Codec fuzzing: hostile encoded data into the decoders, arbitrary input
//! through encode→decode.

use rawsend_codec::{Compression, Decoder, Encoder, MAX_UNENCODED_LEN, levels};

/// Bytes on each side of the output that must stay untouched.
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xA5;

/// Splits a little-endian `u32` off the front of `data`.
fn take_u32(data: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = data.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

/// Decodes `encoded` into `out_len` bytes surrounded by guard regions and
/// checks the decoder's contract: guards intact, length within bounds,
/// tail zero-filled.
pub fn check_decode(compression: Compression, encoded: &[u8], out_len: usize) {
    let mut buf = vec![GUARD_BYTE; out_len + 2 * GUARD];
    let result = Decoder::new().decode(compression, encoded, &mut buf[GUARD..GUARD + out_len]);
    let (front, rest) = buf.split_at(GUARD);
    let (out, back) = rest.split_at(out_len);
    assert!(front.iter().chain(back).all(|&b| b == GUARD_BYTE), "wrote outside the output");
    if let Ok(produced) = result {
        assert!(produced <= out_len);
        assert!(out[produced..].iter().all(|&b| b == 0), "tail not zero-filled");
    }
}

/// Fuzz input for one decoder: a `u32` choosing the output length (and, for
/// LZO, the sector size: LZO_4K…LZO_64K), then the encoded data. With the
/// top bit of that `u32` set, a second `u32` follows and the rest is plain
/// data: it is encoded, then the byte the second `u32` picks is damaged, so
/// the fuzzer also explores streams that are almost valid.
pub fn fuzz_decode(algorithm: Compression, data: &[u8]) {
    let Some((selector, rest)) = take_u32(data) else { return };
    let out_len = selector as usize % (MAX_UNENCODED_LEN + 1);
    let compression = if algorithm.is_lzo() {
        let lzo = Compression::Lzo4K.as_raw() + (selector >> 24) % 5;
        Compression::from_raw(lzo).unwrap_or(algorithm)
    } else {
        algorithm
    };
    if selector >> 31 == 0 {
        return check_decode(compression, rest, out_len);
    }
    let Some((damage, plain)) = take_u32(rest) else { return };
    let plain = &plain[..plain.len().min(MAX_UNENCODED_LEN)];
    let Ok(Some(mut encoded)) = Encoder::new().encode(compression, None, plain) else { return };
    let at = (damage >> 8) as usize % encoded.len();
    encoded[at] ^= damage as u8;
    check_decode(compression, &encoded, out_len);
}

/// Fuzz input for the round trip: a `u32` choosing algorithm, level and
/// extra output length, then the data (at most 128 KiB is used).
pub fn fuzz_round_trip(data: &[u8]) {
    let Some((selector, input)) = take_u32(data) else { return };
    let input = &input[..input.len().min(MAX_UNENCODED_LEN)];
    let compression = Compression::from_raw(1 + selector % 7).unwrap_or(Compression::Zlib);
    let level = levels(compression).map(|(range, _)| {
        let span = range.end() - range.start() + 1;
        let level = range.start() + (selector >> 8) as i32 % span;
        if level == 0 { 1 } else { level }
    });
    let encoded = Encoder::new().encode(compression, level, input).expect("valid request");
    let Some(encoded) = encoded else { return };
    assert!(encoded.len() < input.len(), "encoded is not smaller");
    let out_len = (input.len() + (selector >> 16) as usize % 4096).min(MAX_UNENCODED_LEN);
    let mut out = vec![GUARD_BYTE; out_len];
    let produced = Decoder::new().decode(compression, &encoded, &mut out).expect("own output decodes");
    assert_eq!(produced, input.len());
    assert_eq!(&out[..input.len()], input);
    assert!(out[input.len()..].iter().all(|&b| b == 0));
}
