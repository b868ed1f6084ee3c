//! Tree searches (`BTRFS_IOC_TREE_SEARCH`): find subvolumes by UUID or
//! received UUID in the UUID tree, read root items and file extent items,
//! and turn a root id into a path. All of them need `CAP_SYS_ADMIN`.
//!
//! A receiver uses these to find the parent of an incremental stream and its
//! clone sources (PROTOCOL.md §2.5, §5.5); a sender uses them to pick a
//! parent among clone sources as btrfs-progs does, and to estimate how a
//! `--compressed-data` stream carries each extent (PROTOCOL.md §2.4).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use rustix::fd::AsFd;

use crate::Uuid;
use crate::error::{Error, Op, Result};
use crate::ioctl::call;
use crate::raw;
use crate::subvol::ino_lookup;

/// One item found by a tree search.
struct Item {
    objectid: u64,
    offset: u64,
    data: Vec<u8>,
}

/// The exact key range of a search in `tree`: one objectid and item type,
/// offsets in `offsets`.
struct Range {
    tree: u64,
    objectid: u64,
    item_type: u32,
    offsets: (u64, u64),
}

const HEADER_SIZE: usize = size_of::<raw::btrfs_ioctl_search_header>();

fn malformed(what: &'static str) -> Error {
    Error::Malformed { op: Op::TreeSearch, what }
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at + 8)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// Searches `range`, returning at most `max_items` items (one buffer's worth).
fn search(fd: impl AsFd, range: &Range, max_items: u32) -> Result<Vec<Item>> {
    let mut args = raw::btrfs_ioctl_search_args {
        key: raw::btrfs_ioctl_search_key {
            tree_id: range.tree,
            min_objectid: range.objectid,
            max_objectid: range.objectid,
            min_offset: range.offsets.0,
            max_offset: range.offsets.1,
            max_transid: u64::MAX,
            min_type: range.item_type,
            max_type: range.item_type,
            nr_items: max_items,
            ..Default::default()
        },
        buf: [0; raw::BTRFS_SEARCH_ARGS_BUFSIZE],
    };
    // SAFETY: TREE_SEARCH takes a `btrfs_ioctl_search_args` holding no
    // pointers; the kernel fills `buf` (whose size is implied by the
    // struct) and updates `key.nr_items`.
    unsafe { call::<{ raw::BTRFS_IOC_TREE_SEARCH }, _>(Op::TreeSearch, fd, &mut args)? };
    parse_items(&args.buf, args.key.nr_items)
}

/// Splits a search buffer into items. Headers are in host byte order.
fn parse_items(buf: &[u8], count: u32) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut rest = buf;
    for _ in 0..count {
        let header = rest.get(..HEADER_SIZE).ok_or_else(|| malformed("item header past the buffer"))?;
        let field = |at: usize| u64::from_ne_bytes(header[at..at + 8].try_into().unwrap_or_default());
        let len = u32::from_ne_bytes(header[28..32].try_into().unwrap_or_default()) as usize;
        let data =
            rest.get(HEADER_SIZE..HEADER_SIZE + len).ok_or_else(|| malformed("item data past the buffer"))?;
        items.push(Item { objectid: field(8), offset: field(16), data: data.to_vec() });
        rest = &rest[HEADER_SIZE + len..];
    }
    Ok(items)
}

/// The subvolume ids stored under `uuid` with key `item_type` in the UUID tree, in order.
fn uuid_tree_lookup(fd: impl AsFd, uuid: &Uuid, item_type: u32) -> Result<Vec<u64>> {
    let half = |at: usize| read_u64(&uuid.0, at).unwrap_or_default();
    let key_offset = half(8);
    let range = Range {
        tree: raw::BTRFS_UUID_TREE_OBJECTID,
        objectid: half(0),
        item_type,
        offsets: (key_offset, key_offset),
    };
    let Some(item) = search(fd, &range, 1)?.into_iter().next() else {
        return Ok(Vec::new());
    };
    if item.data.is_empty() || item.data.len() % 8 != 0 {
        return Err(malformed("UUID item size not a multiple of 8"));
    }
    Ok(item.data.chunks_exact(8).filter_map(|id| read_u64(id, 0)).collect())
}

