//! Test helpers: loop-mounted filesystems with RAII cleanup.
//!
//! Root integration tests need a real btrfs (or ext4) to run ioctls against,
//! and must never leave loop devices or mounts behind, not even when an
//! assertion fails halfway. [`LoopFs`] makes a sparse image in a temporary
//! directory, formats it, attaches it with `losetup --find --show` and
//! mounts it; dropping it (also while unwinding from a panic) unmounts,
//! falling back to a lazy unmount, detaches the device and removes the
//! image.
//!
//! Set-up failures panic with the failing command and its stderr, so that a
//! root test run where mounting is impossible fails instead of skipping.
//! Shelling out to `mkfs`, `losetup` and `mount` is fine here: this crate is
//! only ever used by tests.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub mod fixtures;
pub mod hostile;
pub mod journal;
pub mod proxy;
pub mod s3;
pub mod snapshots;
pub mod tree;

/// Mebibyte, for image sizes.
pub const MIB: u64 = 1024 * 1024;

/// `len` pseudo-random bytes from `seed` (xorshift): deterministic, incompressible.
pub fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Panics with a clear message unless the test runs as root.
///
/// Root tests call this first: CI runs as root, so a non-root run is a
/// mistake to report, not a reason to skip.
pub fn require_root() {
    let uid = run(Command::new("id").arg("-u"));
    let uid = String::from_utf8_lossy(&uid.stdout);
    assert!(
        uid.trim() == "0",
        "this test needs root (loop devices, mount, btrfs ioctls); run it as root, e.g. `sudo -E cargo test`"
    );
}

/// Runs `command`, panicking with its exit status and stderr unless it succeeds.
pub fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A command's exit status, stdout and stderr, for assertion messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `program` with `args`; see [`run`].
pub fn run_cmd<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(program).args(args))
}

/// A btrfs subvolume's received state, as `btrfs subvolume show` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedState {
    /// `Received UUID` (`-` when none).
    pub received_uuid: String,
    /// `Send transid`.
    pub send_transid: String,
    /// Whether `Flags` says readonly.
    pub read_only: bool,
}

impl ReceivedState {
    /// Marked received: a received UUID and read-only.
    pub fn is_received(&self) -> bool {
        self.received_uuid != "-" && self.read_only
    }
}

/// The received state of the subvolume at `subvol`, from `btrfs subvolume show`.
pub fn received_state(subvol: &Path) -> ReceivedState {
    let output = run(Command::new("btrfs").args(["subvolume", "show"]).arg(subvol));
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(name).map(|rest| rest.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} in `btrfs subvolume show {}`:\n{text}", subvol.display()))
    };
    ReceivedState {
        read_only: field("Flags:").split_whitespace().any(|flag| flag == "readonly"),
        received_uuid: field("Received UUID:"),
        send_transid: field("Send transid:"),
    }
}

/// Filesystem types [`LoopFs`] can create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsType {
    /// btrfs, formatted with `mkfs.btrfs`.
    Btrfs,
    /// ext4, formatted with `mkfs.ext4`.
    Ext4,
    /// XFS, formatted with `mkfs.xfs` (reflinks on by default; needs at least 300 MiB).
    Xfs,
}

