//! A compressed btrfs with a subvolume `vol` and three read-only snapshots of it,
//! for tests that send: `s1`; `s2` after new files and a reflinked copy; `s3`
//! after a file removed and one added.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{FsType, LoopFs, MIB, require_root, run};

/// See the module docs. The filesystem is unmounted when this is dropped.
pub struct Snapshots {
    fs: LoopFs,
}

impl Snapshots {
    /// Makes the filesystem, `vol` and the snapshots `s1`, `s2`, `s3` (root only).
    pub fn new() -> Snapshots {
        require_root();
        let fs = LoopFs::builder(FsType::Btrfs, 256 * MIB).mount_options("compress=zstd").build();
        let snapshots = Snapshots { fs };
        run(Command::new("btrfs").args(["subvolume", "create"]).arg(snapshots.path("vol")));
        let text: Vec<u8> = (0..300_000u32).flat_map(|n| format!("line {n}\n").into_bytes()).collect();
        fs::write(snapshots.path("vol/text"), &text).expect("write text");
        fs::write(snapshots.path("vol/small"), b"small file\n").expect("write small");
        snapshots.snapshot("s1");
        fs::write(snapshots.path("vol/added"), &text[..100_000]).expect("write added");
        run(Command::new("cp")
            .arg("--reflink=always")
            .arg(snapshots.path("vol/text"))
            .arg(snapshots.path("vol/text-copy")));
        snapshots.snapshot("s2");
        fs::remove_file(snapshots.path("vol/small")).expect("remove small");
        fs::write(snapshots.path("vol/third"), b"third\n").expect("write third");
        snapshots.snapshot("s3");
        snapshots
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        self.fs.path()
    }

    /// `relative` beneath the mount point.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.fs.path().join(relative)
    }

    /// Syncs, then makes a read-only snapshot `name` of `vol`.
    pub fn snapshot(&self, name: &str) {
        run(&mut Command::new("sync"));
        run(Command::new("btrfs")
            .args(["subvolume", "snapshot", "-r"])
            .arg(self.path("vol"))
            .arg(self.path(name)));
    }
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots::new()
    }
}
