//! Hostile send streams against `rawsend receive` (root: loop-mounted filesystems).
//!
//! Every test hand-builds a stream frame by frame (paths with `..`, absolute
//! paths, planted symlinks, malformed framing, bad encoded extents), because
//! `StreamPath::new` refuses to build such paths. It then runs the real binary
//! `rawsend receive --target T -f STREAM DEST` with a watchdog and checks that:
//! - it exits with status 1 within 30 s, without panicking;
//! - stderr names the command index, byte offset, command and path;
//! - sentinels outside DEST (one directory next to DEST on the same
//!   filesystem, one in a temporary directory elsewhere) are unchanged:
//!   content, mode, owner, link count, mtime and ctime (ctime also catches
//!   xattr changes), and no entry appeared outside DEST;
//! - the partial subvolume is not marked received.
//!
//! Every attack runs against both targets, as `btrfs::NAME` and `dir::NAME`
//! (see [`Target`] and the list at the end of the file):
//! - btrfs: DEST on a loop-mounted btrfs; "not received" means no received
//!   UUID and not read-only;
//! - dir: DEST on a loop-mounted ext4; "not received" means no
//!   `user.rawsend.received` xattr on the directory and no
//!   `DEST/.rawsend-received/records/NAME` record.
//!
//! A few attacks only concern one target: forging the dir target's
//! completion marker (`dir::`; some of them on a ramfs, where the dir target
//! keeps its records in files since there are no user xattrs), and the
//! btrfs-progs contrast (`btrfs::`).
//!
//! See DESIGN.md "Paths are untrusted" and PROTOCOL.md §5.7.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rawsend_stream::command_crc;
use rawsend_testutil::tree::TreeSnapshot;
use rawsend_testutil::{FsType, LoopFs, MIB, require_root, run};

// Command numbers (PROTOCOL.md §2).
const C_SUBVOL: u16 = 1;
const C_SNAPSHOT: u16 = 2;
const C_MKFILE: u16 = 3;
const C_MKDIR: u16 = 4;
const C_MKFIFO: u16 = 6;
const C_SYMLINK: u16 = 8;
const C_RENAME: u16 = 9;
const C_LINK: u16 = 10;
const C_UNLINK: u16 = 11;
const C_RMDIR: u16 = 12;
const C_SET_XATTR: u16 = 13;
const C_WRITE: u16 = 15;
const C_CLONE: u16 = 16;
const C_TRUNCATE: u16 = 17;
const C_CHMOD: u16 = 18;
const C_CHOWN: u16 = 19;
const C_UTIMES: u16 = 20;
const C_END: u16 = 21;
const C_ENCODED_WRITE: u16 = 25;

// Attribute numbers.
const A_UUID: u16 = 1;
const A_CTRANSID: u16 = 2;
const A_INO: u16 = 3;
const A_SIZE: u16 = 4;
const A_MODE: u16 = 5;
const A_UID: u16 = 6;
const A_GID: u16 = 7;
const A_RDEV: u16 = 8;
const A_CTIME: u16 = 9;
const A_MTIME: u16 = 10;
const A_ATIME: u16 = 11;
const A_XATTR_NAME: u16 = 13;
const A_XATTR_DATA: u16 = 14;
const A_PATH: u16 = 15;
const A_PATH_TO: u16 = 16;
const A_PATH_LINK: u16 = 17;
const A_FILE_OFFSET: u16 = 18;
const A_DATA: u16 = 19;
const A_CLONE_UUID: u16 = 20;
const A_CLONE_CTRANSID: u16 = 21;
const A_CLONE_PATH: u16 = 22;
const A_CLONE_OFFSET: u16 = 23;
const A_CLONE_LEN: u16 = 24;
const A_UNENCODED_FILE_LEN: u16 = 27;
const A_UNENCODED_LEN: u16 = 28;
const A_UNENCODED_OFFSET: u16 = 29;
const A_COMPRESSION: u16 = 30;

/// The UUID of the subvolume every stream sends (also the clone source UUID).
const VOL_UUID: [u8; 16] = *b"rawsend-hostile!";
/// Content of the sentinel files.
const SECRET: &[u8] = b"top secret sentinel\n";
/// Content of the local file `f` that some attacks use.
const LOCAL: &[u8] = b"local data, 20 bytes";
/// How long a receive may take before the watchdog kills it.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The dir target's completion marker: an xattr on the subvolume's directory.
const MARKER_XATTR: &str = "user.rawsend.received";
/// The dir target's directory in DEST for what does not fit in xattrs.
const MARKER_STORE: &str = ".rawsend-received";
/// Where the dir target keeps completion records when user xattrs are missing:
/// `DEST/.rawsend-received/records/NAME`, starting with the directory's inode number.
const MARKER_RECORDS: &str = ".rawsend-received/records";

/// Which receive target an attack runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// `--target btrfs`, DEST on a loop-mounted btrfs.
    Btrfs,
    /// `--target dir`, DEST on a loop-mounted ext4.
    Dir,
}

impl Target {
    /// A fresh filesystem for one arena.
    fn filesystem(self) -> Filesystem {
        Filesystem::Loop(match self {
            Target::Btrfs => LoopFs::btrfs(256 * MIB),
            Target::Dir => LoopFs::builder(FsType::Ext4, 32 * MIB).build(),
        })
    }

    /// The value of `rawsend receive --target`.
    fn arg(self) -> &'static str {
        match self {
            Target::Btrfs => "btrfs",
            Target::Dir => "dir",
        }
    }
}

/// The filesystem under an arena.
enum Filesystem {
    /// A loop-mounted image: btrfs or ext4.
    Loop(LoopFs),
    /// A ramfs: no user xattrs, so the dir target keeps its records in files.
    Ram(RamFs),
}

impl Filesystem {
    fn path(&self) -> &Path {
        match self {
            Filesystem::Loop(fs) => fs.path(),
            Filesystem::Ram(fs) => &fs.mountpoint,
        }
    }
}

/// A ramfs mounted on a temporary directory, unmounted on drop (also while unwinding).
struct RamFs {
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl RamFs {
    fn mount() -> Self {
        let dir = tempfile::Builder::new().prefix("rawsend-ramfs-").tempdir().expect("tempdir");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).expect("mkdir mount point");
        run(Command::new("mount").args(["-t", "ramfs", "ramfs"]).arg(&mountpoint));
        RamFs { mountpoint, _dir: dir }
    }
}

impl Drop for RamFs {
    fn drop(&mut self) {
        for lazy in [false, true] {
            let mut umount = Command::new("umount");
            if lazy {
                umount.arg("-l");
            }
            if umount.arg(&self.mountpoint).status().is_ok_and(|status| status.success()) {
                return;
            }
        }
        eprintln!("cannot unmount {}", self.mountpoint.display());
    }
}

type Attrs = Vec<(u16, Vec<u8>)>;

fn u64a(t: u16, v: u64) -> (u16, Vec<u8>) {
    (t, v.to_le_bytes().to_vec())
}

fn bytes(t: u16, v: &[u8]) -> (u16, Vec<u8>) {
    (t, v.to_vec())
}

fn time(t: u16) -> (u16, Vec<u8>) {
    let mut v = 1_000_000_000u64.to_le_bytes().to_vec();
    v.extend_from_slice(&0u32.to_le_bytes());
    (t, v)
}

