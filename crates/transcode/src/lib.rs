//! Transcode btrfs send streams: compress where the kernel did not, decode
//! where the receiver cannot take encoded data, change protocol version.
//!
//! Most send streams carry file data as plain WRITEs: protocol v1 (the
//! btrfs-progs default and every archived v1 stream) and v2 from sources
//! mounted without compression. This crate turns such a stream into an
//! equivalent v2 stream whose data travels and lands compressed:
//! consecutive WRITEs of one file are grouped into extents the kernel's
//! `BTRFS_IOC_ENCODED_WRITE` accepts (sector-aligned, at most 128 KiB) and
//! compressed on a pool of worker threads; an extent becomes ENCODED_WRITE
//! only where compression saves at least a sector. The other direction
//! decodes ENCODED_WRITE into WRITEs exactly (for v1 or `--compress none`),
//! and encoded input can be recompressed with another algorithm or level.
//! Every other command keeps its place, and its bytes where the protocol
//! version allows.
//!
//! It is a crate of its own because it joins two that stay independent:
//! `rawsend-stream` (the format, no codecs) and `rawsend-codec` (extent
//! formats, no streams). The CLI uses it for `rawsend transcode`, and in
//! front of the receive engine and behind the kernel's send for
//! `receive --compress` and `send --compress`.
//!
//! Memory is bounded independently of the stream: a fixed number of units
//! (a batch of commands or one extent) are in flight between the reader,
//! the workers and the consumer ([`TranscodeReader`]).
//!
//! ```
//! use rawsend_stream::{Command, StreamPath, StreamWriter, Uuid};
//! use rawsend_transcode::{Compress, Options, transcode};
//!
//! let mut v1 = Vec::new();
//! let mut writer = StreamWriter::new(&mut v1, 1)?;
//! let file = StreamPath::new(b"vol/file")?;
//! writer.write(&Command::Subvol { path: StreamPath::new(b"vol")?, uuid: Uuid::NIL, ctransid: 1 })?;
//! writer.write(&Command::Mkfile { path: file, ino: 257 })?;
//! writer.write(&Command::Write { path: file, offset: 0, data: &[b'a'; 40_000] })?;
//! writer.write(&Command::End)?;
//! writer.finish()?;
//!
//! let mut v2 = Vec::new();
//! transcode(&v1[..], &mut v2, &Options::new("zstd:3".parse()?))?;
//! assert!(v2.len() < 1000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod options;
mod pipeline;
mod plan;
mod sizes;
mod work;

pub use error::{CommandError, Error};
pub use options::{Codec, Compress, Options, ParseCompressError};
pub use pipeline::{Summary, TranscodeReader, transcode, transcode_reporting};

/// The sector size extents are aligned to: the receiving filesystem's (4 KiB, the page
/// size of x86_64 and of most arm64 kernels), and the LZO segment size used (`LZO_4K`).
pub const SECTOR: u64 = 4096;
