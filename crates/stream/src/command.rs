//! Typed commands: decoded from a [`Frame`] without copying, encoded in the kernel's order.
//!
//! Decoding looks attributes up by number, so any order is accepted;
//! attributes a command does not use are ignored, as btrfs-progs does.
//! Encoding writes attributes in exactly the order the kernel's send code
//! emits them (`reference/PROTOCOL.md` §2.2), so decode→encode of a kernel
//! stream reproduces it byte for byte. Attributes the kernel emits but
//! btrfs-progs treats as optional (ENCODED_WRITE's compression and
//! encryption, MKFIFO/MKSOCK's mode and rdev, UTIMES' otime) are `Option`s so
//! that their presence survives the round trip.
//!
//! Path attributes decode to the command's path type `P`: validated
//! [`StreamPath`]s ([`Command::decode`]), or [`RawPath`]s kept as they are
//! for inspection ([`Command::decode_raw`]); see `path.rs` for why this is a
//! type and not a flag. Both go through the same decoder and encoder.

use crate::crc::command_crc;
use crate::error::{EncodeError, ErrorKind};
use crate::frame::{CMD_HEADER_LEN, CRC_RANGE, Frame};
use crate::kind::{Attr, CommandKind};
use crate::path::{PathAttr, PathError, RawPath, StreamPath, SymlinkTarget, XattrName};
use crate::uuid::Uuid;
use crate::value::{Rdev, Timespec};

/// ENCODED_WRITE's fields (v2): compressed data to write as it is.
///
/// A struct of its own, unlike the other commands' fields, because it is
/// passed on whole: to the receive engine, the dump formats, the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedWrite<'a, P = StreamPath<'a>> {
    /// Into what.
    pub path: P,
    /// File offset.
    pub offset: u64,
    /// Bytes of file covered.
    pub unencoded_file_len: u64,
    /// Size of the decoded data.
    pub unencoded_len: u64,
    /// Where the file range starts inside the decoded data.
    pub unencoded_offset: u64,
    /// `BTRFS_ENCODED_IO_COMPRESSION_*` (absent means none).
    pub compression: Option<u32>,
    /// `BTRFS_ENCODED_IO_ENCRYPTION_*` (absent means none).
    pub encryption: Option<u32>,
    /// The encoded bytes.
    pub data: &'a [u8],
}

