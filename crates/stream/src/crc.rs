//! The send stream's CRC32C, exactly as the kernel computes it.
//!
//! The kernel runs `crc32c(0, cmd, len)`: Castagnoli polynomial, register
//! seeded with 0 and no final inversion, over the whole command with its crc
//! field zeroed. The `crc32c` crate (hardware-accelerated with SSE4.2 or ARMv8
//! CRC instructions) implements the usual pre- and post-inverted form, so the
//! seed and the result are inverted around it.

use crate::frame::{CMD_HEADER_LEN, CRC_RANGE};

/// CRC of a whole command (header and payload) as it appears in the stream,
/// computed as if its crc field were zero.
pub fn command_crc(command: &[u8]) -> u32 {
    let header = &command[..CMD_HEADER_LEN];
    let mut crc = crc32c::crc32c_append(!0, &header[..CRC_RANGE.start]);
    crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc = crc32c::crc32c_append(crc, &command[CMD_HEADER_LEN..]);
    !crc
}

/// The raw CRC (seed 0, no final xor) of arbitrary bytes.
pub fn raw_crc(bytes: &[u8]) -> u32 {
    !crc32c::crc32c_append(!0, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_test_vectors() {
        assert_eq!(raw_crc(b"123456789"), 0x58E3_FA20);
        let end = [0, 0, 0, 0, 0x15, 0, 0x50, 0x6c, 0xc9, 0x9d];
        assert_eq!(command_crc(&end), 0x9DC9_6C50);
    }
}