/// The id of the subvolume whose UUID is `uuid`, from the UUID tree (key
/// type 251, `BTRFS_UUID_KEY_SUBVOL`); `None` if there is none.
///
/// `fd` may be any file on the filesystem.
///
/// # Errors
///
/// `EPERM` without `CAP_SYS_ADMIN`, `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_TREE_SEARCH")]
pub fn subvolume_id_by_uuid(fd: impl AsFd, uuid: &Uuid) -> Result<Option<u64>> {
    Ok(uuid_tree_lookup(fd, uuid, raw::BTRFS_UUID_KEY_SUBVOL)?.first().copied())
}

/// The ids of the subvolumes received from the subvolume `uuid`, from the UUID
/// tree (key type 252, `BTRFS_UUID_KEY_RECEIVED_SUBVOL`), in the tree's order
/// (btrfs-progs uses the first); empty if there is none. One filesystem can
/// hold several copies received from the same subvolume.
///
/// # Errors
///
/// `EPERM` without `CAP_SYS_ADMIN`, `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_TREE_SEARCH")]
pub fn subvolume_ids_by_received_uuid(fd: impl AsFd, uuid: &Uuid) -> Result<Vec<u64>> {
    uuid_tree_lookup(fd, uuid, raw::BTRFS_UUID_KEY_RECEIVED_SUBVOL)
}

/// What the root item of a subvolume records, found by root id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootInfo {
    /// Root id.
    pub id: u64,
    /// Whether the subvolume is read-only.
    pub read_only: bool,
    /// Its UUID.
    pub uuid: Uuid,
    /// UUID of the subvolume it is a snapshot of, if any.
    pub parent_uuid: Option<Uuid>,
    /// UUID of the subvolume it was received from, if any.
    pub received_uuid: Option<Uuid>,
    /// Transid of the last change.
    pub ctransid: u64,
    /// Transid of its creation.
    pub otransid: u64,
    /// Sender's ctransid when it was received.
    pub stransid: u64,
    /// Local transid when it was received.
    pub rtransid: u64,
}

fn parse_root_item(id: u64, data: &[u8]) -> Result<RootInfo> {
    use raw::root_item as at;
    let field = |offset| read_u64(data, offset).ok_or_else(|| malformed("root item too short"));
    let flags = field(at::FLAGS)?;
    // Root items written by kernels before 3.x lack the UUID fields, and a
    // generation_v2 that differs from generation marks them stale.
    let current = data.len() >= at::END_OF_TRANSIDS && field(at::GENERATION_V2)? == field(at::GENERATION)?;
    let uuid = |offset: usize| match data.get(offset..offset + 16) {
        Some(bytes) if current => Uuid(bytes.try_into().unwrap_or_default()),
        _ => Uuid::NIL,
    };
    let transid = |offset| if current { field(offset) } else { Ok(0) };
    Ok(RootInfo {
        id,
        read_only: flags & raw::BTRFS_ROOT_SUBVOL_RDONLY != 0,
        uuid: uuid(at::UUID),
        parent_uuid: uuid(at::PARENT_UUID).non_nil(),
        received_uuid: uuid(at::RECEIVED_UUID).non_nil(),
        ctransid: transid(at::CTRANSID)?,
        otransid: transid(at::OTRANSID)?,
        stransid: transid(at::STRANSID)?,
        rtransid: transid(at::RTRANSID)?,
    })
}