/// One decoded send-stream command. Byte fields borrow from the frame.
///
/// `P` is what path attributes decode to (see [`PathAttr`]): validated
/// [`StreamPath`]s by default, [`RawPath`]s for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a, P = StreamPath<'a>> {
    /// Start a new, empty subvolume.
    Subvol {
        /// Name of the subvolume.
        path: P,
        /// Sender's UUID (its received UUID if it has one).
        uuid: Uuid,
        /// Sender's ctransid.
        ctransid: u64,
    },
    /// Start a snapshot of the parent subvolume identified by `clone_uuid`.
    Snapshot {
        /// Name of the snapshot.
        path: P,
        /// Sender's UUID.
        uuid: Uuid,
        /// Sender's ctransid.
        ctransid: u64,
        /// Parent's UUID (received UUID if set).
        clone_uuid: Uuid,
        /// Parent's ctransid.
        clone_ctransid: u64,
    },
    /// Create a regular file.
    Mkfile {
        /// Where.
        path: P,
        /// Sender's inode number (informational).
        ino: u64,
    },
    /// Create a directory.
    Mkdir {
        /// Where.
        path: P,
        /// Sender's inode number.
        ino: u64,
    },
    /// Create a device node; `mode` carries the file type bits.
    Mknod {
        /// Where.
        path: P,
        /// Sender's inode number.
        ino: u64,
        /// Device number.
        rdev: Rdev,
        /// Full `st_mode`, type bits included.
        mode: u64,
    },
    /// Create a FIFO.
    Mkfifo {
        /// Where.
        path: P,
        /// Sender's inode number.
        ino: u64,
        /// Device number (0; the kernel sends it, progs ignores it).
        rdev: Option<Rdev>,
        /// Full `st_mode` (sent by the kernel, ignored by progs).
        mode: Option<u64>,
    },
    /// Create a Unix socket node.
    Mksock {
        /// Where.
        path: P,
        /// Sender's inode number.
        ino: u64,
        /// Device number (0).
        rdev: Option<Rdev>,
        /// Full `st_mode`.
        mode: Option<u64>,
    },
    /// Create a symbolic link holding `target`.
    Symlink {
        /// Where.
        path: P,
        /// Sender's inode number.
        ino: u64,
        /// Link content, stored verbatim.
        target: SymlinkTarget<'a>,
    },
    /// Rename `from` to `to`.
    Rename {
        /// Existing path.
        from: P,
        /// New path.
        to: P,
    },
    /// Make a hard link at `path` to the existing `target`.
    Link {
        /// New name.
        path: P,
        /// Existing file.
        target: P,
    },
    /// Remove a non-directory.
    Unlink {
        /// What.
        path: P,
    },
    /// Remove an empty directory.
    Rmdir {
        /// What.
        path: P,
    },
    /// Set an extended attribute (no-follow).
    SetXattr {
        /// On what.
        path: P,
        /// Name with namespace prefix.
        name: XattrName<'a>,
        /// Value.
        data: &'a [u8],
    },
    /// Remove an extended attribute.
    RemoveXattr {
        /// On what.
        path: P,
        /// Name with namespace prefix.
        name: XattrName<'a>,
    },
    /// Write plain data at an offset.
    Write {
        /// Into what.
        path: P,
        /// File offset.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// Reflink a range from a file of the subvolume identified by `clone_uuid`.
    Clone {
        /// Destination file.
        path: P,
        /// Destination offset.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Source subvolume UUID.
        clone_uuid: Uuid,
        /// Source subvolume ctransid.
        clone_ctransid: u64,
        /// Source file, relative to the source subvolume.
        clone_path: P,
        /// Source offset.
        clone_offset: u64,
    },
    /// Set a file's size.
    Truncate {
        /// What.
        path: P,
        /// New size.
        size: u64,
    },
    /// Set permission bits.
    Chmod {
        /// What.
        path: P,
        /// Mode (permission bits).
        mode: u64,
    },
    /// Set owner and group (no-follow).
    Chown {
        /// What.
        path: P,
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
    },
    /// Set times (no-follow).
    Utimes {
        /// What.
        path: P,
        /// Access time.
        atime: Timespec,
        /// Modification time.
        mtime: Timespec,
        /// Change time (cannot be set by user space).
        ctime: Timespec,
        /// Creation time (v2+; cannot be set by user space).
        otime: Option<Timespec>,
    },
    /// End of one stream.
    End,
    /// A range changed, data not sent (no-data streams).
    UpdateExtent {
        /// What.
        path: P,
        /// File offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// `fallocate(2)` a range (v2; kernels send only punch-hole).
    Fallocate {
        /// What.
        path: P,
        /// `fallocate` mode bits.
        mode: u32,
        /// File offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Inode flags (v2): raw `btrfs_inode_item.flags`.
    Fileattr {
        /// What.
        path: P,
        /// Flags.
        attr: u64,
    },
    /// Compressed data to write as-is (v2).
    EncodedWrite(EncodedWrite<'a, P>),
    /// Enable fs-verity on a file (v3).
    EnableVerity {
        /// What.
        path: P,
        /// Hash algorithm.
        algorithm: u8,
        /// Merkle tree block size.
        block_size: u32,
        /// Salt.
        salt: &'a [u8],
        /// Signature.
        sig: &'a [u8],
    },
}

/// Reads a path attribute as `P` (validating it, for a [`StreamPath`]).
fn path<'a, P: PathAttr<'a>>(frame: &Frame<'a>, attr: Attr) -> Result<P, ErrorKind> {
    P::from_attr(frame.require(attr)?).map_err(|reason| ErrorKind::BadPath { attr, reason })
}

fn u64_attr(frame: &Frame<'_>, attr: Attr) -> Result<u64, ErrorKind> {
    frame.fixed(attr).map(u64::from_le_bytes)
}

fn opt_u64(frame: &Frame<'_>, attr: Attr) -> Result<Option<u64>, ErrorKind> {
    Ok(frame.opt_fixed(attr)?.map(u64::from_le_bytes))
}

fn opt_u32(frame: &Frame<'_>, attr: Attr) -> Result<Option<u32>, ErrorKind> {
    Ok(frame.opt_fixed(attr)?.map(u32::from_le_bytes))
}

fn uuid(frame: &Frame<'_>, attr: Attr) -> Result<Uuid, ErrorKind> {
    frame.fixed(attr).map(Uuid)
}

fn time(frame: &Frame<'_>, attr: Attr) -> Result<Timespec, ErrorKind> {
    frame.fixed(attr).map(Timespec::from_wire)
}

/// A path attribute of a [`Command<RawPath>`] that a receive would refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidPath<'a> {
    /// The attribute holding it (PATH, PATH_TO, PATH_LINK or CLONE_PATH).
    pub attr: Attr,
    /// Its bytes.
    pub bytes: &'a [u8],
    /// Why [`StreamPath::new`] refuses it.
    pub reason: PathError,
}

impl<'a> Command<'a> {
    /// Decodes a parsed frame. Unknown command numbers and invalid paths
    /// ([`ErrorKind::BadPath`]) are errors.
    pub fn decode(frame: &Frame<'a>) -> Result<Self, ErrorKind> {
        Self::decode_as(frame)
    }
}

impl<'a> Command<'a, RawPath<'a>> {
    /// Decodes a parsed frame like [`Command::decode`], but keeps path
    /// attributes that it refuses; see [`invalid_paths`](Self::invalid_paths).
    pub fn decode_raw(frame: &Frame<'a>) -> Result<Self, ErrorKind> {
        Self::decode_as(frame)
    }

    /// The path attributes a strict decode would refuse, in attribute order.
    pub fn invalid_paths(&self) -> impl Iterator<Item = InvalidPath<'a>> + use<'a> {
        self.path_attrs().filter_map(|(attr, path)| {
            path.problem().map(|reason| InvalidPath { attr, bytes: path.as_bytes(), reason })
        })
    }
}

impl<'a, P: PathAttr<'a>> Command<'a, P> {
    /// The one decoder behind [`Command::decode`] and [`Command::decode_raw`]:
    /// `P::from_attr` decides what becomes of each path attribute.
    pub(crate) fn decode_as(frame: &Frame<'a>) -> Result<Self, ErrorKind> {
        use Attr as A;
        let f = frame;
        let kind = CommandKind::from_raw(f.cmd()).ok_or(ErrorKind::UnknownCommand(f.cmd()))?;
        let p = || path(f, A::Path);
        Ok(match kind {
            CommandKind::Subvol => {
                Command::Subvol { path: p()?, uuid: uuid(f, A::Uuid)?, ctransid: u64_attr(f, A::Ctransid)? }
            }
            CommandKind::Snapshot => Command::Snapshot {
                path: p()?,
                uuid: uuid(f, A::Uuid)?,
                ctransid: u64_attr(f, A::Ctransid)?,
                clone_uuid: uuid(f, A::CloneUuid)?,
                clone_ctransid: u64_attr(f, A::CloneCtransid)?,
            },
            CommandKind::Mkfile => Command::Mkfile { path: p()?, ino: u64_attr(f, A::Ino)? },
            CommandKind::Mkdir => Command::Mkdir { path: p()?, ino: u64_attr(f, A::Ino)? },
            CommandKind::Mknod => Command::Mknod {
                path: p()?,
                ino: u64_attr(f, A::Ino)?,
                rdev: Rdev(u64_attr(f, A::Rdev)?),
                mode: u64_attr(f, A::Mode)?,
            },
            CommandKind::Mkfifo => Command::Mkfifo {
                path: p()?,
                ino: u64_attr(f, A::Ino)?,
                rdev: opt_u64(f, A::Rdev)?.map(Rdev),
                mode: opt_u64(f, A::Mode)?,
            },
            CommandKind::Mksock => Command::Mksock {
                path: p()?,
                ino: u64_attr(f, A::Ino)?,
                rdev: opt_u64(f, A::Rdev)?.map(Rdev),
                mode: opt_u64(f, A::Mode)?,
            },
            CommandKind::Symlink => Command::Symlink {
                path: p()?,
                ino: u64_attr(f, A::Ino)?,
                target: SymlinkTarget(f.require(A::PathLink)?),
            },
            CommandKind::Rename => Command::Rename { from: p()?, to: path(f, A::PathTo)? },
            CommandKind::Link => Command::Link { path: p()?, target: path(f, A::PathLink)? },
            CommandKind::Unlink => Command::Unlink { path: p()? },
            CommandKind::Rmdir => Command::Rmdir { path: p()? },
            CommandKind::SetXattr => {
                Command::SetXattr { path: p()?, name: xattr_name(f)?, data: f.require(A::XattrData)? }
            }
            CommandKind::RemoveXattr => Command::RemoveXattr { path: p()?, name: xattr_name(f)? },
            CommandKind::Write => {
                Command::Write { path: p()?, offset: u64_attr(f, A::FileOffset)?, data: f.require(A::Data)? }
            }
            CommandKind::Clone => Command::Clone {
                path: p()?,
                offset: u64_attr(f, A::FileOffset)?,
                len: u64_attr(f, A::CloneLen)?,
                clone_uuid: uuid(f, A::CloneUuid)?,
                clone_ctransid: u64_attr(f, A::CloneCtransid)?,
                clone_path: path(f, A::ClonePath)?,
                clone_offset: u64_attr(f, A::CloneOffset)?,
            },
            CommandKind::Truncate => Command::Truncate { path: p()?, size: u64_attr(f, A::Size)? },
            CommandKind::Chmod => Command::Chmod { path: p()?, mode: u64_attr(f, A::Mode)? },
            CommandKind::Chown => {
                Command::Chown { path: p()?, uid: u64_attr(f, A::Uid)?, gid: u64_attr(f, A::Gid)? }
            }
            CommandKind::Utimes => Command::Utimes {
                path: p()?,
                atime: time(f, A::Atime)?,
                mtime: time(f, A::Mtime)?,
                ctime: time(f, A::Ctime)?,
                otime: f.opt_fixed(A::Otime)?.map(Timespec::from_wire),
            },
            CommandKind::End => Command::End,
            CommandKind::UpdateExtent => Command::UpdateExtent {
                path: p()?,
                offset: u64_attr(f, A::FileOffset)?,
                len: u64_attr(f, A::Size)?,
            },
            CommandKind::Fallocate => Command::Fallocate {
                path: p()?,
                mode: f.fixed(A::FallocateMode).map(u32::from_le_bytes)?,
                offset: u64_attr(f, A::FileOffset)?,
                len: u64_attr(f, A::Size)?,
            },
            CommandKind::Fileattr => Command::Fileattr { path: p()?, attr: u64_attr(f, A::Fileattr)? },
            CommandKind::EncodedWrite => Command::EncodedWrite(EncodedWrite {
                path: p()?,
                offset: u64_attr(f, A::FileOffset)?,
                unencoded_file_len: u64_attr(f, A::UnencodedFileLen)?,
                unencoded_len: u64_attr(f, A::UnencodedLen)?,
                unencoded_offset: u64_attr(f, A::UnencodedOffset)?,
                compression: opt_u32(f, A::Compression)?,
                encryption: opt_u32(f, A::Encryption)?,
                data: f.require(A::Data)?,
            }),
            CommandKind::EnableVerity => Command::EnableVerity {
                path: p()?,
                algorithm: f.fixed::<1>(A::VerityAlgorithm)?[0],
                block_size: f.fixed(A::VerityBlockSize).map(u32::from_le_bytes)?,
                salt: f.require(A::VeritySaltData)?,
                sig: f.require(A::VeritySigData)?,
            },
        })
    }

    /// The command number.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Subvol { .. } => CommandKind::Subvol,
            Command::Snapshot { .. } => CommandKind::Snapshot,
            Command::Mkfile { .. } => CommandKind::Mkfile,
            Command::Mkdir { .. } => CommandKind::Mkdir,
            Command::Mknod { .. } => CommandKind::Mknod,
            Command::Mkfifo { .. } => CommandKind::Mkfifo,
            Command::Mksock { .. } => CommandKind::Mksock,
            Command::Symlink { .. } => CommandKind::Symlink,
            Command::Rename { .. } => CommandKind::Rename,
            Command::Link { .. } => CommandKind::Link,
            Command::Unlink { .. } => CommandKind::Unlink,
            Command::Rmdir { .. } => CommandKind::Rmdir,
            Command::SetXattr { .. } => CommandKind::SetXattr,
            Command::RemoveXattr { .. } => CommandKind::RemoveXattr,
            Command::Write { .. } => CommandKind::Write,
            Command::Clone { .. } => CommandKind::Clone,
            Command::Truncate { .. } => CommandKind::Truncate,
            Command::Chmod { .. } => CommandKind::Chmod,
            Command::Chown { .. } => CommandKind::Chown,
            Command::Utimes { .. } => CommandKind::Utimes,
            Command::End => CommandKind::End,
            Command::UpdateExtent { .. } => CommandKind::UpdateExtent,
            Command::Fallocate { .. } => CommandKind::Fallocate,
            Command::Fileattr { .. } => CommandKind::Fileattr,
            Command::EncodedWrite(_) => CommandKind::EncodedWrite,
            Command::EnableVerity { .. } => CommandKind::EnableVerity,
        }
    }

    /// The PATH attribute (RENAME's source), if the command has one.
    pub fn path(&self) -> Option<P> {
        self.paths().0
    }

    /// Every path attribute with its number: PATH first, then PATH_TO,
    /// LINK's PATH_LINK or CLONE_PATH. (SYMLINK's PATH_LINK is a link target.)
    pub fn path_attrs(&self) -> impl Iterator<Item = (Attr, P)> + use<'a, P> {
        let (path, other) = self.paths();
        path.map(|p| (Attr::Path, p)).into_iter().chain(other)
    }

    /// PATH, and the second path attribute of RENAME, LINK and CLONE.
    fn paths(&self) -> (Option<P>, Option<(Attr, P)>) {
        let other = match *self {
            Command::Rename { to, .. } => Some((Attr::PathTo, to)),
            Command::Link { target, .. } => Some((Attr::PathLink, target)),
            Command::Clone { clone_path, .. } => Some((Attr::ClonePath, clone_path)),
            _ => None,
        };
        let path = match *self {
            Command::End => None,
            Command::Subvol { path, .. }
            | Command::Snapshot { path, .. }
            | Command::Mkfile { path, .. }
            | Command::Mkdir { path, .. }
            | Command::Mknod { path, .. }
            | Command::Mkfifo { path, .. }
            | Command::Mksock { path, .. }
            | Command::Symlink { path, .. }
            | Command::Rename { from: path, .. }
            | Command::Link { path, .. }
            | Command::Unlink { path }
            | Command::Rmdir { path }
            | Command::SetXattr { path, .. }
            | Command::RemoveXattr { path, .. }
            | Command::Write { path, .. }
            | Command::Clone { path, .. }
            | Command::Truncate { path, .. }
            | Command::Chmod { path, .. }
            | Command::Chown { path, .. }
            | Command::Utimes { path, .. }
            | Command::UpdateExtent { path, .. }
            | Command::Fallocate { path, .. }
            | Command::Fileattr { path, .. }
            | Command::EncodedWrite(EncodedWrite { path, .. })
            | Command::EnableVerity { path, .. } => Some(path),
        };
        (path, other)
    }

    /// Appends the encoded command (header, attributes in kernel order, CRC) to `out`.
    pub fn encode(&self, version: u32, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[0; CMD_HEADER_LEN]);
        let result = self.encode_attrs(&mut TlvWriter { out, version });
        if let Err(err) = result {
            out.truncate(start);
            return Err(err);
        }
        let len = u32::try_from(out.len() - start - CMD_HEADER_LEN).map_err(|_| {
            out.truncate(start);
            EncodeError::CommandTooLong
        })?;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 6].copy_from_slice(&self.kind().raw().to_le_bytes());
        let crc = command_crc(&out[start..]);
        out[start + CRC_RANGE.start..start + CRC_RANGE.end].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    fn encode_attrs(&self, w: &mut TlvWriter<'_>) -> Result<(), EncodeError> {
        use Attr as A;
        match *self {
            Command::Subvol { path, uuid, ctransid } => {
                w.path(A::Path, path)?;
                w.uuid(A::Uuid, uuid)?;
                w.u64(A::Ctransid, ctransid)
            }
            Command::Snapshot { path, uuid, ctransid, clone_uuid, clone_ctransid } => {
                w.path(A::Path, path)?;
                w.uuid(A::Uuid, uuid)?;
                w.u64(A::Ctransid, ctransid)?;
                w.uuid(A::CloneUuid, clone_uuid)?;
                w.u64(A::CloneCtransid, clone_ctransid)
            }
            Command::Mkfile { path, ino } | Command::Mkdir { path, ino } => {
                w.path(A::Path, path)?;
                w.u64(A::Ino, ino)
            }
            Command::Mknod { path, ino, rdev, mode } => {
                w.path(A::Path, path)?;
                w.u64(A::Ino, ino)?;
                w.u64(A::Rdev, rdev.0)?;
                w.u64(A::Mode, mode)
            }
            Command::Mkfifo { path, ino, rdev, mode } | Command::Mksock { path, ino, rdev, mode } => {
                w.path(A::Path, path)?;
                w.u64(A::Ino, ino)?;
                w.opt_u64(A::Rdev, rdev.map(|r| r.0))?;
                w.opt_u64(A::Mode, mode)
            }
            Command::Symlink { path, ino, target } => {
                w.path(A::Path, path)?;
                w.u64(A::Ino, ino)?;
                w.bytes(A::PathLink, target.as_bytes())
            }
            Command::Rename { from, to } => {
                w.path(A::Path, from)?;
                w.path(A::PathTo, to)
            }
            Command::Link { path, target } => {
                w.path(A::Path, path)?;
                w.path(A::PathLink, target)
            }
            Command::Unlink { path } | Command::Rmdir { path } => w.path(A::Path, path),
            Command::SetXattr { path, name, data } => {
                w.path(A::Path, path)?;
                w.bytes(A::XattrName, name.as_bytes())?;
                w.bytes(A::XattrData, data)
            }
            Command::RemoveXattr { path, name } => {
                w.path(A::Path, path)?;
                w.bytes(A::XattrName, name.as_bytes())
            }
            Command::Write { path, offset, data } => {
                w.path(A::Path, path)?;
                w.u64(A::FileOffset, offset)?;
                w.data(data)
            }
            Command::Clone { path, offset, len, clone_uuid, clone_ctransid, clone_path, clone_offset } => {
                w.u64(A::FileOffset, offset)?;
                w.u64(A::CloneLen, len)?;
                w.path(A::Path, path)?;
                w.uuid(A::CloneUuid, clone_uuid)?;
                w.u64(A::CloneCtransid, clone_ctransid)?;
                w.path(A::ClonePath, clone_path)?;
                w.u64(A::CloneOffset, clone_offset)
            }
            Command::Truncate { path, size } => {
                w.path(A::Path, path)?;
                w.u64(A::Size, size)
            }
            Command::Chmod { path, mode } => {
                w.path(A::Path, path)?;
                w.u64(A::Mode, mode)
            }
            Command::Chown { path, uid, gid } => {
                w.path(A::Path, path)?;
                w.u64(A::Uid, uid)?;
                w.u64(A::Gid, gid)
            }
            Command::Utimes { path, atime, mtime, ctime, otime } => {
                w.path(A::Path, path)?;
                w.bytes(A::Atime, &atime.to_wire())?;
                w.bytes(A::Mtime, &mtime.to_wire())?;
                w.bytes(A::Ctime, &ctime.to_wire())?;
                match otime {
                    Some(otime) => w.bytes(A::Otime, &otime.to_wire()),
                    None => Ok(()),
                }
            }
            Command::End => Ok(()),
            Command::UpdateExtent { path, offset, len } => {
                w.path(A::Path, path)?;
                w.u64(A::FileOffset, offset)?;
                w.u64(A::Size, len)
            }
            Command::Fallocate { path, mode, offset, len } => {
                w.path(A::Path, path)?;
                w.bytes(A::FallocateMode, &mode.to_le_bytes())?;
                w.u64(A::FileOffset, offset)?;
                w.u64(A::Size, len)
            }
            Command::Fileattr { path, attr } => {
                w.path(A::Path, path)?;
                w.u64(A::Fileattr, attr)
            }
            Command::EncodedWrite(write) => {
                w.path(A::Path, write.path)?;
                w.u64(A::FileOffset, write.offset)?;
                w.u64(A::UnencodedFileLen, write.unencoded_file_len)?;
                w.u64(A::UnencodedLen, write.unencoded_len)?;
                w.u64(A::UnencodedOffset, write.unencoded_offset)?;
                w.opt_u32(A::Compression, write.compression)?;
                w.opt_u32(A::Encryption, write.encryption)?;
                w.data(write.data)
            }
            Command::EnableVerity { path, algorithm, block_size, salt, sig } => {
                w.path(A::Path, path)?;
                w.bytes(A::VerityAlgorithm, &[algorithm])?;
                w.bytes(A::VerityBlockSize, &block_size.to_le_bytes())?;
                w.bytes(A::VeritySaltData, salt)?;
                w.bytes(A::VeritySigData, sig)
            }
        }
    }
}

