//! Model conformance: every fixture chain applied to the in-memory model target
//! (`rawsend_receive::ModelTarget`, the executable specification of a receive) and
//! received by the `rawsend` binary onto btrfs and, with `--target dir`, onto ext4
//! must give the same trees and the same received state.
//!
//! Compared, entry by entry: file type, content, permission bits, uid/gid, mtime and
//! atime in ns, symlink targets, device numbers, xattrs and hard-link groups (model
//! inodes named by several paths). Not compared: directory sizes (filesystem
//! specific) and FILEATTR inode flags and fs-verity (a tree capture records neither).
//!
//! Times: where the stream does not set a time after the last change of an inode
//! (the model leaves it unset), the receiver leaves the time of its clock. Such a time
//! matches any time from the start of the test on, and only that; every time the
//! model knows must match exactly (see `CompareOptions::fresh_since_ns`).
//!
//! Received state: on btrfs, the received UUID and send transid of the subvolume,
//! and its read-only flag; on the dir target, the root's `user.rawsend.received`
//! record (`<uuid> <transid>`). The dir target cannot keep `btrfs.*` xattrs (such as
//! `btrfs.compression`): they are left out of the model's side there.
//!
//! Root test on loop-mounted filesystems, mounted `noatime` so that capturing a tree
//! (which reads every file and directory) does not change the atimes it compares. All
//! differences of all chains are collected and reported at once at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use rawsend_receive::fs::RECEIVED_XATTR;
use rawsend_receive::model::{Content, Inode, Subvol};
use rawsend_receive::{ModelTarget, ReceiveOptions, Receiver};
use rawsend_stream::Timespec;
use rawsend_testutil::fixtures::{self, Chain};
use rawsend_testutil::tree::{CompareOptions, Entry, FileKind, TreeSnapshot, diff_with, digest_bytes};
use rawsend_testutil::{FsType, LoopFs, MIB, require_root};

const FS_SIZE: u64 = 1024 * MIB;

/// Where `rawsend receive` writes, and how its received state is checked.
#[derive(Clone, Copy, Debug)]
enum Dest {
    /// The btrfs target on btrfs: subvolumes with a received UUID.
    Btrfs,
    /// `--target dir` on ext4: plain directories with a received record xattr.
    Dir,
}

impl Dest {
    fn receive_args(self) -> &'static [&'static str] {
        match self {
            Dest::Btrfs => &[],
            Dest::Dir => &["--target", "dir"],
        }
    }

    /// Whether this destination holds the model's xattr `name`.
    fn keeps_xattr(self, name: &[u8]) -> bool {
        matches!(self, Dest::Btrfs) || !name.starts_with(b"btrfs.")
    }
}

/// Now less a second, in ns since the epoch: a time a receiver takes from its clock is
/// at or after it (file times come from the kernel's coarse clock, which may lag).
fn test_start_ns() -> i128 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    i128::try_from(now.as_nanos()).expect("time fits") - 1_000_000_000
}

/// The chain's streams applied in order to one model, as `btrfs receive` would into one
/// directory; the first failure as an error.
fn model_receive(streams: &[PathBuf]) -> Result<ModelTarget, String> {
    let mut model = ModelTarget::new();
    for stream in streams {
        let file = File::open(stream).map_err(|err| format!("open {}: {err}", stream.display()))?;
        let receiver = Receiver::new(model, ReceiveOptions::default());
        let (_, target) = receiver
            .receive_into(file)
            .map_err(|failure| format!("model: {}: {failure}", stream.display()))?;
        model = target;
    }
    Ok(model)
}

