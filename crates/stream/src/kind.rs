//! Command and attribute numbers of the send-stream format (`reference/PROTOCOL.md` §2).
//!
//! The kernel's names (`BTRFS_SEND_C_*`, `BTRFS_SEND_A_*`) map to the idiomatic
//! variants here; `name()` gives the lower-case spelling that `btrfs receive
//! --dump` prints and that the JSON dump uses.

/// Declares a `#[repr(u16)]` enum with a number, a name and a lookup from the wire value.
macro_rules! numbered {
    ($(#[$meta:meta])* $vis:vis enum $ty:ident { $($(#[$vmeta:meta])* $variant:ident = $num:literal => $name:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        $vis enum $ty { $($(#[$vmeta])* $variant = $num,)+ }

        impl $ty {
            /// Every value, in numeric order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)+];

            /// Looks a value up by its wire number.
            pub fn from_raw(raw: u16) -> Option<Self> {
                match raw {
                    $($num => Some($ty::$variant),)+
                    _ => None,
                }
            }

            /// The wire number.
            pub fn raw(self) -> u16 {
                self as u16
            }

            /// The lower-case name, as `btrfs receive --dump` spells it.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name,)+ }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

numbered! {
    /// A send-stream command number (`BTRFS_SEND_C_*`).
    pub enum CommandKind {
        /// `BTRFS_SEND_C_SUBVOL`: start a new subvolume.
        Subvol = 1 => "subvol",
        /// `BTRFS_SEND_C_SNAPSHOT`: start a snapshot of a parent subvolume.
        Snapshot = 2 => "snapshot",
        /// `BTRFS_SEND_C_MKFILE`.
        Mkfile = 3 => "mkfile",
        /// `BTRFS_SEND_C_MKDIR`.
        Mkdir = 4 => "mkdir",
        /// `BTRFS_SEND_C_MKNOD`.
        Mknod = 5 => "mknod",
        /// `BTRFS_SEND_C_MKFIFO`.
        Mkfifo = 6 => "mkfifo",
        /// `BTRFS_SEND_C_MKSOCK`.
        Mksock = 7 => "mksock",
        /// `BTRFS_SEND_C_SYMLINK`.
        Symlink = 8 => "symlink",
        /// `BTRFS_SEND_C_RENAME`.
        Rename = 9 => "rename",
        /// `BTRFS_SEND_C_LINK`.
        Link = 10 => "link",
        /// `BTRFS_SEND_C_UNLINK`.
        Unlink = 11 => "unlink",
        /// `BTRFS_SEND_C_RMDIR`.
        Rmdir = 12 => "rmdir",
        /// `BTRFS_SEND_C_SET_XATTR`.
        SetXattr = 13 => "set_xattr",
        /// `BTRFS_SEND_C_REMOVE_XATTR`.
        RemoveXattr = 14 => "remove_xattr",
        /// `BTRFS_SEND_C_WRITE`.
        Write = 15 => "write",
        /// `BTRFS_SEND_C_CLONE`.
        Clone = 16 => "clone",
        /// `BTRFS_SEND_C_TRUNCATE`.
        Truncate = 17 => "truncate",
        /// `BTRFS_SEND_C_CHMOD`.
        Chmod = 18 => "chmod",
        /// `BTRFS_SEND_C_CHOWN`.
        Chown = 19 => "chown",
        /// `BTRFS_SEND_C_UTIMES`.
        Utimes = 20 => "utimes",
        /// `BTRFS_SEND_C_END`: end of one stream.
        End = 21 => "end",
        /// `BTRFS_SEND_C_UPDATE_EXTENT` (no-data streams).
        UpdateExtent = 22 => "update_extent",
        /// `BTRFS_SEND_C_FALLOCATE` (v2).
        Fallocate = 23 => "fallocate",
        /// `BTRFS_SEND_C_FILEATTR` (v2).
        Fileattr = 24 => "fileattr",
        /// `BTRFS_SEND_C_ENCODED_WRITE` (v2).
        EncodedWrite = 25 => "encoded_write",
        /// `BTRFS_SEND_C_ENABLE_VERITY` (v3).
        EnableVerity = 26 => "enable_verity",
    }
}

numbered! {
    /// A send-stream attribute number (`BTRFS_SEND_A_*`).
    pub enum Attr {
        /// `BTRFS_SEND_A_UUID`.
        Uuid = 1 => "uuid",
        /// `BTRFS_SEND_A_CTRANSID`.
        Ctransid = 2 => "ctransid",
        /// `BTRFS_SEND_A_INO`.
        Ino = 3 => "ino",
        /// `BTRFS_SEND_A_SIZE`.
        Size = 4 => "size",
        /// `BTRFS_SEND_A_MODE`.
        Mode = 5 => "mode",
        /// `BTRFS_SEND_A_UID`.
        Uid = 6 => "uid",
        /// `BTRFS_SEND_A_GID`.
        Gid = 7 => "gid",
        /// `BTRFS_SEND_A_RDEV`.
        Rdev = 8 => "rdev",
        /// `BTRFS_SEND_A_CTIME`.
        Ctime = 9 => "ctime",
        /// `BTRFS_SEND_A_MTIME`.
        Mtime = 10 => "mtime",
        /// `BTRFS_SEND_A_ATIME`.
        Atime = 11 => "atime",
        /// `BTRFS_SEND_A_OTIME`.
        Otime = 12 => "otime",
        /// `BTRFS_SEND_A_XATTR_NAME`.
        XattrName = 13 => "xattr_name",
        /// `BTRFS_SEND_A_XATTR_DATA`.
        XattrData = 14 => "xattr_data",
        /// `BTRFS_SEND_A_PATH`.
        Path = 15 => "path",
        /// `BTRFS_SEND_A_PATH_TO`.
        PathTo = 16 => "path_to",
        /// `BTRFS_SEND_A_PATH_LINK`.
        PathLink = 17 => "path_link",
        /// `BTRFS_SEND_A_FILE_OFFSET`.
        FileOffset = 18 => "file_offset",
        /// `BTRFS_SEND_A_DATA`: in v2+ it has no length and runs to the end of the command.
        Data = 19 => "data",
        /// `BTRFS_SEND_A_CLONE_UUID`.
        CloneUuid = 20 => "clone_uuid",
        /// `BTRFS_SEND_A_CLONE_CTRANSID`.
        CloneCtransid = 21 => "clone_ctransid",
        /// `BTRFS_SEND_A_CLONE_PATH`.
        ClonePath = 22 => "clone_path",
        /// `BTRFS_SEND_A_CLONE_OFFSET`.
        CloneOffset = 23 => "clone_offset",
        /// `BTRFS_SEND_A_CLONE_LEN`.
        CloneLen = 24 => "clone_len",
        /// `BTRFS_SEND_A_FALLOCATE_MODE` (v2).
        FallocateMode = 25 => "fallocate_mode",
        /// `BTRFS_SEND_A_FILEATTR` (v2).
        Fileattr = 26 => "fileattr",
        /// `BTRFS_SEND_A_UNENCODED_FILE_LEN` (v2).
        UnencodedFileLen = 27 => "unencoded_file_len",
        /// `BTRFS_SEND_A_UNENCODED_LEN` (v2).
        UnencodedLen = 28 => "unencoded_len",
        /// `BTRFS_SEND_A_UNENCODED_OFFSET` (v2).
        UnencodedOffset = 29 => "unencoded_offset",
        /// `BTRFS_SEND_A_COMPRESSION` (v2).
        Compression = 30 => "compression",
        /// `BTRFS_SEND_A_ENCRYPTION` (v2).
        Encryption = 31 => "encryption",
        /// `BTRFS_SEND_A_VERITY_ALGORITHM` (v3).
        VerityAlgorithm = 32 => "verity_algorithm",
        /// `BTRFS_SEND_A_VERITY_BLOCK_SIZE` (v3).
        VerityBlockSize = 33 => "verity_block_size",
        /// `BTRFS_SEND_A_VERITY_SALT_DATA` (v3).
        VeritySaltData = 34 => "verity_salt_data",
        /// `BTRFS_SEND_A_VERITY_SIG_DATA` (v3).
        VeritySigData = 35 => "verity_sig_data",
    }
}

/// The highest attribute number (`__BTRFS_SEND_A_MAX`).
pub const ATTR_MAX: u16 = 35;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_is_dense_and_round_trips() {
        for (i, kind) in CommandKind::ALL.iter().enumerate() {
            assert_eq!(kind.raw() as usize, i + 1);
            assert_eq!(CommandKind::from_raw(kind.raw()), Some(*kind));
        }
        for (i, attr) in Attr::ALL.iter().enumerate() {
            assert_eq!(attr.raw() as usize, i + 1);
            assert_eq!(Attr::from_raw(attr.raw()), Some(*attr));
        }
        assert_eq!(Attr::ALL.len(), ATTR_MAX as usize);
        assert_eq!(CommandKind::from_raw(0), None);
        assert_eq!(CommandKind::from_raw(27), None);
        assert_eq!(Attr::from_raw(36), None);
    }
}
