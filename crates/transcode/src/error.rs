//! Typed errors: the input's own (located by `rawsend-stream`), a command this
//! transcode cannot carry over (located the same way), options, and output.

use std::io;

use rawsend_codec::{DecodeError, EncodeError};
use rawsend_stream::Location;

/// Why a transcode failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not a valid stream (framing, CRC, attributes, paths), or reading it failed.
    #[error(transparent)]
    Read(#[from] rawsend_stream::Error),
    /// A command of the input could not be transcoded.
    #[error("{location}: {kind}")]
    Command {
        /// Where it is in the input.
        location: Location,
        /// What is wrong.
        kind: CommandError,
    },
    /// An output version outside 1 to 3.
    #[error("unsupported output protocol version {0} (supported: 1 to 3)")]
    UnsupportedVersion(u32),
    /// Compressing into ENCODED_WRITE needs protocol version 2 or later.
    #[error("compressed output needs protocol version 2 or 3, not {0}")]
    CompressNeedsV2(u32),
    /// Writing the output failed.
    #[error("cannot write the transcoded stream: {0}")]
    Write(#[source] io::Error),
    /// The consumer of the transcoded stream went away.
    #[error("the reader of the transcoded stream went away")]
    OutputClosed,
    /// A transcoding thread could not be started or ended without a result.
    #[error("transcoding thread: {0}")]
    Thread(String),
}

/// What is wrong with one command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The output protocol version cannot carry this command.
    #[error("cannot be expressed in protocol version {version} (needs {needed})")]
    NeedsVersion {
        /// The output version.
        version: u32,
        /// The lowest version with the command.
        needed: u32,
    },
    /// An ENCODED_WRITE whose fields no receiver can accept.
    #[error("invalid encoded extent: {0}")]
    BadExtent(&'static str),
    /// An ENCODED_WRITE whose data does not decode.
    #[error("encoded data: {0}")]
    Decode(#[from] DecodeError),
    /// Compressing failed (not expected with valid input).
    #[error("compressing: {0}")]
    Encode(#[from] EncodeError),
    /// A continuation marker (`send --resume`): its position counts the commands
    /// and bytes of the stream as sent, which a transcode changes.
    #[error("a continuation of an interrupted receive (send --resume) cannot be transcoded")]
    Continuation,
    /// The command does not fit the output format.
    #[error("re-encoding: {0}")]
    Format(#[from] rawsend_stream::EncodeError),
}

impl Error {
    /// `kind` located at `location`.
    pub(crate) fn at(location: &Location, kind: impl Into<CommandError>) -> Error {
        Error::Command { location: location.clone(), kind: kind.into() }
    }
}