fn xattr_name<'a>(frame: &Frame<'a>) -> Result<XattrName<'a>, ErrorKind> {
    XattrName::new(frame.require(Attr::XattrName)?)
        .map_err(|reason| ErrorKind::BadPath { attr: Attr::XattrName, reason })
}

/// Appends TLVs to a command being encoded.
struct TlvWriter<'b> {
    out: &'b mut Vec<u8>,
    version: u32,
}

impl TlvWriter<'_> {
    fn bytes(&mut self, attr: Attr, value: &[u8]) -> Result<(), EncodeError> {
        let len =
            u16::try_from(value.len()).map_err(|_| EncodeError::AttrTooLong { attr, len: value.len() })?;
        self.out.extend_from_slice(&attr.raw().to_le_bytes());
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(value);
        Ok(())
    }

    fn path<'p>(&mut self, attr: Attr, path: impl PathAttr<'p>) -> Result<(), EncodeError> {
        self.bytes(attr, path.bytes())
    }

    fn u64(&mut self, attr: Attr, value: u64) -> Result<(), EncodeError> {
        self.bytes(attr, &value.to_le_bytes())
    }

    fn opt_u64(&mut self, attr: Attr, value: Option<u64>) -> Result<(), EncodeError> {
        value.map_or(Ok(()), |v| self.u64(attr, v))
    }

    fn opt_u32(&mut self, attr: Attr, value: Option<u32>) -> Result<(), EncodeError> {
        value.map_or(Ok(()), |v| self.bytes(attr, &v.to_le_bytes()))
    }

    fn uuid(&mut self, attr: Attr, uuid: Uuid) -> Result<(), EncodeError> {
        self.bytes(attr, &uuid.0)
    }

    /// DATA: an ordinary TLV in v1; from v2 on only its type, running to the end.
    fn data(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        if self.version < 2 {
            return self.bytes(Attr::Data, data);
        }
        self.out.extend_from_slice(&Attr::Data.raw().to_le_bytes());
        self.out.extend_from_slice(data);
        Ok(())
    }
}
