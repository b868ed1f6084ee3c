//! Receive errors: what failed, and where in the stream.

use std::fmt;
use std::io;

use rawsend_stream::{Location, Uuid};
use thiserror::Error;

/// What went wrong while applying one command.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The stream itself is malformed.
    #[error(transparent)]
    Stream(#[from] rawsend_stream::ErrorKind),
    /// A system call on the target failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A btrfs ioctl failed.
    #[error(transparent)]
    Btrfs(#[from] rawsend_btrfs::Error),
    /// An encoded extent does not decode.
    #[error("encoded data: {0}")]
    Codec(#[from] rawsend_codec::DecodeError),
    /// Field values that cannot be right, whatever the target.
    #[error("invalid command: {0}")]
    Invalid(&'static str),
    /// A command the target cannot carry out (and that has no fallback).
    #[error("not supported by this target: {0}")]
    Unsupported(&'static str),
    /// A file-system command before any SUBVOL or SNAPSHOT.
    #[error("command outside a subvolume (no SUBVOL or SNAPSHOT yet)")]
    NoSubvolume,
    /// SNAPSHOT's parent, or CLONE's source subvolume, is not on the destination.
    #[error("subvolume with UUID {uuid} (transid {ctransid}) not found on the destination")]
    SubvolumeNotFound {
        /// UUID asked for.
        uuid: Uuid,
        /// ctransid asked for.
        ctransid: u64,
    },
    /// The dir target's SNAPSHOT parent was edited after it was received.
    #[error(
        "the parent directory {parent} changed after it was received ({changes}): \
         an incremental on top of it would differ from the source; receive a full stream again"
    )]
    ParentChanged {
        /// The parent directory's name in the destination.
        parent: String,
        /// The changed entries (paths relative to the parent) and counts.
        changes: String,
    },
    /// The receive was asked to stop (a signal) before this command.
    #[error("interrupted before this command")]
    Interrupted,
    /// The parent was found but has changed since the sender's copy.
    #[error("subvolume {uuid} found but its transid is {found}, the stream expects {expected}")]
    TransidMismatch {
        /// UUID of the subvolume.
        uuid: Uuid,
        /// What the stream says.
        expected: u64,
        /// What the destination has.
        found: u64,
    },
}

impl ErrorKind {
    /// An I/O error from a named operation.
    pub fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        ErrorKind::Io { op, source: source.into() }
    }

    /// The errno behind this error, if it came from a system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ErrorKind::Io { source, .. } => source.raw_os_error(),
            ErrorKind::Btrfs(err) => err.errno().map(|e| e.raw_os_error()),
            _ => None,
        }
    }
}

impl From<rustix::io::Errno> for ErrorKind {
    fn from(errno: rustix::io::Errno) -> Self {
        ErrorKind::Io { op: "system call", source: errno.into() }
    }
}

/// Result of a target operation.
pub type Result<T, E = ErrorKind> = std::result::Result<T, E>;

/// An error with the stream location of the command that caused it.
#[derive(Debug)]
pub struct Error {
    /// Where: command index, byte offset, command and path.
    pub location: Location,
    /// What.
    pub kind: ErrorKind,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

impl From<rawsend_stream::Error> for Error {
    fn from(err: rawsend_stream::Error) -> Self {
        Error { location: err.location, kind: ErrorKind::Stream(err.kind) }
    }
}
