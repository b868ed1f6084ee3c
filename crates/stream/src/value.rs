//! Typed values carried by attributes: timestamps and device numbers (UUIDs: `uuid`).

/// A timestamp as the stream carries it: seconds (two's complement) and nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Timespec {
    /// Seconds since the Unix epoch.
    pub sec: i64,
    /// Nanoseconds; the format does not bound it, receivers must check `< 1e9`.
    pub nsec: u32,
}

impl Timespec {
    /// Wire size: `le64 sec` then `le32 nsec`, packed.
    pub const WIRE_LEN: usize = 12;

    pub(crate) fn from_wire(bytes: [u8; 12]) -> Self {
        let (sec, nsec) = bytes.split_at(8);
        Timespec {
            sec: i64::from_le_bytes(sec.try_into().expect("8 bytes")),
            nsec: u32::from_le_bytes(nsec.try_into().expect("4 bytes")),
        }
    }

    pub(crate) fn to_wire(self) -> [u8; 12] {
        let mut out = [0; 12];
        out[..8].copy_from_slice(&self.sec.to_le_bytes());
        out[8..].copy_from_slice(&self.nsec.to_le_bytes());
        out
    }
}

/// A device number in Linux `new_encode_dev` form, as the RDEV attribute holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rdev(pub u64);

impl Rdev {
    /// The major number.
    pub fn major(self) -> u32 {
        ((self.0 >> 8) & 0xfff) as u32
    }

    /// The minor number.
    pub fn minor(self) -> u32 {
        ((self.0 & 0xff) | ((self.0 >> 12) & 0xfff00)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdev_decodes_major_and_minor() {
        // makedev(8, 1) and makedev(259, 300) in new_encode_dev form.
        assert_eq!((Rdev(0x801).major(), Rdev(0x801).minor()), (8, 1));
        let big = Rdev((300 & 0xff) | (259 << 8) | ((300 & !0xff) << 12));
        assert_eq!((big.major(), big.minor()), (259, 300));
    }

    #[test]
    fn timespec_wire_round_trip() {
        let ts = Timespec { sec: -5, nsec: 999_999_999 };
        assert_eq!(Timespec::from_wire(ts.to_wire()), ts);
    }
}