/// `rawsend receive` of the chain's streams in order into `dest`; the first failure as an error.
fn rawsend_receive(streams: &[PathBuf], dest: &Path, target: Dest) -> Result<(), String> {
    fs::create_dir_all(dest).expect("create destination");
    for stream in streams {
        let output = Command::new(env!("CARGO_BIN_EXE_rawsend"))
            .arg("receive")
            .args(target.receive_args())
            .arg("-f")
            .arg(stream)
            .arg(dest)
            .output()
            .expect("start rawsend");
        if !output.status.success() {
            return Err(format!(
                "`rawsend receive {}` of {} failed: {}\n{}",
                target.receive_args().join(" "),
                stream.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(())
}

/// A model time in ns; `clock` for a time the stream left to the receiver's clock.
fn time_ns(time: Option<Timespec>, clock: i128) -> i128 {
    time.map_or(clock, |time| i128::from(time.sec) * 1_000_000_000 + i128::from(time.nsec))
}

/// What a capture of the real tree should record for `inode`; `clock` stands for times
/// the receiver took from its clock.
fn model_entry(inode: &Inode, clock: i128) -> Result<Entry, String> {
    let (kind, size, rdev) = match &inode.content {
        Content::File(bytes) => (FileKind::File, bytes.len() as u64, 0),
        Content::Dir(_) => (FileKind::Dir, 0, 0),
        Content::Symlink(target) => (FileKind::Symlink, target.len() as u64, 0),
        Content::Fifo => (FileKind::Fifo, 0, 0),
        Content::Socket => (FileKind::Socket, 0, 0),
        Content::Device(mode, rdev) => {
            let kind = match mode & 0o170000 {
                0o020000 => FileKind::CharDevice,
                0o060000 => FileKind::BlockDevice,
                _ => return Err(format!("device with mode {mode:o} in the model")),
            };
            (kind, 0, rustix::fs::makedev(rdev.major(), rdev.minor()))
        }
    };
    Ok(Entry {
        kind,
        mode: inode.mode & 0o7777,
        uid: inode.uid,
        gid: inode.gid,
        size,
        mtime_ns: time_ns(inode.mtime, clock),
        atime_ns: time_ns(inode.atime, clock),
        rdev,
        target: match &inode.content {
            Content::Symlink(target) => Some(target.clone()),
            _ => None,
        },
        digest: match &inode.content {
            Content::File(bytes) => Some(digest_bytes(bytes)),
            _ => None,
        },
        xattrs: inode.xattrs.clone(),
    })
}

/// The model subvolume as a capture of the tree `target` received would record it: the
/// root `.` for the model's empty path, only the xattrs `target` keeps.
fn model_tree(subvol: &Subvol, target: Dest, clock: i128) -> Result<TreeSnapshot, String> {
    let paths = subvol.paths();
    let mut tree = TreeSnapshot::default();
    let mut inodes: BTreeMap<u64, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for (path, ino) in paths {
        let inode = &subvol.inodes[&ino];
        let mut entry = model_entry(inode, clock).map_err(|err| format!("{}: {err}", path.escape_ascii()))?;
        entry.xattrs.retain(|name, _| target.keeps_xattr(name));
        let path = if path.is_empty() { b".".to_vec() } else { path };
        if entry.kind != FileKind::Dir {
            inodes.entry(ino).or_default().insert(path.clone());
        }
        tree.entries.insert(path, entry);
    }
    tree.links = inodes.into_values().filter(|paths| paths.len() > 1).collect();
    Ok(tree)
}

/// Differences between the model's received state of `subvol` and what `target` recorded
/// for the received tree at `dir` (whose capture `tree` loses the dir target's record).
fn received_differences(subvol: &Subvol, dir: &Path, target: Dest, tree: &mut TreeSnapshot) -> Vec<String> {
    let expected = subvol.received.map(|(uuid, transid)| format!("{uuid} {transid}"));
    let (actual, read_only) = match target {
        Dest::Btrfs => {
            let file = File::open(dir).unwrap_or_else(|err| panic!("cannot open {}: {err}", dir.display()));
            let info = rawsend_btrfs::subvolume_info(&file)
                .unwrap_or_else(|err| panic!("subvolume info of {}: {err}", dir.display()))
                .root;
            (info.received_uuid.map(|uuid| format!("{uuid} {}", info.stransid)), Some(info.read_only))
        }
        Dest::Dir => {
            let root = tree.entries.get_mut(&b"."[..]).expect("captured root");
            let record = root.xattrs.remove(RECEIVED_XATTR.as_bytes());
            // "<uuid> <transid>", then the fingerprint of the tree.
            let uuid_transid = |text: &str| text.split(' ').take(2).collect::<Vec<_>>().join(" ");
            (record.map(|value| uuid_transid(&String::from_utf8_lossy(&value))), None)
        }
    };
    let mut out = Vec::new();
    if actual != expected {
        out.push(format!("received state: model={expected:?} real={actual:?}"));
    }
    if read_only.is_some_and(|read_only| read_only != expected.is_some()) {
        out.push(format!("read-only is {read_only:?}, model received state {expected:?}"));
    }
    out
}

/// Every difference between the model and the chain received by `rawsend` under `dest`.
fn compare(model: &ModelTarget, dest: &Path, target: Dest, since: i128) -> Vec<String> {
    let options = CompareOptions {
        dir_size: false,
        atime: true,
        xattr_prefixes: None,
        root: true,
        fresh_since_ns: Some(since),
    };
    let expected: BTreeSet<String> =
        model.subvols.keys().map(|name| String::from_utf8_lossy(name).into_owned()).collect();
    let found: BTreeSet<String> = fs::read_dir(dest)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dest.display()))
        .map(|entry| entry.expect("list").file_name().to_string_lossy().into_owned())
        .collect();
    let mut out = Vec::new();
    if expected != found {
        out.push(format!("subvolumes: model={expected:?} real={found:?}"));
    }
    for (name, subvol) in &model.subvols {
        let shown = String::from_utf8_lossy(name);
        let dir = dest.join(&*shown);
        if !found.contains(&*shown) {
            continue;
        }
        let mut real = TreeSnapshot::capture(&dir);
        let mut lines = received_differences(subvol, &dir, target, &mut real);
        match model_tree(subvol, target, since) {
            Ok(tree) => lines.extend(diff_with(&tree, &real, &options)),
            Err(err) => lines.push(err),
        }
        out.extend(lines.into_iter().map(|line| format!("{shown}: {line}")));
    }
    out
}

/// Applies `chain` to the model and receives it onto both destinations; every difference.
fn check_chain(chain: &Chain, roots: &[(Dest, &Path)], since: i128) -> Vec<String> {
    let model = match model_receive(&chain.streams) {
        Ok(model) => model,
        Err(err) => return vec![format!("chain {}: {err}", chain.name)],
    };
    let mut out = Vec::new();
    for &(target, root) in roots {
        let dest = root.join(&chain.name);
        let label = format!("chain {} ({target:?} target)", chain.name);
        let lines = match rawsend_receive(&chain.streams, &dest, target) {
            Ok(()) => compare(&model, &dest, target, since),
            Err(err) => vec![err],
        };
        out.extend(lines.into_iter().map(|line| format!("{label}: {line} (left = model, right = rawsend)")));
    }
    out
}

#[test]
fn every_chain_received_by_rawsend_matches_the_model() {
    require_root();
    let btrfs = LoopFs::builder(FsType::Btrfs, FS_SIZE).mount_options("noatime").build();
    let ext4 = LoopFs::builder(FsType::Ext4, FS_SIZE).mount_options("noatime").build();
    let roots = [(Dest::Btrfs, btrfs.path()), (Dest::Dir, ext4.path())];
    let since = test_start_ns();
    let chains = fixtures::chains();
    assert!(chains.len() >= 10, "expected the fixture chains, found {}", chains.len());
    let problems: Vec<String> = chains.iter().flat_map(|chain| check_chain(chain, &roots, since)).collect();
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems.join("\n"));
}
