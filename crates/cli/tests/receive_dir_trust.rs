//! What the dir target promises beyond the tree itself (root: loop-mounted filesystems).
//!
//! - Set-id safety: a receive that cannot set owners (run as `nobody` through
//!   `setpriv`) never leaves a set-user-ID or set-group-ID file whose owner is
//!   not the one the stream asked for, whatever the order of CHOWN and CHMOD,
//!   also through renames, later CHMODs and SNAPSHOT parent copies; the
//!   cleared files are counted in one warning, and `--strict` fails instead.
//! - Parent drift: a received directory edited afterwards (data, a deleted
//!   symlink, a new file, a mode, a rename) is refused as a SNAPSHOT parent,
//!   naming what changed, and the new directory is not marked received.
//! - Atimes: receiving an incremental reads the parent without changing its
//!   atimes (files and directories; Linux cannot read a symlink without
//!   touching its atime), and the new directory has the atimes `btrfs
//!   receive` gives on btrfs, on an ext4 mounted `strictatime`.
//!
//! The streams are real kernel streams made in the test with `btrfs send`
//! from a loop-mounted btrfs ([`Fixture`]), except the CHOWN/CHMOD orders the
//! kernel never emits, which are built with `StreamWriter`.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rawsend_stream::{Command as StreamCommand, StreamPath, StreamWriter, Uuid};
use rawsend_testutil::tree::{CompareOptions, TreeSnapshot, diff_with};
use rawsend_testutil::{FsType, LoopFs, MIB, output_text, require_root, run};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

/// The user (and group) unprivileged receives run as.
const NOBODY: u32 = 65534;
/// The dir target's record xattr.
const RECEIVED_XATTR: &str = "user.rawsend.received";
/// Set-user-ID and set-group-ID.
const SETID: u32 = 0o6000;

/// Runs the tests of this file one at a time: a process another test forks while this one
/// writes its copy of the binary inherits the open file until it execs, and executing
/// the copy then fails with ETXTBSY.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn rawsend() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rawsend"))
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).mode() & 0o7777
}

/// A full and an incremental kernel stream of a small tree with set-id files, made with
/// `btrfs send` on a loop-mounted btrfs (kept mounted: its snapshots are the sources).
struct Fixture {
    btrfs: LoopFs,
    full: PathBuf,
    incremental: PathBuf,
}

impl Fixture {
    /// `snap1`: `plain` (0755), `setuid` (4755 root), `setgid` (2755 root), `nobody-setuid`
    /// (6755 nobody:root), a setgid directory `shared` with `shared/data`, a symlink `link`.
    /// `snap2`: `plain` made setuid (a CHMOD alone: its owner does not change) and a new
    /// `new-setuid` (4711 root).
    fn new() -> Fixture {
        let btrfs = LoopFs::btrfs(256 * MIB);
        let mnt = btrfs.path();
        let vol = mnt.join("vol");
        run(Command::new("btrfs").args(["subvolume", "create"]).arg(&vol));
        fs::create_dir(vol.join("shared")).expect("mkdir");
        for (name, mode) in
            [("plain", 0o755), ("setuid", 0o4755), ("setgid", 0o2755), ("nobody-setuid", 0o6755)]
        {
            fs::write(vol.join(name), format!("#!/bin/sh\necho {name}\n")).expect("write");
            set_mode(&vol.join(name), mode);
        }
        chown(vol.join("nobody-setuid"), Some(NOBODY), Some(0)).expect("chown");
        set_mode(&vol.join("nobody-setuid"), 0o6755);
        fs::write(vol.join("shared/data"), b"shared data\n").expect("write");
        set_mode(&vol.join("shared"), 0o2775);
        symlink("plain", vol.join("link")).expect("symlink");
        let snapshot = |name: &str| {
            run(Command::new("btrfs").args(["subvolume", "snapshot", "-r"]).arg(&vol).arg(mnt.join(name)));
        };
        snapshot("snap1");
        set_mode(&vol.join("plain"), 0o4755);
        fs::write(vol.join("new-setuid"), b"#!/bin/sh\n").expect("write");
        set_mode(&vol.join("new-setuid"), 0o4711);
        snapshot("snap2");
        let (full, incremental) = (mnt.join("full.stream"), mnt.join("incremental.stream"));
        run(Command::new("btrfs").args(["send", "-q", "-f"]).arg(&full).arg(mnt.join("snap1")));
        run(Command::new("btrfs")
            .args(["send", "-q", "-f"])
            .arg(&incremental)
            .arg("-p")
            .arg(mnt.join("snap1"))
            .arg(mnt.join("snap2")));
        Fixture { btrfs, full, incremental }
    }

