//! Receive conformance: every fixture chain of `testdata/streams/chains.txt`
//! received by `btrfs receive` and by `rawsend receive` must give the same
//! trees, exactly (file types, content, mode, owner, mtime and atime in ns,
//! xattrs, symlink targets, device numbers, hard-link groups), the same
//! received UUID, send transid and read-only flag, and compressed data must
//! stay compressed (compsize disk usage no more than btrfs-progs').
//!
//! Root tests on loop-mounted filesystems; they fail (never skip) when not
//! root or when mounting fails. Every filesystem is mounted `noatime`:
//! capturing a tree reads every file and directory, which would otherwise
//! update atimes (relatime updates an atime older than the mtime), and
//! atimes are compared, directories included (both receivers set them with
//! UTIMES).
//!
//! Each test collects every difference of every chain and variant and
//! fails once at the end with the full list, so one run reports all of them.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rawsend_testutil::tree::{CompareOptions, FileKind, TreeSnapshot, diff_with};
use rawsend_testutil::{
    FsType, LoopFs, MIB, MemFs, ReceivedState, fixtures, output_text, received_state, require_root, run,
};

const FS_SIZE: u64 = 1024 * MIB;
const VARIANTS: [&str; 3] = ["v1", "v2", "v2c"];

/// The chains of `chains.txt` (name, streams in order) whose name is `prefix*.<variant>`.
fn chains(prefix: &str, variant: &str) -> Vec<(String, Vec<PathBuf>)> {
    let found: Vec<(String, Vec<PathBuf>)> = fixtures::chains()
        .into_iter()
        .filter(|chain| chain.family().starts_with(prefix) && chain.variant() == variant)
        .map(|chain| (chain.name, chain.streams))
        .collect();
    assert!(!found.is_empty(), "no chain {prefix}*.{variant} in chains.txt");
    found
}

/// Now, in ns since the epoch: times a receive leaves at "now" are at or after it
/// (see `CompareOptions::fresh_since_ns`).
fn now_ns() -> i128 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    // Less a second: file times come from the kernel's coarse clock, which may lag.
    i128::try_from(now.as_nanos()).expect("time fits") - 1_000_000_000
}

/// Runs the tests of this file one at a time. Disk usage depends on when writeback
/// happens: a file written before its `btrfs.compression` property is set is stored
/// compressed only if it was not flushed in between, and concurrent tests cause flushes.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn btrfs_fs() -> LoopFs {
    LoopFs::builder(FsType::Btrfs, FS_SIZE).mount_options("noatime").build()
}

fn rawsend() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rawsend"))
}

/// Receives `streams` in order with `btrfs receive`; a failure here is a broken fixture.
fn progs_receive(streams: &[PathBuf], dest: &Path) {
    fs::create_dir_all(dest).expect("create destination");
    for stream in streams {
        run(Command::new("btrfs").args(["receive", "-f"]).arg(stream).arg(dest));
    }
}

/// Receives `streams` in order with `rawsend receive EXTRA`; records a failure and stops there.
fn rawsend_receive(
    streams: &[PathBuf],
    dest: &Path,
    extra: &[&str],
    problems: &mut Vec<String>,
) -> Vec<String> {
    fs::create_dir_all(dest).expect("create destination");
    let mut stderr = Vec::new();
    for stream in streams {
        let output = rawsend()
            .arg("receive")
            .args(extra)
            .arg("-f")
            .arg(stream)
            .arg(dest)
            .output()
            .expect("start rawsend");
        if !output.status.success() {
            problems.push(format!(
                "`rawsend receive {} -f {} {}` failed: {}",
                extra.join(" "),
                stream.display(),
                dest.display(),
                output_text(&output)
            ));
            break;
        }
        stderr.push(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    stderr
}

/// Names of the entries directly in `dir` (the received subvolumes).
fn subvolumes(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.expect("list").file_name().to_string_lossy().into_owned())
        .collect()
}

/// `compsize -b` total disk usage in bytes (0 when there are no extents at all).
fn disk_usage(subvol: &Path) -> u64 {
    run(&mut Command::new("sync"));
    let output = Command::new("compsize").arg("-b").arg(subvol).output().expect("start compsize");
    let text = String::from_utf8_lossy(&output.stdout);
    match text.lines().find(|line| line.starts_with("TOTAL")) {
        Some(line) => line
            .split_whitespace()
            .nth(2)
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse compsize line {line:?}")),
        None => {
            // compsize fails when a subvolume has no data extents; anything else is a real error.
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("No files") || stderr.contains("no extents") || output.status.success(),
                "compsize -b {} failed: {}",
                subvol.display(),
                output_text(&output)
            );
            0
        }
    }
}

