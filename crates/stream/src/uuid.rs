//! The 16-byte UUIDs btrfs gives subvolumes: carried by send streams,
//! printed and parsed as `btrfs subvolume show` prints them. The one UUID
//! type of the workspace (`rawsend-btrfs` re-exports it).

use core::fmt;
use core::str::FromStr;

/// A subvolume UUID (uuid, parent uuid or received uuid).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID, which btrfs uses for "none".
    pub const NIL: Uuid = Uuid([0; 16]);

    /// Whether this is the all-zero "none" UUID.
    pub fn is_nil(&self) -> bool {
        *self == Uuid::NIL
    }

    /// `None` for the nil UUID, else `Some(self)`.
    pub fn non_nil(self) -> Option<Uuid> {
        (!self.is_nil()).then_some(self)
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

impl fmt::Display for Uuid {
    /// Lower-case `8-4-4-4-12` hex, as `btrfs subvolume show` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in self.0.iter().enumerate() {
            if matches!(index, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A string that is not a `8-4-4-4-12` hex UUID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID (expected 8-4-4-4-12 hex digits): {0:?}")]
pub struct ParseUuidError(String);

impl FromStr for Uuid {
    type Err = ParseUuidError;

    fn from_str(text: &str) -> Result<Uuid, ParseUuidError> {
        let error = || ParseUuidError(text.to_owned());
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return Err(error());
        }
        let hex = groups.concat();
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = core::str::from_utf8(pair).map_err(|_| error())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| error())?;
        }
        Ok(Uuid(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let text = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
        let uuid: Uuid = text.parse().expect("valid uuid");
        assert_eq!(uuid.0[0], 0x0a);
        assert_eq!(uuid.0[15], 0xf9);
        assert_eq!(uuid.to_string(), text);
    }

    #[test]
    fn prints_like_libuuid() {
        let uuid = Uuid(*b"\x01\x23\x45\x67\x89\xab\xcd\xef\x00\x11\x22\x33\x44\x55\x66\x77");
        assert_eq!(uuid.to_string(), "01234567-89ab-cdef-0011-223344556677");
    }

    #[test]
    fn rejects_malformed() {
        for text in ["", "-", "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8fg"] {
            assert!(text.parse::<Uuid>().is_err(), "{text}");
        }
        assert!(Uuid::NIL.is_nil());
        assert_eq!(Uuid::NIL.non_nil(), None);
    }
}