/// A command frame with a correct CRC; `data` (v2 DATA) runs to the end when given.
fn frame(cmd: u16, attrs: &[(u16, Vec<u8>)], data: Option<&[u8]>) -> Vec<u8> {
    let mut payload = Vec::new();
    for (t, v) in attrs {
        payload.extend_from_slice(&t.to_le_bytes());
        payload.extend_from_slice(&u16::try_from(v.len()).expect("short attribute").to_le_bytes());
        payload.extend_from_slice(v);
    }
    if let Some(data) = data {
        payload.extend_from_slice(&A_DATA.to_le_bytes());
        payload.extend_from_slice(data);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(payload.len()).expect("small frame").to_le_bytes());
    out.extend_from_slice(&cmd.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&payload);
    let crc = command_crc(&out);
    out[6..10].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A stream being built, remembering where each command starts.
struct Stream {
    bytes: Vec<u8>,
    offsets: Vec<u64>,
}

impl Stream {
    /// Just the 17-byte header.
    fn header(version: u32) -> Self {
        let mut bytes = b"btrfs-stream\0".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        Stream { bytes, offsets: Vec::new() }
    }

    /// Header and a valid `SUBVOL "vol"`.
    fn vol(version: u32) -> Self {
        let mut s = Self::header(version);
        s.cmd(C_SUBVOL, vec![bytes(A_PATH, b"vol"), bytes(A_UUID, &VOL_UUID), u64a(A_CTRANSID, 7)]);
        s
    }

    /// Appends raw bytes as the next command; returns its index.
    fn raw(&mut self, raw: &[u8]) -> usize {
        self.offsets.push(self.bytes.len() as u64);
        self.bytes.extend_from_slice(raw);
        self.offsets.len() - 1
    }

    fn cmd(&mut self, cmd: u16, attrs: Attrs) -> usize {
        self.raw(&frame(cmd, &attrs, None))
    }

    fn cmds(&mut self, cmds: Vec<(u16, Attrs)>) -> usize {
        let mut last = 0;
        for (cmd, attrs) in cmds {
            last = self.cmd(cmd, attrs);
        }
        last
    }

    fn end(&mut self) -> usize {
        self.cmd(C_END, Vec::new())
    }
}

fn mkfile(path: &[u8]) -> (u16, Attrs) {
    (C_MKFILE, vec![bytes(A_PATH, path), u64a(A_INO, 257)])
}

fn write_v1(path: &[u8], data: &[u8]) -> (u16, Attrs) {
    (C_WRITE, vec![bytes(A_PATH, path), u64a(A_FILE_OFFSET, 0), bytes(A_DATA, data)])
}

fn symlink(path: &[u8], target: &[u8]) -> (u16, Attrs) {
    (C_SYMLINK, vec![bytes(A_PATH, path), u64a(A_INO, 300), bytes(A_PATH_LINK, target)])
}

fn clone(dest: &[u8], src: &[u8]) -> (u16, Attrs) {
    (
        C_CLONE,
        vec![
            bytes(A_PATH, dest),
            u64a(A_FILE_OFFSET, 0),
            u64a(A_CLONE_LEN, SECRET.len() as u64),
            bytes(A_CLONE_UUID, &VOL_UUID),
            u64a(A_CLONE_CTRANSID, 7),
            bytes(A_CLONE_PATH, src),
            u64a(A_CLONE_OFFSET, 0),
        ],
    )
}

/// What a path-taking command does, and which of its path attributes is hostile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Mkfile,
    Mkdir,
    Symlink,
    Write,
    Truncate,
    Chmod,
    Chown,
    Utimes,
    SetXattr,
    Unlink,
    Rmdir,
    /// Hostile PATH of RENAME (the source).
    RenameFrom,
    /// Hostile PATH_TO of RENAME.
    RenameTo,
    /// Hostile PATH of LINK (the new name).
    LinkNew,
    /// Hostile PATH_LINK of LINK (the existing file).
    LinkExisting,
    /// Hostile PATH of CLONE (the destination).
    CloneDest,
    /// Hostile CLONE_PATH of CLONE (the source).
    CloneSrc,
}

/// What the hostile path is meant to reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aim {
    /// A new name in the sentinel directory.
    Create,
    /// The sentinel file.
    File,
    /// An empty directory in the sentinel directory.
    Dir,
}

impl Op {
    fn aim(self) -> Aim {
        match self {
            Op::Mkfile | Op::Mkdir | Op::Symlink | Op::RenameTo | Op::LinkNew => Aim::Create,
            Op::Rmdir => Aim::Dir,
            _ => Aim::File,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Mkfile => "mkfile",
            Op::Mkdir => "mkdir",
            Op::Symlink => "symlink",
            Op::Write => "write",
            Op::Truncate => "truncate",
            Op::Chmod => "chmod",
            Op::Chown => "chown",
            Op::Utimes => "utimes",
            Op::SetXattr => "set_xattr",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::RenameFrom | Op::RenameTo => "rename",
            Op::LinkNew | Op::LinkExisting => "link",
            Op::CloneDest | Op::CloneSrc => "clone",
        }
    }

    /// The PATH attribute the error should name.
    fn shown_path(self, hostile: &[u8]) -> Vec<u8> {
        match self {
            Op::RenameTo | Op::CloneSrc => b"f".to_vec(),
            Op::LinkExisting => b"stolen".to_vec(),
            _ => hostile.to_vec(),
        }
    }

    /// Set-up commands, then the attack as the last one.
    fn commands(self, hostile: &[u8]) -> Vec<(u16, Attrs)> {
        let h = hostile;
        let local = || vec![mkfile(b"f"), write_v1(b"f", LOCAL)];
        let attack = match self {
            Op::Mkfile => mkfile(h),
            Op::Mkdir => (C_MKDIR, vec![bytes(A_PATH, h), u64a(A_INO, 258)]),
            Op::Symlink => symlink(h, b"whatever"),
            Op::Write => write_v1(h, b"PWNED"),
            Op::Truncate => (C_TRUNCATE, vec![bytes(A_PATH, h), u64a(A_SIZE, 0)]),
            Op::Chmod => (C_CHMOD, vec![bytes(A_PATH, h), u64a(A_MODE, 0o4777)]),
            Op::Chown => (C_CHOWN, vec![bytes(A_PATH, h), u64a(A_UID, 4242), u64a(A_GID, 4242)]),
            Op::Utimes => (C_UTIMES, vec![bytes(A_PATH, h), time(A_ATIME), time(A_MTIME), time(A_CTIME)]),
            Op::SetXattr => (
                C_SET_XATTR,
                vec![bytes(A_PATH, h), bytes(A_XATTR_NAME, b"user.pwned"), bytes(A_XATTR_DATA, b"x")],
            ),
            Op::Unlink => (C_UNLINK, vec![bytes(A_PATH, h)]),
            Op::Rmdir => (C_RMDIR, vec![bytes(A_PATH, h)]),
            Op::RenameFrom => (C_RENAME, vec![bytes(A_PATH, h), bytes(A_PATH_TO, b"stolen")]),
            Op::RenameTo => (C_RENAME, vec![bytes(A_PATH, b"f"), bytes(A_PATH_TO, h)]),
            Op::LinkNew => (C_LINK, vec![bytes(A_PATH, h), bytes(A_PATH_LINK, b"f")]),
            Op::LinkExisting => (C_LINK, vec![bytes(A_PATH, b"stolen"), bytes(A_PATH_LINK, h)]),
            Op::CloneDest => clone(h, b"f"),
            Op::CloneSrc => clone(b"f", h),
        };
        let mut cmds = match self {
            Op::RenameTo | Op::LinkNew | Op::CloneDest | Op::CloneSrc => local(),
            _ => Vec::new(),
        };
        cmds.push(attack);
        cmds
    }
}

/// Metadata of one entry, for before/after comparison.
#[derive(Debug, PartialEq, Eq)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
}

fn meta(path: &Path) -> Meta {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Meta {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        content: m.is_file().then(|| std::fs::read(path).expect("read sentinel")),
        link: m.file_type().is_symlink().then(|| std::fs::read_link(path).expect("readlink")),
    }
}

/// Every entry beneath `root` (itself included), skipping top-level names in `skip`.
fn walk(root: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, Meta>) {
    out.insert(root.to_owned(), meta(root));
    if !std::fs::symlink_metadata(root).expect("stat").is_dir() {
        return;
    }
    for entry in std::fs::read_dir(root).expect("read_dir") {
        let entry = entry.expect("dir entry");
        if skip.iter().any(|s| entry.file_name() == *s) {
            continue;
        }
        walk(&entry.path(), &[], out);
    }
}

/// A filesystem for one target, with sentinels and a destination directory.
struct Arena {
    target: Target,
    fs: Filesystem,
    /// DEST (`<mnt>/dest`).
    dest: PathBuf,
    /// The sentinel directory next to DEST, on the same filesystem.
    near: PathBuf,
    /// A sentinel directory elsewhere (a tempdir on another filesystem).
    far: tempfile::TempDir,
    /// Where the stream file goes.
    work: tempfile::TempDir,
    before: BTreeMap<PathBuf, Meta>,
    /// Names outside everything that an escape could create: must not appear.
    watch: Vec<(PathBuf, bool)>,
}