impl FsType {
    fn mkfs(self) -> (&'static str, &'static [&'static str]) {
        match self {
            FsType::Btrfs => ("mkfs.btrfs", &["-f", "-q"]),
            FsType::Ext4 => ("mkfs.ext4", &["-F", "-q"]),
            FsType::Xfs => ("mkfs.xfs", &["-f", "-q"]),
        }
    }

    fn name(self) -> &'static str {
        match self {
            FsType::Btrfs => "btrfs",
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

/// Options for a [`LoopFs`]: type, size, extra `mkfs` arguments, mount options.
#[derive(Clone, Debug)]
pub struct LoopFsBuilder {
    fstype: FsType,
    size: u64,
    mkfs_args: Vec<String>,
    mount_options: Option<String>,
    image_dir: Option<PathBuf>,
}

impl LoopFsBuilder {
    /// Puts the image in `dir` rather than the default temporary directory (e.g. on a
    /// small tmpfs, for a device whose writes fail once it is full).
    pub fn image_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.image_dir = Some(dir.into());
        self
    }

    /// Adds an argument for `mkfs` (e.g. `"--sectorsize=4096"`).
    pub fn mkfs_arg(mut self, arg: impl Into<String>) -> Self {
        self.mkfs_args.push(arg.into());
        self
    }

    /// Sets the `mount -o` options (e.g. `"compress=zstd"`).
    pub fn mount_options(mut self, options: impl Into<String>) -> Self {
        self.mount_options = Some(options.into());
        self
    }

    /// Creates, formats, attaches and mounts the filesystem; panics on failure.
    pub fn build(self) -> LoopFs {
        let mut fs = LoopFs::unattached(self.image_dir.as_deref());
        fs.create_image(self.size);
        fs.format(self.fstype, &self.mkfs_args);
        fs.attach();
        fs.mount(self.fstype, self.mount_options.as_deref());
        fs
    }
}

/// A memory filesystem (tmpfs, ramfs) mounted on a temporary directory, unmounted on
/// drop (also while unwinding).
pub struct MemFs {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl MemFs {
    /// Mounts a new `fstype` (tmpfs, ramfs) with `options`.
    pub fn new(fstype: &str, options: &str) -> MemFs {
        let dir = tempfile::Builder::new().prefix("rawsend-memfs-").tempdir().expect("tempdir");
        let mut fs = MemFs { dir, mounted: false };
        run(Command::new("mount").args(["-t", fstype, "-o", options, "rawsend-test"]).arg(fs.dir.path()));
        fs.mounted = true;
        fs
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MemFs {
    fn drop(&mut self) {
        if self.mounted {
            unmount(self.dir.path());
        }
    }
}

/// Unmounts `mountpoint`, lazily if a plain unmount fails (e.g. a leaked open fd).
fn unmount(mountpoint: &Path) {
    let plain = Command::new("umount").arg(mountpoint).output();
    if !plain.is_ok_and(|output| output.status.success()) {
        let lazy = Command::new("umount").arg("-l").arg(mountpoint).output();
        if !lazy.is_ok_and(|output| output.status.success()) {
            eprintln!("rawsend-testutil: cannot unmount {}", mountpoint.display());
        }
    }
}

/// A loop-mounted filesystem that is unmounted and detached on drop.
///
/// Dropping cleans up whatever part of the set-up succeeded, so a panic in
/// [`LoopFsBuilder::build`] or in the test body leaves nothing behind.
#[derive(Debug)]
pub struct LoopFs {
    image: PathBuf,
    mountpoint: PathBuf,
    device: Option<PathBuf>,
    mounted: bool,
    _dir: TempDir,
}

impl LoopFs {
    /// Starts building a filesystem of `fstype` on a sparse image of `size` bytes.
    pub fn builder(fstype: FsType, size: u64) -> LoopFsBuilder {
        LoopFsBuilder { fstype, size, mkfs_args: Vec::new(), mount_options: None, image_dir: None }
    }

    /// A default btrfs of `size` bytes (at least about 110 MiB for mkfs.btrfs).
    pub fn btrfs(size: u64) -> LoopFs {
        Self::builder(FsType::Btrfs, size).build()
    }

    /// A default ext4 of `size` bytes.
    pub fn ext4(size: u64) -> LoopFs {
        Self::builder(FsType::Ext4, size).build()
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The loop device (e.g. `/dev/loop3`).
    pub fn device(&self) -> &Path {
        self.device.as_deref().expect("a built LoopFs always has a device")
    }

    /// What a power cut would leave right now, mounted: a copy of the image as the
    /// device holds it, taken without syncing (dirty pages of this filesystem are
    /// not in the image; what it wrote to the device is), then attached and
    /// mounted like any [`LoopFs`] (the journal or log tree is replayed on the
    /// copy, as after a crash). This filesystem stays mounted: btrfs mounts the
    /// copy with a temporary fsid (kernel 6.7+).
    pub fn crash_copy(&self, fstype: FsType) -> LoopFs {
        let mut fs = LoopFs::unattached(None);
        run(Command::new("cp").arg("--sparse=always").arg(&self.image).arg(&fs.image));
        fs.attach();
        fs.mount(fstype, None);
        fs
    }

    /// Unmounts the filesystem and mounts it again (a new mount, as after the device was
    /// lost and found again), with `options`.
    pub fn mount_again(&mut self, fstype: FsType, options: Option<&str>) {
        self.unmount();
        self.mount(fstype, options);
    }

    /// A temporary directory (in `parent`, if given) with an empty mount point and
    /// where the image goes.
    fn unattached(parent: Option<&Path>) -> LoopFs {
        let mut builder = tempfile::Builder::new();
        builder.prefix("rawsend-loopfs-");
        let dir = match parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        };
        let dir = dir.unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"));
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", mountpoint.display()));
        LoopFs { image: dir.path().join("image"), mountpoint, device: None, mounted: false, _dir: dir }
    }

    fn create_image(&self, size: u64) {
        let file = File::create(&self.image)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", self.image.display()));
        file.set_len(size).unwrap_or_else(|err| panic!("cannot size {}: {err}", self.image.display()));
    }

    fn format(&self, fstype: FsType, extra: &[String]) {
        let (program, args) = fstype.mkfs();
        run(Command::new(program).args(args).args(extra).arg(&self.image));
    }

    fn attach(&mut self) {
        let output = run(Command::new("losetup").args(["--find", "--show"]).arg(&self.image));
        let device = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(!device.is_empty(), "losetup printed no device name");
        self.device = Some(PathBuf::from(device));
    }

    fn mount(&mut self, fstype: FsType, options: Option<&str>) {
        let mut command = Command::new("mount");
        command.args(["-t", fstype.name()]);
        if let Some(options) = options {
            command.args(["-o", options]);
        }
        run(command.arg(self.device()).arg(&self.mountpoint));
        self.mounted = true;
    }

    fn unmount(&mut self) {
        unmount(&self.mountpoint);
        self.mounted = false;
    }

    fn detach(&mut self) {
        if let Some(device) = self.device.take() {
            let detached = Command::new("losetup").arg("-d").arg(&device).output();
            if !detached.is_ok_and(|output| output.status.success()) {
                eprintln!("rawsend-testutil: cannot detach {}", device.display());
            }
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            self.unmount();
        }
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_stderr_of_failures() {
        let result =
            std::panic::catch_unwind(|| run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])));
        let message = result.expect_err("a failing command must panic");
        let message = message.downcast_ref::<String>().expect("panic message is a String");
        assert!(message.contains("oops"), "{message}");
    }

    #[test]
    fn btrfs_is_mounted_and_cleaned_up() {
        require_root();
        let fs = LoopFs::builder(FsType::Btrfs, 256 * MIB).mount_options("compress=zstd").build();
        let image = fs.image.clone();
        let mounts = run(Command::new("findmnt").args(["-n", "-o", "FSTYPE,OPTIONS", "-M"]).arg(fs.path()));
        let mounts = String::from_utf8_lossy(&mounts.stdout);
        assert!(mounts.starts_with("btrfs"), "{mounts}");
        assert!(mounts.contains("compress=zstd"), "{mounts}");
        drop(fs);
        // By image, not device: a concurrent test may reuse the freed device at once.
        let left = run(Command::new("losetup").arg("-j").arg(&image));
        assert!(left.stdout.is_empty(), "{}", String::from_utf8_lossy(&left.stdout));
    }

    #[test]
    fn panicking_test_still_cleans_up() {
        require_root();
        let mut image = None;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let fs = LoopFs::btrfs(256 * MIB);
            image = Some(fs.image.clone());
            panic!("test body fails");
        }));
        assert!(result.is_err());
        let image = image.expect("the filesystem was built");
        let left = run(Command::new("losetup").arg("-j").arg(&image));
        assert!(left.stdout.is_empty(), "{}", String::from_utf8_lossy(&left.stdout));
        assert!(!image.exists(), "the temporary directory was removed");
    }

    #[test]
    fn ext4_mounts() {
        require_root();
        let fs = LoopFs::ext4(32 * MIB);
        std::fs::write(fs.path().join("f"), b"x").expect("write on ext4");
    }
}
