//! Receive btrfs send streams: an engine that applies commands to a [`Target`].
//!
//! [`Receiver`] reads a stream with `rawsend-stream` and drives a [`Target`];
//! it owns policy (encoded passthrough or exact decompression, reflink or
//! copy, when a subvolume counts as complete), so targets only perform
//! primitive operations. Targets: the filesystem target ([`FsTarget`]) for
//! btrfs and plain directories, and the in-memory [`ModelTarget`], the
//! executable specification used by tests.
//!
//! Receives are resumable ([`resume`]): with [`ReceiveOptions::resume`] the
//! engine keeps a state per partial subvolume through the target, and given
//! the same stream again it skips the verified prefix and continues;
//! [`Receiver::receive_keeping`] hands back the target whatever happened.
//!
//! Safety against hostile streams comes in layers: `rawsend-stream` rejects
//! paths that could escape (absolute, `..`, `.`, empty components, NUL); the
//! engine rejects values that cannot be right (encoded bounds, fallocate
//! modes, device types); the filesystem target resolves every path beneath
//! the subvolume root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! and acts on the last component without following symlinks.

mod engine;
mod error;
pub mod fs;
mod lookahead;
pub mod model;
pub mod resume;
mod target;
mod verify;

pub use engine::{Event, Failure, ReceiveOptions, Receiver, Summary};
pub use error::{Error, ErrorKind, Refusal, Result, Taken};
pub use fs::FsTarget;
pub use model::ModelTarget;
pub use target::{
    Capabilities, CloneSource, EncodedExtent, NodeKind, Outcome, Received, SubvolStart, Target, Unfinished,
    Verity,
};
