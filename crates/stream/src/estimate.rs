//! The size of a send stream, estimated from its metadata-only (`NO_FILE_DATA`) form.
//!
//! A `--no-data` send walks the same trees as a real one and emits the
//! same commands, except that each file extent's data is an UPDATE_EXTENT
//! (PATH, FILE_OFFSET, SIZE) instead of the WRITE commands (or one
//! ENCODED_WRITE) the real stream would carry. It is cheap: no file data is
//! read. [`Estimate`] sums such a stream's commands as they are, and each
//! UPDATE_EXTENT as the commands it stands for, as the kernel splits them
//! (`send_extent_data`): WRITEs of at most [`write_chunk`] bytes of data, or
//! one ENCODED_WRITE of the extent's on-disk bytes when the caller says the
//! extent is sent compressed (it knows from the extent tree; the stream does
//! not say). What the estimate cannot see: where the real send clones
//! instead of writing, and extents that change between the two passes.

use crate::command::Command;
use crate::frame::CMD_HEADER_LEN;
use crate::header::STREAM_HEADER_LEN;
use crate::path::PathAttr;

/// TLV header: `le16 type`, `le16 len`.
const TLV_HEADER: u64 = 4;
/// A u64 attribute, header included.
const U64_ATTR: u64 = TLV_HEADER + 8;
/// A u32 attribute, header included.
const U32_ATTR: u64 = TLV_HEADER + 4;

/// The most file data the kernel puts in one WRITE: 48 KiB in v1 (its 64 KiB
/// buffer less 16 KiB), 128 KiB from v2 on (with 4 KiB pages).
pub fn write_chunk(version: u32) -> u64 {
    if version == 1 { 48 * 1024 } else { 128 * 1024 }
}

/// Bytes of the DATA attribute's header: from v2 on only its 2-byte type
/// (the value runs to the end of the command).
fn data_header(version: u32) -> u64 {
    if version == 1 { TLV_HEADER } else { 2 }
}

/// Bytes of one WRITE of `data_len` bytes to a path of `path_len` bytes.
pub fn write_len(version: u32, path_len: u64, data_len: u64) -> u64 {
    CMD_HEADER_LEN as u64 + TLV_HEADER + path_len + U64_ATTR + data_header(version) + data_len
}

/// Bytes of the WRITEs that carry `len` bytes of file data in chunks of [`write_chunk`].
pub fn writes_len(version: u32, path_len: u64, len: u64) -> u64 {
    let chunks = len.div_ceil(write_chunk(version));
    chunks * write_len(version, path_len, 0) + len
}

/// Bytes of one ENCODED_WRITE of `data_len` encoded bytes (the kernel omits
/// ENCRYPTION for inline extents).
pub fn encoded_write_len(version: u32, path_len: u64, data_len: u64, inline: bool) -> u64 {
    let encryption = if inline { 0 } else { U32_ATTR };
    CMD_HEADER_LEN as u64
        + TLV_HEADER
        + path_len
        + 4 * U64_ATTR
        + U32_ATTR
        + encryption
        + data_header(version)
        + data_len
}

/// How the real send carries one extent's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentForm {
    /// As WRITE commands of the plain data.
    Plain,
    /// As one ENCODED_WRITE of `data_len` bytes.
    Encoded {
        /// The encoded bytes sent (the whole on-disk extent, or the inline payload).
        data_len: u64,
        /// Whether the extent is inline (no ENCRYPTION attribute).
        inline: bool,
    },
}

/// A running estimate over the commands of `NO_FILE_DATA` streams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Estimated bytes of the real stream so far.
    pub bytes: u64,
    /// Bytes of the metadata-only stream read so far.
    pub metadata_bytes: u64,
    /// File data (plain and encoded bytes) the real stream would carry.
    pub data_bytes: u64,
}