fn make_sentinel_dir(dir: &Path) {
    std::fs::create_dir_all(dir.join("empty")).expect("mkdir sentinel");
    std::fs::write(dir.join("secret"), SECRET).expect("write sentinel");
    std::fs::set_permissions(dir.join("secret"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
}

impl Arena {
    fn new(target: Target) -> Self {
        require_root();
        Self::on(target, target.filesystem())
    }

    /// The dir target on a ramfs, where it keeps its records in files (no user xattrs).
    fn without_xattrs(target: Target) -> Self {
        assert_eq!(target, Target::Dir, "only the dir target receives into a ramfs");
        require_root();
        Self::on(Target::Dir, Filesystem::Ram(RamFs::mount()))
    }

    fn on(target: Target, fs: Filesystem) -> Self {
        let near = fs.path().join("sentinel");
        make_sentinel_dir(&near);
        let far = tempfile::Builder::new().prefix("rawsend-hostile-far-").tempdir().expect("tempdir");
        make_sentinel_dir(far.path());
        let work = tempfile::tempdir().expect("tempdir");
        let dest = fs.path().join("dest");
        std::fs::create_dir(&dest).expect("mkdir dest");
        let mnt_parent = fs.path().parent().expect("mount point has a parent").to_owned();
        let watch: Vec<PathBuf> = ["pwned", "stolen", "escaped"]
            .iter()
            .flat_map(|n| [mnt_parent.join(n), Path::new("/tmp").join(n), Path::new("/").join(n)])
            .collect();
        let watch = watch.into_iter().map(|p| (p.clone(), p.symlink_metadata().is_ok())).collect();
        let mut arena = Arena { target, fs, dest, near, far, work, before: BTreeMap::new(), watch };
        arena.before = arena.outside();
        arena
    }

    fn mnt(&self) -> &Path {
        self.fs.path()
    }

    /// Everything outside DEST that the receive must not touch.
    fn outside(&self) -> BTreeMap<PathBuf, Meta> {
        let mut out = BTreeMap::new();
        walk(self.mnt(), &["dest"], &mut out);
        walk(self.far.path(), &[], &mut out);
        out
    }

    /// Runs `rawsend receive -f STREAM DEST` with a watchdog.
    fn receive(&self, stream: &[u8], extra: &[&str]) -> (i32, String) {
        let file = self.work.path().join("stream");
        std::fs::write(&file, stream).expect("write stream");
        let err_path = self.work.path().join("stderr");
        let err = std::fs::File::create(&err_path).expect("stderr file");
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rawsend"))
            .arg("receive")
            .args(["--target", self.target.arg()])
            .args(extra)
            .arg("-f")
            .arg(&file)
            .arg(&self.dest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start rawsend");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rawsend receive did not finish within {TIMEOUT:?} (hang)");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = std::fs::read_to_string(&err_path).expect("read stderr");
        assert!(!stderr.contains("panicked"), "rawsend panicked:\n{stderr}");
        let code =
            status.code().unwrap_or_else(|| panic!("rawsend killed by a signal: {status:?}\n{stderr}"));
        (code, stderr)
    }

    /// Sentinels unchanged, nothing new outside DEST.
    fn assert_outside_untouched(&self) {
        let after = self.outside();
        for (path, before) in &self.before {
            let now = after.get(path);
            assert_eq!(now, Some(before), "{} changed or vanished", path.display());
        }
        for path in after.keys() {
            assert!(self.before.contains_key(path), "new entry outside DEST: {}", path.display());
        }
        for (path, existed) in &self.watch {
            if !existed {
                assert!(path.symlink_metadata().is_err(), "escape created {}", path.display());
            }
        }
    }

    /// `DEST/name`, if it exists, is not marked received.
    fn assert_not_received(&self, name: &str) {
        match self.target {
            Target::Btrfs => self.assert_not_received_btrfs(name),
            Target::Dir => self.assert_not_received_dir(name),
        }
    }

    /// No received UUID, not read-only.
    fn assert_not_received_btrfs(&self, name: &str) {
        let path = self.dest.join(name);
        if path.symlink_metadata().is_err() {
            return;
        }
        let out = Command::new("btrfs").args(["subvolume", "show"]).arg(&path).output().expect("btrfs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{} is not a subvolume: {text}", path.display());
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        };
        assert_eq!(field("Received UUID:"), "-", "{} marked received:\n{text}", path.display());
        assert!(!field("Flags:").contains("readonly"), "{} is read-only:\n{text}", path.display());
    }

    /// No marker xattr on the directory, no record in the marker store.
    fn assert_not_received_dir(&self, name: &str) {
        let record = self.dest.join(MARKER_RECORDS).join(name);
        assert!(record.symlink_metadata().is_err(), "{} marked received by {}", name, record.display());
        let path = self.dest.join(name);
        let Ok(meta) = path.symlink_metadata() else {
            return;
        };
        assert!(meta.is_dir(), "{} is not a directory: {meta:?}", path.display());
        let root = TreeSnapshot::capture(&path).entries.remove(&b"."[..]).expect("the root entry");
        let marker = root.xattrs.get(MARKER_XATTR.as_bytes());
        assert!(
            marker.is_none(),
            "{} marked received: {MARKER_XATTR}={:?}",
            path.display(),
            marker.map(|m| String::from_utf8_lossy(m).into_owned())
        );
    }

    /// Absolute path of the near sentinel directory (or something in it).
    fn near(&self, name: &str) -> Vec<u8> {
        self.near.join(name).into_os_string().into_encoded_bytes()
    }
}

/// Where the error must point.
struct Expect<'a> {
    /// Command index (None: the stream header).
    index: Option<usize>,
    /// Command name, when the command number was read.
    name: Option<&'a str>,
    /// The PATH attribute, when the command had one.
    path: Option<&'a [u8]>,
    /// Part of the error message.
    message: &'a str,
}

fn assert_error(stream: &Stream, stderr: &str, want: &Expect<'_>) {
    match want.index {
        Some(i) => {
            let at = format!("command #{i}");
            assert!(stderr.contains(&at), "stderr lacks {at:?}:\n{stderr}");
            let at = format!("at byte {}", stream.offsets[i]);
            assert!(stderr.contains(&at), "stderr lacks {at:?}:\n{stderr}");
        }
        None => {
            assert!(stderr.contains("stream header at byte 0"), "stderr lacks the header location:\n{stderr}")
        }
    }
    if let Some(name) = want.name {
        let name = format!("({name})");
        assert!(stderr.contains(&name), "stderr lacks {name:?}:\n{stderr}");
    }
    if let Some(path) = want.path {
        let path = format!("path {:?}", String::from_utf8_lossy(path));
        assert!(stderr.contains(&path), "stderr lacks {path}:\n{stderr}");
    }
    assert!(stderr.contains(want.message), "stderr lacks {:?}:\n{stderr}", want.message);
}

/// Receives `stream`, expecting failure at `want`, with nothing outside DEST touched and `vol` not received.
fn expect_rejected(arena: &Arena, stream: &Stream, extra: &[&str], want: &Expect<'_>) {
    expect_rejected_subvol(arena, stream, extra, want, "vol");
}

/// [`expect_rejected`] for a stream whose subvolume is `DEST/subvol`.
fn expect_rejected_subvol(arena: &Arena, stream: &Stream, extra: &[&str], want: &Expect<'_>, subvol: &str) {
    let (code, stderr) = arena.receive(&stream.bytes, extra);
    eprintln!("rawsend receive: exit {code}: {}", stderr.trim_end());
    assert_eq!(code, 1, "expected exit status 1, stderr:\n{stderr}");
    assert_error(stream, &stderr, want);
    arena.assert_outside_untouched();
    arena.assert_not_received(subvol);
}

/// Receives a valid `stream`, expecting success with nothing outside DEST touched.
fn expect_received(arena: &Arena, stream: &Stream) {
    let (code, stderr) = arena.receive(&stream.bytes, &[]);
    eprintln!("rawsend receive: exit {code}: {}", stderr.trim_end());
    assert_eq!(code, 0, "a valid stream failed:\n{stderr}");
    arena.assert_outside_untouched();
}

// ---------------------------------------------------------------------------
// `..` and absolute paths in every path attribute.

#[derive(Clone, Copy)]
enum Escape {
    DotDot,
    Absolute,
}

fn escaping_path(arena: &Arena, op: Op, escape: Escape) -> Vec<u8> {
    let name = match op.aim() {
        Aim::Create => "pwned",
        Aim::File => "secret",
        Aim::Dir => "empty",
    };
    match escape {
        // DEST/vol/../../sentinel is <mnt>/sentinel.
        Escape::DotDot => format!("../../sentinel/{name}").into_bytes(),
        Escape::Absolute => arena.near(name),
    }
}

fn path_attack(target: Target, op: Op, escape: Escape) {
    let arena = Arena::new(target);
    let hostile = escaping_path(&arena, op, escape);
    let mut stream = Stream::vol(1);
    let index = stream.cmds(op.commands(&hostile));
    stream.end();
    let shown = op.shown_path(&hostile);
    let message = match escape {
        Escape::DotDot => "invalid ",
        Escape::Absolute => "invalid ",
    };
    expect_rejected(
        &arena,
        &stream,
        &[],
        &Expect { index: Some(index), name: Some(op.name()), path: Some(&shown), message },
    );
}

/// A `..` hidden in the middle of an otherwise plausible path.
fn dotdot_in_the_middle_of_mkfile_path(target: Target) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(1);
    stream.cmd(C_MKDIR, vec![bytes(A_PATH, b"d"), u64a(A_INO, 258)]);
    let path = b"d/../../../sentinel/pwned";
    let index = stream.cmds(vec![mkfile(path)]);
    stream.end();
    expect_rejected(
        &arena,
        &stream,
        &[],
        &Expect { index: Some(index), name: Some("mkfile"), path: Some(path), message: "invalid path" },
    );
}