/// Compares every subvolume under `progs` and `ours`; appends differences to `problems`.
fn compare_btrfs(
    label: &str,
    (progs, ours): (&Path, &Path),
    since: i128,
    check_usage: bool,
    problems: &mut Vec<String>,
) {
    let names = subvolumes(progs);
    let our_names = subvolumes(ours);
    if names != our_names {
        problems.push(format!("{label}: subvolumes differ: btrfs receive {names:?}, rawsend {our_names:?}"));
    }
    for name in names.intersection(&our_names) {
        let (left, right) = (progs.join(name), ours.join(name));
        let options = CompareOptions { fresh_since_ns: Some(since), ..CompareOptions::default() };
        let (progs_tree, our_tree) = (TreeSnapshot::capture(&left), TreeSnapshot::capture(&right));
        // Every fixture subvolume has content: an empty capture means the test compares nothing.
        assert!(progs_tree.entries.len() > 1, "{label}: btrfs receive gave an empty subvolume {name}");
        eprintln!("{label}: subvolume {name}: {} entries compared", progs_tree.entries.len());
        for line in diff_with(&progs_tree, &our_tree, &options) {
            problems
                .push(format!("{label}: subvolume {name}: {line} (left = btrfs receive, right = rawsend)"));
        }
        let (progs_state, our_state) = (received_state(&left), received_state(&right));
        if progs_state != our_state {
            problems.push(format!(
                "{label}: subvolume {name}: (received UUID, send transid, readonly): btrfs receive {progs_state:?}, rawsend {our_state:?}"
            ));
        }
        if check_usage {
            let (progs_usage, our_usage) = (disk_usage(&left), disk_usage(&right));
            eprintln!(
                "{label}: subvolume {name}: compsize disk usage: btrfs receive {progs_usage}, rawsend {our_usage}"
            );
            if our_usage > progs_usage {
                problems.push(format!(
                    "{label}: subvolume {name}: compsize disk usage: rawsend {our_usage} > btrfs receive {progs_usage}"
                ));
            }
        }
    }
}

fn report(problems: &[String]) {
    assert!(problems.is_empty(), "{} difference(s):\n{}", problems.len(), problems.join("\n"));
}

/// Receives every chain `prefix*` of every variant with both tools, each chain in its own directory.
fn conformance(prefix: &str) {
    require_root();
    let _serial = serial();
    let since = now_ns();
    let mut problems = Vec::new();
    for variant in VARIANTS {
        let (progs_fs, our_fs) = (btrfs_fs(), btrfs_fs());
        for (name, streams) in chains(prefix, variant) {
            let (progs, ours) = (progs_fs.path().join(&name), our_fs.path().join(&name));
            progs_receive(&streams, &progs);
            let before = problems.len();
            rawsend_receive(&streams, &ours, &[], &mut problems);
            if problems.len() == before {
                compare_btrfs(&format!("chain {name}"), (&progs, &ours), since, true, &mut problems);
            }
        }
    }
    report(&problems);
}

#[test]
fn basic_chains_match_btrfs_receive() {
    conformance("basic");
}

#[test]
fn clone_chains_match_btrfs_receive() {
    conformance("clone");
}

#[test]
fn multi_chains_match_btrfs_receive() {
    conformance("multi");
}

/// `--force-decompress` on the compressed chains: same trees, and the summary says it decompressed.
#[test]
fn force_decompress_matches_btrfs_receive() {
    require_root();
    let _serial = serial();
    let since = now_ns();
    let mut problems = Vec::new();
    let (progs_fs, our_fs) = (btrfs_fs(), btrfs_fs());
    let mut decompressed_total = 0u64;
    for (name, streams) in chains("", "v2c") {
        let (progs, ours) = (progs_fs.path().join(&name), our_fs.path().join(&name));
        progs_receive(&streams, &progs);
        let before = problems.len();
        let summaries = rawsend_receive(&streams, &ours, &["--force-decompress", "-v"], &mut problems);
        if problems.len() != before {
            continue;
        }
        for (stream, summary) in streams.iter().zip(&summaries) {
            let counts = summary_counts(summary).unwrap_or_else(|| {
                panic!("no summary in the output of rawsend receive -v -f {}:\n{summary}", stream.display())
            });
            if counts.0 != 0 {
                problems.push(format!(
                    "rawsend receive --force-decompress -f {}: {} encoded extents written as-is: {summary}",
                    stream.display(),
                    counts.0
                ));
            }
            decompressed_total += counts.1;
        }
        compare_btrfs(
            &format!("chain {name} --force-decompress"),
            (&progs, &ours),
            since,
            false,
            &mut problems,
        );
    }
    if decompressed_total == 0 {
        problems.push("--force-decompress over every v2c chain decompressed no extent at all".to_owned());
    }
    report(&problems);
}