    fn source(&self, snapshot: &str) -> PathBuf {
        self.btrfs.path().join(snapshot)
    }
}

/// An ext4 with a copy of the binary (a debug build is over 150 MiB), and directories
/// owned by `nobody`.
struct Nobody {
    ext4: LoopFs,
}

impl Nobody {
    fn new() -> Nobody {
        let nobody = Nobody { ext4: LoopFs::builder(FsType::Ext4, 512 * MIB).build() };
        fs::copy(env!("CARGO_BIN_EXE_rawsend"), nobody.path("rawsend")).expect("copy rawsend");
        nobody
    }

    fn path(&self, name: &str) -> PathBuf {
        self.ext4.path().join(name)
    }

    /// A new directory `name`, owned by `nobody`.
    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        fs::create_dir(&dir).expect("mkdir");
        chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
        dir
    }

    /// `rawsend receive EXTRA -f STREAM DEST` as `nobody` (the stream copied where it may read it).
    fn receive(&self, stream: &Path, dest: &Path, extra: &[&str]) -> Output {
        let copy = self.path(&format!("copy-{}", stream.file_name().expect("stream name").to_string_lossy()));
        fs::copy(stream, &copy).expect("copy stream");
        set_mode(&copy, 0o644);
        let id = NOBODY.to_string();
        Command::new("setpriv")
            .args(["--reuid", &id, "--regid", &id, "--clear-groups"])
            .arg(self.path("rawsend"))
            .arg("receive")
            .args(extra)
            .arg("-f")
            .arg(&copy)
            .arg(dest)
            .output()
            .expect("start setpriv")
    }
}

/// `rawsend receive --target dir EXTRA -f STREAM DEST` as root.
fn receive(stream: &Path, dest: &Path) -> Output {
    rawsend()
        .args(["receive", "--target", "dir", "-f"])
        .arg(stream)
        .arg(dest)
        .output()
        .expect("start rawsend")
}

fn assert_success(output: &Output) {
    assert!(output.status.success(), "{}", output_text(output));
}

/// The count in the one warning about cleared set-id bits (`None`: no such warning).
fn cleared(output: &Output) -> Option<u64> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut lines = stderr.lines().filter(|line| line.contains("set-id bits"));
    let line = lines.next()?;
    assert!(lines.next().is_none(), "one warning:\n{stderr}");
    line.split("skipped ").nth(1)?.split(' ').next()?.parse().ok()
}

/// Every node under `root` with its stat: `(path, mode, uid, gid)`.
fn nodes(root: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let mut nodes = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("list") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                pending.push(path.clone());
            }
            nodes.push((path, meta));
        }
    }
    nodes
}

/// No non-directory under `received` has a set-id bit for an owner the stream did not
/// give it (`source`: the same tree as sent, on btrfs).
fn assert_no_foreign_set_id(received: &Path, source: &Path) {
    let mut checked = 0;
    for (path, meta) in nodes(received) {
        if meta.is_dir() {
            continue;
        }
        checked += 1;
        if meta.mode() & SETID == 0 {
            continue;
        }
        let sent =
            fs::symlink_metadata(source.join(path.strip_prefix(received).expect("beneath"))).expect("sent");
        let (uid_ok, gid_ok) = (meta.uid() == sent.uid(), meta.gid() == sent.gid());
        assert!(
            meta.mode() & 0o4000 == 0 || uid_ok,
            "{}: setuid, owner {} not {}",
            path.display(),
            meta.uid(),
            sent.uid()
        );
        assert!(
            meta.mode() & 0o2000 == 0 || gid_ok,
            "{}: setgid, group {} not {}",
            path.display(),
            meta.gid(),
            sent.gid()
        );
    }
    assert!(checked > 3, "{}: only {checked} files", received.display());
}