fn subvol_name_attack(target: Target, cmd: u16, name: &[u8]) {
    let arena = Arena::new(target);
    let mut stream = Stream::header(1);
    let command = match cmd {
        C_SNAPSHOT => snapshot(name, [7; 16], 1),
        _ => (cmd, vec![bytes(A_PATH, name), bytes(A_UUID, &VOL_UUID), u64a(A_CTRANSID, 7)]),
    };
    let index = stream.cmds(vec![command]);
    stream.end();
    let kind = if cmd == C_SNAPSHOT { "snapshot" } else { "subvol" };
    expect_rejected(
        &arena,
        &stream,
        &[],
        &Expect { index: Some(index), name: Some(kind), path: Some(name), message: "invalid" },
    );
    let left: Vec<_> = std::fs::read_dir(&arena.dest).expect("read dest").collect();
    assert!(left.is_empty(), "a subvolume was created in DEST: {left:?}");
}

fn subvol_name_with_slash(target: Target) {
    subvol_name_attack(target, C_SUBVOL, b"a/b");
}

fn subvol_name_dotdot(target: Target) {
    subvol_name_attack(target, C_SUBVOL, b"..");
}

fn subvol_name_dotdot_escape(target: Target) {
    subvol_name_attack(target, C_SUBVOL, b"../sentinel/pwned");
}

fn subvol_name_absolute(target: Target) {
    subvol_name_attack(target, C_SUBVOL, b"/tmp/pwned");
}

/// The empty name is the root path: it would make DEST itself the subvolume.
fn subvol_name_empty(target: Target) {
    subvol_name_attack(target, C_SUBVOL, b"");
}

fn snapshot_name_with_slash(target: Target) {
    subvol_name_attack(target, C_SNAPSHOT, b"a/b");
}

fn snapshot_name_dotdot(target: Target) {
    subvol_name_attack(target, C_SNAPSHOT, b"..");
}

fn snapshot_name_dotdot_escape(target: Target) {
    subvol_name_attack(target, C_SNAPSHOT, b"../sentinel/pwned");
}

fn snapshot_name_absolute(target: Target) {
    subvol_name_attack(target, C_SNAPSHOT, b"/tmp/pwned");
}

fn snapshot_name_empty(target: Target) {
    subvol_name_attack(target, C_SNAPSHOT, b"");
}

// ---------------------------------------------------------------------------
// SNAPSHOT parents: only a complete, unchanged subvolume received into DEST
// may serve, and making the snapshot never follows the parent's symlinks.

/// The UUID of the snapshot the incremental streams below send.
const SNAP_UUID: [u8; 16] = *b"rawsend-snapshot";

/// `SNAPSHOT name` of the parent (`parent`, `parent_ctransid`).
fn snapshot(name: &[u8], parent: [u8; 16], parent_ctransid: u64) -> (u16, Attrs) {
    (
        C_SNAPSHOT,
        vec![
            bytes(A_PATH, name),
            bytes(A_UUID, &SNAP_UUID),
            u64a(A_CTRANSID, 9),
            bytes(A_CLONE_UUID, &parent),
            u64a(A_CLONE_CTRANSID, parent_ctransid),
        ],
    )
}

/// An incremental stream `SNAPSHOT snap` of the parent, then a harmless file.
fn snapshot_stream(parent: [u8; 16], parent_ctransid: u64) -> (Stream, usize) {
    let mut stream = Stream::header(1);
    let index = stream.cmds(vec![snapshot(b"snap", parent, parent_ctransid)]);
    stream.cmds(vec![mkfile(b"new"), write_v1(b"new", LOCAL)]);
    stream.end();
    (stream, index)
}

/// Receives `snapshot_stream(parent, parent_ctransid)`, expecting it refused at the SNAPSHOT.
fn expect_snapshot_refused(arena: &Arena, parent: [u8; 16], parent_ctransid: u64) {
    let (stream, index) = snapshot_stream(parent, parent_ctransid);
    let want = Expect { index: Some(index), name: Some("snapshot"), path: Some(b"snap"), message: "" };
    expect_rejected_subvol(arena, &stream, &[], &want, "snap");
}

/// The parent is nowhere on the destination.
fn snapshot_parent_missing(target: Target) {
    let arena = Arena::new(target);
    expect_snapshot_refused(&arena, [7; 16], 1);
}

/// A subvolume whose receive failed halfway is no parent.
fn snapshot_parent_incomplete(target: Target) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(1);
    stream.cmds(vec![mkfile(b"f"), write_v1(b"f", LOCAL)]);
    let index = stream.cmds(vec![write_v1(b"missing", b"x")]);
    stream.end();
    let want = Expect { index: Some(index), name: Some("write"), path: Some(b"missing"), message: "" };
    expect_rejected(&arena, &stream, &[], &want);
    expect_snapshot_refused(&arena, VOL_UUID, 7);
}

/// The parent was received at another transid than the stream names. btrfs-progs
/// receives it: the kernel sends a parent's own ctransid, so a stream sent from a
/// received copy (A to B, then B to C: fstests btrfs/110) names B's transid, which
/// C cannot know. rawsend receives it too and says so with `-v`; nothing outside
/// DEST is touched.
fn snapshot_parent_transid_differs(target: Target) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(1);
    stream.cmds(vec![mkfile(b"f"), write_v1(b"f", LOCAL)]);
    stream.end();
    expect_received(&arena, &stream);
    let (snapshot, _) = snapshot_stream(VOL_UUID, 8);
    let (code, stderr) = arena.receive(&snapshot.bytes, &["-v"]);
    eprintln!("rawsend receive: exit {code}: {}", stderr.trim_end());
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("has transid 7 where the stream names 8"), "{stderr}");
    arena.assert_outside_untouched();
    assert!(arena.dest.join("snap/new").is_file(), "the snapshot was not received");
}

/// The parent holds symlinks to the sentinels; the snapshot must hold the
/// same symlinks (not copies of what they point at), and writing through them
/// in the incremental stream must fail.
fn snapshot_parent_with_escaping_symlinks(target: Target) {
    let arena = Arena::new(target);
    let links: Vec<(&[u8], Vec<u8>)> = vec![
        (b"near-dir", link_target(&arena, LinkTo::AbsNearDir)),
        (b"far-dir", link_target(&arena, LinkTo::AbsFarDir)),
        (b"rel-dir", link_target(&arena, LinkTo::RelNearDir)),
        (b"near-file", link_target(&arena, LinkTo::AbsNearFile)),
        (b"far-file", link_target(&arena, LinkTo::AbsFarFile)),
        (b"rel-file", link_target(&arena, LinkTo::RelNearFile)),
    ];
    let mut stream = Stream::vol(1);
    stream.cmds(links.iter().map(|(name, to)| symlink(name, to)).collect());
    stream.end();
    expect_received(&arena, &stream);
    let mut stream = Stream::header(1);
    let index = stream.cmds(vec![snapshot(b"snap", VOL_UUID, 7), write_v1(b"far-file", b"PWNED")]);
    stream.end();
    let want = Expect { index: Some(index), name: Some("write"), path: Some(b"far-file"), message: "" };
    expect_rejected_subvol(&arena, &stream, &[], &want, "snap");
    for (name, to) in &links {
        let copy = arena.dest.join("snap").join(std::str::from_utf8(name).expect("ascii"));
        let meta = copy.symlink_metadata().unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
        assert!(meta.file_type().is_symlink(), "{} is not a symlink: {meta:?}", copy.display());
        let read = std::fs::read_link(&copy).expect("readlink");
        assert_eq!(read.as_os_str().as_encoded_bytes(), &to[..], "{}", copy.display());
    }
}

// ---------------------------------------------------------------------------
// Symlinks planted by the stream, then used as a path component or as the
// final component.

/// Where a planted symlink points.
#[derive(Clone, Copy, Debug)]
enum LinkTo {
    /// Absolute path of the sentinel directory next to DEST.
    AbsNearDir,
    /// Absolute path of the sentinel directory on another filesystem.
    AbsFarDir,
    /// `../../sentinel`: the sentinel directory next to DEST, relative.
    RelNearDir,
    /// `../../../../../../../../../..<far>`: a long `..` chain to the far sentinel.
    RelFarDir,
    /// Absolute path of the sentinel file next to DEST.
    AbsNearFile,
    /// Absolute path of the far sentinel file.
    AbsFarFile,
    /// `../../sentinel/secret`.
    RelNearFile,
}

const DIR_LINKS: [LinkTo; 4] = [LinkTo::AbsNearDir, LinkTo::AbsFarDir, LinkTo::RelNearDir, LinkTo::RelFarDir];
const FILE_LINKS: [LinkTo; 3] = [LinkTo::AbsNearFile, LinkTo::AbsFarFile, LinkTo::RelNearFile];

fn link_target(arena: &Arena, to: LinkTo) -> Vec<u8> {
    let far = arena.far.path().to_str().expect("utf-8 tempdir").to_owned();
    let s = match to {
        LinkTo::AbsNearDir => arena.near.to_str().expect("utf-8").to_owned(),
        LinkTo::AbsFarDir => far,
        LinkTo::RelNearDir => "../../sentinel".to_owned(),
        LinkTo::RelFarDir => format!("../../../../../../../../../..{far}"),
        LinkTo::AbsNearFile => arena.near.join("secret").to_str().expect("utf-8").to_owned(),
        LinkTo::AbsFarFile => format!("{far}/secret"),
        LinkTo::RelNearFile => "../../sentinel/secret".to_owned(),
    };
    s.into_bytes()
}

