//! Property tests over the public API: encode→decode round trips for every
//! algorithm, level and size, and hostile input into every decoder.

use proptest::prelude::*;
use rawsend_codec::{Compression, Decoder, Encoder, MAX_UNENCODED_LEN, decode, levels};

/// Every compressing value with every level it has (`None` = no level).
fn settings() -> Vec<(Compression, Option<i32>)> {
    Compression::ALL
        .into_iter()
        .skip(1)
        .flat_map(|c| match levels(c) {
            Some((range, _)) => range.filter(|&l| l != 0).map(|l| (c, Some(l))).collect(),
            None => vec![(c, None)],
        })
        .collect()
}

/// Input data: random bytes, runs of a few values, or text-like repeats.
fn data() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![1..=64usize, 1..=8192usize, 1..=MAX_UNENCODED_LEN, Just(MAX_UNENCODED_LEN)];
    len.prop_flat_map(|len| {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), len),
            (any::<u64>(), 1..8u8).prop_map(move |(seed, alphabet)| runs(len, seed, alphabet)),
        ]
    })
}

/// Compressible data: runs of random length over a small alphabet.
fn runs(len: usize, mut seed: u64, alphabet: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let byte = b'a' + (seed >> 33) as u8 % alphabet;
        let run = 1 + (seed >> 50) as usize % 64;
        out.extend(std::iter::repeat_n(byte, run.min(len - out.len())));
    }
    out
}

/// Decodes into a buffer with guard regions on both sides and checks that
/// nothing outside `[GUARD, GUARD + len)` changed.
fn guarded_decode(decoder: &mut Decoder, c: Compression, encoded: &[u8], len: usize) -> Vec<u8> {
    const GUARD: usize = 64;
    let mut buf = vec![0xA5; len + 2 * GUARD];
    let result = decoder.decode(c, encoded, &mut buf[GUARD..GUARD + len]);
    assert!(buf[..GUARD].iter().chain(&buf[GUARD + len..]).all(|&b| b == 0xA5), "guard overwritten");
    if let Ok(n) = result {
        assert!(n <= len);
        assert!(buf[GUARD + n..GUARD + len].iter().all(|&b| b == 0), "tail not zero-filled");
    }
    buf[GUARD..GUARD + len].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn round_trip(data in data(), pick in any::<prop::sample::Index>(), pad in 0..4096usize) {
        let settings = settings();
        let (c, level) = settings[pick.index(settings.len())];
        let Some(encoded) = Encoder::new().encode(c, level, &data).unwrap() else {
            return Ok(());
        };
        prop_assert!(encoded.len() < data.len());
        let len = (data.len() + pad).min(MAX_UNENCODED_LEN);
        let out = guarded_decode(&mut Decoder::new(), c, &encoded, len);
        prop_assert_eq!(&out[..data.len()], &data[..]);
    }

    #[test]
    fn every_setting_round_trips_compressible_data(seed in any::<u64>(), len in 100..=MAX_UNENCODED_LEN) {
        let data = runs(len, seed, 4);
        let (mut encoder, mut decoder) = (Encoder::new(), Decoder::new());
        for (c, level) in settings() {
            let encoded = encoder.encode(c, level, &data).unwrap();
            let encoded = encoded.unwrap_or_else(|| panic!("{c:?} {level:?} did not compress"));
            let out = guarded_decode(&mut decoder, c, &encoded, len);
            prop_assert!(out == data, "{:?} {:?}", c, level);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..9000), len in 0..=MAX_UNENCODED_LEN) {
        let mut decoder = Decoder::new();
        for c in Compression::ALL {
            guarded_decode(&mut decoder, c, &bytes, len);
        }
    }

    #[test]
    fn mutated_streams_never_panic(
        seed in any::<u64>(),
        len in 1..=MAX_UNENCODED_LEN,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        out_len in 0..=MAX_UNENCODED_LEN,
    ) {
        let data = runs(len, seed, 3);
        let mut decoder = Decoder::new();
        for c in Compression::ALL.into_iter().skip(1) {
            let Some(mut encoded) = rawsend_codec::encode(c, None, &data).unwrap() else { continue };
            for (at, byte) in &flips {
                let i = at.index(encoded.len());
                encoded[i] ^= byte;
            }
            guarded_decode(&mut decoder, c, &encoded, out_len);
            let cut_len = cut.index(encoded.len() + 1);
            guarded_decode(&mut decoder, c, &encoded[..cut_len], out_len);
        }
    }
}

#[test]
fn one_shot_decode_matches_reused_decoder() {
    let data = runs(50_000, 7, 5);
    let mut decoder = Decoder::new();
    for (c, level) in settings() {
        let encoded = rawsend_codec::encode(c, level, &data).unwrap().unwrap();
        let mut once = vec![0; data.len()];
        decode(c, &encoded, &mut once).unwrap();
        assert_eq!(once, guarded_decode(&mut decoder, c, &encoded, data.len()));
    }
}