/// `(written as-is, decompressed)` from `rawsend receive -v`'s summary line.
fn summary_counts(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find(|line| line.contains("encoded extents:"))?;
    let rest = line.split("encoded extents:").nth(1)?;
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit()).filter(|word| !word.is_empty());
    let passthrough = numbers.next()?.parse().ok()?;
    let decompressed = numbers.next()?.parse().ok()?;
    rest.contains("decompressed").then_some((passthrough, decompressed))
}

/// The dir target's received-state marker xattr (`rawsend_receive::fs::RECEIVED_XATTR`).
const RECEIVED_XATTR: &str = "user.rawsend.received";

/// Every chain (full stream, then its incrementals) received with
/// `rawsend receive --target dir` onto ext4, tmpfs and XFS (which reflinks), compared
/// with `btrfs receive` of the same streams on btrfs. Incrementals exercise SNAPSHOT
/// on the dir target (a reflinked or copied parent found by its received record) and
/// clones from other received directories.
///
/// Compared: file types, content, mode, uid/gid, mtime in ns, symlink targets, device
/// numbers, hard-link groups and xattrs. Not compared: directory sizes (filesystem
/// specific) and atimes (not part of the dir target's contract). Xattrs: every
/// `user.*`, `trusted.*`, `security.*` and `system.*` (POSIX ACL) xattr, on every
/// filesystem (tmpfs holds all four namespaces on the kernels we run, 6.6 and later
/// for `user.*`); not `btrfs.*` properties such as `btrfs.compression`, which only
/// btrfs can hold: the dir target must receive streams carrying them (the receive must
/// succeed) but cannot keep them. Each directory's `user.rawsend.received` record is
/// checked against the received UUID and send transid instead. XFS's `trusted.SGI_ACL_*`
/// (its on-disk form of the POSIX ACLs, listed as xattrs) is not compared.
#[test]
fn dir_target_matches_btrfs_receive() {
    require_root();
    let _serial = serial();
    let sets: Vec<(String, Vec<PathBuf>)> = VARIANTS.iter().flat_map(|variant| chains("", variant)).collect();
    let progs_fs = btrfs_fs();
    let ext4 = LoopFs::builder(FsType::Ext4, FS_SIZE).mount_options("noatime").build();
    let xfs = LoopFs::builder(FsType::Xfs, FS_SIZE).mount_options("noatime").build();
    let tmpfs = MemFs::new("tmpfs", "noatime,size=1g,mode=755");
    let since = now_ns();
    let mut problems = Vec::new();
    for (label, streams) in &sets {
        let progs = progs_fs.path().join(label);
        progs_receive(streams, &progs);
        for (fs_name, root) in [("ext4", ext4.path()), ("tmpfs", tmpfs.path()), ("xfs", xfs.path())] {
            let ours = root.join(label);
            let before = problems.len();
            rawsend_receive(streams, &ours, &["--target", "dir"], &mut problems);
            if problems.len() == before {
                compare_dir(&format!("{label} on {fs_name}"), (&progs, &ours), since, &mut problems);
            }
        }
    }
    report(&problems);
}

/// Compares every directory rawsend received under `ours` with the subvolume of the same
/// name `btrfs receive` made under `progs`, and its received record.
fn compare_dir(label: &str, (progs, ours): (&Path, &Path), since: i128, problems: &mut Vec<String>) {
    let options = CompareOptions {
        dir_size: false,
        atime: false,
        xattr_prefixes: Some(&["user.", "trusted.", "security.", "system."]),
        root: true,
        fresh_since_ns: Some(since),
    };
    let names = subvolumes(progs);
    let our_names = subvolumes(ours);
    if names != our_names {
        problems.push(format!("{label}: top-level entries differ: {names:?} vs {our_names:?}"));
    }
    for name in names.intersection(&our_names) {
        let left = TreeSnapshot::capture(progs.join(name));
        let mut right = TreeSnapshot::capture(ours.join(name));
        // There is no received UUID outside btrfs: the record must say what
        // `btrfs subvolume show` says of the progs subvolume.
        let ReceivedState { received_uuid: uuid, send_transid: transid, .. } =
            received_state(&progs.join(name));
        let record =
            right.entries.get_mut(&b"."[..]).and_then(|root| root.xattrs.remove(RECEIVED_XATTR.as_bytes()));
        // XFS lists its on-disk form of POSIX ACLs as `trusted.SGI_ACL_*` too; the ACLs
        // themselves are compared as `system.posix_acl_*`.
        for entry in right.entries.values_mut() {
            entry.xattrs.retain(|name, _| !name.starts_with(b"trusted.SGI_ACL_"));
        }
        // "<uuid> <transid>", then the fingerprint of the tree.
        let expected = format!("{uuid} {transid} entries=");
        if !record.as_deref().is_some_and(|record| record.starts_with(expected.as_bytes())) {
            problems.push(format!(
                "{label}: {name}: {RECEIVED_XATTR} is {:?}, expected {expected:?}",
                record.map(|value| value.escape_ascii().to_string())
            ));
        }
        for line in diff_with(&left, &right, &options) {
            problems
                .push(format!("{label}: {name}: {line} (left = btrfs receive on btrfs, right = rawsend)"));
        }
    }
}

