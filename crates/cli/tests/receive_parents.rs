//! Finding a SNAPSHOT's parent the way btrfs-progs does, on real kernel streams.
//!
//! The kernel puts the parent's *own* ctransid into SNAPSHOT (CLONE_CTRANSID),
//! and its received UUID when it has one. So the transid a stream names can
//! differ from the one the receiver recorded, and btrfs-progs does not compare
//! them. Two cases from the kernel's fstests, in miniature:
//! - a relay (btrfs/110): A sends to B; on B a snapshot of the received copy is
//!   sent incrementally to C. The stream names B's transid of the parent, C
//!   recorded A's.
//! - deduplication into a read-only parent after it was sent (btrfs/191): its
//!   ctransid moves, its content does not.
//!
//! Both must receive into exactly the sender's tree. Root tests on loop-mounted
//! btrfs; they fail, never skip, when they cannot mount.

use std::path::Path;
use std::process::Command;

use rawsend_testutil::tree::{CompareOptions, TreeSnapshot, diff_with};
use rawsend_testutil::{LoopFs, MIB, received_state, require_root, run};

fn rawsend(args: &[&str], paths: &[&Path]) {
    run(Command::new(env!("CARGO_BIN_EXE_rawsend")).args(args).args(paths));
}

fn btrfs(args: &[&str], paths: &[&Path]) {
    run(Command::new("btrfs").args(args).args(paths));
}

fn ctransid(subvol: &Path) -> u64 {
    let root = std::fs::File::open(subvol).expect("open the subvolume");
    rawsend_btrfs::subvolume_info(&root).expect("subvolume info").root.ctransid
}

/// Checks that `received` holds exactly the tree of `sent`, and is marked received.
fn assert_same_tree(sent: &Path, received: &Path) {
    let options = CompareOptions {
        dir_size: false,
        atime: false,
        xattr_prefixes: None,
        root: false,
        fresh_since_ns: None,
    };
    let problems = diff_with(&TreeSnapshot::capture(sent), &TreeSnapshot::capture(received), &options);
    assert!(
        problems.is_empty(),
        "{} differs from {}:\n{}",
        received.display(),
        sent.display(),
        problems.join("\n")
    );
    assert!(received_state(received).is_received(), "{} not marked received", received.display());
}

#[test]
fn relayed_incremental_finds_the_parent_received_elsewhere() {
    require_root();
    let (a, b, c) = (LoopFs::btrfs(256 * MIB), LoopFs::btrfs(256 * MIB), LoopFs::btrfs(256 * MIB));
    let streams = tempfile::tempdir().expect("temporary directory");
    let (full, incremental) = (streams.path().join("1.snap"), streams.path().join("2.snap"));
    std::fs::write(a.path().join("foo"), vec![0xaa; 32 * 1024]).expect("write");
    btrfs(&["-q", "subvolume", "snapshot", "-r"], &[a.path(), &a.path().join("snap1")]);
    rawsend(&["send", "-q", "-f"], &[&full, &a.path().join("snap1")]);

    // B's transactions run ahead of A's, so B's transid of the copy differs from A's.
    for round in 0..5 {
        std::fs::write(b.path().join("busy"), [round]).expect("write");
        run(Command::new("sync").arg("-f").arg(b.path()));
    }
    rawsend(&["receive", "-q", "-f"], &[&full, b.path()]);
    btrfs(&["-q", "subvolume", "snapshot"], &[&b.path().join("snap1"), &b.path().join("snap2_rw")]);
    let foo = b.path().join("snap2_rw/foo");
    let mut data = std::fs::read(&foo).expect("read");
    data[4096..8192].fill(0xbb);
    std::fs::write(&foo, data).expect("write");
    btrfs(&["-q", "subvolume", "snapshot", "-r"], &[&b.path().join("snap2_rw"), &b.path().join("snap2")]);
    rawsend(
        &["send", "-q", "-f"],
        &[&incremental, Path::new("-p"), &b.path().join("snap1"), &b.path().join("snap2")],
    );

    rawsend(&["receive", "-q", "-f"], &[&full, c.path()]);
    rawsend(&["receive", "-q", "-f"], &[&incremental, c.path()]);
    assert_same_tree(&b.path().join("snap2"), &c.path().join("snap2"));
}

#[test]
fn incremental_on_a_parent_deduplicated_after_it_was_sent() {
    require_root();
    let (src, dst) = (LoopFs::btrfs(256 * MIB), LoopFs::btrfs(256 * MIB));
    let streams = tempfile::tempdir().expect("temporary directory");
    let (full, incremental) = (streams.path().join("1.snap"), streams.path().join("2.snap"));
    let vol = src.path().join("vol");
    btrfs(&["-q", "subvolume", "create"], &[&vol]);
    let content: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(vol.join("foo"), &content).expect("write");
    std::fs::write(src.path().join("bar"), &content).expect("write");
    run(Command::new("sync").arg("-f").arg(src.path()));
    let (snap1, snap2) = (src.path().join("snap1"), src.path().join("snap2"));
    btrfs(&["-q", "subvolume", "snapshot", "-r"], &[&vol, &snap1]);
    rawsend(&["send", "-q", "-f"], &[&full, &snap1]);
    btrfs(&["-q", "subvolume", "snapshot", "-r"], &[&vol, &snap2]);
    let before = ctransid(&snap1);
    // Deduplicate into both snapshots' foo: content unchanged, snap1's ctransid moves.
    for snap in [&snap1, &snap2] {
        let dedupe = format!("dedupe {} 0 0 1m", src.path().join("bar").display());
        run(Command::new("xfs_io").args(["-r", "-c", &dedupe]).arg(snap.join("foo")));
    }
    assert_ne!(ctransid(&snap1), before, "the dedupe did not move the parent's ctransid");
    rawsend(&["send", "-q", "-f"], &[&incremental, Path::new("-p"), &snap1, &snap2]);

    rawsend(&["receive", "-q", "-f"], &[&full, dst.path()]);
    rawsend(&["receive", "-q", "-f"], &[&incremental, dst.path()]);
    assert_same_tree(&snap2, &dst.path().join("snap2"));
}
