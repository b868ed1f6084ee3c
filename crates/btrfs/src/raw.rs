//! Kernel ABI mirrors: `#[repr(C)]` copies of the UAPI structs and the ioctl
//! numbers, under their kernel names.
//!
//! Nothing outside this crate sees these types; the safe API in the other
//! modules converts to and from them. The layout tests at the bottom pin
//! every size and field offset to `/usr/include/linux/btrfs.h` (LP64) and to
//! PROTOCOL.md §3 and §6, so a typo here fails `cargo test`, not a kernel
//! call.
#![allow(non_camel_case_types)]
// UAPI mirrors keep every field (reserved words, padding, out-only fields)
// so that the layout matches; not all of them are read by the safe API.
#![allow(dead_code)]

use core::ffi::c_void;

use rustix::ioctl::{Opcode, opcode};

/// `BTRFS_IOCTL_MAGIC`.
const MAGIC: u8 = 0x94;

pub const BTRFS_UUID_SIZE: usize = 16;
pub const BTRFS_VOL_NAME_MAX: usize = 255;
pub const BTRFS_PATH_NAME_MAX: usize = 4087;
pub const BTRFS_SUBVOL_NAME_MAX: usize = 4039;
pub const BTRFS_INO_LOOKUP_PATH_MAX: usize = 4080;
pub const BTRFS_SEARCH_ARGS_BUFSIZE: usize = 4096 - size_of::<btrfs_ioctl_search_key>();

pub const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;
/// Read-only bit of the on-disk root item flags, which GET_SUBVOL_INFO returns.
pub const BTRFS_ROOT_SUBVOL_RDONLY: u64 = 1 << 0;
pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
pub const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;
pub const BTRFS_ROOT_TREE_OBJECTID: u64 = 1;
pub const BTRFS_FS_TREE_OBJECTID: u64 = 5;
pub const BTRFS_UUID_TREE_OBJECTID: u64 = 9;
pub const BTRFS_EXTENT_DATA_KEY: u32 = 108;
pub const BTRFS_ROOT_ITEM_KEY: u32 = 132;
pub const BTRFS_ROOT_BACKREF_KEY: u32 = 144;
pub const BTRFS_UUID_KEY_SUBVOL: u32 = 251;
pub const BTRFS_UUID_KEY_RECEIVED_SUBVOL: u32 = 252;

pub const BTRFS_SEND_FLAG_NO_FILE_DATA: u64 = 0x1;
pub const BTRFS_SEND_FLAG_OMIT_STREAM_HEADER: u64 = 0x2;
pub const BTRFS_SEND_FLAG_OMIT_END_CMD: u64 = 0x4;
pub const BTRFS_SEND_FLAG_VERSION: u64 = 0x8;
pub const BTRFS_SEND_FLAG_COMPRESSED: u64 = 0x10;

pub const BTRFS_ENCODED_IO_COMPRESSION_NONE: u32 = 0;
pub const BTRFS_ENCODED_IO_COMPRESSION_ZLIB: u32 = 1;
pub const BTRFS_ENCODED_IO_COMPRESSION_ZSTD: u32 = 2;
pub const BTRFS_ENCODED_IO_COMPRESSION_LZO_4K: u32 = 3;
pub const BTRFS_ENCODED_IO_COMPRESSION_LZO_64K: u32 = 7;
pub const BTRFS_ENCODED_IO_ENCRYPTION_NONE: u32 = 0;
/// `BTRFS_MAX_COMPRESSED` / `BTRFS_MAX_UNCOMPRESSED` (kernel-internal).
pub const BTRFS_MAX_COMPRESSED: u64 = 128 * 1024;

/// `struct iovec`.
#[repr(C)]
pub struct iovec {
    pub iov_base: *mut c_void,
    pub iov_len: usize,
}

/// `struct btrfs_ioctl_encoded_io_args` (128 bytes).
#[repr(C)]
pub struct btrfs_ioctl_encoded_io_args {
    pub iov: *const iovec,
    pub iovcnt: usize,
    pub offset: i64,
    pub flags: u64,
    pub len: u64,
    pub unencoded_len: u64,
    pub unencoded_offset: u64,
    pub compression: u32,
    pub encryption: u32,
    pub reserved: [u8; 64],
}

/// `struct btrfs_ioctl_send_args` (72 bytes).
#[repr(C)]
pub struct btrfs_ioctl_send_args {
    pub send_fd: i64,
    pub clone_sources_count: u64,
    pub clone_sources: *const u64,
    pub parent_root: u64,
    pub flags: u64,
    pub version: u32,
    pub reserved: [u8; 28],
}

