//! Power-cut durability: a subvolume or directory that a receive reported as
//! complete must be complete on disk the moment `rawsend receive` returns.
//!
//! A real kernel stream (thousands of files, zstd-compressed extents sent
//! with `--compressed-data`) is received onto btrfs and onto ext4 (dir
//! target); within a second of the command returning, the loop image is
//! copied without syncing (what the device holds: the filesystem's dirty
//! pages are lost, as in a power cut) and the copy is mounted. Every
//! subvolume or directory marked complete on the copy (btrfs: received UUID
//! and read-only; dir target: the `user.rawsend.received` record) must have
//! every file with its full content. The mark itself must be there too:
//! rawsend reports success only after it is durable.
//!
//! `btrfs receive` 6.2 fails this on btrfs: it sets the received UUID and the
//! read-only flag without writing the data back first. On this test's stream,
//! 49–104 of the 3,000 files differed from the source in such copies of a
//! subvolume marked received (three rounds, 2026-12-01). It is not run here:
//! how much it loses depends on writeback timing.
//!
//! Root tests on loop devices; they fail, never skip, when they cannot mount.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use rawsend_testutil::tree::{CompareOptions, TreeSnapshot, diff_with};
use rawsend_testutil::{FsType, LoopFs, MIB, MemFs, received_state, require_root, run};

/// Files in the source subvolume.
const FILES: usize = 3000;
/// How many receive + crash rounds per destination kind.
const ROUNDS: usize = 3;
/// The sent snapshot's name.
const SNAPSHOT: &str = "snap";

/// A kernel-made `--compressed-data` stream of a generated tree, and that tree.
struct Source {
    stream: PathBuf,
    tree: TreeSnapshot,
    _dir: tempfile::TempDir,
}

/// Compressible, distinct content for file `i`: numbered lines, some files over
/// 128 KiB (several compressed extents), some a few bytes.
fn content(i: usize) -> Vec<u8> {
    let lines = match i % 10 {
        0 => 4000 + i % 97,
        1 => 1,
        _ => 20 + (i * 37) % 400,
    };
    let mut text = String::new();
    for line in 0..lines {
        let _ =
            writeln!(text, "file {i} line {line}: the quick brown fox jumps over the lazy dog {}", line % 7);
    }
    text.into_bytes()
}

/// Sends a read-only snapshot of a generated tree with `btrfs send --compressed-data`.
fn make_source() -> Source {
    make_source_sent_with(&["--compressed-data"])
}

/// Sends a read-only snapshot of a generated tree with `btrfs send FLAGS`.
fn make_source_sent_with(flags: &[&str]) -> Source {
    let fs = LoopFs::builder(FsType::Btrfs, 1024 * MIB).mount_options("compress=zstd").build();
    let subvol = fs.path().join("src");
    run(Command::new("btrfs").args(["-q", "subvolume", "create"]).arg(&subvol));
    for i in 0..FILES {
        let dir = subvol.join(format!("d{:02}", i / 100));
        fs::create_dir_all(&dir).expect("mkdir in the source");
        fs::write(dir.join(format!("f{i:04}")), content(i)).expect("write in the source");
    }
    // Compressed extents exist only once written back.
    run(Command::new("sync").arg("-f").arg(&subvol));
    let snapshot = fs.path().join(SNAPSHOT);
    run(Command::new("btrfs").args(["-q", "subvolume", "snapshot", "-r"]).arg(&subvol).arg(&snapshot));
    let dir = tempfile::Builder::new().prefix("rawsend-durability-").tempdir().expect("temporary directory");
    let stream = dir.path().join("stream");
    run(Command::new("btrfs").args(["-q", "send"]).args(flags).arg("-f").arg(&stream).arg(&snapshot));
    let tree = TreeSnapshot::capture(&snapshot);
    assert!(tree.entries.len() > FILES, "the source has {} entries", tree.entries.len());
    Source { stream, tree, _dir: dir }
}

/// The rawsend binary under test.
fn rawsend() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rawsend"))
}

/// What `rawsend receive -q -f STREAM DEST` of `source` into `dest` printed.
fn rawsend_receive(source: &Source, dest: &Path) -> Output {
    rawsend().args(["receive", "-q", "-f"]).arg(&source.stream).arg(dest).output().expect("start rawsend")
}

/// Receives `source` into `dest` and returns how long after the start the command returned.
fn receive(source: &Source, dest: &Path) -> f64 {
    let start = Instant::now();
    let output = rawsend_receive(source, dest);
    assert!(output.status.success(), "rawsend receive failed: {}", String::from_utf8_lossy(&output.stderr));
    start.elapsed().as_secs_f64()
}

