//! Safe wrappers for the btrfs ioctls rawsend needs.
//!
//! rawsend keeps compressed data compressed from sender to receiver; that
//! takes a handful of btrfs-only ioctls: encoded (compressed) reads and
//! writes, the kernel's send, subvolume creation, snapshots, the received
//! UUID and read-only flag a receiver sets when it finishes, UUID-tree
//! lookups to find parents, reflinks, and fs-verity for protocol v3 streams
//! (and [`default_sigpipe`], which needs `unsafe` too). This crate is the
//! only one in the workspace with `unsafe`: the kernel ABI structs live in a private `raw`
//! module with layout tests, and everything public takes borrowed file
//! descriptors (`impl AsFd`) and returns typed results.
//!
//! Every error names the ioctl that failed, its errno and, where the errno
//! has a known meaning for that ioctl, the meaning ([`Error`]). Encoded
//! writes can be checked against the kernel's preconditions before the call
//! ([`EncodedWrite::validate`]), so callers get a precise reason instead of
//! a bare `EINVAL`.
//!
//! Most calls need `CAP_SYS_ADMIN` (encoded I/O, send, tree search); on a
//! file that is not on btrfs every ioctl fails with `ENOTTY`.

mod clone;
mod encoded;
mod error;
mod features;
mod ioctl;
mod raw;
mod search;
mod send;
mod signal;
mod subvol;
mod verity;

pub use clone::{clone_file, clone_range};
pub use encoded::{
    COMPRESSION_LZO_4K, COMPRESSION_ZLIB, COMPRESSION_ZSTD, EncodedRead, EncodedWrite, MAX_ENCODED_LEN,
    encoded_read, encoded_write, sector_size,
};
pub use error::{EncodedWriteError, Error, Op, Result};
pub use features::{ENCODED_IO_SINCE, KernelFeatures, release_version};
pub use rawsend_stream::{ParseUuidError, Uuid};
pub use rustix::io::Errno;
pub use search::{
    ExtentStorage, FileExtent, RootInfo, file_extent, root_info, subvolume_id_by_uuid,
    subvolume_ids_by_received_uuid, subvolume_path,
};
pub use send::{SendFlags, SendOptions, max_send_stream_version, send, send_to_reader};
pub use signal::default_sigpipe;
pub use subvol::{
    SubvolumeInfo, create_subvolume, delete_subvolume, is_btrfs, is_read_only, is_subvolume_root, root_id,
    set_read_only, set_received_subvol, snapshot, subvolume_info,
};
pub use verity::{Verity, enable_verity};
