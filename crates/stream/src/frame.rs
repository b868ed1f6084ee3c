//! One command frame: the 10-byte header and its TLV attributes.
//!
//! A frame is parsed from a byte slice holding exactly one command. Attributes
//! are indexed by number (the format does not fix their order) and borrow from
//! the slice; nothing is copied. The CRC is checked by the reader, not here, so
//! that fuzzing can reach the attribute parser.

use std::ops::Range;

use crate::error::ErrorKind;
use crate::kind::{ATTR_MAX, Attr};

/// Size of the command header: `le32 len`, `le16 cmd`, `le32 crc`.
pub const CMD_HEADER_LEN: usize = 10;
/// Where the crc field sits in the command header.
pub(crate) const CRC_RANGE: Range<usize> = 6..10;
/// Size of a TLV header: `le16 type`, `le16 len`.
pub(crate) const TLV_HEADER_LEN: usize = 4;

/// The decoded fixed part of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandHeader {
    /// Payload bytes after the header.
    pub len: u32,
    /// Command number (see [`crate::CommandKind`]).
    pub cmd: u16,
    /// Stored CRC32C.
    pub crc: u32,
}

impl CommandHeader {
    /// Reads the header from the first [`CMD_HEADER_LEN`] bytes.
    pub fn parse(bytes: &[u8; CMD_HEADER_LEN]) -> Self {
        CommandHeader {
            len: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            cmd: u16::from_le_bytes([bytes[4], bytes[5]]),
            crc: u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]),
        }
    }

    /// Total size of the command, header included.
    pub fn frame_len(&self) -> usize {
        CMD_HEADER_LEN + self.len as usize
    }
}

/// A command's attributes, looked up by number, borrowing from the frame bytes.
#[derive(Clone, Debug)]
pub struct Frame<'a> {
    cmd: u16,
    attrs: [Option<&'a [u8]>; ATTR_MAX as usize + 1],
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Parses the TLVs of one whole command (`bytes` = header + payload).
    ///
    /// From `version` 2 on, [`Attr::Data`] has no length and runs to the end.
    pub fn parse(bytes: &'a [u8], version: u32) -> Result<Self, ErrorKind> {
        let header_bytes = bytes.first_chunk::<CMD_HEADER_LEN>().ok_or(ErrorKind::TruncatedCommand)?;
        let header = CommandHeader::parse(header_bytes);
        let payload = &bytes[CMD_HEADER_LEN..];
        if payload.len() != header.len as usize {
            return Err(ErrorKind::TruncatedCommand);
        }
        let mut frame = Frame { cmd: header.cmd, attrs: [None; ATTR_MAX as usize + 1], payload };
        let mut pos = 0;
        while pos < payload.len() {
            pos = frame.parse_tlv(pos, version)?;
        }
        Ok(frame)
    }

    /// Parses the TLV at `pos` and returns the position after it.
    fn parse_tlv(&mut self, pos: usize, version: u32) -> Result<usize, ErrorKind> {
        let rest = &self.payload[pos..];
        let type_bytes = rest.first_chunk::<2>().ok_or(ErrorKind::AttrOverrun { attr: None })?;
        let raw = u16::from_le_bytes(*type_bytes);
        let attr = Attr::from_raw(raw).ok_or(ErrorKind::InvalidAttr(raw))?;
        let (start, len) = if version >= 2 && attr == Attr::Data {
            (2, rest.len() - 2)
        } else {
            let len_bytes =
                rest[2..].first_chunk::<2>().ok_or(ErrorKind::AttrOverrun { attr: Some(attr) })?;
            (TLV_HEADER_LEN, usize::from(u16::from_le_bytes(*len_bytes)))
        };
        let value = rest.get(start..start + len).ok_or(ErrorKind::AttrOverrun { attr: Some(attr) })?;
        let slot = &mut self.attrs[usize::from(raw)];
        if slot.is_some() {
            return Err(ErrorKind::DuplicateAttr(attr));
        }
        *slot = Some(value);
        Ok(pos + start + len)
    }

    /// The command number.
    pub fn cmd(&self) -> u16 {
        self.cmd
    }

    /// The payload after the command header.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The value of an attribute, if present.
    pub fn get(&self, attr: Attr) -> Option<&'a [u8]> {
        self.attrs[usize::from(attr.raw())]
    }

    /// The value of an attribute that must be present.
    pub fn require(&self, attr: Attr) -> Result<&'a [u8], ErrorKind> {
        self.get(attr).ok_or(ErrorKind::MissingAttr(attr))
    }

    /// A fixed-size attribute that must be present.
    pub fn fixed<const N: usize>(&self, attr: Attr) -> Result<[u8; N], ErrorKind> {
        self.opt_fixed(attr)?.ok_or(ErrorKind::MissingAttr(attr))
    }

    /// A fixed-size attribute that may be absent; a wrong size is an error.
    pub fn opt_fixed<const N: usize>(&self, attr: Attr) -> Result<Option<[u8; N]>, ErrorKind> {
        self.get(attr)
            .map(|value| {
                value.try_into().map_err(|_| ErrorKind::AttrSize { attr, expected: N, got: value.len() })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(cmd: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&cmd.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn v2_data_runs_to_the_end_but_v1_data_has_a_length() {
        let payload = [&[15, 0, 1, 0][..], b"a", &[19, 0], b"\x03\x00xyz"].concat();
        let bytes = command(15, &payload);
        let v2 = Frame::parse(&bytes, 2).unwrap();
        assert_eq!(v2.get(Attr::Data), Some(&b"\x03\x00xyz"[..]));
        let v1 = Frame::parse(&bytes, 1).unwrap();
        assert_eq!(v1.get(Attr::Data), Some(&b"xyz"[..]));
        assert_eq!(v1.get(Attr::Path), Some(&b"a"[..]));
    }

    #[test]
    fn malformed_tlvs_are_errors() {
        let cases: &[(&[u8], ErrorKind)] = &[
            (&[0, 0, 0, 0], ErrorKind::InvalidAttr(0)),
            (&[36, 0, 0, 0], ErrorKind::InvalidAttr(36)),
            (&[15], ErrorKind::AttrOverrun { attr: None }),
            (&[15, 0, 1], ErrorKind::AttrOverrun { attr: Some(Attr::Path) }),
            (&[15, 0, 9, 0, b'a'], ErrorKind::AttrOverrun { attr: Some(Attr::Path) }),
            (&[15, 0, 0, 0, 15, 0, 0, 0], ErrorKind::DuplicateAttr(Attr::Path)),
        ];
        for (payload, want) in cases {
            let err = Frame::parse(&command(11, payload), 1).unwrap_err();
            assert_eq!(&err, want, "{payload:?}");
        }
    }

    #[test]
    fn fixed_size_attributes_are_checked() {
        let frame_bytes = command(17, &[4, 0, 2, 0, 1, 2]);
        let frame = Frame::parse(&frame_bytes, 1).unwrap();
        assert_eq!(
            frame.fixed::<8>(Attr::Size),
            Err(ErrorKind::AttrSize { attr: Attr::Size, expected: 8, got: 2 })
        );
        assert_eq!(frame.fixed::<8>(Attr::Path), Err(ErrorKind::MissingAttr(Attr::Path)));
    }
}
