//! Decode errors, each carrying where in the input it happened.
//!
//! [`ErrorKind`] says what is wrong; [`Error`] adds the command index, byte
//! offset, command and path so a user can find the bad spot in a multi-GiB
//! stream. Every byte sequence fed to the decoder ends in `Ok` or one of these.

use std::fmt;
use std::io;

use thiserror::Error;

use crate::kind::{Attr, CommandKind};
use crate::path::PathError;
use crate::resume::CONTINUE_COMMAND;

/// What is wrong with the input.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended before the first stream header.
    #[error("empty stream: no stream header")]
    EmptyStream,
    /// The first 13 bytes are not `btrfs-stream\0`.
    #[error("bad magic: not a btrfs send stream")]
    BadMagic,
    /// A stream version other than 1, 2 or 3.
    #[error("unsupported stream version {0} (supported: 1 to 3)")]
    UnsupportedVersion(u32),
    /// The input ended inside the 17-byte stream header.
    #[error("stream truncated inside the stream header")]
    TruncatedHeader,
    /// The input ended inside a command, or a frame's length disagrees with its header.
    #[error("stream truncated inside a command")]
    TruncatedCommand,
    /// The input ended at a command boundary without an END command.
    #[error("stream truncated: missing END command")]
    MissingEnd,
    /// A command longer than the configured frame cap.
    #[error("command of {len} bytes exceeds the {cap}-byte frame limit")]
    CommandTooLarge {
        /// Bytes of payload claimed by the header.
        len: u64,
        /// The cap in force.
        cap: u64,
    },
    /// The stored CRC does not match the command bytes.
    #[error("crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the command header.
        stored: u32,
        /// CRC of the command as read.
        computed: u32,
    },
    /// An attribute number of 0 or above 35.
    #[error("invalid attribute type {0}")]
    InvalidAttr(u16),
    /// An attribute header or value runs past the end of the command.
    #[error("attribute {} runs past the end of the command", attr.map_or("header", |a| a.name()))]
    AttrOverrun {
        /// The attribute, when its type could be read.
        attr: Option<Attr>,
    },
    /// The same attribute twice in one command.
    #[error("attribute {0} appears twice")]
    DuplicateAttr(Attr),
    /// A required attribute is absent.
    #[error("missing attribute {0}")]
    MissingAttr(Attr),
    /// A fixed-size attribute of the wrong size.
    #[error("attribute {attr} has {got} bytes, expected {expected}")]
    AttrSize {
        /// The attribute.
        attr: Attr,
        /// Its natural size.
        expected: usize,
        /// The size found.
        got: usize,
    },
    /// A path attribute that could escape the destination or is malformed.
    #[error("invalid {attr}: {reason}")]
    BadPath {
        /// The attribute holding the path.
        attr: Attr,
        /// What is wrong with it.
        reason: PathError,
    },
    /// A command number the format does not define (or `UNSPEC`).
    #[error("unknown command {0}")]
    UnknownCommand(u16),
    /// A command that the stream's version cannot carry.
    #[error("command needs stream version {needed}, stream is version {version}")]
    CommandNeedsVersion {
        /// Lowest version with this command.
        needed: u32,
        /// The stream's version.
        version: u32,
    },
    /// A continuation marker ([`crate::resume`]) whose payload is not one.
    #[error("malformed continuation marker")]
    BadContinuation,
    /// Reading the input failed.
    #[error("read error: {0}")]
    Io(String),
}

impl From<io::Error> for ErrorKind {
    fn from(err: io::Error) -> Self {
        ErrorKind::Io(err.to_string())
    }
}

/// Where in the input an error happened.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// 0-based index of the command across the whole input, if inside a command.
    pub index: Option<u64>,
    /// Byte offset, in the whole input, of the command or header.
    pub offset: u64,
    /// The command number, when its header was read.
    pub command: Option<u16>,
    /// The PATH attribute, when the command had a readable one.
    pub path: Option<Vec<u8>>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(index) => write!(f, "command #{index}")?,
            None => f.write_str("stream header")?,
        }
        if let Some(cmd) = self.command {
            match CommandKind::from_raw(cmd) {
                Some(kind) => write!(f, " ({kind})")?,
                None if cmd == CONTINUE_COMMAND => f.write_str(" (continuation marker)")?,
                None => write!(f, " (command {cmd})")?,
            }
        }
        write!(f, " at byte {}", self.offset)?;
        if let Some(path) = &self.path {
            write!(f, ", path {:?}", String::from_utf8_lossy(path))?;
        }
        Ok(())
    }
}

/// A decode error with its location.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{location}: {kind}")]
pub struct Error {
    /// Where it happened.
    pub location: Location,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl Error {
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

/// Why a command could not be encoded.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A length-prefixed attribute longer than 65535 bytes (v1 DATA included).
    #[error("attribute {attr} of {len} bytes does not fit a 16-bit length")]
    AttrTooLong {
        /// The attribute.
        attr: Attr,
        /// Its length.
        len: usize,
    },
    /// A command longer than 4 GiB.
    #[error("command longer than 4 GiB")]
    CommandTooLong,
}