/// The user the unprivileged receive runs as (`nobody`).
const NOBODY: &str = "65534";

/// `rawsend receive` run as `nobody` through `setpriv`, from a copy of the binary and
/// streams that `nobody` can reach.
fn receive_as_nobody(workdir: &Path, streams: &[PathBuf], dest: &Path, extra: &[&str]) -> Vec<Output> {
    let binary = workdir.join("rawsend");
    fs::copy(env!("CARGO_BIN_EXE_rawsend"), &binary).expect("copy rawsend");
    let mut outputs = Vec::new();
    for stream in streams {
        let copy = workdir.join(stream.file_name().expect("stream name"));
        fs::copy(stream, &copy).expect("copy stream");
        let output = Command::new("setpriv")
            .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
            .arg(&binary)
            .arg("receive")
            .args(extra)
            .arg("-f")
            .arg(&copy)
            .arg(dest)
            .output()
            .expect("start setpriv");
        let failed = !output.status.success();
        outputs.push(output);
        if failed {
            break;
        }
    }
    outputs
}

/// Without privileges: the basic chain (owners of other users, device nodes, btrfs.* and
/// security xattrs) received by `nobody` into a directory it owns on ext4. Everything
/// `nobody` may do is done: the trees match `btrfs receive` except owners, device nodes,
/// non-`user.` xattrs and the set-id bits of files whose owner could not be kept; each kind of skipped operation is reported once per receive;
/// `--strict` fails instead.
#[test]
fn unprivileged_receive_does_what_it_may_and_warns_once_per_kind() {
    require_root();
    let _serial = serial();
    let (_, streams) = chains("basic", "v2c").remove(0);
    let progs_fs = btrfs_fs();
    let ext4 = LoopFs::builder(FsType::Ext4, FS_SIZE).mount_options("noatime").build();
    let workdir = ext4.path().join("work");
    let dest = ext4.path().join("dest");
    let strict_dest = ext4.path().join("dest-strict");
    for dir in [&workdir, &dest, &strict_dest] {
        fs::create_dir(dir).expect("mkdir");
        run(Command::new("chown").arg(format!("{NOBODY}:{NOBODY}")).arg(dir));
    }
    let progs = progs_fs.path().join("progs");
    progs_receive(&streams, &progs);
    let since = now_ns();
    let outputs = receive_as_nobody(&workdir, &streams, &dest, &[]);
    for output in &outputs {
        assert!(output.status.success(), "{}", output_text(output));
    }
    let full_stderr = String::from_utf8_lossy(&outputs[0].stderr);
    for kind in ["chown (", "device nodes (", "btrfs.* xattrs (", "files' set-id bits ("] {
        let warnings =
            full_stderr.lines().filter(|line| line.contains("warning: skipped") && line.contains(kind));
        assert_eq!(warnings.count(), 1, "one warning for {kind}:\n{full_stderr}");
    }
    let mut problems = Vec::new();
    let options = CompareOptions {
        dir_size: false,
        atime: false,
        xattr_prefixes: Some(&["user."]),
        root: true,
        fresh_since_ns: Some(since),
    };
    for name in subvolumes(&progs) {
        let mut left = TreeSnapshot::capture(progs.join(&name));
        let mut right = TreeSnapshot::capture(dest.join(&name));
        right.entries.get_mut(&b"."[..]).and_then(|root| root.xattrs.remove(RECEIVED_XATTR.as_bytes()));
        left.entries.retain(|_, entry| !matches!(entry.kind, FileKind::CharDevice | FileKind::BlockDevice));
        assert!(left.entries.len() > 1 && right.entries.len() == left.entries.len(), "{name}: entry counts");
        // Set-id bits are cleared where the owner (S_ISUID) or group (S_ISGID) could not be kept.
        let nobody: u32 = NOBODY.parse().expect("uid");
        for entry in left.entries.values_mut().filter(|entry| entry.kind != FileKind::Dir) {
            let lost =
                if entry.uid == nobody { 0 } else { 0o4000 } | if entry.gid == nobody { 0 } else { 0o2000 };
            entry.mode &= !lost;
        }
        for entry in left.entries.values_mut().chain(right.entries.values_mut()) {
            (entry.uid, entry.gid) = (0, 0);
        }
        for line in diff_with(&left, &right, &options) {
            problems
                .push(format!("{name}: {line} (left = btrfs receive as root, right = rawsend as nobody)"));
        }
    }
    report(&problems);
    let strict = receive_as_nobody(&workdir, &streams[..1], &strict_dest, &["--strict"]);
    assert_eq!(strict[0].status.code(), Some(1), "{}", output_text(&strict[0]));
}