/// Plants `lnk -> <to>` then runs `op` on a path through it (`lnk/...`) or on `lnk` itself.
fn symlink_attack(target: Target, op: Op, to: LinkTo, through: bool) {
    // Linux allows no user.* xattrs on symlinks (EPERM). The dir target skips
    // what the destination refuses that way, with a warning: check that the
    // skip leaves the link and the sentinel alone, then that `--strict` fails
    // like the btrfs target.
    let skipped = target == Target::Dir && op == Op::SetXattr && !through;
    if skipped {
        let (arena, code, stderr) = on_link(target, op, to);
        assert_eq!(code, 0, "the dir target skips a refused xattr:\n{stderr}");
        assert!(stderr.contains("warning: skipped 1 user.* xattrs"), "no warning:\n{stderr}");
        let link = arena.dest.join("vol/lnk");
        assert!(std::fs::symlink_metadata(&link).expect("lnk").file_type().is_symlink());
    }
    let extra: &[&str] = if skipped { &["--strict"] } else { &[] };
    let arena = Arena::new(target);
    let hostile: Vec<u8> = if through {
        match op.aim() {
            Aim::Create => b"lnk/pwned".to_vec(),
            Aim::File => b"lnk/secret".to_vec(),
            Aim::Dir => b"lnk/empty".to_vec(),
        }
    } else {
        b"lnk".to_vec()
    };
    let mut stream = Stream::vol(1);
    stream.cmds(vec![symlink(b"lnk", &link_target(&arena, to))]);
    let index = stream.cmds(op.commands(&hostile));
    stream.end();
    let shown = op.shown_path(&hostile);
    // Through the link, the parent is resolved with RESOLVE_NO_SYMLINKS and
    // O_DIRECTORY, so the link is "not a directory". On the link itself the
    // reason depends on the command (EEXIST, not a regular file, no chmod on
    // symlinks, EPERM for user xattrs on symlinks): the location is what matters.
    let message = if through { "open directory: Not a directory" } else { "" };
    let want = Expect { index: Some(index), name: Some(op.name()), path: Some(&shown), message };
    expect_rejected(&arena, &stream, extra, &want);
}

fn through_symlinked_dir(target: Target, op: Op) {
    for to in DIR_LINKS {
        eprintln!("{op:?} through lnk -> {to:?}");
        symlink_attack(target, op, to, true);
    }
}

fn onto_symlinked_file(target: Target, op: Op) {
    for to in FILE_LINKS {
        eprintln!("{op:?} on lnk -> {to:?}");
        symlink_attack(target, op, to, false);
    }
}

// ---------------------------------------------------------------------------
// Malformed input.

/// A stream whose header is bad: nothing may be created at all.
fn header_attack(target: Target, bytes: &[u8], message: &str) {
    let arena = Arena::new(target);
    let stream = Stream { bytes: bytes.to_vec(), offsets: Vec::new() };
    expect_rejected(&arena, &stream, &[], &Expect { index: None, name: None, path: None, message });
    let left: Vec<_> = std::fs::read_dir(&arena.dest).expect("read dest").collect();
    assert!(left.is_empty(), "something was created in DEST: {left:?}");
}

fn malformed_bad_magic(target: Target) {
    let mut bytes = Stream::vol(1).bytes;
    bytes[0] = b'B';
    header_attack(target, &bytes, "bad magic");
}

fn malformed_unknown_version(target: Target) {
    let mut s = Stream::header(4);
    s.cmd(C_SUBVOL, vec![bytes(A_PATH, b"vol"), bytes(A_UUID, &VOL_UUID), u64a(A_CTRANSID, 7)]);
    header_attack(target, &s.bytes, "unsupported stream version 4");
}

fn malformed_truncated_stream_header(target: Target) {
    header_attack(target, &Stream::header(1).bytes[..10], "truncated inside the stream header");
}

/// Receives a valid `SUBVOL vol` + `MKFILE f` followed by `bad`, expecting a failure at `bad`.
fn frame_attack(
    target: Target,
    version: u32,
    bad: &[u8],
    name: Option<&str>,
    path: Option<&[u8]>,
    message: &str,
) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(version);
    stream.cmds(vec![mkfile(b"f")]);
    let index = stream.raw(bad);
    expect_rejected(&arena, &stream, &[], &Expect { index: Some(index), name, path, message });
}

fn malformed_truncated_command_header(target: Target) {
    let bad = frame(C_MKFILE, &[bytes(A_PATH, b"g"), u64a(A_INO, 258)], None);
    frame_attack(target, 1, &bad[..6], None, None, "truncated");
}

fn malformed_truncated_command_body(target: Target) {
    let bad = frame(C_MKFILE, &[bytes(A_PATH, b"g"), u64a(A_INO, 258)], None);
    frame_attack(target, 1, &bad[..bad.len() - 3], Some("mkfile"), None, "truncated");
}

fn malformed_crc_mismatch(target: Target) {
    let mut bad = frame(C_MKFILE, &[bytes(A_PATH, b"g"), u64a(A_INO, 258)], None);
    bad[6] ^= 0xff;
    frame_attack(target, 1, &bad, Some("mkfile"), Some(b"g"), "crc32c mismatch");
}

fn malformed_huge_length(target: Target) {
    let mut bad = frame(C_MKFILE, &[bytes(A_PATH, b"g"), u64a(A_INO, 258)], None);
    bad[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    frame_attack(target, 2, &bad, Some("mkfile"), None, "exceeds");
}

fn malformed_attribute_overrun(target: Target) {
    let mut bad = frame(C_MKFILE, &[u64a(A_INO, 258), bytes(A_PATH, b"g")], None);
    // The PATH TLV's length (the last TLV: type, len, 1 byte) claims 200 bytes.
    let at = bad.len() - 3;
    bad[at..at + 2].copy_from_slice(&200u16.to_le_bytes());
    bad[6..10].fill(0);
    let crc = command_crc(&bad);
    bad[6..10].copy_from_slice(&crc.to_le_bytes());
    frame_attack(target, 1, &bad, Some("mkfile"), None, "runs past the end of the command");
}

/// btrfs-progs silently skips unknown command numbers (PROTOCOL.md §1.4); rawsend refuses them.
fn malformed_unknown_command(target: Target) {
    let bad = frame(99, &[bytes(A_PATH, b"g")], None);
    frame_attack(target, 1, &bad, Some("command 99"), Some(b"g"), "unknown command 99");
}

fn malformed_missing_required_attribute(target: Target) {
    let bad = frame(C_WRITE, &[bytes(A_PATH, b"f"), u64a(A_FILE_OFFSET, 0)], None);
    frame_attack(target, 1, &bad, Some("write"), Some(b"f"), "missing attribute data");
}

fn malformed_missing_path(target: Target) {
    let bad = frame(C_TRUNCATE, &[u64a(A_SIZE, 0)], None);
    frame_attack(target, 1, &bad, Some("truncate"), None, "missing attribute path");
}

fn malformed_wrong_attribute_size(target: Target) {
    let bad = frame(C_TRUNCATE, &[bytes(A_PATH, b"f"), (A_SIZE, 4u32.to_le_bytes().to_vec())], None);
    frame_attack(target, 1, &bad, Some("truncate"), Some(b"f"), "attribute size has 4 bytes, expected 8");
}

/// An ENCODED_WRITE of `data` into `f` (v2 stream).
fn encoded(
    file_len: u64,
    unencoded_len: u64,
    unencoded_offset: u64,
    compression: u32,
    data: &[u8],
) -> Vec<u8> {
    frame(
        C_ENCODED_WRITE,
        &[
            bytes(A_PATH, b"f"),
            u64a(A_FILE_OFFSET, 0),
            u64a(A_UNENCODED_FILE_LEN, file_len),
            u64a(A_UNENCODED_LEN, unencoded_len),
            u64a(A_UNENCODED_OFFSET, unencoded_offset),
            (A_COMPRESSION, compression.to_le_bytes().to_vec()),
        ],
        Some(data),
    )
}

fn encoded_attack(target: Target, bad: &[u8], extra: &[&str], message: &str) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(2);
    stream.cmds(vec![mkfile(b"f")]);
    let index = stream.raw(bad);
    stream.end();
    let want = Expect { index: Some(index), name: Some("encoded_write"), path: Some(b"f"), message };
    expect_rejected(&arena, &stream, extra, &want);
}

