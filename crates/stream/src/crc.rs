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
    let header = command[..CMD_HEADER_LEN].try_into().expect("a command header");
    let mut crc = CommandCrc::new(header);
    crc.update(&command[CMD_HEADER_LEN..]);
    crc.finish()
}

/// A command's CRC computed piece by piece as its bytes pass (the read-ahead
/// thread sees a command split across blocks); the same value as [`command_crc`].
pub(crate) struct CommandCrc(u32);

impl CommandCrc {
    /// Starts with the command's header, its crc field taken as zero.
    pub(crate) fn new(header: &[u8; CMD_HEADER_LEN]) -> Self {
        let crc = crc32c::crc32c_append(!0, &header[..CRC_RANGE.start]);
        CommandCrc(crc32c::crc32c_append(crc, &[0; CRC_RANGE.end - CRC_RANGE.start]))
    }

    /// Adds the next payload bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, bytes);
    }

    /// The CRC of everything added.
    pub(crate) fn finish(self) -> u32 {
        !self.0
    }
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

    #[test]
    fn piece_by_piece_is_the_same_as_at_once() {
        let mut command = vec![7, 0, 0, 0, 0x0f, 0, 1, 2, 3, 4];
        command.extend_from_slice(b"payload");
        let whole = command_crc(&command);
        for split in CMD_HEADER_LEN..=command.len() {
            let mut crc = CommandCrc::new(command[..CMD_HEADER_LEN].try_into().unwrap());
            crc.update(&command[CMD_HEADER_LEN..split]);
            crc.update(&command[split..]);
            assert_eq!(crc.finish(), whole, "split at {split}");
        }
    }
}