/// On a filesystem without user xattrs (ramfs), the dir target keeps its received records
/// in `DEST/.rawsend-received/records/` instead, and incremental and clone chains still
/// find their parents and sources by them; the trees match `btrfs receive` but for the
/// xattrs the filesystem cannot hold (reported once per kind).
#[test]
fn dir_target_without_xattrs_keeps_records_in_files() {
    require_root();
    let _serial = serial();
    let progs_fs = btrfs_fs();
    let ramfs = MemFs::new("ramfs", "mode=755");
    let since = now_ns();
    let mut problems = Vec::new();
    let options = CompareOptions {
        dir_size: false,
        atime: false,
        xattr_prefixes: Some(&[]),
        root: true,
        fresh_since_ns: Some(since),
    };
    for (label, streams) in chains("basic", "v2c").into_iter().chain(chains("clone", "v2c")) {
        let (progs, ours) = (progs_fs.path().join(&label), ramfs.path().join(&label));
        progs_receive(&streams, &progs);
        let before = problems.len();
        let stderr = rawsend_receive(&streams, &ours, &["--target", "dir"], &mut problems).concat();
        if problems.len() != before {
            continue;
        }
        let has_user_xattrs = label.starts_with("basic");
        assert_eq!(
            stderr.contains("user.* xattrs (not supported by the destination)"),
            has_user_xattrs,
            "{stderr}"
        );
        for name in subvolumes(&progs) {
            let ReceivedState { received_uuid: uuid, send_transid: transid, .. } =
                received_state(&progs.join(&name));
            let record = fs::read_to_string(ours.join(".rawsend-received/records").join(&name))
                .unwrap_or_else(|err| panic!("{label}: record of {name}: {err}"));
            let ino = fs::metadata(ours.join(&name)).expect("stat").ino();
            let expected = format!("{ino}\n{uuid} {transid} entries=");
            assert!(record.starts_with(&expected), "{label}: record of {name}: {record:?}");
            let (left, right) =
                (TreeSnapshot::capture(progs.join(&name)), TreeSnapshot::capture(ours.join(&name)));
            for line in diff_with(&left, &right, &options) {
                problems.push(format!("{label} on ramfs: {name}: {line}"));
            }
        }
    }
    report(&problems);
}

/// A parent directory that cannot be copied (here: a mount point inside it) fails the
/// incremental receive at its SNAPSHOT; the copy is made aside and moved into place only
/// once complete, so nothing is left at the new directory's name to take for complete.
#[test]
fn dir_target_reports_a_snapshot_whose_parent_could_not_be_copied() {
    require_root();
    let _serial = serial();
    let (_, streams) = chains("basic", "v2").remove(0);
    let ext4 = LoopFs::builder(FsType::Ext4, FS_SIZE).mount_options("noatime").build();
    let dest = ext4.path().join("dest");
    let mut problems = Vec::new();
    rawsend_receive(&streams[..1], &dest, &["--target", "dir"], &mut problems);
    report(&problems);
    let parent = fs::read_dir(&dest).expect("list").next().expect("one directory").expect("entry").path();
    let inner = MemFs::new("tmpfs", "size=1m");
    run(Command::new("mount").arg("--bind").arg(inner.path()).arg(parent.join("xattr")));
    let output = rawsend().arg("receive").arg("-f").arg(&streams[1]).arg(&dest).output().expect("run");
    let _ = Command::new("umount").arg(parent.join("xattr")).output();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("command #0 (snapshot)") && stderr.contains("mount point"), "{stderr}");
    let child = dest.join("basic-incr1");
    assert!(!child.exists(), "a failed copy must leave nothing at {}", child.display());
    assert!(!dest.join(".rawsend-received").exists(), "the failed copy was not cleaned up");
}