/// Garbage that no decoder accepts: not a zlib header, not a zstd frame, not a btrfs lzo segment.
fn garbage() -> Vec<u8> {
    (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect()
}

fn encoded_offset_plus_len_exceeds_unencoded_len(target: Target) {
    encoded_attack(
        target,
        &encoded(8192, 8192, 4096, 2, &garbage()),
        &[],
        "unencoded offset + length exceed",
    );
}

fn encoded_unencoded_len_above_128k(target: Target) {
    encoded_attack(
        target,
        &encoded(4096, 256 * 1024, 0, 2, &garbage()),
        &[],
        "unencoded length above 128 KiB",
    );
}

fn encoded_empty_data(target: Target) {
    encoded_attack(target, &encoded(4096, 4096, 0, 2, &[]), &[], "no encoded data");
}

/// Encoded data is test-decoded by default (on a worker thread), so garbage is refused.
fn encoded_garbage_refused(target: Target, compression: u32, extra: &[&str]) {
    encoded_attack(target, &encoded(8192, 8192, 0, compression, &garbage()), extra, "encoded data");
}

/// Garbage compressed data followed by more files: the receive fails naming the extent,
/// and the same stream run again does not skip it and complete the subvolume (the
/// progress noted before each later create is past the extent, whose verdict came
/// after them).
fn encoded_garbage_then_a_rerun_never_completes(target: Target) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(2);
    stream.cmds(vec![mkfile(b"f")]);
    let index = stream.raw(&encoded(8192, 8192, 0, 2, &garbage()));
    stream.cmds((0..50).map(|i| mkfile(format!("g{i}").as_bytes())).collect());
    stream.end();
    let want =
        Expect { index: Some(index), name: Some("encoded_write"), path: Some(b"f"), message: "encoded data" };
    let (code, stderr) = arena.receive(&stream.bytes, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_error(&stream, &stderr, &want);
    // On btrfs the extent is written and its verdict comes later: the subvolume is then
    // not resumable. The dir target decodes it first, and fails at it: a re-run replays it.
    if target == Target::Btrfs {
        assert!(!stderr.contains("resume state is saved"), "a corrupt extent is not resumable:\n{stderr}");
    }
    let (code, stderr) = arena.receive(&stream.bytes, &[]);
    eprintln!("rawsend receive again: exit {code}: {}", stderr.trim_end());
    assert_ne!(code, 0, "the same stream again must not complete it:\n{stderr}");
    if target == Target::Btrfs {
        assert!(stderr.contains("failed in a way that cannot be resumed"), "says why:\n{stderr}");
    }
    arena.assert_outside_untouched();
    arena.assert_not_received("vol");
}

/// With `--no-verify-encoded`, garbage compressed data is passed through to
/// btrfs as btrfs-progs would (the kernel does not validate encoded data): the
/// receive succeeds (the stream is well-formed), and the damage stays inside the
/// received file: reading it fails with EIO. The dir target has to decode every
/// extent, so there it is refused all the same. Nothing outside DEST is
/// touched either way.
fn garbage_passthrough(target: Target, compression: u32) {
    let bad = encoded(8192, 8192, 0, compression, &garbage());
    if target == Target::Dir {
        encoded_attack(target, &bad, &["--no-verify-encoded"], "encoded data");
        return;
    }
    let arena = Arena::new(target);
    let mut stream = Stream::vol(2);
    stream.cmds(vec![mkfile(b"f")]);
    stream.raw(&bad);
    stream.end();
    let (code, stderr) = arena.receive(&stream.bytes, &["--no-verify-encoded"]);
    eprintln!("rawsend receive: exit {code}: {}", stderr.trim_end());
    arena.assert_outside_untouched();
    assert_eq!(code, 0, "garbage passes through with --no-verify-encoded: {stderr}");
    let err = std::fs::read(arena.dest.join("vol/f")).expect_err("garbage must not decode");
    assert_eq!(err.raw_os_error(), Some(EIO), "{err}");
}

/// `EIO` on Linux.
const EIO: i32 = 5;

// ---------------------------------------------------------------------------
// Operations that are legitimate on a symlink itself: the kernel sends CHOWN
// and UTIMES for symlinks, and UNLINK/RENAME/LINK of a symlink move the link,
// not its target. The secure behaviour is to act on the link (no-follow) and
// succeed; the sentinel the link points at must stay untouched.

/// Receives `lnk -> <to>` then `op` on `lnk` itself, checking that nothing outside DEST changed.
fn on_link(target: Target, op: Op, to: LinkTo) -> (Arena, i32, String) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(1);
    stream.cmds(vec![symlink(b"lnk", &link_target(&arena, to))]);
    stream.cmds(op.commands(b"lnk"));
    stream.end();
    let (code, stderr) = arena.receive(&stream.bytes, &[]);
    eprintln!("{op:?} on lnk -> {to:?}: exit {code}: {}", stderr.trim_end());
    arena.assert_outside_untouched();
    (arena, code, stderr)
}

fn on_link_itself(target: Target, op: Op, check: impl Fn(&Path)) {
    for to in FILE_LINKS {
        let (arena, code, stderr) = on_link(target, op, to);
        assert_eq!(code, 0, "{stderr}");
        check(&arena.dest.join("vol"));
    }
}

fn symlink_final_chown_changes_the_link_only(target: Target) {
    on_link_itself(target, Op::Chown, |vol| {
        let m = std::fs::symlink_metadata(vol.join("lnk")).expect("lnk");
        assert!(m.file_type().is_symlink());
        assert_eq!((m.uid(), m.gid()), (4242, 4242));
    });
}

fn symlink_final_utimes_changes_the_link_only(target: Target) {
    on_link_itself(target, Op::Utimes, |vol| {
        let m = std::fs::symlink_metadata(vol.join("lnk")).expect("lnk");
        assert!(m.file_type().is_symlink());
        assert_eq!(m.mtime(), 1_000_000_000);
    });
}

fn symlink_final_unlink_removes_the_link_only(target: Target) {
    on_link_itself(target, Op::Unlink, |vol| {
        assert!(vol.join("lnk").symlink_metadata().is_err(), "lnk still there");
    });
}

fn symlink_final_rename_moves_the_link_only(target: Target) {
    on_link_itself(target, Op::RenameFrom, |vol| {
        assert!(vol.join("lnk").symlink_metadata().is_err(), "lnk still there");
        assert!(std::fs::symlink_metadata(vol.join("stolen")).expect("stolen").file_type().is_symlink());
    });
}

fn symlink_final_link_links_the_link_only(target: Target) {
    on_link_itself(target, Op::LinkExisting, |vol| {
        let m = std::fs::symlink_metadata(vol.join("stolen")).expect("stolen");
        assert!(m.file_type().is_symlink());
        assert_eq!(m.nlink(), 2);
    });
}

// ---------------------------------------------------------------------------
// Controls: the checks above can fail.

/// A valid stream is received and marked; the not-received check would catch it.
fn control_valid_stream_is_received(target: Target) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(1);
    stream.cmds(vec![mkfile(b"f"), write_v1(b"f", LOCAL)]);
    stream.end();
    let (code, stderr) = arena.receive(&stream.bytes, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read(arena.dest.join("vol/f")).expect("read f"), LOCAL);
    arena.assert_outside_untouched();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| arena.assert_not_received("vol")));
    assert!(caught.is_err(), "assert_not_received did not notice a received subvolume");
}

/// Touching a sentinel's mode, xattrs or content, or adding an entry, is noticed.
fn control_sentinel_changes_are_detected(target: Target) {
    type Change = fn(&Arena);
    let changes: [(&str, Change); 5] = [
        ("chmod", |a| {
            std::fs::set_permissions(a.near.join("secret"), std::fs::Permissions::from_mode(0o777))
                .expect("chmod")
        }),
        ("xattr", |a| {
            let out = Command::new("setfattr")
                .args(["-n", "user.x", "-v", "1"])
                .arg(a.far.path().join("secret"))
                .status();
            if !out.is_ok_and(|s| s.success()) {
                // No setfattr: a hard link changes ctime and nlink just the same.
                std::fs::hard_link(a.far.path().join("secret"), a.work.path().join("h")).expect("link");
            }
        }),
        ("content", |a| std::fs::write(a.near.join("secret"), b"changed").expect("write")),
        ("new entry", |a| std::fs::write(a.mnt().join("pwned"), b"").expect("create")),
        ("new far entry", |a| std::fs::create_dir(a.far.path().join("empty/pwned")).expect("mkdir")),
    ];
    for (what, change) in changes {
        let arena = Arena::new(target);
        change(&arena);
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| arena.assert_outside_untouched()));
        assert!(caught.is_err(), "{what} was not detected");
    }
}

/// For contrast (PROTOCOL.md §5.7): `btrfs receive` without `--chroot` follows
/// `..` in MKFILE and creates the file outside the destination (btrfs only:
/// `btrfs receive` cannot write elsewhere).
fn contrast_btrfs_progs_receive_escapes_with_dotdot(target: Target) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(1);
    stream.cmds(vec![mkfile(b"../../progs-escaped")]);
    stream.end();
    let file = arena.work.path().join("progs-stream");
    std::fs::write(&file, &stream.bytes).expect("write stream");
    let out =
        Command::new("btrfs").args(["receive", "-f"]).arg(&file).arg(&arena.dest).output().expect("btrfs");
    let escaped = arena.mnt().join("progs-escaped");
    let fooled = escaped.exists();
    let _ = std::fs::remove_file(&escaped);
    assert!(
        fooled,
        "btrfs receive did not escape (status {}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // rawsend refuses the same stream.
    let arena = Arena::new(target);
    expect_rejected(
        &arena,
        &stream,
        &[],
        &Expect {
            index: Some(1),
            name: Some("mkfile"),
            path: Some(b"../../progs-escaped"),
            message: "invalid path",
        },
    );
}