/// Checks that the received copy has every file of the source with its content.
fn assert_complete_content(source: &Source, received: &Path, label: &str) {
    let options = CompareOptions {
        dir_size: false,
        atime: false,
        xattr_prefixes: Some(&[]),
        root: false,
        fresh_since_ns: None,
    };
    let problems = diff_with(&source.tree, &TreeSnapshot::capture(received), &options);
    assert!(
        problems.is_empty(),
        "{label}: marked complete but {} differences after the power cut, e.g.:\n{}",
        problems.len(),
        problems.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn btrfs_subvolume_marked_received_survives_a_power_cut() {
    require_root();
    let source = make_source();
    assert_btrfs_marks_survive_power_cuts(&source, "compress=zstd", "btrfs");
}

/// A v1 stream writes its 140 MiB of data through the page cache, so the receive
/// starts writing back in the background while it goes on (every 8 MiB): what
/// the marked subvolume holds after a power cut must still be complete.
#[test]
fn btrfs_subvolume_written_back_during_the_receive_survives_a_power_cut() {
    require_root();
    let source = make_source_sent_with(&["--proto", "1"]);
    assert_btrfs_marks_survive_power_cuts(&source, "defaults", "btrfs v1");
}

/// [`ROUNDS`] times: receives `source` onto a fresh btrfs mounted with `options`, then
/// checks that a power cut right after leaves the subvolume marked received and complete.
fn assert_btrfs_marks_survive_power_cuts(source: &Source, options: &str, what: &str) {
    for round in 0..ROUNDS {
        let dest = LoopFs::builder(FsType::Btrfs, 1024 * MIB).mount_options(options).build();
        let took = receive(source, dest.path());
        let crashed = dest.crash_copy(FsType::Btrfs);
        let label = format!("{what} round {round} (receive took {took:.1} s)");
        let subvol = crashed.path().join(SNAPSHOT);
        let state = received_state(&subvol);
        assert!(state.is_received(), "{label}: the mark did not survive: {state:?}");
        assert_complete_content(source, &subvol, &label);
    }
}

/// A device whose writes fail: the image lies on a tmpfs too small for what the
/// receive writes, so the loop driver fails writes once it is full and btrfs aborts.
/// The receive must fail and leave nothing marked received. Mounted again on a device
/// with room, the partial subvolume must never be completed wrong: the re-run refuses
/// it (its progress record may be on disk ahead of data that never was), and after
/// `--abort` a new receive is complete.
#[test]
fn btrfs_device_that_fails_writes_leaves_nothing_marked_received() {
    require_root();
    let source = make_source_sent_with(&["--proto", "1"]);
    let backing = MemFs::new("tmpfs", "size=96m");
    let mut dest = LoopFs::builder(FsType::Btrfs, 1024 * MIB).image_dir(backing.path()).build();
    let failed = rawsend_receive(&source, dest.path());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("was not marked as received"), "{stderr}");
    run(Command::new("mount").args(["-o", "remount,size=2g"]).arg(backing.path()));
    dest.mount_again(FsType::Btrfs, None);
    let subvol = dest.path().join(SNAPSHOT);
    assert!(!received_state(&subvol).is_received(), "marked received after failed writes");
    let rerun = rawsend_receive(&source, dest.path());
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(!rerun.status.success(), "a partial left by failed writes was continued: {stderr}");
    assert!(stderr.contains("cannot be known exactly"), "{stderr}");
    let aborted = rawsend().args(["receive", "--abort"]).arg(&subvol).output().expect("start rawsend");
    assert!(aborted.status.success(), "--abort");
    let done = rawsend_receive(&source, dest.path());
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_complete_content(&source, &subvol, "received after --abort");
}

#[test]
fn dir_record_survives_a_power_cut() {
    require_root();
    let source = make_source();
    for round in 0..ROUNDS {
        let dest = LoopFs::ext4(1024 * MIB);
        let took = receive(&source, dest.path());
        let crashed = dest.crash_copy(FsType::Ext4);
        let label = format!("ext4 round {round} (receive took {took:.1} s)");
        let dir = crashed.path().join(SNAPSHOT);
        let record = xattr(&dir, "user.rawsend.received");
        assert!(record.is_some(), "{label}: the record did not survive the power cut");
        assert_complete_content(&source, &dir, &label);
    }
}

/// An xattr's value, `None` when absent.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    rustix::fs::lgetxattr(path, name, &mut buf).ok().map(|len| buf[..len].to_vec())
}
