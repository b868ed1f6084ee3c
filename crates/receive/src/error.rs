//! Receive errors: what failed, and where in the stream.
//!
//! Each message carries its causes (the OS error, the btrfs ioctl error, the
//! codec error) and no error also returns them from `source()`: a caller
//! printing the whole chain, as the CLI does, shows every cause exactly once.

use std::fmt;
use std::io;

use rawsend_stream::{Location, Uuid};
use rustix::io::Errno;
use thiserror::Error;

/// What went wrong while applying one command.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The stream itself is malformed.
    #[error(transparent)]
    Stream(#[from] rawsend_stream::ErrorKind),
    /// A system call on the target failed.
    #[error("{op}: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error (shown in the message, so not also a `source()`).
        error: io::Error,
    },
    /// A btrfs ioctl failed.
    #[error(transparent)]
    Btrfs(#[from] rawsend_btrfs::Error),
    /// An encoded extent does not decode.
    #[error("encoded data: {0}")]
    Codec(rawsend_codec::DecodeError),
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
    /// SUBVOL/SNAPSHOT's name already exists in DEST; nothing was written.
    #[error("{path} {taken}")]
    NameTaken {
        /// DEST/NAME, for the user.
        path: String,
        /// What is there.
        taken: Taken,
    },
    /// The receive was asked to stop (a signal) before this command.
    #[error("interrupted before this command")]
    Interrupted,
    /// A partial subvolume with resume state that this stream cannot continue; it was
    /// left as it was.
    #[error(transparent)]
    ResumeRefused(Box<Refusal>),
    /// A continuation (`rawsend send --resume`) for a subvolume without a partial receive
    /// to continue here.
    #[error(
        "this stream continues an interrupted receive of {name} (it was made by `rawsend send --resume`), \
         but {}: receive it into the directory that holds the partial receive",
        if *resume { "there is no partial receive of that name with resume state here" } else { "--no-resume was given" }
    )]
    NothingToContinue {
        /// The subvolume's name.
        name: String,
        /// Whether resume was on.
        resume: bool,
    },
    /// `--abort` or `--resume-token` on something that is not a partial receive with
    /// resume state (nothing is changed).
    #[error("{place} is not a partial receive with resume state ({reason})")]
    NotPartial {
        /// DEST/NAME.
        place: String,
        /// What it is.
        reason: &'static str,
    },
}

/// Why a partial subvolume's resume state cannot continue with this stream.
#[derive(Debug, Error)]
#[error("cannot resume {place}: {reason}; it was left as it was (to discard it: `{abort}`)")]
pub struct Refusal {
    /// DEST/NAME.
    pub place: String,
    /// Why.
    pub reason: String,
    /// The command that discards it.
    pub abort: String,
}

/// What holds the name a SUBVOL or SNAPSHOT wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// A complete receive of the same sent subvolume.
    Received(Uuid),
    /// What an interrupted or failed receive left: a writable subvolume without a received
    /// UUID (btrfs) or a directory without a received record (dir target).
    Incomplete {
        /// The shell command that removes it.
        remove: String,
        /// The shell command that discards it and its resume state, when it has one
        /// (a receive with `--no-resume` found it).
        abort: Option<Box<str>>,
    },
    /// Anything else.
    Foreign,
}

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Taken::Received(uuid) => write!(f, "is already received (received UUID {uuid})"),
            Taken::Incomplete { remove, abort: None } => write!(
                f,
                "is left over from an incomplete receive (it is not marked received); \
                 remove it with `{remove}` and receive again"
            ),
            Taken::Incomplete { abort: Some(abort), .. } => write!(
                f,
                "is left over from an incomplete receive (it is not marked received) and has resume \
                 state: run the same receive without --no-resume to continue it, or discard it with \
                 `{abort}` and receive again"
            ),
            Taken::Foreign => f.write_str("exists and is not from rawsend/btrfs receive"),
        }
    }
}

impl ErrorKind {
    /// An I/O error from a named operation.
    pub fn io(op: &'static str, error: impl Into<io::Error>) -> Self {
        ErrorKind::Io { op, error: error.into() }
    }

    /// Whether the destination's device failed: an I/O error, or the filesystem gone
    /// read-only (as btrfs goes after a write error).
    pub fn is_device_failure(&self) -> bool {
        [Errno::IO, Errno::ROFS].iter().any(|errno| self.errno() == Some(errno.raw_os_error()))
    }

    /// The errno behind this error, if it came from a system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ErrorKind::Io { error, .. } => error.raw_os_error(),
            ErrorKind::Btrfs(err) => err.errno().map(|e| e.raw_os_error()),
            _ => None,
        }
    }
}

impl From<rawsend_codec::DecodeError> for ErrorKind {
    fn from(err: rawsend_codec::DecodeError) -> Self {
        ErrorKind::Codec(err)
    }
}

impl From<rustix::io::Errno> for ErrorKind {
    fn from(errno: rustix::io::Errno) -> Self {
        ErrorKind::Io { op: "system call", error: errno.into() }
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

impl std::error::Error for Error {}

impl From<rawsend_stream::Error> for Error {
    fn from(err: rawsend_stream::Error) -> Self {
        Error { location: err.location, kind: ErrorKind::Stream(err.kind) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain as `anyhow`'s `{:#}` prints it: each error's message, joined by ": ".
    fn chain(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut cause = err.source();
        while let Some(next) = cause {
            text = format!("{text}: {next}");
            cause = next.source();
        }
        text
    }

    #[test]
    fn each_cause_is_printed_once() {
        let enoent = io::Error::from_raw_os_error(2).to_string();
        let decode = rawsend_codec::DecodeError::ZlibHeader;
        let btrfs_err = rawsend_btrfs::Error::Sysfs(io::Error::from_raw_os_error(2));
        let location = Location { index: Some(3), offset: 99, command: None, path: None };
        let cases = [
            (ErrorKind::io("open destination", io::Error::from_raw_os_error(2)), enoent.clone()),
            (ErrorKind::from(decode.clone()), decode.to_string()),
            (ErrorKind::from(btrfs_err), enoent.clone()),
        ];
        for (kind, cause) in cases {
            assert_eq!(chain(&kind).matches(&cause).count(), 1, "{}", chain(&kind));
            let located = Error { location: location.clone(), kind };
            let text = chain(&located);
            assert_eq!(text.matches(&cause).count(), 1, "{text}");
            assert!(text.starts_with("command #3 at byte 99: "), "{text}");
        }
    }
}