/// `struct btrfs_ioctl_vol_args` (4096 bytes).
#[repr(C)]
pub struct btrfs_ioctl_vol_args {
    pub fd: i64,
    pub name: [u8; BTRFS_PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args_v2` (4096 bytes); the unions are flattened
/// to the members rawsend uses (`unused`, `name`).
#[repr(C)]
pub struct btrfs_ioctl_vol_args_v2 {
    pub fd: i64,
    pub transid: u64,
    pub flags: u64,
    pub unused: [u64; 4],
    pub name: [u8; BTRFS_SUBVOL_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_timespec` (16 bytes, 4 of them padding).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct btrfs_ioctl_timespec {
    pub sec: u64,
    pub nsec: u32,
}

/// `struct btrfs_ioctl_received_subvol_args` (200 bytes).
#[repr(C)]
pub struct btrfs_ioctl_received_subvol_args {
    pub uuid: [u8; BTRFS_UUID_SIZE],
    pub stransid: u64,
    pub rtransid: u64,
    pub stime: btrfs_ioctl_timespec,
    pub rtime: btrfs_ioctl_timespec,
    pub flags: u64,
    pub reserved: [u64; 16],
}

/// `struct btrfs_ioctl_get_subvol_info_args` (504 bytes).
#[repr(C)]
pub struct btrfs_ioctl_get_subvol_info_args {
    pub treeid: u64,
    pub name: [u8; BTRFS_VOL_NAME_MAX + 1],
    pub parent_id: u64,
    pub dirid: u64,
    pub generation: u64,
    pub flags: u64,
    pub uuid: [u8; BTRFS_UUID_SIZE],
    pub parent_uuid: [u8; BTRFS_UUID_SIZE],
    pub received_uuid: [u8; BTRFS_UUID_SIZE],
    pub ctransid: u64,
    pub otransid: u64,
    pub stransid: u64,
    pub rtransid: u64,
    pub ctime: btrfs_ioctl_timespec,
    pub otime: btrfs_ioctl_timespec,
    pub stime: btrfs_ioctl_timespec,
    pub rtime: btrfs_ioctl_timespec,
    pub reserved: [u64; 8],
}

/// `struct btrfs_ioctl_ino_lookup_args` (4096 bytes).
#[repr(C)]
pub struct btrfs_ioctl_ino_lookup_args {
    pub treeid: u64,
    pub objectid: u64,
    pub name: [u8; BTRFS_INO_LOOKUP_PATH_MAX],
}

/// `struct btrfs_ioctl_search_key` (104 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct btrfs_ioctl_search_key {
    pub tree_id: u64,
    pub min_objectid: u64,
    pub max_objectid: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    pub min_transid: u64,
    pub max_transid: u64,
    pub min_type: u32,
    pub max_type: u32,
    pub nr_items: u32,
    pub unused: u32,
    pub unused1: u64,
    pub unused2: u64,
    pub unused3: u64,
    pub unused4: u64,
}

/// `struct btrfs_ioctl_search_header` (32 bytes), found unaligned in the buffer.
#[repr(C)]
pub struct btrfs_ioctl_search_header {
    pub transid: u64,
    pub objectid: u64,
    pub offset: u64,
    pub type_: u32,
    pub len: u32,
}

/// `struct btrfs_ioctl_search_args` (4096 bytes).
#[repr(C)]
pub struct btrfs_ioctl_search_args {
    pub key: btrfs_ioctl_search_key,
    pub buf: [u8; BTRFS_SEARCH_ARGS_BUFSIZE],
}

/// `struct file_clone_range` (32 bytes).
#[repr(C)]
pub struct file_clone_range {
    pub src_fd: i64,
    pub src_offset: u64,
    pub src_length: u64,
    pub dest_offset: u64,
}

/// Byte offsets inside the packed on-disk `struct btrfs_root_item`.
pub mod root_item {
    pub const GENERATION: usize = 160;
    pub const FLAGS: usize = 208;
    pub const GENERATION_V2: usize = 239;
    pub const UUID: usize = 247;
    pub const PARENT_UUID: usize = 263;
    pub const RECEIVED_UUID: usize = 279;
    pub const CTRANSID: usize = 295;
    pub const OTRANSID: usize = 303;
    pub const STRANSID: usize = 311;
    pub const RTRANSID: usize = 319;
    /// End of `rtransid`: root items written by old kernels are shorter.
    pub const END_OF_TRANSIDS: usize = 327;
}

/// Size of the packed on-disk `struct btrfs_root_ref` before the name.
pub const BTRFS_ROOT_REF_SIZE: usize = 18;

pub const BTRFS_IOC_SUBVOL_CREATE: Opcode = opcode::write::<btrfs_ioctl_vol_args>(MAGIC, 14);
pub const BTRFS_IOC_SNAP_DESTROY: Opcode = opcode::write::<btrfs_ioctl_vol_args>(MAGIC, 15);
pub const BTRFS_IOC_TREE_SEARCH: Opcode = opcode::read_write::<btrfs_ioctl_search_args>(MAGIC, 17);
pub const BTRFS_IOC_INO_LOOKUP: Opcode = opcode::read_write::<btrfs_ioctl_ino_lookup_args>(MAGIC, 18);
pub const BTRFS_IOC_SNAP_CREATE_V2: Opcode = opcode::write::<btrfs_ioctl_vol_args_v2>(MAGIC, 23);
pub const BTRFS_IOC_SUBVOL_GETFLAGS: Opcode = opcode::read::<u64>(MAGIC, 25);
pub const BTRFS_IOC_SUBVOL_SETFLAGS: Opcode = opcode::write::<u64>(MAGIC, 26);
pub const BTRFS_IOC_SET_RECEIVED_SUBVOL: Opcode =
    opcode::read_write::<btrfs_ioctl_received_subvol_args>(MAGIC, 37);
pub const BTRFS_IOC_SEND: Opcode = opcode::write::<btrfs_ioctl_send_args>(MAGIC, 38);
pub const BTRFS_IOC_GET_SUBVOL_INFO: Opcode = opcode::read::<btrfs_ioctl_get_subvol_info_args>(MAGIC, 60);
pub const BTRFS_IOC_ENCODED_READ: Opcode = opcode::read::<btrfs_ioctl_encoded_io_args>(MAGIC, 64);
pub const BTRFS_IOC_ENCODED_WRITE: Opcode = opcode::write::<btrfs_ioctl_encoded_io_args>(MAGIC, 64);
pub const FICLONERANGE: Opcode = opcode::write::<file_clone_range>(MAGIC, 13);
pub const FS_IOC_ENABLE_VERITY: Opcode = opcode::write::<fsverity_enable_arg>(b'f', 133);

/// `struct fsverity_enable_arg` (128 bytes, `<linux/fsverity.h>`).
#[repr(C)]
pub struct fsverity_enable_arg {
    pub version: u32,
    pub hash_algorithm: u32,
    pub block_size: u32,
    pub salt_size: u32,
    pub salt_ptr: u64,
    pub sig_size: u32,
    pub __reserved1: u32,
    pub sig_ptr: u64,
    pub __reserved2: [u64; 11],
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn encoded_io_args_layout() {
        type T = btrfs_ioctl_encoded_io_args;
        assert_eq!(size_of::<T>(), 128);
        assert_eq!(offset_of!(T, iov), 0);
        assert_eq!(offset_of!(T, iovcnt), 8);
        assert_eq!(offset_of!(T, offset), 16);
        assert_eq!(offset_of!(T, flags), 24);
        assert_eq!(offset_of!(T, len), 32);
        assert_eq!(offset_of!(T, unencoded_len), 40);
        assert_eq!(offset_of!(T, unencoded_offset), 48);
        assert_eq!(offset_of!(T, compression), 56);
        assert_eq!(offset_of!(T, encryption), 60);
        assert_eq!(offset_of!(T, reserved), 64);
    }