/// Reads the root item of subvolume `root_id` from the root tree; `None` if
/// there is no such root. `fd` may be any file on the filesystem.
///
/// # Errors
///
/// `EPERM` without `CAP_SYS_ADMIN`, `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_TREE_SEARCH")]
pub fn root_info(fd: impl AsFd, root_id: u64) -> Result<Option<RootInfo>> {
    let range = Range {
        tree: raw::BTRFS_ROOT_TREE_OBJECTID,
        objectid: root_id,
        item_type: raw::BTRFS_ROOT_ITEM_KEY,
        offsets: (0, u64::MAX),
    };
    search(fd, &range, 1)?.first().map(|item| parse_root_item(item.objectid, &item.data)).transpose()
}

/// How one extent of a file is stored (a `btrfs_file_extent_item`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileExtent {
    /// On-disk compression type (0 none, 1 zlib, 2 LZO, 3 zstd).
    pub compression: u8,
    /// Where its data is.
    pub storage: ExtentStorage,
}

/// Where a file extent's data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentStorage {
    /// In the item itself: `len` bytes (compressed if the extent is).
    Inline {
        /// Bytes of the inline payload.
        len: u64,
    },
    /// In a data extent of `disk_num_bytes` bytes on disk.
    Regular {
        /// Bytes on disk (compressed if the extent is).
        disk_num_bytes: u64,
    },
    /// Preallocated, unwritten.
    Prealloc,
}

/// Offsets in a `btrfs_file_extent_item`.
mod file_extent_item {
    pub const COMPRESSION: usize = 16;
    pub const TYPE: usize = 20;
    pub const INLINE_DATA: usize = 21;
    pub const DISK_NUM_BYTES: usize = 29;
}

fn parse_file_extent(data: &[u8]) -> Result<FileExtent> {
    use file_extent_item as at;
    let byte =
        |offset: usize| data.get(offset).copied().ok_or_else(|| malformed("file extent item too short"));
    let storage = match byte(at::TYPE)? {
        0 => ExtentStorage::Inline { len: data.len().saturating_sub(at::INLINE_DATA) as u64 },
        1 => ExtentStorage::Regular {
            disk_num_bytes: read_u64(data, at::DISK_NUM_BYTES)
                .ok_or_else(|| malformed("file extent item too short"))?,
        },
        2 => ExtentStorage::Prealloc,
        _ => return Err(malformed("unknown file extent type")),
    };
    Ok(FileExtent { compression: byte(at::COMPRESSION)?, storage })
}

/// The file extent item of inode `ino` in subvolume `root_id` whose key offset
/// is `offset` (where the extent starts in the file); `None` if there is none.
/// `fd` may be any file on the filesystem.
///
/// # Errors
///
/// `EPERM` without `CAP_SYS_ADMIN`, `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_TREE_SEARCH")]
pub fn file_extent(fd: impl AsFd, root_id: u64, ino: u64, offset: u64) -> Result<Option<FileExtent>> {
    let range = Range {
        tree: root_id,
        objectid: ino,
        item_type: raw::BTRFS_EXTENT_DATA_KEY,
        offsets: (offset, offset),
    };
    search(fd, &range, 1)?.first().map(|item| parse_file_extent(&item.data)).transpose()
}

/// The path of subvolume `root_id` relative to the top-level subvolume
/// (id 5), e.g. `snaps/daily.1`, found by walking ROOT_BACKREF items up to
/// the top level and resolving each holding directory with INO_LOOKUP.
/// `None` if the subvolume does not exist or was deleted.
///
/// # Errors
///
/// `EPERM` without `CAP_SYS_ADMIN`, `ENOTTY` off btrfs.
#[doc(alias = "BTRFS_IOC_TREE_SEARCH")]
#[doc(alias = "BTRFS_IOC_INO_LOOKUP")]
pub fn subvolume_path(fd: impl AsFd, root_id: u64) -> Result<Option<PathBuf>> {
    let fd = fd.as_fd();
    let mut components: Vec<Vec<u8>> = Vec::new();
    let mut current = root_id;
    while current != raw::BTRFS_FS_TREE_OBJECTID {
        let range = Range {
            tree: raw::BTRFS_ROOT_TREE_OBJECTID,
            objectid: current,
            item_type: raw::BTRFS_ROOT_BACKREF_KEY,
            offsets: (0, u64::MAX),
        };
        let Some(backref) = search(fd, &range, 1)?.into_iter().next() else {
            return Ok(None);
        };
        let (dirid, name) = parse_root_ref(&backref.data)?;
        let (_, dir_path) = ino_lookup(fd, backref.offset, dirid)?;
        components.push([dir_path.as_slice(), name].concat());
        current = backref.offset;
    }
    components.reverse();
    Ok(Some(PathBuf::from(OsString::from_vec(components.join(&b'/')))))
}