impl Estimate {
    /// Takes the stream header and the END command off the estimate, as
    /// `omit_header` and `omit_end` say: the real stream leaves them out (several
    /// subvolumes sent as one stream), the counted one had them.
    pub fn omit(&mut self, omit_header: bool, omit_end: bool) {
        let header = if omit_header { STREAM_HEADER_LEN as u64 } else { 0 };
        let end = if omit_end { CMD_HEADER_LEN as u64 } else { 0 };
        self.bytes = self.bytes.saturating_sub(header + end);
    }

    /// Counts a stream header.
    pub fn add_header(&mut self) {
        self.bytes += STREAM_HEADER_LEN as u64;
        self.metadata_bytes += STREAM_HEADER_LEN as u64;
    }

    /// Counts one command whose frame is `raw_len` bytes long. For an
    /// UPDATE_EXTENT, `form` says how the real send carries that extent.
    pub fn add_command<'a, P: PathAttr<'a>>(
        &mut self,
        version: u32,
        command: &Command<'a, P>,
        raw_len: usize,
        form: impl FnOnce() -> ExtentForm,
    ) {
        self.metadata_bytes += raw_len as u64;
        let Command::UpdateExtent { path, len, .. } = command else {
            self.bytes += raw_len as u64;
            return;
        };
        let path_len = path.bytes().len() as u64;
        self.bytes += match form() {
            ExtentForm::Plain => {
                self.data_bytes += len;
                writes_len(version, path_len, *len)
            }
            ExtentForm::Encoded { data_len, inline } => {
                self.data_bytes += data_len;
                encoded_write_len(version, path_len, data_len, inline)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncodedWrite, StreamPath};

    fn encoded(command: &Command<'_>, version: u32) -> u64 {
        let mut out = Vec::new();
        command.encode(version, &mut out).unwrap();
        out.len() as u64
    }

    #[test]
    fn sizes_match_the_encoder() {
        let path = StreamPath::new(b"dir/file").unwrap();
        let data = vec![7u8; 5000];
        for version in [1, 2, 3] {
            let write = Command::Write { path, offset: 4096, data: &data };
            assert_eq!(write_len(version, 8, 5000), encoded(&write, version), "v{version}");
            if version == 1 {
                continue;
            }
            for (inline, encryption) in [(false, Some(0)), (true, None)] {
                let command = Command::EncodedWrite(EncodedWrite {
                    path,
                    offset: 0,
                    unencoded_file_len: 9000,
                    unencoded_len: 9000,
                    unencoded_offset: 0,
                    compression: Some(1),
                    encryption,
                    data: &data,
                });
                assert_eq!(encoded_write_len(version, 8, 5000, inline), encoded(&command, version));
            }
        }
    }

    #[test]
    fn an_update_extent_stands_for_the_writes_of_its_length() {
        let path = StreamPath::new(b"f").unwrap();
        let update = Command::UpdateExtent { path, offset: 0, len: 100 * 1024 };
        let update_len = encoded(&update, 1) as usize;
        let mut v1 = Estimate::default();
        v1.add_header();
        v1.add_command(1, &update, update_len, || ExtentForm::Plain);
        // 48 + 48 + 4 KiB: three WRITEs.
        assert_eq!(v1.bytes, 17 + 3 * write_len(1, 1, 0) + 100 * 1024);
        assert_eq!((v1.metadata_bytes, v1.data_bytes), (17 + update_len as u64, 100 * 1024));
        let mut v2 = Estimate::default();
        v2.add_command(2, &update, update_len, || ExtentForm::Plain);
        assert_eq!(v2.bytes, write_len(2, 1, 100 * 1024));
        let mut compressed = Estimate::default();
        compressed
            .add_command(2, &update, update_len, || ExtentForm::Encoded { data_len: 8192, inline: false });
        assert_eq!((compressed.bytes, compressed.data_bytes), (encoded_write_len(2, 1, 8192, false), 8192));
        v2.omit(false, true);
        assert_eq!(v2.bytes, write_len(2, 1, 100 * 1024) - 10);
        let mut other = Estimate::default();
        other.add_command(2, &Command::Truncate { path, size: 1 }, 33, || unreachable!());
        assert_eq!(other.bytes, 33);
    }
}
