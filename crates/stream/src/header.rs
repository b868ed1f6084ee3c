//! The 17-byte stream header: `btrfs-stream\0` then `le32 version`.

use crate::error::ErrorKind;

/// The magic bytes, NUL included.
pub const MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// Size of the stream header.
pub const STREAM_HEADER_LEN: usize = 17;
/// The highest protocol version this crate reads and writes.
pub const MAX_VERSION: u32 = 3;

/// A parsed stream header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// Protocol version, 1 to [`MAX_VERSION`].
    pub version: u32,
}

impl StreamHeader {
    /// Parses and checks a header.
    pub fn parse(bytes: &[u8; STREAM_HEADER_LEN]) -> Result<Self, ErrorKind> {
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(ErrorKind::BadMagic);
        }
        let version = u32::from_le_bytes([bytes[13], bytes[14], bytes[15], bytes[16]]);
        if !(1..=MAX_VERSION).contains(&version) {
            return Err(ErrorKind::UnsupportedVersion(version));
        }
        Ok(StreamHeader { version })
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; STREAM_HEADER_LEN] {
        let mut out = [0; STREAM_HEADER_LEN];
        out[..MAGIC.len()].copy_from_slice(MAGIC);
        out[MAGIC.len()..].copy_from_slice(&self.version.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let bytes = StreamHeader { version: 2 }.to_bytes();
        assert_eq!(hex(&bytes), "62747266732d73747265616d0002000000");
        assert_eq!(StreamHeader::parse(&bytes), Ok(StreamHeader { version: 2 }));
        let mut bad = bytes;
        bad[0] = b'B';
        assert_eq!(StreamHeader::parse(&bad), Err(ErrorKind::BadMagic));
        for version in [0, 4, u32::MAX] {
            let bytes = StreamHeader { version }.to_bytes();
            assert_eq!(StreamHeader::parse(&bytes), Err(ErrorKind::UnsupportedVersion(version)));
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