/// As `nobody`: the full stream clears the set-id bits the lost owners would need (setuid
/// and setgid root files, the setgid bit of a nobody:root file; a setgid directory keeps
/// its bit), counts them in one warning, and `--strict` fails; the incremental on top,
/// whose parent kept no owners, cannot make a copied file setuid with a CHMOD alone.
#[test]
fn nobody_receives_no_set_id_file_for_itself() {
    require_root();
    let _serial = serial();
    let fixture = Fixture::new();
    let nobody = Nobody::new();
    let dest = nobody.dir("dest");
    let full = nobody.receive(&fixture.full, &dest, &[]);
    assert_success(&full);
    assert_eq!(cleared(&full), Some(3), "setuid, setgid, nobody-setuid:\n{}", output_text(&full));
    let snap1 = dest.join("snap1");
    assert_eq!(fs::symlink_metadata(snap1.join("setuid")).expect("stat").uid(), NOBODY);
    for (name, expected) in
        [("setuid", 0o755), ("setgid", 0o755), ("nobody-setuid", 0o4755), ("shared", 0o2775)]
    {
        assert_eq!(mode(&snap1.join(name)), expected, "{name}");
    }
    assert_no_foreign_set_id(&snap1, &fixture.source("snap1"));

    let incremental = nobody.receive(&fixture.incremental, &dest, &[]);
    assert_success(&incremental);
    let snap2 = dest.join("snap2");
    for (name, expected) in
        [("plain", 0o755), ("new-setuid", 0o711), ("nobody-setuid", 0o755), ("shared", 0o2775)]
    {
        assert_eq!(mode(&snap2.join(name)), expected, "{name}");
    }
    assert_eq!(
        cleared(&incremental),
        Some(3),
        "plain, new-setuid, nobody-setuid:\n{}",
        output_text(&incremental)
    );
    assert_no_foreign_set_id(&snap2, &fixture.source("snap2"));

    let strict = nobody.receive(&fixture.full, &nobody.dir("strict"), &["--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", output_text(&strict));
}

/// A parent received by root (owners kept, set-id bits set) copied by `nobody` for an
/// incremental: the copies lose the bits their lost owners would need.
#[test]
fn nobody_copying_a_set_id_parent_clears_the_bits() {
    require_root();
    let _serial = serial();
    let fixture = Fixture::new();
    let nobody = Nobody::new();
    let dest = nobody.dir("dest");
    assert_success(&receive(&fixture.full, &dest));
    assert_eq!(mode(&dest.join("snap1/setuid")), 0o4755, "root keeps the owner and the bits");
    let incremental = nobody.receive(&fixture.incremental, &dest, &[]);
    assert_success(&incremental);
    let snap2 = dest.join("snap2");
    for (name, expected) in [
        ("setuid", 0o755),
        ("setgid", 0o755),
        ("nobody-setuid", 0o4755),
        ("plain", 0o755),
        ("new-setuid", 0o711),
    ] {
        assert_eq!(mode(&snap2.join(name)), expected, "{name}");
    }
    assert_eq!(mode(&snap2.join("shared")), 0o2775);
    assert_eq!(cleared(&incremental), Some(5), "{}", output_text(&incremental));
    assert_no_foreign_set_id(&snap2, &fixture.source("snap2"));
}

/// CHMOD before CHOWN (the bits set first are cleared when the CHOWN is skipped), CHMOD
/// after CHOWN and again after a rename, and a setuid file the stream gives to `nobody`
/// itself (kept): built with `StreamWriter`, since the kernel always sends CHOWN first.
#[test]
fn set_id_bits_are_cleared_whatever_the_command_order() {
    require_root();
    let _serial = serial();
    let nobody = Nobody::new();
    let stream = nobody.path("orders.stream");
    let path = |p: &'static [u8]| StreamPath::new(p).expect("valid path");
    let data = b"#!/bin/sh\n";
    let root = (0, 0);
    let own = (u64::from(NOBODY), u64::from(NOBODY));
    let chown = |p: &'static [u8], (uid, gid): (u64, u64)| StreamCommand::Chown { path: path(p), uid, gid };
    let chmod = |p: &'static [u8], mode: u64| StreamCommand::Chmod { path: path(p), mode };
    let commands = [
        StreamCommand::Subvol { path: path(b"vol"), uuid: Uuid([9; 16]), ctransid: 5 },
        StreamCommand::Mkfile { path: path(b"before"), ino: 257 },
        StreamCommand::Write { path: path(b"before"), offset: 0, data },
        chmod(b"before", 0o4755),
        chown(b"before", root),
        StreamCommand::Mkfile { path: path(b"after"), ino: 258 },
        chown(b"after", root),
        chmod(b"after", 0o6755),
        StreamCommand::Rename { from: path(b"after"), to: path(b"renamed") },
        chmod(b"renamed", 0o2711),
        StreamCommand::Mkfile { path: path(b"own"), ino: 259 },
        chown(b"own", own),
        chmod(b"own", 0o6755),
        StreamCommand::Mkdir { path: path(b"dir"), ino: 260 },
        chown(b"dir", root),
        chmod(b"dir", 0o2775),
        StreamCommand::End,
    ];
    let mut writer = StreamWriter::new(Vec::new(), 1).expect("header");
    for command in &commands {
        writer.write(command).expect("encode");
    }
    fs::write(&stream, writer.finish().expect("finish")).expect("write stream");
    let dest = nobody.dir("dest");
    let output = nobody.receive(&stream, &dest, &[]);
    assert_success(&output);
    let vol = dest.join("vol");
    for (name, expected) in [("before", 0o755), ("renamed", 0o711), ("own", 0o6755), ("dir", 0o2775)] {
        assert_eq!(mode(&vol.join(name)), expected, "{name}");
    }
    assert_eq!(cleared(&output), Some(2), "before, renamed:\n{}", output_text(&output));
}

/// The record's xattr on `dir`, if any.
fn record(dir: &Path) -> Option<Vec<u8>> {
    let mut buf = vec![0; 1024];
    let len = rustix::fs::lgetxattr(dir, RECEIVED_XATTR, &mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// A received parent edited afterwards is refused as a SNAPSHOT parent, naming the change
/// and what to do; the new directory is left unmarked. Unedited, the incremental passes.
#[test]
fn an_edited_parent_is_refused_naming_the_change() {
    require_root();
    let _serial = serial();
    let fixture = Fixture::new();
    let ext4 = LoopFs::builder(FsType::Ext4, 128 * MIB).build();
    type Edit = fn(&Path);
    let edits: [(&str, Edit, &str); 6] = [
        ("nothing", |_| {}, ""),
        (
            "append to a file",
            |p| fs::write(p.join("shared/data"), b"shared data\nand more\n").expect("write"),
            "\"shared/data\"",
        ),
        ("delete a symlink", |p| fs::remove_file(p.join("link")).expect("rm"), "the directory itself"),
        ("add a file in the root", |p| fs::write(p.join("extra"), b"").expect("write"), "\"extra\""),
        ("chmod a file", |p| set_mode(&p.join("plain"), 0o700), "\"plain\""),
        (
            "rename",
            |p| fs::rename(p.join("shared/data"), p.join("shared/moved")).expect("mv"),
            "\"shared/moved\"",
        ),
    ];
    for (i, (what, edit, named)) in edits.into_iter().enumerate() {
        let dest = ext4.path().join(format!("dest{i}"));
        fs::create_dir(&dest).expect("mkdir");
        assert_success(&receive(&fixture.full, &dest));
        edit(&dest.join("snap1"));
        let output = receive(&fixture.incremental, &dest);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if named.is_empty() {
            assert!(output.status.success(), "{what}: {}", output_text(&output));
            assert!(record(&dest.join("snap2")).is_some(), "{what}: marked received");
            continue;
        }
        assert_eq!(output.status.code(), Some(1), "{what}: {}", output_text(&output));
        for expected in
            ["the parent directory snap1 changed after it was received", named, "receive a full stream again"]
        {
            assert!(stderr.contains(expected), "{what}: {expected:?} missing in:\n{stderr}");
        }
        assert!(record(&dest.join("snap2")).is_none(), "{what}: the new directory must not be marked");
    }
}

/// The atimes of every node under `root` but symlinks, read without changing any
/// (`O_NOATIME`: root may use it on any file).
fn atimes(root: &Path) -> BTreeMap<String, (i64, u64)> {
    fn walk(dir: BorrowedFd<'_>, prefix: &[u8], out: &mut BTreeMap<String, (i64, u64)>) {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOATIME | OFlags::CLOEXEC;
        let listing = rustix::fs::openat(dir, ".", flags, Mode::empty()).expect("open");
        for entry in Dir::read_from(&listing).expect("list") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let stat = rustix::fs::statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW).expect("stat");
            let path = [prefix, name].concat();
            let kind = FileType::from_raw_mode(stat.st_mode);
            if kind != FileType::Symlink {
                out.insert(String::from_utf8_lossy(&path).into_owned(), (stat.st_atime, stat.st_atime_nsec));
            }
            if kind == FileType::Directory {
                let sub = rustix::fs::openat(dir, entry.file_name(), flags, Mode::empty()).expect("open");
                walk(sub.as_fd(), &[&path[..], b"/"].concat(), out);
            }
        }
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOATIME | OFlags::CLOEXEC;
    let fd = rustix::fs::open(root, flags, Mode::empty()).expect("open");
    let stat = rustix::fs::fstat(&fd).expect("stat");
    let mut out = BTreeMap::from([(".".to_owned(), (stat.st_atime, stat.st_atime_nsec))]);
    walk(fd.as_fd(), b"", &mut out);
    out
}

/// On an ext4 mounted `strictatime` (every read updates atimes): the incremental leaves
/// the parent's atimes alone, and the new directory's atimes (directories included) are
/// those `btrfs receive` gives on btrfs.
#[test]
fn incrementals_keep_atimes_as_btrfs_does() {
    require_root();
    let _serial = serial();
    let fixture = Fixture::new();
    let progs_fs = LoopFs::builder(FsType::Btrfs, 256 * MIB).mount_options("noatime").build();
    for stream in [&fixture.full, &fixture.incremental] {
        run(Command::new("btrfs").args(["receive", "-f"]).arg(stream).arg(progs_fs.path()));
    }
    let ext4 = LoopFs::builder(FsType::Ext4, 128 * MIB).mount_options("strictatime").build();
    let dest = ext4.path().join("dest");
    fs::create_dir(&dest).expect("mkdir");
    assert_success(&receive(&fixture.full, &dest));
    let before = atimes(&dest.join("snap1"));
    assert!(before.len() > 5, "{before:?}");
    assert_success(&receive(&fixture.incremental, &dest));
    assert_eq!(atimes(&dest.join("snap1")), before, "the parent's atimes");
    let options = CompareOptions {
        dir_size: false,
        atime: true,
        xattr_prefixes: Some(&[]),
        root: true,
        fresh_since_ns: None,
    };
    let (progs, ours) =
        (TreeSnapshot::capture(progs_fs.path().join("snap2")), TreeSnapshot::capture(dest.join("snap2")));
    assert_eq!(
        diff_with(&progs, &ours, &options),
        Vec::<String>::new(),
        "left = btrfs receive, right = rawsend"
    );
}

/// A parent recorded by an earlier rawsend (`"<uuid> <transid>"`, no fingerprint) is still
/// used, with one warning that it could not be checked; `--strict` refuses it.
#[test]
fn a_parent_recorded_without_a_fingerprint_is_used_with_a_warning() {
    require_root();
    let _serial = serial();
    let fixture = Fixture::new();
    let ext4 = LoopFs::builder(FsType::Ext4, 128 * MIB).build();
    for (strict, extra) in [(false, &[][..]), (true, &["--strict"][..])] {
        let dest = ext4.path().join(format!("dest-{strict}"));
        fs::create_dir(&dest).expect("mkdir");
        assert_success(&receive(&fixture.full, &dest));
        let parent = dest.join("snap1");
        let recorded = record(&parent).expect("recorded");
        let old: Vec<&[u8]> = recorded.split(|&byte| byte == b' ').take(2).collect();
        let flags = rustix::fs::XattrFlags::REPLACE;
        rustix::fs::lsetxattr(&parent, RECEIVED_XATTR, &old.join(&b' '), flags).expect("setxattr");
        let output = rawsend()
            .args(["receive", "--target", "dir"])
            .args(extra)
            .arg("-f")
            .arg(&fixture.incremental)
            .arg(&dest)
            .output()
            .expect("start rawsend");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if strict {
            assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
            assert!(stderr.contains("recorded by an older rawsend"), "{stderr}");
            assert!(record(&dest.join("snap2")).is_none());
        } else {
            assert_success(&output);
            let warnings = stderr.lines().filter(|line| line.contains("recorded by an older rawsend"));
            assert_eq!(warnings.count(), 1, "{stderr}");
            assert!(record(&dest.join("snap2")).is_some());
        }
    }
}