    #[test]
    fn fsverity_enable_arg_layout() {
        type T = fsverity_enable_arg;
        assert_eq!(size_of::<T>(), 128);
        assert_eq!(offset_of!(T, salt_size), 12);
        assert_eq!(offset_of!(T, salt_ptr), 16);
        assert_eq!(offset_of!(T, sig_size), 24);
        assert_eq!(offset_of!(T, sig_ptr), 32);
        assert_eq!(offset_of!(T, __reserved2), 40);
        assert_eq!(FS_IOC_ENABLE_VERITY, 0x4080_6685);
    }

    #[test]
    fn send_args_layout() {
        type T = btrfs_ioctl_send_args;
        assert_eq!(size_of::<T>(), 72);
        assert_eq!(offset_of!(T, send_fd), 0);
        assert_eq!(offset_of!(T, clone_sources_count), 8);
        assert_eq!(offset_of!(T, clone_sources), 16);
        assert_eq!(offset_of!(T, parent_root), 24);
        assert_eq!(offset_of!(T, flags), 32);
        assert_eq!(offset_of!(T, version), 40);
        assert_eq!(offset_of!(T, reserved), 44);
    }

    #[test]
    fn vol_args_layout() {
        assert_eq!(size_of::<btrfs_ioctl_vol_args>(), 4096);
        assert_eq!(offset_of!(btrfs_ioctl_vol_args, name), 8);
        type V2 = btrfs_ioctl_vol_args_v2;
        assert_eq!(size_of::<V2>(), 4096);
        assert_eq!(offset_of!(V2, transid), 8);
        assert_eq!(offset_of!(V2, flags), 16);
        assert_eq!(offset_of!(V2, unused), 24);
        assert_eq!(offset_of!(V2, name), 56);
    }

