//! Deterministic test inputs: compressible text and incompressible noise.

/// `len` bytes of incompressible pseudo-random data (xorshift64*).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// `len` bytes of compressible, varied text.
pub fn text(len: usize) -> Vec<u8> {
    let words = ["extent", "btrfs", "send", "stream", "zstd", "sector", "inline", "\n"];
    let picks = noise(len, 42);
    picks
        .iter()
        .flat_map(|&p| [words[usize::from(p) % words.len()].as_bytes(), b" "])
        .flatten()
        .copied()
        .take(len)
        .collect()
}