// ---------------------------------------------------------------------------
// The dir target's completion marker (`user.rawsend.received` on the
// subvolume's directory, or `DEST/.rawsend-received/NAME`) is what makes a
// directory a received subvolume, and so a SNAPSHOT parent. A stream must not
// be able to forge it.

/// The record the dir target keeps for `VOL_UUID` at ctransid 7: what a forger writes.
fn forged_record() -> Vec<u8> {
    format!("{} 7", rawsend_stream::Uuid(VOL_UUID)).into_bytes()
}

/// SET_XATTR of the marker on the subvolume root (the empty path).
fn forge_marker_xattr() -> (u16, Attrs) {
    (
        C_SET_XATTR,
        vec![
            bytes(A_PATH, b""),
            bytes(A_XATTR_NAME, MARKER_XATTR.as_bytes()),
            bytes(A_XATTR_DATA, &forged_record()),
        ],
    )
}

/// The marker forged on the root, then a failing command: the directory must
/// not end up marked, and must not serve as a SNAPSHOT parent.
fn dir_forged_marker_then_failure(target: Target) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(1);
    let forged = stream.cmds(vec![forge_marker_xattr()]);
    stream.cmds(vec![mkfile(b"f"), write_v1(b"f", LOCAL)]);
    let failing = stream.cmds(vec![write_v1(b"missing", b"x")]);
    stream.end();
    let (code, stderr) = arena.receive(&stream.bytes, &[]);
    eprintln!("rawsend receive: exit {code}: {}", stderr.trim_end());
    assert_eq!(code, 1, "expected exit status 1, stderr:\n{stderr}");
    // Refused where the marker is forged (a reserved name), or where the stream fails.
    let at = |index: usize, name: &str| {
        stderr.contains(&format!("command #{index} ({name}) at byte {}", stream.offsets[index]))
    };
    assert!(at(forged, "set_xattr") || at(failing, "write"), "error at neither command:\n{stderr}");
    arena.assert_outside_untouched();
    arena.assert_not_received("vol");
    expect_snapshot_refused(&arena, VOL_UUID, 7);
}

/// The marker forged on the root of a stream that otherwise succeeds: a
/// reserved xattr, refused (the genuine marker would overwrite the forged
/// value, but a stream has no business setting it).
fn dir_forged_marker_on_a_complete_stream(target: Target) {
    let arena = Arena::new(target);
    let mut stream = Stream::vol(1);
    let index = stream.cmds(vec![forge_marker_xattr()]);
    stream.cmds(vec![mkfile(b"f"), write_v1(b"f", LOCAL)]);
    stream.end();
    let want = Expect { index: Some(index), name: Some("set_xattr"), path: Some(b""), message: "reserved" };
    expect_rejected(&arena, &stream, &[], &want);
}

/// A stream naming its subvolume like the marker store (`SUBVOL .rawsend-received`,
/// `MKDIR records`), then `contents`: returns it and the SUBVOL's index.
fn store_stream(contents: Vec<(u16, Attrs)>) -> (Stream, usize) {
    let mut stream = Stream::header(1);
    let index = stream.cmd(
        C_SUBVOL,
        vec![bytes(A_PATH, MARKER_STORE.as_bytes()), bytes(A_UUID, &[9; 16]), u64a(A_CTRANSID, 3)],
    );
    stream.cmds(vec![(C_MKDIR, vec![bytes(A_PATH, b"records"), u64a(A_INO, 258)])]);
    stream.cmds(contents);
    stream.end();
    (stream, index)
}

/// Receives a [`store_stream`], returning its exit status and stderr for
/// [`assert_store_refused`]: the tests first check what a store planted by a
/// stream could lead to, then that it was refused in the first place.
fn receive_store(arena: &Arena, stream: &Stream) -> (i32, String) {
    let (code, stderr) = arena.receive(&stream.bytes, &[]);
    eprintln!("rawsend receive: exit {code}: {}", stderr.trim_end());
    arena.assert_outside_untouched();
    (code, stderr)
}

/// The dir target must refuse a subvolume named like its marker store.
fn assert_store_refused(stream: &Stream, index: usize, (code, stderr): (i32, String)) {
    assert_eq!(code, 1, "a subvolume named {MARKER_STORE} was accepted:\n{stderr}");
    let want =
        Expect { index: Some(index), name: Some("subvol"), path: Some(MARKER_STORE.as_bytes()), message: "" };
    assert_error(stream, &stderr, &want);
}

/// A subvolume named like the marker store, holding a record for `vol` and a
/// symlink `records/lnk` to the far sentinel, must be refused. Were it
/// accepted, a failed `vol` would look received, and the record of a complete
/// `lnk` could be written through the symlink.
fn dir_subvol_named_like_the_marker_store(target: Target) {
    let arena = Arena::new(target);
    let far_secret = link_target(&arena, LinkTo::AbsFarFile);
    let (store, index) = store_stream(vec![
        mkfile(b"records/vol"),
        write_v1(b"records/vol", &forged_record()),
        symlink(b"records/lnk", &far_secret),
    ]);
    let outcome = receive_store(&arena, &store);
    let mut failing = Stream::vol(1);
    let at = failing.cmds(vec![write_v1(b"missing", b"x")]);
    failing.end();
    let want = Expect { index: Some(at), name: Some("write"), path: Some(b"missing"), message: "" };
    expect_rejected(&arena, &failing, &[], &want);
    let mut complete = Stream::header(1);
    complete.cmd(C_SUBVOL, vec![bytes(A_PATH, b"lnk"), bytes(A_UUID, &SNAP_UUID), u64a(A_CTRANSID, 5)]);
    complete.end();
    expect_received(&arena, &complete);
    assert_store_refused(&store, index, outcome);
}

/// Without user xattrs, records live in files: a stream that plants one
/// (guessing the inode number, which ramfs hands out in sequence) must not
/// make a failed receive look complete, nor let it serve as a SNAPSHOT parent.
fn dir_record_forged_without_xattrs(target: Target) {
    let arena = Arena::without_xattrs(target);
    let mut failing = Stream::vol(1);
    let at = failing.cmds(vec![mkfile(b"f"), write_v1(b"missing", b"x")]);
    failing.end();
    let want = Expect { index: Some(at), name: Some("write"), path: Some(b"missing"), message: "" };
    expect_rejected(&arena, &failing, &[], &want);
    let ino = std::fs::symlink_metadata(arena.dest.join("vol")).expect("the partial vol").ino();
    let record = [format!("{ino}\n").into_bytes(), forged_record()].concat();
    let (store, index) = store_stream(vec![mkfile(b"records/vol"), write_v1(b"records/vol", &record)]);
    let outcome = receive_store(&arena, &store);
    expect_snapshot_refused(&arena, VOL_UUID, 7);
    arena.assert_not_received("vol");
    assert_store_refused(&store, index, outcome);
}

/// Without user xattrs, a complete receive writes its record through a
/// temporary file in the store: one planted as a FIFO must not hang it.
fn dir_record_fifo_without_xattrs(target: Target) {
    let arena = Arena::without_xattrs(target);
    let fifo = (
        C_MKFIFO,
        vec![bytes(A_PATH, b"records/.tmp.vol"), u64a(A_INO, 259), u64a(A_MODE, 0o10600), u64a(A_RDEV, 0)],
    );
    let (store, index) = store_stream(vec![fifo]);
    let outcome = receive_store(&arena, &store);
    let mut complete = Stream::vol(1);
    complete.cmds(vec![mkfile(b"f"), write_v1(b"f", LOCAL)]);
    complete.end();
    expect_received(&arena, &complete);
    assert_store_refused(&store, index, outcome);
}

// ---------------------------------------------------------------------------
// One named test per attack per target: `btrfs::NAME` and `dir::NAME`.