    #[test]
    fn received_subvol_args_layout() {
        type T = btrfs_ioctl_received_subvol_args;
        assert_eq!(size_of::<btrfs_ioctl_timespec>(), 16);
        assert_eq!(size_of::<T>(), 200);
        assert_eq!(offset_of!(T, stransid), 16);
        assert_eq!(offset_of!(T, rtransid), 24);
        assert_eq!(offset_of!(T, stime), 32);
        assert_eq!(offset_of!(T, rtime), 48);
        assert_eq!(offset_of!(T, flags), 64);
        assert_eq!(offset_of!(T, reserved), 72);
    }

    #[test]
    fn get_subvol_info_args_layout() {
        type T = btrfs_ioctl_get_subvol_info_args;
        assert_eq!(size_of::<T>(), 504);
        assert_eq!(offset_of!(T, name), 8);
        assert_eq!(offset_of!(T, parent_id), 264);
        assert_eq!(offset_of!(T, flags), 288);
        assert_eq!(offset_of!(T, uuid), 296);
        assert_eq!(offset_of!(T, parent_uuid), 312);
        assert_eq!(offset_of!(T, received_uuid), 328);
        assert_eq!(offset_of!(T, ctransid), 344);
        assert_eq!(offset_of!(T, rtransid), 368);
        assert_eq!(offset_of!(T, ctime), 376);
        assert_eq!(offset_of!(T, reserved), 440);
    }

    #[test]
    fn search_layout() {
        type K = btrfs_ioctl_search_key;
        assert_eq!(size_of::<K>(), 104);
        assert_eq!(offset_of!(K, min_transid), 40);
        assert_eq!(offset_of!(K, min_type), 56);
        assert_eq!(offset_of!(K, nr_items), 64);
        assert_eq!(offset_of!(K, unused1), 72);
        assert_eq!(size_of::<btrfs_ioctl_search_header>(), 32);
        assert_eq!(offset_of!(btrfs_ioctl_search_header, type_), 24);
        assert_eq!(offset_of!(btrfs_ioctl_search_header, len), 28);
        assert_eq!(size_of::<btrfs_ioctl_search_args>(), 4096);
        assert_eq!(size_of::<btrfs_ioctl_ino_lookup_args>(), 4096);
        assert_eq!(offset_of!(btrfs_ioctl_ino_lookup_args, name), 16);
    }

    #[test]
    fn clone_range_layout() {
        type T = file_clone_range;
        assert_eq!(size_of::<T>(), 32);
        assert_eq!(offset_of!(T, src_offset), 8);
        assert_eq!(offset_of!(T, src_length), 16);
        assert_eq!(offset_of!(T, dest_offset), 24);
    }

    #[test]
    fn opcodes_match_protocol_md() {
        let expected: [(Opcode, Opcode); 13] = [
            (BTRFS_IOC_ENCODED_READ, 0x8080_9440),
            (BTRFS_IOC_ENCODED_WRITE, 0x4080_9440),
            (BTRFS_IOC_SEND, 0x4048_9426),
            (BTRFS_IOC_SET_RECEIVED_SUBVOL, 0xc0c8_9425),
            (BTRFS_IOC_SUBVOL_CREATE, 0x5000_940e),
            (BTRFS_IOC_SNAP_DESTROY, 0x5000_940f),
            (BTRFS_IOC_SNAP_CREATE_V2, 0x5000_9417),
            (BTRFS_IOC_SUBVOL_GETFLAGS, 0x8008_9419),
            (BTRFS_IOC_SUBVOL_SETFLAGS, 0x4008_941a),
            (FICLONERANGE, 0x4020_940d),
            (BTRFS_IOC_TREE_SEARCH, 0xd000_9411),
            (BTRFS_IOC_INO_LOOKUP, 0xd000_9412),
            (BTRFS_IOC_GET_SUBVOL_INFO, 0x81f8_943c),
        ];
        for (index, (opcode, value)) in expected.into_iter().enumerate() {
            assert_eq!(opcode, value, "entry {index}: {opcode:#x} != {value:#x}");
        }
    }
}
