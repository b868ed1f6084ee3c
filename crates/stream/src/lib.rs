//! The btrfs send-stream format: decode and encode protocol v1, v2 and v3.
//!
//! A send stream is a 17-byte header (`btrfs-stream\0`, `le32 version`)
//! followed by commands: a 10-byte header (`le32 len`, `le16 cmd`,
//! `le32 crc32c`) and TLV attributes. This crate is format only: no file
//! descriptors, no Linux calls, no `unsafe` (one std thread, in
//! [`ReadAhead`]). It is meant to be safe on hostile input: every byte sequence decodes to commands or to an [`Error`]
//! that names the command index, byte offset, command and path; frames are
//! bounded before anything is allocated; paths are validated so they can
//! never name anything outside the subvolume being received.
//!
//! Layers, bottom up:
//! - [`CommandKind`] and [`Attr`]: the numbers of `reference/PROTOCOL.md` §2.
//! - [`Frame`]: one command's attributes, looked up by number, borrowed.
//! - [`Command`]: typed commands with validated [`StreamPath`]s; encodes
//!   back in the kernel's attribute order, so decode→encode is exact. For
//!   inspection, `Command<'_, RawPath>` ([`StreamReader::next_lenient`])
//!   keeps the paths a receive refuses as they are and names them
//!   ([`Command::invalid_paths`]).
//! - [`StreamReader`] / [`StreamWriter`]: whole streams over `Read`/`Write`;
//!   a reader can publish how far it got into a shared [`ReadProgress`].
//! - [`ReadAhead`]: reads the input on a thread of its own, and can check the
//!   commands' CRCs there for the reader to skip ([`precheck`]).
//! - [`Estimate`]: the size of a stream from its metadata-only (`NO_FILE_DATA`) form.
//! - [`stats::Stats`]: what a stream holds, counted item by item.
//!
//! ```
//! use rawsend_stream::{Command, Item, StreamReader, StreamWriter, StreamPath, Uuid};
//!
//! let mut bytes = Vec::new();
//! let mut writer = StreamWriter::new(&mut bytes, 2)?;
//! writer.write(&Command::Subvol { path: StreamPath::new(b"vol")?, uuid: Uuid::NIL, ctransid: 7 })?;
//! writer.write(&Command::End)?;
//! writer.finish()?;
//!
//! let mut reader = StreamReader::new(&bytes[..]);
//! let mut names = Vec::new();
//! while let Some(item) = reader.next()? {
//!     if let Item::Command(record) = item {
//!         names.push(record.command.kind().name());
//!     }
//! }
//! assert_eq!(names, ["subvol", "end"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod command;
mod crc;
mod error;
mod estimate;
mod frame;
mod header;
mod kind;
mod path;
pub mod precheck;
mod progress;
mod readahead;
mod reader;
pub mod resume;
mod source;
pub mod stats;
mod uuid;
mod value;
mod writer;

pub use command::{Command, EncodedWrite, InvalidPath};
pub use crc::{command_crc, raw_crc};
pub use error::{EncodeError, Error, ErrorKind, Location};
pub use estimate::{Estimate, ExtentForm, encoded_write_len, write_chunk, write_len, writes_len};
pub use frame::{CMD_HEADER_LEN, CommandHeader, Frame};
pub use header::{MAGIC, MAX_VERSION, STREAM_HEADER_LEN, StreamHeader};
pub use kind::{ATTR_MAX, Attr, CommandKind};
pub use path::{NAME_MAX, PATH_MAX, PathAttr, PathError, RawPath, StreamPath, SymlinkTarget, XattrName};
pub use precheck::CrcHints;
pub use progress::{ProgressSnapshot, ReadProgress};
pub use readahead::{CheckAhead, ReadAhead};
pub use reader::{DEFAULT_FRAME_CAP, Item, ReaderOptions, Record, StreamReader, V1_FRAME_CAP};
pub use source::{ReadBuffer, Source};
pub use uuid::{ParseUuidError, Uuid};
pub use value::{Rdev, Timespec};
pub use writer::{StreamWriter, WriteError};