/// Generates `mod btrfs` and `mod dir`, each with a `#[test]` per listed
/// attack calling `ATTACK(Target::..., ARGS)`; `btrfs_only` and `dir_only`
/// attacks go to one module.
macro_rules! attacks {
    (
        both { $($test:ident: $f:ident($($arg:expr),*);)* }
        btrfs_only { $($btest:ident: $bf:ident($($barg:expr),*);)* }
        dir_only { $($dtest:ident: $df:ident($($darg:expr),*);)* }
    ) => {
        /// Against `--target btrfs` on btrfs.
        mod btrfs {
            use super::*;
            $(#[test] fn $test() { super::$f(Target::Btrfs $(, $arg)*); })*
            $(#[test] fn $btest() { super::$bf(Target::Btrfs $(, $barg)*); })*
        }
        /// Against `--target dir` on ext4.
        mod dir {
            use super::*;
            $(#[test] fn $test() { super::$f(Target::Dir $(, $arg)*); })*
            $(#[test] fn $dtest() { super::$df(Target::Dir $(, $darg)*); })*
        }
    };
}

attacks! {
    both {
    dotdot_mkfile_path: path_attack(Op::Mkfile, Escape::DotDot);
    dotdot_mkdir_path: path_attack(Op::Mkdir, Escape::DotDot);
    dotdot_symlink_path: path_attack(Op::Symlink, Escape::DotDot);
    dotdot_write_path: path_attack(Op::Write, Escape::DotDot);
    dotdot_truncate_path: path_attack(Op::Truncate, Escape::DotDot);
    dotdot_chmod_path: path_attack(Op::Chmod, Escape::DotDot);
    dotdot_chown_path: path_attack(Op::Chown, Escape::DotDot);
    dotdot_utimes_path: path_attack(Op::Utimes, Escape::DotDot);
    dotdot_set_xattr_path: path_attack(Op::SetXattr, Escape::DotDot);
    dotdot_unlink_path: path_attack(Op::Unlink, Escape::DotDot);
    dotdot_rmdir_path: path_attack(Op::Rmdir, Escape::DotDot);
    dotdot_rename_path: path_attack(Op::RenameFrom, Escape::DotDot);
    dotdot_rename_path_to: path_attack(Op::RenameTo, Escape::DotDot);
    dotdot_link_path: path_attack(Op::LinkNew, Escape::DotDot);
    dotdot_link_path_link: path_attack(Op::LinkExisting, Escape::DotDot);
    dotdot_clone_path: path_attack(Op::CloneDest, Escape::DotDot);
    dotdot_clone_clone_path: path_attack(Op::CloneSrc, Escape::DotDot);
    absolute_mkfile_path: path_attack(Op::Mkfile, Escape::Absolute);
    absolute_mkdir_path: path_attack(Op::Mkdir, Escape::Absolute);
    absolute_symlink_path: path_attack(Op::Symlink, Escape::Absolute);
    absolute_write_path: path_attack(Op::Write, Escape::Absolute);
    absolute_truncate_path: path_attack(Op::Truncate, Escape::Absolute);
    absolute_chmod_path: path_attack(Op::Chmod, Escape::Absolute);
    absolute_chown_path: path_attack(Op::Chown, Escape::Absolute);
    absolute_utimes_path: path_attack(Op::Utimes, Escape::Absolute);
    absolute_set_xattr_path: path_attack(Op::SetXattr, Escape::Absolute);
    absolute_unlink_path: path_attack(Op::Unlink, Escape::Absolute);
    absolute_rmdir_path: path_attack(Op::Rmdir, Escape::Absolute);
    absolute_rename_path: path_attack(Op::RenameFrom, Escape::Absolute);
    absolute_rename_path_to: path_attack(Op::RenameTo, Escape::Absolute);
    absolute_link_path: path_attack(Op::LinkNew, Escape::Absolute);
    absolute_link_path_link: path_attack(Op::LinkExisting, Escape::Absolute);
    absolute_clone_path: path_attack(Op::CloneDest, Escape::Absolute);
    absolute_clone_clone_path: path_attack(Op::CloneSrc, Escape::Absolute);
        dotdot_in_the_middle_of_mkfile_path: dotdot_in_the_middle_of_mkfile_path();
        subvol_name_with_slash: subvol_name_with_slash();
        subvol_name_dotdot: subvol_name_dotdot();
        subvol_name_dotdot_escape: subvol_name_dotdot_escape();
        subvol_name_absolute: subvol_name_absolute();
        subvol_name_empty: subvol_name_empty();
        snapshot_name_with_slash: snapshot_name_with_slash();
        snapshot_name_dotdot: snapshot_name_dotdot();
        snapshot_name_dotdot_escape: snapshot_name_dotdot_escape();
        snapshot_name_absolute: snapshot_name_absolute();
        snapshot_name_empty: snapshot_name_empty();
        snapshot_parent_missing: snapshot_parent_missing();
        snapshot_parent_incomplete: snapshot_parent_incomplete();
        snapshot_parent_transid_differs: snapshot_parent_transid_differs();
        snapshot_parent_with_escaping_symlinks: snapshot_parent_with_escaping_symlinks();
    symlinked_dir_mkfile: through_symlinked_dir(Op::Mkfile);
    symlinked_dir_write: through_symlinked_dir(Op::Write);
    symlinked_dir_truncate: through_symlinked_dir(Op::Truncate);
    symlinked_dir_chmod: through_symlinked_dir(Op::Chmod);
    symlinked_dir_chown: through_symlinked_dir(Op::Chown);
    symlinked_dir_utimes: through_symlinked_dir(Op::Utimes);
    symlinked_dir_set_xattr: through_symlinked_dir(Op::SetXattr);
    symlinked_dir_rename_from: through_symlinked_dir(Op::RenameFrom);
    symlinked_dir_rename_to: through_symlinked_dir(Op::RenameTo);
    symlinked_dir_link_new: through_symlinked_dir(Op::LinkNew);
    symlinked_dir_link_existing: through_symlinked_dir(Op::LinkExisting);
    symlinked_dir_unlink: through_symlinked_dir(Op::Unlink);
    symlinked_dir_rmdir: through_symlinked_dir(Op::Rmdir);
    symlinked_dir_clone_dest: through_symlinked_dir(Op::CloneDest);
    symlinked_dir_clone_src: through_symlinked_dir(Op::CloneSrc);
    symlink_final_mkfile: onto_symlinked_file(Op::Mkfile);
    symlink_final_write: onto_symlinked_file(Op::Write);
    symlink_final_truncate: onto_symlinked_file(Op::Truncate);
    symlink_final_chmod: onto_symlinked_file(Op::Chmod);
    symlink_final_set_xattr: onto_symlinked_file(Op::SetXattr);
    symlink_final_clone_dest: onto_symlinked_file(Op::CloneDest);
    symlink_final_clone_src: onto_symlinked_file(Op::CloneSrc);
        malformed_bad_magic: malformed_bad_magic();
        malformed_unknown_version: malformed_unknown_version();
        malformed_truncated_stream_header: malformed_truncated_stream_header();
        malformed_truncated_command_header: malformed_truncated_command_header();
        malformed_truncated_command_body: malformed_truncated_command_body();
        malformed_crc_mismatch: malformed_crc_mismatch();
        malformed_huge_length: malformed_huge_length();
        malformed_attribute_overrun: malformed_attribute_overrun();
        malformed_unknown_command: malformed_unknown_command();
        malformed_missing_required_attribute: malformed_missing_required_attribute();
        malformed_missing_path: malformed_missing_path();
        malformed_wrong_attribute_size: malformed_wrong_attribute_size();
        encoded_offset_plus_len_exceeds_unencoded_len: encoded_offset_plus_len_exceeds_unencoded_len();
        encoded_unencoded_len_above_128k: encoded_unencoded_len_above_128k();
        encoded_empty_data: encoded_empty_data();
        encoded_garbage_zlib_refused: encoded_garbage_refused(1, &[]);
        encoded_garbage_zstd_refused: encoded_garbage_refused(2, &[]);
        encoded_garbage_lzo_refused: encoded_garbage_refused(3, &[]);
        encoded_garbage_zstd_verify_flag: encoded_garbage_refused(2, &["--verify-encoded"]);
        encoded_garbage_then_a_rerun_never_completes: encoded_garbage_then_a_rerun_never_completes();
        encoded_garbage_zlib_passthrough: garbage_passthrough(1);
        encoded_garbage_zstd_passthrough: garbage_passthrough(2);
        encoded_garbage_lzo_passthrough: garbage_passthrough(3);
        symlink_final_chown_changes_the_link_only: symlink_final_chown_changes_the_link_only();
        symlink_final_utimes_changes_the_link_only: symlink_final_utimes_changes_the_link_only();
        symlink_final_unlink_removes_the_link_only: symlink_final_unlink_removes_the_link_only();
        symlink_final_rename_moves_the_link_only: symlink_final_rename_moves_the_link_only();
        symlink_final_link_links_the_link_only: symlink_final_link_links_the_link_only();
        control_valid_stream_is_received: control_valid_stream_is_received();
        control_sentinel_changes_are_detected: control_sentinel_changes_are_detected();
    }
    btrfs_only {
        contrast_btrfs_progs_receive_escapes_with_dotdot: contrast_btrfs_progs_receive_escapes_with_dotdot();
    }
    dir_only {
        forged_marker_then_failure: dir_forged_marker_then_failure();
        forged_marker_on_a_complete_stream: dir_forged_marker_on_a_complete_stream();
        subvol_named_like_the_marker_store: dir_subvol_named_like_the_marker_store();
        record_forged_without_xattrs: dir_record_forged_without_xattrs();
        record_fifo_without_xattrs: dir_record_fifo_without_xattrs();
    }
}