/// Splits a `btrfs_root_ref` (dirid, sequence, name_len, name) item.
fn parse_root_ref(data: &[u8]) -> Result<(u64, &[u8])> {
    let dirid = read_u64(data, 0).ok_or_else(|| malformed("root ref too short"))?;
    let name_len = data
        .get(16..18)
        .map(|bytes| u16::from_le_bytes([bytes[0], bytes[1]]) as usize)
        .ok_or_else(|| malformed("root ref too short"))?;
    let name = data
        .get(raw::BTRFS_ROOT_REF_SIZE..raw::BTRFS_ROOT_REF_SIZE + name_len)
        .ok_or_else(|| malformed("root ref name past the item"))?;
    Ok((dirid, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_extent_items_parse() {
        let mut item = vec![0u8; 53];
        item[16] = 3; // zstd
        item[20] = 1; // regular
        item[29..37].copy_from_slice(&8192u64.to_le_bytes());
        let regular = parse_file_extent(&item).unwrap();
        assert_eq!(
            regular,
            FileExtent { compression: 3, storage: ExtentStorage::Regular { disk_num_bytes: 8192 } }
        );
        let mut inline = vec![0u8; 21 + 700];
        inline[16] = 1;
        assert_eq!(parse_file_extent(&inline).unwrap().storage, ExtentStorage::Inline { len: 700 });
        item[20] = 2;
        assert_eq!(parse_file_extent(&item).unwrap().storage, ExtentStorage::Prealloc);
        item[20] = 9;
        assert!(parse_file_extent(&item).is_err());
        item[20] = 1;
        assert!(parse_file_extent(&item[..30]).is_err());
        assert!(parse_file_extent(&item[..20]).is_err());
    }

    fn header(objectid: u64, offset: u64, item_type: u32, len: u32) -> Vec<u8> {
        [
            7u64.to_ne_bytes().as_slice(),
            &objectid.to_ne_bytes(),
            &offset.to_ne_bytes(),
            &item_type.to_ne_bytes(),
            &len.to_ne_bytes(),
        ]
        .concat()
    }

    #[test]
    fn parses_consecutive_items_and_rejects_overruns() {
        let mut buf = header(256, 5, 144, 3);
        buf.extend_from_slice(b"abc");
        buf.extend(header(257, 6, 144, 1));
        buf.push(b'z');
        let items = parse_items(&buf, 2).expect("two items");
        assert_eq!((items[0].objectid, items[0].offset, items[0].data.as_slice()), (256, 5, &b"abc"[..]));
        assert_eq!((items[1].objectid, items[1].data.as_slice()), (257, &b"z"[..]));
        assert!(parse_items(&buf, 3).is_err());
    }

    #[test]
    fn parses_root_ref() {
        let mut data = 256u64.to_le_bytes().to_vec();
        data.extend(9u64.to_le_bytes());
        data.extend(4u16.to_le_bytes());
        data.extend(b"snap");
        assert_eq!(parse_root_ref(&data).expect("valid"), (256, &b"snap"[..]));
        assert!(parse_root_ref(&data[..20]).is_err());
    }

    #[test]
    fn short_root_items_have_no_uuids() {
        let mut data = vec![0u8; 239];
        data[raw::root_item::FLAGS] = 1;
        let info = parse_root_item(257, &data).expect("old-style root item");
        assert!(info.read_only);
        assert!(info.uuid.is_nil());
        assert_eq!(info.ctransid, 0);
    }
}
